//! Administration: the streamed backup.

use super::*;

/// Streams an encrypted, consistent backup of the data directory (admin only).
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn backup(
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
