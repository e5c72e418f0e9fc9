//! The proxy in-process, over real loopback sockets: a hand-written fake berth server serving
//! the settings and the route table, a fake agent (the real tunnel over real TLS) whose
//! instances are local test servers, and real clients (raw TCP, reqwest, raw TLS).
use berth_ca::Ca;
use berth_core::protocol::proxy::{ProxyConfig as Remote, Route, Routes, CONFIG_PATH, ROUTES_PATH};
use berth_core::protocol::PortRange;
use berth_core::Secret;
use berth_proxy::{CertFiles, ProxyConfig, ProxyError, RunningProxy};
use berth_tunnel::{DialError, Hello, TunnelError, PROTOCOL_VERSION};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DOMAIN: &str = "berth.test";
const PROXY_TOKEN: &str = "proxy-token-0123456789";
const ACCESS: &str = "tok7-0123456789abcdef";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DAY: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------- helpers

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-proxy-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_client(ca: &Ca) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn tls_server(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP head (through the blank line); `None` at EOF. `buf` keeps what follows.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            buf.drain(..i + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- the instances' servers

async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A tiny HTTP/1.1 server: answers `<name>: <request line>` (keep-alive), or, for an
/// upgrade, 101 and then echoes bytes.
async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, name: &'static str) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut s, &mut buf).await {
        let line = head.lines().next().unwrap_or_default().to_string();
        if head.to_ascii_lowercase().contains("\nupgrade: websocket") {
            let _ = s
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .await;
            let _ = s.write_all(&buf).await;
            let (mut r, mut w) = tokio::io::split(s);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            return;
        }
        let body = format!("{name}: {line}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn http_app() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_http(s, "app"));
        }
    });
    port
}

/// Jupyter's stand-in: HTTPS with a leaf from the CA for 127.0.0.1 (the route's public IP).
async fn jupyter(ca: &Ca) -> u16 {
    let leaf = ca.issue_server(&[LOCALHOST], &[], DAY).unwrap();
    let acceptor = tls_server(&leaf.cert_pem, &leaf.key_pem);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    serve_http(tls, "jupyter").await;
                }
            });
        }
    });
    port
}

// ---------------------------------------------------------------- the fake berth server

struct ServerState {
    config: Remote,
    routes: Routes,
    /// Answer 503 to this many config requests first.
    config_failures: usize,
    /// Answer 503 to route requests.
    routes_down: bool,
    route_fetches: usize,
}

/// A minimal HTTP/1.1 responder for the proxy's two endpoints (bearer token checked).
async fn fake_server(state: Arc<Mutex<ServerState>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(head) = read_head(&mut s, &mut buf).await else {
                    return;
                };
                let target = head.split(' ').nth(1).unwrap_or_default();
                let path = target.split('?').next().unwrap_or_default().to_string();
                let authorized = head.lines().any(|l| {
                    l.eq_ignore_ascii_case(&format!("authorization: Bearer {PROXY_TOKEN}"))
                });
                let (status, body) = {
                    let mut st = state.lock().unwrap();
                    if !authorized {
                        ("401 Unauthorized", "{\"error\":\"bad token\"}".to_string())
                    } else if path == CONFIG_PATH {
                        if st.config_failures > 0 {
                            st.config_failures -= 1;
                            ("503 Service Unavailable", "starting".to_string())
                        } else {
                            ("200 OK", serde_json::to_string(&st.config).unwrap())
                        }
                    } else if path == ROUTES_PATH {
                        st.route_fetches += 1;
                        if st.routes_down {
                            ("503 Service Unavailable", "down".to_string())
                        } else {
                            ("200 OK", serde_json::to_string(&st.routes).unwrap())
                        }
                    } else {
                        ("404 Not Found", "{}".to_string())
                    }
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- the fake agent

/// The instances the fake agent has: (instance, port) → local server port.
type Dials = Arc<Mutex<Vec<((i64, u16), u16)>>>;

/// An agent for `host`: TLS to the proxy's tunnel port (trusting only the CA), then the
/// tunnel; dials only what `dials` lists (404 otherwise, as the real agent).
fn agent(
    tunnel: SocketAddr,
    ca: &Ca,
    host: &str,
    token: &str,
    dials: Dials,
) -> JoinHandle<Result<(), TunnelError>> {
    let connector = tls_client(ca);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        host: host.into(),
        token: token.into(),
    };
    tokio::spawn(async move {
        let tcp = TcpStream::connect(tunnel).await?;
        tcp.set_nodelay(true)?;
        let tls = connector
            // Agents verify the proxy's public_host, as the server's TunnelEndpoint names it.
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await?;
        berth_tunnel::serve_agent(tls, &hello, move |instance, port| {
            let target = dials
                .lock()
                .unwrap()
                .iter()
                .find(|(k, _)| *k == (instance, port))
                .map(|(_, p)| *p);
            async move {
                match target {
                    Some(p) => TcpStream::connect(("127.0.0.1", p))
                        .await
                        .map_err(|e| DialError::Unreachable(e.to_string())),
                    None => Err(DialError::NotFound(format!(
                        "instance {instance} exposes no port {port} here"
                    ))),
                }
            }
        })
        .await
    })
}

// ---------------------------------------------------------------- the environment

struct Env {
    _dir: TempDir,
    ca: Ca,
    state: Arc<Mutex<ServerState>>,
    proxy: Option<RunningProxy>,
    shutdown: CancellationToken,
    ssh_port: u16,
    agent: JoinHandle<Result<(), TunnelError>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.agent.abort();
    }
}

fn route7(ssh_port: u16) -> Route {
    Route {
        instance: 7,
        host: "h1".into(),
        public_ip: "127.0.0.1".into(),
        ssh_port: Some(ssh_port),
        jupyter: true,
        http_ports: vec![7860],
        access_token: ACCESS.into(),
    }
}

fn route(instance: i64, host: &str, http_ports: Vec<u16>, token: &str) -> Route {
    Route {
        instance,
        host: host.into(),
        public_ip: "127.0.0.1".into(),
        ssh_port: None,
        jupyter: true,
        http_ports,
        access_token: token.into(),
    }
}

/// What the fake server serves: the proxy's settings with a certificate from `ca`, and
/// `routes`.
fn server_state(ca: &Ca, routes: Vec<Route>) -> ServerState {
    let proxy_cert = ca.issue_proxy(DOMAIN, "127.0.0.1", DAY).unwrap();
    ServerState {
        config: Remote {
            public_host: "127.0.0.1".into(),
            domain: DOMAIN.into(),
            tunnel_port: 0,
            https_port: 0,
            ssh_ports: PortRange {
                first: 1024,
                last: 65535,
            },
            cert_pem: proxy_cert.cert_pem.clone(),
            key_pem: proxy_cert.key_pem.clone(),
            ca_pem: ca.cert_pem().to_string(),
        },
        routes: Routes { version: 0, routes },
        config_failures: 0,
        routes_down: false,
        route_fetches: 0,
    }
}

async fn env() -> Env {
    env_with(None).await
}

/// [`env`], with the operator's certificate files for the HTTPS front.
async fn env_with(https_cert: Option<CertFiles>) -> Env {
    let dir = TempDir::new();
    let ca = Ca::load_or_create(&dir.0, "berth CA proxy test").unwrap();
    let ssh_port = free_port();
    let state = Arc::new(Mutex::new(server_state(
        &ca,
        vec![
            route7(ssh_port),
            // A host whose agent never connects.
            route(8, "h-none", vec![], "tok8-0123456789"),
        ],
    )));
    let server = fake_server(state.clone()).await;

    let shutdown = CancellationToken::new();
    let proxy = berth_proxy::start(
        ProxyConfig {
            https_cert,
            ..config(server)
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    wait_until("the SSH port", Duration::from_secs(5), || {
        proxy.ssh_ports().contains(&ssh_port)
    })
    .await;
    let dials: Dials = Arc::new(Mutex::new(vec![
        ((7, 22), echo_server().await),
        ((7, 8080), jupyter(&ca).await),
        ((7, 7860), http_app().await),
    ]));
    let agent = agent(proxy.tunnel_addr(), &ca, "h1", PROXY_TOKEN, dials);
    wait_until("the agent's tunnel", Duration::from_secs(5), || {
        proxy.tunnels().is_connected("h1")
    })
    .await;
    Env {
        _dir: dir,
        ca,
        state,
        proxy: Some(proxy),
        shutdown,
        ssh_port,
        agent,
    }
}

fn config(server: SocketAddr) -> ProxyConfig {
    ProxyConfig {
        server_url: format!("http://{server}/"),
        token: Secret::new(PROXY_TOKEN),
        listen_ip: LOCALHOST,
        https_cert: None,
    }
}

impl Env {
    fn proxy(&self) -> &RunningProxy {
        self.proxy.as_ref().unwrap()
    }

    fn https_addr(&self) -> SocketAddr {
        self.proxy().https_addr()
    }

    /// A browser-like client that trusts only the CA and does not follow redirects.
    fn client(&self, name: &str) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(name, self.https_addr())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn get(&self, name: &str, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client(name)
            .get(format!("https://{name}:{}{path}", self.https_addr().port()));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send().await.unwrap()
    }

    /// A raw TLS connection to the HTTPS front (SNI `sni`), trusting only the CA.
    async fn raw_tls(&self, sni: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.https_addr()).await.unwrap();
        tls_client(&self.ca)
            .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Sends `request` raw and reads the whole answer (the front closes after its own).
    async fn raw(&self, request: &str) -> String {
        let mut tls = self.raw_tls(DOMAIN).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn set_routes(&self, f: impl FnOnce(&mut Vec<Route>)) {
        f(&mut self.state.lock().unwrap().routes.routes);
    }
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_port_carries_bytes_both_ways() {
    let env = env().await;
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let port = env.ssh_port;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let data: Vec<u8> = (0..256 * 1024).map(|j| (j % 251) as u8 ^ i).collect();
            let (mut r, mut w) = s.split();
            let write = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let read = r.read_to_end(&mut back);
            let (_, n) = tokio::join!(write, read);
            n.unwrap();
            assert!(back == data, "connection {i}: echo differs");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_get_one_404_that_leaks_nothing() {
    let env = env().await;
    let expect = "berth: not found. An instance's http port opens with its link from `berth show` \
                  or the web GUI, which carries the instance's access token.\n";
    // Through a real client: an unknown instance, a port the instance does not expose, a
    // port of a known instance that is neither Jupyter's nor http.
    for name in [
        "i999-8080.berth.test",
        "i7-22.berth.test",
        "i7-9999.berth.test",
    ] {
        let r = env.get(name, "/", None).await;
        assert_eq!(r.status(), 404, "{name}");
        assert_eq!(r.text().await.unwrap(), expect, "{name}");
    }
    // Names outside the scheme, raw (the certificate does not cover them).
    for host in [
        "berth.test",
        "other.example",
        "i7-8080.other.test",
        "i7-8080.x.berth.test",
        "[::1]:443",
    ] {
        let r = env
            .raw(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"))
            .await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{host}: {r}");
        assert_eq!(body_of(&r), expect, "{host}");
    }
    let r = env.raw("GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "no Host: {r}");
    let r = env
        .raw("GET / HTTP/1.1\r\nHost: a\r\nHost: i7-8080.berth.test\r\n\r\n")
        .await;
    assert!(r.starts_with("HTTP/1.1 400 "), "two Hosts: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_port_needs_the_access_token() {
    let env = env().await;
    let name = "i7-7860.berth.test";
    // Without the token, the answer is the one a name that leads nowhere gets, word for
    // word: nobody learns which instances and ports exist.
    let unknown = env.get("i99-7860.berth.test", "/app", None).await;
    assert_eq!(unknown.status(), 404);
    let unknown = unknown.text().await.unwrap();
    assert!(unknown.contains("access token"), "{unknown}");
    let r = env.get(name, "/app", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), unknown);

    // A link with a wrong token is refused the same way.
    let r = env.get(name, "/app?berth_token=nope", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), unknown);

    // The link with the token sets the cookie and sends the browser on without it.
    let r = env
        .get(name, &format!("/app?x=1&berth_token={ACCESS}&y=2"), None)
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/app?x=1&y=2");
    assert_eq!(
        r.headers()["set-cookie"],
        format!("berth_i7={ACCESS}; Path=/; Secure; HttpOnly; SameSite=Lax").as_str()
    );

    // With the cookie: served (and kept alive across requests on one connection).
    let client = env.client(name);
    for path in ["/app?x=1&y=2", "/second"] {
        let r = client
            .get(format!("https://{name}:{}{path}", env.https_addr().port()))
            .header("Cookie", format!("theme=dark; berth_i7={ACCESS}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), format!("app: GET {path} HTTP/1.1"));
    }

    // A wrong cookie, or instance 8's cookie name, does not open it.
    for cookie in [
        "berth_i7=wrong".to_string(),
        format!("berth_i8={ACCESS}"),
        format!("berth_i7={ACCESS}x"),
    ] {
        let r = env.get(name, "/app", Some(&cookie)).await;
        assert_eq!(r.status(), 404, "{cookie}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyter_over_tls_with_keepalive_and_websocket_upgrade() {
    let env = env().await;
    let name = "i7-8080.berth.test";
    let client = env.client(name);
    for path in ["/lab", "/api/kernels"] {
        let r = client
            .get(format!("https://{name}:{}{path}", env.https_addr().port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            format!("jupyter: GET {path} HTTP/1.1")
        );
    }

    // A WebSocket-style upgrade: 101, then bytes both ways.
    let mut tls = env.raw_tls(name).await;
    tls.write_all(
        b"GET /api/kernels/k/channels HTTP/1.1\r\nHost: i7-8080.berth.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let head = read_head(&mut tls, &mut buf).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    while buf.len() < 5 {
        let mut chunk = [0u8; 64];
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf, b"early");
    for msg in [&b"1+1"[..], &[0x81, 0x02, b'h', b'i'][..]] {
        tls.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tls.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_down_answers_502_with_the_reason() {
    let env = env().await;
    // Anyone may reach a Jupyter name (Jupyter asks for its own token): the answer says
    // why, without naming hosts.
    let r = env.get("i8-8080.berth.test", "/", None).await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.text().await.unwrap(),
        "berth: the host of instance 8 is not connected to the proxy now (its agent is down \
         or cut off)\n"
    );

    // Instance 7's agent goes away: its names answer 502, its SSH port closes connections.
    env.agent.abort();
    wait_until("the tunnel to drop", Duration::from_secs(5), || {
        !env.proxy().tunnels().is_connected("h1")
    })
    .await;
    let r = env.get("i7-8080.berth.test", "/", None).await;
    assert_eq!(r.status(), 502);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("berth: the host of instance 7 is not connected to the proxy now"));
    // With the access token, the whole reason.
    let r = env
        .get(
            "i7-7860.berth.test",
            "/",
            Some(&format!("berth_i7={ACCESS}")),
        )
        .await;
    assert_eq!(r.status(), 502);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("berth: host h1 has no tunnel to the proxy"));
    let mut s = TcpStream::connect(("127.0.0.1", env.ssh_port))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_agent_token_is_refused() {
    let env = env().await;
    let bad = agent(
        env.proxy().tunnel_addr(),
        &env.ca,
        "h2",
        "not-the-token",
        Arc::default(),
    );
    match bad.await.unwrap() {
        Err(TunnelError::Refused(why)) => assert_eq!(why, "bad agent token"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!env.proxy().tunnels().is_connected("h2"));
    assert!(env.proxy().tunnels().is_connected("h1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_server() {
    let env = env().await;
    // A new instance works at once (its name makes the proxy refresh), without a poll period.
    let dials_probe = env.get("i9-7860.berth.test", "/", None).await;
    assert_eq!(dials_probe.status(), 404);
    env.set_routes(|r| r.push(route(9, "h1", vec![7860], "tok9-0123456789")));
    let started = Instant::now();
    let r = env
        .get("i9-7860.berth.test", "/", Some("berth_i9=tok9-0123456789"))
        .await;
    // The agent has no instance 9: the tunnel's refusal proves the proxy routed it.
    assert_eq!(r.status(), 502);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("instance 9 exposes no port 7860"),
        "routed to the agent"
    );
    assert!(started.elapsed() < Duration::from_millis(900));

    // An open SSH session; then instance 7 moves to another host: the session ends and the
    // port no longer reaches the old place.
    let mut s = TcpStream::connect(("127.0.0.1", env.ssh_port))
        .await
        .unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut two = [0u8; 2];
    s.read_exact(&mut two).await.unwrap();
    env.set_routes(|r| r[0].host = "h-moved".into());
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("the session ends within the refresh period")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let mut s = TcpStream::connect(("127.0.0.1", env.ssh_port))
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "a new connection is closed (host h-moved has no tunnel)"
    );

    // Destroyed: the SSH listener closes and the names answer 404.
    env.set_routes(|r| r.retain(|r| r.instance != 7));
    let port = env.ssh_port;
    wait_until("the SSH port to close", Duration::from_secs(3), || {
        !env.proxy().ssh_ports().contains(&port)
    })
    .await;
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the SSH port stops listening");
    assert_eq!(env.get("i7-8080.berth.test", "/", None).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_table_serves_while_the_server_is_down() {
    let env = env().await;
    env.state.lock().unwrap().routes_down = true;
    let before = env.state.lock().unwrap().route_fetches;
    wait_until("failed fetches", Duration::from_secs(5), || {
        env.state.lock().unwrap().route_fetches >= before + 2
    })
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", env.ssh_port))
        .await
        .unwrap();
    s.write_all(b"still").await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still");
    let r = env.get("i7-8080.berth.test", "/x", None).await;
    assert_eq!(r.status(), 200);
    // Unknown names still get their 404 (after a bounded wait).
    assert_eq!(
        env.get("i99-8080.berth.test", "/", None).await.status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_refresh_at_most_ten_times_a_second() {
    let env = env().await;
    let before = env.state.lock().unwrap().route_fetches;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = env.client(&format!("i{}-8080.berth.test", 1000 + i));
        let url = format!(
            "https://i{}-8080.berth.test:{}/",
            1000 + i,
            env.https_addr().port()
        );
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 404);
    }
    let fetches = env.state.lock().unwrap().route_fetches - before;
    let secs = started.elapsed().as_secs_f64();
    assert!(
        (fetches as f64) <= secs * 10.0 + 2.0,
        "{fetches} fetches in {secs:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_waits_for_the_server_and_stops_cleanly() {
    let dir = TempDir::new();
    let ca = Ca::load_or_create(&dir.0, "berth CA proxy test").unwrap();
    let cert = ca.issue_proxy(DOMAIN, "127.0.0.1", DAY).unwrap();
    let ssh_port = free_port();
    let state = Arc::new(Mutex::new(ServerState {
        config: Remote {
            public_host: "127.0.0.1".into(),
            domain: DOMAIN.into(),
            tunnel_port: 0,
            https_port: 0,
            ssh_ports: PortRange {
                first: 1024,
                last: 65535,
            },
            cert_pem: cert.cert_pem.clone(),
            key_pem: cert.key_pem.clone(),
            ca_pem: ca.cert_pem().to_string(),
        },
        routes: Routes {
            version: 0,
            routes: vec![route7(ssh_port)],
        },
        config_failures: 3,
        routes_down: false,
        route_fetches: 0,
    }));
    let server = fake_server(state.clone()).await;
    let shutdown = CancellationToken::new();
    let proxy = berth_proxy::start(config(server), shutdown.clone())
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().config_failures, 0, "it retried");
    assert_eq!(
        proxy.ssh_ports(),
        vec![ssh_port],
        "routes loaded before start returns"
    );
    let (https, tunnel) = (proxy.https_addr(), proxy.tunnel_addr());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), proxy.wait())
        .await
        .unwrap()
        .unwrap();
    for addr in [https, tunnel, SocketAddr::new(LOCALHOST, ssh_port)] {
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "{addr} is closed after shutdown"
        );
    }

    // A wrong proxy token is an error, not an endless retry.
    let mut cfg = config(server);
    cfg.token = Secret::new("wrong");
    match berth_proxy::start(cfg, CancellationToken::new()).await {
        Err(e @ ProxyError::Unauthorized { .. }) => {
            assert!(e.to_string().contains("refused the proxy token"), "{e}")
        }
        Err(e) => panic!("expected Unauthorized, got {e}"),
        Ok(_) => panic!("expected Unauthorized, got a proxy"),
    }

    // Cancelled while the server is unreachable: run returns cleanly.
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(berth_proxy::run(
        ProxyConfig {
            server_url: format!("http://127.0.0.1:{}", free_port()),
            token: Secret::new(PROXY_TOKEN),
            listen_ip: LOCALHOST,
            https_cert: None,
        },
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The operator's own certificate (e.g. from ACME) is what the HTTPS front serves, and a
/// renewed one is picked up without a restart; a renewal that does not load (a key that is
/// not the certificate's) keeps the last good pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_certificate_is_served_and_renewed() {
    let dir = TempDir::new();
    let operator = |n: &str| {
        let d = dir.0.join(n);
        std::fs::create_dir_all(&d).unwrap();
        Ca::load_or_create(&d, &format!("operator CA {n}")).unwrap()
    };
    let (acme1, acme2) = (operator("1"), operator("2"));
    let files = CertFiles {
        cert: dir.0.join("fullchain.pem"),
        key: dir.0.join("privkey.pem"),
    };
    let issue = |ca: &Ca| ca.issue_proxy(DOMAIN, "127.0.0.1", DAY).unwrap();
    let first = issue(&acme1);
    std::fs::write(
        &files.cert,
        format!("{}{}", first.cert_pem, acme1.cert_pem()),
    )
    .unwrap();
    std::fs::write(&files.key, &first.key_pem).unwrap();
    let env = env_with(Some(files.clone())).await;
    let trusts = |ca: &Ca| {
        let (connector, addr) = (tls_client(ca), env.https_addr());
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("i7-7860.berth.test").unwrap();
            connector.connect(name, tcp).await.is_ok()
        }
    };
    assert!(trusts(&acme1).await, "the operator's certificate is served");
    assert!(!trusts(&env.ca).await, "not one from berth's CA");

    // A broken renewal: the new key is not the certificate's. The last pair stays.
    std::fs::write(&files.key, issue(&acme2).key_pem).unwrap();
    tokio::time::sleep(RELOAD_SEEN).await;
    assert!(trusts(&acme1).await, "the last good pair is kept");

    // The real renewal: both files anew.
    let second = issue(&acme2);
    std::fs::write(&files.cert, &second.cert_pem).unwrap();
    std::fs::write(&files.key, &second.key_pem).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while !trusts(&acme2).await {
        assert!(
            Instant::now() < end,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!trusts(&acme1).await);
}

/// Longer than the proxy's check of its certificate files (every 5 s).
const RELOAD_SEEN: Duration = Duration::from_millis(6500);

#[tokio::test]
async fn an_operators_certificate_that_does_not_load_is_refused_at_start() {
    let dir = TempDir::new();
    let files = CertFiles {
        cert: dir.0.join("missing.pem"),
        key: dir.0.join("missing.key"),
    };
    let e = berth_proxy::start(
        ProxyConfig {
            https_cert: Some(files),
            ..config(
                fake_server(Arc::new(Mutex::new(server_state(
                    &Ca::load_or_create(&dir.0, "berth CA").unwrap(),
                    Vec::new(),
                ))))
                .await,
            )
        },
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("a missing certificate file is refused");
    assert!(
        matches!(e, ProxyError::BadConfig(ref m) if m.contains("cannot read the certificate")),
        "{e}"
    );
}
