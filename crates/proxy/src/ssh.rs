//! SSH proxy ports: one TCP listener per route's `ssh_port`, relayed through the instance's
//! agent tunnel to its port 22. Listeners follow the route table; each connection looks its
//! route up when it arrives, so a moved or destroyed instance stops being reached at once.
use crate::routes::Table;
use crate::Shared;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) struct SshPorts {
    listen_ip: IpAddr,
    shared: Arc<Shared>,
    /// The ports listened on now (what [`crate::RunningProxy::ssh_ports`] reports).
    pub(crate) bound: Arc<Mutex<BTreeSet<u16>>>,
    open: HashMap<u16, (CancellationToken, JoinHandle<()>)>,
    /// Listeners told to stop, until they have (so a shutdown waits for their sockets).
    closing: Vec<JoinHandle<()>>,
    /// The last bind error per port, to log each problem once.
    bind_errors: HashMap<u16, String>,
}

impl SshPorts {
    pub(crate) fn new(listen_ip: IpAddr, shared: Arc<Shared>) -> SshPorts {
        SshPorts {
            listen_ip,
            shared,
            bound: Arc::default(),
            open: HashMap::new(),
            closing: Vec::new(),
            bind_errors: HashMap::new(),
        }
    }

    /// Listens on the table's SSH ports and closes the others.
    pub(crate) async fn sync(&mut self, table: &Table) {
        let gone: Vec<u16> = self
            .open
            .keys()
            .filter(|p| !table.ssh.contains_key(p))
            .copied()
            .collect();
        for port in gone {
            if let Some((stop, task)) = self.open.remove(&port) {
                stop.cancel();
                self.closing.push(task);
                tracing::info!(port, "SSH proxy port closed (its route is gone)");
            }
        }
        self.closing.retain(|t| !t.is_finished());
        self.bind_errors.retain(|p, _| table.ssh.contains_key(p));
        for (&port, entry) in &table.ssh {
            if self.open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.listen_ip, port);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    self.bind_errors.remove(&port);
                    let stop = self.shared.shutdown.child_token();
                    let task =
                        tokio::spawn(listen(listener, port, self.shared.clone(), stop.clone()));
                    self.open.insert(port, (stop, task));
                    tracing::info!(port, instance = entry.route.instance, "SSH proxy port open");
                }
                Err(e) => {
                    let why = e.to_string();
                    if self.bind_errors.get(&port) != Some(&why) {
                        tracing::warn!(port, instance = entry.route.instance, "cannot listen on SSH proxy port {addr}: {why}; retrying with each refresh");
                        self.bind_errors.insert(port, why);
                    }
                }
            }
        }
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = self.open.keys().copied().collect();
    }

    /// Stops every listener and waits until their sockets are closed.
    pub(crate) async fn close_all(&mut self) {
        for (_, (stop, task)) in self.open.drain() {
            stop.cancel();
            self.closing.push(task);
        }
        for task in self.closing.drain(..) {
            let _ = task.await;
        }
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

async fn listen(listener: TcpListener, port: u16, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move { connection(tcp, peer, port, &shared).await });
            }
            Err(e) => {
                tracing::warn!(port, "SSH proxy port: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(tcp: TcpStream, peer: SocketAddr, port: u16, shared: &Shared) {
    let _ = tcp.set_nodelay(true);
    let Some(entry) = shared.book.by_ssh_port(port) else {
        tracing::info!(port, %peer, "SSH proxy connection closed: the port has no route now");
        return;
    };
    let route = &entry.route;
    let opened = tokio::select! {
        _ = entry.alive.cancelled() => return,
        r = shared.tunnels.open(&route.host, route.instance, 22) => r,
    };
    match opened {
        Ok(upstream) => {
            tracing::debug!(port, %peer, instance = route.instance, "SSH proxy connection open");
            tokio::select! {
                _ = entry.alive.cancelled() => {}
                r = upstream.relay(tcp) => if let Err(e) = r {
                    tracing::debug!(port, %peer, "SSH proxy connection ended: {e}");
                }
            }
        }
        Err(e) => {
            tracing::info!(port, %peer, instance = route.instance, "SSH proxy connection closed: {e}");
        }
    }
}
