//! [`Daemon`]: the RPC API and the gateway served together over one repo.
//!
//! Both listeners are bound before anything else happens, so a busy port is an
//! error naming it and nothing is left half-started. Then `<repo>/api` is
//! written with the API's multiaddr (`/ip4/127.0.0.1/tcp/5001`), as Kubo
//! writes it, so other commands find the running daemon instead of opening the
//! repo; it is removed again on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use r3mes_ipfs::Repo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{API_FILE, DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT, Error, Result};

/// How long a graceful shutdown waits for requests in flight (a long download,
/// say) before it drops them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

const API: &str = "IPFS RPC API";
const GATEWAY: &str = "IPFS gateway";

/// Where the daemon listens. Port 0 asks the OS for a free port; the handle
/// reports the one bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonConfig {
    /// RPC API address (default `127.0.0.1:5001`). The API can change the repo:
    /// keep it on a loopback address.
    pub api_addr: SocketAddr,
    /// Gateway address (default `127.0.0.1:8080`).
    pub gateway_addr: SocketAddr,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            api_addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_GATEWAY_PORT)),
        }
    }
}

impl DaemonConfig {
    /// Both servers on loopback at the given ports (0 for any free port).
    pub fn loopback(api_port: u16, gateway_port: u16) -> Self {
        Self {
            api_addr: SocketAddr::from(([127, 0, 0, 1], api_port)),
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], gateway_port)),
        }
    }
}

/// The embedded IPFS daemon's HTTP servers.
pub struct Daemon;

impl Daemon {
    /// Binds both listeners, writes `<repo>/api` (for a repo on disk) and starts
    /// serving. Must be called inside a tokio runtime.
    pub async fn start(repo: Repo, config: DaemonConfig) -> Result<DaemonHandle> {
        if config.api_addr == config.gateway_addr && config.api_addr.port() != 0 {
            return Err(Error::Config(format!(
                "the RPC API and the gateway cannot both listen on {}",
                config.api_addr
            )));
        }
        let api_listener = bind(API, config.api_addr).await?;
        let gateway_listener = bind(GATEWAY, config.gateway_addr).await?;
        let api_addr = local_addr(API, config.api_addr, &api_listener)?;
        let gateway_addr = local_addr(GATEWAY, config.gateway_addr, &gateway_listener)?;
        if !api_addr.ip().is_loopback() {
            tracing::warn!(
                "the IPFS RPC API listens on {api_addr}, which is not a loopback address: \
                 anyone who reaches it can add, pin and delete content"
            );
        }

        let api_file = match repo.path() {
            Some(dir) => {
                let path = dir.join(API_FILE);
                write_api_file(&path, api_addr)?;
                Some(path)
            }
            None => None,
        };

        let token = CancellationToken::new();
        let api_task = serve(API, api_listener, crate::api::router(repo.clone()), &token);
        let gateway_task = serve(
            GATEWAY,
            gateway_listener,
            crate::gateway::router(repo),
            &token,
        );
        tracing::info!("IPFS RPC API listening on http://{api_addr}/api/v0");
        tracing::info!("IPFS gateway listening on http://{gateway_addr}/ipfs/");
        Ok(DaemonHandle {
            api_addr,
            gateway_addr,
            token,
            tasks: vec![(API, api_task), (GATEWAY, gateway_task)],
            api_file,
        })
    }
}

async fn bind(service: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| {
        let reason = match source.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "port {} is already in use (another IPFS daemon? stop it or choose another port)",
                addr.port()
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("permission denied for port {}", addr.port())
            }
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{} is not an address of this machine", addr.ip())
            }
            _ => source.to_string(),
        };
        Error::Bind {
            service,
            addr,
            reason,
            source,
        }
    })
}

fn local_addr(
    service: &'static str,
    asked: SocketAddr,
    listener: &TcpListener,
) -> Result<SocketAddr> {
    listener.local_addr().map_err(|source| Error::Bind {
        service,
        addr: asked,
        reason: format!("cannot read the bound address: {source}"),
        source,
    })
}

/// Kubo's multiaddr of the API (an unspecified address is reached on loopback).
fn api_multiaddr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => {
            let ip = if v4.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST
            } else {
                *v4.ip()
            };
            format!("/ip4/{ip}/tcp/{}", v4.port())
        }
        SocketAddr::V6(v6) => {
            let ip = if v6.ip().is_unspecified() {
                std::net::Ipv6Addr::LOCALHOST
            } else {
                *v6.ip()
            };
            format!("/ip6/{ip}/tcp/{}", v6.port())
        }
    }
}

/// Writes the file through a temporary name, so a reader never sees half of it.
fn write_api_file(path: &std::path::Path, addr: SocketAddr) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, api_multiaddr(addr))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| Error::ApiFile {
            action: "writing",
            path: path.to_path_buf(),
            source,
        })
}

fn serve(
    service: &'static str,
    listener: TcpListener,
    router: axum::Router,
    token: &CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let stop = token.clone().cancelled_owned();
    let token = token.clone();
    tokio::spawn(async move {
        let outcome = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await;
        if let Err(e) = &outcome {
            tracing::error!("the {service} stopped: {e}");
            // One server down takes the daemon down: stop the other one too.
            token.cancel();
        }
        outcome
    })
}

/// A running daemon: its addresses, and the way to stop it.
pub struct DaemonHandle {
    api_addr: SocketAddr,
    gateway_addr: SocketAddr,
    token: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
    api_file: Option<PathBuf>,
}

impl DaemonHandle {
    /// Where the RPC API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where the gateway listens.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway_addr
    }

    /// The API's base URL, such as `http://127.0.0.1:5001/api/v0`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v0", self.api_addr)
    }

    /// The gateway's base URL, such as `http://127.0.0.1:8080`.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway_addr)
    }

    /// The API multiaddr written to `<repo>/api`.
    pub fn api_multiaddr(&self) -> String {
        api_multiaddr(self.api_addr)
    }

    /// Stops accepting connections, lets requests in flight finish (up to 10 s,
    /// then drops them), and removes `<repo>/api`.
    pub async fn shutdown(self) -> Result<()> {
        self.token.cancel();
        self.finish().await
    }

    /// Serves until one of `signals` arrives, or until a server fails; then
    /// shuts down as [`DaemonHandle::shutdown`] does.
    pub async fn run_until_signal(self, mut signals: ShutdownSignals) -> Result<()> {
        tokio::select! {
            name = signals.recv() => {
                tracing::info!("received {name}, shutting down the IPFS daemon");
            }
            () = self.token.cancelled() => {}
        }
        self.shutdown().await
    }

    async fn finish(mut self) -> Result<()> {
        let mut first_error = None;
        for (service, mut task) in std::mem::take(&mut self.tasks) {
            let outcome = match tokio::time::timeout(DRAIN_TIMEOUT, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(
                        "the {service} still had requests in flight after {DRAIN_TIMEOUT:?}; dropping them"
                    );
                    task.abort();
                    continue;
                }
            };
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(source)) => Some(Error::Serve { service, source }),
                Err(e) => Some(Error::Task {
                    service,
                    reason: e.to_string(),
                }),
            };
            if first_error.is_none() {
                first_error = error;
            }
        }
        let removed = self.remove_api_file();
        match first_error {
            Some(e) => Err(e),
            None => removed,
        }
    }

    /// Removes `<repo>/api` if it still names this daemon.
    fn remove_api_file(&mut self) -> Result<()> {
        let Some(path) = self.api_file.take() else {
            return Ok(());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim() == api_multiaddr(self.api_addr) => std::fs::remove_file(&path)
                .map_err(|source| Error::ApiFile {
                    action: "removing",
                    path,
                    source,
                }),
            _ => Ok(()),
        }
    }
}

impl Drop for DaemonHandle {
    /// A handle dropped without [`DaemonHandle::shutdown`] still stops the
    /// servers and removes the `api` file, so no stale file is left behind.
    fn drop(&mut self) {
        self.token.cancel();
        if let Err(e) = self.remove_api_file() {
            tracing::warn!("{e}");
        }
    }
}

/// SIGINT and SIGTERM handlers, installed when this is made: a process that
/// prints "ready" after installing them cannot be killed by a signal sent
/// right after reading that line (the default action would end it with no
/// clean shutdown).
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Must run inside a Tokio runtime.
    pub fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).map_err(Error::Signal)?,
                int: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves with the signal's name when one arrives.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_are_kubos() {
        assert_eq!(
            api_multiaddr("127.0.0.1:5001".parse().unwrap()),
            "/ip4/127.0.0.1/tcp/5001"
        );
        assert_eq!(
            api_multiaddr("0.0.0.0:1".parse().unwrap()),
            "/ip4/127.0.0.1/tcp/1"
        );
        assert_eq!(
            api_multiaddr("[::1]:5001".parse().unwrap()),
            "/ip6/::1/tcp/5001"
        );
    }

    #[tokio::test]
    async fn busy_ports_are_named_and_nothing_starts() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = Daemon::start(repo.clone(), DaemonConfig::loopback(0, port))
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains(&format!("port {port} is already in use")),
            "{text}"
        );
        assert!(text.contains("IPFS gateway"), "{text}");
        assert!(!dir.path().join(API_FILE).exists());

        let same = DaemonConfig::loopback(port, port);
        assert!(matches!(
            Daemon::start(repo, same).await,
            Err(Error::Config(_))
        ));
    }

    #[tokio::test]
    async fn api_file_lives_as_long_as_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let handle = Daemon::start(repo, DaemonConfig::loopback(0, 0))
            .await
            .unwrap();
        assert_ne!(handle.api_addr().port(), 0);
        assert_ne!(handle.gateway_addr().port(), 0);
        let file = dir.path().join(API_FILE);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("/ip4/127.0.0.1/tcp/{}", handle.api_addr().port())
        );
        handle.shutdown().await.unwrap();
        assert!(!file.exists());
    }
}
