//! The jupyter launch mode, end to end: Jupyter over HTTPS with a certificate from berth's
//! own CA, trusted by a client that trusts ONLY that CA; token auth; a kernel evaluating
//! `1+1` over its WebSocket; JupyterLab; ssh into the same instance; certificates that
//! follow the host's public IP.
mod common;
use common::*;
use std::process::Command;

const JUPYTER_IMAGE: &str = "berth-test/jupyter";

fn jupyter_port(v: &serde_json::Value) -> u16 {
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["internal"] == 8080)
        .unwrap_or_else(|| panic!("no 8080 in {v:#}"))["external"]
        .as_u64()
        .unwrap() as u16
}

/// A client that trusts only berth's CA.
fn trusting(ca_pem: &[u8]) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// The SANs of the certificate served on 127.0.0.1:port, as openssl prints them.
fn served_sans(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .expect("openssl is needed");
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_over_https_with_berths_ca() {
    require_docker_and_images(&[JUPYTER_IMAGE]);
    let b = Berth::up();
    let key = KeyPair::new(&b.dir, "k");
    b.ok(&["keys", "add", key.public.to_str().unwrap()]);
    let ca_path = b.dir.join("berth-ca.crt");
    b.ok(&["cert", "--out", ca_path.to_str().unwrap()]);
    let ca_pem = std::fs::read(&ca_path).unwrap();
    // The CA is also served without a key.
    let served = reqwest::get(format!("{}/api/v1/ca.crt", b.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.as_ref(), ca_pem.as_slice());

    let id = b.create(&[
        JUPYTER_IMAGE,
        "--jupyter",
        "--onstart-cmd",
        "echo onstart in jupyter mode",
        "--wait",
    ]);
    let v = b.wait_state(id, "running");
    let port = jupyter_port(&v);
    let token = v["jupyter_token"].as_str().unwrap().to_string();
    assert!(token.len() >= 32, "{token}");

    // "running" means Jupyter answers over TLS, verified against berth's CA only.
    let http = trusting(&ca_pem);
    let base = format!("https://127.0.0.1:{port}");
    let api: serde_json::Value = http
        .get(format!("{base}/api"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api["version"].as_str().is_some(), "{api}");
    // Without berth's CA the same request fails certificate verification.
    let stranger = reqwest::Client::new();
    let err = stranger
        .get(format!("{base}/api"))
        .send()
        .await
        .expect_err("must not be trusted without berth's CA");
    let chain = format!("{err:?}");
    assert!(
        chain.contains("Certificate")
            || chain.contains("certificate")
            || chain.contains("UnknownIssuer"),
        "{chain}"
    );
    // The token is required.
    let s = http
        .get(format!("{base}/api/kernels?token=wrong"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 403);
    let s = http
        .get(format!("{base}/api/kernels"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 403);
    let s = http
        .get(format!("{base}/api/kernels?token={token}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 200);
    // A kernel evaluates 1+1 over its WebSocket.
    assert_eq!(
        kernel::one_plus_one(&ca_pem, "127.0.0.1", port, &token).await,
        "2"
    );

    // The certificate names PUBLIC_IPADDR; ssh into the same instance works.
    let kh = b.dir.join("known_hosts");
    let out = ssh(
        ssh_port(&v),
        &key.private,
        &kh,
        &[],
        "echo $PUBLIC_IPADDR; echo ${#JUPYTER_TOKEN}",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(
        lines[1],
        token.len().to_string(),
        "the token reaches ssh sessions"
    );
    let sans = served_sans(port);
    assert!(sans.contains(&format!("IP Address:{}", lines[0])), "{sans}");
    assert!(sans.contains("DNS:localhost"), "{sans}");
    b.wait_logs_onstart(id, "onstart in jupyter mode");

    // berth jupyter prints the working direct URL with the token.
    let url = b.ok(&["jupyter", &id.to_string()]).trim().to_string();
    assert_eq!(url, format!("https://127.0.0.1:{port}/tree?token={token}"));
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_lab_and_missing_jupyter() {
    require_docker_and_images(&[JUPYTER_IMAGE, SSH_IMAGE]);
    let b = Berth::up();
    let ca_pem = reqwest::get(format!("{}/api/v1/ca.crt", b.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let id = b.create(&[
        JUPYTER_IMAGE,
        "--jupyter",
        "--jupyter-lab",
        "--jupyter-dir",
        "/srv",
        "--wait",
    ]);
    let v = b.wait_state(id, "running");
    let (port, token) = (jupyter_port(&v), v["jupyter_token"].as_str().unwrap());
    let http = trusting(&ca_pem);
    let lab = http
        .get(format!("https://127.0.0.1:{port}/lab?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lab.status().as_u16(), 200);
    assert!(lab.text().await.unwrap().contains("JupyterLab"));
    assert_eq!(
        kernel::one_plus_one(&ca_pem, "127.0.0.1", port, token).await,
        "2"
    );
    let contents: serde_json::Value = http
        .get(format!(
            "https://127.0.0.1:{port}/api/contents?token={token}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(contents["path"], "", "{contents}");

    // An image without the Jupyter asked for fails with the reason, at once.
    let err = b.fails(&["create", SSH_IMAGE, "--jupyter", "--wait"]);
    assert!(
        err.contains("Jupyter Notebook") || err.contains("jupyter-notebook"),
        "{err}"
    );
    let err = b.fails(&[
        "create",
        JUPYTER_IMAGE,
        "--jupyter",
        "--jupyter-dir",
        "/no/such/dir",
        "--wait",
    ]);
    assert!(err.contains("/no/such/dir"), "{err}");
}

/// The certificate follows the host's public IP: restart the agent with another
/// --public-ip, stop/start the instance, and the new certificate names the new IP.
#[test]
fn certificate_follows_a_new_public_ip() {
    require_docker_and_images(&[JUPYTER_IMAGE]);
    let mut d = deployment::Deployment::start(Default::default());
    let (first, last) = port_block();
    let ports = format!("{first}-{last}");
    d.start_agent("ip-host", "127.0.0.1", &["--ports", &ports]);
    let id = d
        .ok(&["create", JUPYTER_IMAGE, "--jupyter"])
        .trim()
        .to_string();
    let v = d.wait_state(&id, "running");
    assert!(served_sans(jupyter_port(&v)).contains("IP Address:127.0.0.1"));

    d.stop_agent("ip-host");
    d.start_agent("ip-host", "127.0.0.2", &["--ports", &ports]);
    d.ok(&["stop", &id]);
    d.wait_state(&id, "stopped");
    d.ok(&["start", &id]);
    let v = d.wait_state(&id, "running");
    assert_eq!(v["public_ip"], "127.0.0.2");
    let sans = served_sans(jupyter_port(&v));
    assert!(
        sans.contains("IP Address:127.0.0.2") && !sans.contains("IP Address:127.0.0.1"),
        "{sans}"
    );
    assert!(
        v["jupyter_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.2:"),
        "{v:#}"
    );
}

/// A deployment whose CA was replaced (README: delete ca.key and ca.crt) issues every
/// instance a certificate from the new CA at its next start: the old ones would be refused
/// by everyone who installed the new CA, and by the agent's own health check.
#[test]
fn a_new_ca_issues_every_certificate_anew() {
    require_docker_and_images(&[JUPYTER_IMAGE]);
    let mut d = deployment::Deployment::start(Default::default());
    let (first, last) = port_block();
    d.start_agent(
        "ca-host",
        "127.0.0.1",
        &["--ports", &format!("{first}-{last}")],
    );
    let id = d
        .ok(&["create", JUPYTER_IMAGE, "--jupyter"])
        .trim()
        .to_string();
    d.wait_state(&id, "running");
    let old_ca = d.dir.join("old-ca.crt");
    d.ok(&["cert", "--out", old_ca.to_str().unwrap()]);

    d.stop_server();
    for f in ["ca.key", "ca.crt"] {
        std::fs::remove_file(d.dir.join("data").join(f)).unwrap();
    }
    d.start_server();
    d.wait_host("ca-host", true);
    let new_ca = d.dir.join("new-ca.crt");
    d.ok(&["cert", "--out", new_ca.to_str().unwrap()]);
    assert_ne!(
        std::fs::read(&old_ca).unwrap(),
        std::fs::read(&new_ca).unwrap(),
        "a new CA was made"
    );
    d.ok(&["stop", &id]);
    d.wait_state(&id, "stopped");
    d.ok(&["start", &id]);
    let v = d.wait_state(&id, "running");
    let port = jupyter_port(&v);
    let verify = |ca: &std::path::Path| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{port} -CAfile {} -verify_return_error </dev/null",
                ca.display()
            ))
            .output()
            .expect("openssl is needed");
        out.status.success() && stdout(&out).contains("Verify return code: 0 (ok)")
    };
    assert!(verify(&new_ca), "the certificate is from the new CA");
    assert!(!verify(&old_ca), "and not from the old one");
}
