//! `GET /api/v1/channels/{n}/clip.mp4?start=…&end=…`: an .mp4 built from the
//! index on request, with HTTP Range, ETag and If-None-Match/If-Range support
//! so a browser `<video>` can seek in it. Gaps are listed in `X-Tandem-Gaps`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{channel_param, time_param, ApiError, ApiResult};
use crate::export::{parse_range, write_range, RangeRequest};
use crate::mp4::clip::{self, ClipError};
use crate::nvr::Nvr;

const CHUNK: usize = 256 * 1024;

pub async fn clip(
    State(nvr): State<Arc<Nvr>>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ch = channel_param(&nvr, &n)?;
    let start = time_param("start", q.get("start"))?;
    let end = time_param("end", q.get("end"))?;
    let reader = nvr.reader.clone();
    let built = tokio::task::spawn_blocking(move || {
        let segs = reader.segment_frames(ch, start, end)?;
        Ok::<_, anyhow::Error>(clip::build(&segs, start, end))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let clip = match built {
        Ok(c) => Arc::new(c),
        Err(e @ ClipError::NoFootage) => return Err(ApiError::not_found(e.to_string())),
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
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let c = clip.clone();
    tokio::task::spawn_blocking(move || {
        let r = write_range(&c, from, to, CHUNK, |b| tx.blocking_send(Ok(b)).is_ok());
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
    let gaps = serde_json::to_string(&clip.gaps).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&gaps) {
        h.insert("x-tandem-gaps", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", clip.start.to_rfc3339(), clip.end.to_rfc3339())) {
        h.insert("x-tandem-range", v);
    }
    Ok(resp)
}
