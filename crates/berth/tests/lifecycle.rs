//! Instance lifecycle and the promise that restarts lose nothing: stop/start/reboot/destroy,
//! `berth up` restarted, and the agent and the server restarted apart from each other.
mod common;
use common::*;
use std::time::{Duration, Instant};

fn sleeper(b: &Berth) -> (i64, String) {
    let id = b.create(&[
        BUSYBOX,
        "--entrypoint",
        "/bin/sleep",
        "--wait",
        "--args",
        "3600",
    ]);
    let v = b.wait_state(id, "running");
    (id, v["container_id"].as_str().unwrap().to_string())
}

#[test]
fn stop_start_reboot_destroy() {
    let b = Berth::up();
    let (id, cid) = sleeper(&b);
    let ids = id.to_string();
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "true");

    assert!(b.ok(&["stop", &ids]).contains(&format!("instance {id}")));
    b.wait_state(id, "stopped");
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "false");
    let ports_before = b.show(id)["ports"].clone();

    b.ok(&["start", &ids]);
    let v = b.wait_state(id, "running");
    assert_eq!(
        v["container_id"],
        cid.as_str(),
        "start reuses the container"
    );
    assert_eq!(
        v["ports"], ports_before,
        "host ports stay across stop/start"
    );
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "true");

    // start on a running instance changes nothing.
    let started = inspect(&cid, "{{.State.StartedAt}}");
    b.ok(&["start", &ids]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&cid, "{{.State.StartedAt}}"), started);

    b.ok(&["reboot", &ids]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while inspect(&cid, "{{.State.StartedAt}}") == started {
        assert!(
            Instant::now() < deadline,
            "reboot did not restart the container"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    b.wait_state(id, "running");

    let port = ports_before[0]["external"].as_u64().unwrap().to_string();
    assert_eq!(
        b.ok(&["destroy", &ids]).trim(),
        format!("instance {id} destroyed")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["ps", "-aq", "--filter", &format!("id={cid}")])
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "container not removed after destroy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = b.fails(&["show", &ids]);
    assert!(err.contains("not found"), "{err}");
    assert!(b.ok(&["ls", "--json"]).trim() == "[]");
    // The destroyed instance's host port can be bound again.
    std::net::TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap()))
        .expect("port freed on destroy");
}

#[test]
fn no_two_instances_share_a_host_port() {
    let b = Berth::up();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let id = b.create(&[
            BUSYBOX,
            "-p",
            "80",
            "-p",
            "81/udp",
            "--entrypoint",
            "/bin/sleep",
            "--args",
            "600",
        ]);
        let v = b.wait_state(id, "running");
        for p in v["ports"].as_array().unwrap() {
            assert!(
                seen.insert(p["external"].as_u64().unwrap()),
                "port reused: {v:#}"
            );
        }
    }
    assert_eq!(
        seen.len(),
        9,
        "two asked-for ports plus EXPOSE 8000, three times"
    );
}

/// Ctrl-C (SIGTERM) stops berth; containers keep running; the next `berth up` re-adopts them.
#[test]
fn berth_up_restart_keeps_and_readopts_containers() {
    let mut b = Berth::up();
    let (id, cid) = sleeper(&b);
    let started = inspect(&cid, "{{.State.StartedAt}}");
    let key = b.admin_key.clone();
    b.stop_process();
    assert_eq!(
        inspect(&cid, "{{.State.Running}}"),
        "true",
        "containers outlive berth"
    );
    b.restart();
    assert_eq!(
        b.admin_key, key,
        "the admin key is the same after a restart"
    );
    let v = b.wait_state(id, "running");
    assert_eq!(v["container_id"], cid.as_str());
    assert_eq!(
        inspect(&cid, "{{.State.StartedAt}}"),
        started,
        "not restarted"
    );
    // Still fully managed after re-adoption.
    b.ok(&["stop", &id.to_string()]);
    b.wait_state(id, "stopped");
}

/// `berth server` and `berth agent` as separate processes: restarting either loses nothing
/// and restarts no container.
#[test]
fn agent_and_server_restart_apart() {
    require_docker_and_images(&[BUSYBOX]);
    let dir = temp_dir("split");
    let config = dir.join("config.json");
    let data = dir.join("data");
    let server_args = [
        "server",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    let mut server = spawn_berth(
        &server_args,
        &[],
        &dir.join("server.log"),
        "run agents with:",
    );
    let url = server.field("API:");
    let token = server.field("agent token:");
    let admin = server.field("admin key:");
    let (first, last) = port_block();
    let ports = format!("{first}-{last}");
    let agent_args = [
        "agent",
        "--server",
        &url,
        "--token",
        &token,
        "--public-ip",
        "127.0.0.1",
        "--ports",
        &ports,
        "--name",
        "split-host",
    ];
    let agent_env = [("BERTH_CONFIG", config.as_path())];
    let wait_online = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = cli(&url, &admin, &["hosts"]);
            if out
                .lines()
                .any(|l| l.starts_with("split-host") && l.split_whitespace().nth(1) == Some(want))
            {
                return;
            }
            assert!(Instant::now() < deadline, "host never {want}: {out}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut agent = spawn_agent(&agent_args, &agent_env, &dir.join("agent-0.log"));
    wait_online("yes");

    let id: i64 = cli(
        &url,
        &admin,
        &[
            "create",
            BUSYBOX,
            "--entrypoint",
            "/bin/sleep",
            "--wait",
            "--args",
            "3600",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    let show = |url: &str| -> serde_json::Value {
        serde_json::from_str(&cli(url, &admin, &["show", &id.to_string(), "--json"])).unwrap()
    };
    let v = show(&url);
    assert_eq!(v["state"], "running");
    let cid = v["container_id"].as_str().unwrap().to_string();
    let deployment = inspect(&cid, "{{index .Config.Labels \"berth.deployment\"}}");
    let started = inspect(&cid, "{{.State.StartedAt}}");

    // Agent restart: the container keeps running and is re-adopted.
    terminate(&mut agent);
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "true");
    let mut agent = spawn_agent(&agent_args, &agent_env, &dir.join("agent-1.log"));
    wait_online("yes");
    let v = show(&url);
    assert_eq!(
        (v["state"].as_str(), v["container_id"].as_str()),
        (Some("running"), Some(cid.as_str()))
    );
    assert_eq!(inspect(&cid, "{{.State.StartedAt}}"), started);

    // Server restart: every instance is still there; the agent reconnects by itself.
    terminate(&mut server.child);
    let listen = url.trim_start_matches("http://").to_string();
    let server_args2 = [
        "server",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    let mut server = spawn_berth(
        &server_args2,
        &[],
        &dir.join("server-1.log"),
        "run agents with:",
    );
    assert_eq!(server.field("admin key:"), admin);
    wait_online("yes");
    let v = show(&url);
    assert_eq!(
        (v["state"].as_str(), v["container_id"].as_str()),
        (Some("running"), Some(cid.as_str()))
    );
    assert_eq!(inspect(&cid, "{{.State.StartedAt}}"), started);
    // And the reconnected agent still acts on changes.
    cli(&url, &admin, &["stop", &id.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while show(&url)["state"] != "stopped" {
        assert!(
            Instant::now() < deadline,
            "stop after server restart never took effect"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // With the agent gone for good, its instances show offline after the grace period.
    terminate(&mut agent);
    let deadline = Instant::now() + Duration::from_secs(40);
    while show(&url)["state"] != "offline" {
        assert!(
            Instant::now() < deadline,
            "instance never showed offline without its agent"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_online("no");
    terminate(&mut server.child);
    remove_containers(&deployment);
    let _ = std::fs::remove_dir_all(&dir);
}

fn spawn_agent(
    args: &[&str],
    env: &[(&str, &std::path::Path)],
    log: &std::path::Path,
) -> std::process::Child {
    let log_file = std::fs::File::create(log).unwrap();
    let mut cmd = std::process::Command::new(berth_bin());
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn cli(url: &str, key: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(berth_bin())
        .args(args)
        .env("BERTH_CONFIG", "/nonexistent/berth-config.json")
        .env("BERTH_URL", url)
        .env("BERTH_API_KEY", key)
        .output()
        .unwrap();
    assert!(out.status.success(), "berth {args:?}: {}", stderr(&out));
    stdout(&out)
}
