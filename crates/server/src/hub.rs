//! The agent hub: agents dial in over WebSocket ([`berth_core::protocol`]); the hub keeps
//! one connection per host, pushes the host's full desired set whenever it changes, stores
//! the full actual set each report, and routes log streams.
use crate::auth::now_ms;
use crate::error::ApiError;
use axum::extract::ws::{Message, WebSocket};
use berth_core::protocol::{
    decode_log_frame, ActualInstance, AgentMessage, DesiredInstance, HostFacts, ImageFacts,
    JupyterMaterial, ServerMessage, PROTOCOL_VERSION, REPORT_INTERVAL_SECS,
};
use berth_core::spec::TlsMaterial;
use berth_core::LaunchMode;
use berth_store::Store;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// An agent silent for this long is dropped.
const AGENT_SILENCE: Duration = Duration::from_secs(REPORT_INTERVAL_SECS * 4);
/// Log chunks buffered for one reader before it is cut off as too slow.
const LOG_BUFFER: usize = 512;
/// How long an agent may take to inspect an image (pulling it first can be slow).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(600);

/// Image inspections waiting for an agent's answer, by request id.
type PendingInspects = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<ImageFacts, String>>>>>;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    store: Store,
    ca: Arc<berth_ca::Ca>,
    deployment: String,
    tunnel: Option<berth_core::protocol::proxy::TunnelEndpoint>,
    shutdown: CancellationToken,
    /// Bumped whenever an instance or a host changes: the proxy's routes long-poll on it.
    routes_version: tokio::sync::watch::Sender<u64>,
    agents: Mutex<HashMap<String, AgentHandle>>,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct AgentHandle {
    conn_id: u64,
    facts: HostFacts,
    desired_changed: Arc<Notify>,
    out: mpsc::UnboundedSender<ServerMessage>,
    logs: Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>,
    inspects: PendingInspects,
}

impl Hub {
    pub fn new(
        store: Store,
        ca: Arc<berth_ca::Ca>,
        deployment: String,
        tunnel: Option<berth_core::protocol::proxy::TunnelEndpoint>,
        shutdown: CancellationToken,
    ) -> Self {
        Hub {
            inner: Arc::new(HubInner {
                store,
                ca,
                deployment,
                tunnel,
                shutdown,
                routes_version: tokio::sync::watch::Sender::new(1),
                agents: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentHandle>> {
        self.inner.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Facts of the hosts whose agents are connected now.
    pub fn online_hosts(&self) -> Vec<HostFacts> {
        self.agents().values().map(|a| a.facts.clone()).collect()
    }

    pub fn is_connected(&self, host: &str) -> bool {
        self.agents().contains_key(host)
    }

    /// A receiver of the routes version (see [`Hub::routes_changed`]).
    pub fn routes_version(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.routes_version.subscribe()
    }

    /// Something the proxy's routes depend on changed.
    pub fn routes_changed(&self) {
        self.inner.routes_version.send_modify(|v| *v += 1);
    }

    /// Tells the host's agent (if connected) that its desired set changed.
    pub fn desired_changed(&self, host: &str) {
        self.routes_changed();
        if let Some(a) = self.agents().get(host) {
            a.desired_changed.notify_one();
        }
    }

    /// Opens a log stream of `instance` on `host`; the stream closes on the agent's side
    /// when the returned value is dropped.
    pub fn open_logs(
        &self,
        host: &str,
        instance: i64,
        follow: bool,
        tail: Option<u64>,
        onstart: bool,
    ) -> Result<LogStream, ApiError> {
        let agent = self.agents().get(host).cloned().ok_or_else(|| {
            ApiError::Unavailable(format!("host {host} is offline; logs cannot be read now"))
        })?;
        let stream = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(LOG_BUFFER);
        agent
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stream, tx);
        agent
            .out
            .send(ServerMessage::OpenLogs {
                stream,
                instance,
                follow,
                tail,
                onstart,
            })
            .map_err(|_| ApiError::Unavailable(format!("host {host} went offline")))?;
        Ok(LogStream { rx, stream, agent })
    }

    /// Has an online agent (the one with the fewest instances) inspect `image`, pulling it
    /// first if its host does not have it, and waits for the answer (at most
    /// [`INSPECT_TIMEOUT`]). An image that cannot be had is a 400 on the field `image` with
    /// the agent's reason; no agent, or one that goes away or takes too long, is a 503.
    pub async fn inspect_image(&self, image: &str) -> Result<ImageFacts, ApiError> {
        let mut load: HashMap<String, usize> = HashMap::new();
        for row in self.inner.store.list_instances(None).await? {
            *load.entry(row.host).or_default() += 1;
        }
        let (host, agent) = self
            .agents()
            .iter()
            .min_by_key(|(name, _)| (load.get(*name).copied().unwrap_or(0), (*name).clone()))
            .map(|(name, a)| (name.clone(), a.clone()))
            .ok_or_else(|| {
                ApiError::Unavailable(
                    "no host is online to inspect the image: start an agent (berth agent) or berth up"
                        .into(),
                )
            })?;
        let request = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&agent.inspects).insert(request, tx);
        // Removes the entry however this ends (answer, timeout, the caller going away).
        let _pending = PendingInspect {
            inspects: agent.inspects.clone(),
            request,
        };
        agent
            .out
            .send(ServerMessage::InspectImage {
                request,
                image: image.to_string(),
            })
            .map_err(|_| ApiError::Unavailable(format!("host {host} went offline")))?;
        tracing::info!(%host, %image, request, "asked an agent to inspect an image");
        match tokio::time::timeout(INSPECT_TIMEOUT, rx).await {
            Ok(Ok(Ok(facts))) => Ok(facts),
            Ok(Ok(Err(reason))) => Err(berth_core::FieldError::new("image", reason).into()),
            Ok(Err(_)) => Err(ApiError::Unavailable(format!(
                "host {host} disconnected while inspecting image {image}; try again"
            ))),
            Err(_) => Err(ApiError::Unavailable(format!(
                "host {host} did not inspect image {image} within {} minutes (a slow pull?); try again",
                INSPECT_TIMEOUT.as_secs() / 60
            ))),
        }
    }

    /// Serves one agent connection until it ends.
    pub async fn serve(self, mut ws: WebSocket) {
        let hello = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
        let facts = match hello {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<AgentMessage>(&t) {
                Ok(AgentMessage::Hello { protocol, host }) if protocol == PROTOCOL_VERSION => host,
                Ok(AgentMessage::Hello { protocol, .. }) => {
                    refuse(&mut ws, format!("agent protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}")).await;
                    return;
                }
                _ => {
                    refuse(&mut ws, "expected a hello message first".into()).await;
                    return;
                }
            },
            _ => return,
        };
        if let Err(why) = validate_host_name(&facts.name) {
            refuse(&mut ws, why).await;
            return;
        }
        let span = tracing::info_span!("agent", host = %facts.name);
        self.serve_agent(ws, facts).instrument(span).await
    }

    async fn serve_agent(self, mut ws: WebSocket, facts: HostFacts) {
        let store = &self.inner.store;
        if let Err(e) = store.upsert_host(&facts, now_ms()).await {
            tracing::error!(error = %e, "cannot record host");
            return;
        }
        self.routes_changed();
        let conn_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let handle = AgentHandle {
            conn_id,
            facts: facts.clone(),
            desired_changed: Arc::new(Notify::new()),
            out: out_tx,
            logs: Arc::new(Mutex::new(HashMap::new())),
            inspects: Arc::new(Mutex::new(HashMap::new())),
        };
        let replaced = self.agents().insert(facts.name.clone(), handle.clone());
        if replaced.is_some() {
            tracing::info!("a newer connection replaces the old one of this host");
        }
        tracing::info!(public_ip = %facts.public_ip, "agent connected");

        let welcome = ServerMessage::Welcome {
            deployment: self.inner.deployment.clone(),
            ca_cert_pem: Some(self.inner.ca.cert_pem().to_string()),
            tunnel: self.inner.tunnel.clone(),
        };
        let mut ok = send(&mut ws, &welcome).await;
        if ok {
            ok = self.send_desired(&mut ws, &facts.name).await;
        }
        while ok {
            tokio::select! {
                msg = tokio::time::timeout(AGENT_SILENCE, ws.recv()) => {
                    ok = match msg {
                        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<AgentMessage>(&t) {
                            Ok(AgentMessage::Report { actual }) => {
                                self.record_report(&facts.name, actual).await;
                                true
                            }
                            Ok(AgentMessage::LogEnd { stream, error }) => {
                                let tx = handle.logs.lock().unwrap_or_else(|p| p.into_inner()).remove(&stream);
                                if let (Some(tx), Some(e)) = (tx, error) {
                                    let _ = tx.try_send(Bytes::from(format!("berth: {e}\n")));
                                }
                                true
                            }
                            Ok(AgentMessage::ImageInspected { request, result }) => {
                                if let Some(tx) = lock(&handle.inspects).remove(&request) {
                                    let _ = tx.send(result);
                                }
                                true
                            }
                            Ok(AgentMessage::Hello { .. }) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "bad message from agent");
                                true
                            }
                        },
                        Ok(Some(Ok(Message::Binary(b)))) => {
                            if let Some((stream, data)) = decode_log_frame(&b) {
                                let mut logs = handle.logs.lock().unwrap_or_else(|p| p.into_inner());
                                let full = match logs.get(&stream) {
                                    Some(tx) => tx.try_send(Bytes::copy_from_slice(data)).is_err(),
                                    None => false,
                                };
                                if full {
                                    // The reader is gone or too slow: stop the stream.
                                    logs.remove(&stream);
                                    let _ = handle.out.send(ServerMessage::CloseLogs { stream });
                                }
                            }
                            true
                        }
                        Ok(Some(Ok(Message::Close(_)))) | Ok(None) => false,
                        Ok(Some(Ok(_))) => true,
                        Ok(Some(Err(e))) => {
                            tracing::info!(error = %e, "agent connection failed");
                            false
                        }
                        Err(_) => {
                            tracing::warn!("agent silent for {}s; dropping it", AGENT_SILENCE.as_secs());
                            false
                        }
                    };
                }
                _ = handle.desired_changed.notified() => {
                    ok = self.send_desired(&mut ws, &facts.name).await;
                }
                out = out_rx.recv() => {
                    ok = match out {
                        Some(m) => send(&mut ws, &m).await,
                        None => false,
                    };
                }
                _ = self.inner.shutdown.cancelled() => {
                    let _ = ws.send(Message::Close(None)).await;
                    ok = false;
                }
            }
        }
        {
            let mut agents = self.agents();
            if agents.get(&facts.name).map(|a| a.conn_id) == Some(conn_id) {
                agents.remove(&facts.name);
            }
        }
        // Waiting inspections learn that this connection is gone. The outbox closes first:
        // a request registered after the clearing then fails to send instead of waiting.
        drop(out_rx);
        lock(&handle.inspects).clear();
        let _ = store.touch_host(&facts.name, now_ms()).await;
        tracing::info!("agent disconnected");
    }

    async fn send_desired(&self, ws: &mut WebSocket, host: &str) -> bool {
        match desired_set(&self.inner.store, &self.inner.ca, host).await {
            Ok(instances) => send(ws, &ServerMessage::Desired { instances }).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the desired set");
                false
            }
        }
    }

    async fn record_report(&self, host: &str, actual: Vec<ActualInstance>) {
        let store = &self.inner.store;
        let _ = store.touch_host(host, now_ms()).await;
        let mut reported: HashMap<i64, ActualInstance> =
            actual.into_iter().map(|a| (a.id, a)).collect();
        let rows = match store.list_host_instances(host).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read instances");
                return;
            }
        };
        for row in rows {
            let new = reported.remove(&row.id);
            if new != row.actual {
                if let Err(e) = store.set_actual(row.id, new.as_ref()).await {
                    tracing::error!(instance = row.id, error = %e, "cannot record state");
                }
            }
        }
    }
}

/// A jupyter certificate is renewed when it has fewer days than this left.
const RENEW_BEFORE_SECS: i64 = 30 * 86_400;
/// How long a jupyter certificate is valid.
const CERT_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// The full desired set of `host`: its instances, with the authorized keys of ssh and
/// jupyter instances (the owner's account keys, then the instance's own), and for jupyter
/// instances the token and a certificate naming the host's current IP and DNS names
/// (issued anew when those change or the certificate nears its end).
async fn desired_set(
    store: &Store,
    ca: &berth_ca::Ca,
    host: &str,
) -> Result<Vec<DesiredInstance>, String> {
    let rows = store
        .list_host_instances(host)
        .await
        .map_err(|e| e.to_string())?;
    let facts = store
        .get_host(host)
        .await
        .map_err(|e| e.to_string())?
        .map(|h| h.facts);
    let mut account_keys: HashMap<String, Vec<String>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let ssh_keys = if r.spec.mode == LaunchMode::Entrypoint {
            Vec::new()
        } else {
            if !account_keys.contains_key(&r.owner) {
                let keys = store
                    .list_ssh_keys(&r.owner)
                    .await
                    .map_err(|e| e.to_string())?;
                account_keys.insert(r.owner.clone(), keys.into_iter().map(|k| k.key).collect());
            }
            account_keys[&r.owner]
                .iter()
                .chain(&r.extra_keys)
                .cloned()
                .collect()
        };
        let jupyter = match (&r.spec.mode, &facts) {
            (LaunchMode::Jupyter, Some(facts)) => {
                Some(jupyter_material(store, ca, &r, facts).await?)
            }
            _ => None,
        };
        out.push(DesiredInstance {
            id: r.id,
            spec: r.spec,
            run: r.run,
            ssh_keys,
            jupyter,
        });
    }
    Ok(out)
}

async fn jupyter_material(
    store: &Store,
    ca: &berth_ca::Ca,
    row: &berth_store::InstanceRow,
    facts: &HostFacts,
) -> Result<JupyterMaterial, String> {
    let mut secrets = row.secrets.clone();
    let mut changed = false;
    if secrets.jupyter_token.is_none() {
        secrets.jupyter_token = Some(crate::auth::random_hex(24));
        changed = true;
    }
    let mut names = vec![facts.public_ip.clone()];
    names.extend(facts.dns_names.iter().cloned());
    let now = now_ms() / 1000;
    let ca_sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(ca.cert_der()))
    };
    let current = secrets
        .tls
        .clone()
        .filter(|t| still_good(t, &names, now, &ca_sha256));
    let tls = match current {
        Some(t) => t,
        None => {
            let ips: Vec<std::net::IpAddr> = names.iter().filter_map(|n| n.parse().ok()).collect();
            let dns: Vec<String> = names
                .iter()
                .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                .cloned()
                .collect();
            let issued = ca
                .issue_server(&ips, &dns, CERT_VALID_FOR)
                .map_err(|e| format!("cannot issue the certificate of instance {}: {e}", row.id))?;
            tracing::info!(instance = row.id, ?names, "issued a jupyter certificate");
            let t = TlsMaterial {
                cert_pem: issued.cert_pem,
                key_pem: issued.key_pem,
                names,
                not_after_unix: issued.not_after_unix,
                ca_sha256,
            };
            secrets.tls = Some(t.clone());
            changed = true;
            t
        }
    };
    if changed {
        store
            .set_secrets(row.id, &secrets)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(JupyterMaterial {
        token: secrets.jupyter_token.unwrap_or_default(),
        cert_pem: tls.cert_pem,
        key_pem: tls.key_pem,
    })
}

/// Whether an instance's certificate is kept at its next start: while it names the host's
/// current names, is more than [`RENEW_BEFORE_SECS`] from expiry at `now` (Unix seconds),
/// and was issued by the CA users trust now (after the CA is replaced, every certificate is
/// issued anew).
fn still_good(t: &TlsMaterial, names: &[String], now: i64, ca_sha256: &str) -> bool {
    t.names == names && t.not_after_unix - now > RENEW_BEFORE_SECS && t.ca_sha256 == ca_sha256
}

async fn send(ws: &mut WebSocket, m: &ServerMessage) -> bool {
    match serde_json::to_string(m) {
        Ok(s) => ws.send(Message::Text(s.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn refuse(ws: &mut WebSocket, reason: String) {
    tracing::warn!(%reason, "refusing agent");
    let _ = send(ws, &ServerMessage::Refused { reason }).await;
    let _ = ws.send(Message::Close(None)).await;
}

fn validate_host_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host name {name:?} must be 1 to 64 of letters, digits, '-', '_', '.'"
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An image inspection in flight; dropping it forgets the request.
struct PendingInspect {
    inspects: PendingInspects,
    request: u64,
}

impl Drop for PendingInspect {
    fn drop(&mut self) {
        lock(&self.inspects).remove(&self.request);
    }
}

/// A log stream from an agent. Dropping it tells the agent to stop.
pub struct LogStream {
    rx: mpsc::Receiver<Bytes>,
    stream: u64,
    agent: AgentHandle,
}

impl futures_util::Stream for LogStream {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        let removed = self
            .agent
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.stream);
        if removed.is_some() {
            let _ = self.agent.out.send(ServerMessage::CloseLogs {
                stream: self.stream,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_renewed_near_expiry_for_new_names_and_a_new_ca() {
        let now = 1_900_000_000;
        let names = vec!["203.0.113.7".to_string(), "gpu1.example.org".to_string()];
        let cert = TlsMaterial {
            cert_pem: String::new(),
            key_pem: String::new(),
            names: names.clone(),
            not_after_unix: now + 200 * 86_400,
            ca_sha256: "ca1".into(),
        };
        assert!(still_good(&cert, &names, now, "ca1"));
        let soon = TlsMaterial {
            not_after_unix: now + RENEW_BEFORE_SECS - 1,
            ..cert.clone()
        };
        assert!(!still_good(&soon, &names, now, "ca1"), "near expiry");
        let moved = vec!["198.51.100.9".to_string(), "gpu1.example.org".to_string()];
        assert!(!still_good(&cert, &moved, now, "ca1"), "a new public IP");
        assert!(
            !still_good(&cert, &names[..1], now, "ca1"),
            "a DNS name gone"
        );
        assert!(!still_good(&cert, &names, now, "ca2"), "another CA");
    }
}
