//! The HTTPS front: TLS with the `*.<domain>` certificate, routing by host name
//! (`i<ID>-<PORT>.<domain>`) on the first request's head, then bytes both ways (keep-alive
//! requests and WebSocket upgrades included) through the instance's agent tunnel.
use crate::http::{self, MAX_HEAD};
use crate::routes::Entry;
use crate::{pipe, Shared};
use berth_core::protocol::proxy::Route;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The TLS handshake, then the first request head, must each arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Jupyter's port: TLS upstream, Jupyter's own token.
pub(crate) const JUPYTER_PORT: u16 = 8080;

pub(crate) struct Front {
    pub acceptor: TlsAcceptor,
    /// Trusts only berth's CA.
    pub upstream: TlsConnector,
    pub domain: String,
    pub shared: Arc<Shared>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Jupyter,
    Http,
}

/// How `port` of `route` is served, if at all.
fn upstream(route: &Route, port: u16) -> Option<Upstream> {
    if port == JUPYTER_PORT && route.jupyter {
        Some(Upstream::Jupyter)
    } else if route.http_ports.contains(&port) {
        Some(Upstream::Http)
    } else {
        None
    }
}

/// A token that can go into a cookie and a link as is (the server makes URL-safe tokens).
fn usable_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

pub(crate) async fn serve(listener: TcpListener, front: Arc<Front>) {
    let shutdown = front.shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let front = front.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = connection(&front, tcp, peer) => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!("HTTPS front: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

enum HeadError {
    TooLarge,
    Io(std::io::Error),
}

/// Reads until the first request head is complete: (bytes read, where the head ends).
/// `None` when the client closes first; [`HeadError::TooLarge`] past [`MAX_HEAD`].
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<Option<(Vec<u8>, usize)>, HeadError> {
    let mut buf = Vec::new();
    loop {
        let from = buf.len();
        if from >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        buf.resize(from + (MAX_HEAD - from).min(4096), 0);
        let n = io.read(&mut buf[from..]).await.map_err(HeadError::Io)?;
        buf.truncate(from + n);
        if n == 0 {
            return Ok(None);
        }
        if let Some(end) = http::head_end(&buf, from) {
            return Ok(Some((buf, end)));
        }
    }
}

/// Writes one of the proxy's own answers and closes; reads (a little, briefly) what the
/// client still sends, so the close does not reset the connection before it reads the answer.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, response: &[u8]) {
    if io.write_all(response).await.is_err() {
        return;
    }
    let _ = io.flush().await;
    let _ = io.shutdown().await;
    let mut sink = vec![0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut total = 0;
        while let Ok(n) = io.read(&mut sink).await {
            total += n;
            if n == 0 || total > MAX_HEAD {
                break;
            }
        }
    })
    .await;
}

async fn connection(front: &Front, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut tls = match tokio::time::timeout(HEAD_TIMEOUT, front.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "HTTPS: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTPS: no TLS handshake within {HEAD_TIMEOUT:?}");
            return;
        }
    };
    let (buf, end) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut tls)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return,
        Ok(Err(HeadError::TooLarge)) => {
            let r = http::response(
                "431 Request Header Fields Too Large",
                "request head too large\n",
            );
            return answer(&mut tls, &r).await;
        }
        Ok(Err(HeadError::Io(e))) => {
            tracing::debug!(%peer, "HTTPS: reading the request failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTPS: no request head within {HEAD_TIMEOUT:?}");
            return;
        }
    };
    let Some(head) = http::parse_head(&String::from_utf8_lossy(&buf[..end])) else {
        return answer(
            &mut tls,
            &http::response("400 Bad Request", "bad request\n"),
        )
        .await;
    };
    let Some((instance, port)) = head
        .host
        .as_deref()
        .and_then(|h| http::parse_name(h, &front.domain))
    else {
        return answer(&mut tls, &http::not_found()).await;
    };
    let Some(entry) = front
        .shared
        .book
        .find(instance, |r| upstream(r, port).is_some())
        .await
    else {
        return answer(&mut tls, &http::not_found()).await;
    };
    let route = &entry.route;
    match upstream(route, port) {
        // Jupyter asks for its own token; anyone may reach its login, so a failure says
        // no more than that (no host names, no errors from inside).
        Some(Upstream::Jupyter) => jupyter(front, tls, buf, &entry, peer).await,
        Some(Upstream::Http) => {
            let token = route.access_token.as_str();
            if !usable_token(token) {
                tracing::warn!(
                    instance,
                    "the route's access token cannot go into a cookie; its http ports are refused"
                );
                return answer(&mut tls, &http::not_found()).await;
            }
            let cookie = http::cookie_name(instance);
            if let Some((given, location)) = http::take_token(&head.target) {
                if http::ct_eq(given.as_bytes(), token.as_bytes()) {
                    let r = http::token_redirect(&location, &cookie, token);
                    return answer(&mut tls, &r).await;
                }
                return answer(&mut tls, &http::not_found()).await;
            }
            if !http::cookie_matches(&head.cookies, &cookie, token) {
                return answer(&mut tls, &http::not_found()).await;
            }
            drop(head);
            // Past the token: the user may know why their port does not answer.
            let Some(upstream) = open(front, &mut tls, &entry, port, peer, true).await else {
                return;
            };
            forward(tls, upstream, buf, &entry).await;
        }
        None => answer(&mut tls, &http::not_found()).await,
    }
}

/// Opens a tunnel stream to `port` of the entry's instance, or answers 502: why, to a
/// client that showed the instance's access token (`detail`), else only that it does not
/// answer. The log has the reason either way.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    front: &Front,
    client: &mut S,
    entry: &Entry,
    port: u16,
    peer: SocketAddr,
    detail: bool,
) -> Option<berth_tunnel::TunnelStream> {
    let route = &entry.route;
    let vague = format!(
        "port {port} of instance {} does not answer now (is it running?)",
        route.instance
    );
    if route.host.is_empty() {
        let why = format!("instance {} is not on a host yet", route.instance);
        tracing::info!(%peer, instance = route.instance, port, "HTTPS: 502: {why}");
        answer(
            client,
            &http::bad_gateway(if detail { &why } else { &vague }),
        )
        .await;
        return None;
    }
    let opened = tokio::select! {
        _ = entry.alive.cancelled() => return None,
        r = front.shared.tunnels.open(&route.host, route.instance, port) => r,
    };
    match opened {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(%peer, instance = route.instance, port, "HTTPS: 502: {e}");
            let why = match e {
                _ if detail => e.to_string(),
                berth_tunnel::OpenError::NoTunnel(_) => format!(
                    "the host of instance {} is not connected to the proxy now (its agent is \
                     down or cut off)",
                    route.instance
                ),
                _ => vague,
            };
            answer(client, &http::bad_gateway(&why)).await;
            None
        }
    }
}

async fn jupyter<S: AsyncRead + AsyncWrite + Unpin>(
    front: &Front,
    mut client: S,
    head: Vec<u8>,
    entry: &Entry,
    peer: SocketAddr,
) {
    let route = &entry.route;
    let Ok(name) = ServerName::try_from(route.public_ip.clone()) else {
        let why = format!(
            "instance {}'s address {:?} is not a valid TLS server name",
            route.instance, route.public_ip
        );
        tracing::warn!("HTTPS: 502: {why}");
        return answer(
            &mut client,
            &http::bad_gateway(&jupyter_vague(route.instance)),
        )
        .await;
    };
    let Some(stream) = open(front, &mut client, entry, JUPYTER_PORT, peer, false).await else {
        return;
    };
    let why = match tokio::time::timeout(HEAD_TIMEOUT, front.upstream.connect(name, stream)).await {
        Ok(Ok(upstream)) => return forward(client, upstream, head, entry).await,
        Ok(Err(e)) => format!("TLS to Jupyter of instance {} failed: {e}", route.instance),
        Err(_) => format!(
            "Jupyter of instance {} did not finish TLS within {HEAD_TIMEOUT:?}",
            route.instance
        ),
    };
    tracing::info!(%peer, instance = route.instance, "HTTPS: 502: {why}");
    answer(
        &mut client,
        &http::bad_gateway(&jupyter_vague(route.instance)),
    )
    .await;
}

/// What anyone reaching a Jupyter name learns when it fails: no more than that.
fn jupyter_vague(instance: i64) -> String {
    format!("Jupyter of instance {instance} does not answer now (is it running?)")
}

/// Sends what was read (the head and anything after it), then pipes both ways until either
/// side ends or the route goes.
async fn forward<A, B>(mut client: A, mut upstream: B, head: Vec<u8>, entry: &Entry)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let sent = tokio::select! {
        _ = entry.alive.cancelled() => return,
        r = async { upstream.write_all(&head).await?; upstream.flush().await } => r,
    };
    drop(head);
    if sent.is_ok() {
        pipe(&mut client, &mut upstream, &entry.alive).await;
    }
}
