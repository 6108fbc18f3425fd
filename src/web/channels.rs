//! `/api/v1/channels`, `/api/v1/channels/{n}/recordings`, `/api/v1/events`
//! and the small built-in page at `/` that lists channels and plays their
//! recent footage through the clip endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::{Extension, Json};

use super::{channel_param, time_param, ApiError, ApiResult};
use crate::auth::Principal;
use crate::nvr::{ChannelView, Nvr};

/// The channels this principal may see.
pub async fn list(State(nvr): State<Arc<Nvr>>, Extension(p): Extension<Principal>) -> Json<Vec<ChannelView>> {
    let mut v = nvr.channel_views();
    v.retain(|c| p.can_see(c.number));
    Json(v)
}

pub async fn recordings(
    State(nvr): State<Arc<Nvr>>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let ch = channel_param(&nvr, &n)?;
    let start = time_param("start", q.get("start"))?;
    let end = time_param("end", q.get("end"))?;
    if end <= start {
        return Err(ApiError::bad_request("`end` must be after `start`"));
    }
    let reader = nvr.reader.clone();
    let runs = tokio::task::spawn_blocking(move || reader.recordings(ch, start, end))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "channel": ch, "recordings": runs })))
}

pub async fn index_page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
