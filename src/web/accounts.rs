//! `/api/v1/users` (admins manage users), `/api/v1/tokens` (API tokens for
//! scripts and other video-management software) and `/api/v1/audit` (the
//! audit log, for admins). Every change is written to the audit log.
//!
//! Must never return a secret except once, in the answer that creates it,
//! and never let a token grant more than the principal creating it has.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::access::now_ms;
use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::audit_log::{self, Action, Entry};
use crate::auth::credentials;
use crate::auth::users::{self, UserError};
use crate::auth::{Principal, Role};
use crate::nvr::Nvr;

fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::BadName(_) | UserError::Password(_) => ApiError::bad_request(e.to_string()),
        UserError::Exists(_) | UserError::LastAdmin(_) | UserError::NoAdmin => {
            ApiError::status(StatusCode::CONFLICT, e.to_string())
        }
        UserError::NoSuchUser(_) => ApiError::not_found(e.to_string()),
        UserError::Db(e) => ApiError::internal(e),
    }
}

/// Channels in a request body: `null` for all, or a list of numbers.
fn channel_set(v: Option<Vec<u32>>) -> ApiResult<Option<BTreeSet<u32>>> {
    match v {
        None => Ok(None),
        Some(l) if l.contains(&0) => Err(ApiError::bad_request("`channels`: channel numbers start at 1")),
        Some(l) => Ok(Some(l.into_iter().collect())),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "access",
    summary = "Users",
    responses((status = 200, description = "`{\"users\": [...]}`: name, role, channels", body = Object)),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn list_users(State(nvr): State<Arc<Nvr>>) -> ApiResult<Json<serde_json::Value>> {
    let list = nvr
        .access
        .with_db(|c| users::list(c).map_err(ApiError::internal))
        .await?;
    Ok(Json(serde_json::json!({ "users": list })))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: Role,
    password: String,
    /// Channels a non-admin may see; omitted or null for all.
    channels: Option<Vec<u32>>,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "access",
    summary = "Add a user",
    description = "Passwords have at least 12 characters and are stored as Argon2id hashes.",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user (without the password)", body = Object),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn add_user(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<NewUser>,
) -> ApiResult<Response> {
    let channels = channel_set(b.channels)?;
    let name = b.name.clone();
    let u = nvr
        .access
        .with_db(move |c| users::add(c, &b.name, b.role, channels, &b.password, now_ms()).map_err(user_error))
        .await?;
    nvr.access
        .record(Entry::new(
            p.actor,
            Some(addr.ip()),
            Action::UserChange,
            format!("user {name}: added as {}", u.role),
        ))
        .await?;
    tracing::info!(user = %name, role = %u.role, "user added");
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    role: Option<Role>,
    password: Option<String>,
    /// A list, or null for all channels; omit to leave as is.
    #[serde(default, deserialize_with = "present")]
    channels: Option<Option<Vec<u32>>>,
}

/// Tells `"channels": null` (all) from an absent field (unchanged).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Vec<u32>>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{name}",
    tag = "access",
    summary = "Change a user",
    description = "Role, password or channels; fields left out stay as they are.",
    params(("name" = String, Path, description = "The user name")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user as changed", body = Object),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn change_user(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Json(b): Json<UserChange>,
) -> ApiResult<Json<users::User>> {
    let channels = match b.channels {
        None => None,
        Some(c) => Some(channel_set(c)?),
    };
    let mut what = Vec::new();
    if let Some(r) = b.role {
        what.push(format!("role {r}"));
    }
    if let Some(c) = &channels {
        what.push(format!(
            "channels {}",
            c.as_ref().map_or("all".into(), |c| format!("{c:?}"))
        ));
    }
    if b.password.is_some() {
        what.push("password".into());
    }
    let n = name.clone();
    let u = nvr
        .access
        .with_db(move |c| {
            if let Some(pw) = &b.password {
                users::set_password(c, &n, pw, now_ms()).map_err(user_error)?;
            }
            users::update(c, &n, b.role, channels, now_ms()).map_err(user_error)
        })
        .await?;
    nvr.access.forget_cached();
    nvr.access
        .record(Entry::new(
            p.actor,
            Some(addr.ip()),
            Action::UserChange,
            format!("user {name}: changed {}", what.join(", ")),
        ))
        .await?;
    Ok(Json(u))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "access",
    summary = "Delete a user",
    description = "Their sessions and tokens end with them.",
    params(("name" = String, Path, description = "The user name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn delete_user(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let n = name.clone();
    nvr.access
        .with_db(move |c| users::delete(c, &n).map_err(user_error))
        .await?;
    nvr.access.forget_cached();
    nvr.access
        .record(Entry::new(
            p.actor,
            Some(addr.ip()),
            Action::UserChange,
            format!("user {name}: deleted"),
        ))
        .await?;
    tracing::info!(user = %name, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Admins see every token; others their own.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "access",
    summary = "API tokens",
    description = "Admins see every token, others their own; never the secrets.",
    responses((status = 200, description = "`{\"tokens\": [...]}`", body = Object)),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn list_tokens(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<serde_json::Value>> {
    let only = (!p.has(Role::Admin)).then(|| p.user.clone());
    let list = nvr
        .access
        .with_db(move |c| credentials::list_tokens(c, only.as_deref()).map_err(ApiError::internal))
        .await?;
    Ok(Json(serde_json::json!({ "tokens": list })))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    /// RFC 3339 time after which the token stops working; omit for none.
    expires: Option<String>,
    /// At most the creator's role; omit for the same.
    role: Option<Role>,
    /// A subset of the creator's channels; omit for the same.
    channels: Option<Vec<u32>>,
}

/// `POST /api/v1/tokens`: a token for the calling user, never wider than them.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "access",
    summary = "Create an API token",
    description = "A token for the calling user, never wider than them, shown once in the answer; send it as \
                   `Authorization: Bearer …`.",
    request_body = NewToken,
    responses(
        (status = 201, description = "The token's id, name, role, channels, expiry and `token` (the secret)", body = Object),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 403, description = "Wider than the caller", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn create_token(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<NewToken>,
) -> ApiResult<Response> {
    let name = b.name.trim().to_string();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("`name`: 1 to 64 printable characters"));
    }
    let expires_ms = match &b.expires {
        None => None,
        Some(s) => {
            let t = params::time("expires", Some(s))?;
            let ms = t.as_unix_micros().div_euclid(1000);
            if ms <= now_ms() {
                return Err(ApiError::bad_request("`expires` must be in the future"));
            }
            Some(ms)
        }
    };
    let role = b.role.unwrap_or(p.role);
    if role > p.role {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            format!("`role`: a token cannot have more than your role ({})", p.role),
        ));
    }
    let channels = match (channel_set(b.channels)?, &p.channels) {
        (Some(want), Some(mine)) if !want.is_subset(mine) => {
            return Err(ApiError::status(
                StatusCode::FORBIDDEN,
                "`channels`: a token cannot see channels you cannot",
            ))
        }
        (None, mine) => mine.clone(),
        (want, _) => want,
    };
    let (user, n, ch) = (p.user.clone(), name.clone(), channels.clone());
    let (id, secret) = nvr
        .access
        .with_db(move |c| {
            credentials::create_token(c, &user, &n, role, ch, expires_ms, now_ms()).map_err(ApiError::internal)
        })
        .await?;
    nvr.access
        .record(Entry::new(
            p.actor,
            Some(addr.ip()),
            Action::TokenChange,
            format!("token {id} ({name}) for {}: created as {role}", p.user),
        ))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "name": name,
            "user": p.user,
            "role": role,
            "channels": channels,
            "expires": b.expires,
            "token": secret,
        })),
    )
        .into_response())
}

/// `DELETE /api/v1/tokens/{id}`: admins revoke any token, others their own.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "access",
    summary = "Revoke an API token",
    description = "Admins revoke any token, others their own.",
    params(("id" = i64, Path, description = "The token's id", minimum = 1)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Not a token id", body = ErrorBody),
        (status = 404, description = "No such token (of the caller's)", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn revoke_token(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = params::integer("id", &id, 1..=i64::MAX)?;
    let (admin, me) = (p.has(Role::Admin), p.user.clone());
    nvr.access
        .with_db(move |c| {
            let owner = credentials::list_tokens(c, None)
                .map_err(ApiError::internal)?
                .into_iter()
                .find(|t| t.id == id)
                .map(|t| t.user);
            match owner {
                // Someone else's token is as good as absent to a non-admin.
                Some(o) if admin || o == me => credentials::revoke_token(c, id).map_err(ApiError::internal),
                _ => Err(ApiError::not_found(format!("no token {id}"))),
            }
        })
        .await?;
    nvr.access.forget_cached();
    nvr.access
        .record(Entry::new(
            p.actor,
            Some(addr.ip()),
            Action::TokenChange,
            format!("token {id}: revoked"),
        ))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/audit?start&end&user&action&limit`: newest last.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "access",
    summary = "The audit log",
    description = "Who logged in, watched, exported, triggered or changed what; newest last.",
    params(
        ("start" = Option<String>, Query, description = "RFC 3339 time", format = DateTime),
        ("end" = Option<String>, Query, description = "RFC 3339 time", format = DateTime),
        ("user" = Option<String>, Query, description = "Only this actor"),
        ("action" = Option<String>, Query, description = "Only this action (`login`, `clip_export`, …)"),
        ("limit" = Option<u32>, Query, description = "At most this many entries (1–10000, default 1000)", minimum = 1, maximum = 10000),
    ),
    responses(
        (status = 200, description = "`{\"entries\": [...]}` with each entry's hash chain", body = Object),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn audit(
    State(nvr): State<Arc<Nvr>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let ms = |name: &str| -> ApiResult<Option<i64>> {
        q.get(name)
            .map(|v| params::time(name, Some(v)).map(|t| t.as_unix_micros().div_euclid(1000)))
            .transpose()
    };
    let action = match q.get("action") {
        None => None,
        Some(a) => Some(Action::parse(a).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`action`: `{}` is not one of {}",
                crate::excerpt::short(a),
                Action::ALL.map(|a| a.as_str()).join(", ")
            ))
        })?),
    };
    let limit = match q.get("limit") {
        None => 1000,
        Some(l) => params::integer("limit", l, 1..=10_000usize)?,
    };
    let query = audit_log::Query {
        start_ms: ms("start")?,
        end_ms: ms("end")?,
        actor: q.get("user").cloned(),
        action,
        limit,
    };
    let rows = nvr
        .access
        .with_db(move |c| audit_log::search(c, &query).map_err(ApiError::internal))
        .await?;
    Ok(Json(serde_json::json!({ "entries": rows })))
}
