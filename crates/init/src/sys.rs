//! The only unsafe code of berth-init: small safe wrappers around the libc calls a PID 1
//! needs and std does not offer (signal mask, synchronous signal wait, reaping any child,
//! kill, pipe, child subreaper). Every `unsafe` block says why it is sound.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// The set of every signal except the synchronous fault signals (see [`block_signals`]).
    fn all_but_faults() -> io::Result<SigSet> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset only writes the sigset_t it is pointed at; the pointer is valid
        // for writes of a sigset_t. It cannot fail for a valid pointer.
        let mut set = unsafe {
            libc::sigfillset(set.as_mut_ptr());
            set.assume_init()
        };
        for sig in FAULT_SIGNALS {
            // SAFETY: `set` is an initialised sigset_t; sigdelset only modifies it and
            // returns -1 (EINVAL) for an invalid signal number, which these are not.
            if unsafe { libc::sigdelset(&mut set, sig) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(SigSet(set))
    }
}

/// Signals the kernel raises synchronously for a fault of this very process. They stay
/// unblocked: blocking them would turn a crash into a busy loop (tini and dumb-init agree).
const FAULT_SIGNALS: [libc::c_int; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGSYS,
];

/// Blocks every signal but the fault signals for the calling thread (call it first, before
/// any thread or child exists, so every thread inherits the mask) and returns the set to
/// wait on with [`wait_signal`]. Blocked signals to PID 1 are queued, not dropped: the
/// kernel only discards signals to a namespace's init when their handler is SIG_DFL *and*
/// they are not blocked. Children must get a clean mask again: see
/// [`unblock_signals_in_child`], which every long-lived child's `Command` goes through.
pub fn block_signals() -> io::Result<SigSet> {
    let set = SigSet::all_but_faults()?;
    // SAFETY: `set.0` is an initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set.0, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Makes the child of `cmd` start with an empty signal mask (std resets SIGPIPE itself).
/// std's `Command` empties the mask only when it spawns through posix_spawn; on its
/// fork/exec path (taken, in this static binary, for a `Command` with `current_dir`) the
/// child inherits init's mask, nearly every signal blocked: such a child never sees the
/// SIGTERM of a stop.
pub fn unblock_signals_in_child(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec. It allocates nothing and
    // calls only sigemptyset and pthread_sigmask (async-signal-safe) on a set on its own
    // stack.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            let rc = libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(rc))
            }
        })
    }
}

/// Waits up to `timeout` for one of the (blocked) signals in `set` and returns it, or
/// `None` on timeout or interruption.
pub fn wait_signal(set: &SigSet, timeout: Duration) -> io::Result<Option<libc::c_int>> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long, // < 1e9: always fits
    };
    // SAFETY: `set.0` and `ts` are valid for reads for the duration of the call; the
    // siginfo pointer may be null (we only need the signal number).
    let rc = unsafe { libc::sigtimedwait(&set.0, std::ptr::null_mut(), &ts) };
    if rc >= 0 {
        return Ok(Some(rc));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(err),
    }
}

/// What one non-blocking `waitpid(-1)` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaped {
    /// This child ended (and is reaped now).
    Child(u32, ExitStatus),
    /// Children exist, none has ended.
    NoneEnded,
    /// No child at all is left.
    NoChildren,
}

/// Reaps one ended child, whichever it is (our own or an orphan reparented to us).
pub fn reap_one() -> io::Result<Reaped> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int; WNOHANG makes the call non-blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            return Ok(Reaped::Child(pid as u32, ExitStatus::from_raw(status)));
        }
        if pid == 0 {
            return Ok(Reaped::NoneEnded);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ECHILD) => return Ok(Reaped::NoChildren),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

fn checked_pid(pid: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(pid) {
        // pid 0 would mean "our own process group": never what a caller means here.
        Ok(p) if p > 0 => Ok(p),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid pid {pid}"),
        )),
    }
}

fn kill_raw(target: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions; the callers choose `target`
    // deliberately (a positive pid, a negative process group, or -1).
    if unsafe { libc::kill(target, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `sig` to one process.
pub fn signal_process(pid: u32, sig: libc::c_int) -> io::Result<()> {
    kill_raw(checked_pid(pid)?, sig)
}

/// Sends `sig` to every process of the process group `pgid`.
pub fn signal_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    kill_raw(-checked_pid(pgid)?, sig)
}

/// Sends `sig` to every process this process may signal, except itself: `kill(-1)`.
/// Only for PID 1 of a container, where that means "everything in the container"; the
/// caller must check that (outside a PID namespace it would hit the whole machine).
pub fn signal_all_in_namespace(sig: libc::c_int) -> io::Result<()> {
    if std::process::id() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "kill(-1) refused: not PID 1",
        ));
    }
    kill_raw(-1, sig)
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), for
/// when it does not run as PID 1 (then orphans would go to the real init instead).
pub fn become_child_subreaper() -> io::Result<()> {
    let one: libc::c_ulong = 1;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, one, 0 as libc::c_ulong) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is valid for writes of two c_ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else yet.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The real-time signal the systemd-style `STOPSIGNAL SIGRTMIN+3` names.
pub fn sigrtmin_plus_3() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_signals_are_not_in_the_wait_set() {
        let set = SigSet::all_but_faults().unwrap();
        // SAFETY (test): sigismember reads an initialised set.
        let has = |sig| unsafe { libc::sigismember(&set.0, sig) } == 1;
        assert!(has(libc::SIGTERM) && has(libc::SIGCHLD) && has(libc::SIGINT));
        assert!(!has(libc::SIGSEGV) && !has(libc::SIGABRT));
    }

    #[test]
    fn checked_pid_refuses_zero() {
        assert!(checked_pid(0).is_err());
        assert!(checked_pid(u32::MAX).is_err());
        assert_eq!(checked_pid(42).unwrap(), 42);
    }

    #[test]
    fn kill_all_is_refused_outside_pid_1() {
        if std::process::id() != 1 {
            assert!(signal_all_in_namespace(0).is_err());
        }
    }

    /// With every signal blocked here (as in init) a child spawned through the fork path
    /// (`current_dir`) starts with none blocked.
    #[test]
    fn children_start_with_no_signal_blocked() {
        let out = std::thread::spawn(|| {
            block_signals().unwrap();
            let mut cmd = Command::new("sh");
            // exec: the shell itself blocks signals while it waits for a child, so read
            // the mask of the exec'd program, not of a waiting shell.
            cmd.args(["-c", "exec grep ^SigBlk /proc/self/status"])
                .current_dir("/");
            unblock_signals_in_child(&mut cmd).output().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "SigBlk:\t0000000000000000\n"
        );
    }

    #[test]
    fn pipe_carries_bytes() {
        use std::io::{Read, Write};
        let (r, w) = pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"hi").unwrap();
        drop(w);
        let mut s = String::new();
        std::fs::File::from(r).read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
    }
}
