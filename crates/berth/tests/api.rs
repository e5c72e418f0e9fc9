//! The REST API's contract: auth, ownership, validation errors naming the field, users,
//! and the OpenAPI document.
mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(b: &Berth) -> Api {
        Api {
            http: reqwest::Client::new(),
            url: b.url.clone(),
        }
    }
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn create(&self, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            "/api/v1/instances",
            Some(key),
            Some(body),
        )
        .await
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let b = Berth::up();
    let api = Api::new(&b);
    for key in [None, Some("berth_wrong"), Some("")] {
        let (s, v) = api
            .call(reqwest::Method::GET, "/api/v1/instances", key, None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert!(v["error"].as_str().unwrap().contains("API key"));
    }
    let (s, _) = api.create("nope", json!({"image": BUSYBOX})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The OpenAPI document needs no key and lists the routes.
    let (s, doc) = api
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/api/v1/instances",
        "/api/v1/instances/{id}",
        "/api/v1/instances/{id}/logs",
        "/api/v1/hosts",
        "/api/v1/users",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from openapi.json"
        );
    }
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let b = Berth::up();
    let api = Api::new(&b);
    let key = b.admin_key.clone();
    let cases = [
        (json!({"image": "Not A Valid/Ref"}), "image"),
        (json!({"image": ""}), "image"),
        (
            json!({"image": BUSYBOX, "docker_options": "--privileged"}),
            "docker_options",
        ),
        (
            json!({"image": BUSYBOX, "docker_options": "-e NOVALUE"}),
            "docker_options",
        ),
        (
            json!({"image": BUSYBOX, "docker_options": "-p 70000"}),
            "docker_options",
        ),
        (json!({"image": BUSYBOX, "ports": ["0"]}), "ports"),
        (json!({"image": BUSYBOX, "ports": ["1-65/tcp"]}), "ports"),
        (
            json!({"image": BUSYBOX, "ports": (1..=65).map(|p| p.to_string()).collect::<Vec<_>>()}),
            "ports",
        ),
        (
            json!({"image": BUSYBOX, "env": {"BIG": "x".repeat(70_000)}}),
            "env",
        ),
        (json!({"image": BUSYBOX, "env": {"1BAD": "x"}}), "env"),
        (
            json!({"image": BUSYBOX, "env": {"BERTH_INSTANCE_ID": "9"}}),
            "env",
        ),
        (json!({"image": BUSYBOX, "entrypoint": ""}), "entrypoint"),
        (json!({"image": BUSYBOX, "gpus": 1}), "gpus"),
    ];
    for (body, field) in cases {
        let (s, v) = api.create(&key, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(field), "{v}");
    }
    // Malformed JSON and unknown fields are 400s too, with serde's explanation.
    for body in [
        json!({"image": BUSYBOX, "imagee": 1}),
        json!({"image": 5}),
        json!([1]),
    ] {
        let (s, v) = api.create(&key, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (s, v) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/instances/1/logs?follow=maybe",
            Some(&key),
            None,
        )
        .await;
    assert!(
        s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
        "{s} {v}"
    );
    // Nothing half-made was kept.
    let (_, list) = api
        .call(reqwest::Method::GET, "/api/v1/instances", Some(&key), None)
        .await;
    assert_eq!(list, json!([]));
}

/// A second user can neither see nor touch the first user's instance: 404, as if unknown.
#[tokio::test]
async fn users_are_isolated() {
    let b = Berth::up();
    let api = Api::new(&b);
    let alice: Value = serde_json::from_str(&b.ok(&["users", "add", "alice", "--json"])).unwrap();
    let alice_key = alice["api_key"].as_str().unwrap().to_string();
    let bob_key = b.ok(&["users", "add", "bob"]).trim().to_string();
    assert!(bob_key.starts_with("berth_"), "{bob_key}");
    let users = b.ok(&["users", "ls"]);
    assert!(
        users.contains("alice") && users.contains("bob") && users.contains("admin"),
        "{users}"
    );
    let dup = b.fails(&["users", "add", "alice"]);
    assert!(dup.contains("already exists"), "{dup}");

    let out = b.cli_as(
        &alice_key,
        &[
            "create",
            BUSYBOX,
            "--entrypoint",
            "/bin/sleep",
            "--wait",
            "--args",
            "600",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();

    for cmd in [
        vec!["show", &id],
        vec!["stop", &id],
        vec!["start", &id],
        vec!["reboot", &id],
        vec!["logs", &id],
        vec!["destroy", &id],
    ] {
        let out = b.cli_as(&bob_key, &cmd);
        assert!(!out.status.success(), "bob could {cmd:?}");
        assert!(
            stderr(&out).contains("not found"),
            "{cmd:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(stdout(&b.cli_as(&bob_key, &["ls", "--json"])).trim(), "[]");
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/v1/instances/{id}")),
        (reqwest::Method::DELETE, format!("/api/v1/instances/{id}")),
        (
            reqwest::Method::POST,
            format!("/api/v1/instances/{id}/stop"),
        ),
        (reqwest::Method::GET, "/api/v1/instances/999999".to_string()),
        (reqwest::Method::GET, "/api/v1/instances/abc".to_string()),
    ] {
        let (s, v) = api.call(method.clone(), &path, Some(&bob_key), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {v}");
    }
    // Alice still has it, running.
    let out = b.cli_as(&alice_key, &["show", &id, "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["owner"], "alice");

    // Only the admin manages users; a user who owns instances cannot be removed.
    let out = b.cli_as(&bob_key, &["users", "add", "eve"]);
    assert!(stderr(&out).contains("admin"), "{}", stderr(&out));
    let err = b.fails(&["users", "rm", "alice"]);
    assert!(err.contains("still has 1 instance"), "{err}");
    b.ok(&["users", "rm", "bob"]);
    let (s, _) = api
        .call(reqwest::Method::GET, "/api/v1/me", Some(&bob_key), None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a removed user's key stops working"
    );
    let err = b.fails(&["users", "add", "Bad Name"]);
    assert!(err.contains("name"), "{err}");
}

#[test]
fn cli_errors_are_one_clear_line() {
    let b = Berth::up();
    let err = b.fails(&["show", "12345"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("not found"),
        "{err}"
    );
    let err = b.fails(&["create", BUSYBOX, "--env", "-v /:/host"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("docker_options") && err.contains("-v"),
        "{err}"
    );
    let out = b.cli_as("berth_bad", &["ls"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = std::process::Command::new(berth_bin())
        .args(["ls"])
        .env("BERTH_CONFIG", b.dir.join("none.json"))
        .env_remove("BERTH_URL")
        .env_remove("BERTH_API_KEY")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));
    // login checks the key and then works without env overrides.
    let cfg = b.dir.join("login.json");
    let out = std::process::Command::new(berth_bin())
        .args(["login", "--url", &b.url, "--api-key", &b.admin_key])
        .env("BERTH_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = std::process::Command::new(berth_bin())
        .args(["hosts", "--json"])
        .env("BERTH_CONFIG", &cfg)
        .output()
        .unwrap();
    let hosts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hosts[0]["name"], "e2e-host");
    assert_eq!(hosts[0]["online"], true);
}

/// Checks that every key of `value` is a documented property of `schema` (following
/// `$ref`s into objects and array items), as the API's clients rely on the document.
fn conforms(value: &Value, schema: &Value, doc: &Value, at: &str, missing: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    match value {
        Value::Object(map) => {
            let Some(props) = schema["properties"].as_object() else {
                return; // a free-form object (e.g. env)
            };
            for (k, v) in map {
                match props.get(k) {
                    Some(p) => conforms(v, p, doc, &format!("{at}.{k}"), missing),
                    None => missing.push(format!("{at}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                conforms(v, &schema["items"], doc, &format!("{at}[{i}]"), missing);
            }
        }
        _ => {}
    }
}

/// The hand-written OpenAPI document names every field the API really answers with.
#[tokio::test]
async fn the_openapi_document_describes_the_real_answers() {
    let b = Berth::up();
    let api = Api::new(&b);
    let key = b.admin_key.clone();
    let (_, doc) = api
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let pair = KeyPair::new(&b.dir, "k");
    let public = std::fs::read_to_string(&pair.public).unwrap();
    let (s, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/keys",
            Some(&key),
            Some(json!({ "key": public })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = b.create(&[
        SSH_IMAGE,
        "--ssh",
        "-p",
        "8000/http",
        "--label",
        "x",
        "--wait",
    ]);
    b.wait_state(id, "running");
    b.ok(&[
        "templates",
        "create",
        "t",
        "--image",
        BUSYBOX,
        "--args",
        "hi",
    ]);
    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let list = |name: &str| json!({ "type": "array", "items": schema(name) });
    let mut missing = Vec::new();
    for (path, want) in [
        ("/api/v1/me", schema("Me")),
        (&format!("/api/v1/instances/{id}"), schema("Instance")),
        ("/api/v1/instances", list("Instance")),
        ("/api/v1/hosts", list("Host")),
        ("/api/v1/keys", list("SshKey")),
        ("/api/v1/users", list("User")),
        ("/api/v1/templates", list("Template")),
        ("/api/v1/templates/t", schema("Template")),
    ] {
        let (s, v) = api.call(reqwest::Method::GET, path, Some(&key), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        conforms(&v, &want, &doc, path, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "sent but not in openapi.json: {missing:#?}"
    );
}
