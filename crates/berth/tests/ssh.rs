//! The ssh launch mode, end to end, with the real OpenSSH client: berth's init as PID 1,
//! sshd on berth's own config, onstart, keys, env, direct connections, and images that try
//! to get in the way.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}\n{}",
        o.status,
        stderr(o),
        stdout(o)
    );
    stdout(o)
}

/// Polls until `ssh … cmd` succeeds.
fn wait_ssh(port: u16, key: &std::path::Path, kh: &std::path::Path, cmd: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = ssh(port, key, kh, &[], cmd);
        if o.status.success() {
            return stdout(&o);
        }
        assert!(
            Instant::now() < deadline,
            "ssh never worked: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ssh_mode_end_to_end() {
    require_docker_and_images(&[SSH_IMAGE]);
    let b = Berth::up();
    let key = KeyPair::new(&b.dir, "user-key");
    let kh = b.dir.join("known_hosts");
    let added = b.ok(&["keys", "add", key.public.to_str().unwrap()]);
    assert!(added.contains("SHA256:"), "{added}");

    let onstart =
        "echo \"onstart ran as $(id -u) with MYVAR=$MYVAR\"\necho run >> /root/onstart-runs\n";
    std::fs::write(b.dir.join("onstart.sh"), onstart).unwrap();
    let id = b.create(&[
        SSH_IMAGE,
        "--ssh",
        "--env",
        "-e MYVAR='hello world' -e QUOTES=a\\\"b -p 8000",
        "--onstart",
        b.dir.join("onstart.sh").to_str().unwrap(),
        "--wait",
    ]);
    let v = b.wait_state(id, "running");
    let port = ssh_port(&v);
    assert_eq!(v["mode"], "ssh");
    assert_eq!(v["ssh_host_keys"].as_array().unwrap().len(), 1, "{v:#}");

    // "running" means sshd answers: the first login works at once.
    let out = ok(
        &ssh(
            port,
            &key.private,
            &kh,
            &[],
            "echo ok; id -u; cat /proc/1/cmdline | tr '\\0' ' '",
        ),
        "first ssh",
    );
    assert!(out.starts_with("ok\n0\n/.berth/init"), "{out}");
    // The known_hosts entry ssh just learned is the host key berth reports.
    let learned = std::fs::read_to_string(&kh).unwrap();
    let host_key = v["ssh_host_keys"][0].as_str().unwrap();
    let body = host_key.split_whitespace().nth(1).unwrap();
    assert!(
        learned.contains(body),
        "reported host key {host_key} not what sshd served: {learned}"
    );

    // Env reaches ssh sessions, login shells (su -) and tmux.
    assert_eq!(
        ok(
            &ssh(
                port,
                &key.private,
                &kh,
                &[],
                "echo \"$MYVAR|$QUOTES|$BERTH_INSTANCE_ID\""
            ),
            "env"
        ),
        format!("hello world|a\"b|{id}\n")
    );
    assert_eq!(
        ok(
            &ssh(port, &key.private, &kh, &[], "su - -c 'echo $MYVAR'"),
            "su -"
        ),
        "hello world\n"
    );
    let tmux =
        "tmux new-session -d 'echo $MYVAR > /tmp/from-tmux' && sleep 0.5 && cat /tmp/from-tmux";
    assert_eq!(
        ok(&ssh(port, &key.private, &kh, &[], tmux), "tmux"),
        "hello world\n"
    );
    let port_env = ok(
        &ssh(port, &key.private, &kh, &[], "echo $BERTH_TCP_PORT_22"),
        "port env",
    );
    assert_eq!(port_env.trim(), port.to_string());

    // onstart ran after sshd was up, its output in both logs.
    b.wait_logs_onstart(id, "onstart ran as 0 with MYVAR=hello world");
    let in_container = ok(
        &ssh(
            port,
            &key.private,
            &kh,
            &[],
            "cat /var/log/onstart.log; cat /root/onstart.sh",
        ),
        "onstart log",
    );
    assert!(
        in_container.contains("onstart ran as 0")
            && in_container.contains("echo run >> /root/onstart-runs"),
        "{in_container}"
    );

    // A wrong key and a password are refused.
    let other = KeyPair::new(&b.dir, "stranger-key");
    let o = ssh(port, &other.private, &kh, &[], "true");
    assert!(
        !o.status.success() && stderr(&o).contains("Permission denied (publickey)"),
        "{}",
        stderr(&o)
    );
    let o = ssh(
        port,
        &other.private,
        &kh,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ],
        "true",
    );
    assert!(
        !o.status.success() && stderr(&o).contains("Permission denied (publickey)"),
        "password auth must be off: {}",
        stderr(&o)
    );

    // scp both ways, sftp, and a local forward to a port inside the container.
    let local = b.dir.join("up.txt");
    std::fs::write(&local, "payload with spaces\n").unwrap();
    let p = port.to_string();
    let kh_opt = format!("UserKnownHostsFile={}", kh.display());
    let common_opts = [
        "-P",
        &p,
        "-i",
        key.private.to_str().unwrap(),
        "-o",
        "BatchMode=yes",
        "-o",
        &kh_opt,
    ];
    let mut up = Command::new("scp");
    up.args(common_opts)
        .args([local.to_str().unwrap(), "root@127.0.0.1:/tmp/up.txt"]);
    ok(&up.output().unwrap(), "scp up");
    let back = b.dir.join("back.txt");
    let mut down = Command::new("scp");
    down.args(common_opts)
        .args(["root@127.0.0.1:/tmp/up.txt", back.to_str().unwrap()]);
    ok(&down.output().unwrap(), "scp down");
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "payload with spaces\n"
    );
    std::fs::write(
        b.dir.join("sftp.batch"),
        format!("put {} /tmp/sftp.txt\nls /tmp\n", local.display()),
    )
    .unwrap();
    let sftp = Command::new("sftp")
        .args([
            "-P",
            &p,
            "-i",
            key.private.to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            "-o",
            &kh_opt,
            "-b",
        ])
        .arg(b.dir.join("sftp.batch"))
        .arg("root@127.0.0.1")
        .output()
        .unwrap();
    assert!(ok(&sftp, "sftp").contains("sftp.txt"));
    let fwd_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fwd = format!("127.0.0.1:{fwd_port}:127.0.0.1:22");
    let mut tunnel = Command::new("ssh")
        .args([
            "-N",
            "-L",
            &fwd,
            "-p",
            &p,
            "-i",
            key.private.to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            "-o",
            &kh_opt,
            "-o",
            "ExitOnForwardFailure=yes",
            "root@127.0.0.1",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let banner = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", fwd_port))
            .ok()
            .and_then(|mut s| {
                use std::io::Read;
                s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).ok()?;
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            });
        match got {
            Some(g) if g.starts_with("SSH-2.0-") => break g,
            _ => {
                assert!(Instant::now() < deadline, "ssh -L never forwarded");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(banner.contains("OpenSSH"), "{banner}");
    let _ = tunnel.kill();
    let _ = tunnel.wait();

    // A key added while the instance runs works within seconds, without a restart.
    let late = KeyPair::new(&b.dir, "late-key");
    b.ok(&["keys", "add", late.public.to_str().unwrap()]);
    wait_ssh(port, &late.private, &kh, "true");
    // One more key for this instance only.
    let single = KeyPair::new(&b.dir, "single-key");
    b.ok(&[
        "attach-key",
        &id.to_string(),
        single.public.to_str().unwrap(),
    ]);
    wait_ssh(port, &single.private, &kh, "true");
    // Removing an account key locks it out again.
    let keys: serde_json::Value = serde_json::from_str(&b.ok(&["keys", "ls", "--json"])).unwrap();
    let late_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"].as_str().unwrap().ends_with("late-key"))
        .unwrap()["id"]
        .to_string();
    b.ok(&["keys", "rm", &late_id]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ssh(port, &late.private, &kh, &[], "true").status.success() {
        assert!(Instant::now() < deadline, "a removed key still logs in");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Stop/start: files survive, onstart runs again, host key unchanged (strict checking).
    ok(
        &ssh(port, &key.private, &kh, &[], "echo kept > /root/persist"),
        "write",
    );
    let ids = id.to_string();
    b.ok(&["stop", &ids]);
    b.wait_state(id, "stopped");
    b.ok(&["start", &ids]);
    let v2 = b.wait_state(id, "running");
    assert_eq!(ssh_port(&v2), port);
    assert_eq!(v2["ssh_host_keys"], v["ssh_host_keys"]);
    let strict = ["-o", "StrictHostKeyChecking=yes"];
    let out = ok(
        &ssh(
            port,
            &key.private,
            &kh,
            &strict,
            "cat /root/persist; wc -l < /root/onstart-runs",
        ),
        "after restart",
    );
    assert_eq!(out, "kept\n2\n");
    let log = b.ok(&["logs", &ids, "--onstart"]);
    assert_eq!(log.matches("onstart ran as 0").count(), 2, "{log}");

    // berth's own client commands.
    // Both ways, direct first; or the one asked for.
    let urls = b.ok(&["ssh-url", &ids]);
    let v = b.show(id);
    let proxy = v["proxy_ssh"].as_str().unwrap();
    assert_eq!(
        urls,
        format!("ssh://root@127.0.0.1:{port}\nssh://root@{proxy}\n")
    );
    assert_eq!(
        b.ok(&["ssh-url", &ids, "--direct"]),
        format!("ssh://root@127.0.0.1:{port}\n")
    );
    assert_eq!(
        b.ok(&["ssh-url", &ids, "--proxy"]),
        format!("ssh://root@{proxy}\n")
    );
    let out = b.cli(&[
        "ssh",
        &ids,
        "-i",
        key.private.to_str().unwrap(),
        "--",
        "echo",
        "via berth ssh",
    ]);
    assert_eq!(ok(&out, "berth ssh"), "via berth ssh\n");
    let cfg = b.dir.join("ssh_config");
    std::fs::write(
        &cfg,
        b.ok(&["ssh-config", "-i", key.private.to_str().unwrap()]),
    )
    .unwrap();
    let alias = format!("berth-{id}");
    let o = Command::new("ssh")
        .args([
            "-F",
            cfg.to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            &alias,
            "echo via config",
        ])
        .output()
        .unwrap();
    assert_eq!(ok(&o, "ssh with berth ssh-config"), "via config\n");
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    assert!(cfg_text.contains("StrictHostKeyChecking yes"), "{cfg_text}");
    let got = b.dir.join("got.txt");
    ok(
        &b.cli(&[
            "scp",
            "-i",
            key.private.to_str().unwrap(),
            &format!("{id}:/root/persist"),
            got.to_str().unwrap(),
        ]),
        "berth scp",
    );
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "kept\n");
    // And up, to a path with a space.
    let up = b.dir.join("up via berth.txt");
    std::fs::write(&up, "uploaded by berth scp\n").unwrap();
    ok(
        &b.cli(&[
            "scp",
            "-i",
            key.private.to_str().unwrap(),
            up.to_str().unwrap(),
            &format!("{id}:/root/up via berth.txt"),
        ]),
        "berth scp up",
    );
    let out = ok(
        &ssh(port, &key.private, &kh, &[], "cat '/root/up via berth.txt'"),
        "read the upload",
    );
    assert_eq!(out, "uploaded by berth scp\n");
}

/// Nothing in the image's /etc/ssh can change berth's sshd: not the port, not passwords,
/// not the authorized keys file; and the image's USER and ENTRYPOINT are not used.
#[test]
fn hostile_sshd_config_and_non_root_user_change_nothing() {
    require_docker_and_images(&["berth-test/ssh-hostile", "berth-test/ssh-user"]);
    let b = Berth::up();
    let (key, kh) = b.account_key();
    for image in ["berth-test/ssh-hostile", "berth-test/ssh-user"] {
        let id = b.create(&[
            image,
            "--ssh",
            "-e",
            "HV=hostile 'value'",
            "--onstart-cmd",
            "echo onstart here; id -un",
            "--wait",
        ]);
        let v = b.wait_state(id, "running");
        let port = ssh_port(&v);
        let out = ok(
            &ssh(port, &key.private, &kh, &[], "id -u; echo \"$HV\"; pwd"),
            image,
        );
        assert!(out.starts_with("0\nhostile 'value'\n"), "{image}: {out}");
        // Files both ways, through the image's own sftp-server, as on any image.
        let local = b.dir.join(format!("{id}.txt"));
        std::fs::write(&local, "both ways\n").unwrap();
        let keyp = key.private.to_str().unwrap();
        let remote = format!("{id}:/tmp/copied.txt");
        ok(
            &b.cli(&["scp", "-i", keyp, local.to_str().unwrap(), &remote]),
            "berth scp up",
        );
        let back = b.dir.join(format!("{id}-back.txt"));
        ok(
            &b.cli(&["scp", "-i", keyp, &remote, back.to_str().unwrap()]),
            "berth scp down",
        );
        assert_eq!(std::fs::read_to_string(&back).unwrap(), "both ways\n");
        let o = ssh(
            port,
            &key.private,
            &kh,
            &[
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
            ],
            "true",
        );
        assert!(
            stderr(&o).contains("Permission denied (publickey)"),
            "{image}: {}",
            stderr(&o)
        );
        b.wait_logs_onstart(id, "onstart here\nroot");
        let logs = b.logs(id);
        assert!(
            !logs.contains("must not run"),
            "the image's entrypoint ran: {logs}"
        );
    }
}

/// Root in the container owns everything in it, but nothing more: what the agent writes is
/// read-only there, and what init writes is read by the agent without following symlinks,
/// so a container cannot make the agent read or write files of the host.
#[test]
fn the_container_cannot_turn_the_agent_against_the_host() {
    require_docker_and_images(&[SSH_IMAGE]);
    let b = Berth::up();
    let (key, kh) = b.account_key();
    let secret = b.dir.join("host-secret");
    std::fs::write(&secret, "HOST SECRET\n").unwrap();
    let id = b.create(&[
        SSH_IMAGE,
        "--ssh",
        "--onstart-cmd",
        "echo onstart",
        "--wait",
    ]);
    let v = b.wait_state(id, "running");
    let port = ssh_port(&v);
    b.wait_logs_onstart(id, "onstart");

    let out = ok(
        &ssh(
            port,
            &key.private,
            &kh,
            &[],
            "touch /.berth/state/authorized_keys 2>/dev/null && echo writable || echo read-only",
        ),
        "write probe",
    );
    assert_eq!(out.trim(), "read-only");
    let s = secret.display();
    ok(
        &ssh(
            port,
            &key.private,
            &kh,
            &[],
            &format!(
                "cd /.berth/run && ln -sf {s} onstart.log && ln -sf {s} ssh_host_ed25519_key.pub \
                 && ln -sf {s} status && echo done"
            ),
        ),
        "symlinks",
    );
    let o = b.cli(&["logs", &id.to_string(), "--onstart"]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        !all.contains("HOST SECRET"),
        "the onstart log leaked a host file: {all}"
    );
    assert!(all.contains("symbolic link"), "{all}");

    // The next look at the instance reads the host key again: a symlink is not believed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = b.show(id);
        assert!(!v.to_string().contains("HOST SECRET"), "{v:#}");
        if v["ssh_host_keys"].as_array().is_some_and(|k| k.is_empty()) {
            assert_eq!(v["state"], "running", "{v:#}");
            break;
        }
        assert!(Instant::now() < deadline, "host keys never re-read: {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A key added now is written where the container cannot redirect it.
    let key2 = KeyPair::new(&b.dir, "k2");
    b.ok(&["keys", "add", key2.public.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "HOST SECRET\n");
}

/// berth's init is PID 1 and stops on SIGTERM, so an image's STOPSIGNAL (meant for its own
/// process, which ssh mode does not run) must not be what `stop` sends.
#[test]
fn an_images_stopsignal_does_not_slow_stop_down() {
    require_docker_and_images(&[SSH_IMAGE]);
    let image = TestImage::new("stopsignal");
    let b = Berth::up();
    docker_build(
        &image.0,
        &format!("FROM {SSH_IMAGE}\nSTOPSIGNAL SIGWINCH\n"),
    );
    let id = b.create(&[&image.0, "--ssh", "--wait"]);
    b.wait_state(id, "running");
    let began = Instant::now();
    b.ok(&["stop", &id.to_string()]);
    let v = b.wait_state(id, "stopped");
    let took = began.elapsed();
    let container = v["container_id"].as_str().unwrap().to_string();
    let code = inspect(&container, "{{.State.ExitCode}}");
    assert!(
        took < Duration::from_secs(5),
        "stop took {took:?}: init did not get SIGTERM"
    );
    assert_eq!(code, "0", "init stopped cleanly, not killed");
}

/// Builds `tag` from a Dockerfile given on stdin (no context; FROM a local image).
fn docker_build(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker is needed");
    build
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(out.status.success(), "docker build {tag}: {}", stderr(&out));
}

/// "running" is earned: while the container runs but sshd does not greet yet, the instance
/// is "connecting"; the first login after "running" works at once.
#[test]
fn connecting_until_sshd_greets() {
    require_docker_and_images(&[SSH_IMAGE]);
    let image = TestImage::new("slow-sshd");
    let b = Berth::up();
    let (key, kh) = b.account_key();
    // An sshd that takes 3 s to come up (berth's `sshd -t` check is not slowed).
    docker_build(
        &image.0,
        &format!(
            "FROM {SSH_IMAGE}\nRUN mv /usr/sbin/sshd /usr/sbin/sshd.real && \\\n  \
             printf '#!/bin/sh\\ncase \" $* \" in *\" -D \"*) sleep 3;; esac\\nexec /usr/sbin/sshd.real \"$@\"\\n' \
             > /usr/sbin/sshd && chmod 755 /usr/sbin/sshd\n"
        ),
    );
    let id = b.create(&[&image.0, "--ssh"]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        let v = b.show(id);
        let state = v["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "running" {
            break v;
        }
        assert!(
            Instant::now() < deadline && state != "failed",
            "states: {seen:?} {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        seen.contains(&"connecting".to_string()),
        "never connecting before running: {seen:?}"
    );
    let o = ssh(ssh_port(&v), &key.private, &kh, &[], "echo at once");
    assert_eq!(stdout(&o), "at once\n", "{}", stderr(&o));
}

#[test]
fn images_without_sshd_fail_with_the_reason_at_once() {
    require_docker_and_images(&[DEBIAN]);
    let b = Berth::up();
    for image in [DEBIAN, BUSYBOX] {
        let started = Instant::now();
        let err = b.fails(&["create", image, "--ssh", "--wait"]);
        assert!(
            err.contains("failed") && err.contains("sshd"),
            "{image}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{image}: failing took {:?}",
            started.elapsed()
        );
    }
    // init ran in busybox (no glibc, no bash) and said so.
    let list: serde_json::Value = serde_json::from_str(&b.ok(&["ls", "--json"])).unwrap();
    for i in list.as_array().unwrap() {
        assert_eq!(i["state"], "failed");
        assert!(
            i["reason"].as_str().unwrap().contains("OpenSSH server"),
            "{i:#}"
        );
    }
}

#[test]
fn bad_keys_are_refused_clearly() {
    let b = Berth::up();
    let bad = b.dir.join("bad.pub");
    for (content, want) in [
        ("not a key", "not an SSH public key type"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----",
            "PRIVATE",
        ),
        ("ssh-ed25519 AAAA", "truncated"),
    ] {
        std::fs::write(&bad, content).unwrap();
        let err = b.fails(&["keys", "add", bad.to_str().unwrap()]);
        assert!(err.contains(want), "{content}: {err}");
    }
    let key = KeyPair::new(&b.dir, "dup");
    b.ok(&["keys", "add", key.public.to_str().unwrap()]);
    let err = b.fails(&["keys", "add", key.public.to_str().unwrap()]);
    assert!(err.contains("already"), "{err}");
    let err = b.fails(&["create", SSH_IMAGE, "--ssh", "--entrypoint", "/bin/sh"]);
    assert!(
        err.contains("entrypoint") && err.contains("onstart"),
        "{err}"
    );
}

/// Without a proxy, a host without open ports cannot be reached: a clear failure, no hang.
#[test]
fn host_without_open_ports_and_no_proxy_fails_clearly() {
    require_docker_and_images(&[SSH_IMAGE]);
    let mut d = deployment::Deployment::start(Default::default());
    d.start_agent("nat-host", "127.0.0.1", &[]);
    let o = d.cli(&["create", SSH_IMAGE, "--ssh", "--direct", "--wait"]);
    assert!(
        !o.status.success() && stderr(&o).contains("no online host has open ports"),
        "{}",
        stderr(&o)
    );
    let started = Instant::now();
    let o = d.cli(&["create", SSH_IMAGE, "--ssh", "--wait"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("no open ports") && stderr(&o).contains("22/tcp"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
