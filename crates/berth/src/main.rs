//! The one berth binary: parses arguments, sets up tracing and dispatches to the server,
//! the agent, both at once (`berth up`), or the client commands.
#![forbid(unsafe_code)]

use anyhow::Context;
use berth_core::protocol::PortRange;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Launch Docker instances on GPU machines and connect to them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run berth all in one on this machine: server, agent on the local Docker engine, and
    /// log the CLI in.
    Up(UpArgs),
    /// Run the control plane (API, scheduler, store).
    Server(ServerArgs),
    /// Run a host agent that dials out to a server and runs its instances on local Docker.
    Agent(AgentArgs),
    /// Run the proxy: SSH ports and HTTPS URLs for instances on hosts without open ports.
    Proxy(ProxyArgs),
    #[command(flatten)]
    Client(berth_cli::Command),
}

#[derive(Args)]
struct UpArgs {
    /// Where the database and keys live [default: $XDG_DATA_HOME/berth]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Address users reach this machine's open ports at.
    #[arg(long, default_value = "127.0.0.1")]
    public_ip: String,
    /// Open host ports for instances.
    #[arg(long, default_value = "25000-25999")]
    ports: PortRange,
    /// This host's name [default: the machine's host name]
    #[arg(long)]
    name: Option<String>,
    /// DNS names this machine is reached by (named in jupyter certificates), repeatable.
    #[arg(long = "public-dns", value_name = "NAME", default_value = "localhost")]
    public_dns: Vec<String>,
    #[command(flatten)]
    proxy: ProxyFlags,
    #[command(flatten)]
    https: HttpsCertFlags,
}

/// Where the deployment's proxy is (the server tells agents and the proxy itself).
#[derive(Args)]
struct ProxyFlags {
    /// Domain of the proxy's HTTPS names: https://i<ID>-<PORT>.<DOMAIN>:<HTTPS PORT>/
    #[arg(long, default_value = "berth.localhost")]
    proxy_domain: String,
    /// Port of the agents' tunnels to the proxy.
    #[arg(long, default_value_t = 7879)]
    proxy_tunnel_port: u16,
    /// Port of the proxy's HTTPS front.
    #[arg(long, default_value_t = 7443)]
    proxy_https_port: u16,
    /// The proxy's SSH ports, one per ssh/jupyter instance.
    #[arg(long, default_value = "24000-24999")]
    proxy_ssh_ports: PortRange,
}

impl ProxyFlags {
    fn settings(self, public_host: String) -> berth_server::ProxySettings {
        berth_server::ProxySettings {
            public_host,
            domain: self.proxy_domain,
            tunnel_port: self.proxy_tunnel_port,
            https_port: self.proxy_https_port,
            ssh_ports: self.proxy_ssh_ports,
        }
    }
}

#[derive(Args)]
struct ProxyArgs {
    /// The server's URL (the proxy fetches its settings, certificate and routes there).
    #[arg(long, env = "BERTH_SERVER")]
    server: String,
    /// The deployment's agent token (printed by `berth server`).
    #[arg(long, env = "BERTH_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Address the proxy's listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    listen_ip: std::net::IpAddr,
    #[command(flatten)]
    https: HttpsCertFlags,
}

/// The HTTPS front's certificate, if the operator brings one.
#[derive(Args)]
struct HttpsCertFlags {
    /// PEM certificate chain for the HTTPS front (e.g. an ACME client's fullchain.pem for
    /// *.DOMAIN) instead of one from berth's CA; re-read when it changes
    #[arg(long, requires = "https_key", value_name = "FILE")]
    https_cert: Option<PathBuf>,
    /// PEM private key of --https-cert
    #[arg(long, requires = "https_cert", value_name = "FILE")]
    https_key: Option<PathBuf>,
}

impl HttpsCertFlags {
    fn files(self) -> Option<berth_proxy::CertFiles> {
        Some(berth_proxy::CertFiles {
            cert: self.https_cert?,
            key: self.https_key?,
        })
    }
}

#[derive(Args)]
struct ServerArgs {
    /// Where the SQLite database and the admin key live [default: $XDG_DATA_HOME/berth]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the API and the agent endpoint.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Database URL: postgres://USER:PASSWORD@HOST/DB, or sqlite:PATH [default: SQLite in the data dir]
    #[arg(long, env = "BERTH_DB")]
    db: Option<String>,
    /// Host name or IP users and agents reach the proxy at; without it the deployment has no proxy.
    #[arg(long)]
    proxy_host: Option<String>,
    #[command(flatten)]
    proxy: ProxyFlags,
}

#[derive(Args)]
struct AgentArgs {
    /// The server's URL.
    #[arg(long, env = "BERTH_SERVER")]
    server: String,
    /// The deployment's agent token (printed by `berth server`).
    #[arg(long, env = "BERTH_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// This host's name [default: the machine's host name]
    #[arg(long)]
    name: Option<String>,
    /// Address users reach this host's open ports at.
    #[arg(long)]
    public_ip: String,
    /// Open host ports for instances, e.g. 40000-40999; without it the host has none.
    #[arg(long)]
    ports: Option<PortRange>,
    /// DNS names this host is reached by (named in jupyter certificates), repeatable.
    #[arg(long = "public-dns", value_name = "NAME")]
    public_dns: Vec<String>,
    /// Loopback ports for instances' ports on a host without open ports (the proxy's tunnel reaches them).
    #[arg(long, default_value = "46000-46999")]
    local_ports: PortRange,
    /// Where the agent keeps instance state (SSH host keys, onstart logs) [default: $XDG_DATA_HOME/berth-agent]
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for rustls, reqwest and rcgen alike (DESIGN.md §4).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let quiet = matches!(cli.cmd, Cmd::Client(_));
    init_tracing(quiet);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Up(a) => up(a).await.map(|()| ExitCode::SUCCESS),
            Cmd::Server(a) => server(a).await.map(|()| ExitCode::SUCCESS),
            Cmd::Agent(a) => agent(a).await.map(|()| ExitCode::SUCCESS),
            Cmd::Proxy(a) => proxy(a).await.map(|()| ExitCode::SUCCESS),
            Cmd::Client(c) => berth_cli::run(c).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("berth"))
        .context("cannot tell the data directory (no $XDG_DATA_HOME or $HOME); give --data-dir")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("stopping (containers keep running)");
        token.cancel();
    });
}

/// The URL clients use for a listen address (a wildcard address means this machine).
fn local_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    format!("http://{host}:{}", addr.port())
}

/// Where `berth up`'s proxy listens: users reach its SSH ports and HTTPS front at the
/// public IP, so there when it is not this machine's loopback (on every address: a public
/// IP may be forwarded to this machine rather than be one of its own), else where the API
/// listens.
fn proxy_listen_ip(api: std::net::IpAddr, public_ip: &str) -> std::net::IpAddr {
    match public_ip.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_loopback() => {
            if ip.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            }
        }
        _ => api,
    }
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    let data_dir = match a.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let proxy_tunnel_port = a.proxy.proxy_tunnel_port;
    let server = berth_server::start(
        berth_server::ServerConfig {
            listen: a.listen,
            db_url: None,
            data_dir: data_dir.clone(),
            proxy: Some(a.proxy.settings(a.public_ip.clone())),
        },
        shutdown.clone(),
    )
    .await
    .context("cannot start the server")?;
    let url = local_url(server.addr);
    let proxy_ip = proxy_listen_ip(a.listen.ip(), &a.public_ip);
    let proxy = berth_proxy::start(
        berth_proxy::ProxyConfig {
            server_url: url.clone(),
            token: server.agent_token.clone(),
            listen_ip: proxy_ip,
            https_cert: a.https.files(),
        },
        shutdown.clone(),
    )
    .await
    .context("cannot start the proxy")?;
    let config_path = berth_cli::config::save(&url, server.admin_api_key.expose())
        .context("cannot log the CLI in")?;
    let name = a.name.unwrap_or_else(host_name);
    let agent_config = berth_agent::AgentConfig {
        server_url: url.clone(),
        token: server.agent_token.clone(),
        name: name.clone(),
        public_ip: a.public_ip,
        port_range: Some(a.ports),
        data_dir: data_dir.join("agent"),
        dns_names: a.public_dns,
        local_ports: "46000-46999".parse().map_err(anyhow::Error::msg)?,
        // The in-process proxy, on loopback whatever the public address.
        proxy_addr: Some(format!(
            "{}:{}",
            if proxy_ip.is_unspecified() {
                std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
            } else {
                proxy_ip
            },
            proxy_tunnel_port
        )),
    };
    let mut agent = tokio::spawn(berth_agent::run(agent_config, shutdown.clone()));
    // `berth create` must work as soon as this prints: wait for the agent to be connected.
    tokio::select! {
        connected = server.wait_for_host(&name, std::time::Duration::from_secs(30)) => {
            if !connected {
                shutdown.cancel();
                anyhow::bail!("the local agent did not connect to the server within 30 s");
            }
        }
        r = &mut agent => {
            shutdown.cancel();
            r.context("agent task failed")?.context("agent failed")?;
            anyhow::bail!("the agent stopped before it connected");
        }
    }
    println!("berth is up");
    println!("  API:       {url}");
    println!("  admin key: {}", server.admin_api_key.expose());
    println!("  data dir:  {}", data_dir.display());
    println!("  agent token: {}", server.agent_token.expose());
    println!("  deployment: {}", server.deployment);
    println!("  the CLI is logged in ({})", config_path.display());
    println!("try: berth create berth-test/busybox --wait && berth ls");
    println!("Ctrl-C stops berth; instances keep running and are picked up again by the next `berth up`.");
    let agent_result = agent.await;
    shutdown.cancel();
    server.wait().await.context("server failed")?;
    proxy.wait().await.context("proxy failed")?;
    agent_result
        .context("agent task failed")?
        .context("agent failed")?;
    Ok(())
}

async fn server(a: ServerArgs) -> anyhow::Result<()> {
    let data_dir = match a.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let server = berth_server::start(
        berth_server::ServerConfig {
            listen: a.listen,
            db_url: a.db,
            data_dir: data_dir.clone(),
            proxy: a.proxy_host.map(|h| a.proxy.settings(h)),
        },
        shutdown,
    )
    .await
    .context("cannot start the server")?;
    let url = local_url(server.addr);
    println!("berth server is up");
    println!("  API:         {url}");
    println!("  admin key:   {}", server.admin_api_key.expose());
    println!("  agent token: {}", server.agent_token.expose());
    println!("  data dir:    {}", data_dir.display());
    println!("  deployment:  {}", server.deployment);
    println!("run agents with: berth agent --server {url} --token <agent token> --public-ip IP [--ports 40000-40999]");
    server.wait().await.context("server failed")
}

async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let config = berth_agent::AgentConfig {
        server_url: a.server,
        token: berth_core::Secret::new(a.token),
        name: a.name.unwrap_or_else(host_name),
        public_ip: a.public_ip,
        port_range: a.ports,
        dns_names: a.public_dns,
        local_ports: a.local_ports,
        proxy_addr: None,
        data_dir: match a.data_dir {
            Some(d) => d,
            None => dirs::data_dir().map(|d| d.join("berth-agent")).context(
                "cannot tell the data directory (no $XDG_DATA_HOME or $HOME); give --data-dir",
            )?,
        },
    };
    berth_agent::run(config, shutdown)
        .await
        .context("agent failed")
}

async fn proxy(a: ProxyArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let proxy = berth_proxy::start(
        berth_proxy::ProxyConfig {
            server_url: a.server,
            token: berth_core::Secret::new(a.token),
            listen_ip: a.listen_ip,
            https_cert: a.https.files(),
        },
        shutdown,
    )
    .await
    .context("cannot start the proxy")?;
    println!("berth proxy is up");
    proxy.wait().await.context("proxy failed")
}

/// The error and its causes on one line, `a: b: c`, leaving out a cause whose text the line
/// already holds (errors that print their source in their own message, as many do).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_print_each_cause_once() {
        /// Says its source in its own message, and has it as its source too.
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "certificate authority: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::other("ca.key may be read by others");
        let e = anyhow::Error::from(Outer(inner)).context("cannot start the server");
        assert_eq!(
            super::one_line(&e),
            "cannot start the server: certificate authority: ca.key may be read by others"
        );
    }
}
