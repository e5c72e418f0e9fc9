//! berth's init: PID 1 of a container in ssh and jupyter launch modes (DESIGN.md §1).
//!
//! berth's agent bind-mounts this binary (static: it runs in any image, even one with no
//! libc or shell) read-only at `/.berth/init` as the entrypoint, and two per-instance host
//! directories: `/.berth/state`, read-only, holding `config.json` (see [`config`]:
//! `{"mode":"ssh"}` or `{"mode":"jupyter","jupyter":{…},"env":{…}}`), `authorized_keys`
//! (kept current by the agent), if given `onstart.sh`, and in jupyter mode the instance's
//! certificate and key (`tls.crt`, `tls.key` by default); and `/.berth/run`, read-write,
//! where init writes what it makes (it survives stop/start).
//!
//! On every container start, init:
//! 1. clears `/.berth/run/status`; reads the config and sets its `env` (berth's current
//!    values, e.g. `PUBLIC_IPADDR`) in its own environment over the container's; makes
//!    `/run/sshd`, `/var/log` and `/root`;
//! 2. writes its environment (less HOME, HOSTNAME, PWD, SHLVL, TERM, `_`, multi-line
//!    values and names no shell takes) to `/etc/profile.d/berth-env.sh` and into sshd's
//!    config as `SetEnv` lines;
//! 3. generates `/.berth/run/ssh_host_ed25519_key` with the image's `ssh-keygen` unless
//!    it exists (so the host key survives stop/start);
//! 4. writes berth's own `/.berth/run/sshd_config` (key-only, root by key, berth's
//!    authorized keys and host key, nothing from `/etc/ssh`) and checks it with the image's
//!    `sshd -t`, dropping options that sshd does not know;
//! 5. in jupyter mode, checks `JUPYTER_TOKEN`, the Jupyter dir, the certificate and key,
//!    and finds `jupyter-notebook` (or `jupyter-lab`) in the image (see [`jupyter`]);
//! 6. runs `sshd -D -e -f /.berth/run/sshd_config` and restarts it when it dies
//!    (1 s doubling to 10 s);
//! 7. once sshd accepts on 127.0.0.1:22 (or after 10 s anyway) starts Jupyter (jupyter
//!    mode; restarted like sshd; the token only in its environment) and runs the onstart
//!    script (saved as `/root/onstart.sh`; output appended to `/var/log/onstart.log` and
//!    `/.berth/run/onstart.log`);
//! 8. writes the status line once every service answers: `ssh-ready` in ssh mode once
//!    sshd accepts; `ready` in jupyter mode once sshd accepts and Jupyter answers a TLS
//!    handshake on 127.0.0.1:PORT;
//! 9. reaps every zombie, and on SIGTERM/SIGINT/SIGQUIT sends SIGTERM to sshd, Jupyter,
//!    the onstart process group and every other process, SIGKILL after 5 s, and exits 0.
//!
//! If a mode's services cannot be brought up (steps 1–5), init writes one line
//! `failed: <reason>` to the status file, prints it to stderr and exits with code 2. Log
//! lines go to stderr (the container log), prefixed `berth-init: `; sshd's and Jupyter's
//! own output goes there as it is.
#![deny(unsafe_code)]

pub mod config;
pub mod env;
pub mod jupyter;
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
                Path::new(setup::RUN_DIR),
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
    let dirs = setup::Dirs::container();
    match setup::prepare(&dirs) {
        Ok(plan) => supervisor::Supervisor::new(signals, plan, dirs).run(),
        Err(reason) => fail(&dirs.run, &reason),
    }
}

/// Writes `failed: <reason>` to the status file and stderr; returns exit code 2.
fn fail(run_dir: &Path, reason: &str) -> i32 {
    let line = status::failed_line(reason);
    log!("{line}");
    if run_dir.is_dir() {
        if let Err(e) = status::write(run_dir, &line) {
            log!("cannot write {}/status: {e}", run_dir.display());
        }
    }
    status::EXIT_FAILED
}
