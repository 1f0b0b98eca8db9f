//! Subject-rights requests and their steps.

use super::*;

/// A subject-rights request as stored: ids, dates, state, history.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct RequestView {
    #[schema(value_type = Object, additional_properties = true)]
    #[serde(flatten)]
    request: Value,
}

/// Requests.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct RequestList {
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// A request to open.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "access", "subject": "01M822MXWA053813Q00TW23TP9", "jurisdiction": "uk-gdpr", "received": "2027-01-31"}))]
pub(super) struct NewRequestBody {
    /// access, erasure, rectification, restriction, objection, portability, opt-out.
    #[serde(rename = "type")]
    #[schema(
        pattern = "^(access|erasure|rectification|restriction|objection|portability|opt-out)$"
    )]
    kind: String,
    #[schema(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    subject: String,
    /// gdpr, uk-gdpr or ccpa.
    #[schema(pattern = "^(gdpr|uk-gdpr|ccpa)$")]
    jurisdiction: String,
    /// YYYY-MM-DD; default today.
    #[schema(format = Date)]
    received: Option<String>,
}

/// A step: verify, start, extend, pause, resume, complete, refuse.
#[allow(dead_code)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct RequestStepBody {
    #[schema(pattern = "^(verify|start|extend|pause|resume|complete|refuse)$")]
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
pub(super) async fn open_request(
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
pub(super) struct DueQuery {
    /// Only open requests due within this many days, as in `7d` (the `d` may be left out).
    #[param(pattern = "^[0-9]{1,5}d?$")]
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
pub(super) async fn list_requests(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<DueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RequestList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("due_within", &e.body_text()))?;
    let days = q
        .due_within
        .map(|d| {
            let digits = d.strip_suffix('d').unwrap_or(&d);
            (!digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| ApiError::bad_param("due_within", "days, as in 7d"))
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
    params(RequestIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The request", body = RequestView),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "DPOs and admins only", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn get_request(
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
    params(RequestIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The request after the step", body = RequestView),
        (status = 400, description = "Unknown step or missing reason", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "DPOs and admins only", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Not possible in the request's state", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn request_step(
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
