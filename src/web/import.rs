//! `/api/v1/import/{origin}/{segment}`: the receiving side of failback. A peer
//! uploads one of its segment files in resumable pieces, then asks for it to be
//! merged into a channel. Requires `Authorization: Bearer <peer token>`; a
//! request without it is refused before anything is stored.
//!
//! - `GET`  → `{ "received": bytes, "imported": bool }` (where to resume)
//! - `PUT ?offset=N` with bytes → appended if N equals what was received (409 otherwise)
//! - `POST …/complete?channel=N&length=L` → merged once the staged file has L bytes

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::{channel_param, ApiError, ApiResult};
use crate::nvr::Nvr;
use crate::store::import::ImportRequest;

/// Largest piece accepted in one PUT.
pub const MAX_PIECE: usize = 8 << 20;
// The sender's pieces must fit.
const _: () = assert!(MAX_PIECE >= crate::failover::transfer::MAX_CHUNK);

fn authorize(nvr: &Nvr, headers: &HeaderMap) -> ApiResult<()> {
    let Some(token) = nvr.config.failover.peer_token.as_deref() else {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            "importing is disabled: no failover.peer_token is configured",
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit so timing does not reveal a prefix.
    let ok = given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::status(
            StatusCode::UNAUTHORIZED,
            "a valid peer token is required",
        ))
    }
}

fn staged_path(nvr: &Nvr, origin: &str, segment: &str) -> ApiResult<(std::path::PathBuf, i64)> {
    if origin.is_empty() || origin.len() > 64 || !origin.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("origin must be 1 to 64 hex digits"));
    }
    let seg: i64 = segment
        .parse()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| ApiError::bad_request("bad segment id"))?;
    Ok((nvr.staging_dir().join(format!("{origin}-{seg}.part")), seg))
}

fn imported(nvr: &Nvr, origin: &str, seg: i64) -> ApiResult<bool> {
    let conn = crate::store::db::open_readonly(&nvr.config.storage.dir.join("index.db")).map_err(ApiError::internal)?;
    conn.query_row(
        "SELECT COUNT(*) FROM import WHERE origin = ?1 AND origin_segment = ?2",
        rusqlite::params![origin, seg],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(ApiError::internal)
}

pub async fn status(
    State(nvr): State<Arc<Nvr>>,
    Path((origin, segment)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&nvr, &headers)?;
    let (path, seg) = staged_path(&nvr, &origin, &segment)?;
    let received = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let imported = tokio::task::spawn_blocking(move || imported(&nvr, &origin, seg))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(serde_json::json!({ "received": received, "imported": imported })))
}

pub async fn put_piece(
    State(nvr): State<Arc<Nvr>>,
    Path((origin, segment)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    authorize(&nvr, &headers)?;
    let (path, _) = staged_path(&nvr, &origin, &segment)?;
    let offset: u64 = q
        .get("offset")
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| ApiError::bad_request("query parameter `offset` is required"))?;
    let dir = nvr.staging_dir();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
        let received = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if offset != received {
            return Ok((StatusCode::CONFLICT, Json(serde_json::json!({ "received": received }))));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(ApiError::internal)?;
        f.write_all(&body)
            .and_then(|_| f.sync_data())
            .map_err(ApiError::internal)?;
        Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "received": received + body.len() as u64 })),
        ))
    })
    .await
    .map_err(ApiError::internal)?
}

pub async fn complete(
    State(nvr): State<Arc<Nvr>>,
    Path((origin, segment)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&nvr, &headers)?;
    let (path, seg) = staged_path(&nvr, &origin, &segment)?;
    let channel = channel_param(&nvr, q.get("channel").map(String::as_str).unwrap_or(""))?;
    let length: u64 = q
        .get("length")
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| ApiError::bad_request("query parameter `length` is required"))?;
    let outcome = tokio::task::spawn_blocking(move || {
        if imported(&nvr, &origin, seg)? {
            let _ = std::fs::remove_file(&path);
            return Ok(serde_json::json!({ "already": true }));
        }
        let received = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if received != length {
            return Err(ApiError::status(
                StatusCode::CONFLICT,
                format!("received {received} of {length} bytes; resume the upload"),
            ));
        }
        let req = ImportRequest {
            channel,
            origin,
            origin_segment: seg,
            staged: path,
        };
        let out = nvr
            .import(req)
            .map_err(|e| ApiError::status(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        serde_json::to_value(out).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(outcome))
}
