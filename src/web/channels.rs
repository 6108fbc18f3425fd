//! `/api/v1/channels` and `/api/v1/channels/{n}/recordings`: the channels a
//! caller may see and the runs of footage stored for one of them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};

use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::Principal;
use crate::nvr::{ChannelView, Nvr};

#[utoipa::path(
    get,
    path = "/api/v1/channels",
    tag = "channels",
    summary = "Channels",
    description = "The channels the caller may see: number, name, binding, ingest counters (with the frames and \
                   GOPs dropped for a full write buffer), recording state (with frames lost to failed fsyncs), \
                   policy, motion, and the store's shared write buffer (bound, fill, slow-disk episodes).",
    responses((status = 200, description = "A JSON array, one object per channel", body = Vec<Object>)),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn list(State(nvr): State<Arc<Nvr>>, Extension(p): Extension<Principal>) -> Json<Vec<ChannelView>> {
    let mut v = nvr.channel_views();
    v.retain(|c| p.can_see(c.number));
    Json(v)
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/recordings",
    tag = "channels",
    summary = "Recorded stretches",
    description = "The channel's stored footage overlapping `start`–`end`, as contiguous runs with frames, \
                   bytes, codec, size and overlaps (`\"origin\": \"gapfill\"` on runs fetched from the camera's \
                   edge storage), and `gapfill`: the stretches gap fill is fetching or has fetched, with their state.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("start" = String, Query, description = "RFC 3339 time", format = DateTime),
        ("end" = String, Query, description = "RFC 3339 time, after `start`", format = DateTime),
    ),
    responses(
        (status = 200, description = "`{\"channel\", \"recordings\": [...], \"gapfill\": [...]}`", body = Object),
        (status = 400, description = "A bad channel number or time, named", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn recordings(
    State(nvr): State<Arc<Nvr>>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let ch = params::channel(&nvr, &n)?;
    let start = params::time("start", q.get("start"))?;
    let end = params::time("end", q.get("end"))?;
    params::span(start, end, i64::MAX)?;
    let reader = nvr.reader.clone();
    let runs = tokio::task::spawn_blocking(move || reader.recordings(ch, start, end))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let gapfill = super::gapfill::stretches(&nvr, ch, start, end).await?;
    Ok(Json(
        serde_json::json!({ "channel": ch, "recordings": runs, "gapfill": gapfill }),
    ))
}
