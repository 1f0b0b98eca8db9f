//! Users and their roles.

use super::*;

/// Lists users (admin only).
#[utoipa::path(get, path = "/v1/users", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Users", body = UserList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<UserList>, ApiError> {
    let hub = state.hub.clone();
    let users = blocking(move || hub.list_users(&actor)).await?;
    Ok(Json(UserList {
        items: users.into_iter().map(User::from).collect(),
    }))
}

pub(super) fn role(raw: &str) -> Result<hub::Role, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_param(
            "role",
            "one of admin, fundraiser, volunteer, data-manager, dpo, auditor",
        )
    })
}

/// Adds a user; the answer holds its API token, shown this once (admin only).
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created, with the token", body = NewUserToken),
        (status = 400, description = "Bad name or role", body = ErrorBody),
        (status = 422, description = "A console password too short or too long", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn add_user(
    State(state): State<AppState>,
    Caller(actor): Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req: NewUser = serde_json::from_value(json_body(body)?).map_err(|_| {
        ApiError::bad_param(
            "body",
            "expected {\"name\": ..., \"role\": ..., \"password\": optional}",
        )
    })?;
    let role = role(&req.role)?;
    let hub = state.hub.clone();
    let (p, token) = blocking(move || {
        hub.add_user_with_password(&actor, &req.name, role, req.password.as_deref())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewUserToken {
            id: p.id.to_string(),
            name: p.name,
            role: p.role.to_string(),
            token,
        }),
    )
        .into_response())
}

/// Revokes a user: its token stops working at once (admin only).
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = User),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only; the local admin cannot be revoked", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn revoke_user(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.revoke_user(&actor, &name))
            .await?
            .into(),
    ))
}

/// Changes a user's role (admin only).
#[utoipa::path(patch, path = "/v1/users/{name}", tag = "users", request_body = RoleChange,
    params(("name" = String, Path, description = "User name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = User),
        (status = 400, description = "Bad role", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn change_role(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let req: RoleChange = serde_json::from_value(json_body(body)?)
        .map_err(|_| ApiError::bad_param("body", "expected {\"role\": ...}"))?;
    let role = role(&req.role)?;
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.set_user_role(&actor, &name, role))
            .await?
            .into(),
    ))
}

/// Sets a user's console password; the user's console sessions end and a lock is lifted
/// (admin only).
#[utoipa::path(put, path = "/v1/users/{name}/password", tag = "users", request_body = NewPassword,
    params(("name" = String, Path, description = "User name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Set", body = User),
        (status = 400, description = "Not a JSON object with a password", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Admins only; the local admin has no password", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Too short or too long", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub(super) async fn set_password(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let req: NewPassword = serde_json::from_value(json_body(body)?)
        .map_err(|_| ApiError::bad_param("body", "expected {\"password\": ...}"))?;
    let hub = state.hub.clone();
    Ok(Json(
        blocking(move || hub.set_password(&actor, &name, &req.password))
            .await?
            .into(),
    ))
}
