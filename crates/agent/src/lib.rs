//! The host agent: dials OUT to the server (no inbound port on hosts), receives the host's
//! desired instances, converges the Docker engine to them and reports what it sees.
//! Containers are found again by their labels, so restarting the agent restarts nothing.
#![forbid(unsafe_code)]

mod conn;
mod engine;
mod gpu;
mod instance;
mod logs;
mod ports;

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
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("invalid agent config: {0}")]
    Config(String),
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
    facts: HostFacts,
    gpus: Vec<Gpu>,
    deployment: OnceLock<String>,
    actual: Mutex<BTreeMap<i64, ActualInstance>>,
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

    /// Records an instance's actual state; wakes the reporter if it changed.
    fn record(&self, a: ActualInstance) {
        let mut m = self.actual.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(&a.id) != Some(&a) {
            m.insert(a.id, a);
            drop(m);
            self.changed.notify_one();
        }
    }

    fn forget(&self, id: i64) {
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
    let engine = Engine::connect().await?;
    let docker_version = engine.version().await?;
    let gpus = gpu::inventory().await;
    let facts = HostFacts {
        name: config.name.clone(),
        public_ip: config.public_ip.clone(),
        port_range: config.port_range.clone(),
        gpus: gpus.clone(),
        docker_version,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    tracing::info!(host = %config.name, public_ip = %config.public_ip, ports = ?config.port_range, gpus = gpus.len(), "agent starting");
    let shared = Arc::new(Shared {
        engine,
        allocator: tokio::sync::Mutex::new(ports::PortAllocator::new(config.port_range.clone())),
        config,
        facts,
        gpus,
        deployment: OnceLock::new(),
        actual: Mutex::new(BTreeMap::new()),
        changed: Notify::new(),
        workers: Mutex::new(HashMap::new()),
        shutdown: shutdown.clone(),
    });
    conn::run(shared.clone()).await;
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
    Ok(())
}
