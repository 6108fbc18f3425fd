//! `/api/v1/channels`, `/api/v1/channels/{n}/recordings`, `/api/v1/events`
//! and the small built-in page at `/` that lists channels and plays their
//! recent footage through the clip endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Json;

use super::{channel_param, time_param, ApiError, ApiResult};
use crate::nvr::{ChannelView, Nvr};
use crate::time::Time90k;

pub async fn list(State(nvr): State<Arc<Nvr>>) -> Json<Vec<ChannelView>> {
    Json(nvr.channel_views())
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

pub async fn events(
    State(nvr): State<Arc<Nvr>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let channel = match q.get("channel") {
        Some(c) => Some(channel_param(&nvr, c)?),
        None => None,
    };
    let start = match q.get("start") {
        Some(_) => time_param("start", q.get("start"))?,
        None => Time90k(0),
    };
    let end = match q.get("end") {
        Some(_) => time_param("end", q.get("end"))?,
        None => Time90k(i64::MAX),
    };
    let reader = nvr.reader.clone();
    let events = tokio::task::spawn_blocking(move || reader.events(channel, start, end))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "events": events })))
}

pub async fn index_page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
