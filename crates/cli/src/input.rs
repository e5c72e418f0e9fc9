//! Text the user gives as a FILE argument, or `-` for stdin: onstart scripts, public keys.
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// Reads `path` (`-` = stdin) as UTF-8 text; `what` names it in errors ("the onstart
/// script"). A file that cannot be read or is not UTF-8 is one clear line.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    let (bytes, shown) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {what} from stdin"))?;
        (buf, "stdin".to_string())
    } else {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
        (bytes, path.display().to_string())
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => bail!(
            "{what} ({shown}) is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    }
}

/// Reads an SSH public key from `path` (`-` = stdin). A private key is refused here,
/// before it could leave this machine.
pub fn read_public_key(path: &Path) -> Result<String> {
    let text = read_text(path, "the public key")?;
    if text.contains("PRIVATE KEY") {
        let hint = if path.as_os_str() == "-" {
            String::new()
        } else {
            let mut pub_path = path.as_os_str().to_owned();
            pub_path.push(".pub");
            format!(" (perhaps {})", Path::new(&pub_path).display())
        };
        bail!(
            "{} holds a PRIVATE key, which stays on your machine: give the public one{hint}",
            if path.as_os_str() == "-" {
                "stdin".to_string()
            } else {
                path.display().to_string()
            }
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("berth-cli-input-{}-{name}", std::process::id()));
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn text_files_are_read_and_bad_ones_named() {
        let p = temp_file("ok", "echo héllo\n".as_bytes());
        assert_eq!(read_text(&p, "the onstart script").unwrap(), "echo héllo\n");
        fs::remove_file(&p).unwrap();

        let p = temp_file("bin", b"ab\xff\xfe");
        let e = format!("{:#}", read_text(&p, "the onstart script").unwrap_err());
        assert!(e.starts_with("the onstart script ("), "{e}");
        assert!(
            e.contains("is not UTF-8 text (invalid byte at offset 2)"),
            "{e}"
        );
        fs::remove_file(&p).unwrap();

        let missing = Path::new("/nonexistent/berth/onstart.sh");
        let e = format!(
            "{:#}",
            read_text(missing, "the onstart script").unwrap_err()
        );
        assert!(
            e.starts_with("reading the onstart script /nonexistent/berth/onstart.sh: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn private_keys_never_leave() {
        let p = temp_file(
            "id_ed25519",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        let e = format!("{:#}", read_public_key(&p).unwrap_err());
        assert!(e.contains("holds a PRIVATE key"), "{e}");
        assert!(e.contains("id_ed25519.pub"), "{e}");
        fs::remove_file(&p).unwrap();
        let p = temp_file("k.pub", b"ssh-ed25519 AAAA me@x\n");
        assert_eq!(read_public_key(&p).unwrap(), "ssh-ed25519 AAAA me@x\n");
        fs::remove_file(&p).unwrap();
    }
}
