//! Steward's HTTP API: routes, request/response shapes, errors, request ids, limits and
//! graceful shutdown. Every handler is thin: it authenticates, moves the blocking hub call off
//! the async executor, and maps the result.
//!
//! It must never log a request body, a query string or a personal value: spans carry the
//! method, the matched route, the status and the request id. Lookups take their search term in
//! a POST body for the same reason (URLs end up in proxy logs).
//!
//! Layout:
//! - `error`: [`ApiError`], the one mapping from errors to status codes and JSON bodies.
//! - `dto`: the wire shapes, with their OpenAPI schemas.
//! - `routes`: the handlers, one module per resource (subjects and gifts, users, admin,
//!   audit, consent, requests, imports), each registered with its OpenAPI description
//!   (utoipa-axum), so `/openapi.json` is generated from the code and cannot drift from it.
//! - `limits`: per-token rate limiting; `metrics`: the Prometheus counters.
//! - this file: [`AppState`], [`router`], [`serve`], authentication and request ids.

mod console;
mod dto;
mod error;
mod limits;
mod metrics;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hub::{Actor, Channel, Hub};

pub use error::ApiError;

/// Limits and timeouts of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body, in bytes (a batch of 10,000 subjects fits).
    pub body_limit: usize,
    /// Time after which a request is answered 408.
    pub request_timeout: Duration,
    /// Requests per second allowed per API token; 0 turns the limit off.
    pub rate_per_second: u32,
    /// Requests a token may make in a burst above the steady rate.
    pub rate_burst: u32,
    /// Failed authentications a source address may make per minute before it is answered
    /// 429 without its token being looked at; 0 turns the limit off.
    pub auth_failures_per_minute: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            rate_per_second: 100,
            rate_burst: 200,
            auth_failures_per_minute: 30,
        }
    }
}

/// What every handler can reach: cheap handles only.
#[derive(Clone)]
pub struct AppState {
    /// The hub of the data directory being served.
    pub hub: Arc<Hub>,
    limiter: Arc<limits::RateLimiter>,
    auth_failures: Arc<limits::AuthFailures>,
    metrics: Arc<metrics::Metrics>,
    jobs: Arc<routes::imports::Jobs>,
}

impl AppState {
    /// State for serving `hub` under `config`'s limits.
    pub fn new(hub: Arc<Hub>, config: &ServerConfig) -> AppState {
        AppState {
            hub,
            limiter: Arc::new(limits::RateLimiter::new(
                config.rate_per_second,
                config.rate_burst,
            )),
            auth_failures: Arc::new(limits::AuthFailures::new(
                config.auth_failures_per_minute,
                AUTH_WINDOW,
            )),
            metrics: Arc::new(metrics::Metrics::default()),
            jobs: Arc::new(routes::imports::Jobs::default()),
        }
    }

    /// Audits, once per source, the requests refused in failed-authentication windows that
    /// have ended (with `all`, in every window: at shutdown). [`spawn_auth_summaries`] runs
    /// it once a window.
    pub async fn audit_auth_windows(&self, all: bool) {
        for (source, count) in self.auth_failures.take_ended(all) {
            audit_refusals(&self.hub, source, count).await;
        }
    }
}

async fn audit_refusals(hub: &Arc<Hub>, source: String, count: u64) {
    let hub = hub.clone();
    let done = tokio::task::spawn_blocking(move || hub.audit_auth_refusals(&source, count)).await;
    if let Ok(Err(e)) | Err(e) = done.map_err(|e| hub::Error::Audit(e.to_string())) {
        tracing::error!(error = %e, "could not audit refused authentications");
    }
}

/// Audits the refused authentications of each ended window, once a window, for as long as
/// the runtime runs.
pub fn spawn_auth_summaries(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AUTH_WINDOW);
        loop {
            tick.tick().await;
            state.audit_auth_windows(false).await;
        }
    });
}

/// The window over which failed authentications are counted per source.
const AUTH_WINDOW: Duration = Duration::from_secs(60);

/// The request id of the current request, set by the request-id middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An authenticated caller, extracted from `Authorization: Bearer ...`.
pub struct Caller(pub Actor);

fn unauthenticated() -> ApiError {
    ApiError::Hub(hub::Error::Unauthenticated)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string());
        if let Some(retry_after) = state.auth_failures.blocked(&peer) {
            return Err(ApiError::RateLimited { retry_after });
        }
        // Inline, not on the blocking pool: two point reads of tiny, always-cached records and
        // one HMAC. Moving it off the executor cost more than it saved (see BENCHMARKS.md).
        let principal = match token.map(|t| state.hub.authenticate(&t)) {
            Some(Ok(p)) => p,
            _ => {
                if let Some(refused) = state.auth_failures.failed(&peer) {
                    audit_refusals(&state.hub, peer.clone(), refused).await;
                }
                let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
                let hub = state.hub.clone();
                let source = peer.clone();
                // Failed authentications are audited (who tried from where), off the executor.
                let audited = tokio::task::spawn_blocking(move || {
                    hub.audit_auth_failure(&source, request_id.as_deref())
                })
                .await;
                if let Ok(Err(e)) | Err(e) = audited.map_err(|e| hub::Error::Audit(e.to_string())) {
                    tracing::error!(error = %e, "could not audit a failed authentication");
                }
                return Err(unauthenticated());
            }
        };
        if let Err(retry_after) = state.limiter.check(principal.id) {
            return Err(ApiError::RateLimited { retry_after });
        }
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        Ok(Caller(Actor {
            principal,
            channel: Channel::Http(peer),
            request_id,
        }))
    }
}

/// Runs a blocking hub call on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, hub::Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "blocking task failed");
            ApiError::Request {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                message: "internal error; the server log has the details".into(),
            }
        })?
        .map_err(ApiError::from)
}

fn valid_request_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

static REQUEST_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The caller's `x-request-id` when it is a plain token, or a new one.
fn request_id_of(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| valid_request_id(s))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let n = REQUEST_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0);
            format!("req-{t:x}-{n:x}")
        })
}

/// Gives every response an `x-request-id`, also those no route matched (the 404 for an
/// unknown path), which [`request_id`] does not see.
async fn ensure_request_id(req: Request, next: Next) -> Response {
    let id = request_id_of(&req);
    let mut resp = next.run(req).await;
    if !resp.headers().contains_key("x-request-id") {
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
    }
    resp
}

/// Takes the caller's `x-request-id` when it is a plain token, or makes one; echoes it in the
/// response and records it, with the route and status, in one log line per request.
async fn request_id(
    axum::extract::State((timeout, metrics)): axum::extract::State<(
        Duration,
        Arc<metrics::Metrics>,
    )>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = request_id_of(&req);
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = std::time::Instant::now();
    let mut resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::Request {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "timeout",
            message: format!("the request took longer than {} s", timeout.as_secs()),
        }),
    };
    metrics.record(
        &route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
    );
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The OpenAPI document of the whole API, generated from the route declarations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = routes::routes().split_for_parts();
    with_info(doc)
}

fn with_info(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    doc.info.title = "Steward API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Privacy-first constituent data hub. Every /v1 call takes `Authorization: Bearer TOKEN`. \
         Errors have one shape: {\"error\": {\"code\", \"message\"}}."
            .into(),
    );
    // Set here, not inherited: utoipa fills contact and licence from the crate's package
    // metadata, which once named a stranger's address.
    doc.info.contact = None;
    doc.info.terms_of_service = None;
    let mut licence = utoipa::openapi::info::License::new("AGPL-3.0-or-later");
    licence.identifier = Some("AGPL-3.0-or-later".into());
    doc.info.license = Some(licence);
    doc.info.extensions = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}

/// What the generated document cannot say from the code alone, said from this server's own
/// policies, so that the document is exactly as strict as the server: a `purpose` parameter
/// names one of the purposes in `policies/purposes.toml`, and a time (`at`, `from`, `to`) is
/// a date or an RFC 3339 time.
fn exact(mut doc: serde_json::Value, purposes: &[String]) -> serde_json::Value {
    let operations = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let Some(params) = operation
            .get_mut("parameters")
            .and_then(serde_json::Value::as_array_mut)
        else {
            continue;
        };
        for param in params {
            let schema = match param["name"].as_str() {
                Some("purpose") => serde_json::json!({"type": "string", "enum": purposes}),
                Some("action") => {
                    serde_json::json!({"type": "string", "enum": hub::action_filters()})
                }
                Some("at" | "from" | "to") => serde_json::json!({"anyOf": [
                    {"type": "string", "format": "date"},
                    {"type": "string", "format": "date-time"},
                ]}),
                _ => continue,
            };
            param["schema"] = schema;
        }
    }
    doc
}

/// The whole API as a router, with `/openapi.json`. Pure: no IO until served.
pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let (api, doc) = routes::routes().split_for_parts();
    let base =
        Arc::new(serde_json::to_value(with_info(doc)).expect("the OpenAPI document serialises"));
    // The purposes in force change when an administrator edits them (console, API, SIGHUP):
    // the document is made again for the new list the first time it is asked for after.
    let made: Arc<std::sync::Mutex<(Vec<String>, Arc<String>)>> =
        Arc::new(std::sync::Mutex::new((Vec::new(), Arc::new(String::new()))));
    let hub = state.hub.clone();
    api.merge(console::routes())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let purposes = hub.purposes().names();
                let doc = {
                    let mut made = made.lock().expect("openapi cache");
                    if made.1.is_empty() || made.0 != purposes {
                        let doc = Arc::new(exact((*base).clone(), &purposes).to_string());
                        *made = (purposes, doc);
                    }
                    made.1.clone()
                };
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            (config.request_timeout, state.metrics.clone()),
            request_id,
        ))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(ensure_request_id))
        .layer(axum::extract::DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
}

/// Serves the router on a bound listener until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
