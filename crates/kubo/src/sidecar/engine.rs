//! Which daemon the sidecar runs: finding a Kubo binary, the command lines of
//! the Kubo and embedded daemons, and the one-time preparation of a Kubo repo
//! (`ipfs init`, then its addresses and MDNS set with `ipfs config`).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::SidecarConfig;
use crate::SidecarError;
use crate::addr::loopback_multiaddr;

/// Environment variable naming the Kubo binary to use.
pub const KUBO_BIN_ENV: &str = "R3MES_KUBO_BIN";
/// Name of the Kubo executable searched on `PATH`.
pub const KUBO_EXE_NAME: &str = "ipfs";

/// The IPFS engine behind the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// A Kubo (`ipfs`) binary.
    Kubo,
    /// r3mes' own Kubo-compatible daemon (`r3mes ipfs daemon`).
    Embedded,
}

impl EngineKind {
    /// `kubo` or `embedded`, as written into the pid file.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Kubo => "kubo",
            EngineKind::Embedded => "embedded",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "kubo" => Ok(EngineKind::Kubo),
            "embedded" => Ok(EngineKind::Embedded),
            other => Err(format!(
                "unknown engine {other:?} (expected kubo or embedded)"
            )),
        }
    }
}

/// The command the launcher starts and watches: the program, its arguments and
/// extra environment. The launcher is the same for every engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonCommand {
    /// Which engine this is; [`EngineKind::Kubo`] also makes the launcher
    /// prepare the repo with `<program> init` and `<program> config`.
    pub engine: EngineKind,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment added to the launcher's own.
    pub env: Vec<(OsString, OsString)>,
}

impl DaemonCommand {
    /// `ipfs daemon` with `IPFS_PATH` set to the sidecar's isolated repo.
    pub fn kubo(binary: impl Into<PathBuf>, config: &SidecarConfig) -> Self {
        Self {
            engine: EngineKind::Kubo,
            program: binary.into(),
            args: vec!["daemon".into()],
            env: vec![("IPFS_PATH".into(), config.repo_dir().into_os_string())],
        }
    }

    /// The embedded daemon: `<exe> ipfs daemon --repo <repo> --api-port <api>
    /// --gateway-port <gateway>`, where `exe` is normally `std::env::current_exe()`
    /// of the `r3mes` binary.
    pub fn embedded(exe: impl Into<PathBuf>, config: &SidecarConfig) -> Self {
        let ports = config.ports;
        Self {
            engine: EngineKind::Embedded,
            program: exe.into(),
            args: vec![
                "ipfs".into(),
                "daemon".into(),
                "--repo".into(),
                config.repo_dir().into_os_string(),
                "--api-port".into(),
                ports.api.to_string().into(),
                "--gateway-port".into(),
                ports.gateway.to_string().into(),
            ],
            env: Vec::new(),
        }
    }

    /// Kubo when a binary is found ([`find_kubo`]), the embedded daemon otherwise.
    /// An explicit binary, or one named by `R3MES_KUBO_BIN`, that cannot be run
    /// is an error rather than a silent fall-back.
    pub fn auto(
        explicit_kubo: Option<&Path>,
        current_exe: &Path,
        config: &SidecarConfig,
    ) -> Result<Self, SidecarError> {
        Ok(match find_kubo(explicit_kubo)? {
            Some(binary) => Self::kubo(binary, config),
            None => Self::embedded(current_exe, config),
        })
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut text = self.program.display().to_string();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        text
    }
}

/// Finds a Kubo binary: `explicit` if given, else `$R3MES_KUBO_BIN`, else `ipfs`
/// on `PATH`. `Ok(None)` when there is none; an error when an explicitly named
/// binary is missing or not executable.
pub fn find_kubo(explicit: Option<&Path>) -> Result<Option<PathBuf>, SidecarError> {
    find_kubo_in(
        explicit,
        std::env::var_os(KUBO_BIN_ENV),
        std::env::var_os("PATH"),
    )
}

/// [`find_kubo`] with the environment passed in (`R3MES_KUBO_BIN` and `PATH` values).
pub fn find_kubo_in(
    explicit: Option<&Path>,
    env_bin: Option<OsString>,
    path_var: Option<OsString>,
) -> Result<Option<PathBuf>, SidecarError> {
    if let Some(path) = explicit {
        return check_executable(path).map(|()| Some(path.to_path_buf()));
    }
    if let Some(value) = env_bin.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return check_executable(&path)
            .map(|()| Some(path.clone()))
            .map_err(|e| match e {
                SidecarError::BadBinary { path, reason } => SidecarError::BadBinary {
                    path,
                    reason: format!("{reason} (named by {KUBO_BIN_ENV})"),
                },
                other => other,
            });
    }
    let Some(path_var) = path_var else {
        return Ok(None);
    };
    Ok(std::env::split_paths(&path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(KUBO_EXE_NAME))
        .find(|candidate| check_executable(candidate).is_ok()))
}

fn check_executable(path: &Path) -> Result<(), SidecarError> {
    let bad = |reason: String| SidecarError::BadBinary {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad("not executable".into()));
    }
    Ok(())
}

/// Prepares the isolated Kubo repo: `init` once (when `<repo>/config` is
/// missing), then the API and gateway on loopback, the swarm port, and MDNS off.
pub(crate) async fn prepare_kubo_repo(
    command: &DaemonCommand,
    config: &SidecarConfig,
) -> Result<(), SidecarError> {
    let repo = config.repo_dir();
    let ports = config.ports;
    let timeout = config.start_timeout;
    if !repo.join("config").exists() {
        tracing::info!(repo = %repo.display(), "initialising the Kubo repository");
        run_setup(command, &["init"], timeout).await?;
    }
    let api = loopback_multiaddr(ports.api);
    let gateway = loopback_multiaddr(ports.gateway);
    let swarm = format!("[\"/ip4/0.0.0.0/tcp/{}\"]", ports.swarm);
    run_setup(command, &["config", "Addresses.API", &api], timeout).await?;
    run_setup(command, &["config", "Addresses.Gateway", &gateway], timeout).await?;
    run_setup(
        command,
        &["config", "--json", "Addresses.Swarm", &swarm],
        timeout,
    )
    .await?;
    run_setup(
        command,
        &["config", "--json", "Discovery.MDNS.Enabled", "false"],
        timeout,
    )
    .await
}

/// Runs `<program> <args>` with the command's environment and fails with its output.
async fn run_setup(
    command: &DaemonCommand,
    args: &[&str],
    timeout: Duration,
) -> Result<(), SidecarError> {
    let step = format!("{} {}", command.program.display(), args.join(" "));
    tracing::debug!(%step, "sidecar setup");
    let mut process = tokio::process::Command::new(&command.program);
    process
        .args(args)
        .envs(
            command
                .env
                .iter()
                .map(|(k, v)| (k.as_os_str(), v.as_os_str())),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, process.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(SidecarError::Spawn {
                program: command.program.clone(),
                source: e,
            });
        }
        Err(_) => {
            return Err(SidecarError::Setup {
                step,
                status: format!("no answer within {timeout:?}"),
                output: String::new(),
            });
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    Err(SidecarError::Setup {
        step,
        status: output.status.to_string(),
        output: tail(&text, 2000),
    })
}

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

/// Whether `arg` names the same executable file as `program` (same file name).
pub(crate) fn same_executable(arg: &OsStr, program: &Path) -> bool {
    match (Path::new(arg).file_name(), program.file_name()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn finds_kubo_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let on_path = executable(b.path(), "ipfs");
        let named = executable(a.path(), "kubo-bin");
        let path_var = std::env::join_paths([a.path(), b.path()]).unwrap();

        // PATH only: the first directory holding an executable `ipfs`.
        assert_eq!(
            find_kubo_in(None, None, Some(path_var.clone())).unwrap(),
            Some(on_path)
        );
        // The environment variable wins over PATH, an explicit path over both.
        let env = Some(named.clone().into_os_string());
        assert_eq!(
            find_kubo_in(None, env.clone(), Some(path_var.clone())).unwrap(),
            Some(named)
        );
        let explicit = executable(a.path(), "explicit");
        assert_eq!(
            find_kubo_in(Some(&explicit), env, None).unwrap(),
            Some(explicit)
        );
        // Nothing anywhere.
        assert_eq!(
            find_kubo_in(None, Some(OsString::new()), None).unwrap(),
            None
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            find_kubo_in(None, None, Some(empty.path().into())).unwrap(),
            None
        );
    }

    #[test]
    fn named_binaries_must_run() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = find_kubo_in(Some(&plain), None, None).unwrap_err();
        assert!(err.to_string().contains("not executable"), "{err}");
        let err = find_kubo_in(None, Some(dir.path().join("missing").into()), None).unwrap_err();
        assert!(err.to_string().contains(KUBO_BIN_ENV), "{err}");
        let err = find_kubo_in(Some(dir.path()), None, None).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn command_lines() {
        let config = SidecarConfig::new("/tmp/r3mes-home");
        let kubo = DaemonCommand::kubo("/usr/bin/ipfs", &config);
        assert_eq!(kubo.display(), "/usr/bin/ipfs daemon");
        assert_eq!(
            kubo.env,
            vec![("IPFS_PATH".into(), "/tmp/r3mes-home/ipfs".into())]
        );
        let embedded = DaemonCommand::embedded("/usr/bin/r3mes", &config);
        assert_eq!(
            embedded.display(),
            "/usr/bin/r3mes ipfs daemon --repo /tmp/r3mes-home/ipfs --api-port 5001 --gateway-port 8080"
        );
        assert_eq!(embedded.engine, EngineKind::Embedded);
    }

    #[test]
    fn engine_names() {
        for kind in [EngineKind::Kubo, EngineKind::Embedded] {
            assert_eq!(kind.to_string().parse::<EngineKind>().unwrap(), kind);
        }
        assert!("go-ipfs".parse::<EngineKind>().is_err());
        assert!(same_executable(
            OsStr::new("/a/b/ipfs"),
            Path::new("/c/ipfs")
        ));
        assert!(!same_executable(
            OsStr::new("/a/b/python3"),
            Path::new("/c/ipfs")
        ));
        assert_eq!(tail("abcdef", 3), "...def");
    }
}
