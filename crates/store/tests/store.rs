//! One suite of store tests, run against both backends: SQLite in a fresh temp dir, and
//! PostgreSQL in a fresh database on the server named by `BERTH_TEST_PG_URL`. Without that
//! variable the PostgreSQL tests fail (they never skip): start a throwaway server with
//! `eval "$(scripts/pg-test.sh start)"`, or run `./scripts/test.sh`.
use berth_core::protocol::{
    ActualInstance, Gpu, HostFacts, Phase, PortMapping, PortRange, PullProgress, RunState,
};
use berth_core::{InstanceSpec, LaunchMode, PortProto, PortSpec};
use berth_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database that exists for one test.
struct TestDb {
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite { dir: PathBuf },
    Postgres { server_url: String, name: String },
}

fn unique_suffix() -> String {
    format!("{}_{:016x}", std::process::id(), rand::random::<u64>())
}

/// `url` with its database (path) replaced by `db`, keeping any query string.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path = base[authority..]
        .find('/')
        .map(|i| authority + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("berth-store-test-{}", unique_suffix()));
                std::fs::create_dir_all(&dir).expect("create temp dir");
                let url = format!("sqlite://{}", dir.join("berth.db").display());
                TestDb {
                    url,
                    cleanup: Cleanup::Sqlite { dir },
                }
            }
            Backend::Postgres => {
                let server_url = std::env::var("BERTH_TEST_PG_URL").unwrap_or_else(|_| {
                    panic!(
                        "BERTH_TEST_PG_URL is not set, and the PostgreSQL half of the store \
                         suite needs a real server (these tests fail rather than skip). Run \
                         `eval \"$(scripts/pg-test.sh start)\"` first, or run ./scripts/test.sh"
                    )
                });
                let name = format!("berth_test_{}", unique_suffix());
                let mut conn = pg_connect(&server_url).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                let _ = sqlx::Connection::close(conn).await;
                TestDb {
                    url: with_database(&server_url, &name),
                    cleanup: Cleanup::Postgres { server_url, name },
                }
            }
        }
    }

    /// Removes the database, best effort.
    async fn cleanup(self) {
        match self.cleanup {
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { server_url, name } => {
                let mut conn = pg_connect(&server_url).await;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await
                {
                    eprintln!("could not drop test database {name}: {e}");
                }
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}

async fn pg_connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to BERTH_TEST_PG_URL: {e}; is the test server running? \
             (`eval \"$(scripts/pg-test.sh start)\"`)"
        )
    })
}

/// What a test case gets: an open store on a fresh database, and its URL to open more.
#[derive(Clone)]
struct Db {
    url: String,
    store: Store,
    backend: Backend,
}

impl Db {
    async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("reopening {}: {e:#}", self.url))
    }
}

/// Runs `case` on a fresh database of `backend`, then removes the database even if the
/// case panicked, and passes the panic on.
async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let t = TestDb::new(backend).await;
    let opened = Store::open(&t.url).await;
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            t.cleanup().await;
            panic!("opening a fresh {backend:?} database: {e:#}");
        }
    };
    let db = Db {
        url: t.url.clone(),
        store: store.clone(),
        backend,
    };
    let outcome = tokio::spawn(case(db)).await;
    store.close().await;
    t.cleanup().await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Declares each case as `sqlite::CASE` and `postgres::CASE` tests.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run(crate::Backend::Sqlite, crate::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run(crate::Backend::Postgres, crate::$case).await;
                }
            )*
        }
    };
}

suite!(
    migrations_are_idempotent,
    meta_keeps_the_first_value,
    users,
    user_deletion_is_refused_while_owning_instances,
    hosts,
    instances_round_trip,
    ids_are_never_reused,
    data_survives_reopening,
    concurrent_inserts_all_succeed,
    corrupt_json_is_reported,
    ssh_keys,
    sessions,
    templates,
);

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_123;

fn spec(image: &str) -> InstanceSpec {
    InstanceSpec {
        image: image.to_string(),
        mode: LaunchMode::Entrypoint,
        entrypoint: None,
        args: None,
        env: BTreeMap::new(),
        ports: vec![],
        label: None,
        gpus: 0,
        onstart: None,
        direct: false,
        jupyter_lab: false,
        jupyter_dir: None,
        http_ports: vec![],
    }
}

/// A spec with every field set, and values that stress quoting.
fn full_spec() -> InstanceSpec {
    InstanceSpec {
        image: "registry.example:5000/team/pytorch:2.3-cuda12".to_string(),
        mode: LaunchMode::Jupyter,
        entrypoint: Some("/bin/sh -c".to_string()),
        args: Some(vec![
            "a b".into(),
            "'quoted' \"double\"".into(),
            "$HOME; rm -rf /".into(),
            "".into(),
            "ünïcødé ✓".into(),
        ]),
        env: BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("JSON".to_string(), r#"{"k": [1, "x\"y"]}"#.to_string()),
            ("MULTI".to_string(), "line1\nline2\ttab".to_string()),
        ]),
        ports: vec![
            PortSpec {
                port: 22,
                proto: PortProto::Tcp,
            },
            PortSpec {
                port: 7000,
                proto: PortProto::Udp,
            },
        ],
        label: Some("my 'label' — x".to_string()),
        gpus: 2,
        onstart: Some("#!/bin/bash\necho 'on' \"$X\"\n".to_string()),
        direct: true,
        jupyter_lab: true,
        jupyter_dir: Some("/workspace dir".to_string()),
        http_ports: vec![7000],
    }
}

fn facts(name: &str, ip: &str) -> HostFacts {
    HostFacts {
        name: name.to_string(),
        public_ip: ip.to_string(),
        port_range: Some(PortRange {
            first: 40000,
            last: 40999,
        }),
        gpus: vec![
            Gpu {
                index: 0,
                name: "NVIDIA A100".into(),
                uuid: "GPU-0000".into(),
            },
            Gpu {
                index: 1,
                name: "NVIDIA A100".into(),
                uuid: "GPU-0001".into(),
            },
        ],
        dns_names: vec!["gpu1.example.org".into()],
        docker_version: "26.1.5".into(),
        agent_version: "0.1.0".into(),
    }
}

fn actual(id: i64, phase: Phase) -> ActualInstance {
    ActualInstance {
        id,
        container_id: Some(format!("c0ffee{id:04}")),
        phase,
        ports: vec![
            PortMapping {
                internal: 22,
                external: 40001,
                proto: PortProto::Tcp,
                local: false,
            },
            PortMapping {
                internal: 7000,
                external: 40002,
                proto: PortProto::Udp,
                local: true,
            },
        ],
        gpu_ids: vec!["GPU-0000".into(), "GPU-0001".into()],
        started_at: Some("2024-05-01T12:00:00.123456789Z".into()),
        applied: Some(RunState::Running { since_ms: T0 + 7 }),
        ssh_host_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnPd5pd0rD9cpvxH2heppxFMa6APB2elY98wLravxxd berth-instance".into()],
    }
}

fn conflict_message(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("expected a Conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

async fn migrations_are_idempotent(db: Db) {
    let expected = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(db.store.backend_name(), expected);
    if let Backend::Sqlite = db.backend {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        pool.close().await;
    }
    db.store
        .create_user("alice", "h1", false, T0)
        .await
        .unwrap();
    // A second store on the same, already migrated database, while the first is open.
    let second = db.open().await;
    assert_eq!(second.backend_name(), expected);
    assert_eq!(second.list_users().await.unwrap().len(), 1);
    second.close().await;
    // And again after closing it.
    let third = db.open().await;
    assert!(third.get_user("alice").await.unwrap().is_some());
    third.close().await;
}

async fn meta_keeps_the_first_value(db: Db) {
    let s = &db.store;
    assert_eq!(s.meta_get("deployment").await.unwrap(), None);
    assert_eq!(
        s.meta_get_or_insert("deployment", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        s.meta_get_or_insert("deployment", "second").await.unwrap(),
        "first"
    );
    assert_eq!(
        s.meta_get("deployment").await.unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(s.meta_get("other").await.unwrap(), None);

    // Racing callers all get the one value that won.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.meta_get_or_insert("raced", &format!("value-{i}"))
                .await
                .unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    let stored = s.meta_get("raced").await.unwrap().unwrap();
    assert!(got.iter().all(|v| *v == stored), "{got:?} vs {stored}");
}

async fn users(db: Db) {
    let s = &db.store;
    assert!(s.list_users().await.unwrap().is_empty());
    let bob = s.create_user("bob", "hash-bob", false, T0).await.unwrap();
    assert_eq!(bob.name, "bob");
    assert!(!bob.admin);
    let alice = s
        .create_user("alice", "hash-alice", true, T0 + 1)
        .await
        .unwrap();
    assert!(alice.admin);
    assert_eq!(alice.created_at_ms, T0 + 1);

    let m = conflict_message(s.create_user("alice", "another-hash", false, T0).await);
    assert_eq!(m, "user alice already exists");
    let m = conflict_message(s.create_user("carol", "hash-bob", false, T0).await);
    assert!(m.contains("carol"), "{m}");
    assert!(s.get_user("carol").await.unwrap().is_none());

    assert_eq!(s.get_user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(s.get_user("nobody").await.unwrap(), None);
    assert_eq!(
        s.user_by_key_hash("hash-bob").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(s.user_by_key_hash("nope").await.unwrap(), None);
    assert_eq!(
        s.list_users().await.unwrap(),
        vec![alice.clone(), bob.clone()]
    );

    assert!(s.set_user_key_hash("bob", "hash-bob-2").await.unwrap());
    assert_eq!(s.user_by_key_hash("hash-bob").await.unwrap(), None);
    assert_eq!(
        s.user_by_key_hash("hash-bob-2")
            .await
            .unwrap()
            .unwrap()
            .name,
        "bob"
    );
    assert!(!s.set_user_key_hash("nobody", "x").await.unwrap());
    conflict_message(s.set_user_key_hash("bob", "hash-alice").await);

    assert!(s.delete_user("bob").await.unwrap());
    assert!(!s.delete_user("bob").await.unwrap());
    assert_eq!(s.list_users().await.unwrap(), vec![alice]);
    // The name is free again.
    s.create_user("bob", "hash-bob-3", false, T0).await.unwrap();
}

async fn user_deletion_is_refused_while_owning_instances(db: Db) {
    let s = &db.store;
    s.create_user("alice", "ha", false, T0).await.unwrap();
    let run = RunState::Stopped;
    let a = s
        .insert_instance("alice", "h1", &spec("img"), &run, T0)
        .await
        .unwrap();
    let b = s
        .insert_instance("alice", "h2", &spec("img"), &run, T0)
        .await
        .unwrap();
    let m = conflict_message(s.delete_user("alice").await);
    assert_eq!(m, "user alice still has 2 instances; destroy them first");
    assert!(s.get_user("alice").await.unwrap().is_some());
    assert!(s.delete_instance(a).await.unwrap());
    let m = conflict_message(s.delete_user("alice").await);
    assert!(m.contains("still has 1 instance"), "{m}");
    assert!(s.delete_instance(b).await.unwrap());
    assert!(s.delete_user("alice").await.unwrap());
    assert!(s.get_user("alice").await.unwrap().is_none());
    // An instance of nobody is refused.
    let m = conflict_message(
        s.insert_instance("alice", "h1", &spec("img"), &run, T0)
            .await,
    );
    assert!(m.contains("alice"), "{m}");
}

async fn hosts(db: Db) {
    let s = &db.store;
    assert!(s.list_hosts().await.unwrap().is_empty());
    assert_eq!(s.get_host("zulu").await.unwrap(), None);
    let zulu = facts("zulu", "10.0.0.2");
    let mut alpha = facts("alpha", "10.0.0.1");
    alpha.port_range = None;
    alpha.gpus.clear();
    s.upsert_host(&zulu, T0).await.unwrap();
    s.upsert_host(&alpha, T0 + 5).await.unwrap();

    let listed = s.list_hosts().await.unwrap();
    assert_eq!(
        listed.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "zulu"]
    );
    assert_eq!(listed[0].facts, alpha);
    assert_eq!(listed[0].last_seen_ms, T0 + 5);
    assert_eq!(listed[1].facts, zulu);

    // Upserting replaces the facts.
    let mut zulu2 = zulu.clone();
    zulu2.public_ip = "192.0.2.7".into();
    zulu2.agent_version = "0.2.0".into();
    s.upsert_host(&zulu2, T0 + 10).await.unwrap();
    let h = s.get_host("zulu").await.unwrap().unwrap();
    assert_eq!(h.name, "zulu");
    assert_eq!(h.facts, zulu2);
    assert_eq!(h.last_seen_ms, T0 + 10);
    assert_eq!(s.list_hosts().await.unwrap().len(), 2);

    // Touching moves only the time.
    assert!(s.touch_host("zulu", T0 + 20).await.unwrap());
    let h = s.get_host("zulu").await.unwrap().unwrap();
    assert_eq!((h.facts, h.last_seen_ms), (zulu2, T0 + 20));
    assert!(!s.touch_host("nowhere", T0).await.unwrap());
    assert_eq!(s.get_host("nowhere").await.unwrap(), None);
}

async fn instances_round_trip(db: Db) {
    let s = &db.store;
    s.create_user("alice", "ha", false, T0).await.unwrap();
    s.create_user("bob", "hb", false, T0).await.unwrap();
    let full = full_spec();
    let running = RunState::Running { since_ms: T0 + 42 };

    let a1 = s
        .insert_instance("alice", "h1", &full, &running, T0 + 1)
        .await
        .unwrap();
    assert_eq!(a1, 1, "ids start at 1");
    let b1 = s
        .insert_instance("bob", "h2", &spec("b1"), &RunState::Stopped, T0 + 2)
        .await
        .unwrap();
    let a2 = s
        .insert_instance("alice", "h2", &spec("a2"), &RunState::Stopped, T0 + 3)
        .await
        .unwrap();
    assert!(a1 < b1 && b1 < a2, "{a1} {b1} {a2}");

    let got = s.get_instance(a1).await.unwrap().unwrap();
    assert_eq!(got.id, a1);
    assert_eq!(got.owner, "alice");
    assert_eq!(got.host, "h1");
    assert_eq!(got.spec, full);
    assert_eq!(got.run, running);
    assert_eq!(got.actual, None);
    assert_eq!(got.created_at_ms, T0 + 1);
    assert_eq!(s.get_instance(9999).await.unwrap(), None);

    let ids = |v: Vec<berth_store::InstanceRow>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_instances(None).await.unwrap()), [a1, b1, a2]);
    assert_eq!(
        ids(s.list_instances(Some("alice")).await.unwrap()),
        [a1, a2]
    );
    assert_eq!(ids(s.list_instances(Some("bob")).await.unwrap()), [b1]);
    assert!(s.list_instances(Some("carol")).await.unwrap().is_empty());
    assert_eq!(ids(s.list_host_instances("h2").await.unwrap()), [b1, a2]);
    assert_eq!(ids(s.list_host_instances("h1").await.unwrap()), [a1]);
    assert!(s.list_host_instances("h3").await.unwrap().is_empty());
    assert_eq!(
        s.count_instances_by_host().await.unwrap(),
        [("h1".to_string(), 1), ("h2".to_string(), 2)]
    );

    // Run state.
    assert!(s.set_run_state(a1, &RunState::Stopped).await.unwrap());
    assert_eq!(
        s.get_instance(a1).await.unwrap().unwrap().run,
        RunState::Stopped
    );
    let again = RunState::Running { since_ms: i64::MAX };
    assert!(s.set_run_state(a1, &again).await.unwrap());
    assert_eq!(s.get_instance(a1).await.unwrap().unwrap().run, again);
    assert!(!s.set_run_state(9999, &again).await.unwrap());

    // Actual state: every phase, every field.
    let phases = [
        Phase::Pulling { progress: None },
        Phase::Pulling {
            progress: Some(PullProgress {
                current: 123_456_789_012,
                total: u64::MAX,
                layers_done: 3,
                layers_total: 7,
            }),
        },
        Phase::Creating,
        Phase::Connecting,
        Phase::Running,
        Phase::Stopped,
        Phase::Exited { code: -9 },
        Phase::Exited { code: i64::MIN },
        Phase::Failed {
            reason: "pull failed: \"manifest unknown\"\n— ünïcødé".into(),
        },
    ];
    for phase in phases {
        let act = actual(a1, phase);
        assert!(s.set_actual(a1, Some(&act)).await.unwrap());
        let got = s.get_instance(a1).await.unwrap().unwrap();
        assert_eq!(got.actual.as_ref(), Some(&act));
        // The rest of the row is untouched.
        assert_eq!((got.spec, got.run), (full.clone(), again.clone()));
    }
    let mut bare = actual(a1, Phase::Creating);
    bare.container_id = None;
    bare.ports.clear();
    bare.gpu_ids.clear();
    bare.started_at = None;
    bare.applied = None;
    assert!(s.set_actual(a1, Some(&bare)).await.unwrap());
    assert_eq!(
        s.get_instance(a1).await.unwrap().unwrap().actual,
        Some(bare)
    );
    assert!(s.set_actual(a1, None).await.unwrap());
    assert_eq!(s.get_instance(a1).await.unwrap().unwrap().actual, None);
    assert!(!s
        .set_actual(9999, Some(&actual(9999, Phase::Running)))
        .await
        .unwrap());
    // Lists carry the actual state too.
    let act = actual(b1, Phase::Running);
    s.set_actual(b1, Some(&act)).await.unwrap();
    let listed = s.list_instances(Some("bob")).await.unwrap();
    assert_eq!(listed[0].actual.as_ref(), Some(&act));

    // Delete.
    assert!(s.delete_instance(b1).await.unwrap());
    assert!(!s.delete_instance(b1).await.unwrap());
    assert_eq!(s.get_instance(b1).await.unwrap(), None);
    assert_eq!(ids(s.list_instances(None).await.unwrap()), [a1, a2]);
    assert_eq!(
        s.count_instances_by_host().await.unwrap(),
        [("h1".to_string(), 1), ("h2".to_string(), 1)]
    );
}

async fn ids_are_never_reused(db: Db) {
    let s = &db.store;
    s.create_user("alice", "ha", false, T0).await.unwrap();
    let insert = |s: Store| async move {
        s.insert_instance("alice", "h1", &spec("img"), &RunState::Stopped, T0)
            .await
            .unwrap()
    };
    let first: Vec<i64> = vec![
        insert(s.clone()).await,
        insert(s.clone()).await,
        insert(s.clone()).await,
    ];
    assert_eq!(first, [1, 2, 3]);
    // Deleting the highest id does not free it.
    assert!(s.delete_instance(3).await.unwrap());
    assert_eq!(insert(s.clone()).await, 4);
    // Nor does deleting them all.
    for id in [1, 2, 4] {
        assert!(s.delete_instance(id).await.unwrap());
    }
    assert_eq!(insert(s.clone()).await, 5);
    assert!(s.delete_instance(5).await.unwrap());
    // Nor does a restart.
    s.close().await;
    let reopened = db.open().await;
    assert_eq!(insert(reopened.clone()).await, 6);
    reopened.close().await;
}

async fn data_survives_reopening(db: Db) {
    let s = &db.store;
    s.meta_get_or_insert("deployment", "dep-123").await.unwrap();
    let alice = s.create_user("alice", "ha", true, T0).await.unwrap();
    let bob = s.create_user("bob", "hb", false, T0 + 1).await.unwrap();
    s.upsert_host(&facts("h1", "10.0.0.1"), T0 + 2)
        .await
        .unwrap();
    let a = s
        .insert_instance(
            "alice",
            "h1",
            &full_spec(),
            &RunState::Running { since_ms: T0 },
            T0 + 3,
        )
        .await
        .unwrap();
    s.set_actual(a, Some(&actual(a, Phase::Running)))
        .await
        .unwrap();
    let b = s
        .insert_instance("bob", "h1", &spec("x"), &RunState::Stopped, T0 + 4)
        .await
        .unwrap();

    let users = s.list_users().await.unwrap();
    let hosts = s.list_hosts().await.unwrap();
    let instances = s.list_instances(None).await.unwrap();
    assert_eq!(users, vec![alice, bob]);
    assert_eq!(instances.len(), 2);
    s.close().await;

    let s = db.open().await;
    assert_eq!(
        s.meta_get("deployment").await.unwrap().as_deref(),
        Some("dep-123")
    );
    assert_eq!(s.list_users().await.unwrap(), users);
    assert_eq!(s.list_hosts().await.unwrap(), hosts);
    assert_eq!(s.list_instances(None).await.unwrap(), instances);
    assert_eq!(
        s.get_instance(a).await.unwrap().unwrap().actual,
        Some(actual(a, Phase::Running))
    );
    assert_eq!(
        s.list_host_instances("h1")
            .await
            .unwrap()
            .last()
            .unwrap()
            .id,
        b
    );
    s.close().await;
}

async fn concurrent_inserts_all_succeed(db: Db) {
    let s = db.store.clone();
    s.create_user("alice", "ha", false, T0).await.unwrap();
    // Half the writers go through a second store, as a second process would.
    let other = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..20i64 {
        let s = if i % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            let id = s
                .insert_instance(
                    "alice",
                    &format!("h{}", i % 3),
                    &spec(&format!("img{i}")),
                    &RunState::Running { since_ms: T0 + i },
                    T0 + i,
                )
                .await
                .unwrap_or_else(|e| panic!("insert {i}: {e:#}"));
            // And an update in the same race.
            s.set_actual(id, Some(&actual(id, Phase::Creating)))
                .await
                .unwrap_or_else(|e| panic!("set_actual {i}: {e:#}"));
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "ids not distinct: {ids:?}");
    let listed = s.list_instances(Some("alice")).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), ids);
    assert!(listed.iter().all(|i| i.actual.is_some()));
    // Racing deletions of the owner are refused, never half-done.
    let (d1, d2) = tokio::join!(s.delete_user("alice"), other.delete_user("alice"));
    conflict_message(d1);
    conflict_message(d2);
    other.close().await;
}

async fn corrupt_json_is_reported(db: Db) {
    let s = &db.store;
    s.create_user("alice", "ha", false, T0).await.unwrap();
    let id = s
        .insert_instance("alice", "h1", &spec("img"), &RunState::Stopped, T0)
        .await
        .unwrap();
    // Damage the row behind the store's back.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE instances SET spec = $1 WHERE id = $2")
        .bind("{\"image\": 42")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    match s.get_instance(id).await {
        Err(StoreError::Corrupt { what, .. }) => {
            assert_eq!(what, format!("spec of instance {id}"))
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        s.list_instances(None).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn unknown_url_schemes_are_refused() {
    for url in [
        "mysql://root:pw@localhost/berth",
        "berth.db",
        "file:///x.db",
    ] {
        match Store::open(url).await {
            Err(StoreError::BadUrl(m)) => {
                assert!(m.contains("sqlite:") && m.contains("postgres://"), "{m}")
            }
            other => panic!("{url}: expected BadUrl, got {other:?}"),
        }
    }
}

#[test]
fn test_database_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:55432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:55432/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@h", "t1"),
        "postgresql://u:p@h/t1"
    );
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "t1"),
        "postgres://u@h/t1?sslmode=disable"
    );
}

async fn ssh_keys(db: Db) {
    let s = &db.store;
    s.create_user("kim", "hash-kim", false, T0).await.unwrap();
    s.create_user("lee", "hash-lee", false, T0).await.unwrap();
    let k1 = s
        .add_ssh_key("kim", "ssh-ed25519 AAAA1 kim@a", "SHA256:one", T0)
        .await
        .unwrap();
    let k2 = s
        .add_ssh_key("kim", "ssh-ed25519 AAAA2", "SHA256:two", T0 + 1)
        .await
        .unwrap();
    assert!(k2.id > k1.id);
    // The same key on two accounts is fine; twice on one is a conflict.
    s.add_ssh_key("lee", "ssh-ed25519 AAAA1 lee", "SHA256:one", T0)
        .await
        .unwrap();
    let m = conflict_message(
        s.add_ssh_key("kim", "ssh-ed25519 AAAA1", "SHA256:one", T0)
            .await,
    );
    assert!(m.contains("already on this account"), "{m}");
    let m = conflict_message(s.add_ssh_key("nobody", "k", "f", T0).await);
    assert!(m.contains("no user nobody"), "{m}");
    let kims = s.list_ssh_keys("kim").await.unwrap();
    assert_eq!(kims, vec![k1.clone(), k2.clone()]);
    // Only the owner removes a key.
    assert!(!s.delete_ssh_key("lee", k1.id).await.unwrap());
    assert!(s.delete_ssh_key("kim", k1.id).await.unwrap());
    assert_eq!(s.list_ssh_keys("kim").await.unwrap(), vec![k2]);
    assert_eq!(s.list_ssh_keys("lee").await.unwrap().len(), 1);

    // Keys attached to one instance.
    let id = s
        .insert_instance("kim", "h", &spec("x"), &RunState::Stopped, T0)
        .await
        .unwrap();
    assert!(s
        .get_instance(id)
        .await
        .unwrap()
        .unwrap()
        .extra_keys
        .is_empty());
    let keys = vec!["ssh-ed25519 AAAA3 extra".to_string()];
    assert!(s.set_instance_keys(id, &keys).await.unwrap());
    assert_eq!(s.get_instance(id).await.unwrap().unwrap().extra_keys, keys);
    assert!(!s.set_instance_keys(id + 1000, &keys).await.unwrap());

    // Secrets berth makes for an instance.
    assert_eq!(
        s.get_instance(id).await.unwrap().unwrap().secrets,
        Default::default()
    );
    let secrets = berth_core::spec::InstanceSecrets {
        jupyter_token: Some("tok".into()),
        access_token: Some("acc".into()),
        tls: Some(berth_core::spec::TlsMaterial {
            cert_pem: "-----BEGIN CERTIFICATE-----\nx\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\ny\n".into(),
            names: vec!["127.0.0.1".into(), "localhost".into()],
            not_after_unix: 1_900_000_000,
            ca_sha256: "ab12".into(),
        }),
    };
    assert!(s.set_secrets(id, &secrets).await.unwrap());
    assert_eq!(
        db.open()
            .await
            .get_instance(id)
            .await
            .unwrap()
            .unwrap()
            .secrets,
        secrets
    );

    // Proxy ports: the lowest free one, never two instances on one, kept across reopening.
    let id2 = s
        .insert_instance("kim", "h", &spec("x"), &RunState::Stopped, T0)
        .await
        .unwrap();
    let id3 = s
        .insert_instance("kim", "h", &spec("x"), &RunState::Stopped, T0)
        .await
        .unwrap();
    assert_eq!(
        s.allocate_proxy_port(id, 30000, 30001).await.unwrap(),
        Some(30000)
    );
    assert_eq!(
        s.allocate_proxy_port(id2, 30000, 30001).await.unwrap(),
        Some(30001)
    );
    assert_eq!(
        s.allocate_proxy_port(id3, 30000, 30001).await.unwrap(),
        None,
        "range used up"
    );
    assert_eq!(
        db.open()
            .await
            .get_instance(id2)
            .await
            .unwrap()
            .unwrap()
            .proxy_port,
        Some(30001)
    );
    assert!(s.delete_instance(id).await.unwrap());
    assert_eq!(
        s.allocate_proxy_port(id3, 30000, 30001).await.unwrap(),
        Some(30000),
        "freed on delete"
    );
    drop(db.open().await);
}

async fn sessions(db: Db) {
    let s = &db.store;
    s.create_user("kim", "hash-kim", false, T0).await.unwrap();
    s.create_user("lee", "hash-lee", true, T0).await.unwrap();
    s.create_session("sess-kim", "kim", T0, T0 + 1000)
        .await
        .unwrap();
    s.create_session("sess-lee", "lee", T0, T0 + 5000)
        .await
        .unwrap();
    let kim = s.session_user("sess-kim", T0 + 999).await.unwrap().unwrap();
    assert_eq!((kim.name.as_str(), kim.admin), ("kim", false));
    assert!(s.session_user("sess-lee", T0).await.unwrap().unwrap().admin);
    // Expired and unknown sessions sign nobody in.
    assert_eq!(s.session_user("sess-kim", T0 + 1000).await.unwrap(), None);
    assert_eq!(s.session_user("nope", T0).await.unwrap(), None);
    // A new session sweeps the expired ones.
    s.create_session("sess-kim2", "kim", T0 + 2000, T0 + 9000)
        .await
        .unwrap();
    assert!(!s.delete_session("sess-kim").await.unwrap());
    let m = conflict_message(s.create_session("x", "nobody", T0, T0 + 1).await);
    assert!(m.contains("no user nobody"), "{m}");
    assert!(s.delete_session("sess-kim2").await.unwrap());
    assert_eq!(s.session_user("sess-kim2", T0 + 2000).await.unwrap(), None);
    // Removing a user ends their sessions.
    assert!(s.delete_user("lee").await.unwrap());
    assert_eq!(s.session_user("sess-lee", T0).await.unwrap(), None);
    assert!(!s.delete_session("sess-lee").await.unwrap());
}

async fn templates(db: Db) {
    use berth_core::api::CreateInstance;
    let s = &db.store;
    s.create_user("kim", "hash-kim", false, T0).await.unwrap();
    s.create_user("lee", "hash-lee", false, T0).await.unwrap();
    assert!(s.list_templates("kim").await.unwrap().is_empty());
    assert_eq!(s.get_template("kim", "web").await.unwrap(), None);

    // Settings with every field set, and values that stress quoting.
    let settings = CreateInstance {
        image: "registry.example:5000/team/app:1".into(),
        mode: Some(LaunchMode::Jupyter),
        template: None,
        entrypoint: None,
        args: None,
        docker_options: Some("-e 'A=a b' -p 7000/udp".into()),
        env: [("Q".to_string(), "it's \"odd\" $HOME\n\\".to_string())].into(),
        ports: vec!["8765/tcp".into()],
        label: Some("lab".into()),
        gpus: Some(2),
        onstart: Some("cd '/srv/app dir' || exit 1\nexec python3 'a b' ''\n".into()),
        direct: Some(true),
        jupyter_lab: Some(true),
        jupyter_dir: Some("/work".into()),
        http_ports: vec![7860],
    };
    let web = s
        .create_template("kim", "web", Some("# Web\nruns the server"), &settings, T0)
        .await
        .unwrap();
    assert_eq!((web.owner.as_str(), web.name.as_str()), ("kim", "web"));
    assert_eq!(web.created_at_ms, T0);
    assert_eq!(web.updated_at_ms, T0);
    assert_eq!(
        s.get_template("kim", "web").await.unwrap(),
        Some(web.clone())
    );
    // Names are per user; a second one of a name is a conflict and changes nothing.
    let plain = CreateInstance {
        image: "x".into(),
        ..Default::default()
    };
    let lees = s
        .create_template("lee", "web", None, &plain, T0 + 5)
        .await
        .unwrap();
    assert_eq!(lees.readme, None);
    let m = conflict_message(s.create_template("kim", "web", None, &plain, T0).await);
    assert_eq!(m, "template web already exists");
    assert_eq!(
        s.get_template("kim", "web").await.unwrap(),
        Some(web.clone())
    );
    let m = conflict_message(s.create_template("nobody", "web", None, &plain, T0).await);
    assert!(m.contains("no user nobody"), "{m}");
    let alpha = s
        .create_template("kim", "alpha", None, &plain, T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        s.list_templates("kim").await.unwrap(),
        vec![alpha.clone(), web.clone()]
    );
    assert_eq!(s.list_templates("lee").await.unwrap(), vec![lees.clone()]);

    // Update: readme and settings replaced, created kept, updated moved.
    assert!(s
        .update_template("kim", "web", None, &plain, T0 + 10)
        .await
        .unwrap());
    let got = s.get_template("kim", "web").await.unwrap().unwrap();
    assert_eq!(got.readme, None);
    assert_eq!(got.settings, plain);
    assert_eq!((got.created_at_ms, got.updated_at_ms), (T0, T0 + 10));
    assert!(!s
        .update_template("kim", "nope", None, &plain, T0)
        .await
        .unwrap());
    assert!(!s
        .update_template("nobody", "web", None, &plain, T0)
        .await
        .unwrap());
    // The other user's template of the same name is untouched.
    assert_eq!(s.get_template("lee", "web").await.unwrap(), Some(lees));
    // Survives reopening.
    let reopened = db.open().await;
    assert_eq!(
        reopened.get_template("kim", "alpha").await.unwrap(),
        Some(alpha)
    );
    reopened.close().await;

    // Delete: only the owner's, once.
    assert!(!s.delete_template("lee", "alpha").await.unwrap());
    assert!(s.delete_template("kim", "alpha").await.unwrap());
    assert!(!s.delete_template("kim", "alpha").await.unwrap());
    assert_eq!(s.list_templates("kim").await.unwrap().len(), 1);
    // The name is free again.
    s.create_template("kim", "alpha", None, &settings, T0)
        .await
        .unwrap();
    assert_eq!(
        s.get_template("kim", "alpha")
            .await
            .unwrap()
            .unwrap()
            .settings,
        settings
    );

    // A user's templates go with the user.
    assert!(s.delete_user("kim").await.unwrap());
    assert!(s.list_templates("kim").await.unwrap().is_empty());
    assert_eq!(s.list_templates("lee").await.unwrap().len(), 1);
}
