//! The proxy's end: accepts agents' tunnels and opens streams through them.
use crate::{keepalive, read_line, write_json, Hello, Reply, TunnelError, TunnelStream};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("host {0} has no tunnel to the proxy (its agent is not connected)")]
    NoTunnel(String),
    #[error("the tunnel of host {host} failed: {error}")]
    Tunnel { host: String, error: String },
    #[error("host {host} refused: {message}")]
    Refused {
        host: String,
        status: u16,
        message: String,
    },
    #[error("host {0} did not answer within 10 s")]
    Timeout(String),
}

/// A host's tunnel: its serial number (a newer tunnel replaces an older) and its sender.
type Tunnel = (u64, h2::client::SendRequest<Bytes>);

/// The agents' tunnels by host name.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<Mutex<HashMap<String, Tunnel>>>,
    next: Arc<AtomicU64>,
}

impl Tunnels {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tunnel>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_connected(&self, host: &str) -> bool {
        self.map().contains_key(host)
    }

    pub fn hosts(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Serves one agent connection (already TLS) until it ends. `authorize` checks the
    /// agent's hello (token, host name). A newer tunnel of the same host replaces an older.
    pub async fn serve<S>(
        &self,
        mut io: S,
        authorize: impl FnOnce(&Hello) -> Result<(), String>,
    ) -> Result<(), TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let line = tokio::time::timeout(Duration::from_secs(10), read_line(&mut io))
            .await
            .map_err(|_| TunnelError::Handshake("no hello within 10 s".into()))??;
        let hello: Hello = serde_json::from_str(&line)
            .map_err(|e| TunnelError::Handshake(format!("bad hello: {e}")))?;
        let verdict = if hello.protocol != crate::PROTOCOL_VERSION {
            Err(format!(
                "tunnel protocol {} is not supported; this proxy speaks {}",
                hello.protocol,
                crate::PROTOCOL_VERSION
            ))
        } else {
            authorize(&hello)
        };
        if let Err(e) = verdict {
            write_json(
                &mut io,
                &Reply {
                    error: Some(e.clone()),
                },
            )
            .await?;
            return Err(TunnelError::Refused(e));
        }
        write_json(&mut io, &Reply { error: None }).await?;
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(crate::STREAM_WINDOW)
            .initial_connection_window_size(crate::CONNECTION_WINDOW)
            .max_frame_size(crate::MAX_FRAME)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await?;
        let pings = conn.ping_pong();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map().insert(hello.host.clone(), (id, send));
        tracing::info!(host = %hello.host, "agent tunnel up");
        let result = tokio::select! {
            r = &mut conn => r.map_err(TunnelError::from),
            e = async { match pings { Some(p) => keepalive(p).await, None => std::future::pending().await } } => Err(e),
        };
        {
            let mut map = self.map();
            if map.get(&hello.host).map(|(i, _)| *i) == Some(id) {
                map.remove(&hello.host);
            }
        }
        tracing::info!(host = %hello.host, "agent tunnel down");
        result
    }

    /// Opens a stream to `port` (internal) of `instance` on `host`.
    pub async fn open(
        &self,
        host: &str,
        instance: i64,
        port: u16,
    ) -> Result<TunnelStream, OpenError> {
        let send = self
            .map()
            .get(host)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| OpenError::NoTunnel(host.to_string()))?;
        let tunnel_err = |e: h2::Error| OpenError::Tunnel {
            host: host.to_string(),
            error: e.to_string(),
        };
        let fut = async {
            let mut send = send.ready().await.map_err(tunnel_err)?;
            let req = http::Request::post(format!("http://tunnel/v1/{instance}/{port}"))
                .body(())
                .map_err(|e| OpenError::Tunnel {
                    host: host.to_string(),
                    error: e.to_string(),
                })?;
            let (resp, stream) = send.send_request(req, false).map_err(tunnel_err)?;
            let resp = resp.await.map_err(tunnel_err)?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            if status == 200 {
                return Ok(TunnelStream::new(stream, body));
            }
            let mut message = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                message.extend_from_slice(&chunk);
                if message.len() > 4096 {
                    break;
                }
            }
            Err(OpenError::Refused {
                host: host.to_string(),
                status,
                message: String::from_utf8_lossy(&message).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| OpenError::Timeout(host.to_string()))?
    }
}
