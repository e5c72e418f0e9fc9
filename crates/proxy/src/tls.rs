//! rustls settings from the server's [`proto::ProxyConfig`]: the proxy's certificate for the
//! tunnel and HTTPS listeners, and a client that trusts only berth's CA (for Jupyter).
use crate::ProxyError;
use berth_core::protocol::proxy as proto;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// aws-lc-rs, the one crypto provider of the project, chosen explicitly (no process default
/// needed).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProxyError::BadConfig(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(ProxyError::BadConfig(format!("{what}: no certificate")));
    }
    Ok(certs)
}

/// A TLS server with the proxy's certificate (chain as given) and key, offering `alpn`.
pub(crate) fn server(
    cfg: &proto::ProxyConfig,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let chain = certs(&cfg.cert_pem, "the proxy certificate")?;
    let key = PrivateKeyDer::from_pem_slice(cfg.key_pem.as_bytes())
        .map_err(|e| ProxyError::BadConfig(format!("the proxy key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::BadConfig(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ProxyError::BadConfig(format!("the proxy certificate and key: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A TLS client that trusts only the CA(s) in the config (Jupyter's certificates come from it).
pub(crate) fn upstream_client(
    cfg: &proto::ProxyConfig,
) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&cfg.ca_pem, "the CA certificate")? {
        roots
            .add(ca)
            .map_err(|e| ProxyError::BadConfig(format!("the CA certificate: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::BadConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
