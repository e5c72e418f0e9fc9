//! The control plane: REST API (`/api/v1`), the agent hub (agents dial in over WebSocket),
//! the scheduler and the store. [`start`] binds, bootstraps the admin account, the
//! deployment id and the agent token, and serves until `shutdown` is cancelled.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod error;
mod gui;
mod hub;
mod scheduler;
mod view;

use berth_core::Secret;
use berth_store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use hub::Hub;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `sqlite:…` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub db_url: Option<String>,
    /// Keeps the SQLite database, the admin API key file and the deployment's certificate
    /// authority (`ca.key`, `ca.crt`).
    pub data_dir: PathBuf,
    /// The deployment's proxy, if it has one.
    pub proxy: Option<ProxySettings>,
}

/// Where the deployment's proxy is and what it serves (the proxy fetches these from the
/// server, so they are configured once, here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Host name or IP users and agents reach the proxy at.
    pub public_host: String,
    /// HTTPS names are `i<ID>-<PORT>.<domain>`.
    pub domain: String,
    pub tunnel_port: u16,
    pub https_port: u16,
    /// Instances' SSH proxy ports come from here.
    pub ssh_ports: berth_core::protocol::PortRange,
}

impl ProxySettings {
    fn host_for_url(&self) -> String {
        if self.public_host.contains(':') {
            format!("[{}]", self.public_host)
        } else {
            self.public_host.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] berth_store::StoreError),
    #[error("certificate authority: {0}")]
    Ca(#[from] berth_ca::CaError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another berth server (or berth up) runs on the data dir {}: stop it first, or give \
         this one its own --data-dir",
        .0.display()
    )]
    DataDirInUse(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub admin_api_key: Secret,
    pub agent_token: Secret,
    pub deployment: String,
    hub: Hub,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Held while the server runs: one server a data dir.
    _lock: std::fs::File,
}

impl RunningServer {
    /// Waits until the agent of `host` is connected, at most `timeout`.
    pub async fn wait_for_host(&self, host: &str, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.hub.is_connected(host) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// Waits until the server has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

pub(crate) struct AppState {
    pub store: Store,
    pub hub: Hub,
    pub agent_token: Secret,
    /// The deployment's certificate authority (served at `/api/v1/ca.crt`).
    pub ca: Arc<berth_ca::Ca>,
    pub proxy: Option<ProxySettings>,
    /// Keys the GUI sessions' proofs (see `auth::session_proof`).
    pub session_secret: Secret,
    /// The proxy's certificate, issued on first request.
    pub proxy_cert: tokio::sync::OnceCell<berth_ca::Issued>,
}

pub(crate) type App = Arc<AppState>;

/// Opens the store, bootstraps secrets and serves the API and the agent endpoint.
pub async fn start(
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    create_private_dir(&config.data_dir)?;
    let lock = lock_data_dir(&config.data_dir)?;
    let db_url = match &config.db_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", config.data_dir.join("berth.db").display()),
    };
    let store = Store::open(&db_url).await?;
    let now = auth::now_ms();
    let deployment = store
        .meta_get_or_insert("deployment", &auth::random_hex(6))
        .await?;
    let session_secret = Secret::new(
        store
            .meta_get_or_insert("session_secret", &auth::random_hex(32))
            .await?,
    );
    let agent_token = Secret::new(
        store
            .meta_get_or_insert(
                "agent_token",
                &format!("berth_agent_{}", auth::random_hex(20)),
            )
            .await?,
    );
    let admin_api_key = auth::bootstrap_admin(&store, &config.data_dir, now).await?;
    let ca = Arc::new(berth_ca::Ca::load_or_create(
        &config.data_dir,
        &format!("berth CA {deployment}"),
    )?);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;

    let tunnel = config
        .proxy
        .as_ref()
        .map(|p| berth_core::protocol::proxy::TunnelEndpoint {
            addr: format!("{}:{}", p.host_for_url(), p.tunnel_port),
            server_name: p.public_host.clone(),
        });
    let hub = Hub::new(
        store.clone(),
        ca.clone(),
        deployment.clone(),
        tunnel,
        shutdown.clone(),
    );
    let state = Arc::new(AppState {
        store,
        hub: hub.clone(),
        agent_token: agent_token.clone(),
        ca,
        proxy: config.proxy.clone(),
        session_secret,
        proxy_cert: tokio::sync::OnceCell::new(),
    });
    let router = api::router(state);
    tracing::info!(%addr, db = %redact_db_url(&db_url), %deployment, "server listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    Ok(RunningServer {
        addr,
        admin_api_key,
        agent_token,
        deployment,
        hub,
        task,
        _lock: lock,
    })
}

/// Takes the data dir's lock file, or says that another server holds it (two servers on
/// one data dir would both drive the same agents and containers). The lock goes with the
/// process, however it ends.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, ServerError> {
    let path = dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ServerError::Io {
            what: "cannot open",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::DataDirInUse(dir.into())),
        Err(std::fs::TryLockError::Error(source)) => Err(ServerError::Io {
            what: "cannot lock",
            path,
            source,
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServerError::Io {
            what: "cannot create data dir",
            path: dir.to_path_buf(),
            source,
        })
}

/// Hides a password in a database URL for logs.
fn redact_db_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn db_passwords_are_hidden() {
        assert_eq!(
            super::redact_db_url("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_db_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
