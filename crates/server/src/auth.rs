//! API keys: generation, hashing (only SHA-256 hashes are stored), the admin bootstrap, and
//! the extractor that turns a bearer key (or the GUI's session cookie) into the calling user.
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

/// The caller of an API request, from its bearer key or session cookie.
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

/// The header in which the GUI sends its session's proof.
pub const SESSION_PROOF_HEADER: &str = "x-berth-session-proof";

/// The proof that goes with session `id`: derived with the server's own secret, so a
/// stolen cookie alone cannot be used. The GUI keeps it in its origin's local storage.
pub fn session_proof(secret: &Secret, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(secret.expose().as_bytes());
    h.update(b"\0berth-session-proof\0");
    h.update(id.as_bytes());
    hex::encode(h.finalize())
}

/// The GUI's session cookie: a random id whose hash the store keeps.
pub const SESSION_COOKIE: &str = "berth_session";

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE && !value.is_empty()).then_some(value)
        })
}

/// Refuses a cross-site request (403): when the browser names the page that sent it in
/// `Origin`, that origin's host must be the one the request is addressed to (`Host`, or
/// the `X-Forwarded-Host` a reverse proxy in front of the server sets; a page cannot set
/// that header on a cross-site request without a CORS preflight, which berth never allows).
pub fn require_same_origin(parts: &Parts) -> Result<(), ApiError> {
    let Some(origin) = parts.headers.get(axum::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(',').next().unwrap_or_default().trim())
    };
    let host = header("host").or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let same = |h: Option<&str>| matches!((origin_host, h), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h));
    if same(host) || same(header("x-forwarded-host")) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "cross-site request refused: the page at {origin:?} may not act on this server"
        )))
    }
}

impl FromRequestParts<App> for CurrentUser {
    type Rejection = ApiError;

    /// A bearer API key, or else the GUI's session cookie (for which state-changing
    /// requests must come from the server's own pages).
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let user = if let Some(key) = bearer(&parts.headers) {
            app.store.user_by_key_hash(&hash_key(key)).await?
        } else if let Some(session) = session_cookie(&parts.headers) {
            if !parts.method.is_safe() {
                require_same_origin(parts)?;
            }
            // Browsers send a host's cookies to every port of it, so an instance's web server
            // on the same address may see the cookie: it also takes the proof, which only
            // the GUI's own origin holds.
            let proof = parts
                .headers
                .get(SESSION_PROOF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !secrets_equal(proof, &session_proof(&app.session_secret, session)) {
                return Err(ApiError::Unauthorized);
            }
            app.store.session_user(&hash_key(session), now_ms()).await?
        } else {
            None
        };
        let user = user.ok_or(ApiError::Unauthorized)?;
        Ok(CurrentUser {
            name: user.name,
            admin: user.admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = axum::http::Request::post("/api/v1/keys");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let p = parts(&[("cookie", "a=1; berth_session=abc; b=2")]);
        assert_eq!(session_cookie(&p.headers), Some("abc"));
        let p = parts(&[("cookie", "a=1"), ("cookie", "berth_session=xyz")]);
        assert_eq!(session_cookie(&p.headers), Some("xyz"));
        for none in ["berth_session=", "berth_sessionx=1", "x_berth_session=1"] {
            assert_eq!(session_cookie(&parts(&[("cookie", none)]).headers), None);
        }
    }

    #[test]
    fn only_the_servers_own_origin_may_write() {
        let ok = |h: &[(&str, &str)]| require_same_origin(&parts(h)).is_ok();
        assert!(
            ok(&[("host", "127.0.0.1:7878")]),
            "no Origin: not a browser's cross-site request"
        );
        assert!(ok(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878")
        ]));
        assert!(ok(&[
            ("host", "Berth.Example:8443"),
            ("origin", "https://berth.example:8443")
        ]));
        assert!(ok(&[
            ("host", "127.0.0.1:7878"),
            ("x-forwarded-host", "berth.example"),
            ("origin", "https://berth.example")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7879")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:7878"), ("origin", "null")]));
        assert!(
            !ok(&[("origin", "http://127.0.0.1:7878")]),
            "no Host to compare with"
        );
    }
}
