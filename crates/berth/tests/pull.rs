//! Images that are not local are pulled, with progress visible while loading. Tested
//! against a real local registry (Debian's docker-registry) that the test starts and
//! pushes a freshly made image to.
mod common;
use common::registry::Registry;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_is_pulled_with_progress() {
    let b = Berth::up();
    let reg = Registry::start();
    // An image with a layer of its own (random bytes), so the pull really downloads it.
    let tag = format!("{}/berth-test/pull-{}:v1", reg.addr, rand::random::<u32>());
    let maker = format!("berth-pull-maker-{}", rand::random::<u32>());
    docker(&[
        "run",
        "--name",
        &maker,
        "--entrypoint",
        "/bin/sh",
        BUSYBOX,
        "-c",
        "head -c 96000000 /dev/urandom > /blob",
    ]);
    docker(&["commit", &maker, &tag]);
    docker(&["rm", "-f", &maker]);
    docker(&["push", &tag]);
    docker(&["rmi", &tag]);

    // Poll through the API while the CLI waits, to see the progress as a user would.
    let out = std::process::Command::new(berth_bin())
        .args([
            "create",
            &tag,
            "--entrypoint",
            "/bin/sh",
            "--wait",
            "--args",
            "-c",
            "wc -c < /blob",
        ])
        .env("BERTH_CONFIG", b.dir.join("config.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Poll the API as fast as a client would (a CLI process per poll is too slow for a
    // pull from loopback).
    let http = reqwest::Client::new();
    let mut saw_progress = false;
    let mut saw_loading = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let list: serde_json::Value = http
            .get(format!("{}/api/v1/instances", b.url))
            .bearer_auth(&b.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(i) = list.as_array().unwrap().first() {
            saw_loading |= i["state"] == "loading";
            saw_progress |= i["progress"]["total"].as_u64().unwrap_or(0) > 0;
            if i["state"] == "exited" || i["state"] == "failed" {
                break i["id"].as_i64().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "pull never finished\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let out = out.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = b.show(id);
    assert_eq!(v["state"], "exited", "{v:#}");
    assert_eq!(b.logs(id).trim(), "96000000");
    assert!(saw_loading, "the instance never showed loading");
    assert!(saw_progress, "pull progress was never visible in the API");
    assert!(
        stderr(&out).contains("loading"),
        "--wait showed no loading: {}",
        stderr(&out)
    );
    b.ok(&["destroy", &id.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.deployment={}", b.deployment),
    ])
    .trim()
    .is_empty()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("docker").args(["rmi", &tag]).output();
}
