//! `/api/v1/templates`: a user's saved launch settings. A user sees and touches only their
//! own templates. A template's settings must make a valid instance on their own (image
//! included); `POST /api/v1/instances` with `template` lays the request over them.
//! `from-image` has an agent inspect an image and makes the template from its config.
use super::Body;
use crate::auth::{now_ms, CurrentUser};
use crate::error::ApiError;
use crate::{view, App};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_core::api::{self, CreateInstance};
use berth_core::{template, FieldError, InstanceSpec};

fn template_view(t: berth_store::TemplateRow) -> api::Template {
    api::Template {
        name: t.name,
        readme: t.readme,
        settings: t.settings,
        created_at: view::rfc3339(t.created_at_ms),
        updated_at: view::rfc3339(t.updated_at_ms),
    }
}

/// Checks a template's name, readme and settings; answers the readme and settings to store
/// (an empty readme is none; the mode is always stated; a blank label, onstart script or
/// Docker-options string is none, as it is for an instance: `--label ''` removes a label).
fn checked(
    name: &str,
    readme: Option<String>,
    mut settings: CreateInstance,
) -> Result<(Option<String>, CreateInstance), ApiError> {
    template::validate_name(name).map_err(|m| FieldError::new("name", m))?;
    let readme = readme.filter(|r| !r.trim().is_empty());
    if let Some(r) = &readme {
        template::validate_readme(r).map_err(|m| FieldError::new("readme", m))?;
    }
    if settings.template.is_some() {
        return Err(FieldError::new(
            "settings.template",
            "a template's settings cannot name another template",
        )
        .into());
    }
    if settings.image.trim().is_empty() {
        return Err(FieldError::new("settings.image", "a template needs an image").into());
    }
    InstanceSpec::from_request(&settings).map_err(|e| FieldError {
        field: format!("settings.{}", e.field),
        message: e.message,
    })?;
    settings.mode = Some(settings.mode.unwrap_or_default());
    for text in [
        &mut settings.label,
        &mut settings.onstart,
        &mut settings.docker_options,
    ] {
        if text.as_ref().is_some_and(|t| t.trim().is_empty()) {
            *text = None;
        }
    }
    Ok((readme, settings))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("template {name} not found"))
}

/// The 409 for a template name the caller already uses, on the field `name` (so that the
/// GUI shows it next to the name).
fn name_taken(name: &str) -> ApiError {
    ApiError::FieldConflict(FieldError::new(
        "name",
        format!("template {name} already exists"),
    ))
}

/// Stores `user`'s new template `name`; a name in use is [`name_taken`].
async fn insert(
    app: &App,
    user: &CurrentUser,
    name: &str,
    readme: Option<&str>,
    settings: &CreateInstance,
) -> Result<berth_store::TemplateRow, ApiError> {
    match app
        .store
        .create_template(&user.name, name, readme, settings, now_ms())
        .await
    {
        Ok(row) => Ok(row),
        // A conflict is the name in use, or the user gone: tell which by looking.
        Err(berth_store::StoreError::Conflict(m)) => {
            if app.store.get_template(&user.name, name).await?.is_some() {
                Err(name_taken(name))
            } else {
                Err(ApiError::Conflict(m))
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<Json<Vec<api::Template>>, ApiError> {
    let rows = app.store.list_templates(&user.name).await?;
    Ok(Json(rows.into_iter().map(template_view).collect()))
}

pub async fn create(
    State(app): State<App>,
    user: CurrentUser,
    Body(body): Body<api::TemplateBody>,
) -> Result<(StatusCode, Json<api::Template>), ApiError> {
    let (readme, settings) = checked(&body.name, body.readme, body.settings)?;
    let row = insert(&app, &user, &body.name, readme.as_deref(), &settings).await?;
    tracing::info!(owner = %user.name, template = %row.name, "template created");
    Ok((StatusCode::CREATED, Json(template_view(row))))
}

pub async fn show(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<api::Template>, ApiError> {
    match app.store.get_template(&user.name, &name).await? {
        Some(row) => Ok(Json(template_view(row))),
        None => Err(not_found(&name)),
    }
}

/// Replaces the readme and settings; the body's name must be the path's (no renames).
pub async fn update(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
    Body(body): Body<api::TemplateBody>,
) -> Result<Json<api::Template>, ApiError> {
    if body.name != name {
        return Err(FieldError::new(
            "name",
            format!(
                "the body names template {:?} but the path {name:?}; templates cannot be renamed",
                body.name
            ),
        )
        .into());
    }
    if app.store.get_template(&user.name, &name).await?.is_none() {
        return Err(not_found(&name));
    }
    let (readme, settings) = checked(&name, body.readme, body.settings)?;
    if !app
        .store
        .update_template(&user.name, &name, readme.as_deref(), &settings, now_ms())
        .await?
    {
        return Err(not_found(&name));
    }
    let row = app
        .store
        .get_template(&user.name, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    tracing::info!(owner = %user.name, template = %name, "template updated");
    Ok(Json(template_view(row)))
}

pub async fn remove(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !app.store.delete_template(&user.name, &name).await? {
        return Err(not_found(&name));
    }
    tracing::info!(owner = %user.name, template = %name, "template removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/templates/from-image`: an agent inspects the image (pulling it if its
/// host lacks it); the template is made from its config ([`template::from_image`]) and
/// stored only if everything worked.
pub async fn from_image(
    State(app): State<App>,
    user: CurrentUser,
    Body(body): Body<api::TemplateFromImage>,
) -> Result<(StatusCode, Json<api::TemplateMade>), ApiError> {
    template::validate_name(&body.name).map_err(|m| FieldError::new("name", m))?;
    let readme = body.readme.filter(|r| !r.trim().is_empty());
    if let Some(r) = &readme {
        template::validate_readme(r).map_err(|m| FieldError::new("readme", m))?;
    }
    let image = body.image.trim();
    berth_core::image_ref::validate(image).map_err(|m| FieldError::new("image", m))?;
    // Before a pull that may take minutes; create_template checks again.
    if app
        .store
        .get_template(&user.name, &body.name)
        .await?
        .is_some()
    {
        return Err(name_taken(&body.name));
    }
    let facts = app.hub.inspect_image(image).await?;
    let (settings, notes) = template::from_image(image, body.mode, &facts);
    InstanceSpec::from_request(&settings).map_err(|e| {
        FieldError::new(
            "image",
            format!(
                "the template made from this image is not valid ({}: {})",
                e.field, e.message
            ),
        )
    })?;
    let row = insert(&app, &user, &body.name, readme.as_deref(), &settings).await?;
    tracing::info!(owner = %user.name, template = %row.name, %image, mode = %body.mode, "template made from an image");
    Ok((
        StatusCode::CREATED,
        Json(api::TemplateMade {
            template: template_view(row),
            notes,
        }),
    ))
}

/// The request laid over the caller's template it names (if it names one), for
/// `POST /api/v1/instances`. An unknown template is a 400 on the field `template`.
pub async fn resolve(
    app: &App,
    user: &CurrentUser,
    req: CreateInstance,
) -> Result<CreateInstance, ApiError> {
    let Some(name) = &req.template else {
        return Ok(req);
    };
    let found = if template::validate_name(name).is_ok() {
        app.store.get_template(&user.name, name).await?
    } else {
        None
    };
    match found {
        Some(t) => Ok(template::merge(&t.settings, &req)),
        None => Err(FieldError::new("template", format!("template {name} not found")).into()),
    }
}
