//! API errors: each becomes a status code and an [`ErrorBody`].
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::api::ErrorBody;
use berth_core::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A 409 caused by one request field, e.g. a name already in use: the body names it as
    /// a 400's does.
    #[error("{0}")]
    FieldConflict(FieldError),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<berth_store::StoreError> for ApiError {
    fn from(e: berth_store::StoreError) -> Self {
        match e {
            berth_store::StoreError::Conflict(m) => ApiError::Conflict(m),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl ApiError {
    pub fn instance_not_found(id: i64) -> Self {
        ApiError::NotFound(format!("instance {id} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) | ApiError::Field(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::FieldConflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match self {
            ApiError::Field(f) | ApiError::FieldConflict(f) => ErrorBody {
                error: format!("{}: {}", f.field, f.message),
                field: Some(f.field),
            },
            other => ErrorBody {
                error: other.to_string(),
                field: None,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (StatusCode, ErrorBody) {
        let resp = e.into_response();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn field_errors_name_their_field_as_400_or_409() {
        let (s, b) = answer(FieldError::new("image", "not valid").into()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            (b.error.as_str(), b.field.as_deref()),
            ("image: not valid", Some("image"))
        );
        let (s, b) = answer(ApiError::FieldConflict(FieldError::new(
            "name",
            "template t already exists",
        )))
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(
            (b.error.as_str(), b.field.as_deref()),
            ("name: template t already exists", Some("name"))
        );
        let (s, b) = answer(ApiError::Conflict("you cannot remove yourself".into())).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(b.field, None);
    }
}
