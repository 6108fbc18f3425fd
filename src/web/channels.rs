//! `/api/v1/channels` and `/api/v1/channels/{n}/recordings`: the channels a
//! caller may see and the runs of footage stored for one of them — with,
//! for a channel that has a backup peer, the peer's runs for ranges this NVR
//! lacks (`failover::federation`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};

use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::Principal;
use crate::failover::federation;
use crate::failover::peer::{Recordings, Run};
use crate::nvr::{ChannelView, Nvr};
use crate::time::Time90k;

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
                   edge storage), and `gapfill`: the stretches gap fill is fetching or has fetched, with their state. \
                   For a channel with a backup peer (a rule's `backup` maps it, or a standby announced it), runs \
                   the peer holds for ranges this NVR lacks are included, marked `held_by` (`host:port`), until \
                   the failback transfer brings them here; `peers` says which peers were asked and why one did \
                   not answer. Also answered to a peer NVR's token.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("start" = String, Query, description = "RFC 3339 time", format = DateTime),
        ("end" = String, Query, description = "RFC 3339 time, after `start`", format = DateTime),
        ("federated" = Option<String>, Query, description = "`1` (default for channels with a backup peer or in a pool): \
          include the peer's footage; `0`: this NVR's only"),
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
) -> ApiResult<Json<Recordings>> {
    let ch = params::channel(&nvr, &n)?;
    let start = params::time("start", q.get("start"))?;
    let end = params::time("end", q.get("end"))?;
    params::span(start, end, i64::MAX)?;
    let federated = federated(&q)?;
    let reader = nvr.reader.clone();
    let runs = tokio::task::spawn_blocking(move || reader.recordings(ch, start, end))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let spans = federation::local_spans(&runs, end);
    let mut recordings: Vec<Run> = runs
        .iter()
        .map(|r| serde_json::to_value(r).and_then(serde_json::from_value))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    let config = nvr.config();
    let peers = if federated {
        nvr.federation_peers(ch)
    } else {
        Vec::new()
    };
    let mut notes = Vec::new();
    if !peers.is_empty() {
        let token = config.failover.peer_token.clone();
        let tls = crate::failover::transfer::peer_tls(&config.failover);
        let (theirs, asked) = tokio::task::spawn_blocking(move || {
            federation::federate(&peers, &spans, start, end, token.as_deref(), tls.as_ref())
        })
        .await
        .map_err(ApiError::internal)?;
        recordings.extend(theirs);
        recordings.sort_by_key(|r| Time90k::parse_rfc3339(&r.start).map(|t| t.0).unwrap_or(i64::MIN));
        notes = asked;
    }
    let gapfill = super::gapfill::stretches(&nvr, ch, start, end).await?;
    Ok(Json(Recordings {
        channel: ch,
        recordings,
        peers: notes,
        gapfill: gapfill
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?,
    }))
}

/// `federated`: absent or `1` asks the channel's backup peers (if any), `0`
/// does not.
pub(super) fn federated(q: &HashMap<String, String>) -> ApiResult<bool> {
    match q.get("federated").map(String::as_str) {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "federated: must be 0 or 1, not `{other}`"
        ))),
    }
}
