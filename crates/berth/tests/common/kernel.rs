//! Talking to a Jupyter kernel the way a browser does: REST to start it, then its WebSocket,
//! over TLS that verifies against berth's CA only.
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `1+1` in a new kernel of the Jupyter at `https://{name}:{port}` (reached on
/// 127.0.0.1:port; `name` is the TLS name: an IP, or a proxy name like
/// `i7-8080.berth.localhost`) and returns what the kernel printed.
pub async fn one_plus_one(ca_pem: &[u8], name: &str, port: u16, token: &str) -> String {
    let mut http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).unwrap()]);
    if name.parse::<std::net::IpAddr>().is_err() {
        http = http.resolve(name, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let base = format!("https://{name}:{port}");
    let kernel: serde_json::Value = http
        .build()
        .unwrap()
        .post(format!("{base}/api/kernels?token={token}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = kernel["id"].as_str().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .unwrap();
    let url = format!("wss://{name}:{port}/api/kernels/{kid}/channels?token={token}");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("kernel websocket");
    let msg_id = format!("berth-test-{}", rand::random::<u32>());
    let request = serde_json::json!({
        "header": {"msg_id": msg_id, "username": "test", "session": "berth-test", "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "1+1", "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
    });
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        request.to_string().into(),
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("no execute_result within 60 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["msg_type"] == "execute_result" && v["parent_header"]["msg_id"] == msg_id.as_str()
            {
                return v["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap()
                    .to_string();
            }
        }
    }
}
