//! The host agent: dials OUT to the server (no inbound port on hosts), receives the host's
//! desired instances, converges the Docker engine to them and reports what it sees.
//! Containers are found again by their labels, so restarting the agent restarts nothing.
#![forbid(unsafe_code)]

mod conn;
mod engine;
mod gpu;
mod instance;
mod jupyter;
mod logs;
mod ports;
mod ssh;
mod tunnel;

use berth_core::protocol::{ActualInstance, DesiredInstance, Gpu, HostFacts, PortRange};
use engine::Engine;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub use engine::EngineError;

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's base URL, `http://…` or `https://…`.
    pub server_url: String,
    pub token: berth_core::Secret,
    /// This host's unique name in the deployment.
    pub name: String,
    /// Where users reach this host's open ports.
    pub public_ip: String,
    /// Open host ports; `None` for a host behind NAT.
    pub port_range: Option<PortRange>,
    /// Where the agent keeps berth's init binary and the instances' state directories.
    pub data_dir: std::path::PathBuf,
    /// DNS names users reach this host by (named in jupyter certificates with the IP).
    pub dns_names: Vec<String>,
    /// A host without open ports maps instances' ports to loopback ports from this range,
    /// for the proxy tunnel.
    pub local_ports: PortRange,
    /// Dial the proxy's tunnel port here instead of the address the server names (its
    /// certificate is still checked for the name the server gives): `berth up` dials its
    /// in-process proxy on loopback, whatever public address users reach it at.
    pub proxy_addr: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("invalid agent config: {0}")]
    Config(String),
    #[error("{0}")]
    Refused(String),
    #[error(
        "another berth agent runs on the data dir {}: stop it first, or give this one its \
         own --data-dir",
        .0.display()
    )]
    DataDirInUse(std::path::PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// berth's static init, built by build.rs and carried inside the agent.
const INIT_BINARY: &[u8] = include_bytes!(env!("BERTH_INIT_PATH"));

/// Writes the init binary under `data_dir` (if it is not there already, byte for byte)
/// and returns its path.
fn install_init(data_dir: &std::path::Path) -> Result<std::path::PathBuf, AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = data_dir.join("bin");
    fn io<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> AgentError + 'a {
        move |source| AgentError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let path = dir.join("berth-init");
    if std::fs::read(&path).ok().as_deref() == Some(INIT_BINARY) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".berth-init.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(&tmp)
        .map_err(io("cannot write", &tmp))?;
    f.write_all(INIT_BINARY)
        .and_then(|()| f.sync_all())
        .map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("cannot write", &path))?;
    Ok(path)
}

/// Takes the data dir's lock file, or says that another agent holds it (two agents on one
/// data dir would converge the same containers). The lock goes with the process.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, AgentError> {
    let io = |what: &'static str, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| AgentError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let path = dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("cannot open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::DataDirInUse(dir.into())),
        Err(std::fs::TryLockError::Error(e)) => Err(io("cannot lock", &path)(e)),
    }
}

impl AgentConfig {
    fn validate(&self) -> Result<(), AgentError> {
        if self.public_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(AgentError::Config(format!(
                "--public-ip {:?} is not an IP address",
                self.public_ip
            )));
        }
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(AgentError::Config(format!(
                "host name {:?} must be 1 to 64 of letters, digits, '-', '_', '.'",
                self.name
            )));
        }
        for n in &self.dns_names {
            let ok = !n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(AgentError::Config(format!(
                    "--public-dns {n:?} is not a DNS name"
                )));
            }
        }
        if !(self.server_url.starts_with("http://") || self.server_url.starts_with("https://")) {
            return Err(AgentError::Config(format!(
                "server URL {:?} must start with http:// or https://",
                self.server_url
            )));
        }
        Ok(())
    }
}

/// State shared by the connection, the workers and the log streams.
pub(crate) struct Shared {
    engine: Engine,
    config: AgentConfig,
    init_path: std::path::PathBuf,
    facts: HostFacts,
    gpus: Vec<Gpu>,
    deployment: OnceLock<String>,
    /// The deployment's CA certificate, from the server's welcome.
    ca_pem: Mutex<Option<String>>,
    /// Where the tunnel to the proxy goes, from the latest welcome (the tunnel follows it).
    tunnel: watch::Sender<Option<berth_core::protocol::proxy::TunnelEndpoint>>,
    /// Whether the tunnel's task runs.
    tunnel_started: std::sync::Once,
    actual: Mutex<BTreeMap<i64, ActualInstance>>,
    /// Running instances' container addresses, which the tunnel dials (see `tunnel::dial`).
    addresses: Mutex<HashMap<i64, std::net::IpAddr>>,
    /// Signalled when `actual` changes.
    changed: Notify,
    allocator: tokio::sync::Mutex<ports::PortAllocator>,
    workers: Mutex<HashMap<i64, Worker>>,
    shutdown: CancellationToken,
}

struct Worker {
    desired: watch::Sender<Option<DesiredInstance>>,
    poke: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Shared {
    fn deployment(&self) -> &str {
        self.deployment.get().map(String::as_str).unwrap_or("")
    }

    /// Takes the proxy the server names in its welcome: starts the tunnel the first time,
    /// and moves it when the server names another address or name (a restarted server
    /// may have a new proxy host and certificate).
    fn use_tunnel(self: &Arc<Self>, endpoint: Option<berth_core::protocol::proxy::TunnelEndpoint>) {
        let Some(endpoint) = endpoint else { return };
        self.tunnel.send_if_modified(|cur| {
            let changed = cur.as_ref() != Some(&endpoint);
            if changed && cur.is_some() {
                tracing::info!(proxy = %endpoint.addr, "the server names another proxy: moving the tunnel");
            }
            *cur = Some(endpoint);
            changed
        });
        self.tunnel_started
            .call_once(|| drop(tokio::spawn(tunnel::run(self.clone()))));
    }

    /// Whether this host has a proxy to reach its instances through.
    fn has_tunnel(&self) -> bool {
        self.tunnel.borrow().is_some()
    }

    fn ca_pem(&self) -> Option<String> {
        self.ca_pem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn host_context(&self) -> berth_launch::HostContext {
        berth_launch::HostContext {
            deployment: self.deployment().to_string(),
            host: self.config.name.clone(),
            public_ip: self.config.public_ip.clone(),
            init_path: self.init_path.display().to_string(),
            state_root: self.config.data_dir.join("instances").display().to_string(),
        }
    }

    /// Host directories of instance `id`: its state (mounted read-only at `/.berth/state`)
    /// and its run directory (read-write at `/.berth/run`).
    fn dirs(&self, id: i64) -> ssh::Dirs {
        let host = self.host_context();
        ssh::Dirs {
            state: berth_launch::state_dir(&host, id).into(),
            run: berth_launch::run_dir(&host, id).into(),
        }
    }

    /// Host directory holding both of [`Shared::dirs`].
    fn instance_dir(&self, id: i64) -> std::path::PathBuf {
        berth_launch::instance_dir(&self.host_context(), id).into()
    }

    /// Records an instance's actual state; wakes the reporter if it changed.
    fn record(&self, a: ActualInstance) {
        let mut m = self.actual.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(&a.id) != Some(&a) {
            m.insert(a.id, a);
            drop(m);
            self.changed.notify_one();
        }
    }

    /// Remembers where instance `id`'s container is reachable now (`None`: not running).
    fn note_address(&self, id: i64, address: Option<std::net::IpAddr>) {
        let mut m = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        match address {
            Some(a) => m.insert(id, a),
            None => m.remove(&id),
        };
    }

    fn address(&self, id: i64) -> Option<std::net::IpAddr> {
        self.addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    fn forget(&self, id: i64) {
        self.note_address(id, None);
        let removed = self
            .actual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if removed.is_some() {
            self.changed.notify_one();
        }
    }

    fn snapshot(&self) -> Vec<ActualInstance> {
        self.actual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn container_of(&self, id: i64) -> Option<String> {
        self.actual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(|a| a.container_id.clone())
    }

    /// Wakes the worker of instance `id` (an engine event concerns it).
    fn poke(&self, id: i64) {
        if let Some(w) = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            w.poke.notify_one();
        }
    }

    /// Takes a new full desired set: updates workers, starts new ones, tells the others
    /// to remove their containers; containers of instances nobody wants are removed too.
    async fn apply_desired(self: &Arc<Self>, desired: Vec<DesiredInstance>) {
        let existing: HashSet<i64> = match self
            .engine
            .list_berth(self.deployment(), &self.config.name)
            .await
        {
            Ok(list) => list.into_iter().map(|(i, _)| i).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers");
                HashSet::new()
            }
        };
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.retain(|_, w| !w.task.is_finished());
        let wanted: HashSet<i64> = desired.iter().map(|d| d.id).collect();
        for d in desired {
            match workers.get(&d.id) {
                Some(w) => {
                    w.desired.send_if_modified(|cur| {
                        let changed = cur.as_ref() != Some(&d);
                        *cur = Some(d.clone());
                        changed
                    });
                }
                None => {
                    let id = d.id;
                    let w = self.spawn_worker(id, Some(d));
                    workers.insert(id, w);
                }
            }
        }
        for (id, w) in workers.iter() {
            if !wanted.contains(id) {
                w.desired.send_if_modified(|cur| cur.take().is_some());
            }
        }
        for id in existing {
            if !wanted.contains(&id) && !workers.contains_key(&id) {
                tracing::info!(
                    instance = id,
                    "removing the container of an instance that is no longer wanted"
                );
                let w = self.spawn_worker(id, None);
                workers.insert(id, w);
            }
        }
    }

    fn spawn_worker(self: &Arc<Self>, id: i64, d: Option<DesiredInstance>) -> Worker {
        let (tx, rx) = watch::channel(d);
        let poke = Arc::new(Notify::new());
        let task = tokio::spawn(instance::run(self.clone(), id, rx, poke.clone()));
        Worker {
            desired: tx,
            poke,
            task,
        }
    }
}

/// Runs the agent until `shutdown` is cancelled. Containers keep running afterwards.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.validate()?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let init_path = install_init(&config.data_dir)?;
    let engine = Engine::connect().await?;
    let docker_version = engine.version().await?;
    let gpus = gpu::inventory().await;
    let facts = HostFacts {
        name: config.name.clone(),
        public_ip: config.public_ip.clone(),
        port_range: config.port_range.clone(),
        gpus: gpus.clone(),
        dns_names: config.dns_names.clone(),
        docker_version,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    tracing::info!(host = %config.name, public_ip = %config.public_ip, ports = ?config.port_range, gpus = gpus.len(), "agent starting");
    let shared = Arc::new(Shared {
        engine,
        allocator: tokio::sync::Mutex::new(ports::PortAllocator::new(
            config.port_range.clone(),
            config.local_ports.clone(),
        )),
        init_path,
        config,
        facts,
        gpus,
        deployment: OnceLock::new(),
        ca_pem: Mutex::new(None),
        tunnel: watch::channel(None).0,
        tunnel_started: std::sync::Once::new(),
        actual: Mutex::new(BTreeMap::new()),
        addresses: Mutex::new(HashMap::new()),
        changed: Notify::new(),
        workers: Mutex::new(HashMap::new()),
        shutdown: shutdown.clone(),
    });
    let result = conn::run(shared.clone()).await;
    shared.shutdown.cancel();
    let workers: Vec<_> = shared
        .workers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, w)| w.task)
        .collect();
    for t in workers {
        let _ = t.await;
    }
    result
}
