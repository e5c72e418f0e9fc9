//! API keys: generation, hashing (only SHA-256 hashes are stored), the admin bootstrap, and
//! the extractor that turns a bearer key into the calling user.
use crate::error::ApiError;
use crate::{App, ServerError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use berth_core::Secret;
use berth_store::Store;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const ADMIN_USER: &str = "admin";
const ADMIN_KEY_FILE: &str = "admin-api-key";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

pub fn new_api_key() -> Secret {
    Secret::new(format!("berth_{}", random_hex(24)))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Creates the admin account on first start; afterwards returns the same key, read from
/// `DATA_DIR/admin-api-key` (0600). If the file was lost, the key is rotated.
pub async fn bootstrap_admin(
    store: &Store,
    data_dir: &Path,
    now: i64,
) -> Result<Secret, ServerError> {
    let path = data_dir.join(ADMIN_KEY_FILE);
    let on_disk = std::fs::read_to_string(&path)
        .ok()
        .map(|s| s.trim().to_string());
    let existing = store.get_user(ADMIN_USER).await?;
    if let (Some(user), Some(key)) = (&existing, &on_disk) {
        if user.key_hash == hash_key(key) {
            return Ok(Secret::new(key.clone()));
        }
    }
    let key = new_api_key();
    match existing {
        Some(_) => {
            tracing::warn!(file = %path.display(), "admin API key file missing or stale: issuing a new admin key");
            store
                .set_user_key_hash(ADMIN_USER, &hash_key(key.expose()))
                .await?;
        }
        None => {
            store
                .create_user(ADMIN_USER, &hash_key(key.expose()), true, now)
                .await?;
        }
    }
    write_private_file(&path, key.expose()).map_err(|source| ServerError::Io {
        what: "cannot write",
        path: path.clone(),
        source,
    })?;
    Ok(key)
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The caller of an API request, from its bearer key.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub name: String,
    pub admin: bool,
}

impl CurrentUser {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin may do this".into()))
        }
    }
}

pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<App> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let key = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let user = app
            .store
            .user_by_key_hash(&hash_key(key))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(CurrentUser {
            name: user.name,
            admin: user.admin,
        })
    }
}
