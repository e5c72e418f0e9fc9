//! `berth server --db postgres://…`: the control plane on PostgreSQL, end to end, and a
//! server restart on it loses nothing.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql (postgresql-client) is needed");
    assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
}

#[test]
fn server_on_postgres_keeps_instances_across_restart() {
    require_docker_and_images(&[BUSYBOX]);
    let base = std::env::var("BERTH_TEST_PG_URL")
        .expect("BERTH_TEST_PG_URL is not set: run ./scripts/test.sh, or eval \"$(scripts/pg-test.sh start)\"");
    let db = format!("berth_e2e_{}_{}", std::process::id(), rand::random::<u32>());
    psql(&base, &format!("CREATE DATABASE {db}"));
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url_db = format!("{prefix}/{db}");

    let dir = temp_dir("pg");
    let data = dir.join("data");
    let start = |listen: &str, n: u32| {
        spawn_berth(
            &[
                "server",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                listen,
                "--db",
                &url_db,
            ],
            &[],
            &dir.join(format!("server-{n}.log")),
            "run agents with:",
        )
    };
    let mut server = start("127.0.0.1:0", 0);
    let url = server.field("API:");
    let admin = server.field("admin key:");
    let token = server.field("agent token:");
    let (first, last) = port_block();
    let ports = format!("{first}-{last}");
    let mut agent = Command::new(berth_bin())
        .args([
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
            "pg-host",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let cli = |args: &[&str]| -> String {
        let out = Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", "/nonexistent/berth.json")
            .env("BERTH_URL", &url)
            .env("BERTH_API_KEY", &admin)
            .output()
            .unwrap();
        assert!(out.status.success(), "berth {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cli(&["hosts"]).contains("pg-host  yes") {
        assert!(Instant::now() < deadline, "agent never connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = cli(&[
        "create",
        BUSYBOX,
        "--label",
        "on postgres",
        "--entrypoint",
        "/bin/sleep",
        "--wait",
        "--args",
        "600",
    ])
    .trim()
    .to_string();
    cli(&["users", "add", "carol"]);

    terminate(&mut server.child);
    let listen = url.trim_start_matches("http://").to_string();
    let mut server = start(&listen, 1);
    let v: serde_json::Value = serde_json::from_str(&cli(&["show", &id, "--json"])).unwrap();
    assert_eq!(v["label"], "on postgres");
    assert!(cli(&["users", "ls"]).contains("carol"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value = serde_json::from_str(&cli(&["show", &id, "--json"])).unwrap();
        if v["state"] == "running" {
            let cid = v["container_id"].as_str().unwrap();
            let deployment = inspect(cid, "{{index .Config.Labels \"berth.deployment\"}}");
            cli(&["destroy", &id]);
            terminate(&mut agent);
            terminate(&mut server.child);
            remove_containers(&deployment);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance not running after the restart: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    psql(&base, &format!("DROP DATABASE {db} WITH (FORCE)"));
    let _ = std::fs::remove_dir_all(&dir);
}
