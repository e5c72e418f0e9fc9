//! rustls settings from the server's [`proto::ProxyConfig`]: the proxy's certificate for the
//! tunnel and HTTPS listeners, and a client that trusts only berth's CA (for Jupyter); or,
//! for the HTTPS front, the operator's certificate files ([`FileCert`]).
use crate::{CertFiles, ProxyError};
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

/// A TLS server whose certificate comes from `resolver`, offering `alpn`.
pub(crate) fn server_with(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::BadConfig(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How often the operator's certificate files are looked at for a change.
const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The operator's certificate and key files (e.g. an ACME client's `fullchain.pem` and
/// `privkey.pem`), served as they are and read again when either changes, so a renewal
/// takes effect without a restart. A change that does not load (a half-written file, a key
/// that does not match) is logged and the last good pair is kept.
#[derive(Debug)]
pub(crate) struct FileCert {
    files: CertFiles,
    current: std::sync::RwLock<(Stamp, Arc<rustls::sign::CertifiedKey>)>,
}

/// The files' modification times and sizes: what tells a change.
type Stamp = [Option<(std::time::SystemTime, u64)>; 2];

fn stamp(files: &CertFiles) -> Stamp {
    [&files.cert, &files.key].map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

impl FileCert {
    pub(crate) fn load(files: CertFiles) -> Result<Arc<FileCert>, ProxyError> {
        let stamp = stamp(&files);
        let key = read_pair(&files).map_err(ProxyError::BadConfig)?;
        Ok(Arc::new(FileCert {
            files,
            current: std::sync::RwLock::new((stamp, key)),
        }))
    }

    /// Reloads the files when they change, until `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_CHECK) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = stamp(&self.files);
            if now == self.current.read().unwrap_or_else(|p| p.into_inner()).0 {
                continue;
            }
            match read_pair(&self.files) {
                Ok(key) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = (now, key);
                    tracing::info!(cert = %self.files.cert.display(), "HTTPS certificate reloaded");
                }
                Err(e) => {
                    // Not marked as seen: tried again at the next check (a renewal may be
                    // writing the two files one after the other).
                    tracing::warn!("HTTPS certificate not reloaded, the last one is served: {e}");
                }
            }
        }
    }
}

impl rustls::server::ResolvesServerCert for FileCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .clone(),
        )
    }
}

/// Reads and checks a certificate chain and its key: both parse, and the key is the
/// certificate's.
fn read_pair(files: &CertFiles) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
    };
    let cert_pem = read(&files.cert, "certificate")?;
    let key_pem = read(&files.key, "key")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in it",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no PEM private key in it ({e})", files.key.display()))?;
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        format!(
            "{} and {} do not make a certificate and its key: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(Arc::new(certified))
}
