//! The PID 1 loop once setup succeeded: runs sshd and restarts it when it dies, starts the
//! onstart script once sshd answers, reaps every zombie, and stops everything on SIGTERM.
//!
//! All signals are blocked (see [`sys::block_signals`]) and taken synchronously with
//! `sigtimedwait`, like tini and dumb-init; the wait's timeout drives the timed work
//! (restart backoff, readiness polling, the stop deadline). One thread does all of it, so
//! no child can be reaped behind its owner's back.

use crate::onstart;
use crate::setup::Sshd;
use crate::sys::{self, Reaped, SigSet};
use crate::{log, status};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// First delay before restarting a dead sshd; doubled per quick death up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An sshd that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long to wait for sshd to accept before running onstart anyway.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// From the stop signal to SIGKILL for what is left (Docker's default stop timeout is 10 s).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

const READY_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 22);

/// The name of a signal, for logs.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGPWR => "SIGPWR",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Signals that stop the container: Docker's SIGTERM, Ctrl-C and Ctrl-\ of `docker run`,
/// and what images with a systemd-style STOPSIGNAL send (SIGRTMIN+3, SIGPWR).
fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGPWR
    ) || sig == sys::sigrtmin_plus_3()
}

/// The restart delay of a dying sshd: 1 s doubling up to 10 s, back to 1 s once an sshd
/// stayed up for [`STABLE_AFTER`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: MIN_BACKOFF }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last one ran.
    pub fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE_AFTER {
            self.next = MIN_BACKOFF;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }
}

enum Ready {
    /// Polling 127.0.0.1:22; onstart has (not) been started yet.
    Waiting {
        since: Instant,
        next_poll: Instant,
        onstart_started: bool,
    },
    Done,
}

/// The running init.
pub struct Supervisor {
    signals: SigSet,
    sshd: Sshd,
    state_dir: PathBuf,
    onstart_paths: onstart::Paths,
    pid1: bool,
    sshd_child: Option<(u32, Instant)>,
    restart_at: Option<Instant>,
    backoff: Backoff,
    ready: Ready,
    onstart: Option<onstart::Running>,
    /// The onstart process group: it may outlive the script itself.
    onstart_pgid: Option<u32>,
    stop_deadline: Option<Instant>,
    no_children: bool,
}

impl Supervisor {
    pub fn new(signals: SigSet, sshd: Sshd, state_dir: PathBuf) -> Self {
        let now = Instant::now();
        Supervisor {
            signals,
            sshd,
            onstart_paths: onstart::Paths::container(&state_dir),
            state_dir,
            pid1: std::process::id() == 1,
            sshd_child: None,
            restart_at: None,
            backoff: Backoff::default(),
            ready: Ready::Waiting {
                since: now,
                next_poll: now,
                onstart_started: false,
            },
            onstart: None,
            onstart_pgid: None,
            stop_deadline: None,
            no_children: false,
        }
    }

    /// Runs until stopped; returns the exit code (0 after a stop signal).
    pub fn run(mut self) -> i32 {
        self.spawn_sshd();
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.stop_deadline {
                if now >= deadline {
                    return self.kill_remaining();
                }
            } else {
                if self.restart_at.is_some_and(|t| now >= t) {
                    self.restart_at = None;
                    self.spawn_sshd();
                }
                self.poll_ready();
            }
            let timeout = self.next_wake(Instant::now());
            match sys::wait_signal(&self.signals, timeout) {
                Ok(Some(sig)) => self.on_signal(sig),
                Ok(None) => {}
                Err(e) => {
                    log!("sigtimedwait failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if self.stop_deadline.is_some() && self.no_children {
                log!("every process has ended; exiting");
                return 0;
            }
        }
    }

    fn next_wake(&self, now: Instant) -> Duration {
        let mut next = now + Duration::from_secs(60);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        match self.stop_deadline {
            Some(d) => consider(Some(d)),
            None => {
                consider(self.restart_at);
                if let Ready::Waiting { next_poll, .. } = self.ready {
                    consider(Some(next_poll));
                }
            }
        }
        next.saturating_duration_since(now)
    }

    fn spawn_sshd(&mut self) {
        match self.sshd.command().spawn() {
            Ok(child) => {
                let pid = child.id();
                // Reaped by `reap`, never through `child`.
                drop(child);
                log!("sshd started (pid {pid})");
                self.sshd_child = Some((pid, Instant::now()));
            }
            Err(e) => {
                let delay = self.backoff.delay(Duration::ZERO);
                log!(
                    "cannot start {}: {e}; retrying in {}s",
                    self.sshd.program.display(),
                    delay.as_secs()
                );
                self.restart_at = Some(Instant::now() + delay);
            }
        }
    }

    fn poll_ready(&mut self) {
        let Ready::Waiting {
            since,
            next_poll,
            onstart_started,
        } = self.ready
        else {
            return;
        };
        let now = Instant::now();
        if now < next_poll {
            return;
        }
        let addr = SocketAddr::from(READY_ADDR);
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            log!(
                "sshd accepts connections on {addr} after {} ms",
                since.elapsed().as_millis()
            );
            if let Err(e) = status::write(&self.state_dir, status::SSH_READY) {
                log!("cannot write the status file: {e}");
            }
            self.ready = Ready::Done;
            if !onstart_started {
                self.start_onstart();
            }
            return;
        }
        let mut started = onstart_started;
        if !started && now.duration_since(since) >= READY_TIMEOUT {
            log!(
                "sshd does not accept on {addr} after {}s; running onstart anyway",
                READY_TIMEOUT.as_secs()
            );
            self.start_onstart();
            started = true;
        }
        // Poll fast at first, then once a second.
        let interval = if started {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(50)
        };
        self.ready = Ready::Waiting {
            since,
            next_poll: Instant::now() + interval,
            onstart_started: started,
        };
    }

    fn start_onstart(&mut self) {
        if let Some(running) = onstart::start(&self.onstart_paths) {
            self.onstart_pgid = Some(running.pid);
            self.onstart = Some(running);
        }
    }

    fn on_signal(&mut self, sig: i32) {
        match sig {
            libc::SIGCHLD => self.reap(),
            s if is_stop_signal(s) => self.begin_stop(s),
            libc::SIGHUP => {
                if let Some((pid, _)) = self.sshd_child {
                    log!("got SIGHUP: passing it to sshd (it rereads its config)");
                    let _ = sys::signal_process(pid, libc::SIGHUP);
                }
            }
            libc::SIGPIPE | libc::SIGWINCH | libc::SIGURG => {}
            s => log!("ignoring {}", signal_name(s)),
        }
    }

    /// Reaps every ended child: sshd, the onstart script, and orphans reparented to us.
    fn reap(&mut self) {
        loop {
            match sys::reap_one() {
                Ok(Reaped::Child(pid, st)) => self.on_exit(pid, st),
                Ok(Reaped::NoneEnded) => {
                    self.no_children = false;
                    return;
                }
                Ok(Reaped::NoChildren) => {
                    self.no_children = true;
                    return;
                }
                Err(e) => {
                    log!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_exit(&mut self, pid: u32, st: std::process::ExitStatus) {
        if let Some((sshd_pid, started)) = self.sshd_child {
            if sshd_pid == pid {
                self.sshd_child = None;
                if self.stop_deadline.is_some() {
                    log!("sshd (pid {pid}) ended: {st}");
                } else {
                    let delay = self.backoff.delay(started.elapsed());
                    log!(
                        "sshd (pid {pid}) ended: {st}; restarting it in {}s",
                        delay.as_secs()
                    );
                    self.restart_at = Some(Instant::now() + delay);
                }
                return;
            }
        }
        if self.onstart.as_ref().is_some_and(|r| r.pid == pid) {
            if let Some(running) = self.onstart.take() {
                running.ended(st);
            }
        }
        // Anything else is an orphan that ended: reaped, nothing more to do.
    }

    fn begin_stop(&mut self, sig: i32) {
        if self.stop_deadline.is_some() {
            log!("got {} again: still stopping", signal_name(sig));
            return;
        }
        log!(
            "got {}: stopping (SIGTERM to sshd, the onstart script and {}; SIGKILL after {}s)",
            signal_name(sig),
            if self.pid1 {
                "every other process"
            } else {
                "nothing else (not PID 1)"
            },
            STOP_GRACE.as_secs()
        );
        self.stop_deadline = Some(Instant::now() + STOP_GRACE);
        self.restart_at = None;
        self.signal_ours(libc::SIGTERM);
        if self.pid1 {
            let _ = sys::signal_all_in_namespace(libc::SIGTERM);
        }
        self.reap();
    }

    fn signal_ours(&self, sig: i32) {
        if let Some((pid, _)) = self.sshd_child {
            let _ = sys::signal_process(pid, sig);
        }
        if let Some(pgid) = self.onstart_pgid {
            let _ = sys::signal_group(pgid, sig);
        }
    }

    /// After the grace period: SIGKILL for what is left, reap it, exit 0.
    fn kill_remaining(&mut self) -> i32 {
        log!(
            "processes left {}s after the stop signal: sending SIGKILL",
            STOP_GRACE.as_secs()
        );
        self.signal_ours(libc::SIGKILL);
        if self.pid1 {
            let _ = sys::signal_all_in_namespace(libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            self.reap();
            if self.no_children {
                break;
            }
            let _ = sys::wait_signal(&self.signals, Duration::from_millis(50));
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals() {
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGPWR] {
            assert!(is_stop_signal(s), "{}", signal_name(s));
        }
        assert!(is_stop_signal(libc::SIGRTMIN() + 3));
        for s in [libc::SIGHUP, libc::SIGCHLD, libc::SIGUSR1, libc::SIGWINCH] {
            assert!(!is_stop_signal(s), "{}", signal_name(s));
        }
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let got: Vec<u64> = (0..6).map(|_| b.delay(quick).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(Duration::from_secs(31)).as_secs(), 1);
        assert_eq!(b.delay(quick).as_secs(), 2);
    }
}
