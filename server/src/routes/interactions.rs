//! Interactions, the subject timeline and donor analytics.

use super::*;
use subjects::PurposeQuery;

/// The `id` path parameter of the routes under `/v1/interactions/{id}` (documentation only).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct InteractionIdPath {
    /// Interaction id: 26 letters and digits (Crockford base32)
    #[param(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    id: String,
}

fn interaction_id(raw: &str) -> Result<domain::InteractionId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_param("id", "not an interaction id (26 characters of base32)"))
}

/// Adds one interaction, or a list of them (all or none), with the path's subject as a
/// participant.
#[utoipa::path(post, path = "/v1/subjects/{id}/interactions", tag = "interactions",
    request_body = NewInteractionBody,
    params(SubjectIdPath),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedMany),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write a field group named", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "A participant was erased", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn add_interactions(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = subject_id(&id)?;
    let items: Vec<Value> = match json_body(body)? {
        Value::Array(items) => items,
        other => vec![other],
    };
    let inputs = items
        .into_iter()
        .map(|v| hub::NewInteraction::from_json(v, Some(id)))
        .collect::<Result<Vec<_>, _>>()?;
    let hub = state.hub.clone();
    let ids = blocking(move || hub.add_interactions(&actor, inputs)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedMany {
            ids: ids.iter().map(|i| i.to_string()).collect(),
        }),
    )
        .into_response())
}

/// A subject's interactions, oldest first, with the fields the role may read. With
/// `purpose`, only if that purpose may use interactions and the consent gate allows it.
#[utoipa::path(get, path = "/v1/subjects/{id}/interactions", tag = "interactions",
    params(SubjectIdPath, PurposeQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The interactions", body = InteractionList),
        (status = 400, description = "Not a subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read interactions, or the purpose may not use them", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn list_interactions(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    query: Result<Query<PurposeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InteractionList>, ApiError> {
    let id = subject_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_param("purpose", &e.body_text()))?;
    let hub = state.hub.clone();
    let items = blocking(move || hub.list_interactions(&actor, &id, q.purpose.as_deref())).await?;
    Ok(Json(InteractionList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// One interaction.
#[utoipa::path(get, path = "/v1/interactions/{id}", tag = "interactions",
    params(InteractionIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The interaction", body = Interaction),
        (status = 400, description = "Not an interaction id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read interactions", body = ErrorBody),
        (status = 404, description = "No such interaction", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn get_interaction(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Interaction>, ApiError> {
    let id = interaction_id(&id)?;
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.get_interaction(&actor, &id))
            .await?
            .into(),
    ))
}

/// Updates an interaction's fields (null removes one) in every participant's copy.
#[utoipa::path(patch, path = "/v1/interactions/{id}", tag = "interactions", request_body = Patch,
    params(InteractionIdPath,
           ("If-Match" = Option<String>, Header, description = "The version the change is based on", pattern = "^\\s*(\\*|[0-9]{1,9}|\"[0-9]{1,9}\")\\s*$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Updated),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write a field group named", body = ErrorBody),
        (status = 404, description = "No such interaction", body = ErrorBody),
        (status = 409, description = "The interaction changed since that version", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn update_interaction(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Updated>, ApiError> {
    let id = interaction_id(&id)?;
    let if_version = if_match_header(&headers)?;
    let patch = object_body(body)?;
    let hub = state.hub.clone();
    let version = blocking(move || hub.update_interaction(&actor, &id, patch, if_version)).await?;
    Ok(Json(Updated {
        id: id.to_string(),
        version,
    }))
}

/// Marks a task done now, with what came of it.
#[utoipa::path(post, path = "/v1/interactions/{id}/complete", tag = "interactions", request_body = Complete,
    params(InteractionIdPath,
           ("If-Match" = Option<String>, Header, description = "The version the change is based on", pattern = "^\\s*(\\*|[0-9]{1,9}|\"[0-9]{1,9}\")\\s*$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Done", body = Updated),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not write interactions", body = ErrorBody),
        (status = 404, description = "No such interaction", body = ErrorBody),
        (status = 409, description = "The interaction changed since that version", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn complete_interaction(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Complete>, JsonRejection>,
) -> Result<Json<Updated>, ApiError> {
    let id = interaction_id(&id)?;
    let if_version = if_match_header(&headers)?;
    let Json(c) = body?;
    let hub = state.hub.clone();
    let version =
        blocking(move || hub.complete_interaction(&actor, &id, c.outcome, if_version)).await?;
    Ok(Json(Updated {
        id: id.to_string(),
        version,
    }))
}

/// A subject's timeline: gifts, interactions, consent events, requests and merged records,
/// oldest first, each kind only if the role may see it.
#[utoipa::path(get, path = "/v1/subjects/{id}/timeline", tag = "subjects",
    params(SubjectIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The timeline", body = TimelineBody),
        (status = 400, description = "Not a subject id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may see none of the timeline's kinds", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn timeline(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<TimelineBody>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    let t = blocking(move || hub.timeline(&actor, &id)).await?;
    Ok(Json(TimelineBody {
        subject: t.subject.to_string(),
        items: t
            .items
            .iter()
            .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
            .collect(),
        omitted: t.omitted.iter().map(ToString::to_string).collect(),
    }))
}

/// The period and filters of an analysis.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AnalyticsParams {
    /// A calendar year, compared with the year before (or give from and to).
    #[param(minimum = 1900, maximum = 2200)]
    year: Option<i32>,
    /// First day of the period (YYYY-MM-DD).
    #[param(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    from: Option<String>,
    /// Last day of the period, included.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    to: Option<String>,
    /// Only gifts to this fund.
    fund: Option<String>,
    /// Only gifts of this campaign.
    campaign: Option<String>,
    /// Only gifts of this appeal.
    appeal: Option<String>,
    /// SYBUNT look-back in periods (lapsed only; default 4).
    #[param(minimum = 1, maximum = 20)]
    lookback: Option<u32>,
    /// true: list the subjects' ids (lapsed only; roles that may read gifts).
    list: Option<bool>,
    /// fep only: a differentially private release of the donor counts, spending this much
    /// of the analytics purpose's privacy budget (above 0, at most 1).
    #[param(exclusive_minimum = 0, maximum = 1)]
    epsilon: Option<f64>,
}

impl From<AnalyticsParams> for hub::AnalyticsQuery {
    fn from(p: AnalyticsParams) -> Self {
        hub::AnalyticsQuery {
            year: p.year,
            from: p.from,
            to: p.to,
            fund: p.fund,
            campaign: p.campaign,
            appeal: p.appeal,
            lookback: p.lookback,
            list: p.list.unwrap_or(false),
            epsilon: p.epsilon,
        }
    }
}

type AnalyticsQueryResult =
    Result<Query<AnalyticsParams>, axum::extract::rejection::QueryRejection>;

async fn analytics_run<T: serde::Serialize + Send + 'static>(
    state: AppState,
    actor: hub::Actor,
    query: AnalyticsQueryResult,
    run: impl FnOnce(&hub::Hub, &hub::Actor, &hub::AnalyticsQuery) -> Result<T, hub::Error>
        + Send
        + 'static,
) -> Result<Json<AnalyticsBody>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("query", &e.body_text()))?;
    let q: hub::AnalyticsQuery = q.into();
    let hub = state.hub.clone();
    let out = blocking(move || run(&hub, &actor, &q)).await?;
    Ok(Json(AnalyticsBody(
        serde_json::to_value(out).unwrap_or(Value::Null),
    )))
}

/// FEP retention and gains and losses (keys `overall`, `new`, `repeat`, the gain and loss
/// cells and ratios, `suppressed`, `coverage`).
#[utoipa::path(get, path = "/v1/analytics/fep", tag = "analytics",
    params(AnalyticsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The FEP table (with epsilon: the private release of its donor counts)", body = AnalyticsBody),
        (status = 400, description = "No year or period, or an epsilon out of range", body = ErrorBody),
        (status = 409, description = "The privacy budget is spent", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read analytics", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn fep(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: AnalyticsQueryResult,
) -> Result<Json<AnalyticsBody>, ApiError> {
    analytics_run(state, actor, query, |h, a, q| match q.epsilon {
        Some(e) => Ok(serde_json::to_value(h.analytics_fep_private(a, q, e)?).unwrap_or_default()),
        None => Ok(serde_json::to_value(h.analytics_fep(a, q)?).unwrap_or_default()),
    })
    .await
}

/// Donor retention (the FEP table's `overall`, `new` and `repeat`, with the rest of it).
#[utoipa::path(get, path = "/v1/analytics/retention", tag = "analytics",
    params(AnalyticsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Retention rates", body = AnalyticsBody),
        (status = 400, description = "No year or period", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read analytics", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn retention(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: AnalyticsQueryResult,
) -> Result<Json<AnalyticsBody>, ApiError> {
    analytics_run(state, actor, query, |h, a, q| h.analytics_fep(a, q)).await
}

/// LYBUNT and SYBUNT donors (with `list=true`, their ids, for roles that may read gifts).
#[utoipa::path(get, path = "/v1/analytics/lapsed", tag = "analytics",
    params(AnalyticsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Lapsed donors", body = AnalyticsBody),
        (status = 400, description = "No year or period", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read analytics, or list people", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn lapsed(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: AnalyticsQueryResult,
) -> Result<Json<AnalyticsBody>, ApiError> {
    analytics_run(state, actor, query, |h, a, q| h.analytics_lapsed(a, q)).await
}

/// RFM quintiles, average gift, revenue per donor and lifetime value.
#[utoipa::path(get, path = "/v1/analytics/rfm", tag = "analytics",
    params(AnalyticsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RFM and money figures", body = AnalyticsBody),
        (status = 400, description = "No year or period", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read analytics", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn rfm(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: AnalyticsQueryResult,
) -> Result<Json<AnalyticsBody>, ApiError> {
    analytics_run(state, actor, query, |h, a, q| h.analytics_rfm(a, q)).await
}

/// Stewardship: retention of the previous period's donors who were contacted (an outbound
/// interaction) against those who were not.
#[utoipa::path(get, path = "/v1/analytics/stewardship", tag = "analytics",
    params(AnalyticsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Contacted and not contacted donors, and how many of each gave again", body = AnalyticsBody),
        (status = 400, description = "No year or period", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read analytics, or the analytics purpose does not list interactions", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn stewardship(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: AnalyticsQueryResult,
) -> Result<Json<AnalyticsBody>, ApiError> {
    analytics_run(state, actor, query, |h, a, q| h.analytics_stewardship(a, q)).await
}
