//! The web GUI: static files embedded in the binary (no build step, no CDN), served at `/`
//! and `/ui/FILE` under a strict Content-Security-Policy (no inline scripts or styles, no
//! other origins). The pages talk to the REST API with the session cookie.
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Allows only this server's own scripts, styles and API (and `data:` images: the favicon).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// (name under `/ui/`, Content-Type, contents).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("app.css"),
    ),
    ("app.js", JS, include_str!("app.js")),
    ("lib.js", JS, include_str!("lib.js")),
    ("signin.js", JS, include_str!("signin.js")),
    ("instances.js", JS, include_str!("instances.js")),
    ("create.js", JS, include_str!("create.js")),
    ("templates.js", JS, include_str!("templates.js")),
    ("settings.js", JS, include_str!("settings.js")),
    ("keys.js", JS, include_str!("keys.js")),
    ("hosts.js", JS, include_str!("hosts.js")),
];
const JS: &str = "text/javascript; charset=utf-8";

/// `GET /`.
pub async fn index() -> Response {
    serve("text/html; charset=utf-8", include_str!("index.html"))
}

/// `GET /ui/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => serve(content_type, body),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file\n",
        )
            .into_response(),
    }
}

fn serve(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Small files, embedded in the binary: revalidate so that an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
