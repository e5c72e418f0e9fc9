//! The agent's end: dials the proxy's streams through to instances' ports.
use crate::{keepalive, read_line, write_json, Hello, Reply, TunnelError, TunnelStream};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Why the agent would not or could not dial a stream's target.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// No such instance on this host, or the port is not one it exposes.
    #[error("{0}")]
    NotFound(String),
    /// The instance's port did not take the connection.
    #[error("{0}")]
    Unreachable(String),
}

/// Says hello on `io` (already TLS to the proxy), then serves the proxy's streams until the
/// tunnel ends. `dial(instance, port)` connects to that port of that instance, or says why not.
pub async fn serve<S, D, F>(mut io: S, hello: &Hello, dial: D) -> Result<(), TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    D: Fn(i64, u16) -> F + Send + Sync + 'static,
    F: Future<Output = Result<TcpStream, DialError>> + Send + 'static,
{
    write_json(&mut io, hello).await?;
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), read_line(&mut io))
        .await
        .map_err(|_| TunnelError::Handshake("no reply from the proxy within 10 s".into()))??;
    let reply: Reply = serde_json::from_str(&line)
        .map_err(|e| TunnelError::Handshake(format!("bad reply: {e}")))?;
    if let Some(e) = reply.error {
        return Err(TunnelError::Refused(e));
    }
    let mut conn = h2::server::Builder::new()
        .initial_window_size(crate::STREAM_WINDOW)
        .initial_connection_window_size(crate::CONNECTION_WINDOW)
        .max_frame_size(crate::MAX_FRAME)
        .max_concurrent_streams(16_384)
        .handshake::<_, Bytes>(io)
        .await?;
    let pings = conn.ping_pong();
    let dial = Arc::new(dial);
    let accept = async {
        while let Some(next) = conn.accept().await {
            let (req, respond) = next?;
            let dial = dial.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(req, respond, &*dial).await {
                    tracing::debug!(error = %e, "tunnel stream ended with an error");
                }
            });
        }
        Ok::<(), TunnelError>(())
    };
    tokio::select! {
        r = accept => r,
        e = async { match pings { Some(p) => keepalive(p).await, None => std::future::pending().await } } => Err(e),
    }
}

async fn handle<D, F>(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    dial: &D,
) -> Result<(), TunnelError>
where
    D: Fn(i64, u16) -> F,
    F: Future<Output = Result<TcpStream, DialError>>,
{
    let target = parse_target(req.uri().path());
    let result = match target {
        Some((instance, port)) => dial(instance, port).await,
        None => Err(DialError::NotFound(format!(
            "bad tunnel path {}",
            req.uri().path()
        ))),
    };
    match result {
        Ok(tcp) => {
            let _ = tcp.set_nodelay(true);
            let resp = http::Response::builder()
                .status(200)
                .body(())
                .map_err(|e| TunnelError::Handshake(e.to_string()))?;
            let send = respond.send_response(resp, false)?;
            let stream = TunnelStream::new(send, req.into_body());
            if let Err(e) = stream.relay(tcp).await {
                tracing::debug!(error = %e, "tunnel stream relay ended");
            }
            Ok(())
        }
        Err(e) => {
            let status = match e {
                DialError::NotFound(_) => 404,
                DialError::Unreachable(_) => 502,
            };
            let resp = http::Response::builder()
                .status(status)
                .body(())
                .map_err(|e| TunnelError::Handshake(e.to_string()))?;
            let mut send = respond.send_response(resp, false)?;
            send.send_data(Bytes::from(e.to_string()), true)?;
            Ok(())
        }
    }
}

/// `/v1/{instance}/{port}` → (instance, port).
fn parse_target(path: &str) -> Option<(i64, u16)> {
    let rest = path.strip_prefix("/v1/")?;
    let (i, p) = rest.split_once('/')?;
    Some((
        i.parse().ok().filter(|i: &i64| *i > 0)?,
        p.parse().ok().filter(|p: &u16| *p > 0)?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_parse() {
        assert_eq!(super::parse_target("/v1/42/22"), Some((42, 22)));
        assert_eq!(super::parse_target("/v1/0/22"), None);
        assert_eq!(super::parse_target("/v1/x/22"), None);
        assert_eq!(super::parse_target("/v2/1/22"), None);
        assert_eq!(super::parse_target("/v1/1/70000"), None);
    }
}
