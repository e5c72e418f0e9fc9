//! The agent's tunnel to the proxy: dialled OUT (hosts behind NAT need no inbound port),
//! TLS verified against the deployment's CA, reconnected with backoff and jitter. Each
//! stream the proxy opens names an instance and an internal port; the agent dials that
//! port of the instance's container, and nothing else: a stream can reach only the ports
//! its instance exposes.
use crate::Shared;
use berth_core::protocol::proxy::TunnelEndpoint;
use berth_core::PortProto;
use berth_tunnel::{DialError, Hello};
use rand::Rng;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Keeps the tunnel up until shutdown, to the proxy the server names last: a new one ends
/// the current session and is dialled at once.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut named = shared.tunnel.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(endpoint) = named.borrow_and_update().clone() else {
            if named.changed().await.is_err() {
                return;
            }
            continue;
        };
        let began = Instant::now();
        let addr = shared
            .config
            .proxy_addr
            .as_deref()
            .unwrap_or(&endpoint.addr);
        tokio::select! {
            r = session(&shared, &endpoint, addr) => match r {
                Ok(()) => tracing::info!(proxy = %addr, "tunnel closed"),
                Err(e) => tracing::warn!(proxy = %addr, error = %e, "no tunnel to the proxy"),
            },
            _ = named.changed() => {
                backoff = MIN_BACKOFF;
                continue;
            }
        }
        if began.elapsed() > Duration::from_secs(10) {
            backoff = MIN_BACKOFF;
        }
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        tokio::select! {
            _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
            _ = named.changed() => backoff = MIN_BACKOFF,
            _ = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    shared: &Arc<Shared>,
    endpoint: &TunnelEndpoint,
    addr: &str,
) -> Result<(), String> {
    let ca = shared
        .ca_pem()
        .ok_or("the server sent no CA certificate to check the proxy with")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(endpoint.server_name.clone()).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, berth_tunnel::transport(tcp))
        .await
        .map_err(|e| format!("TLS with the proxy failed: {e}"))?;
    let hello = Hello {
        protocol: berth_tunnel::PROTOCOL_VERSION,
        host: shared.config.name.clone(),
        token: shared.config.token.expose().to_string(),
    };
    tracing::info!(proxy = %addr, "tunnel to the proxy up");
    let sh = shared.clone();
    let serve = berth_tunnel::serve_agent(tls, &hello, move |instance, port| {
        let sh = sh.clone();
        async move { dial(&sh, instance, port).await }
    });
    tokio::select! {
        r = serve => r.map_err(|e| e.to_string()),
        _ = shared.shutdown.cancelled() => Ok(()),
    }
}

/// Connects to `port` of `instance`: straight to its container's address while the agent
/// knows it (no Docker port mapping in between), else through its host mapping on loopback.
/// Either way only a port that the instance exposes.
async fn dial(shared: &Shared, instance: i64, port: u16) -> Result<TcpStream, DialError> {
    let external = shared
        .actual
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&instance)
        .and_then(|a| {
            a.ports
                .iter()
                .find(|m| m.internal == port && m.proto == PortProto::Tcp)
                .map(|m| m.external)
        })
        .ok_or_else(|| {
            DialError::NotFound(format!(
                "instance {instance} exposes no TCP port {port} on this host"
            ))
        })?;
    if let Some(ip) = shared.address(instance) {
        match connect((ip, port).into(), ADDRESS_TIMEOUT).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                tracing::debug!(instance, port, %ip, "container address: {e}; trying the host mapping")
            }
        }
    }
    connect(
        (std::net::Ipv4Addr::LOCALHOST, external).into(),
        DIAL_TIMEOUT,
    )
    .await
    .map_err(|e| DialError::Unreachable(format!("port {port} of instance {instance}: {e}")))
}

/// How long a dial to a container's address may take (on the host's own bridge it takes
/// well under a millisecond), and one to its host mapping.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(1);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
