//! The audit log: events, verification, checkpoints.

use super::*;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Events about this subject id.
    subject: Option<String>,
    /// Events by this actor (principal id or user name).
    actor: Option<String>,
    /// Action, or its verb or object (`read.subject`, `read`, `subject`): one of the
    /// actions Steward records (the document lists them).
    action: Option<String>,
    /// ok, denied or error.
    #[param(pattern = "^(ok|denied|error)$")]
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
pub(super) async fn audit_events(
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
    // Sequence numbers are signed 64-bit in the document (int64); a larger cursor is refused
    // rather than read as "after everything".
    if q.after.is_some_and(|a| i64::try_from(a).is_err()) {
        return Err(ApiError::bad_param(
            "after",
            "a sequence number up to 2^63 - 1",
        ));
    }
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
pub(super) async fn audit_verify(
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
pub(super) async fn audit_checkpoint(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<AuditCheckpoint>, ApiError> {
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.audit_checkpoint(&actor)).await?.into(),
    ))
}
