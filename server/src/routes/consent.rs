//! Consent: the ledger, its explanations, segments and Global Privacy Control.

use super::*;

pub(super) fn gpc(headers: &HeaderMap) -> bool {
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
    params(SubjectIdPath),
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
pub(super) async fn record_consent(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = subject_id(&id)?;
    let v = json_body(body)?;
    // A key of the wrong type is refused by name, never read as absent.
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_param(k, "a string")),
        }
    };
    let need = |k: &str| text(k)?.ok_or_else(|| ApiError::bad_param(k, "required, a string"));
    let pecr_conditions = match v.get("pecr_conditions") {
        None | Some(Value::Null) => Vec::new(),
        Some(list) => list
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|s| s.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| ApiError::bad_param("pecr_conditions", "a list of strings"))?,
    };
    let new = hub::NewConsent {
        purpose: need("purpose")?,
        event: need("event")?,
        source: need("source")?,
        at: text("at")?,
        method: text("method")?,
        jurisdiction: text("jurisdiction")?,
        notice_version: text("notice_version")?,
        notice_hash: text("notice_hash")?,
        evidence: text("evidence")?,
        expires: text("expires")?,
        contact_point: text("contact_point")?,
        pecr_basis: text("pecr_basis")?,
        pecr_conditions,
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
pub(super) struct AtQuery {
    /// Decide as of this time (RFC 3339 or YYYY-MM-DD; default now).
    at: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SegmentQuery {
    /// Decide as of this time (RFC 3339 or YYYY-MM-DD; default now).
    at: Option<String>,
    /// Export to this registered recipient: only if the register allows it the purpose, with
    /// only the field groups it may receive, each row with the recipient's `ref`; what went
    /// is recorded per subject for Art. 19 notices.
    recipient: Option<String>,
}

/// A subject's consent: every purpose's decision now (or `at`), and the full ledger.
#[utoipa::path(get, path = "/v1/subjects/{id}/consent", tag = "consent", params(SubjectIdPath, AtQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "State and history", body = ConsentView),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read consent", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn consent_state(
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
    params(SubjectIdPath, ("purpose" = String, Path, description = "Purpose name"), AtQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The decision and its deciding event", body = ExplainView),
        (status = 400, description = "Unknown purpose or bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not read consent", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn consent_explain(
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
    params(("purpose" = String, Path, description = "Purpose name"), SegmentQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One JSON object per allowed subject: `id` and the purpose's fields. Should the export fail after its first row, the stream ends normally with one last line `{\"error\": {\"code\", \"message\"}}` instead of a row, and the list is incomplete", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "Unknown purpose or bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The role may not export, or the register does not allow the recipient this purpose", body = ErrorBody),
        (status = 404, description = "No such recipient", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn segment(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(purpose): Path<String>,
    query: Result<Query<SegmentQuery>, axum::extract::rejection::QueryRejection>,
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
        let result = hub.segment_for(
            &actor,
            &purpose,
            q.at.as_deref(),
            q.recipient.as_deref(),
            &mut |row| {
                if let Some(s) = started.take() {
                    let _ = s.send(Ok(()));
                }
                let mut line = serde_json::to_vec(&row).unwrap_or_default();
                line.push(b'\n');
                tx.blocking_send(Ok(line))
                    .map_err(|_| hub::Error::BadRequest("client went away".into()))
            },
        );
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
pub(super) async fn gpc_json() -> Json<GpcSupport> {
    Json(GpcSupport {
        gpc: true,
        last_update: "2026-11-22".into(),
    })
}
