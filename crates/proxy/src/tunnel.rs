//! The agents' side: TLS with the proxy's certificate, then the tunnel handshake with the
//! agent token. One task per agent, as many agents as connect.
use crate::http::ct_eq;
use crate::Shared;
use berth_core::Secret;
use berth_tunnel::TunnelError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    token: Secret,
) {
    let token = Arc::new(token);
    let shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let (acceptor, shared, token) = (acceptor.clone(), shared.clone(), token.clone());
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = agent(tcp, peer, acceptor, &shared, &token) => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!("tunnel listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn agent(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: &Shared,
    token: &Secret,
) {
    let tcp = berth_tunnel::transport(tcp);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, "agent tunnel: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "agent tunnel: no TLS handshake within 10 s");
            return;
        }
    };
    let mut host = None;
    let result = shared
        .tunnels
        .serve(tls, |hello| {
            host = Some(hello.host.clone());
            if ct_eq(hello.token.as_bytes(), token.expose().as_bytes()) {
                Ok(())
            } else {
                Err("bad agent token".to_string())
            }
        })
        .await;
    let host = host.unwrap_or_default();
    match result {
        Ok(()) => {}
        Err(TunnelError::Refused(why)) => {
            tracing::warn!(%peer, host, "refused an agent tunnel: {why}")
        }
        Err(e) => tracing::info!(%peer, host, "agent tunnel ended: {e}"),
    }
}
