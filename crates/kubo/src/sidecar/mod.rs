//! The managed IPFS sidecar (the seed's "Managed Sidecar Pattern"): r3mes starts
//! and owns an isolated IPFS daemon, so users install and configure nothing.
//!
//! - **Isolated instance**: the repo is `<home>/ipfs` (`~/.r3mes/ipfs`, or
//!   `$R3MES_HOME/ipfs`), never the user's own `~/.ipfs`.
//! - **Engines**: a Kubo binary (explicit path, `$R3MES_KUBO_BIN`, or `ipfs` on
//!   `PATH`) or, when there is none, the embedded daemon of the `r3mes` binary.
//!   Both run through the same [`DaemonCommand`], pid file, wait and stop logic.
//! - **Port management**: API and gateway on loopback, swarm on all interfaces
//!   (5001, 8080, 4001 by default); a busy port is reported before anything starts.
//! - **Automatic start-up**: [`Sidecar::start`] prepares the repo (Kubo: `ipfs
//!   init` once, then `ipfs config` of the addresses and MDNS off), starts the
//!   daemon detached in its own process group with its output in
//!   `<repo>/daemon.log`, polls `POST /api/v0/id` until it answers and records
//!   `<home>/ipfs-sidecar.pid`. A launcher interrupted by SIGINT/SIGTERM while
//!   it waits stops the daemon before returning: no orphan.
//! - **Automatic clean-up**: [`Sidecar::run_foreground`] keeps the daemon as a
//!   child and stops it when the launcher receives SIGINT or SIGTERM;
//!   [`Sidecar::stop`] stops a detached one (SIGTERM, then SIGKILL after a
//!   timeout). [`Sidecar::status`] tells running, unresponsive, stale (the
//!   process died: the pid file and the `repo.lock`/`api` files a crash leaves
//!   are removed) or stopped. A lock file (`<home>/ipfs-sidecar.lock`) keeps two
//!   launchers from starting or stopping the same sidecar at once.
//!
//! The signal handlers that [`Sidecar::start`] and [`Sidecar::run_foreground`]
//! install stay for the life of the process (tokio does not remove them): call
//! them from a launcher that exits afterwards, or use the `_until` variants with
//! your own cancellation future.

mod engine;
mod pidfile;
mod process;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use engine::{DaemonCommand, EngineKind, KUBO_BIN_ENV, KUBO_EXE_NAME, find_kubo, find_kubo_in};

use crate::{ClientOptions, KuboClient, SidecarError};
use process::Signals;

/// Environment variable naming the r3mes home (default `~/.r3mes`).
pub const HOME_ENV: &str = "R3MES_HOME";
/// Default API port (Kubo's).
pub const DEFAULT_API_PORT: u16 = 5001;
/// Default gateway port (Kubo's).
pub const DEFAULT_GATEWAY_PORT: u16 = 8080;
/// Default swarm port (Kubo's).
pub const DEFAULT_SWARM_PORT: u16 = 4001;
/// Name of the pid file inside the home.
pub const PID_FILE_NAME: &str = "ipfs-sidecar.pid";
/// Name of the launcher lock file inside the home.
pub const LOCK_FILE_NAME: &str = "ipfs-sidecar.lock";
/// Name of the repo directory inside the home.
pub const REPO_DIR_NAME: &str = "ipfs";
/// Name of the daemon log inside the repo.
pub const LOG_FILE_NAME: &str = "daemon.log";

/// How often the launcher polls the API during start-up.
const READY_POLL: Duration = Duration::from_millis(100);

/// The ports of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ports {
    /// RPC API, on 127.0.0.1.
    pub api: u16,
    /// HTTP gateway, on 127.0.0.1.
    pub gateway: u16,
    /// libp2p swarm, on 0.0.0.0 (Kubo only).
    pub swarm: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            api: DEFAULT_API_PORT,
            gateway: DEFAULT_GATEWAY_PORT,
            swarm: DEFAULT_SWARM_PORT,
        }
    }
}

/// Where the sidecar lives and how patient the launcher is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    /// The r3mes home (`~/.r3mes`); the repo is `<home>/ipfs`.
    pub home: PathBuf,
    /// The daemon's ports.
    pub ports: Ports,
    /// How long to wait for the API to answer after starting (default 60 s).
    pub start_timeout: Duration,
    /// How long a daemon may take to exit after SIGTERM before SIGKILL (default 15 s).
    pub stop_timeout: Duration,
}

impl SidecarConfig {
    /// Defaults (ports 5001/8080/4001, 60 s to start, 15 s to stop) under `home`.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            ports: Ports::default(),
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(15),
        }
    }

    /// Defaults under [`default_home`].
    pub fn from_env() -> Result<Self, SidecarError> {
        Ok(Self::new(default_home()?))
    }

    /// The isolated IPFS repo, `<home>/ipfs`.
    pub fn repo_dir(&self) -> PathBuf {
        self.home.join(REPO_DIR_NAME)
    }

    /// The pid file, `<home>/ipfs-sidecar.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.home.join(PID_FILE_NAME)
    }

    /// The launcher lock, `<home>/ipfs-sidecar.lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.home.join(LOCK_FILE_NAME)
    }

    /// The daemon's log, `<home>/ipfs/daemon.log`.
    pub fn log_file(&self) -> PathBuf {
        self.repo_dir().join(LOG_FILE_NAME)
    }

    /// The API URL the daemon will answer at, `http://127.0.0.1:<api>`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.api)
    }
}

/// The r3mes home: `$R3MES_HOME` if set and not empty, else `$HOME/.r3mes`.
pub fn default_home() -> Result<PathBuf, SidecarError> {
    home_from(std::env::var_os(HOME_ENV), std::env::var_os("HOME")).ok_or(SidecarError::NoHome)
}

/// [`default_home`] with the two environment values passed in.
pub fn home_from(r3mes_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if let Some(dir) = r3mes_home.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    home.filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".r3mes"))
}

/// What the pid file records about a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SidecarInfo {
    /// The daemon's process id (it leads its own process group).
    pub pid: u32,
    /// Which engine runs.
    pub engine: EngineKind,
    /// Where its API answers, `http://127.0.0.1:<port>`.
    pub api_url: String,
    /// Its repo.
    pub repo: PathBuf,
    /// The program started.
    pub program: PathBuf,
}

/// The state of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SidecarStatus {
    /// The process is alive and its API answers.
    Running {
        /// The pid file's record.
        info: SidecarInfo,
        /// The daemon's peer ID (`id`).
        peer_id: String,
        /// Its agent version (`id`).
        agent_version: String,
    },
    /// The process is alive but its API does not answer (starting, or hung).
    Unresponsive {
        /// The pid file's record.
        info: SidecarInfo,
    },
    /// A pid file was left by a daemon that is gone; it has been cleaned up.
    Stale {
        /// The record that was left.
        info: SidecarInfo,
        /// The files removed (pid file, and the `repo.lock`/`api` a crash leaves).
        removed: Vec<PathBuf>,
    },
    /// No sidecar.
    Stopped,
}

/// What [`Sidecar::stop`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StopOutcome {
    /// The daemon was stopped.
    Stopped {
        /// Its record.
        info: SidecarInfo,
        /// Whether it had to be killed (it ignored SIGTERM for the stop timeout).
        forced: bool,
    },
    /// The daemon was already gone; its leftovers were removed.
    WasStale {
        /// The record that was left.
        info: SidecarInfo,
        /// The files removed.
        removed: Vec<PathBuf>,
    },
    /// There was no sidecar.
    NotRunning,
}

/// The launcher of one sidecar (one home).
#[derive(Debug, Clone)]
pub struct Sidecar {
    config: SidecarConfig,
}

impl Sidecar {
    /// A launcher for the sidecar described by `config`.
    pub fn new(config: SidecarConfig) -> Self {
        Self { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &SidecarConfig {
        &self.config
    }

    /// A client of the sidecar's API (from the configured port).
    pub fn client(&self) -> Result<KuboClient, SidecarError> {
        Ok(KuboClient::new(&self.config.api_url())?)
    }

    /// Starts the daemon detached and returns once its API answers. SIGINT or
    /// SIGTERM while waiting stops the daemon and gives
    /// [`SidecarError::Interrupted`].
    pub async fn start(&self, command: &DaemonCommand) -> Result<SidecarInfo, SidecarError> {
        let mut signals = Signals::register()?;
        self.start_until(command, async move { signals.recv().await })
            .await
    }

    /// [`Sidecar::start`] with a cancellation future instead of signals: when
    /// `cancel` resolves (with a reason) before the API answers, the daemon is
    /// stopped and the call fails with [`SidecarError::Interrupted`].
    pub async fn start_until<F>(
        &self,
        command: &DaemonCommand,
        cancel: F,
    ) -> Result<SidecarInfo, SidecarError>
    where
        F: Future<Output = String>,
    {
        let mut cancel = std::pin::pin!(cancel);
        let (child, info) = self.launch(command, cancel.as_mut()).await?;
        // Detached: the daemon outlives this handle (std does not kill on drop).
        drop(child);
        tracing::info!(pid = info.pid, engine = %info.engine, api = %info.api_url, "IPFS sidecar started");
        Ok(info)
    }

    /// Runs the daemon as a child until SIGINT or SIGTERM, then stops it
    /// (SIGTERM, SIGKILL after the stop timeout) and removes the pid file.
    /// `on_ready` is called once the API answers. A daemon that exits by itself
    /// gives [`SidecarError::Exited`].
    pub async fn run_foreground(
        &self,
        command: &DaemonCommand,
        on_ready: impl FnOnce(&SidecarInfo),
    ) -> Result<StopOutcome, SidecarError> {
        let mut signals = Signals::register()?;
        self.run_foreground_until(command, async move { signals.recv().await }, on_ready)
            .await
    }

    /// [`Sidecar::run_foreground`] with a shutdown future instead of signals.
    pub async fn run_foreground_until<F>(
        &self,
        command: &DaemonCommand,
        shutdown: F,
        on_ready: impl FnOnce(&SidecarInfo),
    ) -> Result<StopOutcome, SidecarError>
    where
        F: Future<Output = String>,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        let (mut child, info) = self.launch(command, shutdown.as_mut()).await?;
        on_ready(&info);
        let log = self.config.log_file();
        loop {
            tokio::select! {
                reason = shutdown.as_mut() => {
                    tracing::info!(pid = info.pid, %reason, "stopping the IPFS sidecar");
                    let forced = process::terminate_child(&mut child, self.config.stop_timeout).await?;
                    self.forget(&info, forced)?;
                    return Ok(StopOutcome::Stopped { info, forced });
                }
                () = tokio::time::sleep(READY_POLL) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.forget(&info, true)?;
                        return Err(SidecarError::exited(status, log.clone(), process::log_tail(&log, 0)));
                    }
                }
            }
        }
    }

    /// The sidecar's state. A stale pid file (its process is gone) is cleaned up
    /// here, with the `repo.lock` and `api` files Kubo leaves when it is killed,
    /// unless something else answers at the recorded API address.
    pub async fn status(&self) -> Result<SidecarStatus, SidecarError> {
        let Some(info) = pidfile::read(&self.config.pid_file())? else {
            return Ok(SidecarStatus::Stopped);
        };
        if !process::alive(info.pid, &info.program) {
            let removed = self.clean_stale(&info).await?;
            return Ok(SidecarStatus::Stale { info, removed });
        }
        match probe(&info.api_url).await {
            Some(identity) => Ok(SidecarStatus::Running {
                info,
                peer_id: identity.id,
                agent_version: identity.agent_version,
            }),
            None => Ok(SidecarStatus::Unresponsive { info }),
        }
    }

    /// Stops the daemon named by the pid file: SIGTERM, then SIGKILL when it is
    /// still there after the stop timeout; removes the pid file (and the lock
    /// files a killed Kubo leaves).
    pub async fn stop(&self) -> Result<StopOutcome, SidecarError> {
        if pidfile::read(&self.config.pid_file())?.is_none() {
            return Ok(StopOutcome::NotRunning);
        }
        let _lock = process::lock_launcher(&self.config.lock_file())?;
        // Read again under the lock: another launcher may have changed it.
        let Some(info) = pidfile::read(&self.config.pid_file())? else {
            return Ok(StopOutcome::NotRunning);
        };
        if !process::alive(info.pid, &info.program) {
            let removed = self.clean_stale(&info).await?;
            return Ok(StopOutcome::WasStale { info, removed });
        }
        tracing::info!(pid = info.pid, "stopping the IPFS sidecar");
        let forced =
            process::terminate_pid(info.pid, &info.program, self.config.stop_timeout).await?;
        self.forget(&info, forced)?;
        Ok(StopOutcome::Stopped { info, forced })
    }

    /// Locks, checks, prepares, spawns, records and waits; on any failure after
    /// the spawn the daemon is stopped and the pid file removed.
    async fn launch(
        &self,
        command: &DaemonCommand,
        mut cancel: Pin<&mut impl Future<Output = String>>,
    ) -> Result<(Child, SidecarInfo), SidecarError> {
        let config = &self.config;
        std::fs::create_dir_all(&config.home)
            .map_err(|e| SidecarError::io(format!("cannot create {}", config.home.display()), e))?;
        // Held until the daemon answers (or failed): one launcher at a time.
        let _lock = process::lock_launcher(&config.lock_file())?;
        match self.status().await? {
            SidecarStatus::Running { info, .. } => {
                return Err(SidecarError::AlreadyRunning {
                    pid: info.pid,
                    engine: info.engine,
                    api_url: info.api_url,
                });
            }
            SidecarStatus::Unresponsive { info } => {
                return Err(SidecarError::Unresponsive {
                    pid: info.pid,
                    api_url: info.api_url,
                });
            }
            SidecarStatus::Stale { .. } | SidecarStatus::Stopped => {}
        }
        process::check_ports(command.engine, config.ports)?;
        let repo = config.repo_dir();
        std::fs::create_dir_all(&repo)
            .map_err(|e| SidecarError::io(format!("cannot create {}", repo.display()), e))?;
        check_repo_free(&repo).await?;
        if command.engine == EngineKind::Kubo {
            tokio::select! {
                result = engine::prepare_kubo_repo(command, config) => result?,
                reason = cancel.as_mut() => return Err(SidecarError::Interrupted { reason }),
            }
        }

        let log_path = config.log_file();
        let (log, log_start) = open_log(&log_path, command)?;
        let log_err = log
            .try_clone()
            .map_err(|e| SidecarError::io(format!("cannot open {}", log_path.display()), e))?;
        let mut process = std::process::Command::new(&command.program);
        process
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        let mut child = process.spawn().map_err(|source| SidecarError::Spawn {
            program: command.program.clone(),
            source,
        })?;
        let info = SidecarInfo {
            pid: child.id(),
            engine: command.engine,
            api_url: config.api_url(),
            repo: repo.clone(),
            program: command.program.clone(),
        };
        tracing::debug!(pid = info.pid, command = %command.display(), "IPFS daemon spawned");

        let waited = match pidfile::write(&config.pid_file(), &info) {
            Ok(()) => self.wait_ready(&mut child, &info, log_start, cancel).await,
            Err(e) => Err(e),
        };
        match waited {
            Ok(()) => Ok((child, info)),
            Err(error) => {
                let forced = process::terminate_child(&mut child, config.stop_timeout)
                    .await
                    .unwrap_or(true);
                if let Err(cleanup) = self.forget(&info, forced) {
                    tracing::warn!(%cleanup, "cleaning up after a failed start");
                }
                Err(error)
            }
        }
    }

    /// Polls the API until it answers, the child exits, the deadline passes or
    /// `cancel` resolves.
    async fn wait_ready(
        &self,
        child: &mut Child,
        info: &SidecarInfo,
        log_start: u64,
        mut cancel: Pin<&mut impl Future<Output = String>>,
    ) -> Result<(), SidecarError> {
        let log = self.config.log_file();
        let client = KuboClient::with_options(&info.api_url, ClientOptions::probe())?;
        let deadline = Instant::now() + self.config.start_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(SidecarError::exited(
                    status,
                    log.clone(),
                    process::log_tail(&log, log_start),
                ));
            }
            tokio::select! {
                reason = cancel.as_mut() => return Err(SidecarError::Interrupted { reason }),
                answer = client.id() => if answer.is_ok() { return Ok(()) },
            }
            if Instant::now() >= deadline {
                return Err(SidecarError::StartTimeout {
                    api_url: info.api_url.clone(),
                    timeout: self.config.start_timeout,
                    log: log.clone(),
                    tail: process::log_tail(&log, log_start),
                });
            }
            tokio::select! {
                reason = cancel.as_mut() => return Err(SidecarError::Interrupted { reason }),
                () = tokio::time::sleep(READY_POLL) => {}
            }
        }
    }

    /// Removes the pid file of a daemon that is gone, and after a kill (or a
    /// crash) the `repo.lock` and `api` files it could not remove itself.
    fn forget(&self, info: &SidecarInfo, killed: bool) -> Result<Vec<PathBuf>, SidecarError> {
        let mut removed = Vec::new();
        let pid_file = self.config.pid_file();
        if pid_file.exists() {
            pidfile::remove(&pid_file)?;
            removed.push(pid_file);
        }
        if killed {
            removed.extend(remove_repo_leftovers(&info.repo)?);
        }
        Ok(removed)
    }

    /// Cleans up after a daemon that died without the launcher: its pid file, and
    /// its lock files unless a daemon answers at its address (another one then
    /// owns the repo).
    async fn clean_stale(&self, info: &SidecarInfo) -> Result<Vec<PathBuf>, SidecarError> {
        tracing::info!(
            pid = info.pid,
            "removing the pid file of an IPFS sidecar that is gone"
        );
        let answers = probe(&info.api_url).await.is_some();
        self.forget(info, !answers)
    }
}

/// `id` with short timeouts; `None` when nothing (valid) answers.
async fn probe(api_url: &str) -> Option<r3mes_ipfs::NodeIdentity> {
    let client = KuboClient::with_options(api_url, ClientOptions::probe()).ok()?;
    client.id().await.ok()
}

/// Fails when a daemon answers at the address in `<repo>/api` (someone runs one
/// on the repo by hand); removes the file when nothing answers, since Kubo's
/// commands refuse to work offline while it names a dead API.
async fn check_repo_free(repo: &Path) -> Result<(), SidecarError> {
    let Some(client) = KuboClient::from_repo_api_file_with_options(repo, ClientOptions::probe())
    else {
        return Ok(());
    };
    if client.id().await.is_ok() {
        return Err(SidecarError::RepoInUse {
            repo: repo.to_path_buf(),
            api_url: client.base_url().to_string(),
        });
    }
    let api_file = repo.join("api");
    tracing::info!(file = %api_file.display(), "removing a stale api file");
    match std::fs::remove_file(&api_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SidecarError::io(
            format!("cannot remove {}", api_file.display()),
            e,
        )),
    }
}

/// Removes Kubo's `repo.lock` and `api` from `repo`; returns what was removed.
fn remove_repo_leftovers(repo: &Path) -> Result<Vec<PathBuf>, SidecarError> {
    let mut removed = Vec::new();
    for name in ["repo.lock", "api"] {
        let path = repo.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SidecarError::io(
                    format!("cannot remove {}", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(removed)
}

/// Opens the log for appending, writes a header, returns it and where this run starts.
fn open_log(path: &Path, command: &DaemonCommand) -> Result<(std::fs::File, u64), SidecarError> {
    let context = || format!("cannot open the daemon log {}", path.display());
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SidecarError::io(context(), e))?;
    let start = file
        .metadata()
        .map(|m| m.len())
        .map_err(|e| SidecarError::io(context(), e))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    writeln!(
        file,
        "=== r3mes sidecar: {} (unix time {now}) ===",
        command.display()
    )
    .map_err(|e| SidecarError::io(context(), e))?;
    Ok((file, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes() {
        assert_eq!(
            home_from(Some("/x".into()), Some("/h".into())),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            home_from(Some("".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.r3mes"))
        );
        assert_eq!(home_from(None, None), None);
        assert_eq!(home_from(None, Some("".into())), None);
    }

    #[test]
    fn layout() {
        let config = SidecarConfig::new("/r");
        assert_eq!(config.repo_dir(), PathBuf::from("/r/ipfs"));
        assert_eq!(config.pid_file(), PathBuf::from("/r/ipfs-sidecar.pid"));
        assert_eq!(config.log_file(), PathBuf::from("/r/ipfs/daemon.log"));
        assert_eq!(config.api_url(), "http://127.0.0.1:5001");
        assert_eq!(
            config.ports,
            Ports {
                api: 5001,
                gateway: 8080,
                swarm: 4001
            }
        );
    }

    #[test]
    fn leftovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("repo.lock"), "").unwrap();
        std::fs::write(dir.path().join("config"), "{}").unwrap();
        let removed = remove_repo_leftovers(dir.path()).unwrap();
        assert_eq!(removed, vec![dir.path().join("repo.lock")]);
        assert!(dir.path().join("config").exists());
    }

    #[test]
    fn status_serialises() {
        let json = serde_json::to_value(SidecarStatus::Stopped).unwrap();
        assert_eq!(json, serde_json::json!({"state": "stopped"}));
    }
}
