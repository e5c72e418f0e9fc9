//! The REST API under `/api/v1`, the agent endpoint and the web GUI's files.
mod ca;
mod hosts;
mod instances;
mod keys;
mod proxy;
mod session;
mod templates;
mod users;

use crate::auth::{self, CurrentUser};
use crate::error::ApiError;
use crate::App;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_core::api;
use berth_core::protocol::AGENT_PATH;

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 1024 * 1024;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/ca.crt", get(ca::cert))
        .route("/api/v1/me", get(me))
        .route(
            "/api/v1/session",
            post(session::create).delete(session::remove),
        )
        .route(
            "/api/v1/instances",
            post(instances::create).get(instances::list),
        )
        .route(
            "/api/v1/instances/{id}",
            get(instances::show).delete(instances::destroy),
        )
        .route("/api/v1/instances/{id}/stop", post(instances::stop))
        .route("/api/v1/instances/{id}/start", post(instances::start))
        .route("/api/v1/instances/{id}/reboot", post(instances::reboot))
        .route("/api/v1/instances/{id}/logs", get(instances::logs))
        .route("/api/v1/instances/{id}/keys", post(instances::attach_key))
        .route("/api/v1/keys", get(keys::list).post(keys::add))
        .route("/api/v1/keys/{id}", axum::routing::delete(keys::remove))
        .route(
            "/api/v1/templates",
            get(templates::list).post(templates::create),
        )
        .route("/api/v1/templates/from-image", post(templates::from_image))
        .route(
            "/api/v1/templates/{name}",
            get(templates::show)
                .put(templates::update)
                .delete(templates::remove),
        )
        .route("/api/v1/hosts", get(hosts::list))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/{name}", axum::routing::delete(users::remove))
        .route(AGENT_PATH, get(agent_connect))
        .route(berth_core::protocol::proxy::CONFIG_PATH, get(proxy::config))
        .route(berth_core::protocol::proxy::ROUTES_PATH, get(proxy::routes))
        .route("/", get(crate::gui::index))
        .route("/ui/{file}", get(crate::gui::asset))
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn me(user: CurrentUser) -> Json<api::Me> {
    Json(api::Me {
        name: user.name,
        admin: user.admin,
    })
}

async fn agent_connect(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = auth::bearer(&headers).ok_or(ApiError::Unauthorized)?;
    if !auth::secrets_equal(token, app.agent_token.expose()) {
        return Err(ApiError::Unauthorized);
    }
    let hub = app.hub.clone();
    Ok(ws
        .max_message_size(16 * 1024 * 1024)
        .on_upgrade(move |socket| hub.serve(socket)))
}

/// JSON body extractor whose rejections are API errors: a 400 that names the field at
/// fault (an unknown one, or one of the wrong type or range), as validation errors do.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !json {
            return Err(ApiError::BadRequest(
                "the body must be JSON, sent with Content-Type: application/json".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        body_from_slice(&bytes).map(Body)
    }
}

/// Deserializes a request body; an error names the field at fault.
fn body_from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde_json appends where in the text it was; the field says it better.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        let top = path
            .split(['.', '['])
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| {
                // An unknown field is reported at the level that does not know it.
                let rest = message.strip_prefix("unknown field `")?;
                Some(rest[..rest.find('`')?].to_string())
            });
        match top {
            Some(field) if inner.is_data() => {
                let message = if path == "." || path == field {
                    message
                } else {
                    format!("{path}: {message}")
                };
                ApiError::Field(berth_core::FieldError::new(&field, message))
            }
            _ => ApiError::BadRequest(format!("the body is not valid JSON: {message}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> (Option<String>, String) {
        match body_from_slice::<berth_core::api::CreateInstance>(body.as_bytes()) {
            Ok(_) => panic!("{body} was taken"),
            Err(ApiError::Field(f)) => (Some(f.field), f.message),
            Err(e) => (None, e.to_string()),
        }
    }

    /// A body that does not fit names the field at fault, as validation errors do.
    #[test]
    fn body_errors_name_the_field() {
        for (body, field, says) in [
            (r#"{"image":"x","gpus":-1}"#, "gpus", "expected u32"),
            (
                r#"{"image":"x","colour":"red"}"#,
                "colour",
                "unknown field `colour`",
            ),
            (r#"{"image":5}"#, "image", "expected a string"),
            (
                r#"{"image":"x","ports":["1",2]}"#,
                "ports",
                "ports[1]: invalid type",
            ),
            (
                r#"{"image":"x","env":{"A":1}}"#,
                "env",
                "env.A: invalid type",
            ),
        ] {
            let (f, m) = field_of(body);
            assert_eq!(f.as_deref(), Some(field), "{body}: {m}");
            assert!(m.contains(says) && !m.contains(" at line "), "{body}: {m}");
        }
        let (f, m) = field_of("{\"image\":");
        assert_eq!(f, None);
        assert!(m.starts_with("the body is not valid JSON"), "{m}");
    }

    /// Every `/api/v1` route the router serves is in the OpenAPI document (it is written by
    /// hand, so this keeps the two together).
    #[test]
    fn every_api_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let src = include_str!("mod.rs");
        let router =
            &src[src.find("pub fn router").unwrap()..src.find("async fn openapi").unwrap()];
        let mut routes = 0;
        for piece in router.split("\"/api/v1/").skip(1) {
            let path = format!("/api/v1/{}", &piece[..piece.find('"').unwrap()]);
            routes += 1;
            assert!(
                doc["paths"].get(&path).is_some(),
                "{path} is served but missing from openapi.json"
            );
        }
        assert!(routes >= 15, "the routes were not found in the source");
    }

    /// Every field a create request takes is documented (answers are checked end to end).
    #[test]
    fn the_create_request_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let props = doc["components"]["schemas"]["CreateInstance"]["properties"]
            .as_object()
            .unwrap();
        // Every field given (those left out of the JSON when absent, too).
        let req = berth_core::api::CreateInstance {
            template: Some("t".into()),
            gpus: Some(0),
            direct: Some(false),
            jupyter_lab: Some(false),
            ..Default::default()
        };
        let fields = serde_json::to_value(req).unwrap();
        for k in fields.as_object().unwrap().keys() {
            assert!(
                props.contains_key(k),
                "CreateInstance.{k} missing from openapi.json"
            );
        }
        for k in props.keys() {
            assert!(
                fields.get(k).is_some(),
                "openapi.json documents CreateInstance.{k}, which the API does not take"
            );
        }
    }
}
