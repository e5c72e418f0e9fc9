//! A deployment of separate processes: `berth server` (SQLite or PostgreSQL, with or
//! without a proxy), `berth proxy`, and any number of `berth agent`s, each with its own
//! log in the test's directory. Processes can be stopped and started again to prove that
//! restarts lose nothing. Dropping it kills them and removes the deployment's containers.
use super::*;
use std::collections::HashMap;

#[derive(Default)]
pub struct Options {
    /// `--db` for the server; `None` is SQLite in the data dir.
    pub db: Option<String>,
    /// Configure and run a proxy (`--proxy-host 127.0.0.1`, its own ports).
    pub proxy: bool,
}

pub struct Deployment {
    pub dir: PathBuf,
    pub url: String,
    pub admin: String,
    pub token: String,
    pub deployment: String,
    /// The proxy's HTTPS port, with a proxy.
    pub https_port: Option<u16>,
    server_args: Vec<String>,
    server: Option<Child>,
    proxy: Option<Child>,
    agents: HashMap<String, (Child, Vec<String>)>,
    logs: u32,
}

impl Deployment {
    pub fn start(opts: Options) -> Deployment {
        require_docker_and_images(&[BUSYBOX]);
        let dir = temp_dir("deployment");
        let mut args: Vec<String> = [
            "server",
            "--data-dir",
            dir.join("data").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec();
        if let Some(db) = &opts.db {
            args.extend(["--db".into(), db.clone()]);
        }
        let https_port = opts.proxy.then(free_port);
        if let Some(https) = https_port {
            let (a, b) = proxy_port_block();
            args.extend(
                [
                    "--proxy-host",
                    "127.0.0.1",
                    "--proxy-tunnel-port",
                    &free_port().to_string(),
                    "--proxy-https-port",
                    &https.to_string(),
                    "--proxy-ssh-ports",
                    &format!("{a}-{b}"),
                ]
                .map(String::from),
            );
        }
        let mut d = Deployment {
            dir,
            url: String::new(),
            admin: String::new(),
            token: String::new(),
            deployment: String::new(),
            https_port,
            server_args: args,
            server: None,
            proxy: None,
            agents: HashMap::new(),
            logs: 0,
        };
        d.start_server();
        if opts.proxy {
            d.start_proxy();
        }
        d
    }

    fn log(&mut self, what: &str) -> PathBuf {
        self.logs += 1;
        self.dir.join(format!("{what}-{}.log", self.logs))
    }

    /// Starts the server (again: on the same address and data, with the same admin key).
    pub fn start_server(&mut self) {
        let mut args = self.server_args.clone();
        if !self.url.is_empty() {
            let listen = args.iter().position(|a| a == "--listen").unwrap() + 1;
            args[listen] = self.url.trim_start_matches("http://").to_string();
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.log("server");
        let s = spawn_berth(&argv, &[], &log, "run agents with:");
        let admin = s.field("admin key:");
        if !self.admin.is_empty() {
            assert_eq!(
                admin, self.admin,
                "the admin key is the same after a restart"
            );
        }
        self.url = s.field("API:");
        self.admin = admin;
        self.token = s.field("agent token:");
        self.deployment = s.field("deployment:");
        self.server = Some(s.child);
    }

    /// Where the server says the proxy is, from its next start.
    pub fn set_proxy_host(&mut self, host: &str) {
        let i = self
            .server_args
            .iter()
            .position(|a| a == "--proxy-host")
            .expect("a deployment with a proxy")
            + 1;
        self.server_args[i] = host.to_string();
    }

    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            terminate(&mut c);
        }
    }

    pub fn start_proxy(&mut self) {
        let log = self.log("proxy");
        let s = spawn_berth(
            &[
                "proxy",
                "--server",
                &self.url,
                "--token",
                &self.token,
                "--listen-ip",
                "127.0.0.1",
            ],
            &[],
            &log,
            "berth proxy is up",
        );
        self.proxy = Some(s.child);
    }

    pub fn stop_proxy(&mut self) {
        if let Some(mut c) = self.proxy.take() {
            terminate(&mut c);
        }
    }

    /// Starts an agent named `name` (its data dir kept across restarts) and waits until the
    /// server lists it online. `extra`: e.g. `["--ports", "26000-26019"]`.
    pub fn start_agent(&mut self, name: &str, public_ip: &str, extra: &[&str]) {
        let log = self.log(&format!("agent-{name}"));
        let mut args: Vec<String> = [
            "agent",
            "--server",
            &self.url,
            "--token",
            &self.token,
            "--name",
            name,
            "--public-ip",
            public_ip,
        ]
        .map(String::from)
        .to_vec();
        args.extend([
            "--data-dir".to_string(),
            self.dir.join(format!("agent-{name}")).display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(berth_bin())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        self.agents.insert(name.to_string(), (child, args));
        self.wait_host(name, true);
    }

    pub fn stop_agent(&mut self, name: &str) {
        if let Some((mut c, _)) = self.agents.remove(name) {
            terminate(&mut c);
        }
    }

    /// Waits until `berth hosts` shows `name` online (or offline).
    pub fn wait_host(&self, name: &str, online: bool) {
        let want = if online { "yes" } else { "no" };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let out = self.ok(&["hosts"]);
            if out
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([name, want]))
            {
                return;
            }
            assert!(Instant::now() < deadline, "host {name} never {want}: {out}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The CLI as the admin, by env (no config file).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", self.dir.join("cli-config.json"))
            .env("BERTH_URL", &self.url)
            .env("BERTH_API_KEY", &self.admin)
            .output()
            .unwrap()
    }

    /// A new key pair added to the admin's account, and the known_hosts file tests' ssh uses.
    pub fn account_key(&self) -> (KeyPair, PathBuf) {
        let key = KeyPair::new(&self.dir, "k");
        self.ok(&["keys", "add", key.public.to_str().unwrap()]);
        (key, self.dir.join("known_hosts"))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn show(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["show", id, "--json"])).unwrap()
    }

    pub fn wait_state(&self, id: &str, state: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let v = self.show(id);
            if v["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "instance {id} never {state}: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let children = self
            .agents
            .values_mut()
            .map(|(c, _)| c)
            .chain(self.proxy.as_mut())
            .chain(self.server.as_mut());
        for c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_containers(&self.deployment);
        if std::thread::panicking() {
            eprintln!("deployment test dir kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
