use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Every error the API returns, as `{"error": {"code", "message", ...}}` with a stable code.
#[derive(Debug)]
pub enum ApiError {
    /// An error from a hub operation.
    Hub(hub::Error),
    /// Too many requests for this token.
    RateLimited {
        /// Seconds until a request will be accepted again.
        retry_after: u64,
    },
    /// A request the API itself rejects (bad JSON, bad parameter, unknown route).
    Request {
        /// HTTP status.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ApiError {
    /// A 400 naming the parameter.
    pub fn bad_param(name: &str, why: &str) -> ApiError {
        ApiError::Request {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: format!("parameter `{name}`: {why}"),
        }
    }
}

impl From<hub::Error> for ApiError {
    fn from(e: hub::Error) -> Self {
        ApiError::Hub(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            JsonRejection::BytesRejection(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "malformed_json"),
        };
        // The rejection text describes the JSON syntax position, not the content.
        ApiError::Request {
            status,
            code,
            message: r.body_text(),
        }
    }
}

/// The HTTP status of each kind of hub error; the one place the server maps them.
pub(crate) fn status_of(kind: hub::ErrorKind) -> StatusCode {
    use hub::ErrorKind as K;
    match kind {
        K::Unauthenticated => StatusCode::UNAUTHORIZED,
        K::Forbidden | K::ConsentRequired => StatusCode::FORBIDDEN,
        K::NotFound => StatusCode::NOT_FOUND,
        K::Erased => StatusCode::GONE,
        K::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        K::BadRequest | K::PolicyInvalid | K::BackupInvalid => StatusCode::BAD_REQUEST,
        K::Conflict | K::AlreadyExists => StatusCode::CONFLICT,
        K::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        K::InUse
        | K::CannotUnseal
        | K::NotInitialised
        | K::Integrity
        | K::StorageDamaged
        | K::AuditFailure
        | K::StoreRefused
        | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Hub(e) => {
                let status = status_of(e.kind());
                if status.is_server_error() {
                    // The cause goes to the log (it names ids and files, never values); the
                    // client gets a generic message.
                    tracing::error!(error = %e, code = e.code(), "request failed");
                    (
                        status,
                        json!({"error": {"code": e.code(), "message": "internal error; the server log has the details"}}),
                    )
                } else {
                    let mut err = json!({"error": {"code": e.code(), "message": e.to_string()}});
                    match &e {
                        hub::Error::Invalid { item, errors } => {
                            err["error"]["fields"] =
                                serde_json::to_value(errors).unwrap_or_default();
                            if let Some(i) = item {
                                err["error"]["item"] = json!(i);
                            }
                        }
                        hub::Error::Forbidden { fields, .. } if !fields.is_empty() => {
                            err["error"]["fields"] = json!(fields);
                        }
                        _ => {}
                    }
                    (status, err)
                }
            }
            ApiError::Request {
                status,
                code,
                message,
            } => (status, json!({"error": {"code": code, "message": message}})),
            ApiError::RateLimited { retry_after } => {
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"error": {"code": "rate_limited", "message": format!("too many requests for this token; retry after {retry_after} s")}})),
                )
                    .into_response();
                if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
                    resp.headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, v);
                }
                return resp;
            }
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
