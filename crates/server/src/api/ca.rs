//! `GET /api/v1/ca.crt`: the deployment's CA certificate, for users to install. No key
//! needed: it is public, and users fetch it before they trust anything.
use crate::error::ApiError;
use crate::App;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertQuery {
    /// `pem` (default) or `der`.
    format: Option<String>,
}

pub async fn cert(
    State(app): State<App>,
    query: Result<Query<CertQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (content_type, file, body) = match q.format.as_deref().unwrap_or("pem") {
        "pem" => (
            "application/x-pem-file",
            "berth-ca.crt",
            app.ca.cert_pem().as_bytes().to_vec(),
        ),
        "der" => (
            "application/pkix-cert",
            "berth-ca.der",
            app.ca.cert_der().to_vec(),
        ),
        other => {
            return Err(ApiError::BadRequest(format!(
                "format must be pem or der, not {other:?}"
            )))
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}
