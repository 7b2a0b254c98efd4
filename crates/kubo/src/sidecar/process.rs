//! Process plumbing of the launcher: is a pid alive (and still our daemon),
//! signalling a daemon and its process group, waiting for it to go, checking
//! that ports are free, the tail of the daemon log, and SIGINT/SIGTERM.

use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid};
use tokio::signal::unix::{SignalKind, signal};

use super::engine::same_executable;
use super::{EngineKind, Ports};
use crate::SidecarError;

/// How often the launcher looks at a process it waits for.
const POLL: Duration = Duration::from_millis(50);
/// How long a SIGKILLed process may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

fn nix_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// Whether `pid` is a live process running `program` (not a zombie, not a
/// recycled pid now running something else). Reaps it when it is our own
/// exited child.
pub(crate) fn alive(pid: u32, program: &Path) -> bool {
    let Some(target) = nix_pid(pid) else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    // Our own child (a daemon this process started): reap it if it has exited.
    match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => return true,
        Ok(_) => return false,
        Err(_) => {} // Not our child (ECHILD): look it up.
    }
    match kill(target, None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let proc_dir = Path::new("/proc").join(pid.to_string());
    if !Path::new("/proc/self").exists() {
        return true; // No procfs: the signal probe is all we have.
    }
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, Some('Z' | 'X')) {
            return false;
        }
    }
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(cmdline) => {
            use std::os::unix::ffi::OsStrExt;
            cmdline
                .split(|&b| b == 0)
                .take(4)
                .any(|arg| same_executable(std::ffi::OsStr::from_bytes(arg), program))
        }
        Err(_) => false,
    }
}

/// Sends `signal` to the daemon's process group when it leads one (the launcher
/// starts it so), to the process alone otherwise. A vanished process is fine.
pub(crate) fn signal_daemon(pid: u32, sig: Signal) -> Result<(), SidecarError> {
    let Some(target) = nix_pid(pid) else {
        return Ok(());
    };
    let result = match getpgid(Some(target)) {
        Ok(group) if group == target => killpg(group, sig),
        _ => kill(target, sig),
    };
    match result {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(SidecarError::StopFailed {
            pid,
            reason: format!("cannot send {sig}: {}", std::io::Error::from(e)),
        }),
    }
}

/// Waits until `pid` is gone or `timeout` passes; true when gone.
pub(crate) async fn wait_gone(pid: u32, program: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive(pid, program) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops a daemon that is not our child: SIGTERM, then SIGKILL after `grace`.
/// Returns whether SIGKILL was needed.
pub(crate) async fn terminate_pid(
    pid: u32,
    program: &Path,
    grace: Duration,
) -> Result<bool, SidecarError> {
    signal_daemon(pid, Signal::SIGTERM)?;
    if wait_gone(pid, program, grace).await {
        return Ok(false);
    }
    tracing::warn!(
        pid,
        ?grace,
        "the IPFS daemon ignored SIGTERM; sending SIGKILL"
    );
    signal_daemon(pid, Signal::SIGKILL)?;
    if wait_gone(pid, program, KILL_WAIT).await {
        Ok(true)
    } else {
        Err(SidecarError::StopFailed {
            pid,
            reason: "it is still alive after SIGKILL".into(),
        })
    }
}

/// Stops our own child and its process group: SIGTERM, then SIGKILL after
/// `grace`; reaps it. Returns whether SIGKILL was needed.
pub(crate) async fn terminate_child(
    child: &mut Child,
    grace: Duration,
) -> Result<bool, SidecarError> {
    let pid = child.id();
    if exited(child) {
        // Helpers it left in its group, if any, go too.
        let _ = signal_daemon(pid, Signal::SIGKILL);
        return Ok(false);
    }
    signal_daemon(pid, Signal::SIGTERM)?;
    if wait_child(child, grace).await {
        return Ok(false);
    }
    tracing::warn!(
        pid,
        ?grace,
        "the IPFS daemon ignored SIGTERM; sending SIGKILL"
    );
    signal_daemon(pid, Signal::SIGKILL)?;
    if wait_child(child, KILL_WAIT).await {
        Ok(true)
    } else {
        Err(SidecarError::StopFailed {
            pid,
            reason: "it is still alive after SIGKILL".into(),
        })
    }
}

/// Whether our child has exited (reaping it). An error from `try_wait` means
/// someone else reaped it: gone as well.
pub(crate) fn exited(child: &mut Child) -> bool {
    !matches!(child.try_wait(), Ok(None))
}

async fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if exited(child) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Fails with [`SidecarError::PortBusy`] when a port the engine binds is taken,
/// and with [`SidecarError::InvalidConfig`] for port 0 or two equal ports.
pub(crate) fn check_ports(engine: EngineKind, ports: Ports) -> Result<(), SidecarError> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut wanted = vec![
        ("API", loopback, ports.api),
        ("gateway", loopback, ports.gateway),
    ];
    if engine == EngineKind::Kubo {
        wanted.push(("swarm", IpAddr::V4(Ipv4Addr::UNSPECIFIED), ports.swarm));
    }
    for (i, (role, _, port)) in wanted.iter().enumerate() {
        if *port == 0 {
            return Err(SidecarError::InvalidConfig(format!(
                "the {role} port must not be 0"
            )));
        }
        if let Some((other, _, _)) = wanted[..i].iter().find(|(_, _, p)| p == port) {
            return Err(SidecarError::InvalidConfig(format!(
                "the {role} and {other} ports are both {port}"
            )));
        }
    }
    for (role, host, port) in wanted {
        TcpListener::bind((host, port))
            .map(drop)
            .map_err(|source| SidecarError::PortBusy { role, port, source })?;
    }
    Ok(())
}

/// Takes the launcher lock `path` (an exclusive `flock`, released when the
/// returned guard drops or the process dies), so that two launchers never start
/// or stop the same sidecar at once. The descriptor is close-on-exec: the daemon
/// does not inherit it.
pub(crate) fn lock_launcher(path: &Path) -> Result<Flock<std::fs::File>, SidecarError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| {
            SidecarError::io(format!("cannot open the lock file {}", path.display()), e)
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(guard) => Ok(guard),
        Err((_, Errno::EWOULDBLOCK)) => Err(SidecarError::Busy {
            path: path.to_path_buf(),
        }),
        Err((_, errno)) => Err(SidecarError::io(
            format!("cannot lock {}", path.display()),
            std::io::Error::from(errno),
        )),
    }
}

/// The last lines the daemon wrote to its log since byte `from`.
pub(crate) fn log_tail(path: &Path, from: u64) -> String {
    const MAX: u64 = 4096;
    const LINES: usize = 20;
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(the log cannot be read)".into();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(MAX)).min(len);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return "(the log cannot be read)".into();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if tail.trim().is_empty() {
        "(the daemon wrote nothing)".into()
    } else {
        tail
    }
}

/// SIGINT and SIGTERM, registered as soon as this is built so that a signal
/// arriving while the daemon starts is never the default "terminate now".
pub(crate) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers. Once registered, tokio keeps them for the life of
    /// the process: later SIGINTs no longer kill it by default.
    pub(crate) fn register() -> Result<Self, SidecarError> {
        let context = "cannot install the SIGINT/SIGTERM handlers";
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(|e| SidecarError::io(context, e))?,
            terminate: signal(SignalKind::terminate()).map_err(|e| SidecarError::io(context, e))?,
        })
    }

    /// Resolves with the name of the first signal received.
    pub(crate) async fn recv(&mut self) -> String {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT".to_string(),
            _ = self.terminate.recv() => "SIGTERM".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().port();
        let free = |_: ()| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (a, b, c) = (free(()), free(()), free(()));
        check_ports(
            EngineKind::Kubo,
            Ports {
                api: a,
                gateway: b,
                swarm: c,
            },
        )
        .unwrap();
        let err = check_ports(
            EngineKind::Kubo,
            Ports {
                api: busy,
                gateway: b,
                swarm: c,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, SidecarError::PortBusy { role: "API", .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("the API port {busy} is already in use"))
        );
        let err = check_ports(
            EngineKind::Kubo,
            Ports {
                api: a,
                gateway: b,
                swarm: busy,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, SidecarError::PortBusy { role: "swarm", .. }),
            "{err}"
        );
        // The embedded daemon has no swarm.
        check_ports(
            EngineKind::Embedded,
            Ports {
                api: a,
                gateway: b,
                swarm: busy,
            },
        )
        .unwrap();
        let err = check_ports(
            EngineKind::Kubo,
            Ports {
                api: a,
                gateway: a,
                swarm: c,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        let err = check_ports(
            EngineKind::Kubo,
            Ports {
                api: 0,
                gateway: b,
                swarm: c,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("must not be 0"), "{err}");
    }

    #[test]
    fn launcher_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let guard = lock_launcher(&path).unwrap();
        let err = lock_launcher(&path).unwrap_err();
        assert!(matches!(err, SidecarError::Busy { .. }), "{err}");
        drop(guard);
        lock_launcher(&path).unwrap();
    }

    #[test]
    fn tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert!(log_tail(&path, 0).contains("cannot be read"));
        let old = "old run\n".repeat(3);
        let new: String = (0..30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, format!("{old}{new}")).unwrap();
        let tail = log_tail(&path, old.len() as u64);
        assert!(
            tail.starts_with("line 10\n") && tail.ends_with("line 29"),
            "{tail}"
        );
        assert!(!tail.contains("old run"));
        assert!(log_tail(&path, 10_000).contains("wrote nothing"));
    }

    #[test]
    fn liveness() {
        let me = Path::new("whatever");
        assert!(!alive(0, me));
        assert!(!alive(1, me));
        assert!(!alive(std::process::id(), me));
        assert!(!alive(u32::MAX, me));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(alive(child.id(), Path::new("/bin/sleep")));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!alive(child.id(), Path::new("/bin/sleep")));
    }
}
