//! The handlers. Each authenticates (the [`Caller`] extractor), runs the hub call off the
//! executor and shapes the answer.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::SubjectId;
use hub::{Lookup, NewSubjectInput};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{blocking, ApiError, AppState, Caller};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/subjects", post(create_subject).get(list_subjects))
        .route("/v1/subjects/batch", post(create_batch))
        .route("/v1/subjects/lookup", post(lookup))
        .route(
            "/v1/subjects/{id}",
            get(get_subject).patch(update_subject).delete(erase_subject),
        )
        .route("/v1/subjects/{id}/gifts", post(add_gifts).get(list_gifts))
        .route("/v1/admin/backup", get(backup))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::Request {
        status: StatusCode::NOT_FOUND,
        code: "no_such_route",
        message: "no such endpoint; see /openapi.json".into(),
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn subject_id(raw: &str) -> Result<SubjectId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_param("id", "not a subject id (26 characters of base32)"))
}

fn json_body(body: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    Ok(body?.0)
}

async fn create_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = NewSubjectInput::from_json(json_body(body)?)?;
    let hub = state.hub.clone();
    let id = blocking(move || hub.create_subject(&actor, input)).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn create_batch(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let items = match json_body(body)? {
        Value::Array(items) => items,
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
                "expected a list of subjects",
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
    Ok((StatusCode::CREATED, Json(json!({"ids": ids}))).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_subjects(
    State(state): State<AppState>,
    Caller(actor): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_param("limit", &e.body_text()))?;
    let after = q.after.as_deref().map(subject_id).transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_param("limit", "must be between 1 and 1000"));
    }
    let hub = state.hub.clone();
    let ids = blocking(move || hub.list_subjects(&actor, after.as_ref(), limit)).await?;
    let next = (ids.len() == limit)
        .then(|| ids.last().map(|i| i.to_string()))
        .flatten();
    Ok(Json(json!({"items": ids, "next": next})))
}

async fn lookup(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Value::Object(m) = json_body(body)? else {
        return Err(ApiError::bad_param(
            "body",
            "expected {\"email\": ...}, {\"phone\": ...} or {\"external_id\": ...}",
        ));
    };
    if m.len() != 1 {
        return Err(ApiError::bad_param(
            "body",
            "give exactly one of email, phone, external_id",
        ));
    }
    let (key, value) = m.into_iter().next().expect("one entry");
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
    Ok(Json(json!({"ids": ids})))
}

async fn get_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<hub::SubjectView>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    Ok(Json(blocking(move || hub.get_subject(&actor, &id)).await?))
}

async fn update_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = subject_id(&id)?;
    let if_version = match headers.get(axum::http::header::IF_MATCH) {
        None => None,
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
    Ok(Json(json!({"id": id, "version": version})))
}

async fn erase_subject(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    blocking(move || hub.erase_subject(&actor, &id)).await?;
    Ok(Json(json!({"id": id, "erased": true})))
}

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
    Ok((StatusCode::CREATED, Json(json!({"ids": ids}))).into_response())
}

async fn list_gifts(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = subject_id(&id)?;
    let hub = state.hub.clone();
    let gifts = blocking(move || hub.list_gifts(&actor, &id)).await?;
    Ok(Json(json!({"items": gifts})))
}

/// Streams an encrypted backup. The snapshot is produced on the blocking pool into a pipe.
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
    let stream = RxStream(rx);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
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
