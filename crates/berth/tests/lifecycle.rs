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

    assert_eq!(
        b.ok(&["stop", &ids, "--wait"]),
        format!("instance {id}: stopped\n")
    );
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "false");
    let ports_before = b.show(id)["ports"].clone();

    let said = b.ok(&["start", &ids]);
    assert!(
        said.starts_with(&format!("instance {id}: start requested (now ")),
        "{said}"
    );
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

    b.ok(&["reboot", &ids, "--wait"]);
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

/// Ctrl-C (SIGINT) stops berth cleanly; containers keep running; the next `berth up`
/// re-adopts them.
#[test]
fn berth_up_restart_keeps_and_readopts_containers() {
    let mut b = Berth::up();
    let (id, cid) = sleeper(&b);
    let started = inspect(&cid, "{{.State.StartedAt}}");
    let key = b.admin_key.clone();
    let status = b.interrupt();
    assert!(status.success(), "Ctrl-C is a clean stop: {status:?}");
    assert!(
        b.log().contains("stopping (containers keep running)"),
        "{}",
        b.log()
    );
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
/// and restarts no container; an agent gone for good leaves its instances offline.
#[test]
fn agent_and_server_restart_apart() {
    let mut d = deployment::Deployment::start(Default::default());
    let (first, last) = port_block();
    let ports = format!("{first}-{last}");
    d.start_agent("split-host", "127.0.0.1", &["--ports", &ports]);
    let id = d
        .ok(&[
            "create",
            BUSYBOX,
            "--entrypoint",
            "/bin/sleep",
            "--wait",
            "--args",
            "3600",
        ])
        .trim()
        .to_string();
    let v = d.wait_state(&id, "running");
    let cid = v["container_id"].as_str().unwrap().to_string();
    let started = inspect(&cid, "{{.State.StartedAt}}");

    // Agent restart: the container keeps running and is re-adopted.
    d.stop_agent("split-host");
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "true");
    d.start_agent("split-host", "127.0.0.1", &["--ports", &ports]);
    let v = d.wait_state(&id, "running");
    assert_eq!(v["container_id"], cid.as_str());
    assert_eq!(inspect(&cid, "{{.State.StartedAt}}"), started);

    // Server restart: every instance is still there; the agent reconnects by itself.
    d.stop_server();
    d.start_server();
    d.wait_host("split-host", true);
    let v = d.wait_state(&id, "running");
    assert_eq!(v["container_id"], cid.as_str());
    assert_eq!(inspect(&cid, "{{.State.StartedAt}}"), started);
    // And the reconnected agent still acts on changes.
    d.ok(&["stop", &id]);
    d.wait_state(&id, "stopped");

    // With the agent gone for good, its instances show offline after the grace period.
    d.stop_agent("split-host");
    d.wait_state(&id, "offline");
    d.wait_host("split-host", false);
}

/// One berth a data dir: a second `berth up` on it (which would drive the same agent and
/// containers) stops at once and says why; so does a second agent on an agent's data dir.
#[test]
fn a_data_dir_takes_one_berth() {
    let b = Berth::up();
    let data = b.dir.join("data");
    let out = std::process::Command::new(berth_bin())
        .args([
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("BERTH_CONFIG", b.dir.join("second-config.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("another berth server (or berth up) runs on the data dir"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    let out = std::process::Command::new(berth_bin())
        .args([
            "agent",
            "--server",
            &b.url,
            "--token",
            "x",
            "--public-ip",
            "127.0.0.1",
        ])
        .args(["--data-dir", data.join("agent").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another berth agent runs on the data dir"),
        "{}",
        stderr(&out)
    );
    // The first one is unharmed.
    b.ok(&["ls"]);
}

/// An agent whose token the server refuses stops with one clear line: retrying would not
/// make the token right.
#[test]
fn an_agent_with_a_wrong_token_stops_and_says_why() {
    let b = Berth::up();
    let dir = b.dir.join("bad-agent");
    let out = std::process::Command::new(berth_bin())
        .args(["agent", "--server", &b.url, "--token", "berth_agent_wrong"])
        .args(["--public-ip", "127.0.0.1", "--name", "bad-agent"])
        .args(["--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("the server refused the agent token"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}
