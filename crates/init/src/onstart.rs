//! The user's onstart script: saved as `/root/onstart.sh`, run on every container start
//! once sshd answers, in its own process group, its output appended to two logs (one in
//! the container, one in the state dir the agent reads for `berth logs --onstart`).
//! Its end or failure is logged and never stops the container.

use crate::log;
use crate::sshd::is_executable;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Where the onstart script and its logs live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The script as the agent gives it (absent: no onstart).
    pub source: PathBuf,
    /// Where it is saved in the container and run from.
    pub script: PathBuf,
    /// The logs its output is appended to.
    pub logs: Vec<PathBuf>,
    /// The image's root, to look for shells (`/` for real).
    pub root: PathBuf,
}

impl Paths {
    /// The real locations in the container.
    pub fn container(dirs: &crate::setup::Dirs) -> Self {
        Paths {
            source: dirs.state.join("onstart.sh"),
            script: PathBuf::from("/root/onstart.sh"),
            logs: vec![
                PathBuf::from("/var/log/onstart.log"),
                dirs.run.join("onstart.log"),
            ],
            root: PathBuf::from("/"),
        }
    }
}

/// The argv that runs `script` whose text begins with `head`: the script itself if it has
/// a `#!` line, else `/bin/bash` or `/bin/sh` (whichever the image at `root` has) on it.
pub fn argv(head: &[u8], script: &Path, root: &Path) -> Result<Vec<String>, String> {
    let script = script.display().to_string();
    if head.starts_with(b"#!") {
        return Ok(vec![script]);
    }
    for shell in ["/bin/bash", "/bin/sh"] {
        if is_executable(&root.join(&shell[1..])) {
            return Ok(vec![shell.to_string(), script]);
        }
    }
    Err(
        "the onstart script has no #! line and the image has neither /bin/bash nor \
         /bin/sh to run it"
            .to_string(),
    )
}

/// A started onstart script.
pub struct Running {
    /// Its pid, which is also its process group.
    pub pid: u32,
    /// A write end of the pipe its output goes through, kept to append the end line after
    /// everything it wrote (a pipe keeps order; the tee thread drains it).
    out: File,
}

impl Running {
    /// Logs the script's end: one line in the onstart logs and one on stderr.
    pub fn ended(mut self, status: ExitStatus) {
        log!("onstart script (pid {}) ended: {status}", self.pid);
        let line = format!(
            "--- onstart ended {}: {status} ---\n",
            crate::time::now_rfc3339()
        );
        let _ = self.out.write_all(line.as_bytes());
    }
}

/// Opens the logs for appending; those that cannot be opened are logged and skipped.
fn open_logs(paths: &Paths) -> Vec<File> {
    let mut files = Vec::new();
    for p in &paths.logs {
        if let Some(dir) = p.parent() {
            let _ = fs::create_dir_all(dir);
        }
        match OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(p)
        {
            Ok(f) => files.push(f),
            Err(e) => log!("cannot open {} for the onstart output: {e}", p.display()),
        }
    }
    files
}

fn append(files: &mut [File], line: &str) {
    for f in files.iter_mut() {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Copies the source script to `paths.script` with mode 0755 (through a temp file, so a
/// half-written script never runs) and returns its first bytes.
fn save_script(paths: &Paths) -> io::Result<Vec<u8>> {
    let text = fs::read(&paths.source)?;
    if let Some(dir) = paths.script.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = paths.script.with_extension("sh.berth-tmp");
    fs::write(&tmp, &text)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &paths.script)?;
    Ok(text.into_iter().take(2).collect())
}

/// Starts the onstart script, if there is one; `None` when there is none or it could not
/// start (the reason is then in the onstart logs and on stderr).
pub fn start(paths: &Paths) -> Option<Running> {
    if !paths.source.exists() {
        log!("no onstart script");
        return None;
    }
    let mut logs = open_logs(paths);
    append(
        &mut logs,
        &format!("--- onstart started {} ---\n", crate::time::now_rfc3339()),
    );
    let fail = |mut logs: Vec<File>, why: String| {
        log!("onstart script not run: {why}");
        append(
            &mut logs,
            &format!("berth-init: onstart script not run: {why}\n"),
        );
        None
    };
    let head = match save_script(paths) {
        Ok(h) => h,
        Err(e) => {
            let why = format!(
                "cannot copy {} to {}: {e}",
                paths.source.display(),
                paths.script.display()
            );
            return fail(logs, why);
        }
    };
    let argv = match argv(&head, &paths.script, &paths.root) {
        Ok(a) => a,
        Err(why) => return fail(logs, why),
    };
    let (read, write) = match crate::sys::pipe() {
        Ok(p) => p,
        Err(e) => return fail(logs, format!("cannot make a pipe: {e}")),
    };
    let write = File::from(write);
    let (stdout, stderr) = match (write.try_clone(), write.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(logs, format!("cannot dup a pipe: {e}")),
    };
    let mut cmd = Command::new(&argv[0]);
    crate::sys::unblock_signals_in_child(&mut cmd);
    let spawned = cmd
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => return fail(logs, format!("cannot run {}: {e}", argv.join(" "))),
    };
    let pid = child.id();
    // The child is reaped by init's reaper (waitpid(-1)), not through `child`.
    drop(child);
    let tee = std::thread::Builder::new()
        .name("onstart-tee".into())
        .spawn(move || tee(File::from(read), logs));
    if let Err(e) = tee {
        log!("cannot start the onstart log thread: {e}; its output is lost");
    }
    log!("onstart script started (pid {pid}): {}", argv.join(" "));
    Some(Running { pid, out: write })
}

/// Copies everything from `input` to each of `outputs` until `input` ends. A failing
/// output is logged once and then skipped; reading goes on, so writers never block.
fn tee(mut input: File, mut outputs: Vec<File>) {
    let mut failed = vec![false; outputs.len()];
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log!("reading the onstart output failed: {e}");
                return;
            }
        };
        for (f, failed) in outputs.iter_mut().zip(failed.iter_mut()) {
            if !*failed {
                if let Err(e) = f.write_all(&buf[..n]) {
                    log!("writing an onstart log failed: {e}");
                    *failed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("berth-init-onstart-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn paths(dir: &Path) -> Paths {
        Paths {
            source: dir.join("state/onstart.sh"),
            script: dir.join("root/onstart.sh"),
            logs: vec![
                dir.join("var/log/onstart.log"),
                dir.join("state/onstart.log"),
            ],
            root: PathBuf::from("/"),
        }
    }

    #[test]
    fn argv_prefers_shebang_then_bash_then_sh() {
        let dir = tmp("argv");
        let script = Path::new("/root/onstart.sh");
        assert_eq!(argv(b"#!", script, &dir).unwrap(), vec!["/root/onstart.sh"]);
        let e = argv(b"ec", script, &dir).unwrap_err();
        assert!(e.contains("neither /bin/bash nor /bin/sh"), "{e}");
        fs::create_dir_all(dir.join("bin")).unwrap();
        for shell in ["sh", "bash"] {
            fs::write(dir.join("bin").join(shell), "").unwrap();
            fs::set_permissions(
                dir.join("bin").join(shell),
                fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            let want = format!("/bin/{shell}");
            assert_eq!(
                argv(b"ec", script, &dir).unwrap(),
                vec![want.as_str(), "/root/onstart.sh"]
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    fn wait_for(path: &Path, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn runs_the_script_and_tees_both_streams_into_both_logs() {
        let dir = tmp("run");
        let p = paths(&dir);
        fs::create_dir_all(p.source.parent().unwrap()).unwrap();
        // No #! line: run by /bin/bash or /bin/sh of this machine.
        fs::write(&p.source, "echo out; echo err >&2; echo \"cwd=$(pwd)\"\n").unwrap();
        let running = start(&p).expect("started");
        for log in &p.logs {
            let text = wait_for(log, "cwd=");
            assert!(text.starts_with("--- onstart started "), "{text}");
            assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
        }
        let mode = fs::metadata(&p.script).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        running.ended(ExitStatus::default());
        for log in &p.logs {
            let text = wait_for(log, "--- onstart ended ");
            assert!(text.contains(": exit status: 0 ---\n"), "{text}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_script_that_cannot_run_says_so_in_the_log() {
        let dir = tmp("fail");
        let mut p = paths(&dir);
        p.root = dir.join("empty-image");
        fs::create_dir_all(p.source.parent().unwrap()).unwrap();
        fs::write(&p.source, "echo hi\n").unwrap();
        assert!(start(&p).is_none());
        let text = fs::read_to_string(&p.logs[1]).unwrap();
        assert!(text.contains("neither /bin/bash nor /bin/sh"), "{text}");
        // A #! line naming a missing interpreter fails at exec: also logged.
        fs::write(&p.source, "#!/nonexistent/interpreter\necho hi\n").unwrap();
        assert!(start(&p).is_none());
        let text = fs::read_to_string(&p.logs[0]).unwrap();
        assert!(text.contains("cannot run"), "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_script_no_run() {
        let dir = tmp("none");
        assert!(start(&paths(&dir)).is_none());
        assert!(!dir.join("state/onstart.log").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
