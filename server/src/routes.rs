//! The handlers, each documented for the OpenAPI document with `#[utoipa::path]` and
//! registered through `utoipa_axum::routes!`, so a route cannot exist without its documentation.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::SubjectId;
use hub::{Lookup, NewSubjectInput};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dto::*;
use crate::{blocking, ApiError, AppState, Caller};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(create_subject, list_subjects))
        .routes(routes!(create_batch))
        .routes(routes!(lookup))
        .routes(routes!(get_subject, update_subject, erase_subject))
        .routes(routes!(add_gifts, list_gifts))
        .routes(routes!(list_users, add_user))
        .routes(routes!(revoke_user, change_role))
        .routes(routes!(backup))
        .routes(routes!(record_consent, consent_state))
        .routes(routes!(consent_explain))
        .routes(routes!(segment))
        .routes(routes!(gpc_json))
        .routes(routes!(open_request, list_requests))
        .routes(routes!(get_request))
        .routes(routes!(request_step))
        .routes(routes!(audit_events))
        .routes(routes!(audit_verify))
        .routes(routes!(audit_checkpoint))
        .routes(routes!(
            crate::import_routes::start_import,
            crate::import_routes::list_imports
        ))
        .routes(routes!(crate::import_routes::get_import))
        .routes(routes!(crate::import_routes::put_mapping))
        .routes(routes!(crate::import_routes::list_mappings))
        .routes(routes!(crate::import_routes::undo_import))
        .routes(routes!(crate::import_routes::list_reviews))
        .routes(routes!(crate::import_routes::decide_review))
        .routes(routes!(crate::import_routes::merge))
        .routes(routes!(crate::import_routes::undo_merge))
        .routes(routes!(crate::import_routes::explain))
        .routes(routes!(crate::import_routes::match_check))
        .routes(routes!(crate::import_routes::source_records))
        .routes(routes!(crate::import_routes::split))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::Request {
        status: StatusCode::NOT_FOUND,
        code: "no_such_route",
        message: "no such endpoint; see /openapi.json".into(),
    }
}

/// Liveness: answers while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The server is up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Prometheus metrics: requests by route and status, latency histogram, vault sizes.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let hub = state.hub.clone();
    let stats = tokio::task::spawn_blocking(move || hub.stats().ok())
        .await
        .ok()
        .flatten();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(stats.as_ref()),
    )
        .into_response()
}

fn subject_id(raw: &str) -> Result<SubjectId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_param("id", "not a subject id (26 characters of base32)"))
}

fn json_body(body: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    Ok(body?.0)
}

/// Creates one subject with its gifts.
#[utoipa::path(post, path = "/v1/subjects", tag = "subjects", request_body = NewSubject,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write a field named (listed in `fields`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid (listed in `fields`)", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
async fn create_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = NewSubjectInput::from_json(json_body(body)?)?;
    let hub = state.hub.clone();
    let id = blocking(move || hub.create_subject(&actor, input)).await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })).into_response())
}

/// Creates up to 10,000 subjects atomically: all or none.
#[utoipa::path(post, path = "/v1/subjects/batch", tag = "subjects", request_body = NewSubjectBatch,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "All created, ids in request order", body = CreatedMany),
        (status = 400, description = "Malformed request or too many items", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write a field named", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "An item is invalid (`item` and `fields` say where)", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn create_batch(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let items = match json_body(body)? {
        Value::Object(mut m) => match m.remove("subjects") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ApiError::bad_param(
                    "subjects",
                    "expected a list of subjects",
                ))
            }
        },
        _ => {
            return Err(ApiError::bad_param(
                "subjects",
                "expected {\"subjects\": [...]}",
            ))
        }
    };
    let inputs = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            NewSubjectInput::from_json(v)
                .map_err(|e| ApiError::Hub(hub::Error::BadRequest(format!("item {i}: {e}"))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hub = state.hub.clone();
    let ids = blocking(move || hub.create_subjects(&actor, inputs)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedMany {
            ids: ids.iter().map(|i| i.to_string()).collect(),
        }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Cursor: the last id of the previous page.
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Lists subject ids in creation order, a page at a time.
#[utoipa::path(get, path = "/v1/subjects", tag = "subjects", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of ids", body = IdPage),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read subjects", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn list_subjects(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<IdPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("query", &e.body_text()))?;
    let after = q
        .after
        .as_deref()
        .map(|a| subject_id(a).map_err(|_| ApiError::bad_param("after", "not a subject id")))
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_param("limit", "must be between 1 and 1000"));
    }
    let hub = state.hub.clone();
    let ids = blocking(move || hub.list_subjects(&actor, after.as_ref(), limit)).await?;
    let next = (ids.len() == limit)
        .then(|| ids.last().map(|i| i.to_string()))
        .flatten();
    Ok(Json(IdPage {
        items: ids.iter().map(|i| i.to_string()).collect(),
        next,
    }))
}

/// Finds subjects by exact, normalised email, phone or external id. A POST, so that search
/// terms never appear in URLs, proxies or access logs.
#[utoipa::path(post, path = "/v1/subjects/lookup", tag = "subjects", request_body = LookupRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Matching ids (possibly none)", body = IdList),
        (status = 400, description = "Not exactly one of email, phone, external_id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read that field group", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The search term is not a valid email or phone", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn lookup(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<IdList>, ApiError> {
    let Value::Object(m) = json_body(body)? else {
        return Err(ApiError::bad_param(
            "body",
            "expected {\"email\": ...}, {\"phone\": ...} or {\"external_id\": ...}",
        ));
    };
    let given: Vec<(String, Value)> = m.into_iter().filter(|(_, v)| !v.is_null()).collect();
    if given.len() != 1 {
        return Err(ApiError::bad_param(
            "body",
            "give exactly one of email, phone, external_id",
        ));
    }
    let (key, value) = given.into_iter().next().expect("one entry");
    let lookup = match key.as_str() {
        "email" => Lookup::Email,
        "phone" => Lookup::Phone,
        "external_id" => Lookup::ExternalId,
        other => {
            return Err(ApiError::bad_param(
                other,
                "lookups are by email, phone or external_id",
            ))
        }
    };
    let Value::String(term) = value else {
        return Err(ApiError::bad_param(&key, "expected a string"));
    };
    let hub = state.hub.clone();
    let ids = blocking(move || hub.find(&actor, lookup, &term)).await?;
    Ok(Json(IdList {
        ids: ids.iter().map(|i| i.to_string()).collect(),
    }))
}

/// Reads a subject: the fields the caller's role may read, and the names of the others.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PurposeQuery {
    /// Read for this processing purpose: only if the consent gate allows it, and only its fields.
    purpose: Option<String>,
}

#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects",
    params(("id" = String, Path, description = "Subject id"), PurposeQuery,
           ("Sec-GPC" = Option<String>, Header, description = "1: the subject opts out of sale/sharing (recorded in the consent ledger)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The readable fields and the withheld names", body = SubjectView),
        (status = 400, description = "Not a subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role reads no personal data, or the purpose may not process this subject (`consent_required`)", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn get_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PurposeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SubjectView>, ApiError> {
    let id = subject_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_param("purpose", &e.body_text()))?;
    honour_gpc(&state, &actor, &headers, id).await?;
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.get_subject_for(&actor, &id, q.purpose.as_deref()))
            .await?
            .into(),
    ))
}

/// Updates fields (null removes one). All or nothing. `If-Match: VERSION` refuses a stale write.
#[utoipa::path(patch, path = "/v1/subjects/{id}", tag = "subjects", request_body = Patch,
    params(("id" = String, Path, description = "Subject id"),
           ("If-Match" = Option<String>, Header, description = "The version the change is based on (a number, quoted or not), or * for any"),
           ("Sec-GPC" = Option<String>, Header, description = "1: the subject opts out of sale/sharing")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Updated),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write a field named", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 409, description = "The subject changed since that version", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn update_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Updated>, ApiError> {
    let id = subject_id(&id)?;
    honour_gpc(&state, &actor, &headers, id).await?;
    let if_version = match headers.get(axum::http::header::IF_MATCH) {
        None => None,
        // `*` means "any current version" (RFC 9110): the same as no precondition on a
        // subject that exists, which the update checks anyway.
        Some(v) if v.to_str().is_ok_and(|s| s.trim() == "*") => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|s| s.trim().trim_matches('"'))
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| {
                    ApiError::bad_param("If-Match", "expected the subject's version number")
                })?,
        ),
    };
    let Value::Object(patch) = json_body(body)? else {
        return Err(ApiError::bad_param(
            "body",
            "expected a JSON object of field names and values",
        ));
    };
    let hub = state.hub.clone();
    let version = blocking(move || hub.update_subject(&actor, &id, patch, if_version)).await?;
    Ok(Json(Updated {
        id: id.to_string(),
        version,
    }))
}

/// Erases a subject by destroying its data key; later reads answer 410.
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "subjects",
    params(("id" = String, Path, description = "Subject id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Erased", body = Erased),
        (status = 400, description = "Not a subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not erase", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "Already erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn erase_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    let certificate = blocking(move || hub.erase_subject(&actor, &id)).await?;
    Ok(Json(Erased {
        id: id.to_string(),
        erased: true,
        statement: certificate.statement,
        held_until: certificate.held.map(|h| h.until),
    }))
}

/// Adds one gift or a list of gifts to a subject.
#[utoipa::path(post, path = "/v1/subjects/{id}/gifts", tag = "gifts", request_body = Vec<NewGift>,
    params(("id" = String, Path, description = "Subject id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedMany),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write financial data", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn add_gifts(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = subject_id(&id)?;
    let gifts: Vec<Map<String, Value>> = match json_body(body)? {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err(ApiError::bad_param(
                    "body",
                    "each gift must be a JSON object",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_param(
                "body",
                "expected a gift object or a list of them",
            ))
        }
    };
    let hub = state.hub.clone();
    let ids = blocking(move || hub.add_gifts(&actor, &id, gifts)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedMany {
            ids: ids.iter().map(|i| i.to_string()).collect(),
        }),
    )
        .into_response())
}

/// A subject's gifts, oldest first.
#[utoipa::path(get, path = "/v1/subjects/{id}/gifts", tag = "gifts",
    params(("id" = String, Path, description = "Subject id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The gifts", body = GiftList),
        (status = 400, description = "Not a subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read financial data", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn list_gifts(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<GiftList>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    let gifts = blocking(move || hub.list_gifts(&actor, &id)).await?;
    Ok(Json(GiftList {
        items: gifts
            .into_iter()
            .map(|g| Gift {
                id: g.id.to_string(),
                fields: g.fields,
            })
            .collect(),
    }))
}

/// Lists users (admin only).
#[utoipa::path(get, path = "/v1/users", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Users", body = UserList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn list_users(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<UserList>, ApiError> {
    let hub = state.hub.clone();
    let users = blocking(move || hub.list_users(&actor)).await?;
    Ok(Json(UserList {
        items: users.into_iter().map(User::from).collect(),
    }))
}

fn role(raw: &str) -> Result<hub::Role, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_param(
            "role",
            "one of admin, fundraiser, volunteer, data-manager, dpo, auditor",
        )
    })
}

/// Adds a user; the answer holds its API token, shown this once (admin only).
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created, with the token", body = NewUserToken),
        (status = 400, description = "Bad name or role", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn add_user(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req: NewUser = serde_json::from_value(json_body(body)?)
        .map_err(|_| ApiError::bad_param("body", "expected {\"name\": ..., \"role\": ...}"))?;
    let role = role(&req.role)?;
    let hub = state.hub.clone();
    let (p, token) = blocking(move || hub.add_user(&actor, &req.name, role)).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewUserToken {
            id: p.id.to_string(),
            name: p.name,
            role: p.role.to_string(),
            token,
        }),
    )
        .into_response())
}

/// Revokes a user: its token stops working at once (admin only).
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = User),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only; the local admin cannot be revoked", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn revoke_user(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.revoke_user(&actor, &name))
            .await?
            .into(),
    ))
}

/// Changes a user's role (admin only).
#[utoipa::path(patch, path = "/v1/users/{name}", tag = "users", request_body = RoleChange,
    params(("name" = String, Path, description = "User name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = User),
        (status = 400, description = "Bad role", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn change_role(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let req: RoleChange = serde_json::from_value(json_body(body)?)
        .map_err(|_| ApiError::bad_param("body", "expected {\"role\": ...}"))?;
    let role = role(&req.role)?;
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.set_user_role(&actor, &name, role))
            .await?
            .into(),
    ))
}

/// Streams an encrypted, consistent backup of the data directory (admin only).
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn backup(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Response, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let hub = state.hub.clone();
    // Check permission before starting the stream, so a refusal is a proper 403.
    hub.authorise_backup(&actor)?;
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx: tx.clone() };
        if let Err(e) = hub.backup(&actor, &mut w) {
            tracing::error!(error = %e, "backup stream failed");
            let _ = tx.blocking_send(Err(std::io::Error::other("backup failed")));
        }
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(RxStream(rx)),
    )
        .into_response())
}

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::other("client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct RxStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for RxStream {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Events about this subject id.
    subject: Option<String>,
    /// Events by this actor (principal id or user name).
    actor: Option<String>,
    /// Action, or its verb or object (`read.subject`, `read`, `subject`).
    action: Option<String>,
    /// ok, denied or error.
    outcome: Option<String>,
    /// At or after this time (RFC 3339 or YYYY-MM-DD).
    from: Option<String>,
    /// Before this time (RFC 3339 or YYYY-MM-DD).
    to: Option<String>,
    /// Cursor: events after this sequence number.
    after: Option<u64>,
    /// Page size, 1 to 10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// Audit events, filtered and paged (auditor and admin).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Auditors and admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn audit_events(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("query", &e.body_text()))?;
    let outcome = match q.outcome.as_deref() {
        None => None,
        Some("ok") => Some(hub::audit_log::Outcome::Ok),
        Some("denied") => Some(hub::audit_log::Outcome::Denied),
        Some("error") => Some(hub::audit_log::Outcome::Error),
        Some(_) => return Err(ApiError::bad_param("outcome", "one of ok, denied, error")),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_param("limit", "must be between 1 and 10000"));
    }
    let query = hub::audit_log::Query {
        subject: q.subject,
        actor: q.actor,
        action: q.action,
        outcome,
        from: q.from,
        to: q.to,
        after: q.after,
        limit,
    };
    let hub = state.hub.clone();
    let (events, next) = blocking(move || hub.audit_query(&actor, &query)).await?;
    Ok(Json(AuditPage {
        items: events.into_iter().map(AuditEvent::from).collect(),
        next,
    }))
}

/// Recomputes the hash chain and checks every signed checkpoint (auditor and admin).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification result (ok, or the first bad event)", body = AuditVerification),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Auditors and admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn audit_verify(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.audit_verify(&actor, None))
            .await?
            .into(),
    ))
}

/// Signs a checkpoint of the log as it is now, for keeping off the host (auditor and admin).
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed checkpoint", body = AuditCheckpoint),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Auditors and admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn audit_checkpoint(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<AuditCheckpoint>, ApiError> {
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.audit_checkpoint(&actor)).await?.into(),
    ))
}

fn gpc(headers: &HeaderMap) -> bool {
    headers
        .get("sec-gpc")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        == Some("1")
}

/// Honours a Global Privacy Control signal about a subject: records an opt-out of sale/sharing.
pub(crate) async fn honour_gpc(
    state: &AppState,
    actor: &hub::Actor,
    headers: &HeaderMap,
    id: SubjectId,
) -> Result<(), ApiError> {
    if !gpc(headers) {
        return Ok(());
    }
    let hub = state.hub.clone();
    let actor = actor.clone();
    blocking(move || hub.record_gpc(&actor, &id)).await
}

/// Records a consent event for a subject (given, withdrawn, objected, restricted...).
#[utoipa::path(post, path = "/v1/subjects/{id}/consent", tag = "consent", request_body = NewConsentBody,
    params(("id" = String, Path, description = "Subject id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded", body = ConsentEventView),
        (status = 400, description = "Unknown purpose or event, bad time, content where a reference belongs", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not record consent", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn record_consent(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = subject_id(&id)?;
    let v = json_body(body)?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let need = |k: &str| text(k).ok_or_else(|| ApiError::bad_param(k, "required, a string"));
    let new = hub::NewConsent {
        purpose: need("purpose")?,
        event: need("event")?,
        source: need("source")?,
        at: text("at"),
        method: text("method"),
        jurisdiction: text("jurisdiction"),
        notice_version: text("notice_version"),
        notice_hash: text("notice_hash"),
        evidence: text("evidence"),
        expires: text("expires"),
        contact_point: text("contact_point"),
        pecr_basis: text("pecr_basis"),
        pecr_conditions: v
            .get("pecr_conditions")
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let hub = state.hub.clone();
    let event = blocking(move || hub.record_consent(&actor, &id, new)).await?;
    Ok((
        StatusCode::CREATED,
        Json(ConsentEventView {
            event: serde_json::to_value(event).unwrap_or_default(),
        }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AtQuery {
    /// Decide as of this time (RFC 3339 or YYYY-MM-DD; default now).
    at: Option<String>,
}

/// A subject's consent: every purpose's decision now (or `at`), and the full ledger.
#[utoipa::path(get, path = "/v1/subjects/{id}/consent", tag = "consent", params(("id" = String, Path, description = "Subject id"), AtQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "State and history", body = ConsentView),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read consent", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn consent_state(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    query: Result<Query<AtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConsentView>, ApiError> {
    let id = subject_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_param("at", &e.body_text()))?;
    let hub = state.hub.clone();
    let (st, history) = blocking(move || {
        let st = hub.consent_state(&actor, &id, q.at.as_deref())?;
        let history = hub.consent_history(&actor, &id)?;
        Ok((st, history))
    })
    .await?;
    Ok(Json(ConsentView {
        subject: st.subject.to_string(),
        at: st.at,
        purposes: serde_json::to_value(st.purposes).unwrap_or_default(),
        history: serde_json::to_value(history).unwrap_or_default(),
    }))
}

/// Why a purpose may or may not process a subject, with the deciding ledger event.
#[utoipa::path(get, path = "/v1/subjects/{id}/consent/{purpose}", tag = "consent",
    params(("id" = String, Path, description = "Subject id"), ("purpose" = String, Path, description = "Purpose name"), AtQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The decision and its deciding event", body = ExplainView),
        (status = 400, description = "Unknown purpose or bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read consent", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn consent_explain(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((id, purpose)): Path<(String, String)>,
    query: Result<Query<AtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExplainView>, ApiError> {
    let id = subject_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_param("at", &e.body_text()))?;
    let hub = state.hub.clone();
    let x = blocking(move || hub.consent_explain(&actor, &id, &purpose, q.at.as_deref())).await?;
    Ok(Json(ExplainView {
        explanation: serde_json::to_value(x).unwrap_or_default(),
    }))
}

/// The subjects a purpose may process, with that purpose's fields only, as JSON Lines.
#[utoipa::path(get, path = "/v1/segments/{purpose}", tag = "consent",
    params(("purpose" = String, Path, description = "Purpose name"), AtQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One JSON object per allowed subject: `id` and the purpose's fields. Should the export fail after its first row, the stream ends normally with one last line `{\"error\": {\"code\", \"message\"}}` instead of a row, and the list is incomplete", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "Unknown purpose or bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not export", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn segment(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(purpose): Path<String>,
    query: Result<Query<AtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("at", &e.body_text()))?;
    // Authorisation, the purpose and `at` are the hub's to check (audited, refusals too); a
    // failure before the first row is answered below as an error.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    // The status is sent with the first row: a failure before it (a bad `at`, a refusal) is
    // answered as an error, not as a 200 whose body breaks off.
    let (started, first) = tokio::sync::oneshot::channel::<Result<(), hub::Error>>();
    let hub = state.hub.clone();
    tokio::task::spawn_blocking(move || {
        let mut started = Some(started);
        let result = hub.segment(&actor, &purpose, q.at.as_deref(), &mut |row| {
            if let Some(s) = started.take() {
                let _ = s.send(Ok(()));
            }
            let mut line = serde_json::to_vec(&row).unwrap_or_default();
            line.push(b'\n');
            tx.blocking_send(Ok(line))
                .map_err(|_| hub::Error::BadRequest("client went away".into()))
        });
        match (result, started.take()) {
            (Ok(_), Some(s)) => {
                let _ = s.send(Ok(()));
            }
            (Ok(_), None) => {}
            (Err(e), Some(s)) => {
                let _ = s.send(Err(e));
            }
            (Err(e), None) => {
                // The status line has gone: the stream ends in order, its last line saying
                // that the list is incomplete (a torn connection would say nothing).
                tracing::error!(error = %e, "segment stream failed");
                let mut line = serde_json::to_vec(&serde_json::json!({"error": {
                    "code": e.code(),
                    "message": "the segment stopped before its end; the rows above are not all of it",
                }}))
                .unwrap_or_default();
                line.push(b'\n');
                let _ = tx.blocking_send(Ok(line));
            }
        }
    });
    if let Ok(Err(e)) = first.await {
        return Err(ApiError::Hub(e));
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(RxStream(rx)),
    )
        .into_response())
}

/// Global Privacy Control support (`Sec-GPC: 1` on a request about a subject records an
/// opt-out of sale/sharing).
#[utoipa::path(get, path = "/.well-known/gpc.json", tag = "consent",
    responses((status = 200, description = "GPC is honoured", body = GpcSupport)))]
async fn gpc_json() -> Json<GpcSupport> {
    Json(GpcSupport {
        gpc: true,
        last_update: "2026-11-22".into(),
    })
}

/// A subject-rights request as stored: ids, dates, state, history.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct RequestView {
    #[schema(value_type = Object, additional_properties = true)]
    #[serde(flatten)]
    request: Value,
}

/// Requests.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct RequestList {
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// A request to open.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "access", "subject": "01M822MXWA053813Q00TW23TP9", "jurisdiction": "uk-gdpr", "received": "2027-01-31"}))]
struct NewRequestBody {
    /// access, erasure, rectification, restriction, objection, portability, opt-out.
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    /// gdpr, uk-gdpr or ccpa.
    jurisdiction: String,
    /// YYYY-MM-DD; default today.
    received: Option<String>,
}

/// A step: verify, start, extend, pause, resume, complete, refuse.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RequestStepBody {
    action: String,
    /// Required to extend or refuse.
    reason: Option<String>,
}

/// Opens a subject-rights request and computes its legal deadline (dpo, admin).
#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = NewRequestBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Opened, with its deadline", body = RequestView),
        (status = 400, description = "Bad type, jurisdiction or date", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "DPOs and admins only", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn open_request(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let v = json_body(body)?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let kind = text("type").ok_or_else(|| ApiError::bad_param("type", "required"))?;
    let jurisdiction =
        text("jurisdiction").ok_or_else(|| ApiError::bad_param("jurisdiction", "required"))?;
    let subject =
        subject_id(&text("subject").ok_or_else(|| ApiError::bad_param("subject", "required"))?)
            .map_err(|_| ApiError::bad_param("subject", "not a subject id"))?;
    let received = text("received");
    let hub = state.hub.clone();
    let r = blocking(move || {
        hub.open_request(&actor, &subject, &kind, &jurisdiction, received.as_deref())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(RequestView {
            request: serde_json::to_value(r).unwrap_or_default(),
        }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DueQuery {
    /// Only open requests due within this many days, as in `7d`.
    due_within: Option<String>,
}

/// Open requests, soonest deadline first (dpo, admin).
#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(DueQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Open requests", body = RequestList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "DPOs and admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn list_requests(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<DueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RequestList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("due_within", &e.body_text()))?;
    let days = q
        .due_within
        .map(|d| {
            d.trim_end_matches('d')
                .parse::<u32>()
                .map_err(|_| ApiError::bad_param("due_within", "days, as in 7d"))
        })
        .transpose()?;
    let hub = state.hub.clone();
    let list = blocking(move || hub.list_requests(&actor, days)).await?;
    Ok(Json(RequestList {
        items: serde_json::to_value(list).unwrap_or_default(),
    }))
}

/// One request with its history (dpo, admin).
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The request", body = RequestView),
        (status = 400, description = "Not a request id, or no such request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "DPOs and admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn get_request(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    let r = blocking(move || hub.get_request(&actor, &id)).await?;
    Ok(Json(RequestView {
        request: serde_json::to_value(r).unwrap_or_default(),
    }))
}

/// Moves a request along: verify, start, extend, pause, resume, complete, refuse (dpo, admin).
#[utoipa::path(post, path = "/v1/requests/{id}/steps", tag = "requests", request_body = RequestStepBody,
    params(("id" = String, Path, description = "Request id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The request after the step", body = RequestView),
        (status = 400, description = "Unknown step, missing reason, or no such request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "DPOs and admins only", body = ErrorBody),
        (status = 409, description = "Not possible in the request's state", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn request_step(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<RequestView>, ApiError> {
    let id = subject_id(&id)?;
    let v = json_body(body)?;
    let action = v
        .get("action")
        .and_then(|x| x.as_str())
        .ok_or_else(|| ApiError::bad_param("action", "required"))?
        .to_string();
    let reason = v.get("reason").and_then(|x| x.as_str()).map(str::to_string);
    let hub = state.hub.clone();
    let r = blocking(move || hub.advance_request(&actor, &id, &action, reason.as_deref())).await?;
    Ok(Json(RequestView {
        request: serde_json::to_value(r).unwrap_or_default(),
    }))
}
