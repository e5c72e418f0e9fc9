//! Benchmarks of berth against plain Docker (DESIGN.md §6): ratios measured side by side
//! in one run, never a lone absolute time.
//!
//! - `berth-bench launch` starts `berth up` in a throwaway data dir and times, interleaved,
//!   berth's create→running against `docker run -d -P` of the same image.
//! - `berth-bench ssh` times, interleaved, berth's create→ssh-ready (the first successful
//!   `ssh … true`) against `docker run -d` of the same image running its own `sshd -D`
//!   until the same `ssh … true` succeeds; then the time of one `ssh … true` to each.
//! - `berth-bench jupyter` times, interleaved, berth's create→jupyter-ready (the first
//!   `GET /api` answering 200 over TLS verified against berth's CA only) against
//!   `docker run -d` of the same image starting the same Jupyter the same way by hand,
//!   with a throwaway certificate, until the same answer over TLS that trusts only it.
//! - `berth-bench proxy` runs `berth server`, `berth proxy` and `berth agent` as separate
//!   processes and measures the proxy path against the direct one: bulk throughput, connect
//!   to first byte, and the proxy's memory per idle connection (see `proxy.rs`).
//! - `berth-bench all` runs all four with their defaults, for one output to quote.
#![forbid(unsafe_code)]

mod proxy;

use anyhow::{anyhow, bail, Context, Result};
use berth_core::protocol::labels;
use berth_core::InstanceState;
use clap::{Parser, Subcommand};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Host ports berth may hand out (for the images' EXPOSE ports and ssh's port 22).
const PORTS: &str = "28000-28099";
/// How often the instance is polled while it comes up.
const POLL: Duration = Duration::from_millis(5);
/// Defaults of `launch` and `ssh` (and what `all` runs).
const LAUNCH_RUNS: u32 = 15;
const LAUNCH_IMAGE: &str = "berth-test/busybox";
const SSH_RUNS: u32 = 10;
const SSH_IMAGE: &str = "berth-test/ssh";
/// How often `ssh … true` is tried (start to start) until it succeeds.
const SSH_RETRY: Duration = Duration::from_millis(20);
/// While `ssh … true` fails, every this many tries (about half a second) the benchmark
/// checks that the container still runs. Rare, so as not to disturb the timing: ssh is
/// usually ready within a few tries.
const ALIVE_EVERY: u32 = 25;
/// How many `ssh … true` are timed against each running container.
const LOGIN_RUNS: u32 = 20;
/// Defaults of `jupyter`.
const JUPYTER_RUNS: u32 = 8;
const JUPYTER_IMAGE: &str = "berth-test/jupyter";
/// Jupyter's port inside the container (berth's default in jupyter mode).
const JUPYTER_PORT: u16 = 8080;
/// How often `GET /api` is tried (start to start) until it answers 200.
const API_RETRY: Duration = Duration::from_millis(20);
/// How long one `GET /api` may take (connect, and again for the whole request). Jupyter
/// binds its port before it serves, and a request sent meanwhile is answered once it does.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the hand-run Jupyter finds its certificate and key (mounted read-only).
const HAND_TLS_DIR: &str = "/bench-tls";
/// How long anything may take before the benchmark gives up.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Label on the containers the benchmark runs by hand, so that cleanup finds every one.
const BENCH_LABEL: &str = "org.berth.bench";
/// The hand-run sshd: what berth's init does in short (a privilege separation dir, one
/// ed25519 host key per container, sshd in the foreground logging to stderr), but on the
/// image's own sshd config.
const SSHD_SCRIPT: &str = "mkdir -p /run/sshd && \
    ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key && \
    exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key";

#[derive(Parser)]
#[command(
    name = "berth-bench",
    about = "Benchmarks of berth against plain Docker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time berth's create→running against `docker run -d -P`, interleaved run by run.
    Launch(LaunchArgs),
    /// Time berth's create→ssh-ready against `docker run -d` of the image's sshd,
    /// interleaved run by run; then `ssh … true` to a running container of each.
    Ssh(SshArgs),
    /// Time berth's create→jupyter-ready against `docker run -d` of the image's Jupyter,
    /// interleaved run by run.
    Jupyter(JupyterArgs),
    /// Through the proxy against direct: bulk throughput, connect to first byte, and the
    /// proxy's memory per idle connection, with server, proxy and agent as separate processes.
    Proxy(proxy::ProxyArgs),
    /// `launch`, then `ssh`, then `jupyter`, then `proxy`, each with its defaults.
    All(AllArgs),
}

#[derive(clap::Args)]
struct Common {
    /// The berth binary.
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Keep the log (stderr) of `berth up` in this file; RUST_LOG is passed on.
    #[arg(long)]
    berth_log: Option<PathBuf>,
}

#[derive(clap::Args)]
struct LaunchArgs {
    /// Timed runs of each, after one untimed warm-up round.
    #[arg(long, default_value_t = LAUNCH_RUNS, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The image to launch; it must have /bin/sleep.
    #[arg(long, default_value = LAUNCH_IMAGE)]
    image: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct SshArgs {
    /// Timed runs of each, after one untimed warm-up round.
    #[arg(long, default_value_t = SSH_RUNS, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The image to launch; it must have /bin/sh, ssh-keygen and /usr/sbin/sshd.
    #[arg(long, default_value = SSH_IMAGE)]
    image: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct JupyterArgs {
    /// Timed runs of each, after one untimed warm-up round.
    #[arg(long, default_value_t = JUPYTER_RUNS, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The image to launch; it must have `jupyter-notebook` in its PATH, and ssh-keygen
    /// and /usr/sbin/sshd for berth's jupyter mode.
    #[arg(long, default_value = JUPYTER_IMAGE)]
    image: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct AllArgs {
    /// The berth binary.
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider, as in berth.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let stop = interrupt_flag();
    let result = match cli.cmd {
        Cmd::Launch(a) => launch(&a, &stop).await,
        Cmd::Ssh(a) => ssh(&a, &stop).await,
        Cmd::Jupyter(a) => jupyter(&a, &stop).await,
        Cmd::Proxy(a) => proxy::proxy(&a, &stop).await,
        Cmd::All(a) => all(a, &stop).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set by Ctrl-C, SIGTERM or SIGHUP: the benchmark then stops between runs and cleans up,
/// so that no launch is left half done.
fn interrupt_flag() -> Arc<AtomicBool> {
    use tokio::signal::unix::{signal, SignalKind};
    let flag = Arc::new(AtomicBool::new(false));
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        let flag = flag.clone();
        match signal(kind) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        flag.store(true, Ordering::Relaxed);
                    }
                });
            }
            Err(e) => eprintln!("warning: cannot catch signal {kind:?}: {e}"),
        }
    }
    flag
}

fn check(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

async fn all(a: AllArgs, stop: &AtomicBool) -> Result<()> {
    let common = || Common {
        berth: a.berth.clone(),
        berth_log: None,
    };
    let launch_args = LaunchArgs {
        runs: LAUNCH_RUNS,
        image: LAUNCH_IMAGE.into(),
        common: common(),
    };
    let ssh_args = SshArgs {
        runs: SSH_RUNS,
        image: SSH_IMAGE.into(),
        common: common(),
    };
    let jupyter_args = JupyterArgs {
        runs: JUPYTER_RUNS,
        image: JUPYTER_IMAGE.into(),
        common: common(),
    };
    println!(
        "## launch: create→running ({}, {} runs)\n",
        launch_args.image, launch_args.runs
    );
    launch(&launch_args, stop).await?;
    println!(
        "\n## ssh: create→ssh-ready ({}, {} runs)\n",
        ssh_args.image, ssh_args.runs
    );
    ssh(&ssh_args, stop).await?;
    println!(
        "\n## jupyter: create→jupyter-ready ({}, {} runs)\n",
        jupyter_args.image, jupyter_args.runs
    );
    jupyter(&jupyter_args, stop).await?;
    let proxy_args = proxy::ProxyArgs::defaults(a.berth.clone());
    println!(
        "\n## proxy: through the proxy against direct ({} in ssh mode)\n",
        proxy_args.image
    );
    proxy::proxy(&proxy_args, stop).await
}

/// What a benchmark body gets: the API of a `berth up` whose agent is online, a temp dir
/// of its own, and the label for containers it runs by hand.
struct Ctx {
    api: Api,
    dir: PathBuf,
    label: String,
}

/// Starts `berth up` in a fresh temp dir, waits for its agent and runs `body`. Whatever
/// happened, it then stops berth (so that it creates nothing more), removes every
/// container of berth's deployment and every one run by hand, and the temp dir; an error
/// gets the end of berth's log.
async fn with_berth<F, Fut>(name: &str, c: &Common, body: F) -> Result<()>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let tmp = TempDir::new(name)?;
    let log = c
        .berth_log
        .clone()
        .unwrap_or_else(|| tmp.path().join("berth.log"));
    let label = format!("{BENCH_LABEL}={}", tmp.name());
    let mut deployment = None;
    let result = async {
        let berth = Berth::start(&c.berth, tmp.path(), &log)?;
        deployment = berth.deployment.clone();
        let api = Api::new(&berth);
        api.wait_for_agent().await?;
        let cx = Ctx {
            api,
            dir: tmp.path().to_path_buf(),
            label: label.clone(),
        };
        body(cx).await
        // Dropping `berth` stops it, so that it creates nothing more.
    }
    .await;
    let mut filters = vec![format!("label={label}")];
    if let Some(dep) = deployment {
        filters.push(format!("label={}={dep}", labels::DEPLOYMENT));
    }
    remove_containers(&filters).await;
    // `tmp` goes last, after the containers that mounted files from it.
    match result {
        Err(e) if c.berth_log.is_none() => Err(anyhow!(
            "{e:#}\nlast lines of berth's log:\n{}",
            tail(&log, 10)
        )),
        r => r,
    }
}

/// Removes every container that any of the `docker ps` filters matches; best effort (a
/// failure is a warning).
async fn remove_containers(filters: &[String]) {
    let mut ids = Vec::new();
    for f in filters {
        match docker(&["ps", "-aq", "--filter", f]).await {
            Ok(out) => ids.extend(out.lines().map(String::from)),
            Err(e) => eprintln!("warning: cannot list the containers to clean up: {e:#}"),
        }
    }
    if !ids.is_empty() {
        let mut rm = vec!["rm", "-f"];
        rm.extend(ids.iter().map(String::as_str));
        if let Err(e) = docker(&rm).await {
            eprintln!("warning: {e:#}");
        }
    }
}

async fn launch(a: &LaunchArgs, stop: &AtomicBool) -> Result<()> {
    with_berth("launch", &a.common, |cx| async move {
        measure_launch(a, &cx.api, &cx.label, stop).await
    })
    .await
}

/// Runs both launchers in turn and prints the table.
async fn measure_launch(a: &LaunchArgs, api: &Api, label: &str, stop: &AtomicBool) -> Result<()> {
    let (mut berth_ms, mut docker_ms) = (Vec::new(), Vec::new());
    for i in 0..=a.runs {
        check(stop)?;
        let tb = ms(berth_once(api, &a.image).await?);
        let td = ms(docker_once(&a.image, label).await?);
        if i == 0 {
            eprintln!("warm-up: berth {tb:.1} ms, docker {td:.1} ms");
        } else {
            eprintln!("run {i}/{}: berth {tb:.1} ms, docker {td:.1} ms", a.runs);
            berth_ms.push(tb);
            docker_ms.push(td);
        }
    }
    let (bm, bp) = stats(&mut berth_ms);
    let (dm, dp) = stats(&mut docker_ms);
    println!("| what | median ms | p90 ms | runs |");
    println!("|---|---:|---:|---:|");
    println!("| berth create→running | {bm:.1} | {bp:.1} | {} |", a.runs);
    println!("| docker run -d -P | {dm:.1} | {dp:.1} | {} |", a.runs);
    println!();
    println!(
        "ratio (berth/docker, medians): {:.2}  target ≤ 1.5",
        bm / dm
    );
    Ok(())
}

/// One berth launch: the time from the create request until the API says running; then
/// the instance is destroyed and its container waited out. Bodies are plain JSON so that
/// the benchmark also runs against a berth of another version.
async fn berth_once(api: &Api, image: &str) -> Result<Duration> {
    let req = json!({"image": image, "entrypoint": "/bin/sleep", "args": ["3600"]});
    let t0 = Instant::now();
    let created = api.send(Method::POST, "/instances", Some(&req)).await?;
    let path = format!("/instances/{}", created["id"]);
    let inst = loop {
        let inst = api.send(Method::GET, &path, None).await?;
        let state: InstanceState = serde_json::from_value(inst["state"].clone())
            .with_context(|| format!("GET {path}: no state in {inst}"))?;
        match state {
            InstanceState::Running => break inst,
            s if s.is_settled() || s == InstanceState::Offline => {
                bail!("instance is {s}: {}", inst["reason"])
            }
            _ if t0.elapsed() > TIMEOUT => bail!("instance is still {state} after {TIMEOUT:?}"),
            _ => tokio::time::sleep(POLL).await,
        }
    };
    let took = t0.elapsed();
    api.send(Method::DELETE, &path, None).await?;
    let cid = inst["container_id"]
        .as_str()
        .context("a running instance without a container")?;
    wait_gone(cid).await?;
    Ok(took)
}

/// One `docker run -d -P` (like berth, it publishes the image's EXPOSE ports): the CLI
/// returns once the container has started.
async fn docker_once(image: &str, label: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let run = [
        "run",
        "-d",
        "-P",
        "--rm",
        "--label",
        label,
        "--entrypoint",
        "/bin/sleep",
        image,
        "3600",
    ];
    let id = docker(&run).await?;
    let took = t0.elapsed();
    // `--rm` may race `rm -f` and make it fail; the container goes either way.
    let _ = docker(&["rm", "-f", &id]).await;
    wait_gone(&id).await?;
    Ok(took)
}

/// The client side of the ssh benchmark: a key pair and the authorized_keys file for the
/// hand-run sshd.
struct SshKey {
    private: PathBuf,
    public_line: String,
    authorized_keys: PathBuf,
}

impl SshKey {
    fn new(dir: &Path) -> Result<SshKey> {
        let private = dir.join("id_ed25519");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-bench", "-f"])
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh-keygen (openssh-client is needed)")?;
        if !out.status.success() {
            bail!(
                "ssh-keygen: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let public = std::fs::read_to_string(private.with_extension("pub"))
            .context("ssh-keygen wrote no public key")?;
        let public_line = public.trim().to_string();
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, format!("{public_line}\n"))?;
        // sshd's StrictModes: not writable by group or others.
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o644))?;
        Ok(SshKey {
            private,
            public_line,
            authorized_keys,
        })
    }
}

async fn ssh(a: &SshArgs, stop: &AtomicBool) -> Result<()> {
    with_berth("ssh", &a.common, |cx| async move {
        let key = SshKey::new(&cx.dir)?;
        let body = json!({"key": key.public_line});
        cx.api.send(Method::POST, "/keys", Some(&body)).await?;
        measure_ssh(a, &cx.api, &key, &cx.label, stop).await
    })
    .await
}

/// Both ways to ssh-ready in turn, then logins to one running container of each; prints
/// the tables.
async fn measure_ssh(
    a: &SshArgs,
    api: &Api,
    key: &SshKey,
    label: &str,
    stop: &AtomicBool,
) -> Result<()> {
    let (mut berth_ms, mut docker_ms) = (Vec::new(), Vec::new());
    for i in 0..=a.runs {
        check(stop)?;
        let b = berth_ssh_once(api, &a.image, key).await?;
        check(stop)?;
        let d = docker_ssh_once(&a.image, key, label).await?;
        let line = format!(
            "berth {:.1} ms (port known after {:.1} ms, {} ssh tries), \
             docker {:.1} ms (port known after {:.1} ms, {} ssh tries)",
            ms(b.ready),
            ms(b.port_known),
            b.tries,
            ms(d.ready),
            ms(d.port_known),
            d.tries
        );
        if i == 0 {
            eprintln!("warm-up: {line}");
        } else {
            eprintln!("run {i}/{}: {line}", a.runs);
            berth_ms.push(ms(b.ready));
            docker_ms.push(ms(d.ready));
        }
    }

    // Logins to a running container of each, interleaved.
    check(stop)?;
    let running = BerthSsh::create(api, &a.image, key).await?;
    let result = async {
        let hand = HandSshd::run(&a.image, key, label).await?;
        let result = logins(running.port, hand.port, key, stop).await;
        hand.remove().await?;
        result
    }
    .await;
    running.remove(api).await?;
    let (mut berth_login, mut docker_login) = result?;

    let (bm, bp) = stats(&mut berth_ms);
    let (dm, dp) = stats(&mut docker_ms);
    println!("| what | median ms | p90 ms | runs |");
    println!("|---|---:|---:|---:|");
    println!(
        "| berth create→ssh-ready | {bm:.1} | {bp:.1} | {} |",
        a.runs
    );
    println!("| docker run sshd | {dm:.1} | {dp:.1} | {} |", a.runs);
    println!();
    println!(
        "ratio (berth/docker, medians): {:.2}  target ≤ 1.3",
        bm / dm
    );
    println!();
    let (lbm, lbp) = stats(&mut berth_login);
    let (ldm, ldp) = stats(&mut docker_login);
    println!("| `ssh … true` to a running container | median ms | p90 ms | runs |");
    println!("|---|---:|---:|---:|");
    println!("| berth instance | {lbm:.1} | {lbp:.1} | {LOGIN_RUNS} |");
    println!("| docker run sshd | {ldm:.1} | {ldp:.1} | {LOGIN_RUNS} |");
    println!();
    println!("ratio (berth/docker, medians): {:.2}", lbm / ldm);
    Ok(())
}

/// `LOGIN_RUNS` timed `ssh … true` to each port, alternating, after one untimed each.
async fn logins(
    berth_port: u16,
    docker_port: u16,
    key: &SshKey,
    stop: &AtomicBool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut b, mut d) = (Vec::new(), Vec::new());
    for i in 0..=LOGIN_RUNS {
        check(stop)?;
        let tb = ms(login(berth_port, key).await?);
        let td = ms(login(docker_port, key).await?);
        if i > 0 {
            b.push(tb);
            d.push(td);
        }
    }
    eprintln!("ssh … true: berth {b:.1?} ms; docker {d:.1?} ms");
    Ok((b, d))
}

/// One `ssh … true` that must succeed: its time.
async fn login(port: u16, key: &SshKey) -> Result<Duration> {
    let t0 = Instant::now();
    let out = ssh_true(port, key).await?;
    let took = t0.elapsed();
    if !out.status.success() {
        bail!(
            "ssh … true to port {port} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// The one ssh command of the benchmark: `ssh … root@127.0.0.1 true` with the bench key.
async fn ssh_true(port: u16, key: &SshKey) -> Result<std::process::Output> {
    ssh_command(port, key, &[], "true")
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run ssh (openssh-client is needed)")
}

/// `ssh [EXTRA] … root@127.0.0.1 REMOTE` to `port` with the bench key, no host key checks
/// and no interaction; stdin is the caller's to set.
fn ssh_command(port: u16, key: &SshKey, extra: &[&str], remote: &str) -> tokio::process::Command {
    ssh_command_at("127.0.0.1", port, key, extra, remote)
}

/// [`ssh_command`] to `host`.
fn ssh_command_at(
    host: &str,
    port: u16,
    key: &SshKey,
    extra: &[&str],
    remote: &str,
) -> tokio::process::Command {
    let port = port.to_string();
    let target = format!("root@{host}");
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-p", &port, "-i"])
        .arg(&key.private)
        .args(extra)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            &target,
            remote,
        ])
        .process_group(0) // a terminal's Ctrl-C is the benchmark's alone
        .kill_on_drop(true);
    cmd
}

/// Tries `ssh … true` every [`SSH_RETRY`] (start to start) until it succeeds; how many
/// tries it took. Every [`ALIVE_EVERY`] failed tries, `alive` says whether waiting on is
/// any use (its error ends the wait); gives up [`TIMEOUT`] after `t0`.
async fn until_ssh<F, Fut>(port: u16, key: &SshKey, t0: Instant, mut alive: F) -> Result<u32>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut tries = 0;
    loop {
        let started = tokio::time::Instant::now();
        tries += 1;
        let out = ssh_true(port, key).await?;
        if out.status.success() {
            return Ok(tries);
        }
        let why = || String::from_utf8_lossy(&out.stderr).trim().to_string();
        if t0.elapsed() > TIMEOUT {
            bail!(
                "ssh … true to port {port} still fails after {TIMEOUT:?} ({tries} tries): {}",
                why()
            );
        }
        if tries % ALIVE_EVERY == 0 {
            alive()
                .await
                .with_context(|| format!("ssh … true to port {port} fails: {}", why()))?;
        }
        tokio::time::sleep_until(started + SSH_RETRY).await;
    }
}

/// How one launch went to ready (ssh-ready, jupyter-ready).
#[derive(Clone, Copy)]
struct Ready {
    /// From the create request (or `docker run`) to the first success of the probe
    /// (`ssh … true`, `GET /api`).
    ready: Duration,
    /// From the same start until the host port of the probed internal port was known.
    port_known: Duration,
    /// How many probes it took.
    tries: u32,
}

/// A berth instance in ssh mode, up to its first successful `ssh … true`.
struct BerthSsh {
    path: String,
    container: String,
    port: u16,
    ready: Ready,
}

impl BerthSsh {
    /// Creates the instance and waits for ssh. The instance is deleted again if that fails.
    async fn create(api: &Api, image: &str, key: &SshKey) -> Result<BerthSsh> {
        let req = json!({"image": image, "mode": "ssh"});
        let t0 = Instant::now();
        let created = api.send(Method::POST, "/instances", Some(&req)).await?;
        let path = format!("/instances/{}", created["id"]);
        let up = async {
            // The port is in the instance once its container exists.
            let (port, container) = loop {
                let inst = api.send(Method::GET, &path, None).await?;
                if let Some(port) = host_port(&inst, 22) {
                    let cid = inst["container_id"]
                        .as_str()
                        .context("an instance with ports but no container")?;
                    break (port, cid.to_string());
                }
                let state: InstanceState = serde_json::from_value(inst["state"].clone())
                    .with_context(|| format!("GET {path}: no state in {inst}"))?;
                match state {
                    s if s.is_settled() || s == InstanceState::Offline => {
                        bail!("instance is {s} without a port for 22: {}", inst["reason"])
                    }
                    _ if t0.elapsed() > TIMEOUT => {
                        bail!("instance is still {state} without a port for 22 after {TIMEOUT:?}")
                    }
                    _ => tokio::time::sleep(POLL).await,
                }
            };
            let port_known = t0.elapsed();
            let alive = || async {
                let inst = api.send(Method::GET, &path, None).await?;
                let state: InstanceState = serde_json::from_value(inst["state"].clone())
                    .with_context(|| format!("GET {path}: no state in {inst}"))?;
                match state {
                    s if s.is_settled() && s != InstanceState::Running => {
                        bail!("instance is {s}: {}", inst["reason"])
                    }
                    InstanceState::Offline => bail!("instance is offline"),
                    _ => Ok(()),
                }
            };
            let tries = until_ssh(port, key, t0, alive).await?;
            Ok(BerthSsh {
                path: path.clone(),
                container,
                port,
                ready: Ready {
                    ready: t0.elapsed(),
                    port_known,
                    tries,
                },
            })
        }
        .await;
        if up.is_err() {
            let _ = api.send(Method::DELETE, &path, None).await;
        }
        up
    }

    /// Deletes the instance and waits until its container is gone.
    async fn remove(self, api: &Api) -> Result<()> {
        api.send(Method::DELETE, &self.path, None).await?;
        wait_gone(&self.container).await
    }
}

/// The host port of an internal TCP port in an instance's JSON, once it has one.
fn host_port(inst: &Value, internal: u16) -> Option<u16> {
    inst["ports"]
        .as_array()?
        .iter()
        .find(|p| p["internal"] == internal && p["proto"].as_str().is_none_or(|s| s == "tcp"))?
        ["external"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// One berth launch to ssh-ready; then the instance is destroyed and its container
/// waited out.
async fn berth_ssh_once(api: &Api, image: &str, key: &SshKey) -> Result<Ready> {
    let inst = BerthSsh::create(api, image, key).await?;
    let ready = inst.ready;
    inst.remove(api).await?;
    Ok(ready)
}

/// `docker run -d` of the image's own sshd with the bench key authorized, published on
/// 127.0.0.1, up to its first successful `ssh … true`. As root whatever the image's USER,
/// like berth's init.
struct HandSshd {
    id: String,
    port: u16,
    ready: Ready,
}

impl HandSshd {
    /// Runs the container and waits for ssh. The container is removed again if that fails.
    async fn run(image: &str, key: &SshKey, label: &str) -> Result<HandSshd> {
        let mount = format!(
            "{}:/root/.ssh/authorized_keys:ro",
            key.authorized_keys.display()
        );
        let t0 = Instant::now();
        let run = [
            "run",
            "-d",
            "--label",
            label,
            "--user",
            "0",
            "-p",
            "127.0.0.1::22",
            "-v",
            &mount,
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            SSHD_SCRIPT,
        ];
        let id = docker(&run).await?;
        let up: Result<(u16, Ready)> = async {
            let port = docker_port(&id, 22).await?;
            let port_known = t0.elapsed();
            let alive = || async {
                let running = docker(&["inspect", "-f", "{{.State.Running}}", &id]).await?;
                if running != "true" {
                    bail!("the container is no longer running");
                }
                Ok(())
            };
            let tries = until_ssh(port, key, t0, alive).await?;
            Ok((
                port,
                Ready {
                    ready: t0.elapsed(),
                    port_known,
                    tries,
                },
            ))
        }
        .await;
        match up {
            Ok((port, ready)) => Ok(HandSshd { id, port, ready }),
            Err(e) => {
                let log = container_log(&id).await;
                let _ = docker(&["rm", "-f", &id]).await;
                Err(anyhow!("{e:#}\nthe hand-run sshd container's log:\n{log}"))
            }
        }
    }

    /// Removes the container and waits until it is gone.
    async fn remove(self) -> Result<()> {
        docker(&["rm", "-f", &self.id]).await?;
        wait_gone(&self.id).await
    }
}

/// The last lines a container wrote (both streams), indented; best effort.
async fn container_log(id: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args(["logs", "--tail", "10", id])
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
            text.lines().map(|l| format!("  {l}\n")).collect()
        }
        Err(e) => format!("  (cannot run docker logs: {e})\n"),
    }
}

/// The host port Docker published for the container's `internal`/tcp.
async fn docker_port(id: &str, internal: u16) -> Result<u16> {
    let spec = format!("{internal}/tcp");
    let out = docker(&["port", id, &spec]).await?;
    out.lines()
        .find_map(|l| l.trim().rsplit_once(':')?.1.parse().ok())
        .with_context(|| format!("`docker port {id} {spec}` said {out:?}"))
}

/// One hand-run sshd to ssh-ready; the container is then removed (not timed).
async fn docker_ssh_once(image: &str, key: &SshKey, label: &str) -> Result<Ready> {
    let hand = HandSshd::run(image, key, label).await?;
    let ready = hand.ready;
    hand.remove().await?;
    Ok(ready)
}

/// A client for `GET /api` that trusts only the certificate(s) in `pem`, with a fresh
/// connection per request (the two launchers get the same, and a port that a later
/// container reuses never meets a pooled connection to an earlier one).
fn tls_client(pem: &[u8]) -> Result<reqwest::Client> {
    let cert = reqwest::Certificate::from_pem(pem).context("not a PEM certificate")?;
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .pool_max_idle_per_host(0)
        .connect_timeout(API_TIMEOUT)
        .timeout(API_TIMEOUT)
        .build()
        .context("cannot build the TLS client")
}

async fn jupyter(a: &JupyterArgs, stop: &AtomicBool) -> Result<()> {
    with_berth("jupyter", &a.common, |cx| async move {
        let ca = cx.api.ca_cert().await?;
        let berth_http = tls_client(&ca).context("berth's CA")?;
        let hand = HandTls::new(&cx.dir)?;
        let hand_http = tls_client(&hand.cert_pem).context("the hand-run certificate")?;
        let mut berth_ms = Vec::new();
        let mut docker_ms = Vec::new();
        for i in 0..=a.runs {
            check(stop)?;
            let b = BerthJupyter::run(&cx.api, &berth_http, &a.image).await?;
            check(stop)?;
            let d = HandJupyter::run(&a.image, &hand, &hand_http, &cx.label).await?;
            let line = format!("berth {}; docker {}", b.describe(), d.describe());
            if i == 0 {
                eprintln!("warm-up: {line}");
            } else {
                eprintln!("run {i}/{}: {line}", a.runs);
                berth_ms.push(ms(b.ready.ready));
                docker_ms.push(ms(d.ready.ready));
            }
        }
        let (bm, bp) = stats(&mut berth_ms);
        let (dm, dp) = stats(&mut docker_ms);
        println!("| what | median ms | p90 ms | runs |");
        println!("|---|---:|---:|---:|");
        println!(
            "| berth create→jupyter-ready | {bm:.1} | {bp:.1} | {} |",
            a.runs
        );
        println!("| docker run jupyter | {dm:.1} | {dp:.1} | {} |", a.runs);
        println!();
        println!(
            "note: before Jupyter, berth's instance generates an ed25519 host key, starts \
             sshd and waits until it accepts (jupyter mode includes ssh mode); the hand-run \
             starts only Jupyter."
        );
        println!();
        println!(
            "ratio (berth/docker, medians): {:.2}  target ≤ 1.3",
            bm / dm
        );
        Ok(())
    })
    .await
}

/// Tries `GET https://127.0.0.1:PORT/api` every [`API_RETRY`] (start to start) until it
/// answers 200; how many tries it took. A certificate that does not verify ends the wait
/// at once; otherwise, every [`ALIVE_EVERY`] failed tries, `alive` says whether waiting on
/// is any use (its error ends the wait); gives up [`TIMEOUT`] after `t0`.
async fn until_api<F, Fut>(
    http: &reqwest::Client,
    port: u16,
    t0: Instant,
    mut alive: F,
) -> Result<u32>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let url = format!("https://127.0.0.1:{port}/api");
    let mut tries = 0;
    loop {
        let started = tokio::time::Instant::now();
        tries += 1;
        let why = match http.get(&url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(tries),
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => {
                if format!("{e:?}").contains("InvalidCertificate") {
                    bail!("GET {url}: the certificate does not verify: {e:#}");
                }
                format!("{:#}", anyhow::Error::from(e))
            }
        };
        if t0.elapsed() > TIMEOUT {
            bail!("GET {url} still fails after {TIMEOUT:?} ({tries} tries): {why}");
        }
        if tries % ALIVE_EVERY == 0 {
            alive()
                .await
                .with_context(|| format!("GET {url} fails: {why}"))?;
        }
        tokio::time::sleep_until(started + API_RETRY).await;
    }
}

/// One berth launch in jupyter mode up to its first `/api` answer, and what the per-run
/// log tells about it.
struct BerthJupyter {
    ready: Ready,
    /// From the same start until the API said running (after the answer; not timed).
    running: Duration,
    /// Moments of the container and of its init, from its log (not timed).
    phases: String,
}

impl BerthJupyter {
    /// Creates the instance, times it to the first `/api` answer, waits for "running",
    /// reads the container's log, deletes the instance and waits until its container is
    /// gone (whatever happened).
    async fn run(api: &Api, http: &reqwest::Client, image: &str) -> Result<BerthJupyter> {
        let req = json!({"image": image, "mode": "jupyter"});
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        let created = api.send(Method::POST, "/instances", Some(&req)).await?;
        let path = format!("/instances/{}", created["id"]);
        let mut container = None;
        let result = async {
            // The port is in the instance once its container exists.
            let port = loop {
                let inst = api.send(Method::GET, &path, None).await?;
                if let Some(port) = host_port(&inst, JUPYTER_PORT) {
                    let cid = inst["container_id"]
                        .as_str()
                        .context("an instance with ports but no container")?;
                    container = Some(cid.to_string());
                    break port;
                }
                let state = instance_state(&path, &inst)?;
                match state {
                    s if s.is_settled() || s == InstanceState::Offline => bail!(
                        "instance is {s} without a port for {JUPYTER_PORT}: {}",
                        inst["reason"]
                    ),
                    _ if t0.elapsed() > TIMEOUT => bail!(
                        "instance is still {state} without a port for {JUPYTER_PORT} \
                         after {TIMEOUT:?}"
                    ),
                    _ => tokio::time::sleep(POLL).await,
                }
            };
            let port_known = t0.elapsed();
            let alive = || async {
                let inst = api.send(Method::GET, &path, None).await?;
                match instance_state(&path, &inst)? {
                    s if s.is_settled() && s != InstanceState::Running => {
                        bail!("instance is {s}: {}", inst["reason"])
                    }
                    InstanceState::Offline => bail!("instance is offline"),
                    _ => Ok(()),
                }
            };
            let tries = until_api(http, port, t0, alive).await?;
            let ready = Ready {
                ready: t0.elapsed(),
                port_known,
                tries,
            };
            // Not timed: when berth's own readiness check calls it running.
            let running = loop {
                let inst = api.send(Method::GET, &path, None).await?;
                match instance_state(&path, &inst)? {
                    InstanceState::Running => break t0.elapsed(),
                    s if s.is_settled() || s == InstanceState::Offline => {
                        bail!(
                            "instance is {s} although Jupyter answers: {}",
                            inst["reason"]
                        )
                    }
                    s if t0.elapsed() > TIMEOUT => {
                        bail!("instance is still {s} after {TIMEOUT:?} although Jupyter answers")
                    }
                    _ => tokio::time::sleep(POLL).await,
                }
            };
            Ok((ready, running))
        }
        .await;
        let (result, phases) = match (&container, result) {
            (Some(cid), Ok(r)) => (Ok(r), init_phases(cid, wall0).await),
            (Some(cid), Err(e)) => (
                Err(anyhow!(
                    "{e:#}\nthe berth instance's container log:\n{}",
                    container_log(cid).await
                )),
                String::new(),
            ),
            (None, r) => (r, String::new()),
        };
        let deleted = api.send(Method::DELETE, &path, None).await;
        let gone = match &container {
            Some(cid) => wait_gone(cid).await,
            None => Ok(()),
        };
        let (ready, running) = result?;
        deleted?;
        gone?;
        Ok(BerthJupyter {
            ready,
            running,
            phases,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{:.1} ms ({JUPYTER_PORT} mapped at {:.1}{}, {} /api tries; running at {:.1})",
            ms(self.ready.ready),
            ms(self.ready.port_known),
            self.phases,
            self.ready.tries,
            ms(self.running)
        )
    }
}

fn instance_state(path: &str, inst: &Value) -> Result<InstanceState> {
    serde_json::from_value(inst["state"].clone())
        .with_context(|| format!("GET {path}: no state in {inst}"))
}

/// The moments of a berth container's start and of its init's steps, in ms after
/// `wall0` (", container started at …, sshd started at …"), from Docker's timestamps;
/// best effort (what cannot be read is left out). Docker stamps a log line when it reads
/// it: a line may come out some ms late, or not be in the log yet.
async fn init_phases(cid: &str, wall0: SystemTime) -> String {
    let mut out = String::new();
    if let Some(t) = started_at(cid).await {
        out += &format!(", container started at {:.1}", since_ms(wall0, t));
    }
    let lines = timed_log(cid).await;
    for (what, needle) in [
        ("sshd started", "berth-init: sshd started"),
        ("sshd accepts", "berth-init: sshd accepts connections"),
        ("jupyter started", "berth-init: jupyter started"),
        (
            "init's TLS probe answered",
            "berth-init: jupyter answers TLS",
        ),
    ] {
        if let Some((t, _)) = lines.iter().find(|(_, l)| l.contains(needle)) {
            out += &format!(", {what} at {:.1}", since_ms(wall0, *t));
        }
    }
    out
}

/// When Docker says the container started.
async fn started_at(id: &str) -> Option<SystemTime> {
    let out = docker(&["inspect", "-f", "{{.State.StartedAt}}", id])
        .await
        .ok()?;
    parse_rfc3339(&out)
}

/// The container's log (both streams) with Docker's timestamp of each line; best effort.
async fn timed_log(id: &str) -> Vec<(SystemTime, String)> {
    let out = tokio::process::Command::new("docker")
        .args(["logs", "--timestamps", id])
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await;
    let Ok(out) = out else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<(SystemTime, String)> = text
        .lines()
        .filter_map(|l| {
            let (ts, rest) = l.split_once(' ')?;
            Some((parse_rfc3339(ts)?, rest.to_string()))
        })
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    lines
}

/// Milliseconds from `from` to `to` (negative if `to` is earlier).
fn since_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

/// Docker's UTC timestamps: `2024-05-01T12:34:56.123456789Z` (any number of fraction
/// digits, or none).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        digits.parse::<u32>().ok()?
    };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// The hand-run Jupyter's certificate (self-signed for 127.0.0.1, what its client trusts)
/// and key in a directory of their own, and its token.
struct HandTls {
    dir: PathBuf,
    cert_pem: Vec<u8>,
    token: String,
}

impl HandTls {
    fn new(parent: &Path) -> Result<HandTls> {
        let dir = parent.join("tls");
        std::fs::create_dir_all(&dir)?;
        // Like berth's leaf: ECDSA P-256, serverAuth, for 127.0.0.1; not a CA (rustls
        // refuses a CA certificate as a server's own).
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(dir.join("tls.key"))
            .arg("-out")
            .arg(dir.join("tls.crt"))
            .stdin(Stdio::null())
            .output()
            .context("cannot run openssl (the openssl CLI is needed)")?;
        if !out.status.success() {
            bail!(
                "openssl req: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let cert_pem =
            std::fs::read(dir.join("tls.crt")).context("openssl wrote no certificate")?;
        let mut random = [0u8; 24];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)
            .context("cannot read /dev/urandom")?;
        let token = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(HandTls {
            dir,
            cert_pem,
            token,
        })
    }
}

/// One `docker run -d` of the image's Jupyter started as berth's init starts it (same
/// program, arguments, working dir, token variable, root), published on 127.0.0.1, up to
/// its first `/api` answer over TLS that trusts only its certificate.
struct HandJupyter {
    ready: Ready,
    /// When Docker says the container started, from the same start (not timed).
    started: Option<f64>,
}

impl HandJupyter {
    /// Runs the container, times it to the first `/api` answer and removes it again
    /// (not timed), whatever happened.
    async fn run(
        image: &str,
        tls: &HandTls,
        http: &reqwest::Client,
        label: &str,
    ) -> Result<HandJupyter> {
        let mount = format!("{}:{HAND_TLS_DIR}:ro", tls.dir.display());
        let token = format!("JUPYTER_TOKEN={}", tls.token);
        let publish = format!("127.0.0.1::{JUPYTER_PORT}");
        let port_arg = format!("--port={JUPYTER_PORT}");
        let certfile = format!("--certfile={HAND_TLS_DIR}/tls.crt");
        let keyfile = format!("--keyfile={HAND_TLS_DIR}/tls.key");
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        let run = [
            "run",
            "-d",
            "--label",
            label,
            "--user",
            "0",
            "-p",
            &publish,
            "-v",
            &mount,
            "-e",
            &token,
            "--workdir",
            "/",
            "--entrypoint",
            "jupyter-notebook",
            image,
            "--ip=0.0.0.0",
            &port_arg,
            "--port-retries=0",
            "--no-browser",
            "--allow-root",
            &certfile,
            &keyfile,
            "--notebook-dir=/",
        ];
        let id = docker(&run).await?;
        let up: Result<Ready> = async {
            let port = docker_port(&id, JUPYTER_PORT).await?;
            let port_known = t0.elapsed();
            let alive = || async {
                let running = docker(&["inspect", "-f", "{{.State.Running}}", &id]).await?;
                if running != "true" {
                    bail!("the container is no longer running");
                }
                Ok(())
            };
            let tries = until_api(http, port, t0, alive).await?;
            Ok(Ready {
                ready: t0.elapsed(),
                port_known,
                tries,
            })
        }
        .await;
        let up = match up {
            Ok(ready) => Ok(HandJupyter {
                ready,
                started: started_at(&id).await.map(|t| since_ms(wall0, t)),
            }),
            Err(e) => Err(anyhow!(
                "{e:#}\nthe hand-run Jupyter container's log:\n{}",
                container_log(&id).await
            )),
        };
        let removed = docker(&["rm", "-f", &id]).await;
        let gone = wait_gone(&id).await;
        let up = up?;
        removed?;
        gone?;
        Ok(up)
    }

    fn describe(&self) -> String {
        let started = self
            .started
            .map(|t| format!(", container started at {t:.1}"))
            .unwrap_or_default();
        format!(
            "{:.1} ms (port known at {:.1}{started}, {} /api tries)",
            ms(self.ready.ready),
            ms(self.ready.port_known),
            self.ready.tries
        )
    }
}

/// Waits until no container has this id.
async fn wait_gone(id: &str) -> Result<()> {
    let t0 = Instant::now();
    let filter = format!("id={id}");
    while !docker(&["ps", "-aq", "--filter", &filter])
        .await?
        .is_empty()
    {
        if t0.elapsed() > TIMEOUT {
            bail!("container {id} is still there");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs the docker CLI; its trimmed stdout.
async fn docker(args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .process_group(0) // a terminal's Ctrl-C is the benchmark's alone
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run docker")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("docker {}: {}", args.join(" "), err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and p90 (nearest rank) of a non-empty sample.
fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[(n * 9).div_ceil(10) - 1])
}

/// The last `n` lines of a file, indented.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = &lines[lines.len().saturating_sub(n)..];
    last.iter().map(|l| format!("  {l}\n")).collect()
}

/// The REST API of the berth under test, over one keep-alive client.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(berth: &Berth) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("{}/api/v1", berth.url),
            key: berth.key.clone(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{path}", self.base);
        self.http.request(method, url).bearer_auth(&self.key)
    }

    /// Sends a request; the JSON answer (null if none). An error answer becomes an error
    /// with the server's text.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = self.request(method.clone(), path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!("{method} {path}: {status}: {}", resp.text().await?);
        }
        let bytes = resp.bytes().await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// berth's CA certificate (PEM), as served without a key.
    async fn ca_cert(&self) -> Result<Vec<u8>> {
        let url = format!("{}/ca.crt", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: {}", resp.status());
        }
        Ok(resp.bytes().await?.to_vec())
    }

    async fn wait_for_agent(&self) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let hosts = self.send(Method::GET, "/hosts", None).await?;
            if let Some(true) = hosts
                .as_array()
                .map(|a| a.iter().any(|h| h["online"] == true))
            {
                return Ok(());
            }
            if t0.elapsed() > TIMEOUT {
                bail!("berth's agent did not come online");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A child process of the benchmark (`berth up`, `berth server`, `berth proxy`, `berth
/// agent`); stopped with SIGTERM when dropped, and killed if it has not exited 10 s later.
struct Proc(Child);

impl Proc {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `berth up` or `berth server` as a child process; stopped when dropped.
struct Berth {
    /// Held to stop it when dropped.
    _child: Proc,
    url: String,
    key: String,
    agent_token: String,
    deployment: Option<String>,
}

impl Berth {
    /// Starts `berth up` in `tmp` and reads the API URL, admin key and deployment it prints.
    fn start(bin: &Path, tmp: &Path, log: &Path) -> Result<Berth> {
        let data = tmp.join("data");
        let args = [
            "up".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--ports".as_ref(),
            PORTS.as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        Berth::spawn(bin, &args, tmp, log)
    }

    /// Runs `berth ARGS` (`up` or `server`) and reads the facts it prints: the indented
    /// lines after its first line (API URL, admin key, agent token, deployment).
    fn spawn(bin: &Path, args: &[&std::ffi::OsStr], tmp: &Path, log: &Path) -> Result<Berth> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = std::process::Command::new(bin)
            .args(args)
            .env("BERTH_CONFIG", tmp.join("config.json"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0) // a terminal's Ctrl-C is the benchmark's alone
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut b = Berth {
            _child: Proc(child),
            url: String::new(),
            key: String::new(),
            agent_token: String::new(),
            deployment: None,
        };
        let mut line = String::new();
        while out.read_line(&mut line)? > 0 {
            let l = line.trim_end();
            if let Some(v) = l.strip_prefix("  API:") {
                b.url = v.trim().into();
            } else if let Some(v) = l.strip_prefix("  admin key:") {
                b.key = v.trim().into();
            } else if let Some(v) = l.strip_prefix("  agent token:") {
                b.agent_token = v.trim().into();
            } else if let Some(v) = l.strip_prefix("  deployment:") {
                b.deployment = Some(v.trim().into());
            } else if !b.url.is_empty() && !l.starts_with("  ") {
                break;
            }
            line.clear();
        }
        if b.url.is_empty() || b.key.is_empty() {
            bail!(
                "`berth {}` did not print its API URL and admin key",
                args[0].to_string_lossy()
            );
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(b)
    }
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// `berth-bench-PID-NAME`, new and empty (a leftover of an earlier process with the
    /// same pid is removed first).
    fn new(name: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("berth-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn name(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
