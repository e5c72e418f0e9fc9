//! `berth server --db postgres://…`: the control plane on PostgreSQL, end to end, and a
//! server restart on it loses nothing.
mod common;
use common::*;
use std::process::Command;

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql (postgresql-client) is needed");
    assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
}

#[test]
fn server_on_postgres_keeps_instances_across_restart() {
    let base = std::env::var("BERTH_TEST_PG_URL")
        .expect("BERTH_TEST_PG_URL is not set: run ./scripts/test.sh, or eval \"$(scripts/pg-test.sh start)\"");
    let db = format!("berth_e2e_{}_{}", std::process::id(), rand::random::<u32>());
    psql(&base, &format!("CREATE DATABASE {db}"));
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let mut d = deployment::Deployment::start(deployment::Options {
        db: Some(format!("{prefix}/{db}")),
        proxy: false,
    });
    let (first, last) = port_block();
    d.start_agent(
        "pg-host",
        "127.0.0.1",
        &["--ports", &format!("{first}-{last}")],
    );
    let id = d
        .ok(&[
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
    d.ok(&["users", "add", "carol"]);

    d.stop_server();
    d.start_server();
    assert_eq!(d.show(&id)["label"], "on postgres");
    assert!(d.ok(&["users", "ls"]).contains("carol"));
    d.wait_state(&id, "running");
    d.ok(&["destroy", &id]);
    drop(d);
    psql(&base, &format!("DROP DATABASE {db} WITH (FORCE)"));
}
