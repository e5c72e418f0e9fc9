//! `berth-bench proxy`: the proxy path against the direct one, with `berth server`, `berth
//! proxy` and `berth agent` as three processes (so that the proxy's memory is its own), an
//! agent with open ports (so that an instance has both paths), and one ssh-mode instance
//! whose onstart runs two small servers: a TCP sink and an HTTP/1.1 server that holds every
//! connection open.
//!
//! 1. Bulk throughput, rounds interleaved (the order turns each round): a raw TCP sink on the
//!    host over loopback, the same sink inside the instance through its direct port, and
//!    `ssh … 'cat > /dev/null'` (same cipher) to the instance's port 22 mapping, to its port
//!    22 at the container's bridge address (no Docker port mapping: what the agent dials),
//!    and to its proxy SSH port; the target is judged against the faster direct row. The clock starts once the first MiB is through, so that connecting and
//!    logging in are not counted.
//! 2. Connect to the first bytes of sshd's banner (`SSH-2.0-`), direct and through the
//!    proxy, interleaved.
//! 3. Idle connections held open through the proxy's HTTPS front: the growth of the proxy's
//!    (and the agent's) resident memory per connection.

use super::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::ffi::OsStr;
use std::io::{Read, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Before each RSS reading, let the processes finish what the last connections started.
const RSS_SETTLE: Duration = Duration::from_secs(1);

/// Defaults of `proxy`.
const PROXY_IMAGE: &str = "berth-test/jupyter";
const BULK_MIB: u64 = 1024;
const BULK_ROUNDS: u32 = 3;
const LATENCY_SAMPLES: u32 = 200;
const IDLE_CONNECTIONS: u32 = 1000;
/// The proxy's SSH ports (beside [`PORTS`], the agent's open ports).
const PROXY_SSH_PORTS: &str = "28100-28119";
/// What is written at a time, and what is sent before the clock starts.
const CHUNK: usize = 1 << 20;
/// The same cipher on both ssh paths (AES-GCM, like the tunnel's TLS).
const CIPHER: &str = "aes128-gcm@openssh.com";
/// The instance's ports: the connection holder (http, so the HTTPS front serves it) and
/// the sink (plain TCP, direct only: the proxy relays port 22 and http ports alone).
const HOLD_PORT: u16 = 9000;
const SINK_PORT: u16 = 9001;
/// How long one bulk transfer may take.
const BULK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one connection may take to its first bytes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between latency samples (untimed): sshd's unauthenticated children get to exit, so
/// that its MaxStartups (10:30:100) never drops a sample.
const SAMPLE_PAUSE: Duration = Duration::from_millis(10);
/// Idle connections opened at a time.
const OPENING: usize = 32;
/// The benchmark holds the idle connections and needs a few more descriptors; the proxy and
/// agent, its children, inherit the limit.
const MIN_OPEN_FILES: u64 = 4096;
/// Targets (issue 5).
const TARGET_RATIO: f64 = 0.8;
const TARGET_ADDED_P50_MS: f64 = 2.0;
const TARGET_KIB_PER_CONNECTION: f64 = 64.0;

/// The instance's onstart: a TCP sink on [`SINK_PORT`] (reads and discards, then answers
/// how many bytes it read) and, on [`HOLD_PORT`], an HTTP/1.1 server that reads every
/// request with its body, answers it with [`PAYLOAD`] bytes and keeps the connection open.
const ONSTART: &str = r#"#!/bin/sh
cat > /root/bench-servers.py <<'EOF'
import asyncio, socket, threading

BODY = b"x" * 65536
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(BODY) + BODY

def sink(conn):
    buf = bytearray(1 << 20)
    total = 0
    with conn:
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            total += n
        conn.sendall(b"%d\n" % total)

def sinks():
    server = socket.create_server(("0.0.0.0", 9001), backlog=64)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=sink, args=(conn,), daemon=True).start()

async def hold(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    writer.close()

async def main():
    threading.Thread(target=sinks, daemon=True).start()
    server = await asyncio.start_server(hold, "0.0.0.0", 9000, backlog=4096)
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
exec python3 /root/bench-servers.py
"#;
/// What each request to the holder carries each way (body bytes): enough that every buffer
/// on the path (copy buffers, TLS records, tunnel frames) has been used before the
/// connection idles.
const PAYLOAD: usize = 64 * 1024;
/// The head of the holder's answer (its body is [`PAYLOAD`] bytes of `x`).
const HOLD_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\nConnection: keep-alive\r\n\r\n";

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// MiB per bulk transfer (after the first, untimed MiB).
    #[arg(long, default_value_t = BULK_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    mib: u64,
    /// Rounds of the bulk transfers (each round: every path once).
    #[arg(long, default_value_t = BULK_ROUNDS, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Connect-to-first-byte samples of each path, after 5 untimed ones.
    #[arg(long, default_value_t = LATENCY_SAMPLES, value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// Idle connections held through the proxy.
    #[arg(long, default_value_t = IDLE_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// The image of the instance: it must have /bin/sh and python3, and ssh-keygen and
    /// /usr/sbin/sshd for berth's ssh mode.
    #[arg(long, default_value = PROXY_IMAGE)]
    pub(crate) image: String,
    /// The berth binary.
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Keep the logs (stderr) of the server, proxy and agent in this directory; RUST_LOG
    /// is passed on.
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

impl ProxyArgs {
    /// What `all` runs.
    pub(crate) fn defaults(berth: PathBuf) -> ProxyArgs {
        ProxyArgs {
            mib: BULK_MIB,
            rounds: BULK_ROUNDS,
            samples: LATENCY_SAMPLES,
            connections: IDLE_CONNECTIONS,
            image: PROXY_IMAGE.into(),
            berth,
            log_dir: None,
        }
    }
}

pub(crate) async fn proxy(a: &ProxyArgs, stop: &AtomicBool) -> Result<()> {
    let need = MIN_OPEN_FILES.max(u64::from(a.connections) + 1024);
    let have = open_files_limit()?;
    if have < need {
        bail!(
            "the open files limit is {have}; {} idle connections need at least {need}: \
             raise it (e.g. `ulimit -n {need}`) and run again",
            a.connections
        );
    }
    with_split(a, |cx| async move {
        let key = SshKey::new(&cx.dir)?;
        let body = json!({"key": key.public_line});
        cx.api.send(Method::POST, "/keys", Some(&body)).await?;
        let ca = cx.api.ca_cert().await?;
        let tls = tls_connector(&ca)?;
        let target = Target::create(&cx.api, &a.image, &key, &tls, cx.https_port).await?;
        eprintln!(
            "instance {}: ssh direct on {}, through the proxy on {}, sink on {}, holder at \
             https://{}:{}/",
            target.id, target.direct, target.proxy, target.sink, target.name, cx.https_port
        );
        check(stop)?;
        let probe = CpuProbe::new(cx.proxy_pid, cx.agent_pid);
        let bulk = bulk(a, &target, &key, &probe, stop).await?;
        bulk.print(a);
        println!();
        check(stop)?;
        let mut latency = latency(a, &target, stop).await?;
        latency.print(a);
        println!();
        check(stop)?;
        let idle = idle(a, &target, &tls, &cx, stop).await?;
        idle.print();
        Ok(())
    })
    .await
}

/// The soft limit on open files of this process (`unlimited` as `u64::MAX`).
fn open_files_limit() -> Result<u64> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no \"Max open files\" in /proc/self/limits")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .context("a \"Max open files\" line without a value")?;
    if soft == "unlimited" {
        return Ok(u64::MAX);
    }
    soft.parse()
        .with_context(|| format!("cannot read the open files limit from {line:?}"))
}

/// A TLS client that trusts only berth's CA, for the proxy's HTTPS front.
fn tls_connector(ca_pem: &[u8]) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.context("berth's CA certificate is not PEM")?)
            .context("berth's CA certificate")?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// What the body of [`with_split`] gets.
struct SplitCtx {
    api: Api,
    dir: PathBuf,
    https_port: u16,
    proxy_pid: u32,
    agent_pid: u32,
}

/// The three processes, stopped when dropped: the agent first, the server last (fields
/// drop in order).
struct Split {
    agent: Proc,
    proxy: Proc,
    server: Berth,
}

/// Starts `berth server` (with a proxy on loopback), `berth proxy` and `berth agent` (with
/// open ports) in a fresh temp dir, waits for the agent and runs `body`. Whatever
/// happened, it then stops the three (so that nothing more is created), removes every
/// container of the deployment, and the temp dir; an error gets the end of their logs.
async fn with_split<F, Fut>(a: &ProxyArgs, body: F) -> Result<()>
where
    F: FnOnce(SplitCtx) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let tmp = TempDir::new("proxy")?;
    let logs = match &a.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let mut deployment = None;
    let result = async {
        let (tunnel_port, https_port) = (free_port()?, free_port()?);
        let data = tmp.path().join("data");
        let tunnel = tunnel_port.to_string();
        let https = https_port.to_string();
        let args: [&OsStr; 13] = [
            "server".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--proxy-host".as_ref(),
            "127.0.0.1".as_ref(),
            "--proxy-tunnel-port".as_ref(),
            tunnel.as_ref(),
            "--proxy-https-port".as_ref(),
            https.as_ref(),
            "--proxy-ssh-ports".as_ref(),
            PROXY_SSH_PORTS.as_ref(),
        ];
        let server = Berth::spawn(&a.berth, &args, tmp.path(), &logs.join("server.log"))?;
        deployment = server.deployment.clone();
        if server.agent_token.is_empty() {
            bail!("`berth server` did not print its agent token");
        }
        let proxy = start_proxy(&a.berth, &server, &logs.join("proxy.log"))?;
        let agent = start_agent(&a.berth, &server, tmp.path(), &logs.join("agent.log"))?;
        let split = Split {
            agent,
            proxy,
            server,
        };
        let api = Api::new(&split.server);
        api.wait_for_agent().await?;
        let cx = SplitCtx {
            api,
            dir: tmp.path().to_path_buf(),
            https_port,
            proxy_pid: split.proxy.id(),
            agent_pid: split.agent.id(),
        };
        body(cx).await
        // Dropping `split` stops the three, so that nothing more is created.
    }
    .await;
    if let Some(dep) = deployment {
        remove_containers(&[format!("label={}={dep}", labels::DEPLOYMENT)]).await;
    }
    // `tmp` goes last, after the containers that mounted files from it.
    match result {
        Err(e) if a.log_dir.is_none() => {
            let mut logs_tail = String::new();
            for name in ["server.log", "proxy.log", "agent.log"] {
                let path = tmp.path().join(name);
                if path.exists() {
                    logs_tail += &format!("last lines of {name}:\n{}", tail(&path, 10));
                }
            }
            Err(anyhow!("{e:#}\n{logs_tail}"))
        }
        r => r,
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `berth proxy` for the server, on loopback, up to its "berth proxy is up".
fn start_proxy(bin: &Path, server: &Berth, log: &Path) -> Result<Proc> {
    let stderr =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = std::process::Command::new(bin)
        .args(["proxy", "--server", &server.url, "--listen-ip", "127.0.0.1"])
        .env("BERTH_AGENT_TOKEN", &server.agent_token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0) // a terminal's Ctrl-C is the benchmark's alone
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
    let proc = Proc(child);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("`berth proxy` ended before it was up");
        }
        if line.trim_end() == "berth proxy is up" {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok(proc)
}

/// `berth agent` for the server, with open ports ([`PORTS`]) on 127.0.0.1.
fn start_agent(bin: &Path, server: &Berth, tmp: &Path, log: &Path) -> Result<Proc> {
    let stderr =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = std::process::Command::new(bin)
        .args(["agent", "--server", &server.url])
        .args([
            "--public-ip",
            "127.0.0.1",
            "--name",
            "bench",
            "--ports",
            PORTS,
            "--data-dir",
        ])
        .arg(tmp.join("agent"))
        .env("BERTH_AGENT_TOKEN", &server.agent_token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0) // a terminal's Ctrl-C is the benchmark's alone
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    Ok(Proc(child))
}

/// The running ssh-mode instance and its ways in.
#[derive(Clone)]
struct Target {
    id: i64,
    /// Host port of its port 22.
    direct: u16,
    /// Its proxy SSH port.
    proxy: u16,
    /// Host port of the sink.
    sink: u16,
    /// The container's address on the Docker bridge (its port 22 there: no port mapping).
    bridge: String,
    /// The holder's HTTPS name, and the Cookie header that opens it.
    name: String,
    cookie: String,
    https_port: u16,
}

impl Target {
    /// Creates the instance and waits until ssh answers on both paths and the holder
    /// through the HTTPS front. (The instance goes with the deployment's containers.)
    async fn create(
        api: &Api,
        image: &str,
        key: &SshKey,
        tls: &TlsConnector,
        https_port: u16,
    ) -> Result<Target> {
        let req = json!({
            "image": image,
            "mode": "ssh",
            "http_ports": [HOLD_PORT],
            "ports": [SINK_PORT.to_string()],
            "onstart": ONSTART,
        });
        let t0 = Instant::now();
        let created = api.send(Method::POST, "/instances", Some(&req)).await?;
        let id = created["id"]
            .as_i64()
            .with_context(|| format!("POST /instances answered {created}"))?;
        let path = format!("/instances/{id}");
        let inst = loop {
            let inst = api.send(Method::GET, &path, None).await?;
            match instance_state(&path, &inst)? {
                InstanceState::Running => break inst,
                s if s.is_settled() || s == InstanceState::Offline => {
                    bail!("instance is {s}: {}", inst["reason"])
                }
                s if t0.elapsed() > TIMEOUT => bail!("instance is still {s} after {TIMEOUT:?}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let port = |internal| {
            host_port(&inst, internal).with_context(|| {
                format!("a running instance without a port for {internal}: {inst}")
            })
        };
        let (direct, sink) = (port(22)?, port(SINK_PORT)?);
        let proxy = inst["proxy_ssh"]
            .as_str()
            .and_then(|p| p.rsplit_once(':')?.1.parse().ok())
            .with_context(|| format!("no proxy_ssh port in {inst}"))?;
        let url = inst["http_urls"]
            .as_array()
            .and_then(|urls| urls.iter().find(|u| u["port"] == HOLD_PORT))
            .and_then(|u| u["url"].as_str())
            .with_context(|| format!("no http_urls entry for {HOLD_PORT} in {inst}"))?;
        // https://i<ID>-<PORT>.<domain>:<https port>/?berth_token=TOKEN; the link would set
        // the cookie berth_i<ID>=TOKEN, which is sent here directly.
        let name = url
            .strip_prefix("https://")
            .and_then(|rest| rest.split([':', '/']).next())
            .with_context(|| format!("an http URL without a host name: {url}"))?
            .to_string();
        let token = url
            .split_once("berth_token=")
            .map(|(_, t)| t.split('&').next().unwrap_or(t))
            .with_context(|| format!("an http URL without berth_token: {url}"))?;
        let container = inst["container_id"]
            .as_str()
            .with_context(|| format!("a running instance without a container: {inst}"))?;
        let bridge = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ])
        .await?;
        let target = Target {
            id,
            direct,
            proxy,
            sink,
            bridge,
            name,
            cookie: format!("berth_i{id}={token}"),
            https_port,
        };
        let alive = || async {
            let inst = api.send(Method::GET, &path, None).await?;
            match instance_state(&path, &inst)? {
                InstanceState::Running => Ok(()),
                s => bail!("instance is {s}: {}", inst["reason"]),
            }
        };
        until_ssh(direct, key, t0, alive).await?;
        until_ssh(proxy, key, t0, alive).await?;
        // The onstart starts both servers once sshd answers: wait for the holder.
        loop {
            let why = match target.hold(tls).await {
                Ok(_) => break,
                Err(e) => e,
            };
            if t0.elapsed() > TIMEOUT {
                bail!("the holder never answered through the proxy: {why:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(target)
    }

    /// One connection to the holder through the proxy's HTTPS front: TLS (trusting only
    /// berth's CA), one request with the access-token cookie, its answer read. The
    /// connection stays open (keep-alive) as long as it is held.
    async fn hold(&self, tls: &TlsConnector) -> Result<TlsStream<TcpStream>> {
        let open = async {
            let tcp = TcpStream::connect(("127.0.0.1", self.https_port))
                .await
                .context("cannot connect to the proxy's HTTPS front")?;
            let name = ServerName::try_from(self.name.clone())
                .with_context(|| format!("{} is not a TLS server name", self.name))?;
            let mut s = tls
                .connect(name, tcp)
                .await
                .context("TLS with the proxy's HTTPS front")?;
            self.request(&mut s).await?;
            Ok(s)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| anyhow!("no answer through the HTTPS front within {CONNECT_TIMEOUT:?}"))?
    }

    /// One request to the holder on an open connection (a POST of [`PAYLOAD`] bytes), and
    /// its whole answer ([`PAYLOAD`] bytes).
    async fn request(&self, s: &mut TlsStream<TcpStream>) -> Result<()> {
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: {}:{}\r\nCookie: {}\r\nContent-Length: {PAYLOAD}\r\n\r\n",
            self.name, self.https_port, self.cookie
        )
        .into_bytes();
        req.resize(req.len() + PAYLOAD, b'x');
        s.write_all(&req).await?;
        s.flush().await?;
        let want = HOLD_HEAD.len() + PAYLOAD;
        let mut got = Vec::with_capacity(want);
        let mut buf = vec![0u8; 16 * 1024];
        while got.len() < want {
            let n = s
                .read(&mut buf[..(want - got.len()).min(16 * 1024)])
                .await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() != want
            || !got.starts_with(HOLD_HEAD.as_bytes())
            || got[HOLD_HEAD.len()..].iter().any(|&b| b != b'x')
        {
            let shown = &got[..got.len().min(200)];
            bail!(
                "the holder's answer through the proxy was {} bytes: {:?}",
                got.len(),
                String::from_utf8_lossy(shown)
            );
        }
        Ok(())
    }
}

/// Where the CPU went during one transfer: the machine, and the proxy and agent processes.
#[derive(Clone)]
struct CpuProbe {
    proxy_pid: u32,
    agent_pid: u32,
    /// Clock ticks per second (`getconf CLK_TCK`).
    tck: f64,
}

/// Cumulative CPU ticks at one moment.
struct CpuSnap {
    proxy: u64,
    agent: u64,
    /// All cores: not idle, and in total.
    busy: u64,
    total: u64,
}

impl CpuProbe {
    fn new(proxy_pid: u32, agent_pid: u32) -> CpuProbe {
        let tck = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        CpuProbe {
            proxy_pid,
            agent_pid,
            tck,
        }
    }

    fn snap(&self) -> Result<CpuSnap> {
        let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .context("no cpu line in /proc/stat")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is within user).
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Ok(CpuSnap {
            proxy: process_ticks(self.proxy_pid)?,
            agent: process_ticks(self.agent_pid)?,
            busy: total - idle,
            total,
        })
    }

    /// What happened between two snapshots while `bytes` went through.
    fn measure(&self, speed: f64, bytes: u64, a: &CpuSnap, b: &CpuSnap) -> Transfer {
        let gib = bytes as f64 / f64::from(1u32 << 30);
        let secs = |from: u64, to: u64| to.saturating_sub(from) as f64 / self.tck;
        let busy = b.busy.saturating_sub(a.busy);
        Transfer {
            speed,
            busy: busy as f64 / b.total.saturating_sub(a.total).max(1) as f64,
            machine: busy as f64 / self.tck / gib,
            proxy: secs(a.proxy, b.proxy) / gib,
            agent: secs(a.agent, b.agent) / gib,
        }
    }
}

/// A process's CPU time so far (user + system), in clock ticks.
fn process_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // After "pid (comm) ": state is field 3, utime 14 and stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("cannot parse {path}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => bail!("cannot parse {path}"),
    }
}

/// One timed transfer.
#[derive(Clone, Copy)]
struct Transfer {
    /// MiB/s.
    speed: f64,
    /// Share of all cores busy (any process), 0..1.
    busy: f64,
    /// CPU seconds of the whole machine (all processes, kernel included) per GiB through.
    machine: f64,
    /// CPU seconds of the proxy and of the agent per GiB through.
    proxy: f64,
    agent: f64,
}

/// The bulk transfers, one per round and path.
#[derive(Default)]
struct Bulk {
    raw: Vec<Transfer>,
    sink: Vec<Transfer>,
    direct: Vec<Transfer>,
    proxy: Vec<Transfer>,
    bridge: Vec<Transfer>,
}

async fn bulk(
    a: &ProxyArgs,
    t: &Target,
    key: &SshKey,
    probe: &CpuProbe,
    stop: &AtomicBool,
) -> Result<Bulk> {
    let bytes = a.mib * CHUNK as u64;
    let mut b = Bulk::default();
    for round in 0..a.rounds {
        let mut line = Vec::new();
        // Every path once, starting one further each round.
        for k in 0..5 {
            check(stop)?;
            let (what, x, into) = match (k + round) % 5 {
                0 => ("raw", host_sink(bytes, probe).await?, &mut b.raw),
                1 => (
                    "sink",
                    push_tcp(t.sink, bytes, probe.clone())
                        .await
                        .context("the instance's sink")?,
                    &mut b.sink,
                ),
                2 => (
                    "ssh direct",
                    push_ssh("127.0.0.1", t.direct, key, bytes, probe).await?,
                    &mut b.direct,
                ),
                3 => (
                    "ssh bridge",
                    push_ssh(&t.bridge, 22, key, bytes, probe).await?,
                    &mut b.bridge,
                ),
                _ => (
                    "ssh proxy",
                    push_ssh("127.0.0.1", t.proxy, key, bytes, probe).await?,
                    &mut b.proxy,
                ),
            };
            line.push(format!(
                "{what} {:.0} ({:.0}% busy)",
                x.speed,
                x.busy * 100.0
            ));
            into.push(x);
        }
        eprintln!(
            "bulk round {}/{} (MiB/s, machine CPU busy): {}",
            round + 1,
            a.rounds,
            line.join(", ")
        );
    }
    Ok(b)
}

impl Bulk {
    fn print(&self, a: &ProxyArgs) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let rows: [(&str, &[Transfer]); 5] = [
            ("raw loopback TCP (a sink on the host)", &self.raw),
            (
                "raw TCP into the instance (its direct port; information)",
                &self.sink,
            ),
            ("ssh direct (port 22 mapping, on loopback)", &self.direct),
            (
                "ssh direct to the container's bridge address (no mapping)",
                &self.bridge,
            ),
            ("ssh via proxy (proxy SSH port)", &self.proxy),
        ];
        println!(
            "| bulk, {} MiB each | median MiB/s | min | max | CPU busy ({cores} cores) | \
             machine CPU-s per GiB | rounds |",
            a.mib
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let mut medians = Vec::new();
        let mut machine = Vec::new();
        for (what, v) in rows {
            let mut speeds: Vec<f64> = v.iter().map(|x| x.speed).collect();
            let mut busy: Vec<f64> = v.iter().map(|x| x.busy * 100.0).collect();
            let mut cpu: Vec<f64> = v.iter().map(|x| x.machine).collect();
            let m = median(&mut speeds);
            let (lo, hi) = (speeds[0], speeds[speeds.len() - 1]);
            let cpu = median(&mut cpu);
            println!(
                "| {what} | {m:.0} | {lo:.0} | {hi:.0} | {:.0}% | {cpu:.2} | {} |",
                median(&mut busy),
                a.rounds
            );
            medians.push(m);
            machine.push(cpu);
        }
        let (raw, direct, bridge, proxy) = (medians[0], medians[2], medians[3], medians[4]);
        let mut proxy_cpu: Vec<f64> = self.proxy.iter().map(|x| x.proxy).collect();
        let mut agent_cpu: Vec<f64> = self.proxy.iter().map(|x| x.agent).collect();
        println!();
        println!(
            "note: ssh rows are `ssh -c {CIPHER} … 'cat > /dev/null'` fed from the benchmark \
             (ControlMaster off, no compression); the clock starts once the first MiB is \
             through (login not counted) and stops when ssh exits. The port 22 mapping is \
             reached on loopback, so it crosses Docker's userland proxy (from another \
             machine the kernel forwards it, more like the bridge row); through the proxy, \
             the agent dials the container's bridge address, as the bridge row does. CPU \
             busy and CPU-s per GiB count every process on the machine, kernel included; \
             through the proxy the berth proxy took {:.2} and the agent {:.2} CPU-s per GiB \
             (medians), on the same {cores} cores as ssh, sshd and Docker's proxy.",
            median(&mut proxy_cpu),
            median(&mut agent_cpu)
        );
        println!();
        // Both direct paths, each judged: the port mapping is what a user of this machine
        // connects to; the bridge address is the best any direct path can be.
        let (vs_mapping, vs_bridge) = (proxy / direct, proxy / bridge);
        println!(
            "ratio proxy/direct (medians), direct = the port 22 mapping: {vs_mapping:.2}  \
             target ≥ {TARGET_RATIO}: {}",
            met(vs_mapping >= TARGET_RATIO)
        );
        println!(
            "ratio proxy/direct (medians), direct = the bridge address: {vs_bridge:.2}  \
             target ≥ {TARGET_RATIO}: {}",
            met(vs_bridge >= TARGET_RATIO)
        );
        // What two more TCP hops on loopback cost, at least, at the raw row's price per hop.
        let bound = machine[3] / (machine[3] + 2.0 * machine[0]);
        println!(
            "machine CPU-s per GiB: bridge {:.2}, proxy {:.2}; two extra loopback hops alone \
             (2 × the raw row's {:.2}) would bound proxy/bridge at {bound:.2} on these shared \
             cores; direct/raw {:.2}, proxy/raw {:.2}",
            machine[3],
            machine[4],
            machine[0],
            direct / raw,
            proxy / raw
        );
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Median of a non-empty sample (sorts it).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of a sorted, non-empty sample.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64) * p / 100.0).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / CHUNK as f64 / took.as_secs_f64()
}

/// A raw TCP sink on the host (a thread reading 1 MiB at a time) fed over loopback by
/// [`push_tcp`].
async fn host_sink(bytes: u64, probe: &CpuProbe) -> Result<Transfer> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let sink = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total: u64 = 0;
        loop {
            match conn.read(&mut buf)? {
                0 => break,
                n => total += n as u64,
            }
        }
        conn.write_all(format!("{total}\n").as_bytes())
    });
    let pushed = push_tcp(port, bytes, probe.clone()).await;
    let sunk = tokio::task::spawn_blocking(move || sink.join())
        .await?
        .map_err(|_| anyhow!("the host's sink panicked"))?;
    let pushed = pushed?;
    sunk.context("the host's sink")?;
    Ok(pushed)
}

/// Connects to the sink on 127.0.0.1:`port`, writes one untimed chunk, then `bytes` timed,
/// half-closes and waits until the sink says it read them all.
async fn push_tcp(port: u16, bytes: u64, probe: CpuProbe) -> Result<Transfer> {
    tokio::task::spawn_blocking(move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.set_read_timeout(Some(BULK_TIMEOUT))?;
        s.set_write_timeout(Some(BULK_TIMEOUT))?;
        let buf = vec![0u8; CHUNK];
        s.write_all(&buf)?;
        let cpu0 = probe.snap()?;
        let t0 = Instant::now();
        for _ in 0..bytes / CHUNK as u64 {
            s.write_all(&buf)?;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let took = t0.elapsed();
        let cpu1 = probe.snap()?;
        let want = bytes + CHUNK as u64;
        match answer.trim().parse::<u64>() {
            Ok(n) if n == want => Ok(probe.measure(mib_per_s(bytes, took), bytes, &cpu0, &cpu1)),
            _ => bail!("the sink on port {port} answered {answer:?}, not {want}"),
        }
    })
    .await?
}

/// `ssh … 'cat > /dev/null'` to `port`, fed one untimed chunk and then `bytes` timed, until
/// ssh exits (the remote `cat` has read everything).
async fn push_ssh(
    host: &str,
    port: u16,
    key: &SshKey,
    bytes: u64,
    probe: &CpuProbe,
) -> Result<Transfer> {
    let extra = [
        "-c",
        CIPHER,
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "Compression=no",
    ];
    let mut child = ssh_command_at(host, port, key, &extra, "cat > /dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh (openssh-client is needed)")?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let run = async {
        let buf = vec![0u8; CHUNK];
        // Once ssh has taken the first chunk, its session is open.
        let fed = async {
            stdin.write_all(&buf).await?;
            let cpu0 = probe.snap()?;
            let t0 = Instant::now();
            for _ in 0..bytes / CHUNK as u64 {
                stdin.write_all(&buf).await?;
            }
            drop(stdin);
            Ok::<_, anyhow::Error>((t0, cpu0))
        }
        .await;
        let out = child.wait_with_output().await?;
        let end = fed.as_ref().map(|(t0, _)| t0.elapsed());
        let cpu1 = probe.snap()?;
        if !out.status.success() {
            bail!(
                "ssh … 'cat > /dev/null' to port {port} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let took = end.map_err(|e| anyhow!("writing to ssh failed: {e:#}"))?;
        let (_, cpu0) = fed?;
        Ok(probe.measure(mib_per_s(bytes, took), bytes, &cpu0, &cpu1))
    };
    tokio::time::timeout(BULK_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("ssh to port {port} took more than {BULK_TIMEOUT:?}"))?
}

/// Connect to first byte, in ms, per path.
struct Latency {
    direct: Vec<f64>,
    proxy: Vec<f64>,
}

async fn latency(a: &ProxyArgs, t: &Target, stop: &AtomicBool) -> Result<Latency> {
    let mut l = Latency {
        direct: Vec::new(),
        proxy: Vec::new(),
    };
    const WARM_UP: u32 = 5;
    for i in 0..WARM_UP + a.samples {
        check(stop)?;
        let d = ms(first_bytes(t.direct).await?);
        tokio::time::sleep(SAMPLE_PAUSE).await;
        let p = ms(first_bytes(t.proxy).await?);
        tokio::time::sleep(SAMPLE_PAUSE).await;
        if i >= WARM_UP {
            l.direct.push(d);
            l.proxy.push(p);
        }
    }
    Ok(l)
}

/// From the start of a TCP connect to 127.0.0.1:`port` until the first 8 bytes of sshd's
/// banner (`SSH-2.0-`) have arrived; the connection is then closed.
async fn first_bytes(port: u16) -> Result<Duration> {
    let t0 = Instant::now();
    let got = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut got = [0u8; 8];
        s.read_exact(&mut got).await?;
        Ok::<_, std::io::Error>(got)
    })
    .await;
    let took = t0.elapsed();
    match got {
        Ok(Ok(b)) if &b == b"SSH-2.0-" => Ok(took),
        Ok(Ok(b)) => bail!("port {port} greeted with {:?}", String::from_utf8_lossy(&b)),
        Ok(Err(e)) => bail!("no SSH banner on port {port}: {e}"),
        Err(_) => bail!("no SSH banner on port {port} within {CONNECT_TIMEOUT:?}"),
    }
}

impl Latency {
    fn print(&mut self, a: &ProxyArgs) {
        self.direct.sort_by(f64::total_cmp);
        self.proxy.sort_by(f64::total_cmp);
        let (d50, d99) = (
            percentile(&self.direct, 50.0),
            percentile(&self.direct, 99.0),
        );
        let (p50, p99) = (percentile(&self.proxy, 50.0), percentile(&self.proxy, 99.0));
        println!("| connect → first bytes of the SSH banner | p50 ms | p99 ms | samples |");
        println!("|---|---:|---:|---:|");
        println!(
            "| ssh direct (port 22 mapping) | {d50:.2} | {d99:.2} | {} |",
            a.samples
        );
        println!(
            "| ssh via proxy (proxy SSH port) | {p50:.2} | {p99:.2} | {} |",
            a.samples
        );
        println!();
        let added = p50 - d50;
        println!(
            "added by the proxy: p50 {added:+.2} ms, p99 {:+.2} ms  target p50 ≤ \
             {TARGET_ADDED_P50_MS} ms added: {}",
            p99 - d99,
            met(added <= TARGET_ADDED_P50_MS)
        );
    }
}

/// Resident memory before and with the idle connections held, KiB.
struct Idle {
    connections: u32,
    proxy: (u64, u64),
    agent: (u64, u64),
    opened_in: Duration,
}

async fn idle(
    a: &ProxyArgs,
    t: &Target,
    tls: &TlsConnector,
    cx: &SplitCtx,
    stop: &AtomicBool,
) -> Result<Idle> {
    let n = a.connections as usize;
    // Settle, then the baseline (every code path already ran at least once: the holder
    // answered through the front while the instance came up).
    tokio::time::sleep(RSS_SETTLE).await;
    let before = (vm_rss_kib(cx.proxy_pid)?, vm_rss_kib(cx.agent_pid)?);
    let t0 = Instant::now();
    let target = Arc::new(t.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..n {
        check(stop)?;
        let slot = slots.clone().acquire_owned().await?;
        let (target, tls) = (target.clone(), tls.clone());
        opening.spawn(async move {
            let held = target.hold(&tls).await;
            drop(slot);
            held
        });
    }
    let mut held = Vec::with_capacity(n);
    while let Some(r) = opening.join_next().await {
        let s = r?.with_context(|| {
            format!(
                "idle connection {} of {n} through the proxy",
                held.len() + 1
            )
        })?;
        held.push(s);
    }
    let opened_in = t0.elapsed();
    tokio::time::sleep(RSS_SETTLE).await;
    let with = (vm_rss_kib(cx.proxy_pid)?, vm_rss_kib(cx.agent_pid)?);
    eprintln!(
        "{n} idle connections opened in {:.1} s; proxy RSS {} → {} KiB, agent RSS {} → {} KiB",
        opened_in.as_secs_f64(),
        before.0,
        with.0,
        before.1,
        with.1
    );
    // Still relayed, every one: a second request on each.
    for (i, s) in held.iter_mut().enumerate() {
        check(stop)?;
        target
            .request(s)
            .await
            .with_context(|| format!("idle connection {} of {n}, second request", i + 1))?;
    }
    drop(held);
    Ok(Idle {
        connections: a.connections,
        proxy: (before.0, with.0),
        agent: (before.1, with.1),
        opened_in,
    })
}

/// A process's resident memory (VmRSS), KiB.
fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

impl Idle {
    fn per_connection(&self, (before, with): (u64, u64)) -> f64 {
        (with as f64 - before as f64) / f64::from(self.connections)
    }

    fn print(&self) {
        let n = self.connections;
        println!(
            "| {n} idle connections through the proxy | RSS before MiB | RSS with them MiB | \
             growth per connection KiB |"
        );
        println!("|---|---:|---:|---:|");
        let mib = |k: u64| k as f64 / 1024.0;
        let proxy = self.per_connection(self.proxy);
        let agent = self.per_connection(self.agent);
        println!(
            "| berth proxy (its own process) | {:.1} | {:.1} | {proxy:.1} |",
            mib(self.proxy.0),
            mib(self.proxy.1)
        );
        println!(
            "| berth agent (information) | {:.1} | {:.1} | {agent:.1} |",
            mib(self.agent.0),
            mib(self.agent.1)
        );
        println!();
        println!(
            "note: the connections go through the proxy's HTTPS front (TLS 1.3 trusting only \
             berth's CA; each carries one keep-alive request with the access-token cookie, \
             64 KiB each way, so that every buffer on the path was used, then idles; a Python \
             asyncio server in the instance answers; opened {OPENING} at a time, all {n} in \
             {:.1} s; each answered a second request after the measurement). Not through \
             the SSH proxy port: the instance's sshd drops unauthenticated connections beyond \
             10–100 (MaxStartups 10:30:100). Per connection the front holds what an SSH-port \
             connection holds (a tunnel stream and its copy buffers) plus TLS state, so this \
             is the dearer of the two.",
            self.opened_in.as_secs_f64()
        );
        println!();
        println!(
            "proxy RSS growth per connection: {proxy:.1} KiB  target ≤ \
             {TARGET_KIB_PER_CONNECTION} KiB: {}",
            met(proxy <= TARGET_KIB_PER_CONNECTION)
        );
    }
}
