//! The agent's health check of jupyter mode: Jupyter answers `GET /api` over TLS, with a
//! certificate that the deployment's CA signed for the host's public IP.
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// True once Jupyter on this host's `port` answers `/api` with 200 over TLS that verifies
/// against `ca_pem` for `server_name` (the host's public IP).
pub async fn answers(port: u16, ca_pem: Option<&str>, server_name: &str) -> bool {
    let Some(ca) = ca_pem else { return false };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe(port, ca, server_name)).await,
        Ok(Ok(true))
    )
}

async fn probe(
    port: u16,
    ca_pem: &str,
    server_name: &str,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server_name.to_string())?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET /api HTTP/1.1\r\nHost: {server_name}:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut head = [0u8; 16];
    let n = tls.read(&mut head).await?;
    Ok(head[..n].starts_with(b"HTTP/1.1 200"))
}
