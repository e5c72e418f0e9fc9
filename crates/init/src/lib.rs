//! berth's init: PID 1 of a container in ssh launch mode (DESIGN.md §1 "ssh").
//!
//! berth's agent bind-mounts this binary (static: it runs in any image, even one with no
//! libc or shell) read-only at `/.berth/init` as the entrypoint, and a per-instance host
//! directory read-write at `/.berth/state` holding `config.json` (`{"mode":"ssh"}`),
//! `authorized_keys` (kept current by the agent) and, if given, `onstart.sh`.
//!
//! On every container start, init:
//! 1. clears `/.berth/state/status`; makes `/run/sshd`, `/var/log` and `/root`;
//! 2. writes its environment (less HOME, HOSTNAME, PWD, SHLVL, TERM, `_`, multi-line
//!    values and names no shell takes) to `/etc/profile.d/berth-env.sh` and into sshd's
//!    config as `SetEnv` lines;
//! 3. generates `/.berth/state/ssh_host_ed25519_key` with the image's `ssh-keygen` unless
//!    it exists (so the host key survives stop/start);
//! 4. writes berth's own `/.berth/state/sshd_config` (key-only, root by key, berth's
//!    authorized keys and host key, nothing from `/etc/ssh`) and checks it with the image's
//!    `sshd -t`, dropping options that sshd does not know;
//! 5. runs `sshd -D -e -f /.berth/state/sshd_config` and restarts it when it dies
//!    (1 s doubling to 10 s);
//! 6. once sshd accepts on 127.0.0.1:22, writes `ssh-ready` to the status file and runs the
//!    onstart script (saved as `/root/onstart.sh`; output appended to
//!    `/var/log/onstart.log` and `/.berth/state/onstart.log`);
//! 7. reaps every zombie, and on SIGTERM/SIGINT/SIGQUIT sends SIGTERM to sshd, the onstart
//!    process group and every other process, SIGKILL after 5 s, and exits 0.
//!
//! If ssh cannot be brought up, init writes one line `failed: <reason>` to the status
//! file, prints it to stderr and exits with code 2. Log lines go to stderr (the container
//! log), prefixed `berth-init: `.
#![deny(unsafe_code)]

pub mod config;
pub mod env;
pub mod log;
pub mod onstart;
pub mod setup;
pub mod sshd;
pub mod status;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod time;

use std::path::Path;

/// Runs init; returns the process exit code.
pub fn run() -> i32 {
    // First of all, before any thread or child exists: every thread inherits the mask.
    let signals = match sys::block_signals() {
        Ok(s) => s,
        Err(e) => {
            return fail(
                Path::new(setup::STATE_DIR),
                &format!("cannot block signals: {e}"),
            )
        }
    };
    if std::process::id() != 1 {
        match sys::become_child_subreaper() {
            Ok(()) => log!("not PID 1: reaping orphans as a child subreaper"),
            Err(e) => log!("not PID 1, and cannot become a child subreaper: {e}"),
        }
    }
    let state_dir = Path::new(setup::STATE_DIR);
    match setup::prepare(state_dir) {
        Ok(sshd) => supervisor::Supervisor::new(signals, sshd, state_dir.to_path_buf()).run(),
        Err(reason) => fail(state_dir, &reason),
    }
}

/// Writes `failed: <reason>` to the status file and stderr; returns exit code 2.
fn fail(state_dir: &Path, reason: &str) -> i32 {
    let line = status::failed_line(reason);
    log!("{line}");
    if state_dir.is_dir() {
        if let Err(e) = status::write(state_dir, &line) {
            log!("cannot write {}/status: {e}", state_dir.display());
        }
    }
    status::EXIT_FAILED
}
