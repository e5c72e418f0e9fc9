//! `/.berth/run/status`, read by berth's agent: one line saying how far init got.
//!
//! - empty: init is starting (cleared at every container start), or its services do not
//!   all answer yet;
//! - `ssh-ready` (ssh mode): sshd is running and accepts connections on 127.0.0.1:22;
//! - `ready` (jupyter mode): sshd accepts on 127.0.0.1:22 AND Jupyter answers a TLS
//!   handshake on 127.0.0.1:PORT;
//! - `failed: <reason>`: init could not bring the mode's services up and exited with code 2.
//!
//! Once written, a ready line stays for the life of the container (a service that dies
//! later is restarted, and the status is not taken back).
//!
//! Written atomically (a temp file renamed over it), so a reader never sees half a line.

use std::fs;
use std::io;
use std::path::Path;

/// The status file's name inside the run dir.
pub const FILE: &str = "status";
/// The line of ssh mode once sshd accepts connections.
pub const SSH_READY: &str = "ssh-ready";
/// The line of jupyter mode once sshd accepts and Jupyter answers TLS.
pub const READY: &str = "ready";
/// Exit code of init when the mode's services cannot be brought up.
pub const EXIT_FAILED: i32 = 2;

/// The `failed: …` line for `reason` (line breaks flattened: it must stay one line).
pub fn failed_line(reason: &str) -> String {
    let flat: Vec<&str> = reason
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("failed: {}", flat.join(" / "))
}

/// Replaces the status with `line` (empty: clears it).
pub fn write(run_dir: &Path, line: &str) -> io::Result<()> {
    let tmp = run_dir.join(".status.tmp");
    let text = if line.is_empty() {
        String::new()
    } else {
        format!("{line}\n")
    };
    fs::write(&tmp, text)?;
    fs::rename(&tmp, run_dir.join(FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_line_is_one_line() {
        assert_eq!(failed_line("no sshd"), "failed: no sshd");
        assert_eq!(failed_line("a\n  b\n\nc\n"), "failed: a / b / c");
    }

    #[test]
    fn write_replaces_and_clears() {
        let dir = std::env::temp_dir().join(format!("berth-init-status-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        write(&dir, SSH_READY).unwrap();
        assert_eq!(fs::read_to_string(dir.join(FILE)).unwrap(), "ssh-ready\n");
        write(&dir, "").unwrap();
        assert_eq!(fs::read_to_string(dir.join(FILE)).unwrap(), "");
        fs::remove_dir_all(&dir).unwrap();
    }
}
