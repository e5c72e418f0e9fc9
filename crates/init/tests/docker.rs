//! berth-init as PID 1 of real containers on the real Docker engine, mounted the way the
//! agent mounts it (`/.berth/init` and `/.berth/state` read-only, `/.berth/run` read-write,
//! entrypoint `/.berth/init`, user root).
//!
//! Needs Docker, the OpenSSH client (`ssh`, `ssh-keygen`), `openssl` and `curl`, and the
//! test images `berth-test/busybox`, `berth-test/debian`, `berth-test/ssh`,
//! `berth-test/ssh-hostile` and `berth-test/jupyter` (`images/build.sh`). A missing one
//! fails the test: it never skips.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The static init, built once per test process with the same command as the agent's
/// build.rs, in its own target dir (so it never waits on the lock of the outer build).
fn init_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-init-static");
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "--release", "--target", TARGET, "-p", "berth-init"])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env("RUSTFLAGS", "-C target-feature=+crt-static");
        if root.join("Cargo.lock").exists() {
            cmd.arg("--locked");
        }
        let out = cmd
            .output()
            .expect("run cargo to build the static berth-init");
        assert!(
            out.status.success(),
            "building the static berth-init failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir.join(TARGET).join("release/berth-init")
    })
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs (these tests need Docker)")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn require_image(image: &str) {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(
        out.status.success(),
        "test image {image} is missing: build it with `images/build.sh {image}` ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn require_program(name: &str) {
    let ok = Command::new(name).arg("-V").output().map(|_| ()).is_ok();
    let package = match name {
        "curl" | "openssl" => name,
        _ => "openssh-client",
    };
    assert!(ok, "{name} is missing: install {package}");
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "berth-init-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One container with its state and run dirs; all removed on drop.
struct Instance {
    name: String,
    /// What the agent gives init (mounted read-only at /.berth/state).
    state: PathBuf,
    /// What init writes (mounted read-write at /.berth/run).
    run: PathBuf,
}

impl Instance {
    /// A state dir holding `config` (and an empty authorized_keys), an empty run dir, but
    /// no container yet.
    fn new(tag: &str, config: &str) -> Instance {
        let name = unique(tag);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
        let (state, run) = (dir.join("state"), dir.join("run"));
        fs::create_dir_all(&state).unwrap();
        fs::create_dir_all(&run).unwrap();
        fs::write(state.join("config.json"), config).unwrap();
        fs::write(state.join("authorized_keys"), "").unwrap();
        Instance { name, state, run }
    }

    fn run(&self, image: &str, extra: &[&str]) {
        require_image(image);
        let init = format!("{}:/.berth/init:ro", init_binary().display());
        let state = format!("{}:/.berth/state:ro", self.state.display());
        let run = format!("{}:/.berth/run", self.run.display());
        let mut args = vec!["run", "-d", "--name", &self.name, "--user", "0"];
        args.extend_from_slice(&["-v", &init, "-v", &state, "-v", &run]);
        args.extend_from_slice(&["--entrypoint", "/.berth/init"]);
        args.extend_from_slice(&["--label", "berth-test=init"]);
        args.extend_from_slice(extra);
        args.push(image);
        docker_ok(&args);
    }

    fn status(&self) -> String {
        fs::read_to_string(self.run.join("status")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn state_of(&self) -> (String, i32) {
        let s = docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &self.name,
        ]);
        let (status, code) = s.split_once(' ').unwrap();
        (status.to_string(), code.parse().unwrap())
    }

    fn wait_exit(&self, timeout: Duration) -> i32 {
        wait_until(timeout, "the container to exit", || {
            let (status, code) = self.state_of();
            (status == "exited").then_some(code)
        })
    }

    fn exec(&self, script: &str) -> String {
        docker_ok(&["exec", &self.name, "sh", "-c", script])
    }

    fn port(&self) -> u16 {
        self.host_port(22)
    }

    /// The host port Docker mapped `internal` to.
    fn host_port(&self, internal: u16) -> u16 {
        let out = docker_ok(&["port", &self.name, &format!("{internal}/tcp")]);
        let first = out.lines().next().expect("a port mapping");
        first.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn wait_ready(&self) {
        self.wait_status("ssh-ready", Duration::from_secs(30));
    }

    /// Waits for the status line `want`; an init that failed fails the test at once.
    fn wait_status(&self, want: &str, timeout: Duration) -> Duration {
        let t = Instant::now();
        wait_until(timeout, &format!("status {want}"), || {
            let s = self.status();
            assert!(
                !s.starts_with("failed"),
                "init failed: {s}\n{}",
                self.logs()
            );
            (s.strip_suffix('\n') == Some(want)).then_some(())
        });
        t.elapsed()
    }

    fn onstart_log(&self) -> String {
        fs::read_to_string(self.run.join("onstart.log")).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
        let _ = fs::remove_dir_all(self.state.parent().unwrap());
    }
}

fn assert_fails_without_sshd(image: &str) {
    let inst = Instance::new("nosshd", r#"{"mode":"ssh"}"#);
    inst.run(image, &[]);
    let code = inst.wait_exit(Duration::from_secs(30));
    let logs = inst.logs();
    assert_eq!(code, 2, "{image}: exit code; logs:\n{logs}");
    let status = inst.status();
    assert!(
        status.starts_with(
            "failed: the image has no OpenSSH server (sshd): looked in /usr/sbin/sshd"
        ) && status.ends_with("use the entrypoint launch mode\n")
            && status.lines().count() == 1,
        "{image}: status {status:?}"
    );
    assert!(
        logs.contains(&format!("berth-init: {}", status.trim())),
        "{logs}"
    );
}

/// Proves the binary needs nothing from the image: busybox has no glibc, no bash.
#[test]
fn busybox_without_sshd_fails_with_the_reason() {
    assert_fails_without_sshd("berth-test/busybox");
}

#[test]
fn debian_without_sshd_fails_with_the_reason() {
    assert_fails_without_sshd("berth-test/debian");
}

#[test]
fn unknown_mode_fails_with_the_reason() {
    let inst = Instance::new("badmode", r#"{"mode":"teleport"}"#);
    inst.run("berth-test/busybox", &[]);
    assert_eq!(
        inst.wait_exit(Duration::from_secs(30)),
        2,
        "{}",
        inst.logs()
    );
    let status = inst.status();
    assert!(
        status.starts_with("failed: bad /.berth/state/config.json: unknown variant `teleport`"),
        "{status:?}"
    );
}

fn banner(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.starts_with("SSH-2.0-").then_some(text)
}

/// `ssh` as a user would run it, with strict host key checking against the host key in
/// the state dir.
fn ssh(inst: &Instance, key: &Path, known_hosts: &Path, command: &str) -> Output {
    let port = inst.port();
    let pubkey = fs::read_to_string(inst.run.join("ssh_host_ed25519_key.pub")).unwrap();
    fs::write(known_hosts, format!("[127.0.0.1]:{port} {pubkey}")).unwrap();
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .args(["-F", "/dev/null", "-p", &port.to_string(), "root@127.0.0.1"])
        .arg(command)
        .output()
        .expect("ssh runs")
}

fn ssh_ok(inst: &Instance, key: &Path, known_hosts: &Path, command: &str) -> String {
    let out = ssh(inst, key, known_hosts, command);
    assert!(
        out.status.success(),
        "ssh {command:?} failed ({}): {}\ncontainer log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        inst.logs()
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The `SigIgn:` line in `status_text` ignores no standard signal (1–31; SIGPIPE, which
/// std ignores in init, in particular). Signals 32 and 33 are glibc's internal ones, which
/// glibc's posix_spawn sets to SIG_IGN in every child it spawns (glibc programs install
/// their own handlers for them when they need them).
fn assert_no_standard_signal_ignored(status_text: &str) {
    let line = status_text
        .lines()
        .find(|l| l.starts_with("SigIgn:"))
        .unwrap_or_else(|| panic!("no SigIgn line in {status_text}"));
    let mask = u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).unwrap();
    assert_eq!(mask & 0x7fff_ffff, 0, "{line}");
}

/// Processes in state Z (zombie) in the container: "pid (comm) Z ppid" lines.
fn zombies(inst: &Instance) -> Vec<String> {
    let stats = inst.exec("cat /proc/[0-9]*/stat 2>/dev/null; true");
    stats
        .lines()
        .filter_map(|l| {
            let after = &l[l.rfind(')')? + 2..];
            after
                .starts_with('Z')
                .then(|| l.split(' ').take(4).collect::<Vec<_>>().join(" "))
        })
        .collect()
}

const ONSTART: &str = r#"#!/bin/sh
echo "onstart stdout in $(pwd)"
echo "onstart stderr" >&2
grep -E '^Sig(Blk|Ign)' /proc/$$/status
# Orphans for PID 1 to reap: each inner sh exits at once, its sleep is reparented.
i=0
while [ $i -lt 30 ]; do sh -c 'sleep 0.1 &'; i=$((i+1)); sleep 0.03; done
sleep 0.5
echo "onstart done"
"#;

const ENV_VALUE: &str = r#"it's "quoted" \ $HOME #x"#;

#[test]
fn ssh_image_serves_ssh_runs_onstart_reaps_and_stops_fast() {
    require_program("ssh");
    require_program("ssh-keygen");
    let inst = Instance::new("ssh", r#"{"mode":"ssh","future_field":1}"#);
    let (key, public) = client_key(&format!("{}-key", inst.name));
    let client_key = key.0.clone();
    fs::write(inst.state.join("authorized_keys"), public).unwrap();
    fs::write(inst.state.join("onstart.sh"), ONSTART).unwrap();
    let known_hosts = inst.state.join("known_hosts");

    let env = format!("BERTH_TEST_VAR={ENV_VALUE}");
    inst.run(
        "berth-test/ssh",
        &[
            "-p",
            "127.0.0.1::22",
            "-w",
            "/tmp",
            "-e",
            &env,
            "-e",
            "BAD=a\nb",
        ],
    );
    inst.wait_ready();
    let port = inst.port();
    let b = wait_until(Duration::from_secs(10), "an SSH banner", || banner(port));
    assert!(b.starts_with("SSH-2.0-OpenSSH"), "{b:?}");
    // What the agent gives is read-only to the container; only the run dir is writable.
    let probe = "for d in /.berth/state /.berth/run; do \
                 if touch $d/probe 2>/dev/null; then echo $d writable; else echo $d read-only; fi; done";
    assert_eq!(
        inst.exec(probe),
        "/.berth/state read-only\n/.berth/run writable"
    );

    // A real login: key auth, host key from the state dir, env in plain and login shells.
    let out = ssh_ok(
        &inst,
        &client_key,
        &known_hosts,
        r#"printf %s "$BERTH_TEST_VAR""#,
    );
    assert_eq!(out, ENV_VALUE);
    let out = ssh_ok(
        &inst,
        &client_key,
        &known_hosts,
        r#"sh -lc 'printf %s "$BERTH_TEST_VAR"'"#,
    );
    assert_eq!(out, ENV_VALUE);
    let logs = inst.logs();
    // A value with a line break: login shells get it exactly, SetEnv cannot carry it.
    let out = ssh_ok(
        &inst,
        &client_key,
        &known_hosts,
        r#"sh -lc 'printf %s "$BAD"'"#,
    );
    assert_eq!(out, "a\nb");
    let out = ssh_ok(&inst, &client_key, &known_hosts, r#"printf %s "[$BAD]""#);
    assert_eq!(out, "[]");
    assert!(
        logs.contains("env vars with a line break reach login shells") && logs.contains(": BAD"),
        "{logs}"
    );

    // onstart: ran in WORKDIR, both streams in both logs, saved as /root/onstart.sh.
    let log = wait_until(Duration::from_secs(30), "onstart to end", || {
        let l = inst.onstart_log();
        // The whole end line: a reader may see a write to the file half done.
        (l.contains("--- onstart ended ") && l.ends_with(" ---\n")).then_some(l)
    });
    assert!(log.starts_with("--- onstart started "), "{log}");
    assert_no_standard_signal_ignored(&log);
    for want in [
        "onstart stdout in /tmp\n",
        "onstart stderr\n",
        // A clean signal mask, though init blocks every signal.
        "SigBlk:\t0000000000000000\n",
        "onstart done\n",
        ": exit status: 0 ---\n",
    ] {
        assert!(
            log.contains(want),
            "missing {want:?} in the onstart log:\n{log}"
        );
    }
    assert_eq!(inst.exec("cat /var/log/onstart.log"), log.trim_end());
    assert_eq!(inst.exec("stat -c %a /root/onstart.sh"), "755");

    // sshd runs with a clean signal mask.
    let mask = inst.exec("grep '^SigBlk' /proc/$(cat /run/berth-sshd.pid)/status");
    assert_eq!(mask, "SigBlk:\t0000000000000000");

    // Every orphan was reaped, and the container lives on after onstart ended.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(zombies(&inst), Vec::<String>::new());
    assert_eq!(inst.state_of().0, "running");

    // A dead sshd is restarted.
    let old = inst.exec("cat /run/berth-sshd.pid");
    inst.exec("kill -KILL $(cat /run/berth-sshd.pid)");
    wait_until(Duration::from_secs(15), "sshd to be restarted", || {
        let pid = inst.exec("cat /run/berth-sshd.pid 2>/dev/null; true");
        (!pid.is_empty() && pid != old && banner(port).is_some()).then_some(())
    });
    let logs = inst.logs();
    assert!(
        logs.contains(&format!(
            "berth-init: sshd (pid {old}) ended: signal: 9 (SIGKILL)"
        )),
        "{logs}"
    );

    // docker stop: quick, exit code 0.
    let t = Instant::now();
    docker_ok(&["stop", &inst.name]);
    let took = t.elapsed();
    eprintln!("docker stop took {took:?}");
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(
        inst.state_of(),
        ("exited".to_string(), 0),
        "{}",
        inst.logs()
    );

    // Start again: same host key, onstart runs again.
    let host_key = fs::read_to_string(inst.run.join("ssh_host_ed25519_key.pub")).unwrap();
    docker_ok(&["start", &inst.name]);
    inst.wait_ready();
    assert_eq!(
        fs::read_to_string(inst.run.join("ssh_host_ed25519_key.pub")).unwrap(),
        host_key
    );
    assert_eq!(
        ssh_ok(&inst, &client_key, &known_hosts, "echo again"),
        "again\n"
    );
    wait_until(Duration::from_secs(30), "onstart to run again", || {
        (inst.onstart_log().matches("--- onstart ended ").count() == 2).then_some(())
    });
    assert_eq!(
        inst.onstart_log().matches("--- onstart started ").count(),
        2
    );

    // A wrong key is refused; nothing but public key auth is offered.
    assert_only_publickey(&inst, &known_hosts);
}

/// An image whose own sshd config sets another port, password auth, another
/// AuthorizedKeysFile and no root login (plus an Include with yet another port) changes
/// nothing: berth's sshd does not read it.
#[test]
fn the_images_own_sshd_config_changes_nothing() {
    require_program("ssh");
    let inst = Instance::new("hostile", r#"{"mode":"ssh"}"#);
    let (key, public) = client_key(&format!("{}-key", inst.name));
    fs::write(inst.state.join("authorized_keys"), public).unwrap();
    inst.run("berth-test/ssh-hostile", &["-p", "127.0.0.1::22"]);
    inst.wait_ready();
    let known_hosts = inst.state.join("known_hosts");
    assert_eq!(ssh_ok(&inst, &key.0, &known_hosts, "echo in"), "in\n");
    assert_only_publickey(&inst, &known_hosts);
    // Listening sockets (state 0A) are on port 22 (0x16) only.
    let listening =
        inst.exec(r#"cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == "0A" { print $2 }'"#);
    assert!(
        !listening.is_empty() && listening.lines().all(|l| l.ends_with(":0016")),
        "{listening}"
    );
}

/// Pretends to be an older sshd that knows neither KbdInteractiveAuthentication nor SetEnv
/// (as OpenSSH < 7.8 answers `sshd -t`), then runs the image's real sshd.
const OLD_SSHD: &str = r#"#!/bin/sh
if [ "$1" = -t ]; then
  cfg=$3; bad=0; n=0
  while IFS= read -r line; do
    n=$((n+1))
    case "$line" in KbdInteractiveAuthentication*|SetEnv*)
      echo "$cfg: line $n: Bad configuration option: ${line%% *}" >&2; bad=$((bad+1));;
    esac
  done < "$cfg"
  [ $bad = 0 ] || { echo "$cfg: terminating, $bad bad configuration options" >&2; exit 255; }
fi
exec /usr/local/bin/sshd-real "$@"
"#;

#[test]
fn options_an_older_sshd_rejects_are_dropped() {
    let inst = Instance::new("oldsshd", r#"{"mode":"ssh"}"#);
    // The image's real sshd, copied out, and the pretender in its place.
    let bin = inst.state.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let tmp = unique("cp");
    docker_ok(&["create", "--name", &tmp, "berth-test/ssh"]);
    let cp = docker(&[
        "cp",
        &format!("{tmp}:/usr/sbin/sshd"),
        bin.join("sshd-real").to_str().unwrap(),
    ]);
    docker(&["rm", "-f", &tmp]);
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    fs::write(bin.join("sshd"), OLD_SSHD).unwrap();
    fs::set_permissions(bin.join("sshd"), fs::Permissions::from_mode(0o755)).unwrap();
    let fake = format!("{}:/usr/sbin/sshd:ro", bin.join("sshd").display());
    let real = format!(
        "{}:/usr/local/bin/sshd-real:ro",
        bin.join("sshd-real").display()
    );
    inst.run("berth-test/ssh", &["-v", &fake, "-v", &real]);
    inst.wait_ready();
    let logs = inst.logs();
    for want in [
        "berth-init: the image's sshd does not take KbdInteractiveAuthentication: dropped 1 line(s)",
        "berth-init: the image's sshd does not take SetEnv: dropped ",
    ] {
        assert!(logs.contains(want), "missing {want:?} in\n{logs}");
    }
    let config = fs::read_to_string(inst.run.join("sshd_config")).unwrap();
    assert!(
        !config.contains("SetEnv") && !config.contains("KbdInteractive"),
        "{config}"
    );
    assert!(
        config.contains("\nChallengeResponseAuthentication no\n"),
        "{config}"
    );
}

/// A client key pair: the private half outside the state dir (removed on drop), the
/// public half returned.
fn client_key(name: &str) -> (RemoveOnDrop, String) {
    let key = std::env::temp_dir().join(name);
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(key.with_extension("pub"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    fs::remove_file(key.with_extension("pub")).unwrap();
    (RemoveOnDrop(key), public)
}

/// Only public key auth is offered: a wrong key gets "Permission denied (publickey)".
fn assert_only_publickey(inst: &Instance, known_hosts: &Path) {
    let (other, _) = client_key(&format!("{}-other", inst.name));
    let out = ssh(inst, &other.0, known_hosts, "true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Permission denied (publickey)."), "{err}");
}

/// What ignores SIGTERM gets SIGKILL after the grace period; init still exits 0 in time.
#[test]
fn stop_kills_what_ignores_sigterm_and_exits_0() {
    let inst = Instance::new("stubborn", r#"{"mode":"ssh"}"#);
    fs::write(
        inst.state.join("onstart.sh"),
        "trap '' TERM\necho stubborn\nexec sleep 1000\n",
    )
    .unwrap();
    inst.run("berth-test/ssh", &[]);
    inst.wait_ready();
    wait_until(Duration::from_secs(20), "onstart to start", || {
        inst.onstart_log().contains("stubborn").then_some(())
    });
    let t = Instant::now();
    docker_ok(&["stop", &inst.name]);
    let took = t.elapsed();
    eprintln!("docker stop with a SIGTERM-ignoring process took {took:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "docker stop took {took:?}"
    );
    assert_eq!(
        inst.state_of(),
        ("exited".to_string(), 0),
        "{}",
        inst.logs()
    );
    assert!(inst.logs().contains("sending SIGKILL"), "{}", inst.logs());
    // No #! line and bash in the image: run by /bin/bash.
    assert!(
        inst.logs().contains("/bin/bash /root/onstart.sh"),
        "{}",
        inst.logs()
    );
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn the_binary_is_static() {
    let bin = init_binary();
    let elf = fs::read(bin).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    // No PT_INTERP program header: no dynamic loader needed.
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes(elf[0x36..0x38].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(elf[0x38..0x3a].try_into().unwrap()) as usize;
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[off..off + 4].try_into().unwrap());
        assert_ne!(
            p_type, 3,
            "berth-init has a PT_INTERP header: it is not static"
        );
    }
    let mode = fs::metadata(bin).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0);
}

/// berth's current values in config.json's `env` win over the container's env (ssh mode
/// too): in the profile script, in sshd's SetEnv and in sessions.
#[test]
fn config_env_overrides_the_containers_env() {
    let inst = Instance::new(
        "envover",
        r#"{"mode":"ssh","env":{"PUBLIC_IPADDR":"203.0.113.9","BERTH_NEW":"n e w"}}"#,
    );
    inst.run(
        "berth-test/ssh",
        &["-e", "PUBLIC_IPADDR=192.0.2.1", "-e", "KEPT=1"],
    );
    inst.wait_ready();
    let profile = inst.exec("cat /etc/profile.d/berth-env.sh");
    for want in [
        "export PUBLIC_IPADDR='203.0.113.9'",
        "export BERTH_NEW='n e w'",
        "export KEPT='1'",
    ] {
        assert!(profile.lines().any(|l| l == want), "{want:?} in\n{profile}");
    }
    assert!(!profile.contains("192.0.2.1"), "{profile}");
    let config = fs::read_to_string(inst.run.join("sshd_config")).unwrap();
    assert!(config.contains("PUBLIC_IPADDR=\"203.0.113.9\""), "{config}");
    let logs = inst.logs();
    assert!(
        logs.contains(
            "berth-init: env from berth (over the container's): BERTH_NEW, PUBLIC_IPADDR"
        ),
        "{logs}"
    );
    // Names only: no value of berth's env in the log.
    assert!(!logs.contains("203.0.113.9"), "{logs}");
}

// ---------------------------------------------------------------------------------------
// jupyter mode

const JUPYTER_IMAGE: &str = "berth-test/jupyter";

/// A self-signed certificate for 127.0.0.1, written as the agent writes the instance's:
/// `tls.crt` and `tls.key` in the state dir.
fn write_test_cert(state: &Path) {
    require_program("openssl");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=berth-init-test", "-addext"])
        .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
        .arg("-keyout")
        .arg(state.join("tls.key"))
        .arg("-out")
        .arg(state.join("tls.crt"))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh token, as the agent makes one per instance.
fn test_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tok{nanos:x}{:x}", std::process::id())
}

/// `curl` against `https://127.0.0.1:PORT{path}`, trusting only the test certificate:
/// (HTTP status, body).
fn https_get(port: u16, cacert: &Path, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(cacert)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn jupyter_config(lab: bool, dir: &str, extra: &str) -> String {
    format!(
        r#"{{"mode":"jupyter","jupyter":{{"lab":{lab},"dir":"{dir}","port":8080,"certfile":"/.berth/state/tls.crt","keyfile":"/.berth/state/tls.key"}}{extra}}}"#
    )
}

/// The pid of the Jupyter server in the container (its command line names `program`;
/// written so that the script's own command line does not match).
fn jupyter_pid(inst: &Instance, program: &str) -> String {
    let script = format!(
        "prog='{program}'; for p in /proc/[0-9]*; do \
         c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
         case \"$c\" in *\"$prog --ip=0.0.0.0 \"*) echo ${{p#/proc/}};; esac; done; true"
    );
    inst.exec(&script)
}

/// Every command line of the container: the token must be on none.
fn all_cmdlines(inst: &Instance) -> String {
    inst.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done; true")
}

/// The token is required and works, over TLS verified against the instance's certificate.
fn assert_token_auth(port: u16, cacert: &Path, token: &str) {
    let (code, body) = https_get(port, cacert, "/api");
    assert_eq!(code, 200, "/api: {body}");
    assert!(body.contains("\"version\""), "/api: {body}");
    let (code, body) = https_get(port, cacert, "/api/contents");
    assert!(
        code == 403 || code == 401,
        "/api/contents without a token: {code} {body}"
    );
    let (code, body) = https_get(port, cacert, "/api/contents?token=wrong");
    assert!(
        code == 403 || code == 401,
        "/api/contents with a wrong token: {code} {body}"
    );
    let (code, body) = https_get(port, cacert, &format!("/api/contents?token={token}"));
    assert_eq!(code, 200, "/api/contents with the token: {body}");
    assert!(body.contains("\"type\": \"directory\"") || body.contains("\"type\":\"directory\""));
}

/// Classic Notebook (Debian's python3-notebook 6): everything of ssh mode, then Jupyter
/// over TLS with token auth, `ready` only once both answer, restarted when it dies,
/// stopped with the container, and up again after a restart.
#[test]
fn jupyter_notebook_serves_tls_with_the_token_beside_ssh() {
    require_image(JUPYTER_IMAGE);
    require_program("curl");
    require_program("ssh");
    let inst = Instance::new(
        "jnb",
        &jupyter_config(false, "/root", r#","env":{"PUBLIC_IPADDR":"203.0.113.7"}"#),
    );
    write_test_cert(&inst.state);
    let cacert = inst.state.join("tls.crt");
    let (key, public) = client_key(&format!("{}-key", inst.name));
    fs::write(inst.state.join("authorized_keys"), public).unwrap();
    fs::write(
        inst.state.join("onstart.sh"),
        "#!/bin/sh\necho onstart ran\n",
    )
    .unwrap();
    let token = test_token();
    let token_env = format!("JUPYTER_TOKEN={token}");
    inst.run(
        JUPYTER_IMAGE,
        &[
            "-p",
            "127.0.0.1::22",
            "-p",
            "127.0.0.1::8080",
            "-e",
            &token_env,
            "-e",
            "PUBLIC_IPADDR=192.0.2.1",
        ],
    );
    let took = inst.wait_status("ready", Duration::from_secs(90));
    eprintln!("jupyter-notebook: status ready after {took:?}");
    let port = inst.host_port(8080);
    // Ready means answering: no retry needed.
    assert_token_auth(port, &cacert, &token);
    let (code, body) = https_get(port, &cacert, &format!("/tree?token={token}"));
    assert_eq!(code, 200, "/tree: {body}");

    // ssh works in the same instance and sees berth's current env.
    let known_hosts = inst.state.join("known_hosts");
    let out = ssh_ok(
        &inst,
        &key.0,
        &known_hosts,
        r#"printf '%s|%s' "$PUBLIC_IPADDR" "$JUPYTER_TOKEN""#,
    );
    assert_eq!(out, format!("203.0.113.7|{token}"));
    wait_until(Duration::from_secs(20), "onstart to run", || {
        inst.onstart_log().contains("onstart ran\n").then_some(())
    });

    // Jupyter: the program, its cwd, its env; the token in no command line and no log.
    let pid = jupyter_pid(&inst, "/usr/bin/jupyter-notebook");
    assert!(
        !pid.is_empty() && !pid.contains('\n'),
        "jupyter pids: {pid:?}"
    );
    assert_eq!(inst.exec(&format!("readlink /proc/{pid}/cwd")), "/root");
    // A clean signal mask (init blocks every signal), so SIGTERM stops it.
    assert_eq!(
        inst.exec(&format!("grep '^SigBlk' /proc/{pid}/status")),
        "SigBlk:\t0000000000000000"
    );
    let env = inst.exec(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    for want in [
        format!("JUPYTER_TOKEN={token}"),
        "PUBLIC_IPADDR=203.0.113.7".to_string(),
        "HOME=/root".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in\n{env}");
    }
    let cmdlines = all_cmdlines(&inst);
    assert!(
        cmdlines.contains("/usr/bin/jupyter-notebook --ip=0.0.0.0 --port=8080 --port-retries=0 --no-browser --allow-root --certfile=/.berth/state/tls.crt --keyfile=/.berth/state/tls.key --notebook-dir=/root"),
        "{cmdlines}"
    );
    assert!(
        !cmdlines.contains(&token),
        "token on a command line:\n{cmdlines}"
    );
    let logs = inst.logs();
    assert!(
        !logs.contains(&token),
        "token in the container log:\n{logs}"
    );
    assert!(logs.contains("berth-init: status: ready"), "{logs}");
    // init's readiness probe completes a TLS hello Jupyter has no reason to complain of.
    assert!(!logs.contains("SSL Error"), "{logs}");

    // A dead Jupyter is restarted and serves again.
    inst.exec(&format!("kill -KILL {pid}"));
    wait_until(Duration::from_secs(60), "jupyter to be restarted", || {
        let new = jupyter_pid(&inst, "/usr/bin/jupyter-notebook");
        (!new.is_empty() && new != pid && https_get(port, &cacert, "/api").0 == 200).then_some(())
    });
    let logs = inst.logs();
    assert!(
        logs.contains(&format!(
            "berth-init: jupyter (pid {pid}) ended: signal: 9 (SIGKILL); restarting it in 1s"
        )),
        "{logs}"
    );
    assert_token_auth(port, &cacert, &token);

    // docker stop: Jupyter gets SIGTERM with sshd; quick, exit code 0.
    let t = Instant::now();
    docker_ok(&["stop", &inst.name]);
    let took = t.elapsed();
    eprintln!("docker stop took {took:?}");
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(
        inst.state_of(),
        ("exited".to_string(), 0),
        "{}",
        inst.logs()
    );
    assert!(
        inst.logs()
            .contains("stopping (SIGTERM to sshd, jupyter, the onstart script"),
        "{}",
        inst.logs()
    );

    // Start again: the status is cleared, then ready again, and the token still rules.
    docker_ok(&["start", &inst.name]);
    let took = inst.wait_status("ready", Duration::from_secs(90));
    eprintln!("jupyter-notebook: ready again after {took:?}");
    assert_token_auth(inst.host_port(8080), &cacert, &token);
}

/// JupyterLab 4 (jupyter_server 2, pip-installed in the image): same flags, `/lab` served.
#[test]
fn jupyter_lab_serves_lab_over_tls() {
    require_image(JUPYTER_IMAGE);
    require_program("curl");
    let inst = Instance::new("jlab", &jupyter_config(true, "/", ""));
    write_test_cert(&inst.state);
    let cacert = inst.state.join("tls.crt");
    let token = test_token();
    let token_env = format!("JUPYTER_TOKEN={token}");
    inst.run(JUPYTER_IMAGE, &["-p", "127.0.0.1::8080", "-e", &token_env]);
    let took = inst.wait_status("ready", Duration::from_secs(90));
    eprintln!("jupyter-lab: status ready after {took:?}");
    let port = inst.host_port(8080);
    assert_token_auth(port, &cacert, &token);
    let (code, body) = https_get(port, &cacert, &format!("/lab?token={token}"));
    assert_eq!(code, 200, "/lab: {body}");
    assert!(body.contains("JupyterLab"), "/lab: {body}");
    let pid = jupyter_pid(&inst, "/usr/local/bin/jupyter-lab");
    assert!(
        !pid.is_empty() && !pid.contains('\n'),
        "jupyter pids: {pid:?}"
    );
    assert_eq!(inst.exec(&format!("readlink /proc/{pid}/cwd")), "/");
    let logs = inst.logs();
    assert!(
        !logs.contains(&token),
        "token in the container log:\n{logs}"
    );
    assert!(!all_cmdlines(&inst).contains(&token));
}

/// Runs init in jupyter mode on `image` and returns its `failed:` status line, checking
/// exit code 2 and the same line in the container log.
fn jupyter_failure(image: &str, config: &str, cert: bool, extra: &[&str]) -> String {
    let inst = Instance::new("jfail", config);
    if cert {
        write_test_cert(&inst.state);
    }
    inst.run(image, extra);
    let code = inst.wait_exit(Duration::from_secs(30));
    let logs = inst.logs();
    assert_eq!(code, 2, "exit code; logs:\n{logs}");
    let status = inst.status();
    assert_eq!(status.lines().count(), 1, "{status:?}");
    assert!(
        logs.contains(&format!("berth-init: {}", status.trim())),
        "{logs}"
    );
    status.trim().to_string()
}

#[test]
fn jupyter_mode_fails_with_the_reason() {
    const TOKEN: &str = "JUPYTER_TOKEN=t";
    // An image without Jupyter (berth-test/ssh), for each program.
    assert_eq!(
        jupyter_failure(
            "berth-test/ssh",
            &jupyter_config(false, "/", ""),
            true,
            &["-e", TOKEN]
        ),
        "failed: the image has no Jupyter Notebook (jupyter-notebook): install notebook, or \
         add --jupyter-lab if the image has JupyterLab"
    );
    assert_eq!(
        jupyter_failure(
            "berth-test/ssh",
            &jupyter_config(true, "/", ""),
            true,
            &["-e", TOKEN]
        ),
        "failed: the image has no JupyterLab (jupyter-lab): install jupyterlab, or leave out \
         --jupyter-lab"
    );
    // In the Jupyter image: a missing dir, certificate, key or token.
    require_image(JUPYTER_IMAGE);
    assert_eq!(
        jupyter_failure(
            JUPYTER_IMAGE,
            &jupyter_config(false, "/no/such/dir", ""),
            true,
            &["-e", TOKEN]
        ),
        "failed: jupyter dir /no/such/dir does not exist in the container"
    );
    assert_eq!(
        jupyter_failure(
            JUPYTER_IMAGE,
            &jupyter_config(false, "/", ""),
            false,
            &["-e", TOKEN]
        ),
        "failed: Jupyter's TLS certificate (certfile) /.berth/state/tls.crt is missing: \
         berth's agent writes it before the container starts"
    );
    let no_key = jupyter_config(false, "/", "").replace("tls.key", "other.key");
    assert_eq!(
        jupyter_failure(JUPYTER_IMAGE, &no_key, true, &["-e", TOKEN]),
        "failed: Jupyter's TLS private key (keyfile) /.berth/state/other.key is missing: \
         berth's agent writes it before the container starts"
    );
    let status = jupyter_failure(JUPYTER_IMAGE, &jupyter_config(false, "/", ""), true, &[]);
    assert!(
        status.starts_with("failed: JUPYTER_TOKEN is not set"),
        "{status}"
    );
}
