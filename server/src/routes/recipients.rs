//! The register of recipients, the Art. 19 notifications owed to them, and "who received
//! this person's data".

use super::*;

/// A registered recipient (never its signing secrets); `secret` only in the answer that
/// generated one.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct RecipientDoc {
    #[schema(value_type = Object, additional_properties = true)]
    #[serde(flatten)]
    recipient: Value,
}

/// The register.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct RecipientListDoc {
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// Notifications (Art. 19).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct NotificationListDoc {
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// A notification after a person marked it done.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct NotificationDoc {
    #[schema(value_type = Object, additional_properties = true)]
    #[serde(flatten)]
    notification: Value,
}

/// A recipient to register, or what to change of one. `allow_loopback` and `allow_private`
/// are the operator's, at the command line only.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Mailhouse Ltd", "role": "processor", "purposes": ["fundraising-post"], "groups": ["identity", "contact"], "legal_basis": "Art. 28 contract", "contract": "DPA-2026-04", "country": "GB", "endpoint": "https://hooks.mailhouse.example/steward"}))]
pub(super) struct RecipientBody {
    /// The organisation's name (on registration only).
    #[schema(max_length = 100)]
    name: Option<String>,
    /// processor or controller.
    #[schema(pattern = "^(processor|controller)$")]
    role: Option<String>,
    /// Purposes whose segments it may receive (empty: any).
    purposes: Option<Vec<String>>,
    /// Field groups it may receive (empty: those of the purpose).
    groups: Option<Vec<String>>,
    /// Legal basis, in words.
    legal_basis: Option<String>,
    /// Contract or DPA reference.
    contract: Option<String>,
    /// ISO 3166 alpha-2.
    #[schema(pattern = "^[A-Za-z]{2}$")]
    country: Option<String>,
    /// https URL (empty: none).
    endpoint: Option<String>,
    /// A Standard Webhooks secret, `whsec_` + base64 of 24 to 64 bytes.
    secret: Option<String>,
    /// Generate a new secret (returned once); the old one signs for another day.
    rotate_secret: Option<bool>,
}

/// Why a recipient is disabled; `null` enables it again.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct DisableBody {
    /// One line.
    reason: Option<String>,
}

/// How the recipient was told.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct DoneBody {
    /// One line (a ticket, a letter's reference), 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    note: String,
}

/// The `name` path parameter of `/v1/recipients/{name}` (documentation only).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RecipientNamePath {
    /// The recipient's registered name
    name: String,
}

/// The `id` path parameter of `/v1/notifications/{id}/done` (documentation only).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct NotificationIdPath {
    /// `msg_` and 32 hex digits
    #[param(pattern = "^msg_[0-9a-f]{32}$")]
    id: String,
}

/// `all`: also the notifications the worker is still sending.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PendingQuery {
    /// true: every notification not yet delivered or done; false (default): only those a
    /// person must act on.
    all: Option<bool>,
}

fn doc(r: impl serde::Serialize) -> RecipientDoc {
    RecipientDoc {
        recipient: serde_json::to_value(r).unwrap_or_default(),
    }
}

fn input(v: Value) -> Result<(Option<String>, hub::RecipientInput), ApiError> {
    let mut v = match v {
        Value::Object(m) => m,
        _ => return Err(ApiError::bad_param("body", "a JSON object")),
    };
    let name = match v.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_param("name", "a string")),
    };
    let input: hub::RecipientInput = serde_json::from_value(Value::Object(v))
        .map_err(|e| ApiError::bad_param("body", &e.to_string()))?;
    Ok((name, input))
}

/// The register of recipients, by name.
#[utoipa::path(get, path = "/v1/recipients", tag = "recipients",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered recipients", body = RecipientListDoc),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read the register", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn list_recipients(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<RecipientListDoc>, ApiError> {
    let hub = state.hub.clone();
    let list = blocking(move || hub.list_registered_recipients(&actor)).await?;
    Ok(Json(RecipientListDoc {
        items: serde_json::to_value(list).unwrap_or_default(),
    }))
}

/// Registers a recipient. With an endpoint and no secret, a secret is generated and returned
/// this once as `secret`.
#[utoipa::path(post, path = "/v1/recipients", tag = "recipients", request_body = RecipientBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = RecipientDoc),
        (status = 400, description = "A field is invalid (the message names it), or the endpoint is not allowed", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not change the register", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn add_recipient(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (name, input) = input(json_body(body)?)?;
    let name = name.ok_or_else(|| ApiError::bad_param("name", "required"))?;
    let hub = state.hub.clone();
    let r = blocking(move || hub.add_registered_recipient(&actor, &name, input)).await?;
    Ok((StatusCode::CREATED, Json(doc(r))).into_response())
}

/// One registered recipient.
#[utoipa::path(get, path = "/v1/recipients/{name}", tag = "recipients",
    params(RecipientNamePath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The recipient", body = RecipientDoc),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read the register", body = ErrorBody),
        (status = 404, description = "No such recipient", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn get_recipient(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Result<Json<RecipientDoc>, ApiError> {
    let hub = state.hub.clone();
    let r = blocking(move || hub.show_registered_recipient(&actor, &name)).await?;
    Ok(Json(doc(r)))
}

/// Changes a registered recipient: the fields the body names.
#[utoipa::path(patch, path = "/v1/recipients/{name}", tag = "recipients", request_body = RecipientBody,
    params(RecipientNamePath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The recipient after the change (`secret` when one was generated)", body = RecipientDoc),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not change the register", body = ErrorBody),
        (status = 404, description = "No such recipient", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn update_recipient(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<RecipientDoc>, ApiError> {
    let (renamed, input) = input(json_body(body)?)?;
    if renamed.is_some_and(|n| n != name) {
        return Err(ApiError::bad_param(
            "name",
            "a recipient keeps its name; register another",
        ));
    }
    let hub = state.hub.clone();
    let r = blocking(move || hub.update_registered_recipient(&actor, &name, input)).await?;
    Ok(Json(doc(r)))
}

/// Disables a recipient (exports to it refused, its notifications become tasks), or enables
/// it again with `reason: null`.
#[utoipa::path(post, path = "/v1/recipients/{name}/disable", tag = "recipients", request_body = DisableBody,
    params(RecipientNamePath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The recipient", body = RecipientDoc),
        (status = 400, description = "The reason is not one line", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not change the register", body = ErrorBody),
        (status = 404, description = "No such recipient", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn disable_recipient(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<RecipientDoc>, ApiError> {
    let v = json_body(body)?;
    let reason = match v.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_param("reason", "a string or null")),
    };
    let hub = state.hub.clone();
    let r = blocking(move || hub.set_recipient_disabled(&actor, &name, reason.as_deref())).await?;
    Ok(Json(doc(r)))
}

/// Notifications a person must act on (tasks, failed deliveries), oldest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "recipients",
    params(PendingQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Notifications", body = NotificationListDoc),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read notifications", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn pending_notifications(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<PendingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<NotificationListDoc>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("all", &e.body_text()))?;
    let hub = state.hub.clone();
    let list = blocking(move || hub.notifications_pending(&actor, q.all.unwrap_or(false))).await?;
    Ok(Json(NotificationListDoc {
        items: serde_json::to_value(list).unwrap_or_default(),
    }))
}

/// Marks a notification done: a person told the recipient, as `note` says.
#[utoipa::path(post, path = "/v1/notifications/{id}/done", tag = "recipients", request_body = DoneBody,
    params(NotificationIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The notification, done", body = NotificationDoc),
        (status = 400, description = "Bad id or note", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not act on notifications", body = ErrorBody),
        (status = 404, description = "No such notification", body = ErrorBody),
        (status = 409, description = "Already delivered or done", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn notification_done(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<NotificationDoc>, ApiError> {
    let v = json_body(body)?;
    let note = v
        .get("note")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_param("note", "required: how the recipient was told"))?
        .to_string();
    let hub = state.hub.clone();
    let n = blocking(move || hub.complete_notification(&actor, &id, &note)).await?;
    Ok(Json(NotificationDoc {
        notification: serde_json::to_value(n).unwrap_or_default(),
    }))
}

/// The organisations a subject's data was disclosed to (Art. 15(1)(c), Art. 19), with the
/// purposes, field groups and dates.
#[utoipa::path(get, path = "/v1/subjects/{id}/recipients", tag = "recipients",
    params(SubjectIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recipients of the subject's data", body = RecipientListDoc),
        (status = 400, description = "Not a subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read requests or export", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn subject_recipients(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<RecipientListDoc>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    let list = blocking(move || hub.recipients(&actor, &id)).await?;
    Ok(Json(RecipientListDoc {
        items: serde_json::to_value(list).unwrap_or_default(),
    }))
}
