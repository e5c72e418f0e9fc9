//! `/api/v1/session`: the web GUI signs in with an API key and gets a session cookie
//! (`berth_session`: HttpOnly, SameSite=Strict, Path=/, Secure when the request came over
//! HTTPS). The cookie holds a random id; the store keeps only its hash, the user and the
//! expiry (7 days), so a server restart signs nobody out. `DELETE` signs out.
use super::Body;
use crate::auth::{self, hash_key, now_ms, SESSION_COOKIE};
use crate::error::ApiError;
use crate::App;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// How long a session lasts.
const SESSION_SECS: i64 = 7 * 24 * 3600;

/// `POST /api/v1/session`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    api_key: String,
}

/// Answer to `POST /api/v1/session`: who signed in, and the proof that must accompany the
/// cookie (header `X-Berth-Session-Proof`).
#[derive(serde::Serialize)]
pub struct SessionCreated {
    name: String,
    admin: bool,
    proof: String,
}

pub async fn create(
    State(app): State<App>,
    parts: Parts,
    Body(req): Body<NewSession>,
) -> Result<Response, ApiError> {
    auth::require_same_origin(&parts)?;
    let user = app
        .store
        .user_by_key_hash(&hash_key(req.api_key.trim()))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let id = auth::random_hex(32);
    let now = now_ms();
    app.store
        .create_session(&hash_key(&id), &user.name, now, now + SESSION_SECS * 1000)
        .await?;
    tracing::info!(user = %user.name, "signed in to the GUI");
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECS}{}",
        secure(&parts.headers)
    );
    Ok(with_cookie(
        &cookie,
        Json(SessionCreated {
            name: user.name,
            admin: user.admin,
            proof: auth::session_proof(&app.session_secret, &id),
        }),
    ))
}

pub async fn remove(State(app): State<App>, parts: Parts) -> Result<Response, ApiError> {
    if let Some(id) = auth::session_cookie(&parts.headers) {
        auth::require_same_origin(&parts)?;
        app.store.delete_session(&hash_key(id)).await?;
    }
    let cookie = format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure(&parts.headers)
    );
    Ok(with_cookie(&cookie, StatusCode::NO_CONTENT))
}

fn with_cookie(cookie: &str, body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `; Secure` when the request reached us over HTTPS (through a TLS-terminating reverse
/// proxy, which says so in `X-Forwarded-Proto` or `Forwarded`); the server itself serves
/// plain HTTP (on loopback in `berth up`), where a Secure cookie would never be sent back.
fn secure(headers: &HeaderMap) -> &'static str {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
        || headers
            .get(header::FORWARDED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split([';', ','])
                    .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
            });
    if forwarded_https {
        "; Secure"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_only_over_https() {
        let mut h = HeaderMap::new();
        assert_eq!(secure(&h), "");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(secure(&h), "; Secure");
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert_eq!(secure(&h), "; Secure");
        h.insert(header::FORWARDED, HeaderValue::from_static("proto=http"));
        assert_eq!(secure(&h), "");
    }
}
