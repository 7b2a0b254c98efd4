//! The sidecar launcher against `tests/fake-ipfs`, a Python stand-in for Kubo's
//! `ipfs` executable: start, status, stop, stale pid files, busy ports, start-up
//! failures, the foreground mode, the embedded command line, and a launcher
//! interrupted by SIGINT/SIGTERM (run as a separate process) leaving no daemon.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use r3mes_kubo::sidecar::{
    DaemonCommand, EngineKind, Ports, Sidecar, SidecarConfig, SidecarStatus, StopOutcome,
};
use r3mes_kubo::{KuboClient, SidecarError};

const HELPER_ENV: &str = "R3MES_KUBO_TEST_LAUNCHER_HOME";

/// Three free ports below the kernel's ephemeral range (32768 and up), handed
/// out once each in this process (up to 200 of them): a port another test
/// gets from `bind(0)`, or one released by a finished test, is not given out
/// here again.
fn free_ports() -> Ports {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    // Each process (this binary and the helper processes it spawns) takes
    // its own window of 200 ports, so two processes rarely pick the same one.
    let base = 20_000 + (std::process::id() % 60) as u16 * 200;
    let next = || loop {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = base + offset % 200;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    };
    Ports {
        api: next(),
        gateway: next(),
        swarm: next(),
    }
}

/// Copies the fake `ipfs` into `dir/bin/ipfs`, executable.
fn install_fake(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-ipfs");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let target = bin.join("ipfs");
    std::fs::copy(&source, &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    target
}

struct Fixture {
    _dir: tempfile::TempDir,
    binary: PathBuf,
    config: SidecarConfig,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let binary = install_fake(dir.path());
        let mut config = SidecarConfig::new(dir.path().join("home"));
        config.ports = free_ports();
        config.start_timeout = Duration::from_secs(20);
        config.stop_timeout = Duration::from_secs(5);
        Self {
            _dir: dir,
            binary,
            config,
        }
    }

    fn sidecar(&self) -> Sidecar {
        Sidecar::new(self.config.clone())
    }

    fn kubo(&self) -> DaemonCommand {
        DaemonCommand::kubo(&self.binary, &self.config)
    }

    fn repo(&self) -> PathBuf {
        self.config.repo_dir()
    }
}

fn never() -> std::future::Pending<String> {
    std::future::pending()
}

fn process_exists(pid: u32) -> bool {
    let pid = Pid::from_raw(i32::try_from(pid).unwrap());
    // A zombie still answers kill(0); /proc tells it apart.
    if kill(pid, None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// SIGKILLs a daemon this process started and waits until it has fully exited
/// (a killed multi-threaded process lingers a moment while its threads exit).
fn crash(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(pid, None).unwrap();
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn start_status_stop() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    assert_eq!(sidecar.status().await.unwrap(), SidecarStatus::Stopped);

    let info = sidecar.start_until(&fx.kubo(), never()).await.unwrap();
    assert_eq!(info.engine, EngineKind::Kubo);
    assert_eq!(
        info.api_url,
        format!("http://127.0.0.1:{}", fx.config.ports.api)
    );
    assert_eq!(info.repo, fx.repo());
    assert!(process_exists(info.pid));

    // The repo was initialised and configured as the sidecar wants it.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.repo().join("config")).unwrap()).unwrap();
    let ports = fx.config.ports;
    assert_eq!(
        config["Addresses"]["API"],
        format!("/ip4/127.0.0.1/tcp/{}", ports.api)
    );
    assert_eq!(
        config["Addresses"]["Gateway"],
        format!("/ip4/127.0.0.1/tcp/{}", ports.gateway)
    );
    assert_eq!(
        config["Addresses"]["Swarm"],
        serde_json::json!([format!("/ip4/0.0.0.0/tcp/{}", ports.swarm)])
    );
    assert_eq!(config["Discovery"]["MDNS"]["Enabled"], false);
    let peer_id = config["Identity"]["PeerID"].as_str().unwrap().to_string();

    // The pid file: pid first, then engine and API.
    let pid_text = std::fs::read_to_string(fx.config.pid_file()).unwrap();
    assert!(
        pid_text.starts_with(&format!(
            "{}\nengine=kubo\napi={}\n",
            info.pid, info.api_url
        )),
        "{pid_text}"
    );
    let log = std::fs::read_to_string(fx.config.log_file()).unwrap();
    assert!(log.contains("Daemon is ready"), "{log}");

    match sidecar.status().await.unwrap() {
        SidecarStatus::Running {
            info: running,
            peer_id: id,
            agent_version,
        } => {
            assert_eq!(running, info);
            assert_eq!(id, peer_id);
            assert_eq!(agent_version, "kubo/0.0.0-fake/");
        }
        other => panic!("{other:?}"),
    }
    // Clients find the daemon by URL and through the repo's api file.
    let client = KuboClient::from_repo_api_file(&fx.repo()).unwrap();
    assert_eq!(client.version().await.unwrap(), "0.0.0-fake");
    assert_eq!(sidecar.client().unwrap().id().await.unwrap().id, peer_id);

    // A second start refuses.
    let err = sidecar.start_until(&fx.kubo(), never()).await.unwrap_err();
    assert!(
        matches!(err, SidecarError::AlreadyRunning { pid, .. } if pid == info.pid),
        "{err}"
    );

    match sidecar.stop().await.unwrap() {
        StopOutcome::Stopped {
            info: stopped,
            forced,
        } => {
            assert_eq!(stopped, info);
            assert!(!forced);
        }
        other => panic!("{other:?}"),
    }
    assert!(!process_exists(info.pid));
    assert!(!fx.config.pid_file().exists());
    assert!(!fx.repo().join("repo.lock").exists());
    assert!(!fx.repo().join("api").exists());
    assert_eq!(sidecar.status().await.unwrap(), SidecarStatus::Stopped);
    assert_eq!(sidecar.stop().await.unwrap(), StopOutcome::NotRunning);

    // A restart reuses the repo: no second `ipfs init`, same identity.
    let again = sidecar.start_until(&fx.kubo(), never()).await.unwrap();
    assert_eq!(sidecar.client().unwrap().id().await.unwrap().id, peer_id);
    assert!(matches!(
        sidecar.stop().await.unwrap(),
        StopOutcome::Stopped { .. }
    ));
    assert!(!process_exists(again.pid));
}

#[tokio::test]
async fn stale_pid_file_after_sigkill() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    let info = sidecar.start_until(&fx.kubo(), never()).await.unwrap();
    crash(info.pid);
    // The crash leaves Kubo's lock and api files behind.
    assert!(fx.repo().join("repo.lock").exists());
    assert!(fx.repo().join("api").exists());

    match sidecar.status().await.unwrap() {
        SidecarStatus::Stale {
            info: stale,
            removed,
        } => {
            assert_eq!(stale, info);
            assert!(removed.contains(&fx.config.pid_file()), "{removed:?}");
            assert!(
                removed.contains(&fx.repo().join("repo.lock")),
                "{removed:?}"
            );
            assert!(removed.contains(&fx.repo().join("api")), "{removed:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!fx.config.pid_file().exists());
    assert!(!fx.repo().join("repo.lock").exists());
    assert_eq!(sidecar.status().await.unwrap(), SidecarStatus::Stopped);

    // `stop` of a stale record cleans it too.
    let info = sidecar.start_until(&fx.kubo(), never()).await.unwrap();
    crash(info.pid);
    match sidecar.stop().await.unwrap() {
        StopOutcome::WasStale { removed, .. } => assert!(removed.contains(&fx.config.pid_file())),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn busy_ports_are_reported_before_starting() {
    for role in ["API", "gateway", "swarm"] {
        // Fresh ports for each case: a port released by the previous case may
        // be taken by a test running in parallel, and would be reported first.
        // A picked port may also be taken by another process before we hold
        // it; then the case starts again with fresh ports.
        let (fx, port, holder) = loop {
            let fx = Fixture::new();
            let port = match role {
                "API" => fx.config.ports.api,
                "gateway" => fx.config.ports.gateway,
                _ => fx.config.ports.swarm,
            };
            if let Ok(holder) = TcpListener::bind(("127.0.0.1", port)) {
                break (fx, port, holder);
            }
        };
        let sidecar = fx.sidecar();
        let err = sidecar.start_until(&fx.kubo(), never()).await.unwrap_err();
        match &err {
            SidecarError::PortBusy {
                role: r, port: p, ..
            } => assert_eq!((*r, *p), (role, port)),
            other => panic!("{other}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("{port} is already in use")),
            "{err}"
        );
        drop(holder);
        assert!(!fx.config.pid_file().exists());
        // Nothing was even prepared.
        assert!(!fx.repo().join("config").exists());
    }
}

#[tokio::test]
async fn repo_served_by_another_daemon() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    let repo = fx.repo();
    let fake = |args: &[&str]| {
        let status = Command::new(&fx.binary)
            .args(args)
            .env("IPFS_PATH", &repo)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    };
    // Someone runs a daemon on the sidecar's repo by hand, on other ports.
    let other = free_ports();
    fake(&["init"]);
    let api = format!("/ip4/127.0.0.1/tcp/{}", other.api);
    fake(&["config", "Addresses.API", &api]);
    let gateway = format!("/ip4/127.0.0.1/tcp/{}", other.gateway);
    fake(&["config", "Addresses.Gateway", &gateway]);
    fake(&["config", "--json", "Addresses.Swarm", "[]"]);
    let mut manual = Command::new(&fx.binary)
        .arg("daemon")
        .env("IPFS_PATH", &repo)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let api_file = repo.join("api");
    wait_until("the manual daemon", Duration::from_secs(20), || {
        api_file.exists()
    })
    .await;
    let err = sidecar.start_until(&fx.kubo(), never()).await.unwrap_err();
    assert!(matches!(&err, SidecarError::RepoInUse { .. }), "{err}");
    assert!(err.to_string().contains(&other.api.to_string()), "{err}");
    assert!(!fx.config.pid_file().exists());
    manual.kill().unwrap();
    manual.wait().unwrap();

    // Killed, it left its api file naming a dead address: the launcher removes it.
    assert!(api_file.exists());
    let info = sidecar.start_until(&fx.kubo(), never()).await.unwrap();
    let written = std::fs::read_to_string(&api_file).unwrap();
    assert_eq!(
        written,
        format!("/ip4/127.0.0.1/tcp/{}", fx.config.ports.api)
    );
    sidecar.stop().await.unwrap();
    assert!(!process_exists(info.pid));
}

#[tokio::test]
async fn one_launcher_at_a_time() {
    use nix::fcntl::{Flock, FlockArg};
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    std::fs::create_dir_all(&fx.config.home).unwrap();
    let file = std::fs::File::create(fx.config.lock_file()).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
    let err = sidecar.start_until(&fx.kubo(), never()).await.unwrap_err();
    assert!(matches!(err, SidecarError::Busy { .. }), "{err}");
    drop(held);
    let info = sidecar.start_until(&fx.kubo(), never()).await.unwrap();
    // The lock is released once the daemon answers, and the daemon does not hold it.
    let file = std::fs::File::open(fx.config.lock_file()).unwrap();
    drop(Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap());
    sidecar.stop().await.unwrap();
    assert!(!process_exists(info.pid));
}

#[tokio::test]
async fn stop_escalates_to_sigkill() {
    let mut fx = Fixture::new();
    fx.config.stop_timeout = Duration::from_millis(500);
    let sidecar = fx.sidecar();
    let mut command = fx.kubo();
    command
        .env
        .push(("FAKE_IPFS_IGNORE_SIGTERM".into(), "1".into()));
    let info = sidecar.start_until(&command, never()).await.unwrap();
    match sidecar.stop().await.unwrap() {
        StopOutcome::Stopped { forced, .. } => assert!(forced),
        other => panic!("{other:?}"),
    }
    assert!(!process_exists(info.pid));
    // The killed daemon could not clean up; the launcher did.
    assert!(!fx.repo().join("repo.lock").exists());
    assert!(!fx.repo().join("api").exists());
    assert!(!fx.config.pid_file().exists());
}

#[tokio::test]
async fn daemon_that_refuses_to_start() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    // Another live process holds the repo lock (this test process will do).
    std::fs::create_dir_all(fx.repo()).unwrap();
    let lock = fx.repo().join("repo.lock");
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let err = sidecar.start_until(&fx.kubo(), never()).await.unwrap_err();
    match &err {
        SidecarError::Exited { tail, .. } => {
            assert!(tail.contains("someone else has the lock"), "{tail}")
        }
        other => panic!("{other}"),
    }
    assert!(!fx.config.pid_file().exists());
    // Its lock is not ours to remove.
    assert!(lock.exists());
}

#[tokio::test]
async fn start_timeout_kills_the_daemon() {
    let mut fx = Fixture::new();
    fx.config.start_timeout = Duration::from_secs(1);
    let sidecar = fx.sidecar();
    let mut command = fx.kubo();
    command
        .env
        .push(("FAKE_IPFS_READY_DELAY".into(), "30".into()));
    let started = Instant::now();
    let err = sidecar.start_until(&command, never()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    match &err {
        SidecarError::StartTimeout { tail, .. } => {
            assert!(tail.contains("Initializing daemon"), "{tail}")
        }
        other => panic!("{other}"),
    }
    assert!(!fx.config.pid_file().exists());
    assert!(
        !fx.repo().join("repo.lock").exists(),
        "the daemon went and so did its lock"
    );
}

#[tokio::test]
async fn cancelled_start_stops_the_daemon() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    let mut command = fx.kubo();
    command
        .env
        .push(("FAKE_IPFS_READY_DELAY".into(), "30".into()));
    let pid_file = fx.config.pid_file();
    let cancel = async move {
        // Cancel once the daemon has been spawned and recorded.
        while !pid_file.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        "test cancel".to_string()
    };
    let err = sidecar.start_until(&command, cancel).await.unwrap_err();
    assert!(
        matches!(&err, SidecarError::Interrupted { reason } if reason == "test cancel"),
        "{err}"
    );
    assert!(!fx.config.pid_file().exists());
    assert!(!fx.repo().join("repo.lock").exists());
}

#[tokio::test]
async fn foreground_stops_on_shutdown() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let command = fx.kubo();
    let runner = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.await;
            "SIGINT".to_string()
        };
        sidecar
            .run_foreground_until(&command, shutdown, |info| {
                let _ = ready_tx.send(info.clone());
            })
            .await
    });
    let info = ready_rx.await.unwrap();
    match fx.sidecar().status().await.unwrap() {
        SidecarStatus::Running { info: running, .. } => assert_eq!(running, info),
        other => panic!("{other:?}"),
    }
    stop_tx.send(()).unwrap();
    match runner.await.unwrap().unwrap() {
        StopOutcome::Stopped { forced, .. } => assert!(!forced),
        other => panic!("{other:?}"),
    }
    assert!(!process_exists(info.pid));
    assert!(!fx.config.pid_file().exists());
    assert!(!fx.repo().join("repo.lock").exists());
}

#[tokio::test]
async fn foreground_reports_a_daemon_that_dies() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    let command = fx.kubo();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let runner = tokio::spawn(async move {
        sidecar
            .run_foreground_until(&command, never(), |info| {
                let _ = ready_tx.send(info.pid);
            })
            .await
    });
    let pid = ready_rx.await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let err = runner.await.unwrap().unwrap_err();
    assert!(matches!(err, SidecarError::Exited { .. }), "{err}");
    assert!(!fx.config.pid_file().exists());
    assert!(!fx.repo().join("repo.lock").exists());
}

#[tokio::test]
async fn embedded_command_through_the_same_launcher() {
    let fx = Fixture::new();
    let sidecar = fx.sidecar();
    // The fake plays `r3mes ipfs daemon --repo ... --api-port ... --gateway-port ...`.
    let command = DaemonCommand::embedded(&fx.binary, &fx.config);
    let info = sidecar.start_until(&command, never()).await.unwrap();
    assert_eq!(info.engine, EngineKind::Embedded);
    // No Kubo preparation for the embedded engine.
    assert!(!fx.repo().join("config").exists());
    assert!(
        std::fs::read_to_string(fx.config.pid_file())
            .unwrap()
            .contains("engine=embedded")
    );
    match sidecar.status().await.unwrap() {
        SidecarStatus::Running {
            info: running,
            agent_version,
            ..
        } => {
            assert_eq!(running.engine, EngineKind::Embedded);
            assert_eq!(agent_version, "r3mes/0.1.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sidecar.stop().await.unwrap(),
        StopOutcome::Stopped { forced: false, .. }
    ));
    assert!(!process_exists(info.pid));
}

/// Runs a launcher (this test binary, in [`launcher_helper`]) as its own process,
/// signals it while the daemon is still starting, and checks that no daemon is left.
async fn interrupted_launcher(sig: Signal) {
    let fx = Fixture::new();
    let ports = fx.config.ports;
    let mut launcher = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "launcher_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, &fx.config.home)
        .env("HELPER_BIN", &fx.binary)
        .env(
            "HELPER_PORTS",
            format!("{},{},{}", ports.api, ports.gateway, ports.swarm),
        )
        .env("FAKE_IPFS_READY_DELAY", "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the daemon to be spawned and recorded, and for Python to be past
    // its start-up (it prints before it sleeps).
    let pid_file = fx.config.pid_file();
    let log = fx.config.log_file();
    wait_until("the daemon to start", Duration::from_secs(30), || {
        pid_file.exists()
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Initializing daemon"))
    })
    .await;
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let daemon: u32 = text.lines().next().unwrap().parse().unwrap();
    assert!(process_exists(daemon));

    kill(Pid::from_raw(launcher.id() as i32), sig).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the launcher did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = launcher.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("launcher result: interrupted ({sig})")),
        "{stdout}"
    );

    wait_until("the daemon to go", Duration::from_secs(5), || {
        !process_exists(daemon)
    })
    .await;
    assert!(!pid_file.exists());
    assert!(!fx.repo().join("repo.lock").exists());
}

#[tokio::test]
async fn sigint_while_starting_leaves_no_orphan() {
    interrupted_launcher(Signal::SIGINT).await;
}

#[tokio::test]
async fn sigterm_while_starting_leaves_no_orphan() {
    interrupted_launcher(Signal::SIGTERM).await;
}

/// Not a test on its own: the launcher process of [`interrupted_launcher`].
#[test]
#[ignore = "helper process of the interrupted-launcher tests"]
fn launcher_helper() {
    let Some(home) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let binary = PathBuf::from(std::env::var_os("HELPER_BIN").unwrap());
    let ports: Vec<u16> = std::env::var("HELPER_PORTS")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let mut config = SidecarConfig::new(home);
    config.ports = Ports {
        api: ports[0],
        gateway: ports[1],
        swarm: ports[2],
    };
    config.start_timeout = Duration::from_secs(60);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        let sidecar = Sidecar::new(config.clone());
        sidecar.start(&DaemonCommand::kubo(&binary, &config)).await
    });
    match result {
        Err(SidecarError::Interrupted { reason }) => {
            println!("launcher result: interrupted ({reason})")
        }
        other => println!("launcher result: unexpected {other:?}"),
    }
}
