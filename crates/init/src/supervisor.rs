//! The PID 1 loop once setup succeeded: runs sshd (and in jupyter mode Jupyter) and
//! restarts each when it dies, starts the onstart script and Jupyter once sshd answers,
//! writes the status line once every service answers, reaps every zombie, and stops
//! everything on SIGTERM.
//!
//! All signals are blocked (see [`sys::block_signals`]) and taken synchronously with
//! `sigtimedwait`, like tini and dumb-init; the wait's timeout drives the timed work
//! (restart backoff, readiness polling, the stop deadline). One thread does all of it, so
//! no child can be reaped behind its owner's back.

use crate::config::Mode;
use crate::jupyter;
use crate::onstart;
use crate::setup::Plan;
use crate::sys::{self, Reaped, SigSet};
use crate::{log, status};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// First delay before restarting a dead service; doubled per quick death up to
/// [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A service that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long to wait for sshd to accept before running onstart (and Jupyter) anyway.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Jupyter is polled fast (every [`JUPYTER_POLL`]); after that once a second, with
/// one log line saying it is late. Jupyter's startup is slow (seconds).
pub const JUPYTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const JUPYTER_POLL: Duration = Duration::from_millis(100);
/// How long one TLS probe of Jupyter may take (connect, and again for the answer).
pub const JUPYTER_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// From the stop signal to SIGKILL for what is left (Docker's default stop timeout is 10 s).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

const SSHD_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 22);

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

/// The restart delay of a dying service: 1 s doubling up to 10 s, back to 1 s once it
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

/// A long-running child that is restarted with [`Backoff`] whenever it dies.
pub struct Service {
    /// For logs: `sshd`, `jupyter`.
    name: &'static str,
    program: PathBuf,
    make: Box<dyn Fn() -> Command>,
    child: Option<(u32, Instant)>,
    restart_at: Option<Instant>,
    backoff: Backoff,
}

impl Service {
    pub fn new(name: &'static str, program: PathBuf, make: Box<dyn Fn() -> Command>) -> Self {
        Service {
            name,
            program,
            make,
            child: None,
            restart_at: None,
            backoff: Backoff::default(),
        }
    }

    fn spawn(&mut self) {
        self.restart_at = None;
        match (self.make)().spawn() {
            Ok(child) => {
                let pid = child.id();
                // Reaped by `Supervisor::reap`, never through `child`.
                drop(child);
                log!("{} started (pid {pid})", self.name);
                self.child = Some((pid, Instant::now()));
            }
            Err(e) => {
                let delay = self.backoff.delay(Duration::ZERO);
                log!(
                    "cannot start {}: {e}; retrying in {}s",
                    self.program.display(),
                    delay.as_secs()
                );
                self.restart_at = Some(Instant::now() + delay);
            }
        }
    }

    /// If `pid` is this service's process: logs its end, schedules the restart unless
    /// `stopping`, and returns true.
    fn ended(&mut self, pid: u32, st: ExitStatus, stopping: bool) -> bool {
        let Some((own, started)) = self.child else {
            return false;
        };
        if own != pid {
            return false;
        }
        self.child = None;
        if stopping {
            log!("{} (pid {pid}) ended: {st}", self.name);
        } else {
            let delay = self.backoff.delay(started.elapsed());
            log!(
                "{} (pid {pid}) ended: {st}; restarting it in {}s",
                self.name,
                delay.as_secs()
            );
            self.restart_at = Some(Instant::now() + delay);
        }
        true
    }

    fn signal(&self, sig: i32) {
        if let Some((pid, _)) = self.child {
            let _ = sys::signal_process(pid, sig);
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// How far the services are from answering. sshd is polled first; once it answers (or
/// after [`READY_TIMEOUT`] anyway) onstart and Jupyter start, and Jupyter is polled. The
/// status line is written once every service answers.
struct Readiness {
    since: Instant,
    next_poll: Instant,
    sshd_up: bool,
    /// onstart and Jupyter have been started.
    followers_started: bool,
    /// When Jupyter was first started.
    jupyter_since: Option<Instant>,
    jupyter_up: bool,
    jupyter_late_logged: bool,
    done: bool,
}

/// The running init.
pub struct Supervisor {
    signals: SigSet,
    mode: Mode,
    sshd: Service,
    jupyter: Option<(Service, SocketAddr)>,
    /// Where the status file goes.
    run_dir: PathBuf,
    onstart_paths: onstart::Paths,
    pid1: bool,
    ready: Readiness,
    onstart: Option<onstart::Running>,
    /// The onstart process group: it may outlive the script itself.
    onstart_pgid: Option<u32>,
    stop_deadline: Option<Instant>,
    no_children: bool,
}

impl Supervisor {
    pub fn new(signals: SigSet, plan: Plan, dirs: crate::setup::Dirs) -> Self {
        let now = Instant::now();
        let sshd_spec = plan.sshd;
        let sshd = Service::new(
            "sshd",
            sshd_spec.program.clone(),
            Box::new(move || sshd_spec.command()),
        );
        let jupyter = plan.jupyter.map(|j: jupyter::Jupyter| {
            let addr = j.probe_addr();
            let program = j.program.clone();
            (
                Service::new("jupyter", program, Box::new(move || j.command())),
                addr,
            )
        });
        Supervisor {
            signals,
            mode: plan.mode,
            sshd,
            jupyter,
            onstart_paths: onstart::Paths::container(&dirs),
            run_dir: dirs.run,
            pid1: std::process::id() == 1,
            ready: Readiness {
                since: now,
                next_poll: now,
                sshd_up: false,
                followers_started: false,
                jupyter_since: None,
                jupyter_up: false,
                jupyter_late_logged: false,
                done: false,
            },
            onstart: None,
            onstart_pgid: None,
            stop_deadline: None,
            no_children: false,
        }
    }

    /// Runs until stopped; returns the exit code (0 after a stop signal).
    pub fn run(mut self) -> i32 {
        self.sshd.spawn();
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.stop_deadline {
                if now >= deadline {
                    return self.kill_remaining();
                }
            } else {
                if self.sshd.restart_at.is_some_and(|t| now >= t) {
                    self.sshd.spawn();
                }
                if let Some((j, _)) = &mut self.jupyter {
                    if j.restart_at.is_some_and(|t| now >= t) {
                        j.spawn();
                    }
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
                consider(self.sshd.restart_at);
                if let Some((j, _)) = &self.jupyter {
                    consider(j.restart_at);
                }
                if !self.ready.done {
                    consider(Some(self.ready.next_poll));
                }
            }
        }
        next.saturating_duration_since(now)
    }

    fn poll_ready(&mut self) {
        let now = Instant::now();
        if self.ready.done || now < self.ready.next_poll {
            return;
        }
        let sshd_addr = SocketAddr::from(SSHD_ADDR);
        if !self.ready.sshd_up
            && TcpStream::connect_timeout(&sshd_addr, Duration::from_millis(500)).is_ok()
        {
            log!(
                "sshd accepts connections on {sshd_addr} after {} ms",
                self.ready.since.elapsed().as_millis()
            );
            self.ready.sshd_up = true;
        }
        if !self.ready.followers_started
            && (self.ready.sshd_up || now.duration_since(self.ready.since) >= READY_TIMEOUT)
        {
            if !self.ready.sshd_up {
                log!(
                    "sshd does not accept on {sshd_addr} after {}s; running onstart{} anyway",
                    READY_TIMEOUT.as_secs(),
                    if self.jupyter.is_some() {
                        " and starting Jupyter"
                    } else {
                        ""
                    }
                );
            }
            // Jupyter first: its startup is the slow one.
            if let Some((j, _)) = &mut self.jupyter {
                j.spawn();
                self.ready.jupyter_since = Some(Instant::now());
            }
            self.start_onstart();
            self.ready.followers_started = true;
        }
        let mut jupyter_polling_fast = false;
        match (&self.jupyter, self.ready.jupyter_since) {
            (None, _) => self.ready.jupyter_up = true,
            (Some(_), None) => {}
            (Some((j, addr)), Some(jupyter_since)) => {
                if !self.ready.jupyter_up
                    && j.running()
                    && jupyter::answers_tls(*addr, JUPYTER_PROBE_TIMEOUT)
                {
                    log!(
                        "jupyter answers TLS on {addr} {} ms after it was started",
                        jupyter_since.elapsed().as_millis()
                    );
                    self.ready.jupyter_up = true;
                }
                let late = jupyter_since.elapsed() >= JUPYTER_READY_TIMEOUT;
                if !self.ready.jupyter_up && late && !self.ready.jupyter_late_logged {
                    log!(
                        "jupyter does not answer TLS on {addr} {}s after it was started; \
                         still waiting (it is restarted whenever it dies)",
                        JUPYTER_READY_TIMEOUT.as_secs()
                    );
                    self.ready.jupyter_late_logged = true;
                }
                jupyter_polling_fast = !late;
            }
        }
        if self.ready.sshd_up && self.ready.jupyter_up {
            let line = match self.mode {
                Mode::Ssh => status::SSH_READY,
                Mode::Jupyter => status::READY,
            };
            if let Err(e) = status::write(&self.run_dir, line) {
                log!("cannot write the status file: {e}");
            } else {
                log!("status: {line}");
            }
            self.ready.done = true;
            return;
        }
        // Poll sshd fast at first, then Jupyter fast for a while, then once a second.
        let interval = if !self.ready.followers_started {
            Duration::from_millis(50)
        } else if jupyter_polling_fast {
            JUPYTER_POLL
        } else {
            Duration::from_secs(1)
        };
        self.ready.next_poll = Instant::now() + interval;
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
                if self.sshd.running() {
                    log!("got SIGHUP: passing it to sshd (it rereads its config)");
                    self.sshd.signal(libc::SIGHUP);
                }
            }
            libc::SIGPIPE | libc::SIGWINCH | libc::SIGURG => {}
            s => log!("ignoring {}", signal_name(s)),
        }
    }

    /// Reaps every ended child: the services, the onstart script, and orphans reparented
    /// to us.
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

    fn on_exit(&mut self, pid: u32, st: ExitStatus) {
        let stopping = self.stop_deadline.is_some();
        if self.sshd.ended(pid, st, stopping) {
            return;
        }
        if let Some((j, _)) = &mut self.jupyter {
            if j.ended(pid, st, stopping) {
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
            "got {}: stopping (SIGTERM to sshd, {}the onstart script and {}; SIGKILL after {}s)",
            signal_name(sig),
            if self.jupyter.is_some() {
                "jupyter, "
            } else {
                ""
            },
            if self.pid1 {
                "every other process"
            } else {
                "nothing else (not PID 1)"
            },
            STOP_GRACE.as_secs()
        );
        self.stop_deadline = Some(Instant::now() + STOP_GRACE);
        self.sshd.restart_at = None;
        if let Some((j, _)) = &mut self.jupyter {
            j.restart_at = None;
        }
        self.signal_ours(libc::SIGTERM);
        if self.pid1 {
            let _ = sys::signal_all_in_namespace(libc::SIGTERM);
        }
        self.reap();
    }

    fn signal_ours(&self, sig: i32) {
        self.sshd.signal(sig);
        if let Some((j, _)) = &self.jupyter {
            j.signal(sig);
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
