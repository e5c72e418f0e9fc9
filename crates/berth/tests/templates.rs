//! Templates end to end through the real CLI: saved settings, creating from a template
//! with overrides, bad input that keeps nothing, and templates made from an image's config
//! (pulled from a real local registry when missing). The proof: berth-test/argserver's
//! ENTRYPOINT+CMD, moved into the onstart script of an ssh-mode template, serve on their
//! port with exactly the image's argv and working directory, and the instance takes ssh.
mod common;
use common::registry::Registry;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const ARGSERVER: &str = "berth-test/argserver";

/// The argv berth-test/argserver's CMD gives (images/build.sh, ARGSERVER_CMD).
fn argserver_argv() -> Vec<String> {
    [
        "--greeting",
        "it's \"odd\" $HOME `x`",
        "a b",
        "back\\slash",
        "line\nbreak",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn env_of(v: &Value) -> Vec<(String, String)> {
    v["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn template_names(b: &Berth) -> Vec<String> {
    json(&b.ok(&["templates", "ls", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The external port mapped to `internal`/tcp.
fn mapped(v: &Value, internal: u16) -> u16 {
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["internal"] == internal && p["proto"] == "tcp")
        .unwrap_or_else(|| panic!("no port {internal} in {v:#}"))["external"]
        .as_u64()
        .unwrap() as u16
}

/// `GET /` over HTTP/1.0 on 127.0.0.1:port: the body, if it answered 200.
fn http_get(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {answer:?}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    Ok(body.to_string())
}

/// GET / on 127.0.0.1:port until it answers, as JSON.
fn get_json(port: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match http_get(port) {
            Ok(body) => return json(&body),
            Err(last) => assert!(
                Instant::now() < deadline,
                "nothing answered on 127.0.0.1:{port} within 60 s: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn templates_are_saved_listed_edited_removed_and_launched_with_overrides() {
    let b = Berth::up();
    let out = b.ok(&[
        "templates",
        "create",
        "greet",
        "--image",
        BUSYBOX,
        "-e",
        "A=template",
        "-e",
        "B=template",
        "--env",
        "-e OPT=template -p 7000/udp",
        "--label",
        "from-template",
        "--readme",
        "Says hello.\nTwice.",
        "--args",
        "one",
        "two words",
    ]);
    assert_eq!(out, "template greet saved\n");

    // ls, show, and their JSON.
    let ls = b.ok(&["templates", "ls"]);
    assert!(ls.starts_with("NAME"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("greet") && l.contains("entrypoint") && l.contains(BUSYBOX)),
        "{ls}"
    );
    assert_eq!(template_names(&b), ["greet"]);
    let shown = b.ok(&["templates", "show", "greet"]);
    for want in [
        "name:",
        "greet",
        BUSYBOX,
        "A=template",
        "[\"one\", \"two words\"]",
        "readme:\n    Says hello.\n    Twice.\n",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    let t = json(&b.ok(&["templates", "show", "greet", "--json"]));
    assert_eq!(t["name"], "greet");
    assert_eq!(t["readme"], "Says hello.\nTwice.");
    assert_eq!(t["settings"]["image"], BUSYBOX);
    assert_eq!(t["settings"]["mode"], "entrypoint");
    assert_eq!(
        t["settings"]["args"],
        serde_json::json!(["one", "two words"])
    );
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'), "{t:#}");

    // Launch from it: the request's env wins, the rest is merged; a scalar is overridden.
    let id = b.create(&[
        "--template",
        "greet",
        "-e",
        "B=request",
        "-e",
        "C=request",
        "--label",
        "mine",
        "--wait",
    ]);
    let v = b.show(id);
    assert_eq!(v["image"], BUSYBOX);
    assert_eq!(v["mode"], "entrypoint");
    assert_eq!(v["label"], "mine");
    assert_eq!(
        env_of(&v),
        pairs(&[
            ("A", "template"),
            ("B", "request"),
            ("C", "request"),
            ("OPT", "template"),
        ])
    );
    assert_eq!(v["args"], serde_json::json!(["one", "two words"]));
    assert!(
        v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["internal"] == 7000 && p["proto"] == "udp"),
        "{v:#}"
    );
    let logs = b.wait_logs(id, "greet:");
    assert!(logs.contains("greet: one two words\n"), "{logs}");
    // The template's label when the request has none; --args replaces the template's.
    let id2 = b.create(&["--template", "greet", "--wait", "--args", "three"]);
    let v2 = b.show(id2);
    assert_eq!(v2["label"], "from-template");
    assert!(b.wait_logs(id2, "greet:").contains("greet: three\n"));
    // A request's own Docker-options string comes after the template's: its -e wins.
    let id3 = b.create(&["--template", "greet", "--env", "-e OPT=request"]);
    assert_eq!(b.show(id3)["env"]["OPT"], "request");

    // Edit: given options override, env merges, an empty readme removes it.
    let out = b.ok(&[
        "templates",
        "edit",
        "greet",
        "-e",
        "D=edited",
        "-e",
        "A=edited",
        "--label",
        "edited",
        "--readme",
        "",
    ]);
    assert_eq!(out, "template greet saved\n");
    let t2 = json(&b.ok(&["templates", "show", "greet", "--json"]));
    assert_eq!(t2["readme"], Value::Null);
    assert_eq!(t2["settings"]["label"], "edited");
    assert_eq!(
        env_of(&t2["settings"]),
        pairs(&[("A", "edited"), ("B", "template"), ("D", "edited")])
    );
    assert_eq!(t2["settings"]["args"], t["settings"]["args"]);
    assert_eq!(t2["created_at"], t["created_at"]);
    // --replace: exactly the options given.
    b.ok(&[
        "templates",
        "edit",
        "greet",
        "--replace",
        "--image",
        BUSYBOX,
        "--label",
        "fresh",
    ]);
    let t3 = json(&b.ok(&["templates", "show", "greet", "--json"]));
    assert_eq!(t3["settings"]["label"], "fresh");
    assert!(
        t3["settings"]["env"].as_object().unwrap().is_empty(),
        "{t3:#}"
    );
    assert_eq!(t3["settings"]["args"], Value::Null);
    // An edit that makes the settings invalid is refused and changes nothing.
    let e = b.fails(&["templates", "edit", "greet", "--onstart-cmd", "echo hi"]);
    assert!(e.contains("settings.onstart:"), "{e}");
    assert_eq!(
        json(&b.ok(&["templates", "show", "greet", "--json"]))["settings"],
        t3["settings"]
    );

    // Another user sees none of it and cannot launch from it.
    let bob = b.ok(&["users", "add", "bob"]).trim().to_string();
    let o = b.cli_as(&bob, &["templates", "ls", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&stdout(&o)), serde_json::json!([]));
    let o = b.cli_as(&bob, &["templates", "show", "greet"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("template greet not found"),
        "{}",
        stderr(&o)
    );
    let o = b.cli_as(&bob, &["create", "--template", "greet"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("template: template greet not found"),
        "{}",
        stderr(&o)
    );

    // Remove.
    assert_eq!(
        b.ok(&["templates", "rm", "greet"]),
        "template greet removed\n"
    );
    assert!(template_names(&b).is_empty());
    let e = b.fails(&["templates", "show", "greet"]);
    assert!(e.contains("template greet not found"), "{e}");
    let e = b.fails(&["templates", "rm", "greet"]);
    assert!(e.contains("template greet not found"), "{e}");
    let e = b.fails(&["create", "--template", "greet"]);
    assert!(e.contains("template: template greet not found"), "{e}");
    // Instances made from it are not touched.
    assert_eq!(b.show(id)["label"], "mine");
}

/// 0 GPUs, `--direct=false`/`--no-direct`, `--no-jupyter-lab` and `--label ''` are given
/// values: they win over a template's at create, and an edit stores them (or, for the
/// label, removes it) instead of keeping the template's.
#[test]
fn zero_false_and_empty_given_win_over_a_template() {
    let b = Berth::up();
    b.ok(&[
        "templates",
        "create",
        "g1",
        "--image",
        BUSYBOX,
        "--gpus",
        "1",
        "--label",
        "tpl",
    ]);
    // This host has no GPUs: the template's 1 is refused, --gpus 0 wins over it.
    let e = b.fails(&["create", "--template", "g1"]);
    assert!(e.contains("gpus: 1 GPUs asked for"), "{e}");
    let id = b.create(&["--template", "g1", "--gpus", "0", "--label", "", "--wait"]);
    let v = b.show(id);
    assert_eq!(
        (v["gpus"].as_u64(), &v["label"]),
        (Some(0), &Value::Null),
        "{v:#}"
    );
    b.ok(&["destroy", &id.to_string()]);
    // An edit to 0 GPUs and no label is kept.
    assert_eq!(
        b.ok(&["templates", "edit", "g1", "--gpus", "0", "--label", ""]),
        "template g1 saved\n"
    );
    let t = json(&b.ok(&["templates", "show", "g1", "--json"]));
    assert_eq!(t["settings"]["gpus"], 0, "{t:#}");
    assert_eq!(t["settings"]["label"], Value::Null, "{t:#}");
    let shown = b.ok(&["templates", "show", "g1"]);
    assert!(
        !shown.contains("gpus:") && !shown.contains("label:"),
        "{shown}"
    );
    let id = b.create(&["--template", "g1", "--wait"]);
    assert_eq!(b.show(id)["gpus"], 0);
    b.ok(&["destroy", &id.to_string()]);

    // --direct and --jupyter-lab switched off by a request, then by an edit.
    b.ok(&[
        "templates",
        "create",
        "j1",
        "--image",
        BUSYBOX,
        "--jupyter",
        "--direct",
        "--jupyter-lab",
    ]);
    let t = json(&b.ok(&["templates", "show", "j1", "--json"]));
    assert_eq!(
        (&t["settings"]["direct"], &t["settings"]["jupyter_lab"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    let flags = |id: i64| {
        let v = b.show(id);
        b.ok(&["destroy", &id.to_string()]);
        (v["direct"].as_bool(), v["jupyter_lab"].as_bool())
    };
    assert_eq!(
        flags(b.create(&["--template", "j1"])),
        (Some(true), Some(true))
    );
    assert_eq!(
        flags(b.create(&["--template", "j1", "--no-direct", "--no-jupyter-lab"])),
        (Some(false), Some(false))
    );
    assert_eq!(
        flags(b.create(&["--template", "j1", "--direct=false", "--jupyter-lab=false"])),
        (Some(false), Some(false))
    );
    b.ok(&[
        "templates",
        "edit",
        "j1",
        "--direct=false",
        "--no-jupyter-lab",
    ]);
    let t = json(&b.ok(&["templates", "show", "j1", "--json"]));
    assert_eq!(
        (&t["settings"]["direct"], &t["settings"]["jupyter_lab"]),
        (&Value::Bool(false), &Value::Bool(false)),
        "{t:#}"
    );
    let shown = b.ok(&["templates", "show", "j1"]);
    assert!(
        !shown.contains("direct:") && !shown.contains("jupyter lab:"),
        "{shown}"
    );
    assert_eq!(
        flags(b.create(&["--template", "j1"])),
        (Some(false), Some(false))
    );
    // And on again.
    b.ok(&["templates", "edit", "j1", "--direct", "--jupyter-lab=true"]);
    assert_eq!(
        flags(b.create(&["--template", "j1"])),
        (Some(true), Some(true))
    );
}

#[test]
fn bad_template_input_is_refused_clearly_and_nothing_is_kept() {
    let b = Berth::up();
    let refused = |args: &[&str], want: &str| {
        let mut all = vec!["templates", "create"];
        all.extend_from_slice(args);
        let e = b.fails(&all);
        assert!(e.contains(want), "{args:?}: {want:?} not in {e:?}");
        assert!(
            template_names(&b).iter().all(|n| n == "dup"),
            "{args:?} left a template behind"
        );
    };
    // Invalid settings name the field under settings.
    refused(&["t", "--image", "Not Valid"], "settings.image:");
    refused(
        &["t", "--image", BUSYBOX, "--onstart-cmd", "echo hi"],
        "settings.onstart: onstart runs only in the ssh and jupyter launch modes",
    );
    refused(
        &["t", "--image", BUSYBOX, "-e", "BERTH_INSTANCE_ID=1"],
        "settings.env: BERTH_INSTANCE_ID is set by berth",
    );
    refused(&["t", "--image", BUSYBOX, "-p", "0"], "settings.ports:");
    refused(
        &["t", "--image", BUSYBOX, "--ssh", "--jupyter-lab"],
        "settings.jupyter_lab:",
    );
    refused(
        &[
            "t",
            "--image",
            BUSYBOX,
            "--readme",
            &"r".repeat(16 * 1024 + 1),
        ],
        "readme: the readme is 16385 bytes; at most 16384",
    );
    // Names are checked by the CLI before they reach a URL, and by the server.
    refused(&["a b", "--image", BUSYBOX], "letters, digits");
    refused(&["from-image", "--image", BUSYBOX], "reserved");
    // A duplicate name is a conflict, and the first template stays as it was.
    b.ok(&[
        "templates",
        "create",
        "dup",
        "--image",
        BUSYBOX,
        "--label",
        "first",
    ]);
    refused(
        &["dup", "--image", BUSYBOX, "--label", "second"],
        "template dup already exists",
    );
    refused(
        &["dup", "--from-image", BUSYBOX, "--ssh"],
        "template dup already exists",
    );
    let t = json(&b.ok(&["templates", "show", "dup", "--json"]));
    assert_eq!(t["settings"]["label"], "first");
    // From an image: an image that cannot be pulled (nothing listens on port 1), a bad
    // reference, options that belong to `edit`.
    refused(
        &[
            "t",
            "--from-image",
            "127.0.0.1:1/berth-test/no-such-image:v1",
            "--ssh",
        ],
        "image: image 127.0.0.1:1/berth-test/no-such-image:v1 could not be pulled",
    );
    refused(&["t", "--from-image", "Not Valid"], "image:");
    refused(
        &["t", "--from-image", BUSYBOX, "-e", "A=1"],
        "--from-image takes only --ssh, --jupyter or --mode",
    );
    // Launching: an unknown template, and a request that contradicts the template's mode.
    let e = b.fails(&["create", "--template", "nope"]);
    assert!(e.contains("template: template nope not found"), "{e}");
    let e = b.fails(&["create", "--template", "dup", "--jupyter-lab"]);
    assert!(e.contains("jupyter_lab:"), "{e}");
    assert_eq!(
        json(&b.ok(&["ls", "--json"])),
        serde_json::json!([]),
        "a refused create left an instance"
    );
    assert_eq!(template_names(&b), ["dup"]);
}

/// Whether `out` holds a control character other than the newlines ending its lines.
fn raw_controls(out: &str) -> Vec<char> {
    out.chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect()
}

/// Human output shows stored control characters escaped as shell quoting shows them
/// (`templates show`, `templates ls`, the notes of `--from-image`); `--json` stays exact.
#[test]
fn human_output_shows_control_characters_escaped() {
    let b = Berth::up();
    b.ok(&[
        "templates",
        "create",
        "ctl",
        "--image",
        BUSYBOX,
        "-e",
        "K=x\ty",
        "--env",
        "-e 'O=p\rq'",
        "--readme",
        "red \u{1b}[31mtext\u{1b}[0m\rover",
        "--args",
        "a\rb",
        "\u{1b}]0;title\u{7}",
    ]);
    let shown = b.ok(&["templates", "show", "ctl"]);
    assert_eq!(raw_controls(&shown), Vec::<char>::new(), "{shown:?}");
    for want in [
        "[\"a\\rb\", \"\\u001b]0;title\\u0007\"]",
        "docker options: -e 'O=p'$'\\r''q'\n",
        "K=$'x\\ty'\n",
        "readme:\n    red $'\\e'[31mtext$'\\e'[0m$'\\r'over\n",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    let ls = b.ok(&["templates", "ls"]);
    assert_eq!(raw_controls(&ls), Vec::<char>::new(), "{ls:?}");
    assert!(ls.contains("red $'\\e'[31m"), "{ls}");
    // --json: the exact values.
    let t = json(&b.ok(&["templates", "show", "ctl", "--json"]));
    assert_eq!(
        t["settings"]["args"],
        serde_json::json!(["a\rb", "\u{1b}]0;title\u{7}"])
    );
    assert_eq!(t["settings"]["env"]["K"], "x\ty");
    assert_eq!(t["settings"]["docker_options"], "-e 'O=p\rq'");
    assert_eq!(t["readme"], "red \u{1b}[31mtext\u{1b}[0m\rover");

    // An image whose CMD holds control characters, made into an ssh-mode template.
    let tag = format!("berth-test/ctl-{}:v1", rand::random::<u32>());
    let c = docker(&["create", BUSYBOX]);
    let c = c.trim();
    docker(&[
        "commit",
        "--change",
        r#"CMD ["/bin/echo", "a\rb", "\u001b[2J", "tab\there"]"#,
        c,
        &tag,
    ]);
    docker(&["rm", c]);
    let out = b.ok(&["templates", "create", "fi", "--from-image", &tag, "--ssh"]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", &tag])
        .output();
    assert_eq!(raw_controls(&out), Vec::<char>::new(), "{out:?}");
    assert!(
        out.contains("/bin/echo $'a\\rb' $'\\e[2J' $'tab\\there'`)"),
        "{out}"
    );
    assert!(
        out.lines()
            .all(|l| l.starts_with("- ") || l.starts_with("template fi made from")),
        "{out}"
    );
    let shown = b.ok(&["templates", "show", "fi"]);
    assert_eq!(raw_controls(&shown), Vec::<char>::new(), "{shown:?}");
    assert!(
        shown.contains("/bin/echo 'a'$'\\r''b' $'\\e''[2J' 'tab'$'\\t''here'\n"),
        "{shown}"
    );
    let t = json(&b.ok(&["templates", "show", "fi", "--json"]));
    assert!(
        t["settings"]["onstart"]
            .as_str()
            .unwrap()
            .ends_with("/bin/echo 'a\rb' '\u{1b}[2J' 'tab\there'\n"),
        "{t:#}"
    );
}

/// THE PROOF: an image whose entrypoint serves its odd arguments, made into an ssh-mode
/// template, serves exactly those arguments from its WORKDIR and accepts ssh.
#[test]
fn a_template_from_an_image_runs_its_entrypoint_exactly_in_ssh_mode() {
    require_docker_and_images(&[ARGSERVER]);
    let b = Berth::up();
    let key = KeyPair::new(&b.dir, "tpl-key");
    let kh = b.dir.join("known_hosts");
    b.ok(&["keys", "add", key.public.to_str().unwrap()]);

    let out = b.ok(&[
        "templates",
        "create",
        "web",
        "--from-image",
        ARGSERVER,
        "--ssh",
        "--readme",
        "argserver in ssh mode",
    ]);
    for want in [
        "moved ENTRYPOINT+CMD into the onstart script",
        "because ssh mode runs berth's init instead of the image's entrypoint",
        "carried EXPOSE 8765/tcp into ports",
        "GREETING_STYLE",
        "WORKDIR /srv/app dir",
        "template web made from berth-test/argserver (ssh mode)",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    let t = json(&b.ok(&["templates", "show", "web", "--json"]));
    assert_eq!(t["settings"]["mode"], "ssh");
    assert_eq!(t["settings"]["ports"], serde_json::json!(["8765/tcp"]));
    assert_eq!(t["settings"]["env"]["GREETING_STYLE"], "loud");
    assert_eq!(t["readme"], "argserver in ssh mode");
    let onstart = t["settings"]["onstart"].as_str().unwrap();
    assert!(
        onstart.contains("cd '/srv/app dir' || exit 1\nexec python3 /usr/local/bin/argserver.py"),
        "{onstart}"
    );

    let id = b.create(&["--template", "web", "--wait"]);
    let v = b.wait_state(id, "running");
    assert_eq!(v["mode"], "ssh");
    assert_eq!(v["image"], ARGSERVER);
    // The server answers on its direct mapped port with exactly the image's argv, in the
    // image's WORKDIR.
    let got = get_json(mapped(&v, 8765));
    assert_eq!(
        got,
        serde_json::json!({"argv": argserver_argv(), "cwd": "/srv/app dir"}),
        "onstart log:\n{}",
        b.ok(&["logs", &id.to_string(), "--onstart"])
    );
    // And ssh works: berth's init is PID 1, the server runs under it as the exec'd
    // onstart script, the image's ENV is there.
    let o = ssh(
        ssh_port(&v),
        &key.private,
        &kh,
        &[],
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo \"$GREETING_STYLE\"; id -u; pgrep -f argserver.py >/dev/null && echo server-running",
    );
    assert!(o.status.success(), "ssh failed: {}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("/.berth/init"), "{text}");
    assert!(text.contains("\nloud\n0\nserver-running\n"), "{text}");

    // The same image as an entrypoint-mode template: nothing moved, the same answer.
    let out = b.ok(&[
        "templates",
        "create",
        "web-plain",
        "--from-image",
        ARGSERVER,
    ]);
    assert!(out.contains("nothing was moved"), "{out}");
    let plain = json(&b.ok(&["templates", "show", "web-plain", "--json"]));
    assert_eq!(plain["settings"]["onstart"], Value::Null);
    let id2 = b.create(&["--template", "web-plain", "--wait"]);
    let v2 = b.wait_state(id2, "running");
    assert_eq!(
        get_json(mapped(&v2, 8765)),
        serde_json::json!({"argv": argserver_argv(), "cwd": "/srv/app dir"})
    );
}

/// An image the host does not have is pulled (from a real local registry) to inspect it.
#[test]
fn a_template_from_an_image_pulls_it_when_missing() {
    let b = Berth::up();
    let reg = Registry::start();
    let tag = format!("{}/berth-test/tpl-{}:v1", reg.addr, rand::random::<u32>());
    docker(&["tag", BUSYBOX, &tag]);
    docker(&["push", &tag]);
    docker(&["rmi", &tag]);
    let out = b.ok(&[
        "templates",
        "create",
        "pulled",
        "--from-image",
        &tag,
        "--jupyter",
    ]);
    assert!(
        out.contains("moved ENTRYPOINT+CMD into the onstart script (`exec /usr/local/bin/greet hello 'from cmd'`)"),
        "{out}"
    );
    assert!(
        out.contains("did not carry ENV PATH") || out.contains("carried ENV"),
        "{out}"
    );
    // It is here now, and the template names it.
    docker(&["image", "inspect", &tag]);
    let t = json(&b.ok(&["templates", "show", "pulled", "--json"]));
    assert_eq!(t["settings"]["image"], tag);
    assert_eq!(t["settings"]["mode"], "jupyter");
    assert_eq!(t["settings"]["ports"], serde_json::json!(["8000/tcp"]));
    assert_eq!(t["settings"]["env"]["GREETING"], "hi");
    let _ = std::process::Command::new("docker")
        .args(["rmi", &tag])
        .output();
}

/// The REST contract of templates, for API clients (the GUI among them).
#[tokio::test]
async fn the_templates_api() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;
    let b = Berth::up();
    let http = reqwest::Client::new();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{}/api/v1{path}", b.url))
            .bearer_auth(&b.admin_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };
    let bad = |v: &Value, field: &str| {
        assert_eq!(v["field"], field, "{v:#}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{v:#}"
        );
    };

    let (s, v) = call(Method::GET, "/templates", None).await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));
    // Created: 201 with the template; the mode is always stated.
    let body =
        json!({"name": "t1", "readme": "hi", "settings": {"image": BUSYBOX, "env": {"A": "1"}}});
    let (s, t) = call(Method::POST, "/templates", Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{t:#}");
    assert_eq!(t["name"], "t1");
    assert_eq!(t["readme"], "hi");
    assert_eq!(t["settings"]["mode"], "entrypoint");
    assert_eq!(t["settings"]["env"]["A"], "1");
    assert!(t["settings"].get("template").is_none(), "{t:#}");
    // A name in use: a 409 on the field name, for both ways of making a template.
    let (s, v) = call(Method::POST, "/templates", Some(body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v:#}");
    bad(&v, "name");
    assert_eq!(v["error"], "name: template t1 already exists");
    let (s, v) = call(
        Method::POST,
        "/templates/from-image",
        Some(json!({"name": "t1", "image": BUSYBOX, "mode": "ssh"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v:#}");
    bad(&v, "name");
    assert_eq!(v["error"], "name: template t1 already exists");

    // Bad bodies: 400 naming the field; nothing stored.
    for (body, field) in [
        (json!({"name": "t2", "settings": {}}), "settings.image"),
        (
            json!({"name": "t2", "settings": {"image": BUSYBOX, "template": "t1"}}),
            "settings.template",
        ),
        (
            json!({"name": "t2", "settings": {"image": BUSYBOX, "mode": "ssh", "args": []}}),
            "settings.args",
        ),
        (
            json!({"name": "t2", "settings": {"image": BUSYBOX, "docker_options": "--rm"}}),
            "settings.docker_options",
        ),
        (
            json!({"name": "../x", "settings": {"image": BUSYBOX}}),
            "name",
        ),
        (json!({"name": "", "settings": {"image": BUSYBOX}}), "name"),
        (
            json!({"name": "t2", "readme": "x".repeat(16385), "settings": {"image": BUSYBOX}}),
            "readme",
        ),
    ] {
        let (s, v) = call(Method::POST, "/templates", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v:#}");
        bad(&v, field);
    }
    let (s, v) = call(
        Method::POST,
        "/templates",
        Some(json!({"name": "t2", "settings": {"image": BUSYBOX}, "extra": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    let (_, v) = call(Method::GET, "/templates", None).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v:#}");

    // PUT replaces; the body's name must be the path's; unknown ones are 404.
    let (s, v) = call(
        Method::PUT,
        "/templates/t1",
        Some(json!({"name": "t1", "settings": {"image": BUSYBOX, "mode": "ssh"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v:#}");
    assert_eq!(v["settings"]["mode"], "ssh");
    assert_eq!(v["readme"], Value::Null);
    assert_eq!(v["created_at"], t["created_at"]);
    let (s, v) = call(
        Method::PUT,
        "/templates/t1",
        Some(json!({"name": "other", "settings": {"image": BUSYBOX}})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    bad(&v, "name");
    let (s, v) = call(Method::PUT, "/templates/t1", Some(json!({"name": "t1", "settings": {"image": BUSYBOX, "onstart": "x", "mode": "entrypoint"}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    bad(&v, "settings.onstart");
    let (s, _) = call(
        Method::PUT,
        "/templates/nope",
        Some(json!({"name": "nope", "settings": {"image": BUSYBOX}})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = call(Method::GET, "/templates/t1", None).await;
    assert_eq!(v["settings"]["mode"], "ssh");

    // An instance from it: the request's fields win; an unknown template is a 400.
    let (s, v) = call(
        Method::POST,
        "/instances",
        Some(json!({"template": "t1", "mode": "entrypoint", "args": ["x"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v:#}");
    let id = v["id"].as_i64().unwrap();
    let (_, i) = call(Method::GET, &format!("/instances/{id}"), None).await;
    assert_eq!(
        (i["mode"].as_str(), i["image"].as_str()),
        (Some("entrypoint"), Some(BUSYBOX))
    );
    assert_eq!(i["args"], json!(["x"]));
    let (s, v) = call(
        Method::POST,
        "/instances",
        Some(json!({"template": "nope"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    bad(&v, "template");
    assert_eq!(v["error"], "template: template nope not found");
    // 0 given wins over a template's GPUs; null is not given; a number or a bool is
    // accepted as before.
    let (s, v) = call(
        Method::POST,
        "/templates",
        Some(json!({"name": "g", "settings": {"image": BUSYBOX, "gpus": 1, "direct": false}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v:#}");
    assert_eq!(
        (&v["settings"]["gpus"], &v["settings"]["direct"]),
        (&json!(1), &json!(false))
    );
    for body in [
        json!({"template": "g"}),
        json!({"template": "g", "gpus": null}),
    ] {
        let (s, v) = call(Method::POST, "/instances", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v:#}");
        bad(&v, "gpus");
    }
    let (s, v) = call(
        Method::POST,
        "/instances",
        Some(json!({"template": "g", "gpus": 0, "direct": null, "jupyter_lab": false})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v:#}");
    let (_, i) = call(Method::GET, &format!("/instances/{}", v["id"]), None).await;
    assert_eq!(
        (&i["gpus"], &i["direct"]),
        (&json!(0), &json!(false)),
        "{i:#}"
    );
    let (s, v) = call(
        Method::POST,
        "/instances",
        Some(json!({"image": BUSYBOX, "gpus": "0"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    // Without a template the image is still required.
    let (s, v) = call(Method::POST, "/instances", Some(json!({"mode": "ssh"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    bad(&v, "image");

    // from-image: 201 with notes; an unpullable image is a 400 on image.
    let (s, v) = call(
        Method::POST,
        "/templates/from-image",
        Some(json!({"name": "fi", "image": BUSYBOX, "mode": "ssh"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v:#}");
    assert_eq!(v["template"]["name"], "fi");
    assert!(v["notes"].as_array().unwrap().len() >= 2, "{v:#}");
    let (s, v) = call(
        Method::POST,
        "/templates/from-image",
        Some(json!({"name": "fi2", "image": "127.0.0.1:1/none"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    bad(&v, "image");
    let (s, v) = call(
        Method::POST,
        "/templates/from-image",
        Some(json!({"name": "fi2", "image": BUSYBOX, "mode": "vm"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v:#}");
    let (s, v) = call(Method::GET, "/templates/fi2", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v:#}");
    assert_eq!(v["error"], "template fi2 not found");

    // DELETE: 204 once, then 404.
    let (s, _) = call(Method::DELETE, "/templates/fi", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(Method::DELETE, "/templates/fi", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // No key, no templates.
    let resp = http
        .get(format!("{}/api/v1/templates", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The OpenAPI document lists the routes.
    let doc: Value = http
        .get(format!("{}/api/v1/openapi.json", b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/templates",
        "/api/v1/templates/from-image",
        "/api/v1/templates/{name}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from openapi.json"
        );
    }
    for schema in [
        "Template",
        "TemplateBody",
        "TemplateFromImage",
        "TemplateMade",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
    assert!(doc["components"]["schemas"]["CreateInstance"]["properties"]
        .get("template")
        .is_some());
}

/// The server asks an agent to inspect the image: with none online that is a clear 503, and
/// an agent that goes away mid-pull fails the request at once, clearly, keeping nothing.
#[test]
fn from_image_needs_an_agent_and_fails_clearly_when_it_goes_away() {
    use common::deployment::{Deployment, Options};
    let mut d = Deployment::start(Options::default());
    let o = d.cli(&["templates", "create", "t", "--from-image", BUSYBOX, "--ssh"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no host is online to inspect the image"),
        "{}",
        stderr(&o)
    );
    d.start_agent("tpl-host", "127.0.0.1", &[]);

    // A "registry" that takes connections and never answers: the pull hangs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (dialed_tx, dialed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            let _ = dialed_tx.send(());
        }
    });
    let image = format!("127.0.0.1:{port}/berth-test/stalls:v1");
    let cli = std::process::Command::new(berth_bin())
        .args(["templates", "create", "t", "--from-image", &image, "--ssh"])
        .env("BERTH_CONFIG", d.dir.join("cli-config.json"))
        .env("BERTH_URL", &d.url)
        .env("BERTH_API_KEY", &d.admin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    dialed
        .recv_timeout(Duration::from_secs(60))
        .expect("the agent's Docker never tried to pull from the stalling registry");
    d.stop_agent("tpl-host");
    let waited = Instant::now();
    let out = cli.wait_with_output().unwrap();
    assert!(
        waited.elapsed() < Duration::from_secs(30),
        "the request outlived its agent by {:?}",
        waited.elapsed()
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "host tpl-host disconnected while inspecting image {image}; try again"
        )),
        "{e}"
    );
    assert_eq!(
        json(&d.ok(&["templates", "ls", "--json"])),
        serde_json::json!([])
    );
}
