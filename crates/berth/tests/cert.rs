//! The deployment's certificate authority as users meet it: `GET /api/v1/ca.crt` (no key,
//! PEM or DER) and `berth cert`, against a real `berth up`, the same CA after a restart.
mod common;
use common::*;
use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const HINT: &str = "\"Trusting berth's certificate authority\"";

async fn get(url: &str) -> (StatusCode, String, Vec<u8>) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn the_ca_certificate_is_public_and_survives_a_restart() {
    let mut b = Berth::up();
    let data = b.dir.join("data");
    let on_disk = std::fs::read_to_string(data.join("ca.crt")).unwrap();
    assert!(
        on_disk.starts_with("-----BEGIN CERTIFICATE-----"),
        "{on_disk}"
    );
    let key_mode = std::fs::metadata(data.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    // the API, without a key
    let (s, ct, pem) = get(&format!("{}/api/v1/ca.crt", b.url)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct, "application/x-pem-file");
    assert_eq!(String::from_utf8(pem).unwrap(), on_disk);
    let (s, ct, der) = get(&format!("{}/api/v1/ca.crt?format=der", b.url)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct, "application/pkix-cert");
    assert_eq!(der[0], 0x30, "DER starts with a SEQUENCE");
    let (s, _, body) = get(&format!("{}/api/v1/ca.crt?format=p12", b.url)).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, _, doc) = get(&format!("{}/api/v1/openapi.json", b.url)).await;
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert!(
        doc["paths"].get("/api/v1/ca.crt").is_some(),
        "ca.crt missing from openapi.json"
    );

    // `berth cert` needs only the URL: no login, no key
    let cert = |args: &[&str]| {
        Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", b.dir.join("nobody.json"))
            .env("BERTH_URL", &b.url)
            .env_remove("BERTH_API_KEY")
            .output()
            .unwrap()
    };
    let out = cert(&["cert"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), on_disk);
    assert!(stderr(&out).contains(HINT), "{}", stderr(&out));

    let file = b.dir.join("berth-ca.crt");
    let out = cert(&["cert", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), on_disk);
    assert!(stderr(&out).contains(HINT), "{}", stderr(&out));

    let file = b.dir.join("berth-ca.der");
    let out = cert(&["cert", "--der", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), der);
    // stdout is a pipe here, so binary may go there
    let out = cert(&["cert", "--der"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, der);

    // the logged-in CLI works the same
    assert_eq!(b.ok(&["cert"]), on_disk);

    // a restart serves the same CA
    b.restart();
    let (s, _, pem) = get(&format!("{}/api/v1/ca.crt", b.url)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(String::from_utf8(pem).unwrap(), on_disk);
}
