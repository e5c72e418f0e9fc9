//! Benchmarks of berth against plain Docker (DESIGN.md §6): ratios measured side by side
//! in one run, never a lone absolute time.
//!
//! `berth-bench launch` starts `berth up` in a throwaway data dir and times, interleaved,
//! berth's create→running against `docker run -d` of the same image.
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use berth_core::protocol::labels;
use berth_core::InstanceState;
use clap::{Parser, Subcommand};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Host ports berth may hand out (the benchmark's instances open none).
const PORTS: &str = "28000-28099";
/// How often the instance is polled while it comes up.
const POLL: Duration = Duration::from_millis(5);
/// How long anything may take before the benchmark gives up.
const TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Time berth's create→running against `docker run -d`, interleaved run by run.
    Launch(LaunchArgs),
}

#[derive(clap::Args)]
struct LaunchArgs {
    /// Timed runs of each, after one untimed warm-up round.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The image to launch; it must have /bin/sleep.
    #[arg(long, default_value = "berth-test/busybox")]
    image: String,
    /// The berth binary.
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Keep the log (stderr) of `berth up` in this file; RUST_LOG is passed on.
    #[arg(long)]
    berth_log: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cmd::Launch(args) = Cli::parse().cmd;
    match launch(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn launch(a: LaunchArgs) -> Result<()> {
    let tmp = TempDir::new()?;
    let log = a
        .berth_log
        .clone()
        .unwrap_or_else(|| tmp.0.join("berth.log"));
    // Ctrl-C ends the benchmark between runs, so that no launch is left half done.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let mut docker_ids = Vec::new();
    let mut deployment = None;
    let result = async {
        let berth = Berth::start(&a.berth, &tmp.0, &log)?;
        deployment = berth.deployment.clone();
        measure(&a, &berth, &interrupted, &mut docker_ids).await
        // Dropping `berth` stops it, so that it creates nothing more.
    }
    .await;
    if let Some(dep) = deployment {
        let filter = format!("label={}={dep}", labels::DEPLOYMENT);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]).await {
            docker_ids.extend(ids.lines().map(String::from));
        }
    }
    if !docker_ids.is_empty() {
        let mut rm = vec!["rm", "-f"];
        rm.extend(docker_ids.iter().map(String::as_str));
        let _ = docker(&rm).await;
    }
    match result {
        Err(e) if a.berth_log.is_none() => Err(anyhow!(
            "{e:#}\nlast lines of berth's log:\n{}",
            tail(&log, 10)
        )),
        r => r,
    }
}

/// Runs both launchers in turn and prints the table.
async fn measure(
    a: &LaunchArgs,
    berth: &Berth,
    interrupted: &AtomicBool,
    docker_ids: &mut Vec<String>,
) -> Result<()> {
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("{}/api/v1", berth.url),
        key: berth.key.clone(),
    };
    api.wait_for_agent().await?;
    let (mut berth_ms, mut docker_ms) = (Vec::new(), Vec::new());
    for i in 0..=a.runs {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let tb = ms(berth_once(&api, &a.image).await?);
        let td = ms(docker_once(&a.image, docker_ids).await?);
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
    println!("| docker run -d | {dm:.1} | {dp:.1} | {} |", a.runs);
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

/// One `docker run -d`: the CLI returns once the container has started.
async fn docker_once(image: &str, ids: &mut Vec<String>) -> Result<Duration> {
    let t0 = Instant::now();
    let run = [
        "run",
        "-d",
        "--rm",
        "--entrypoint",
        "/bin/sleep",
        image,
        "3600",
    ];
    let id = docker(&run).await?;
    let took = t0.elapsed();
    ids.push(id.clone());
    // `--rm` may race `rm -f` and make it fail; the container goes either way.
    let _ = docker(&["rm", "-f", &id]).await;
    wait_gone(&id).await?;
    ids.pop();
    Ok(took)
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

/// `berth up` as a child process; stopped with SIGTERM when dropped.
struct Berth {
    child: Child,
    url: String,
    key: String,
    deployment: Option<String>,
}

impl Berth {
    /// Starts it in `tmp` and reads the API URL, admin key and deployment it prints.
    fn start(bin: &Path, tmp: &Path, log: &Path) -> Result<Berth> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = std::process::Command::new(bin)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--ports",
                PORTS,
                "--data-dir",
            ])
            .arg(tmp.join("data"))
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
            child,
            url: String::new(),
            key: String::new(),
            deployment: None,
        };
        // The facts are the indented lines after "berth is up".
        let mut line = String::new();
        while out.read_line(&mut line)? > 0 {
            let l = line.trim_end();
            if let Some(v) = l.strip_prefix("  API:") {
                b.url = v.trim().into();
            } else if let Some(v) = l.strip_prefix("  admin key:") {
                b.key = v.trim().into();
            } else if let Some(v) = l.strip_prefix("  deployment:") {
                b.deployment = Some(v.trim().into());
            } else if !b.url.is_empty() && !l.starts_with("  ") {
                break;
            }
            line.clear();
        }
        if b.url.is_empty() || b.key.is_empty() {
            bail!("`berth up` did not print its API URL and admin key");
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(b)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
