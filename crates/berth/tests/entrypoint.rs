//! Entrypoint launch mode, end to end: `berth up` on the real engine, driven by the CLI.
mod common;
use common::*;
use std::io::{Read, Write};

/// The container's output under berth equals `docker run IMAGE`'s.
#[test]
fn default_entrypoint_and_cmd_match_docker_run() {
    let b = Berth::up();
    let want = docker(&["run", "--rm", BUSYBOX]);
    assert!(want.contains("greet: hello from cmd"), "{want}");
    let id = b.create(&[BUSYBOX, "--wait"]);
    let v = b.wait_state(id, "exited");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(b.logs(id), want);
    assert!(b.ok(&["ls"]).contains("exited(0)"));
}

#[test]
fn entrypoint_override_drops_the_images_cmd() {
    let b = Berth::up();
    let id = b.create(&[BUSYBOX, "--entrypoint", "/bin/echo", "--wait"]);
    b.wait_state(id, "exited");
    // Docker drops CMD when the entrypoint is replaced: echo prints an empty line.
    assert_eq!(
        b.logs(id),
        docker(&["run", "--rm", "--entrypoint", "/bin/echo", BUSYBOX])
    );
    assert_eq!(b.logs(id), "\n");
}

/// `--args` replaces CMD; every argument arrives byte for byte, no shell in between.
#[test]
fn args_keep_spaces_quotes_and_dollars() {
    let b = Berth::up();
    let args = [
        "two words",
        "it's \"quoted\"",
        "$HOME and ${X}",
        "back\\slash",
        "",
    ];
    let mut cli = vec![BUSYBOX, "--wait", "--args"];
    cli.extend(args);
    let id = b.create(&cli);
    b.wait_state(id, "exited");
    assert_eq!(
        b.logs(id),
        format!("greet: {}\npwd: /srv\ngreeting: hi\n", args.join(" "))
    );

    // With both overridden, argv goes to the new entrypoint untouched.
    let id = b.create(&[
        BUSYBOX,
        "--entrypoint",
        "/bin/sh",
        "--wait",
        "--args",
        "-c",
        r#"printf '[%s]' "$@""#,
        "sh",
        "a b",
        "$c",
        "'d'",
    ]);
    b.wait_state(id, "exited");
    assert_eq!(b.logs(id), "[a b][$c]['d']");
}

#[test]
fn env_and_berth_variables_are_visible_inside() {
    let b = Berth::up();
    let id = b.create(&[
        BUSYBOX,
        "--env",
        "-e FROM_STRING='hello world' -e OVERRIDE=string -p 7000/udp -p 9000:9000",
        "-e",
        "OVERRIDE=flag",
        "-e",
        "DOLLAR=$x",
        "-p",
        "8081",
        "--entrypoint",
        "/bin/env",
        "--wait",
    ]);
    let v = b.wait_state(id, "exited");
    let out = b.logs(id);
    let env: std::collections::HashMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(env["FROM_STRING"], "hello world");
    assert_eq!(env["OVERRIDE"], "flag");
    assert_eq!(env["DOLLAR"], "$x");
    assert_eq!(env["GREETING"], "hi", "image ENV is kept");
    assert_eq!(env["BERTH_INSTANCE_ID"], id.to_string());
    assert_eq!(env["PUBLIC_IPADDR"], "127.0.0.1");
    assert_eq!(env["GPU_COUNT"], "0");
    // Every asked-for port and the image's EXPOSE 8000 are mapped, and say so inside.
    let ports = v["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 4, "{v:#}");
    for p in ports {
        let (internal, external) = (
            p["internal"].as_u64().unwrap(),
            p["external"].as_u64().unwrap(),
        );
        let proto = p["proto"].as_str().unwrap().to_uppercase();
        assert_eq!(
            env[format!("BERTH_{proto}_PORT_{internal}").as_str()],
            external.to_string()
        );
        assert!((b.ports.0 as u64..=b.ports.1 as u64).contains(&external));
    }
    let show = b.ok(&["show", &id.to_string()]);
    assert!(
        show.contains(&format!(
            "127.0.0.1:{} -> 7000/udp",
            ports.iter().find(|p| p["internal"] == 7000).unwrap()["external"]
        )),
        "{show}"
    );
}

/// A published port answers from the host at its mapped port; USER and WORKDIR come from
/// the image as with `docker run`.
#[test]
fn published_port_answers_on_the_host() {
    let b = Berth::up();
    let id = b.create(&[
        BUSYBOX,
        "-p",
        "8080",
        "--entrypoint",
        "/bin/sh",
        "--wait",
        "--args",
        "-c",
        "echo \"hello from $BERTH_INSTANCE_ID in $(pwd)\" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
    ]);
    let v = b.wait_state(id, "running");
    let port = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["internal"] == 8080)
        .unwrap()["external"]
        .as_u64()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        })();
        match attempt {
            Ok(r) if r.contains("200 OK") => break r,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "port {port} never answered: {other:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    assert!(body.contains(&format!("hello from {id} in /srv")), "{body}");
}

#[test]
fn exit_code_is_reported() {
    let b = Berth::up();
    let out = b.cli(&[
        "create",
        BUSYBOX,
        "--entrypoint",
        "/bin/sh",
        "--wait",
        "--args",
        "-c",
        "echo bye; exit 3",
    ]);
    assert!(
        out.status.success(),
        "an exit is a valid end: {}",
        stderr(&out)
    );
    let id: i64 = stdout(&out).trim().parse().unwrap();
    // --wait ends at running or exited, whichever it sees first (the shell lives briefly).
    let v = b.wait_state(id, "exited");
    let err = stderr(&out);
    assert!(!err.contains("failed"), "{err}");
    assert_eq!(
        (v["state"].as_str(), v["exit_code"].as_i64()),
        (Some("exited"), Some(3))
    );
    assert!(b.ok(&["ls"]).contains("exited(3)"));
    assert_eq!(b.logs(id), "bye\n");
}

#[test]
fn missing_image_and_missing_entrypoint_fail_with_the_reason() {
    let b = Berth::up();
    let err = b.fails(&["create", "berth-test/does-not-exist:v1", "--wait"]);
    assert!(
        err.contains("failed") && err.contains("could not be pulled"),
        "{err}"
    );
    let id = b.ok(&["ls", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&id).unwrap();
    assert_eq!(list[0]["state"], "failed");
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("berth-test/does-not-exist:v1"),
        "{list:#}"
    );

    let err = b.fails(&[
        "create",
        BUSYBOX,
        "--entrypoint",
        "/no/such/binary",
        "--wait",
    ]);
    assert!(
        err.contains("entrypoint not found") && err.contains("/no/such/binary"),
        "{err}"
    );
}

#[test]
fn logs_follow_new_output_and_tail() {
    let b = Berth::up();
    let id = b.create(&[
        BUSYBOX,
        "--entrypoint",
        "/bin/sh",
        "--wait",
        "--args",
        "-c",
        "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.1; done",
    ]);
    // -f streams lines as they come and ends when the container ends.
    let out = b.ok(&["logs", &id.to_string(), "-f"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 40, "{out}");
    assert_eq!(lines[39], "line 39");
    b.wait_state(id, "exited");
    assert_eq!(
        b.ok(&["logs", &id.to_string(), "--tail", "2"]),
        "line 38\nline 39\n"
    );
}

#[test]
fn gpus_beyond_the_host_are_refused_clearly() {
    let b = Berth::up();
    let err = b.fails(&["create", BUSYBOX, "--gpus", "1"]);
    assert!(err.contains("gpus") && err.contains("GPU"), "{err}");
    assert!(
        b.ok(&["ls", "--json"]).trim() == "[]",
        "nothing half-made is kept"
    );
}
