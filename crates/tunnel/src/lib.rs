//! The tunnel between a host's agent and the proxy: one connection per agent, dialled OUT
//! by the agent (hosts behind NAT need no inbound port), carrying any number of streams.
//!
//! Wire: after TLS (set up by the caller), the agent sends one JSON line, a [`Hello`]; the
//! proxy answers one JSON line, [`Reply`]. Then HTTP/2 runs over the connection with the
//! roles reversed: the proxy is the HTTP/2 client and opens one stream per user connection
//! (`POST /v1/{instance}/{port}`); the agent is the server, dials that port of that
//! instance and answers 200 (then bytes flow both ways) or 404/502 with the reason as body.
//! HTTP/2 gives each stream its own flow control, so one slow user never stalls another.
#![forbid(unsafe_code)]

mod agent;
mod proxy;
mod stream;

pub use agent::{serve as serve_agent, DialError};
pub use proxy::{OpenError, Tunnels};
pub use stream::TunnelStream;

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PROTOCOL_VERSION: u32 = 1;
/// Both ends ping this often; a peer silent for [`DEAD_AFTER`] is dropped.
pub const PING_EVERY: Duration = Duration::from_secs(10);
pub const DEAD_AFTER: Duration = Duration::from_secs(25);
/// HTTP/2 flow-control windows: large, so one stream can fill a fast link.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;
const MAX_FRAME: u32 = 256 * 1024;

/// What a tunnel's TLS runs on: its TCP connection with a large read buffer, since rustls
/// reads at most one TLS record (about 16 KiB) at a time: a bulk transfer through the tunnel
/// would otherwise cost a read syscall per record.
pub type Transport = tokio::io::BufReader<tokio::net::TcpStream>;
const TRANSPORT_READ: usize = 256 * 1024;

/// Wraps a tunnel's TCP connection (either end) before TLS is set up on it.
pub fn transport(tcp: tokio::net::TcpStream) -> Transport {
    let _ = tcp.set_nodelay(true);
    tokio::io::BufReader::with_capacity(TRANSPORT_READ, tcp)
}

/// The agent's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub host: String,
    pub token: String,
}

/// The proxy's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("tunnel i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("tunnel HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("bad tunnel handshake: {0}")]
    Handshake(String),
    #[error("the proxy refused this agent: {0}")]
    Refused(String),
    #[error("the peer did not answer pings for {}s", DEAD_AFTER.as_secs())]
    Dead,
}

/// Reads one line of at most 8 KiB, byte by byte (nothing past the newline is consumed).
async fn read_line<S: AsyncRead + Unpin>(io: &mut S) -> Result<String, TunnelError> {
    let mut line = Vec::new();
    loop {
        let b = io.read_u8().await?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > 8192 {
            return Err(TunnelError::Handshake(
                "handshake line longer than 8 KiB".into(),
            ));
        }
    }
    String::from_utf8(line)
        .map_err(|_| TunnelError::Handshake("handshake line is not UTF-8".into()))
}

async fn write_json<S: AsyncWrite + Unpin, T: Serialize>(
    io: &mut S,
    v: &T,
) -> Result<(), TunnelError> {
    let mut line = serde_json::to_vec(v).map_err(|e| TunnelError::Handshake(e.to_string()))?;
    line.push(b'\n');
    io.write_all(&line).await?;
    io.flush().await?;
    Ok(())
}

/// Pings the peer every [`PING_EVERY`]; returns when a pong is late or the connection ends.
async fn keepalive(mut pp: h2::PingPong) -> TunnelError {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        match tokio::time::timeout(DEAD_AFTER, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return e.into(),
            Err(_) => return TunnelError::Dead,
        }
    }
}

#[cfg(test)]
mod tests;
