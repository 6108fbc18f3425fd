//! `GET /api/v1/channels/{n}/clip.mp4?start=…&end=…`: an .mp4 built from the
//! index on request, with HTTP Range, ETag and If-None-Match/If-Range support
//! so a browser `<video>` can seek in it. Gaps are listed in `X-Tandem-Gaps`,
//! stored frames left out because footage overlaps in `X-Tandem-Overlaps` and
//! `X-Tandem-Frames-Omitted`, unreadable stored footage in `X-Tandem-Damaged`.
//!
//! Never answers with a length it cannot send: the files a response reads are
//! opened and measured before the status is chosen (503 with `Retry-After` if
//! one vanished since planning), and a read that fails later aborts the
//! connection rather than ending the body early.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{channel_param, time_param, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::auth::Principal;
use crate::export::{open_sources, parse_range, write_range, RangeRequest};
use crate::mp4::clip::{self, ClipError};
use crate::nvr::Nvr;

const CHUNK: usize = 256 * 1024;
/// Source files one response keeps open from planning to sending; a longer
/// clip's later files are checked up front and opened when reached.
const KEEP_OPEN: usize = 32;
/// Entries listed in one report header; the rest are counted, not listed.
const HEADER_ITEMS: usize = 50;

/// A report header's JSON: at most `HEADER_ITEMS` entries.
fn list_header<T: serde::Serialize>(items: &[T]) -> Option<HeaderValue> {
    let json = serde_json::to_string(&items[..items.len().min(HEADER_ITEMS)]).ok()?;
    HeaderValue::from_str(&json).ok()
}

pub async fn clip(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ch = channel_param(&nvr, &n)?;
    let start = time_param("start", q.get("start"))?;
    let end = time_param("end", q.get("end"))?;
    let reader = nvr.reader.clone();
    let built = tokio::task::spawn_blocking(move || {
        let footage = reader.footage(ch, start, end)?;
        Ok::<_, anyhow::Error>(clip::build(&footage.segments, &footage.damaged, start, end))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let clip = match built {
        Ok(c) => Arc::new(c),
        Err(e @ (ClipError::NoFootage | ClipError::Unreadable(_))) => return Err(ApiError::not_found(e.to_string())),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let etag = HeaderValue::from_str(&clip.etag).map_err(ApiError::internal)?;
    let hv = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if hv(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == clip.etag || t.trim() == "*")) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // If-Range with a stale validator means "send the whole new file".
    let range_header = match hv(header::IF_RANGE) {
        Some(v) if v != clip.etag => None,
        _ => hv(header::RANGE),
    };
    let (status, from, to) = match parse_range(range_header, clip.len) {
        RangeRequest::Full => (StatusCode::OK, 0, clip.len),
        RangeRequest::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        RangeRequest::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{}", clip.len))],
            )
                .into_response())
        }
    };
    // One entry per export, not per seek: a player's later range requests
    // for the same clip are not new exports.
    if from == 0 {
        nvr.access
            .record(Entry::new(
                p.actor,
                Some(client.ip()),
                Action::ClipExport,
                format!("channel {ch}: {} to {}", clip.start.to_rfc3339(), clip.end.to_rfc3339()),
            ))
            .await?;
    }
    let c = clip.clone();
    let opened = tokio::task::spawn_blocking(move || open_sources(&c, from, to, KEEP_OPEN))
        .await
        .map_err(ApiError::internal)?;
    let sources = match opened {
        Ok(s) => s,
        Err(e) => {
            // Retention or damage removed footage since the plan: a new
            // request plans again from what exists.
            tracing::warn!("clip planned over a file that is no longer readable: {e:#}");
            return Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                axum::Json(serde_json::json!({
                    "error": format!("footage changed while the clip was prepared ({e:#}); try again")
                })),
            )
                .into_response());
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let c = clip.clone();
    tokio::task::spawn_blocking(move || {
        let r = write_range(&c, sources, from, to, CHUNK, |b| tx.blocking_send(Ok(b)).is_ok());
        if let Err(e) = r {
            tracing::warn!("clip read failed mid-response: {e:#}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, etag);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(to - from));
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!("bytes {}-{}/{}", from, to - 1, clip.len);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&v).map_err(ApiError::internal)?,
        );
    }
    if let Some(v) = list_header(&clip.gaps) {
        h.insert("x-tandem-gaps", v);
    }
    if let Some(v) = list_header(&clip.overlaps) {
        h.insert("x-tandem-overlaps", v);
    }
    h.insert("x-tandem-frames-omitted", HeaderValue::from(clip.frames_omitted));
    if let Some(v) = list_header(&clip.damaged) {
        h.insert("x-tandem-damaged", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", clip.start.to_rfc3339(), clip.end.to_rfc3339())) {
        h.insert("x-tandem-range", v);
    }
    Ok(resp)
}
