//! The route table: polled from the server every second (the full table, level-triggered),
//! refreshed at once when a request names something it does not know, and kept as it was
//! while the server cannot be reached.
use crate::server::Server;
use crate::ssh::SshPorts;
use berth_core::protocol::proxy::{Route, Routes};
use berth_core::protocol::PortRange;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the table is fetched when nothing asks for it sooner.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);
/// At most this many fetches a second, however many requests name unknown instances.
const MIN_GAP: Duration = Duration::from_millis(100);
/// How long a request for an unknown name waits for a fresh table.
const REFRESH_WAIT: Duration = Duration::from_secs(2);

/// One instance's route and a token cancelled when the route goes or changes where it
/// leads (its connections then end).
pub(crate) struct Entry {
    pub route: Route,
    pub alive: CancellationToken,
}

#[derive(Default)]
pub(crate) struct Table {
    pub instances: HashMap<i64, Arc<Entry>>,
    pub ssh: HashMap<u16, Arc<Entry>>,
}

/// Whether two routes of one instance lead to the same place in the same way (its SSH
/// proxy port aside: connections made through an old port still reach the same instance).
fn same_target(a: &Route, b: &Route) -> bool {
    a.host == b.host
        && a.public_ip == b.public_ip
        && a.jupyter == b.jupyter
        && a.http_ports == b.http_ports
        && a.access_token == b.access_token
}

pub(crate) struct RouteBook {
    /// (fetches completed, the last good table).
    state: watch::Sender<(u64, Arc<Table>)>,
    /// Fetches started.
    started: AtomicU64,
    wake: Notify,
}

impl RouteBook {
    pub(crate) fn new() -> Arc<RouteBook> {
        Arc::new(RouteBook {
            state: watch::Sender::new((0, Arc::new(Table::default()))),
            started: AtomicU64::new(0),
            wake: Notify::new(),
        })
    }

    pub(crate) fn table(&self) -> Arc<Table> {
        self.state.borrow().1.clone()
    }

    pub(crate) fn by_ssh_port(&self, port: u16) -> Option<Arc<Entry>> {
        self.table().ssh.get(&port).cloned()
    }

    /// The route of `instance` if `usable` accepts it; when not, asks for a fresh table
    /// (rate-limited) and looks again, so a just-created instance works at once. Unknown
    /// instances and unusable routes take the same path (and about the same time).
    pub(crate) async fn find(
        &self,
        instance: i64,
        usable: impl Fn(&Route) -> bool,
    ) -> Option<Arc<Entry>> {
        let look = || {
            self.table()
                .instances
                .get(&instance)
                .filter(|e| usable(&e.route))
                .cloned()
        };
        if let Some(e) = look() {
            return Some(e);
        }
        self.refresh_now().await;
        look()
    }

    /// Waits (at most [`REFRESH_WAIT`]) for a fetch that starts after this call.
    async fn refresh_now(&self) {
        let mut rx = self.state.subscribe();
        let target = self.started.load(Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let _ = tokio::time::timeout(REFRESH_WAIT, rx.wait_for(|(done, _)| *done >= target)).await;
    }

    fn begin_fetch(&self) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records fetch `n` as done, with a new table or (failed) without.
    fn finish_fetch(&self, n: u64, table: Option<Arc<Table>>) {
        self.state.send_modify(|(done, t)| {
            *done = (*done).max(n);
            if let Some(table) = table {
                *t = table;
            }
        });
    }
}

/// Builds the table for `routes`, keeping the entries (and their connections) of routes that
/// still lead to the same place and ending the others'. Problems go to `problems`.
fn build(
    old: &Table,
    routes: Routes,
    ssh_range: &PortRange,
    reserved: &[u16],
    shutdown: &CancellationToken,
    problems: &mut BTreeSet<String>,
) -> Table {
    let mut t = Table::default();
    for route in routes.routes {
        if t.instances.contains_key(&route.instance) {
            problems.insert(format!(
                "instance {} has more than one route; using the first",
                route.instance
            ));
            continue;
        }
        let entry = match old.instances.get(&route.instance) {
            Some(e) if e.route == route => e.clone(),
            Some(e) if same_target(&e.route, &route) => Arc::new(Entry {
                route,
                alive: e.alive.clone(),
            }),
            _ => Arc::new(Entry {
                route,
                alive: shutdown.child_token(),
            }),
        };
        if let Some(p) = entry.route.ssh_port {
            if !ssh_range.contains(p) || reserved.contains(&p) {
                problems.insert(format!(
                    "instance {}: SSH proxy port {p} is outside the proxy's range {}-{} (or taken by the proxy); not served",
                    entry.route.instance, ssh_range.first, ssh_range.last
                ));
            } else if let Some(other) = t.ssh.get(&p) {
                problems.insert(format!(
                    "SSH proxy port {p} is given to instances {} and {}; serving {}",
                    other.route.instance, entry.route.instance, other.route.instance
                ));
            } else {
                t.ssh.insert(p, entry.clone());
            }
        }
        t.instances.insert(entry.route.instance, entry);
    }
    for (id, e) in &old.instances {
        let kept = t
            .instances
            .get(id)
            .is_some_and(|n| same_target(&n.route, &e.route));
        if !kept {
            e.alive.cancel();
        }
    }
    t
}

/// Fetches the table and applies it: the shared table, then the SSH listeners.
pub(crate) struct Poller {
    pub book: Arc<RouteBook>,
    pub server: Arc<Server>,
    pub ssh: SshPorts,
    pub ssh_range: PortRange,
    pub reserved: Vec<u16>,
    pub shutdown: CancellationToken,
    failing: bool,
    problems: BTreeSet<String>,
    /// The version of the last table fetched (`None` until one is, or after a failure).
    version: Option<u64>,
}

impl Poller {
    pub(crate) fn new(
        book: Arc<RouteBook>,
        server: Arc<Server>,
        ssh: SshPorts,
        ssh_range: PortRange,
        reserved: Vec<u16>,
        shutdown: CancellationToken,
    ) -> Poller {
        Poller {
            book,
            server,
            ssh,
            ssh_range,
            reserved,
            shutdown,
            failing: false,
            problems: BTreeSet::new(),
            version: None,
        }
    }

    /// Fetches the table: a long poll once a version is known, cut short by a route miss
    /// (which wants the table now). Returns whether the server answered.
    pub(crate) async fn fetch_once(&mut self) -> bool {
        let n = self.book.begin_fetch();
        let fetched = match self.version {
            Some(v) => tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                r = self.server.routes(Some(v)) => r,
                _ = self.book.wake.notified() => tokio::select! {
                    _ = self.shutdown.cancelled() => return false,
                    r = self.server.routes(None) => r,
                },
            },
            None => tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                r = self.server.routes(None) => r,
            },
        };
        match fetched {
            Ok(routes) => {
                self.version = Some(routes.version);
                if self.failing {
                    tracing::info!(server = %self.server.base(), "the server answers again; routes refreshed");
                    self.failing = false;
                }
                let mut problems = BTreeSet::new();
                let table = Arc::new(build(
                    &self.book.table(),
                    routes,
                    &self.ssh_range,
                    &self.reserved,
                    &self.shutdown,
                    &mut problems,
                ));
                for p in problems.difference(&self.problems) {
                    tracing::warn!("route table: {p}");
                }
                self.problems = problems;
                self.book.finish_fetch(n, Some(table.clone()));
                self.ssh.sync(&table).await;
                true
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(server = %self.server.base(), "cannot refresh the routes ({e}); serving the last table until the server answers");
                    self.failing = true;
                } else {
                    tracing::debug!("routes still not refreshed: {e}");
                }
                self.book.finish_fetch(n, None);
                self.version = None;
                false
            }
        }
    }

    /// Polls until shutdown, then closes the SSH listeners.
    pub(crate) async fn run(mut self) {
        loop {
            let began = Instant::now();
            let answered = self.fetch_once().await;
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(began + MIN_GAP) => {}
            }
            if !answered {
                // The server is away: try again after a while, or at once on a route miss.
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(began + POLL_EVERY) => {}
                    _ = self.book.wake.notified() => {}
                }
            }
        }
        self.ssh.close_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(instance: i64, host: &str, ssh: Option<u16>) -> Route {
        Route {
            instance,
            host: host.into(),
            public_ip: "10.0.0.1".into(),
            ssh_port: ssh,
            jupyter: true,
            http_ports: vec![],
            access_token: "t".into(),
        }
    }

    #[test]
    fn tables_keep_unchanged_routes_and_end_moved_ones() {
        let shutdown = CancellationToken::new();
        let range = PortRange {
            first: 40000,
            last: 40999,
        };
        let mut problems = BTreeSet::new();
        let t1 = build(
            &Table::default(),
            Routes {
                version: 0,
                routes: vec![
                    route(1, "h1", Some(40001)),
                    route(2, "h1", Some(40002)),
                    route(3, "h1", Some(40003)),
                    route(4, "h1", None),
                ],
            },
            &range,
            &[],
            &shutdown,
            &mut problems,
        );
        assert!(problems.is_empty());
        let alive = |t: &Table, i: i64| t.instances[&i].alive.clone();
        let (a1, a2, a3, a4) = (alive(&t1, 1), alive(&t1, 2), alive(&t1, 3), alive(&t1, 4));
        let t2 = build(
            &t1,
            Routes {
                version: 0,
                routes: vec![
                    route(1, "h1", Some(40001)),
                    route(2, "h2", Some(40002)),
                    route(4, "h1", Some(40004)),
                    route(5, "h1", Some(50000)),
                    route(6, "h1", Some(40001)),
                ],
            },
            &range,
            &[],
            &shutdown,
            &mut problems,
        );
        assert!(!a1.is_cancelled(), "unchanged");
        assert!(a2.is_cancelled(), "moved host");
        assert!(a3.is_cancelled(), "gone");
        assert!(!a4.is_cancelled(), "only its ssh port changed");
        assert_eq!(t2.ssh[&40001].route.instance, 1);
        assert_eq!(t2.ssh[&40002].route.host, "h2");
        assert!(!t2.ssh.contains_key(&50000));
        assert_eq!(problems.len(), 2, "{problems:?}");
        shutdown.cancel();
        assert!(t2.instances[&5].alive.is_cancelled());
    }
}
