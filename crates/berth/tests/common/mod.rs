//! End-to-end harness: a real `berth up` (or `berth server` + `berth agent`) as child
//! processes on the real Docker engine, driven through the real CLI binary. Each harness
//! has its own data dir, CLI config, listen port and host port range, and removes its
//! containers when dropped. Docker missing is a failure, never a skip.
#![allow(dead_code)]

pub mod deployment;
pub mod kernel;
pub mod registry;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "berth-test/busybox";
pub const DEBIAN: &str = "berth-test/debian";

pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// Fails the test unless Docker answers and the test images exist.
pub fn require_docker_and_images(images: &[&str]) {
    let info = Command::new("docker")
        .arg("info")
        .output()
        .expect("running `docker info` (is Docker installed?)");
    assert!(
        info.status.success(),
        "Docker is not reachable; berth's end-to-end tests need it: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    for image in images {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            ok,
            "test image {image} is missing: run images/build.sh (or ./scripts/test.sh)"
        );
    }
}

/// A block of 20 host ports for this test process, below the ephemeral range.
pub fn port_block() -> (u16, u16) {
    let slot = (std::process::id() % 300) as u16;
    let first = 26000 + slot * 20;
    (first, first + 19)
}

/// A second block of 20 ports for this test process (the proxy's SSH ports).
pub fn proxy_port_block() -> (u16, u16) {
    let slot = (std::process::id() % 300) as u16;
    let first = 20000 + slot * 20;
    (first, first + 19)
}

/// A port the OS says is free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "berth-e2e-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a started berth process printed.
pub struct Started {
    pub child: Child,
    pub lines: Vec<String>,
}

impl Started {
    pub fn field(&self, key: &str) -> String {
        self.lines
            .iter()
            .find_map(|l| {
                l.trim_start()
                    .strip_prefix(key)
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {key:?} line in {:?}", self.lines))
    }
}

/// Spawns berth and reads its stdout until `last_line_prefix` (keeps reading in the background).
pub fn spawn_berth(
    args: &[&str],
    envs: &[(&str, &Path)],
    log: &Path,
    last_line_prefix: &str,
) -> Started {
    let log_file = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(berth_bin());
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning berth");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let done = l.starts_with(last_line_prefix);
                lines.push(l);
                if done {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "berth {args:?} did not start; stdout {lines:?}; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
    Started { child, lines }
}

/// Sends SIGTERM and waits for the process to end.
pub fn terminate(child: &mut Child) {
    signal_and_wait(child, "TERM");
}

/// Sends SIG`name` (TERM, INT) and waits for the process to end; returns how it ended.
pub fn signal_and_wait(child: &mut Child, name: &str) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("berth did not stop within 20 s of SIG{name}");
}

/// `berth up` all in one.
pub struct Berth {
    pub dir: PathBuf,
    pub url: String,
    pub admin_key: String,
    pub deployment: String,
    pub ports: (u16, u16),
    /// The in-process proxy's ports: tunnel, HTTPS, SSH range.
    pub proxy_tunnel: u16,
    pub proxy_https: u16,
    pub proxy_ssh: (u16, u16),
    child: Option<Child>,
    restarts: u32,
    /// More arguments of `berth up`.
    extra: Vec<String>,
}

impl Berth {
    pub fn up() -> Berth {
        Berth::up_with(&[])
    }

    /// `berth up` with more arguments.
    pub fn up_with(extra: &[&str]) -> Berth {
        require_docker_and_images(&[BUSYBOX]);
        let dir = temp_dir("up");
        let mut b = Berth {
            dir,
            url: String::new(),
            admin_key: String::new(),
            deployment: String::new(),
            ports: port_block(),
            proxy_tunnel: free_port(),
            proxy_https: free_port(),
            proxy_ssh: proxy_port_block(),
            child: None,
            restarts: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.start();
        b
    }

    fn start(&mut self) {
        let listen = if self.url.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            self.url.trim_start_matches("http://").to_string()
        };
        let ports = format!("{}-{}", self.ports.0, self.ports.1);
        let data = self.dir.join("data");
        let config = self.dir.join("config.json");
        let log = self.dir.join(format!("berth-{}.log", self.restarts));
        let tunnel = self.proxy_tunnel.to_string();
        let https = self.proxy_https.to_string();
        let ssh_ports = format!("{}-{}", self.proxy_ssh.0, self.proxy_ssh.1);
        let mut args = vec![
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &listen,
            "--ports",
            &ports,
            "--name",
            "e2e-host",
            "--proxy-tunnel-port",
            &tunnel,
            "--proxy-https-port",
            &https,
            "--proxy-ssh-ports",
            &ssh_ports,
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let s = spawn_berth(&args, &[("BERTH_CONFIG", &config)], &log, "try:");
        self.url = s.field("API:");
        self.admin_key = s.field("admin key:");
        self.deployment = s.field("deployment:");
        self.child = Some(s.child);
    }

    /// Stops berth (SIGTERM) and starts it again on the same data dir and address.
    pub fn restart(&mut self) {
        self.stop_process();
        self.restarts += 1;
        self.start();
    }

    pub fn stop_process(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    /// A new key pair added to the account, and the known_hosts file tests' ssh uses.
    pub fn account_key(&self) -> (KeyPair, PathBuf) {
        let key = KeyPair::new(&self.dir, "k");
        self.ok(&["keys", "add", key.public.to_str().unwrap()]);
        (key, self.dir.join("known_hosts"))
    }

    /// Ctrl-C: SIGINT, as a terminal sends it; returns how berth ended.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("berth is running");
        signal_and_wait(&mut c, "INT")
    }

    pub fn log(&self) -> String {
        (0..=self.restarts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("berth-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----- restart -----\n")
    }

    /// Runs the CLI as the admin (logged in by `berth up`).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", self.dir.join("config.json"))
            .env_remove("BERTH_URL")
            .env_remove("BERTH_API_KEY")
            .output()
            .unwrap()
    }

    /// Runs the CLI with another user's key.
    pub fn cli_as(&self, key: &str, args: &[&str]) -> Output {
        Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", self.dir.join("no-config.json"))
            .env("BERTH_URL", &self.url)
            .env("BERTH_API_KEY", key)
            .output()
            .unwrap()
    }

    /// Runs the CLI and returns stdout; panics with stderr and the server log on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}\n{}\n--- berth log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should fail but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `berth create … --wait`, returning the id.
    pub fn create(&self, args: &[&str]) -> i64 {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("create printed {out:?}"))
    }

    pub fn show(&self, id: i64) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["show", &id.to_string(), "--json"])).unwrap()
    }

    /// Polls until the instance's state is `state`.
    pub fn wait_state(&self, id: i64, state: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.show(id);
            if v["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "instance {id} never became {state}: {v:#}\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self, id: i64) -> String {
        self.ok(&["logs", &id.to_string()])
    }

    /// Polls the onstart log until it contains `want`.
    pub fn wait_logs_onstart(&self, id: i64, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = self.ok(&["logs", &id.to_string(), "--onstart"]);
            if l.contains(want) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "onstart log of {id} never showed {want:?}: {l:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the logs until they contain `want`.
    pub fn wait_logs(&self, id: i64, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = self.logs(id);
            if l.contains(want) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "logs of {id} never showed {want:?}: {l:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_containers(&self.deployment);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("berth test dir kept: {}", self.dir.display());
        }
    }
}

/// Removes every container of a deployment.
pub fn remove_containers(deployment: &str) {
    if deployment.is_empty() {
        return;
    }
    // Twice: a create the killed agent had sent may still be finishing in the engine.
    for pass in 0..2 {
        if pass == 1 {
            std::thread::sleep(Duration::from_millis(300));
        }
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.deployment={deployment}"),
        ]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

/// An image a test builds for itself (`docker build` from a test image): removed when
/// dropped. Declare it before the `Berth` whose containers use it, so that they go first.
pub struct TestImage(pub String);

impl TestImage {
    /// A unique tag for `what`; the image is made by the caller.
    pub fn new(what: &str) -> TestImage {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        TestImage(format!(
            "berth-e2e/{what}:{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Runs docker, returns stdout (panics on failure).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `docker inspect -f FORMAT ID`.
pub fn inspect(id: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, id]).trim().to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub const SSH_IMAGE: &str = "berth-test/ssh";

/// An SSH key pair made by the real `ssh-keygen`.
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyPair {
    pub fn new(dir: &Path, name: &str) -> KeyPair {
        let private = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                name,
                "-f",
                private.to_str().unwrap(),
            ])
            .output()
            .expect("ssh-keygen (openssh-client) is needed");
        assert!(
            out.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        KeyPair {
            public: private.with_extension("pub"),
            private,
        }
    }
}

/// The direct SSH port of an instance (its internal 22).
pub fn ssh_port(v: &serde_json::Value) -> u16 {
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["internal"] == 22)
        .unwrap_or_else(|| panic!("no port 22 in {v:#}"))["external"]
        .as_u64()
        .unwrap() as u16
}

/// Runs the real OpenSSH client against 127.0.0.1:port as root with `key`.
pub fn ssh(port: u16, key: &Path, known_hosts: &Path, extra: &[&str], cmd: &str) -> Output {
    ssh_at("127.0.0.1", port, key, known_hosts, extra, cmd)
}

/// Runs the real OpenSSH client against host:port as root with `key`.
pub fn ssh_at(
    host: &str,
    port: u16,
    key: &Path,
    known_hosts: &Path,
    extra: &[&str],
    cmd: &str,
) -> Output {
    let port = port.to_string();
    let target = format!("root@{host}");
    let kh = format!("UserKnownHostsFile={}", known_hosts.display());
    let mut args = vec![
        "-p",
        &port,
        "-i",
        key.to_str().unwrap(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        &kh,
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
    ];
    args.extend_from_slice(extra);
    args.push(&target);
    args.push(cmd);
    Command::new("ssh")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("ssh (openssh-client) is needed")
}
