//! Subjects and their gifts: create, list, look up, read, update, erase.

use super::*;

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
pub(super) async fn create_subject(
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
pub(super) async fn create_batch(
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
pub(super) struct ListQuery {
    /// Cursor: the last id of the previous page.
    #[param(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
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
pub(super) async fn list_subjects(
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
pub(super) async fn lookup(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<IdList>, ApiError> {
    let Value::Object(m) = json_body(body)? else {
        return Err(ApiError::bad_param(
            "body",
            "expected {\"email\": ...}, {\"phone\": ...}, {\"external_id\": ...} or {\"family_name\": ...}",
        ));
    };
    let given: Vec<(String, Value)> = m.into_iter().filter(|(_, v)| !v.is_null()).collect();
    if given.len() != 1 {
        return Err(ApiError::bad_param(
            "body",
            "give exactly one of email, phone, external_id, family_name",
        ));
    }
    let (key, value) = given.into_iter().next().expect("one entry");
    let lookup = match key.as_str() {
        "email" => Lookup::Email,
        "phone" => Lookup::Phone,
        "external_id" => Lookup::ExternalId,
        "family_name" => Lookup::FamilyName,
        other => {
            return Err(ApiError::bad_param(
                other,
                "lookups are by email, phone, external_id or family_name",
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
pub(crate) struct PurposeQuery {
    /// Read for this processing purpose: only if the consent gate allows it, and only its fields.
    pub(crate) purpose: Option<String>,
}

#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects",
    params(SubjectIdPath, PurposeQuery,
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
pub(super) async fn get_subject(
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
    params(SubjectIdPath,
           ("If-Match" = Option<String>, Header, description = "The version the change is based on (a number, quoted or not), or * for any", pattern = "^\\s*(\\*|[0-9]{1,9}|\"[0-9]{1,9}\")\\s*$"),
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
pub(super) async fn update_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Updated>, ApiError> {
    let id = subject_id(&id)?;
    honour_gpc(&state, &actor, &headers, id).await?;
    let if_version = if_match_header(&headers)?;
    let patch = object_body(body)?;
    let hub = state.hub.clone();
    let version = blocking(move || hub.update_subject(&actor, &id, patch, if_version)).await?;
    Ok(Json(Updated {
        id: id.to_string(),
        version,
    }))
}

/// Erases a subject by destroying its data key; later reads answer 410.
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "subjects",
    params(SubjectIdPath),
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
pub(super) async fn erase_subject(
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
#[utoipa::path(post, path = "/v1/subjects/{id}/gifts", tag = "gifts", request_body = GiftBody,
    params(SubjectIdPath),
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
pub(super) async fn add_gifts(
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
    params(SubjectIdPath),
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
pub(super) async fn list_gifts(
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

/// An `If-Match` value: `*` (any current version, RFC 9110: the same as no precondition on a
/// subject that exists, which the update checks anyway) is `Some(None)`; a version number,
/// bare or in one pair of quotes, `Some(Some(n))`; anything else `None`.
/// The `If-Match` header's version, if one was given.
pub(super) fn if_match_header(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    match headers.get(axum::http::header::IF_MATCH) {
        None => Ok(None),
        Some(v) => if_match(v.to_str().unwrap_or("\u{0}"))
            .ok_or_else(|| ApiError::bad_param("If-Match", "expected the record's version number")),
    }
}

fn if_match(raw: &str) -> Option<Option<u32>> {
    let t = raw.trim();
    if t == "*" {
        return Some(None);
    }
    let digits = t
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t);
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Some)
}
