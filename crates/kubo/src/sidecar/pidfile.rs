//! The pid file `<home>/ipfs-sidecar.pid`: the daemon's pid on the first line
//! (so `kill $(head -1 ipfs-sidecar.pid)` works), then `key=value` lines for the
//! engine, the API URL, the repo and the program.
//!
//! ```text
//! 41233
//! engine=kubo
//! api=http://127.0.0.1:5001
//! repo=/home/me/.r3mes/ipfs
//! program=/usr/local/bin/ipfs
//! ```

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{EngineKind, SidecarInfo};
use crate::SidecarError;

/// Writes the record atomically (a temporary file renamed over the old one).
pub(crate) fn write(path: &Path, info: &SidecarInfo) -> Result<(), SidecarError> {
    let mut text: Vec<u8> = Vec::new();
    text.extend_from_slice(format!("{}\n", info.pid).as_bytes());
    text.extend_from_slice(format!("engine={}\n", info.engine).as_bytes());
    text.extend_from_slice(format!("api={}\n", info.api_url).as_bytes());
    for (key, value) in [("repo", &info.repo), ("program", &info.program)] {
        let bytes = value.as_os_str().as_bytes();
        if bytes.contains(&b'\n') {
            return Err(SidecarError::InvalidConfig(format!(
                "the {key} path {} contains a newline",
                value.display()
            )));
        }
        text.extend_from_slice(key.as_bytes());
        text.push(b'=');
        text.extend_from_slice(bytes);
        text.push(b'\n');
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let context = || format!("cannot write the pid file {}", path.display());
    let mut tmp = tempfile_in(dir).map_err(|e| SidecarError::io(context(), e))?;
    tmp.1
        .write_all(&text)
        .map_err(|e| SidecarError::io(context(), e))?;
    tmp.1
        .sync_all()
        .map_err(|e| SidecarError::io(context(), e))?;
    std::fs::rename(&tmp.0, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp.0);
        SidecarError::io(context(), e)
    })
}

/// A fresh file beside the target, named after our pid.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".ipfs-sidecar.pid.{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    Ok((path, file))
}

/// Reads the record; `Ok(None)` when there is no pid file.
pub(crate) fn read(path: &Path) -> Result<Option<SidecarInfo>, SidecarError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SidecarError::io(
                format!("cannot read the pid file {}", path.display()),
                e,
            ));
        }
    };
    parse(&bytes)
        .map(Some)
        .map_err(|reason| SidecarError::PidFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// Removes the pid file; a missing file is fine.
pub(crate) fn remove(path: &Path) -> Result<(), SidecarError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SidecarError::io(
            format!("cannot remove the pid file {}", path.display()),
            e,
        )),
    }
}

fn parse(bytes: &[u8]) -> Result<SidecarInfo, String> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let pid_text = std::str::from_utf8(first).map_err(|_| "the pid is not text".to_string())?;
    let pid: u32 = pid_text
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a process id", pid_text.trim()))?;
    if pid <= 1 || i32::try_from(pid).is_err() {
        return Err(format!("{pid} is not a daemon's process id"));
    }
    let (mut engine, mut api_url, mut repo, mut program) = (None, None, None, None);
    for line in lines {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            return Err(format!(
                "line {:?} is not key=value",
                String::from_utf8_lossy(line)
            ));
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        let text = || String::from_utf8_lossy(value).trim().to_string();
        match key {
            b"engine" => engine = Some(text().parse::<EngineKind>()?),
            b"api" => api_url = Some(text()),
            b"repo" => repo = Some(PathBuf::from(OsStr::from_bytes(value))),
            b"program" => program = Some(PathBuf::from(OsStr::from_bytes(value))),
            _ => {} // Keys of later versions.
        }
    }
    Ok(SidecarInfo {
        pid,
        engine: engine.ok_or("no engine= line")?,
        api_url: api_url.filter(|u| !u.is_empty()).ok_or("no api= line")?,
        repo: repo.ok_or("no repo= line")?,
        program: program.ok_or("no program= line")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SidecarInfo {
        SidecarInfo {
            pid: 4242,
            engine: EngineKind::Kubo,
            api_url: "http://127.0.0.1:5001".into(),
            repo: "/home/me/.r3mes/ipfs".into(),
            program: "/usr/local/bin/ipfs".into(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipfs-sidecar.pid");
        assert!(read(&path).unwrap().is_none());
        write(&path, &info()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("4242\nengine=kubo\napi=http://127.0.0.1:5001\n"),
            "{text}"
        );
        assert_eq!(read(&path).unwrap().unwrap(), info());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(read(&path).unwrap().is_none());
        // Only the pid file is left behind, no temporary file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"abc\n",
            b"0\nengine=kubo\n",
            b"1\n",
            b"99999999999\n",
            b"-5\n",
            b"12\nengine=ipfs\napi=x\nrepo=/r\nprogram=/p\n",
            b"12\nengine=kubo\nrepo=/r\nprogram=/p\n",
            b"12\nengine=kubo\napi=x\nrepo=/r\n",
            b"12\nnonsense\n",
            b"\xff\xfe\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        std::fs::write(&path, "garbage").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("is malformed"), "{err}");
    }

    #[test]
    fn ignores_unknown_keys_and_refuses_newlines() {
        let parsed =
            parse(b"12\nengine=embedded\napi=http://127.0.0.1:1\nrepo=/r\nprogram=/p\nstarted=1\n")
                .unwrap();
        assert_eq!(parsed.engine, EngineKind::Embedded);
        let dir = tempfile::tempdir().unwrap();
        let mut bad = info();
        bad.repo = "/a\nb".into();
        assert!(write(&dir.path().join("pid"), &bad).is_err());
    }
}
