//! [`SidecarError`]: what can go wrong while finding, starting, watching or
//! stopping the IPFS sidecar. The RPC client returns [`r3mes_ipfs::Error`]
//! instead, since it implements that crate's `ContentStore`.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::sidecar::EngineKind;

/// Errors of the sidecar launcher. Each says what failed and why.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// Neither `R3MES_HOME` nor `HOME` tells where the r3mes home is.
    #[error("cannot locate the r3mes home: neither R3MES_HOME nor HOME is set")]
    NoHome,
    /// A Kubo binary named explicitly (argument or `R3MES_KUBO_BIN`) cannot be used.
    #[error("Kubo binary {path}: {reason}")]
    BadBinary {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be run.
        reason: String,
    },
    /// The configuration cannot work (equal ports, port 0, a newline in a path...).
    #[error("invalid sidecar configuration: {0}")]
    InvalidConfig(String),
    /// A port the daemon needs is taken.
    #[error(
        "the {role} port {port} is already in use ({source}); stop what listens there or choose another port"
    )]
    PortBusy {
        /// `API`, `gateway` or `swarm`.
        role: &'static str,
        /// The port.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Another launcher holds the sidecar's launcher lock (it is starting or stopping it).
    #[error(
        "another r3mes launcher is starting or stopping the IPFS sidecar (it holds {path}); try again when it is done"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// A sidecar recorded in the pid file is running and answering.
    #[error("an IPFS sidecar is already running (pid {pid}, engine {engine}, API {api_url})")]
    AlreadyRunning {
        /// Its process id.
        pid: u32,
        /// Which engine it is.
        engine: EngineKind,
        /// Where its API answers.
        api_url: String,
    },
    /// A daemon the launcher did not start already serves the sidecar's repo.
    #[error(
        "a daemon the launcher did not start already serves the repo {repo} (API {api_url}); stop it first"
    )]
    RepoInUse {
        /// The repo.
        repo: PathBuf,
        /// Where that daemon answers.
        api_url: String,
    },
    /// The recorded process is alive but its API does not answer.
    #[error(
        "the sidecar process {pid} is alive but its API at {api_url} does not answer; stop it first"
    )]
    Unresponsive {
        /// Its process id.
        pid: u32,
        /// Where its API should answer.
        api_url: String,
    },
    /// A preparation step (`ipfs init`, `ipfs config ...`) failed.
    #[error("`{step}` failed ({status}): {output}")]
    Setup {
        /// The command line that failed.
        step: String,
        /// Its exit status, or why it did not finish.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// The daemon program could not be started at all.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon did not answer in time; it has been stopped.
    #[error(
        "the IPFS daemon did not answer at {api_url} within {timeout:?}, so it was stopped; end of {log}:\n{tail}"
    )]
    StartTimeout {
        /// Where it should have answered.
        api_url: String,
        /// How long the launcher waited.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines it wrote.
        tail: String,
    },
    /// The daemon exited by itself.
    #[error("the IPFS daemon exited ({status}); end of {log}:\n{tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines it wrote.
        tail: String,
    },
    /// The launcher was interrupted while waiting for the daemon, which has been stopped.
    #[error("interrupted ({reason}) while waiting for the IPFS daemon; the daemon was stopped")]
    Interrupted {
        /// The signal or reason.
        reason: String,
    },
    /// The daemon survived SIGTERM and SIGKILL.
    #[error("cannot stop the IPFS daemon (pid {pid}): {reason}")]
    StopFailed {
        /// Its process id.
        pid: u32,
        /// What happened.
        reason: String,
    },
    /// The pid file exists but cannot be understood.
    #[error("pid file {path} is malformed ({reason}); remove it if no sidecar runs")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The API client could not be built.
    #[error("IPFS API client: {0}")]
    Client(#[from] r3mes_ipfs::Error),
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SidecarError {
    /// Wraps an I/O error with the operation that failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SidecarError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn exited(status: ExitStatus, log: PathBuf, tail: String) -> Self {
        SidecarError::Exited {
            status: status.to_string(),
            log,
            tail,
        }
    }
}
