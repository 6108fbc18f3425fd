//! `GET /api/v1/channels/{n}/clip.mp4?start=…&end=…`: an .mp4 built from the
//! index on request, with HTTP Range, ETag and If-None-Match/If-Range support
//! so a browser `<video>` can seek in it. Gaps are listed in `X-Tandem-Gaps`,
//! stored frames left out because footage overlaps in `X-Tandem-Overlaps` and
//! `X-Tandem-Frames-Omitted`, unreadable stored footage in `X-Tandem-Damaged`.
//!
//! For a channel with a backup peer (`failover::federation`): a range this
//! NVR has no footage in is served from the peer's own clip, fetched a
//! bounded piece at a time under the peer token (`X-Tandem-Held-By` names
//! the peer); a range with some local footage is served from it, the peer's
//! stretches inside it listed in `X-Tandem-Held-By` (one clip each: the two
//! stores' footage is not spliced into one file). A peer that is down or
//! slow leaves the local answer as it would be without it.
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

use super::doc::{ErrorBody, Mp4};
use super::{params, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::auth::Principal;
use crate::export::{open_sources, parse_range, write_range, RangeRequest};
use crate::failover::federation::{self, PeerClip, PeerClipError, PeerRef};
use crate::mp4::clip::{self, ClipError};
use crate::nvr::Nvr;
use crate::time::Time90k;

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

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/clip.mp4",
    tag = "channels",
    summary = "A clip as .mp4",
    description = "An .mp4 of the channel's footage from `start` to `end` (at most 12 hours), built from the \
                   index. Supports `Range`, `If-Range` and `If-None-Match`. Gaps, overlaps, omitted frames \
                   and damaged footage are reported in `X-Tandem-Gaps`, `X-Tandem-Overlaps`, \
                   `X-Tandem-Frames-Omitted` and `X-Tandem-Damaged`; the range sent in `X-Tandem-Range`. \
                   For a channel with a backup peer, a range with no footage here is the peer's clip \
                   (`X-Tandem-Held-By`: the peer), and the peer's stretches inside a local clip are listed in \
                   `X-Tandem-Held-By`. Also answered to a peer NVR's token.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("start" = String, Query, description = "RFC 3339 time", format = DateTime),
        ("end" = String, Query, description = "RFC 3339 time, after `start`, at most 12 h later", format = DateTime),
        ("federated" = Option<String>, Query, description = "`1` (default for channels with a backup peer or in a pool): \
          a range without local footage comes from the peer; `0`: this NVR's only"),
    ),
    responses(
        (status = 200, description = "The whole clip", content_type = "video/mp4", body = Mp4),
        (status = 206, description = "The requested byte range", content_type = "video/mp4", body = Mp4),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 400, description = "A bad channel number, time or range, named", body = ErrorBody),
        (status = 404, description = "No such channel, or no footage in the range", body = ErrorBody),
        (status = 416, description = "The byte range lies past the clip's end"),
        (status = 503, description = "Footage changed while the clip was prepared; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn clip(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ch = params::channel(&nvr, &n)?;
    let start = params::time("start", q.get("start"))?;
    let end = params::time("end", q.get("end"))?;
    // Before the index is read: the footage loaded is bounded by the longest
    // clip, not by the range a client asks for.
    params::span(start, end, clip::MAX_CLIP)?;
    let peers = match super::channels::federated(&q)? {
        true => nvr.federation_peers(ch),
        false => Vec::new(),
    };
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
        Err(e @ ClipError::NoFootage) if !peers.is_empty() => {
            return match federated_clip(&nvr, &p, client, ch, peers, start, end, &headers).await? {
                Some(r) => Ok(r),
                None => Err(ApiError::not_found(format!(
                    "{e}, here or on the channel's backup peers"
                ))),
            };
        }
        Err(e @ (ClipError::NoFootage | ClipError::Unreadable(_))) => return Err(ApiError::not_found(e.to_string())),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let held_by = if clip.gaps.is_empty() || peers.is_empty() {
        None
    } else {
        held_by_peers(&nvr, ch, peers, start, end).await
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
    if let Some(v) = held_by.as_deref().and_then(list_header) {
        h.insert("x-tandem-held-by", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", clip.start.to_rfc3339(), clip.end.to_rfc3339())) {
        h.insert("x-tandem-range", v);
    }
    Ok(resp)
}

/// The peers' stretches inside a local clip's gaps (`X-Tandem-Held-By`);
/// `None` when no peer holds any or none answers.
async fn held_by_peers(
    nvr: &Arc<Nvr>,
    ch: u32,
    peers: Vec<PeerRef>,
    start: Time90k,
    end: Time90k,
) -> Option<Vec<crate::failover::peer::Run>> {
    let config = nvr.config();
    let token = config.failover.peer_token.clone()?;
    let tls = crate::failover::transfer::peer_tls(&config.failover);
    let reader = nvr.reader.clone();
    let runs = tokio::task::spawn_blocking(move || {
        let local = reader.recordings(ch, start, end).ok()?;
        let spans = federation::local_spans(&local, end);
        Some(federation::federate(&peers, &spans, start, end, Some(&token), tls.as_ref()).0)
    })
    .await
    .ok()??;
    (!runs.is_empty()).then_some(runs)
}

/// A range with no local footage, served from the first backup peer that
/// has footage there; `None` when none has (or none answers).
#[allow(clippy::too_many_arguments)]
async fn federated_clip(
    nvr: &Arc<Nvr>,
    p: &Principal,
    client: SocketAddr,
    ch: u32,
    peers: Vec<PeerRef>,
    start: Time90k,
    end: Time90k,
    headers: &HeaderMap,
) -> ApiResult<Option<Response>> {
    let config = nvr.config();
    let Some(token) = config.failover.peer_token.clone() else {
        return Ok(None);
    };
    let tls = crate::failover::transfer::peer_tls(&config.failover);
    let (t, l) = (token.clone(), tls.clone());
    let opened = tokio::task::spawn_blocking(move || {
        for peer in peers {
            match federation::open_clip(&peer, start, end, &t, l.as_ref()) {
                Ok(c) => return Some((peer, c)),
                Err(PeerClipError::NoFootage) => {}
                Err(e) => tracing::info!(peer = %peer.name, channel = ch, "federated clip: {e}"),
            }
        }
        None
    })
    .await
    .map_err(ApiError::internal)?;
    let Some((peer, pc)) = opened else {
        return Ok(None);
    };
    let hv = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if hv(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == pc.etag || t.trim() == "*")) {
        let etag = HeaderValue::from_str(&pc.etag).map_err(ApiError::internal)?;
        return Ok(Some((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()));
    }
    let range_header = match hv(header::IF_RANGE) {
        Some(v) if v != pc.etag => None,
        _ => hv(header::RANGE),
    };
    let (status, from, to) = match parse_range(range_header, pc.len) {
        RangeRequest::Full => (StatusCode::OK, 0, pc.len),
        RangeRequest::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        RangeRequest::Unsatisfiable => {
            return Ok(Some(
                (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{}", pc.len))],
                )
                    .into_response(),
            ))
        }
    };
    if from == 0 {
        nvr.access
            .record(Entry::new(
                p.actor.clone(),
                Some(client.ip()),
                Action::ClipExport,
                format!(
                    "channel {ch}: {} to {} (held by peer {})",
                    start.to_rfc3339(),
                    end.to_rfc3339(),
                    peer.name
                ),
            ))
            .await?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    let c: PeerClip = pc.clone();
    tokio::task::spawn_blocking(move || {
        let mut at = from;
        while at < to {
            match c.piece(at, to, &token, tls.as_ref()) {
                Ok(b) => {
                    at += b.len() as u64;
                    if tx.blocking_send(Ok(b)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Aborting the connection, not ending the body early:
                    // the length promised cannot be sent.
                    tracing::warn!(channel = ch, "federated clip failed mid-response: {e}");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&pc.etag).map_err(ApiError::internal)?,
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(to - from));
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!("bytes {}-{}/{}", from, to - 1, pc.len);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&v).map_err(ApiError::internal)?,
        );
    }
    if let Ok(v) = HeaderValue::from_str(&peer.name) {
        h.insert("x-tandem-held-by", v);
    }
    for (name, v) in [("x-tandem-gaps", &pc.gaps), ("x-tandem-range", &pc.range)] {
        if let Some(v) = v.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    Ok(Some(resp))
}
