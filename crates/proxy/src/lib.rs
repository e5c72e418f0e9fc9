//! berth's proxy: makes instances reachable on hosts with no open ports, and gives every
//! ssh/jupyter instance a second path.
//!
//! - Agents dial OUT to the tunnel port (TLS with the proxy's certificate from berth's CA),
//!   authenticate with the proxy token and keep one multiplexed tunnel each
//!   ([`berth_tunnel`]). The proxy never dials a host.
//! - Every route's `ssh_port` is a TCP listener relayed through the tunnel to port 22 of
//!   the instance.
//! - The HTTPS front serves `https://i<ID>-<PORT>.<domain>/`: Jupyter's 8080 (TLS upstream,
//!   verified against berth's CA; Jupyter's own token) and the ports the user marked http
//!   (behind the instance's access token: a link with `?berth_token=` sets a cookie).
//!
//! The proxy takes its settings and its route table from the berth server
//! ([`berth_core::protocol::proxy`]); it only ever opens (host, instance, port) triples that
//! the table names.
#![forbid(unsafe_code)]

mod http;
mod https;
mod routes;
mod server;
mod ssh;
mod tls;
mod tunnel;

use berth_core::Secret;
use berth_tunnel::Tunnels;
use routes::RouteBook;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to start a proxy: everything else comes from the server.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The berth server, e.g. `http://127.0.0.1:7480`.
    pub server_url: String,
    /// The proxy token: authenticates the proxy to the server, and agents to the proxy.
    pub token: Secret,
    /// Where every listener binds (tunnel, HTTPS, SSH ports), e.g. `0.0.0.0` or `127.0.0.1`.
    pub listen_ip: IpAddr,
    /// The HTTPS front's certificate from the operator (e.g. from ACME) instead of the one
    /// berth's CA issues; its files are read again when they change.
    pub https_cert: Option<CertFiles>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate first, then any intermediates (a `fullchain.pem`).
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "the berth server at {url} refused the proxy token (HTTP {status}{}): give the proxy the \
         server's proxy token",
        if body.is_empty() { String::new() } else { format!(": {body}") }
    )]
    Unauthorized {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the server's proxy settings are unusable: {0}")]
    BadConfig(String),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot make the proxy's HTTP client: {0}")]
    Client(String),
    #[error("the proxy was stopped before it started")]
    Cancelled,
    #[error("a proxy task failed: {0}")]
    Task(String),
}

/// What every listener shares.
pub(crate) struct Shared {
    pub book: Arc<RouteBook>,
    pub tunnels: Tunnels,
    pub shutdown: CancellationToken,
}

/// A started proxy: its listeners are bound. Stop it by cancelling the token given to
/// [`start`], then [`RunningProxy::wait`] until its listeners are closed.
pub struct RunningProxy {
    tunnel_addr: SocketAddr,
    https_addr: SocketAddr,
    domain: String,
    tunnels: Tunnels,
    ssh_bound: Arc<Mutex<BTreeSet<u16>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// Where agents' tunnels arrive (the config's `tunnel_port`, or the port the system
    /// chose when it is 0).
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.tunnel_addr
    }

    /// The HTTPS front (the config's `https_port`, or the chosen one when it is 0).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The HTTPS names' domain (`i<ID>-<PORT>.<domain>`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The agents' tunnels (e.g. `is_connected(host)`).
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// The SSH proxy ports listened on now.
    pub fn ssh_ports(&self) -> Vec<u16> {
        self.ssh_bound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Waits until the proxy has stopped (after the shutdown token is cancelled) and every
    /// listener is closed.
    pub async fn wait(self) -> Result<(), ProxyError> {
        let mut failed = None;
        for task in self.tasks {
            if let Err(e) = task.await {
                failed.get_or_insert(ProxyError::Task(e.to_string()));
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { what, addr, source })
}

/// Fetches the settings from the server (retrying until it answers), binds the tunnel and
/// HTTPS listeners, loads the route table once (opening its SSH ports) and returns; the
/// proxy then runs until `shutdown` is cancelled.
pub async fn start(
    cfg: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<RunningProxy, ProxyError> {
    let server = Arc::new(server::Server::new(&cfg)?);
    let remote = server.config_with_retry(&shutdown).await?;
    let tunnel_tls = tls::server(&remote, &[])?;
    let file_cert = match &cfg.https_cert {
        Some(files) => Some(tls::FileCert::load(files.clone())?),
        None => None,
    };
    let https_tls = match &file_cert {
        Some(fc) => tls::server_with(fc.clone(), &[b"http/1.1"])?,
        None => tls::server(&remote, &[b"http/1.1"])?,
    };
    let upstream_tls = tls::upstream_client(&remote)?;

    let tunnel_listener = bind(
        "agent tunnels",
        SocketAddr::new(cfg.listen_ip, remote.tunnel_port),
    )
    .await?;
    let https_listener = bind("HTTPS", SocketAddr::new(cfg.listen_ip, remote.https_port)).await?;
    let tunnel_addr = tunnel_listener
        .local_addr()
        .map_err(|source| ProxyError::Bind {
            what: "agent tunnels",
            addr: SocketAddr::new(cfg.listen_ip, remote.tunnel_port),
            source,
        })?;
    let https_addr = https_listener
        .local_addr()
        .map_err(|source| ProxyError::Bind {
            what: "HTTPS",
            addr: SocketAddr::new(cfg.listen_ip, remote.https_port),
            source,
        })?;

    let shared = Arc::new(Shared {
        book: RouteBook::new(),
        tunnels: Tunnels::new(),
        shutdown: shutdown.clone(),
    });
    let ssh = ssh::SshPorts::new(cfg.listen_ip, shared.clone());
    let ssh_bound = ssh.bound.clone();
    let mut poller = routes::Poller::new(
        shared.book.clone(),
        server.clone(),
        ssh,
        remote.ssh_ports.clone(),
        vec![tunnel_addr.port(), https_addr.port()],
        shutdown.clone(),
    );
    poller.fetch_once().await;

    let front = Arc::new(https::Front {
        acceptor: tokio_rustls::TlsAcceptor::from(https_tls),
        upstream: tokio_rustls::TlsConnector::from(upstream_tls),
        domain: remote.domain.clone(),
        shared: shared.clone(),
    });
    let mut tasks = vec![
        tokio::spawn(tunnel::serve(
            tunnel_listener,
            tokio_rustls::TlsAcceptor::from(tunnel_tls),
            shared.clone(),
            cfg.token.clone(),
        )),
        tokio::spawn(https::serve(https_listener, front)),
        tokio::spawn(poller.run()),
    ];
    if let Some(fc) = file_cert {
        tasks.push(tokio::spawn(fc.watch(shutdown.clone())));
    }
    tracing::info!(
        tunnels = %tunnel_addr,
        https = %https_addr,
        "proxy up: agents' tunnels on {tunnel_addr}, HTTPS at https://i<ID>-<PORT>.{}:{}/, SSH ports {}-{}",
        remote.domain,
        https_addr.port(),
        remote.ssh_ports.first,
        remote.ssh_ports.last,
    );
    Ok(RunningProxy {
        tunnel_addr,
        https_addr,
        domain: remote.domain,
        tunnels: shared.tunnels.clone(),
        ssh_bound,
        tasks,
    })
}

/// [`start`], then runs until `shutdown` is cancelled. Cancelled before the server
/// answered is a clean stop.
pub async fn run(cfg: ProxyConfig, shutdown: CancellationToken) -> Result<(), ProxyError> {
    match start(cfg, shutdown).await {
        Ok(proxy) => proxy.wait().await,
        Err(ProxyError::Cancelled) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies both ways until both sides are done, either fails, or `alive` is cancelled.
pub(crate) async fn pipe<A, B>(a: &mut A, b: &mut B, alive: &CancellationToken)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = alive.cancelled() => {}
        r = tokio::io::copy_bidirectional(a, b) => {
            if let Err(e) = r {
                tracing::debug!("proxied connection ended: {e}");
            }
        }
    }
}
