//! `/api/v1/import/{origin}/{segment}`: the receiving side of failback. A peer
//! uploads one of its segment files in resumable pieces, then asks for it to be
//! merged into a channel. Requires `Authorization: Bearer <peer token>`,
//! checked from the headers before a byte of body is read (`gate`).
//!
//! - `GET`  → `{ "received": bytes, "imported": bool }` (where to resume)
//! - `PUT ?offset=N` with bytes → appended if N equals what was received (409
//!   otherwise, or while another piece of the same upload is being written);
//!   the piece is streamed to disk and is either appended whole or not at all
//! - `DELETE` → the staged upload is dropped (a sender that lost track starts over)
//! - `POST …/complete?channel=N&length=L[&capture_offset=O]` → merged once the
//!   staged file has L bytes, moved into this NVR's time by the camera's clock
//!   (`O`: the sender's camera − NVR clock offset, 90 kHz ticks)
//!
//! Bounded everywhere: two imports at a time (503 with `Retry-After` past
//! that), pieces of at most `MAX_PIECE`, staging within its quota and above
//! the free-space floor (507), uploads expire, rejected uploads are removed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::failover::peer::UploadState;
use crate::nvr::Nvr;
use crate::store::import::{admit, ImportError, ImportRequest, Refusal, Staging, MAX_CAPTURE_OFFSET};

/// Largest piece accepted in one PUT.
pub const MAX_PIECE: u64 = 8 << 20;
// The sender's pieces must fit.
const _: () = assert!(MAX_PIECE >= crate::failover::transfer::MAX_CHUNK as u64);
/// Imports served at once (uploads and merges); more wait outside.
pub const IMPORT_SLOTS: usize = 2;

/// In front of every import route, after the access layer has checked the
/// peer token: one of the import slots; only then is the body read.
pub async fn gate(State(nvr): State<Arc<Nvr>>, req: Request, next: Next) -> Response {
    let Ok(permit) = nvr.import_slots.clone().try_acquire_owned() else {
        return ApiError::busy(5, "imports are busy; try again shortly").into_response();
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

fn staged_path(nvr: &Nvr, origin: &str, segment: &str) -> ApiResult<(std::path::PathBuf, i64)> {
    if origin.is_empty() || origin.len() > 64 || !origin.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("`origin` must be 1 to 64 hex digits"));
    }
    let seg = params::integer("segment", segment, 0..=i64::MAX)?;
    Ok((nvr.staging_dir().join(format!("{origin}-{seg}.part")), seg))
}

fn imported(nvr: &Nvr, origin: &str, seg: i64) -> ApiResult<bool> {
    nvr.reader.imported(origin, seg).map_err(ApiError::internal)
}

#[utoipa::path(
    get,
    path = "/api/v1/import/{origin}/{segment}",
    tag = "import",
    summary = "Where an upload stands",
    description = "Failback: bytes of the segment received so far (where to resume) and whether it is imported.",
    params(
        ("origin" = String, Path, description = "The sending NVR's id: 1–64 hex digits"),
        ("segment" = i64, Path, description = "The segment's id on the sending NVR", minimum = 0),
    ),
    responses(
        (status = 200, description = "`{\"received\": bytes, \"imported\": bool}`", body = Object),
        (status = 400, description = "A bad origin or segment, named", body = ErrorBody),
        (status = 401, description = "No valid peer token", body = ErrorBody),
        (status = 503, description = "Imports are busy; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("peer")))
)]
pub async fn status(
    State(nvr): State<Arc<Nvr>>,
    Path((origin, segment)): Path<(String, String)>,
) -> ApiResult<Json<UploadState>> {
    let (path, seg) = staged_path(&nvr, &origin, &segment)?;
    let received = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let imported = tokio::task::spawn_blocking(move || imported(&nvr, &origin, seg))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(UploadState { received, imported }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/import/{origin}/{segment}",
    tag = "import",
    summary = "Drop a staged upload",
    params(
        ("origin" = String, Path, description = "The sending NVR's id: 1–64 hex digits"),
        ("segment" = i64, Path, description = "The segment's id on the sending NVR", minimum = 0),
    ),
    responses(
        (status = 204, description = "Dropped (or there was none)"),
        (status = 400, description = "A bad origin or segment, named", body = ErrorBody),
        (status = 401, description = "No valid peer token", body = ErrorBody),
        (status = 409, description = "A piece of this upload is being written", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("peer")))
)]
pub async fn reset(
    State(nvr): State<Arc<Nvr>>,
    Path((origin, segment)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (path, _) = staged_path(&nvr, &origin, &segment)?;
    let Some(_guard) = nvr.uploads.try_lock(&path) else {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "a piece of this upload is being written",
        ));
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/import/{origin}/{segment}",
    tag = "import",
    summary = "Upload a piece of a segment",
    description = "Appends the body (at most 8 MiB, with `Content-Length`) if `offset` equals the bytes received; \
                   the piece is appended whole or not at all.",
    params(
        ("origin" = String, Path, description = "The sending NVR's id: 1–64 hex digits"),
        ("segment" = i64, Path, description = "The segment's id on the sending NVR", minimum = 0),
        ("offset" = u64, Query, description = "Where this piece starts: the bytes received so far"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The piece's bytes"),
    responses(
        (status = 200, description = "`{\"received\": bytes}`", body = Object),
        (status = 400, description = "A bad origin, segment or offset, named", body = ErrorBody),
        (status = 401, description = "No valid peer token", body = ErrorBody),
        (status = 409, description = "`offset` is not where the upload stands (`{\"received\"}`), or another piece is being written", body = Object),
        (status = 411, description = "No `Content-Length`", body = ErrorBody),
        (status = 413, description = "The piece or the upload is too large", body = ErrorBody),
        (status = 507, description = "Staging is over its quota or the disk is low", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("peer")))
)]
pub async fn put_piece(
    State(nvr): State<Arc<Nvr>>,
    Path((origin, segment)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<UploadState>)> {
    let (path, _) = staged_path(&nvr, &origin, &segment)?;
    let offset = params::required_integer("offset", q.get("offset"), 0..=u64::MAX)?;
    let piece: u64 = match headers.get("content-length").and_then(|v| v.to_str().ok()) {
        Some(v) => params::integer("Content-Length", v, 0..=u64::MAX)?,
        None => {
            return Err(ApiError::status(
                StatusCode::LENGTH_REQUIRED,
                "a piece needs a Content-Length",
            ))
        }
    };
    if piece > MAX_PIECE {
        return Err(ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a piece may hold at most {MAX_PIECE} bytes"),
        ));
    }
    let Some(_guard) = nvr.uploads.try_lock(&path) else {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "another piece of this upload is being written; ask where to resume",
        ));
    };
    let received = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if offset != received {
        return Ok((
            StatusCode::CONFLICT,
            Json(UploadState {
                received,
                imported: false,
            }),
        ));
    }
    let dir = nvr.staging_dir();
    let limits = nvr.importer.limits.clone();
    let store_dir = nvr.config().storage.dir.clone();
    let (staged, free) = tokio::task::spawn_blocking(move || {
        (
            Staging { dir }.staged_bytes(),
            crate::store::free_bytes(&store_dir).unwrap_or(0),
        )
    })
    .await
    .map_err(ApiError::internal)?;
    if let Err(r) = admit(&limits, received, piece, staged, free) {
        let status = match r {
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::OverQuota { .. } | Refusal::LowSpace => StatusCode::INSUFFICIENT_STORAGE,
        };
        return Err(ApiError::status(status, r.to_string()));
    }
    tokio::fs::create_dir_all(nvr.staging_dir())
        .await
        .map_err(ApiError::internal)?;
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(ApiError::internal)?;
    // All of the piece or none of it: anything short of Content-Length
    // (a dropped connection, a body timeout) is cut off again.
    let written = copy_body(body, &mut f, piece, limits.receive_rate).await;
    let fail = match written {
        Ok(n) if n == piece => match f.sync_data().await {
            Ok(()) => None,
            Err(e) => Some(ApiError::internal(e)),
        },
        Ok(n) => Some(ApiError::bad_request(format!(
            "the body held {n} bytes, not the {piece} of its Content-Length"
        ))),
        Err(e) => Some(e),
    };
    if let Some(e) = fail {
        let _ = f.set_len(received).await;
        return Err(e);
    }
    Ok((
        StatusCode::OK,
        Json(UploadState {
            received: received + piece,
            imported: false,
        }),
    ))
}

/// Streams the body into `f` at most `rate` bytes per second (so staging
/// never floods the disk the recording writes to), refusing more than
/// `limit` bytes.
async fn copy_body(body: Body, f: &mut tokio::fs::File, limit: u64, rate: u64) -> ApiResult<u64> {
    let mut body = body;
    let mut n = 0u64;
    let started = tokio::time::Instant::now();
    while let Some(frame) = body.frame().await {
        let due = started + std::time::Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due).await;
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        n += data.len() as u64;
        if n > limit {
            return Ok(n);
        }
        f.write_all(&data).await.map_err(ApiError::internal)?;
    }
    Ok(n)
}

#[utoipa::path(
    post,
    path = "/api/v1/import/{origin}/{segment}/complete",
    tag = "import",
    summary = "Merge an uploaded segment",
    description = "Merges the staged segment into `channel` once it holds `length` bytes.",
    params(
        ("origin" = String, Path, description = "The sending NVR's id: 1–64 hex digits"),
        ("segment" = i64, Path, description = "The segment's id on the sending NVR", minimum = 0),
        ("channel" = u32, Query, description = "The local channel (1–4096)", minimum = 1, maximum = 4096),
        ("length" = u64, Query, description = "The segment file's length in bytes"),
        ("capture_offset" = Option<i64>, Query, description = "The sender's capture offset for this segment: \
          the camera's clock minus the sender's, in 90 kHz ticks (at most a day either way); absent = unknown. \
          The frames are shifted by it minus this NVR's offset before the merge."),
    ),
    responses(
        (status = 200, description = "What was merged (or `{\"already\": true}`)", body = Object),
        (status = 400, description = "A bad origin, segment, channel or length, named", body = ErrorBody),
        (status = 401, description = "No valid peer token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "Not all bytes received, or a piece is being written", body = ErrorBody),
        (status = 422, description = "The segment was rejected", body = ErrorBody),
        (status = 503, description = "The importer is busy; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("peer")))
)]
pub async fn complete(
    State(nvr): State<Arc<Nvr>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((origin, segment)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let (path, seg) = staged_path(&nvr, &origin, &segment)?;
    let channel = match q.get("channel") {
        Some(c) => params::channel(&nvr, c)?,
        None => return Err(ApiError::bad_request("query parameter `channel` is required")),
    };
    let length = params::required_integer("length", q.get("length"), 0..=u64::MAX)?;
    let capture_offset = match q.get("capture_offset") {
        Some(v) => Some(params::integer(
            "capture_offset",
            v,
            -MAX_CAPTURE_OFFSET..=MAX_CAPTURE_OFFSET,
        )?),
        None => None,
    };
    let Some(_guard) = nvr.uploads.try_lock(&path) else {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "a piece of this upload is being written",
        ));
    };
    let nvr2 = nvr.clone();
    let target = format!(
        "channel {channel}: segment {seg} from {}",
        crate::excerpt::short(&origin)
    );
    let outcome = tokio::task::spawn_blocking(move || {
        let nvr = nvr2;
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
            capture_offset,
        };
        let out = nvr.importer.merge(req).map_err(|e| match e {
            ImportError::Rejected(m) => ApiError::status(StatusCode::UNPROCESSABLE_ENTITY, m),
            ImportError::Busy => ApiError::busy(5, e.to_string()),
            ImportError::Failed(m) => ApiError::busy(30, m),
        })?;
        serde_json::to_value(out).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    if outcome.get("already").is_none() {
        // Written after the merge: the footage is in, whatever the log says.
        let e = Entry::new("peer", Some(addr.ip()), Action::PeerImport, target);
        if !nvr.access.audit.append_later(super::access::now_ms(), e) {
            tracing::warn!("audit log backed up: a peer import went unrecorded");
        }
    }
    Ok(Json(outcome))
}
