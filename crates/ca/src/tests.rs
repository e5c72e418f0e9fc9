//! The CA proven with rustls/webpki, the verifier berth's clients use: real handshakes for
//! the happy path, the verifier's own verdicts for names, usages, validity and path length.
use super::*;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: Duration = Duration::from_secs(24 * 3600);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "berth-ca-test-{}-{name}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new_ca(name: &str) -> (TempDir, Ca) {
    let dir = TempDir::new(name);
    let ca = Ca::load_or_create(&dir.0, &format!("berth CA {name}")).unwrap();
    (dir, ca)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    Arc::new(roots)
}

fn leaf(issued: &Issued) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
}

/// What a client that trusts only `ca` says about `issued` for `name` at `at`.
fn verify_server(ca: &Ca, issued: &Issued, name: &str, at: Duration) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(
            &leaf(issued),
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(at),
        )
        .map(|_| ())
}

fn cert_error(result: Result<(), rustls::Error>) -> CertificateError {
    match result {
        Err(rustls::Error::InvalidCertificate(e)) => e,
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

/// A real TLS 1.3 handshake over an in-memory pipe: a server presenting `issued` (leaf only),
/// a client trusting only `ca` and asking for `name`; then a round trip of application data.
async fn handshake(ca: &Ca, issued: &Issued, name: &str) -> Result<(), rustls::Error> {
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf(issued)], key)
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let server = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(name.to_string()).unwrap();
    let result = async {
        let mut tls = connector.connect(name, client_io).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<_, std::io::Error>(())
    }
    .await;
    match result {
        Ok(()) => {
            server.await.unwrap().unwrap();
            Ok(())
        }
        Err(e) => {
            server.abort();
            let inner = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            Err(inner
                .cloned()
                .unwrap_or_else(|| panic!("not a TLS error: {e}")))
        }
    }
}

#[test]
fn ca_is_created_once_and_reloaded_after_a_restart() {
    let dir = TempDir::new("roundtrip");
    let ca = Ca::load_or_create(&dir.0, "berth CA 3f2a01").unwrap();
    assert_eq!(ca.common_name(), "berth CA 3f2a01");
    assert_eq!(mode(&dir.0.join(KEY_FILE)), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.0.join(CERT_FILE)).unwrap(),
        ca.cert_pem()
    );
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
            .unwrap()
            .as_ref(),
        ca.cert_der()
    );

    // a restart, even under another deployment name, keeps the same CA
    let again = Ca::load_or_create(&dir.0, "berth CA ffffff").unwrap();
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(again.common_name(), "berth CA 3f2a01");
    assert_eq!(mode(&dir.0.join(KEY_FILE)), 0o600);

    // and what the reloaded CA signs chains to the certificate users installed
    let issued = again.issue_server(&[LOCALHOST], &[], DAY).unwrap();
    verify_server(&ca, &issued, "127.0.0.1", unix_now()).unwrap();
    // no temporary files left behind
    let mut names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [CERT_FILE, KEY_FILE]);
}

#[test]
fn a_key_others_can_read_is_refused() {
    let (dir, _ca) = new_ca("perms");
    let key = dir.0.join(KEY_FILE);
    for bad in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = Ca::load_or_create(&dir.0, "x").unwrap_err();
        assert!(
            matches!(err, CaError::KeyPermissions { mode, .. } if mode == bad),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("group or others may read it"), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", key.display())),
            "{msg}"
        );
    }
    // still the same CA once fixed
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    Ca::load_or_create(&dir.0, "x").unwrap();
}

#[test]
fn a_key_without_its_certificate_is_an_error_not_a_new_ca() {
    let (dir, ca) = new_ca("nocert");
    std::fs::remove_file(dir.0.join(CERT_FILE)).unwrap();
    let err = Ca::load_or_create(&dir.0, "x").unwrap_err();
    assert!(matches!(err, CaError::MissingCert { .. }), "{err}");
    // a certificate without its key is useless: a new CA replaces it
    std::fs::remove_file(dir.0.join(KEY_FILE)).unwrap();
    std::fs::write(dir.0.join(CERT_FILE), ca.cert_pem()).unwrap();
    let fresh = Ca::load_or_create(&dir.0, "berth CA fresh").unwrap();
    assert_ne!(fresh.cert_pem(), ca.cert_pem());
}

#[test]
fn a_certificate_of_another_key_is_refused() {
    let (dir, _ca) = new_ca("mismatch");
    let (_other_dir, other) = new_ca("other");
    std::fs::write(dir.0.join(CERT_FILE), other.cert_pem()).unwrap();
    let err = Ca::load_or_create(&dir.0, "x").unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");

    std::fs::write(dir.0.join(CERT_FILE), "not a certificate").unwrap();
    let err = Ca::load_or_create(&dir.0, "x").unwrap_err();
    assert!(matches!(err, CaError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn a_client_trusting_only_the_ca_completes_a_tls_handshake() {
    let (_dir, ca) = new_ca("tls");
    let issued = ca
        .issue_server(&[LOCALHOST], &["localhost".to_string()], DAY)
        .unwrap();
    // leaf only: clients have the CA
    assert_eq!(issued.cert_pem.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(issued.names, ["127.0.0.1", "localhost"]);
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));

    handshake(&ca, &issued, "127.0.0.1").await.unwrap();
    handshake(&ca, &issued, "localhost").await.unwrap();

    // the same handshake fails for a name the certificate does not carry
    let err = handshake(&ca, &issued, "10.1.2.3").await.unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
        ),
        "{err:?}"
    );
    // and for a client that does not have this CA
    let (_other_dir, other) = new_ca("tls-other");
    let err = handshake(&other, &issued, "127.0.0.1").await.unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn sans_are_exactly_the_names_asked_for() {
    let (_dir, ca) = new_ca("sans");
    let ip4: IpAddr = "203.0.113.7".parse().unwrap();
    let ip6: IpAddr = "2001:db8::7".parse().unwrap();
    let issued = ca
        .issue_server(
            &[ip4, ip6, ip4],
            &["gpu1.example.net".into(), "gpu1.example.net".into()],
            DAY,
        )
        .unwrap();
    assert_eq!(
        issued.names,
        ["203.0.113.7", "2001:db8::7", "gpu1.example.net"]
    );
    let now = unix_now();
    for name in ["203.0.113.7", "2001:db8::7", "gpu1.example.net"] {
        verify_server(&ca, &issued, name, now).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in [
        "203.0.113.8",
        "127.0.0.1",
        "2001:db8::8",
        "gpu2.example.net",
        "x.gpu1.example.net",
    ] {
        let err = cert_error(verify_server(&ca, &issued, name, now));
        assert!(
            matches!(err, CertificateError::NotValidForNameContext { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn names_are_required_and_checked() {
    let (_dir, ca) = new_ca("names");
    assert!(matches!(
        ca.issue_server(&[], &[], DAY),
        Err(CaError::NoNames)
    ));
    for bad in [
        "",
        "1.2.3.4",
        "::1",
        "*.example.com",
        "bad name",
        "ex_ample..com",
    ] {
        let err = ca.issue_server(&[], &[bad.to_string()], DAY).unwrap_err();
        assert!(matches!(err, CaError::InvalidName { .. }), "{bad}: {err}");
    }
    // a trailing dot is the same name
    let issued = ca
        .issue_server(&[], &["example.com.".to_string()], DAY)
        .unwrap();
    assert_eq!(issued.names, ["example.com"]);
    assert!(matches!(
        ca.issue_server(&[LOCALHOST], &[], Duration::ZERO),
        Err(CaError::InvalidValidity(_))
    ));
    assert!(matches!(
        ca.issue_server(&[LOCALHOST], &[], Duration::from_secs(u64::MAX)),
        Err(CaError::InvalidValidity(_))
    ));
}

#[test]
fn leaf_is_for_server_auth_only() {
    let (_dir, ca) = new_ca("eku");
    let issued = ca.issue_server(&[LOCALHOST], &[], DAY).unwrap();
    let at = UnixTime::since_unix_epoch(unix_now());
    verify_server(&ca, &issued, "127.0.0.1", unix_now()).unwrap();
    // webpki accepts any purpose when a certificate has no EKU extension at all, so the
    // refusal as a client certificate proves the extension is there and names serverAuth only
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&ca), provider())
        .build()
        .unwrap();
    let err = verifier
        .verify_client_cert(&leaf(&issued), &[], at)
        .unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::InvalidPurposeContext { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn validity_starts_an_hour_back_and_ends_when_asked() {
    let (_dir, ca) = new_ca("validity");
    let before = unix_now().as_secs() as i64;
    let issued = ca.issue_server(&[LOCALHOST], &[], 7 * DAY).unwrap();
    let after = unix_now().as_secs() as i64;
    let week = 7 * DAY.as_secs() as i64;
    assert!(
        (before + week..=after + week).contains(&issued.not_after_unix),
        "{} not in {}..={}",
        issued.not_after_unix,
        before + week,
        after + week
    );
    let at = |secs: i64| Duration::from_secs(secs as u64);
    let end = issued.not_after_unix;
    verify_server(&ca, &issued, "127.0.0.1", at(end - 60)).unwrap();
    verify_server(&ca, &issued, "127.0.0.1", at(before - 3500)).unwrap();
    let err = cert_error(verify_server(&ca, &issued, "127.0.0.1", at(end + 60)));
    assert!(
        matches!(err, CertificateError::ExpiredContext { .. }),
        "{err:?}"
    );
    let err = cert_error(verify_server(&ca, &issued, "127.0.0.1", at(before - 3700)));
    assert!(
        matches!(err, CertificateError::NotValidYetContext { .. }),
        "{err:?}"
    );
}

#[test]
fn wildcard_covers_one_label_and_the_domain() {
    let (_dir, ca) = new_ca("wildcard");
    let issued = ca
        .issue_proxy("proxy.example.net", "203.0.113.9", DAY)
        .unwrap();
    assert_eq!(
        issued.names,
        ["*.proxy.example.net", "proxy.example.net", "203.0.113.9"]
    );
    let now = unix_now();
    for name in [
        "i42-8080.proxy.example.net",
        "proxy.example.net",
        "203.0.113.9",
    ] {
        verify_server(&ca, &issued, name, now).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["a.b.proxy.example.net", "example.net", "proxy.example.org"] {
        let err = cert_error(verify_server(&ca, &issued, name, now));
        assert!(
            matches!(err, CertificateError::NotValidForNameContext { .. }),
            "{name}: {err:?}"
        );
    }
    assert!(ca.issue_proxy("*.x.com", "h", DAY).is_err());
    assert!(ca.issue_proxy("10.0.0.1", "h", DAY).is_err());
    let by_name = ca
        .issue_proxy("berth.localhost", "proxy.example.org", DAY)
        .unwrap();
    assert_eq!(
        by_name.names,
        ["*.berth.localhost", "berth.localhost", "proxy.example.org"]
    );
}

/// The extensions, byte for byte. webpki ignores a trust anchor's own constraints, so this
/// is where the CA's basicConstraints and keyUsage are proven (OpenSSL, NSS and browsers do
/// read them).
#[test]
fn extensions_are_exactly_what_browsers_expect() {
    let (_dir, ca) = new_ca("extensions");
    let ext = der::extensions(ca.cert_der()).unwrap();
    let find = |ext: &[der::Extension], oid: &[u64]| {
        ext.iter()
            .find(|(o, _, _)| o == oid)
            .map(|(_, critical, value)| (*critical, value.clone()))
    };
    // basicConstraints, critical: cA TRUE, pathLenConstraint 0 (signs leaves, never CAs)
    assert_eq!(
        find(&ext, &[2, 5, 29, 19]),
        Some((true, vec![0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00]))
    );
    // keyUsage, critical: keyCertSign (bit 5) and cRLSign (bit 6), nothing else
    assert_eq!(
        find(&ext, &[2, 5, 29, 15]),
        Some((true, vec![0x03, 0x02, 0x01, 0x06]))
    );
    let ski = find(&ext, &[2, 5, 29, 14])
        .expect("subject key identifier")
        .1;
    assert_eq!(find(&ext, &[2, 5, 29, 37]), None, "no EKU on the CA");

    let issued = ca.issue_server(&[LOCALHOST], &[], DAY).unwrap();
    let ext = der::extensions(&leaf(&issued)).unwrap();
    // extendedKeyUsage: id-kp-serverAuth only
    assert_eq!(
        find(&ext, &[2, 5, 29, 37]),
        Some((
            false,
            vec![0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]
        ))
    );
    // keyUsage, critical: digitalSignature only
    assert_eq!(
        find(&ext, &[2, 5, 29, 15]),
        Some((true, vec![0x03, 0x02, 0x07, 0x80]))
    );
    // basicConstraints: cA FALSE
    assert_eq!(find(&ext, &[2, 5, 29, 19]), Some((true, vec![0x30, 0x00])));
    // authorityKeyIdentifier names the CA's subject key identifier: [0] keyIdentifier
    let aki = find(&ext, &[2, 5, 29, 35])
        .expect("authority key identifier")
        .1;
    let ski = yasna::parse_der(&ski, |r| r.read_bytes()).unwrap();
    assert_eq!(aki[2..4], [0x80, ski.len() as u8]);
    assert_eq!(aki[4..], ski[..]);

    // a reloaded CA writes the same authority key identifier
    let (dir, ca) = new_ca("extensions-reload");
    let first = der::extensions(&leaf(&ca.issue_server(&[LOCALHOST], &[], DAY).unwrap())).unwrap();
    let again = Ca::load_or_create(&dir.0, "x").unwrap();
    let second =
        der::extensions(&leaf(&again.issue_server(&[LOCALHOST], &[], DAY).unwrap())).unwrap();
    assert_eq!(
        find(&first, &[2, 5, 29, 35]),
        find(&second, &[2, 5, 29, 35])
    );
}

#[test]
fn ca_is_shareable_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<Ca>();
}
