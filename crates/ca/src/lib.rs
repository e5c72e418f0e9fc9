//! berth's own certificate authority. The server makes one per deployment on first start
//! (`ca.key` and `ca.crt` in its data dir), users install `ca.crt` once, and every jupyter
//! instance then gets a short-lived server certificate from it that browsers trust.
//!
//! Keys are ECDSA P-256, made and used with aws-lc-rs: the one crypto provider of the whole
//! project (reqwest's rustls uses it too). The CA is certificate-signing only (pathlen 0: it
//! signs leaves, never other CAs), and its key never leaves the data dir.
#![forbid(unsafe_code)]

mod der;
mod files;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// File name of the CA's private key in its directory (PEM, PKCS#8, mode 0600).
pub const KEY_FILE: &str = "ca.key";
/// File name of the CA's certificate in its directory (PEM).
pub const CERT_FILE: &str = "ca.crt";
/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start this long before they are made, for clients whose clocks lag.
pub const CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// RFC 5280's upper bound for a common name; longer first names leave the subject empty.
const MAX_COMMON_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing to use the CA key {path}: group or others may read it (mode {mode:04o}); \
         if nobody else could have copied it, run `chmod 600 {path}`, otherwise delete {KEY_FILE} \
         and {CERT_FILE} beside it to make a new CA (users must then install the new one)",
        path = .path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "the CA key {key} exists but its certificate {cert} does not: restore {CERT_FILE}, or \
         delete {KEY_FILE} to make a new CA (users must then install the new one)",
        key = .key.display(), cert = .cert.display()
    )]
    MissingCert { key: PathBuf, cert: PathBuf },
    #[error("cannot use {path}: {reason}", path = .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the CA certificate {cert} does not belong to the key {key} (different public key)",
        cert = .cert.display(), key = .key.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("a server certificate needs at least one IP address or DNS name")]
    NoNames,
    #[error("cannot put {name:?} in a certificate: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot make a certificate valid for {0:?}")]
    InvalidValidity(Duration),
    #[error("{what}: {source}")]
    Rcgen {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// A server certificate and its fresh key, as berth hands them to an instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf certificate alone (clients already have the CA), PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM. Secret; `Debug` hides it.
    pub key_pem: String,
    /// The subject alternative names it was issued for, as text: IP addresses first, then
    /// DNS names, in the order given, without duplicates.
    pub names: Vec<String>,
    /// End of validity, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("names", &self.names)
            .field("not_after_unix", &self.not_after_unix)
            .field("key_pem", &"***")
            .finish_non_exhaustive()
    }
}

/// The deployment's certificate authority: its certificate and its signing key.
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    common_name: String,
    issuer: Issuer<'static, KeyPair>,
    /// Leaves name the CA's subject key identifier (when the CA has one).
    authority_key_id: bool,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir` (`ca.key`, `ca.crt`), or makes a new one there when `ca.key`
    /// does not exist yet: an ECDSA P-256 key, written with mode 0600, and a self-signed
    /// certificate (CA:true, pathlen 0, keyCertSign + cRLSign, 10 years, CN = `common_name`).
    ///
    /// A loaded CA keeps the name it was made with; `common_name` only names new ones. An
    /// existing key that group or others may access is refused, not repaired, as is a
    /// certificate that does not match the key.
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<Ca, CaError> {
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| files::io("cannot create", dir, source))?;
        }
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        match files::read_private(&key_path)? {
            Some(key_pem) => Self::load(&key_path, &key_pem, &cert_path),
            None => Self::create(&key_path, &cert_path, common_name),
        }
    }

    fn create(key_path: &Path, cert_path: &Path, common_name: &str) -> Result<Ca, CaError> {
        let key = new_key()?;
        let now = now();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = ca_key_usages();
        params.serial_number = Some(random_serial());
        params.not_before = now - CLOCK_SKEW;
        params.not_after = add(now, CA_VALIDITY)?;
        let cert = params.self_signed(&key).map_err(|source| CaError::Rcgen {
            what: "cannot make the CA certificate",
            source,
        })?;
        let cert_pem = cert.pem();
        // certificate first: a key on disk always has its certificate beside it
        files::write_atomic(cert_path, &cert_pem, 0o644)?;
        files::write_atomic(key_path, &key.serialize_pem(), 0o600)?;
        Ok(Ca {
            cert_pem,
            cert_der: cert.der().to_vec(),
            common_name: common_name.to_string(),
            issuer: Issuer::new(params, key),
            authority_key_id: true,
        })
    }

    fn load(key_path: &Path, key_pem: &str, cert_path: &Path) -> Result<Ca, CaError> {
        let invalid = |path: &Path, reason: String| CaError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let cert_pem = files::read_public(cert_path)?.ok_or_else(|| CaError::MissingCert {
            key: key_path.to_path_buf(),
            cert: cert_path.to_path_buf(),
        })?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| invalid(cert_path, format!("no PEM certificate in it ({e})")))?
            .to_vec();
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| invalid(key_path, format!("not a PEM private key ({e})")))?;
        let fields = der::cert_fields(&cert_der).map_err(|e| invalid(cert_path, e))?;
        if fields.spki != key.subject_public_key_info() {
            return Err(CaError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name =
            der::distinguished_name(&fields.subject).map_err(|e| invalid(cert_path, e))?;
        params.key_usages = ca_key_usages();
        let authority_key_id = fields.subject_key_id.is_some();
        if let Some(id) = fields.subject_key_id {
            params.key_identifier_method = KeyIdMethod::PreSpecified(id);
        }
        let common_name = der::common_name(&params.distinguished_name)
            .unwrap_or_default()
            .to_string();
        let issuer = Issuer::new(params, key);

        // Leaves must name this CA as their issuer byte for byte, or no client finds the
        // path; prove it once with a throwaway certificate before serving any.
        let probe = CertificateParams::default()
            .signed_by(issuer.key(), &issuer)
            .map_err(|source| CaError::Rcgen {
                what: "cannot sign with the CA key",
                source,
            })?;
        let probe = der::cert_fields(probe.der()).map_err(|e| invalid(cert_path, e))?;
        if probe.issuer != fields.subject {
            return Err(invalid(
                cert_path,
                "its subject name cannot be reproduced in the certificates it would sign".into(),
            ));
        }
        Ok(Ca {
            cert_pem,
            cert_der,
            common_name,
            issuer,
            authority_key_id,
        })
    }

    /// The CA certificate, PEM (what users install).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA's common name (e.g. `berth CA 3f2a…`).
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// Issues a TLS server certificate for exactly these IP addresses and DNS names, with a
    /// fresh ECDSA P-256 key: EKU serverAuth, key usage digitalSignature, CN = the first name,
    /// a random serial, valid from an hour ago (clock skew) for `valid_for`. Keep
    /// `valid_for` at most 825 days: Apple platforms refuse longer-lived server certificates.
    pub fn issue_server(
        &self,
        ips: &[IpAddr],
        dns_names: &[String],
        valid_for: Duration,
    ) -> Result<Issued, CaError> {
        let mut names = Vec::new();
        for ip in ips {
            push_unique(&mut names, SanName::Ip(*ip));
        }
        for name in dns_names {
            push_unique(&mut names, SanName::Dns(checked_dns_name(name)?));
        }
        self.issue(names, valid_for)
    }

    /// Issues the proxy's TLS certificate: `*.domain` and `domain` (the HTTPS front), plus
    /// `public_host` (an IP or a DNS name: where agents dial their tunnels).
    pub fn issue_proxy(
        &self,
        domain: &str,
        public_host: &str,
        valid_for: Duration,
    ) -> Result<Issued, CaError> {
        let domain = checked_dns_name(domain)?;
        let mut names = vec![SanName::Dns(format!("*.{domain}")), SanName::Dns(domain)];
        match public_host.parse::<IpAddr>() {
            Ok(ip) => push_unique(&mut names, SanName::Ip(ip)),
            Err(_) => push_unique(&mut names, SanName::Dns(checked_dns_name(public_host)?)),
        }
        self.issue(names, valid_for)
    }

    fn issue(&self, names: Vec<SanName>, valid_for: Duration) -> Result<Issued, CaError> {
        let first = names.first().ok_or(CaError::NoNames)?.to_string();
        let now = now();
        let not_after = add(now, valid_for)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if first.len() <= MAX_COMMON_NAME {
            params.distinguished_name.push(DnType::CommonName, &*first);
        }
        params.subject_alt_names =
            names
                .iter()
                .map(|n| match n {
                    SanName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                    SanName::Dns(d) => d.as_str().try_into().map(SanType::DnsName).map_err(|_| {
                        CaError::InvalidName {
                            name: d.clone(),
                            reason: "not ASCII",
                        }
                    }),
                })
                .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = self.authority_key_id;
        params.serial_number = Some(random_serial());
        params.not_before = now - CLOCK_SKEW;
        params.not_after = not_after;
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| CaError::Rcgen {
                what: "cannot sign the server certificate",
                source,
            })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            names: names.iter().map(ToString::to_string).collect(),
            not_after_unix: not_after.unix_timestamp(),
        })
    }
}

#[derive(PartialEq)]
enum SanName {
    Ip(IpAddr),
    Dns(String),
}

impl fmt::Display for SanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanName::Ip(ip) => ip.fmt(f),
            SanName::Dns(d) => f.write_str(d),
        }
    }
}

fn push_unique(names: &mut Vec<SanName>, name: SanName) {
    if !names.contains(&name) {
        names.push(name);
    }
}

/// A syntactically valid DNS name (no wildcard, not an IP address), without a trailing dot.
fn checked_dns_name(name: &str) -> Result<String, CaError> {
    let bad = |reason| CaError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.parse::<IpAddr>().is_ok() {
        return Err(bad("an IP address, not a DNS name; pass it as an IP"));
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.contains('*') {
        return Err(bad("wildcards are only issued by issue_proxy"));
    }
    rustls_pki_types::DnsName::try_from(trimmed).map_err(|_| bad("not a valid DNS name"))?;
    Ok(trimmed.to_string())
}

fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
}

fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| CaError::Rcgen {
        what: "cannot generate an ECDSA P-256 key",
        source,
    })
}

/// 16 random bytes, positive and without a leading zero byte (RFC 5280 §4.1.2.2).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Now, to the second (certificates hold whole seconds).
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn add(from: OffsetDateTime, by: Duration) -> Result<OffsetDateTime, CaError> {
    time::Duration::try_from(by)
        .ok()
        .filter(|d| d.is_positive())
        .and_then(|d| from.checked_add(d))
        .filter(|t| t.year() <= 9999)
        .ok_or(CaError::InvalidValidity(by))
}

#[cfg(test)]
mod tests;
