//! The CA's two files: `ca.key` (private, 0600) and `ca.crt`. New files appear atomically
//! (written to a temporary name in the same directory, synced, renamed), so a crash never
//! leaves half a key behind.
use crate::CaError;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Reads the key file if it exists, refusing one that group or others may access.
pub(crate) fn read_private(path: &Path) -> Result<Option<String>, CaError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io("cannot open", path, source)),
    };
    // the metadata of the file we opened, not of whatever the path names by now
    let meta = file
        .metadata()
        .map_err(|source| io("cannot stat", path, source))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| io("cannot read", path, source))?;
    Ok(Some(text))
}

/// Reads a public file if it exists.
pub(crate) fn read_public(path: &Path) -> Result<Option<String>, CaError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io("cannot read", path, source)),
    }
}

/// Writes `contents` to `path` atomically, the file having `mode` from its creation on.
pub(crate) fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|source| io("cannot create", &tmp, source))?;
        // the umask may have narrowed `mode`, never widened it; set it exactly
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| io("cannot chmod", &tmp, source))?;
        file.write_all(contents.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io("cannot write", &tmp, source))?;
        std::fs::rename(&tmp, path).map_err(|source| io("cannot rename into", path, source))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // make the rename itself durable
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        what,
        path: PathBuf::from(path),
        source,
    }
}
