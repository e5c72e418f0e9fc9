//! The agent's connection to the server: dial out, say hello, take desired sets, send
//! reports; reconnect with exponential backoff and jitter when the link drops.
use crate::Shared;
use berth_core::protocol::{
    AgentMessage, ImageFacts, ServerMessage, AGENT_PATH, PROTOCOL_VERSION, REPORT_INTERVAL_SECS,
};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(10);
const SERVER_SILENCE: Duration = Duration::from_secs(30);
/// After the engine's event stream breaks (e.g. dockerd restarted), subscribe again after this.
const EVENTS_RETRY: Duration = Duration::from_secs(1);

/// What log streams hand the connection to send.
pub(crate) enum Outgoing {
    Message(AgentMessage),
    Log(u64, bytes::Bytes),
}

/// Keeps a session with the server up until shutdown. Ends with an error only when the
/// server refuses the agent's token: trying again would not change that.
pub(crate) async fn run(shared: Arc<Shared>) -> Result<(), crate::AgentError> {
    let mut backoff = MIN_BACKOFF;
    loop {
        let began = Instant::now();
        match session(&shared).await {
            Ok(()) => return Ok(()),
            Err(e) if e.starts_with(REFUSED) => return Err(crate::AgentError::Refused(e)),
            Err(e) => {
                tracing::warn!(error = %e, server = %shared.config.server_url, "no session with the server")
            }
        }
        if began.elapsed() > Duration::from_secs(30) {
            backoff = MIN_BACKOFF;
        }
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        tokio::select! {
            _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
            _ = shared.shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How a session error that ends the agent starts.
const REFUSED: &str = "the server refused the agent token";

fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_string());
    format!("{rest}{AGENT_PATH}")
}

fn text(m: &AgentMessage) -> Message {
    Message::Text(serde_json::to_string(m).unwrap_or_default().into())
}

/// One session; `Ok` only on shutdown.
async fn session(shared: &Arc<Shared>) -> Result<(), String> {
    let mut req = ws_url(&shared.config.server_url)
        .into_client_request()
        .map_err(|e| format!("bad server URL: {e}"))?;
    let auth = format!("Bearer {}", shared.config.token.expose())
        .parse()
        .map_err(|_| "the agent token holds characters not allowed in a header".to_string())?;
    req.headers_mut().insert("authorization", auth);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 => {
            format!("{REFUSED} (HTTP 401): give it the token `berth server` prints (agent token)")
        }
        e => format!("cannot connect: {e}"),
    })?;
    let (mut sink, mut stream) = ws.split();
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        host: shared.facts.clone(),
    };
    sink.send(text(&hello)).await.map_err(|e| e.to_string())?;

    let welcome = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .map_err(|_| "no welcome from the server".to_string())?;
    let deployment = match welcome {
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
            Ok(ServerMessage::Welcome {
                deployment,
                ca_cert_pem,
                tunnel,
            }) => {
                *shared.ca_pem.lock().unwrap_or_else(|p| p.into_inner()) = ca_cert_pem;
                shared.use_tunnel(tunnel);
                deployment
            }
            Ok(ServerMessage::Refused { reason }) => {
                return Err(format!("the server refused this agent: {reason}"))
            }
            _ => return Err("unexpected first message from the server".into()),
        },
        Some(Ok(Message::Close(_))) | None => return Err("the server closed the connection".into()),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(_)) => return Err("unexpected first message from the server".into()),
    };
    if shared.deployment.set(deployment.clone()).is_ok() {
        tokio::spawn(watch_events(shared.clone()));
    } else if shared.deployment() != deployment {
        return Err(format!(
            "this agent serves deployment {} but the server is deployment {deployment}; restart the agent to switch",
            shared.deployment()
        ));
    }
    tracing::info!(%deployment, "connected to the server");

    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(256);
    let mut log_tasks: HashMap<u64, tokio::task::AbortHandle> = HashMap::new();
    // Aborted when the session ends: the server forgets a request whose connection went.
    let mut inspect_tasks = tokio::task::JoinSet::new();
    let mut report_tick = tokio::time::interval(Duration::from_secs(REPORT_INTERVAL_SECS));
    let mut ping_tick = tokio::time::interval(PING_EVERY);
    let mut last_heard = Instant::now();
    let result = loop {
        tokio::select! {
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(ServerMessage::Desired { instances }) => shared.apply_desired(instances).await,
                        Ok(ServerMessage::OpenLogs { stream, instance, follow, tail, onstart }) => {
                            log_tasks.retain(|_, t| !t.is_finished());
                            let task = tokio::spawn(crate::logs::stream(shared.clone(), stream, instance, follow, tail, onstart, out_tx.clone()));
                            log_tasks.insert(stream, task.abort_handle());
                        }
                        Ok(ServerMessage::CloseLogs { stream }) => {
                            if let Some(t) = log_tasks.remove(&stream) {
                                t.abort();
                            }
                        }
                        Ok(ServerMessage::InspectImage { request, image }) => {
                            while inspect_tasks.try_join_next().is_some() {}
                            let shared = shared.clone();
                            let out = out_tx.clone();
                            inspect_tasks.spawn(async move {
                                let result = inspect_image(&shared, &image).await;
                                if let Err(e) = &result {
                                    tracing::info!(%image, error = %e, "image inspection failed");
                                }
                                let _ = out.send(Outgoing::Message(AgentMessage::ImageInspected { request, result })).await;
                            });
                        }
                        Ok(ServerMessage::Refused { reason }) => break Err(format!("the server refused this agent: {reason}")),
                        Ok(ServerMessage::Welcome { .. }) => {}
                        Err(e) => tracing::warn!(error = %e, "bad message from the server"),
                    },
                    Some(Ok(Message::Close(_))) | None => break Err("the server closed the connection".into()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(format!("connection failed: {e}")),
                }
            }
            _ = shared.changed.notified() => {
                if let Err(e) = sink.send(text(&AgentMessage::Report { actual: shared.snapshot() })).await {
                    break Err(e.to_string());
                }
            }
            _ = report_tick.tick() => {
                if let Err(e) = sink.send(text(&AgentMessage::Report { actual: shared.snapshot() })).await {
                    break Err(e.to_string());
                }
            }
            _ = ping_tick.tick() => {
                if last_heard.elapsed() > SERVER_SILENCE {
                    break Err(format!("the server was silent for {}s", SERVER_SILENCE.as_secs()));
                }
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    break Err(e.to_string());
                }
            }
            Some(out) = out_rx.recv() => {
                let frame = match out {
                    Outgoing::Message(m) => text(&m),
                    Outgoing::Log(stream, data) => Message::Binary(berth_core::protocol::encode_log_frame(stream, &data).into()),
                };
                if let Err(e) = sink.send(frame).await {
                    break Err(e.to_string());
                }
            }
            _ = shared.shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break Ok(());
            }
        }
    };
    for t in log_tasks.values() {
        t.abort();
    }
    inspect_tasks.abort_all();
    result
}

/// The config of `image` (for a template made from it), pulling the image first if this
/// host does not have it. The error is one line for the user.
async fn inspect_image(shared: &Shared, image: &str) -> Result<ImageFacts, String> {
    let engine = &shared.engine;
    if let Some(facts) = engine
        .image_facts(image)
        .await
        .map_err(|e| format!("cannot inspect image {image}: {}", e.message()))?
    {
        return Ok(facts);
    }
    tracing::info!(%image, "pulling image to inspect it");
    engine
        .pull(image, |_| {})
        .await
        .map_err(|e| format!("image {image} could not be pulled: {}", e.message()))?;
    engine
        .image_facts(image)
        .await
        .map_err(|e| format!("cannot inspect image {image}: {}", e.message()))?
        .ok_or_else(|| format!("image {image} is missing right after pulling it"))
}

/// Wakes the worker of every instance the engine reports an event for. The instance's
/// container address is forgotten until its worker has looked again: after a stop, Docker
/// may give that address to another container, and the tunnel must never dial it.
async fn watch_events(shared: Arc<Shared>) {
    loop {
        let mut events = Box::pin(shared.engine.events(shared.deployment()));
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(id)) => {
                        shared.note_address(id, None);
                        shared.poke(id);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "engine event stream failed");
                        break;
                    }
                    None => break,
                },
                _ = shared.shutdown.cancelled() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVENTS_RETRY) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ws_urls() {
        assert_eq!(
            super::ws_url("http://127.0.0.1:7878/"),
            "ws://127.0.0.1:7878/agent/v1/connect"
        );
        assert_eq!(
            super::ws_url("https://berth.example"),
            "wss://berth.example/agent/v1/connect"
        );
    }
}
