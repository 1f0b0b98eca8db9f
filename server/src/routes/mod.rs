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

mod admin;
mod audit;
mod consent;
pub(crate) mod imports;
mod interactions;
mod recipients;
mod requests;
mod subjects;
mod users;

pub(crate) use consent::honour_gpc;
use subjects::if_match_header;

/// The `id` path parameter of the routes under `/v1/subjects/{id}` (documentation only: the
/// handlers read it with `Path` and `subject_id`).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct SubjectIdPath {
    /// Subject id: 26 letters and digits (Crockford base32)
    #[param(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    id: String,
}

/// The `id` path parameter of the routes under `/v1/requests/{id}` (documentation only).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RequestIdPath {
    /// Request id: 26 letters and digits (Crockford base32)
    #[param(pattern = "^\\s*[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}\\s*$")]
    id: String,
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(subjects::create_subject, subjects::list_subjects))
        .routes(routes!(subjects::create_batch))
        .routes(routes!(subjects::lookup))
        .routes(routes!(
            subjects::get_subject,
            subjects::update_subject,
            subjects::erase_subject
        ))
        .routes(routes!(subjects::add_gifts, subjects::list_gifts))
        .routes(routes!(
            interactions::add_interactions,
            interactions::list_interactions
        ))
        .routes(routes!(
            interactions::get_interaction,
            interactions::update_interaction
        ))
        .routes(routes!(interactions::complete_interaction))
        .routes(routes!(interactions::timeline))
        .routes(routes!(interactions::fep))
        .routes(routes!(interactions::retention))
        .routes(routes!(interactions::lapsed))
        .routes(routes!(interactions::rfm))
        .routes(routes!(interactions::stewardship))
        .routes(routes!(users::list_users, users::add_user))
        .routes(routes!(users::revoke_user, users::change_role))
        .routes(routes!(users::set_password))
        .routes(routes!(admin::backup))
        .routes(routes!(consent::record_consent, consent::consent_state))
        .routes(routes!(consent::consent_explain))
        .routes(routes!(consent::segment))
        .routes(routes!(
            recipients::list_recipients,
            recipients::add_recipient
        ))
        .routes(routes!(
            recipients::get_recipient,
            recipients::update_recipient
        ))
        .routes(routes!(recipients::disable_recipient))
        .routes(routes!(recipients::pending_notifications))
        .routes(routes!(recipients::notification_done))
        .routes(routes!(recipients::subject_recipients))
        .routes(routes!(consent::gpc_json))
        .routes(routes!(requests::open_request, requests::list_requests))
        .routes(routes!(requests::get_request))
        .routes(routes!(requests::request_step))
        .routes(routes!(audit::audit_events))
        .routes(routes!(audit::audit_verify))
        .routes(routes!(audit::audit_checkpoint))
        .routes(routes!(imports::start_import, imports::list_imports))
        .routes(routes!(imports::get_import))
        .routes(routes!(imports::put_mapping))
        .routes(routes!(imports::list_mappings))
        .routes(routes!(imports::undo_import))
        .routes(routes!(imports::list_reviews))
        .routes(routes!(imports::decide_review))
        .routes(routes!(imports::merge))
        .routes(routes!(imports::undo_merge))
        .routes(routes!(imports::explain))
        .routes(routes!(imports::match_check))
        .routes(routes!(imports::source_records))
        .routes(routes!(imports::split))
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

/// A body that must be one JSON object of field names and values (a patch).
fn object_body(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, ApiError> {
    match json_body(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_param(
            "body",
            "expected a JSON object of field names and values",
        )),
    }
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
