//! `/api/v1/events` (search), `POST /api/v1/channels/{n}/events` (the HTTP
//! trigger for external sensors) and `/api/v1/actions` (delivery counters).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;

use super::throttle::retry_after_secs;
use super::{channel_param, time_param, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::auth::Principal;
use crate::config::events::{is_reserved_kind, valid_kind};
use crate::config::units::parse_duration;
use crate::events::Edge;
use crate::nvr::Nvr;
use crate::time::Time90k;

/// `GET /api/v1/events?channel=N&type=T&start=…&end=…`: stored events, oldest first.
pub async fn search(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let channel = match q.get("channel") {
        Some(c) => Some(channel_param(&nvr, c)?),
        None => None,
    };
    if let Some(ch) = channel.filter(|&ch| !p.can_see(ch)) {
        return Err(ApiError::forbidden(format!("{} may not see channel {ch}", p.user)));
    }
    let kind = q.get("type").cloned();
    let start = match q.get("start") {
        Some(_) => time_param("start", q.get("start"))?,
        None => Time90k(0),
    };
    let end = match q.get("end") {
        Some(_) => time_param("end", q.get("end"))?,
        None => Time90k(i64::MAX),
    };
    if end <= start {
        return Err(ApiError::bad_request("`end` must be after `start`"));
    }
    let reader = nvr.reader.clone();
    let mut events = tokio::task::spawn_blocking(move || reader.events(channel, kind.as_deref(), start, end))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    // Events of no channel (the NVR's own) are for those who see every channel.
    events.retain(|e| e.channel.map_or(p.sees_all(), |c| p.can_see(c)));
    Ok(Json(serde_json::json!({ "events": events })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// "start", "stop" or "pulse".
    action: String,
    /// Pulse length: seconds, or text like "10s".
    duration: Option<serde_json::Value>,
    /// Tells several sensors of one type apart ("door-3").
    source: Option<String>,
    details: Option<serde_json::Value>,
}

/// `POST /api/v1/channels/{n}/events`: a door contact or alarm panel starts,
/// stops or pulses an event; event-mode channels record around it.
///
/// Rate limited per client and channel, and per channel (429 with
/// `Retry-After`): a flood costs the flooder, never a frame.
pub async fn trigger(
    State(nvr): State<Arc<Nvr>>,
    Path(n): Path<String>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    body: Result<Json<TriggerBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let ch = channel_param(&nvr, &n)?;
    nvr.admit_trigger(client.ip(), ch).map_err(|wait| {
        ApiError::too_many(
            retry_after_secs(wait),
            format!("too many event triggers for channel {ch}; slow down"),
        )
    })?;
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("body: {}", crate::excerpt::short(&e.body_text()))))?;
    let kind = b.kind.unwrap_or_else(|| "trigger".into());
    if !valid_kind(&kind) {
        return Err(ApiError::bad_request(
            "`type` must be 1–32 characters of a-z, 0-9, _ and -",
        ));
    }
    if is_reserved_kind(&kind) {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            format!("`type`: `{kind}` is raised by the NVR itself and cannot be triggered from outside"),
        ));
    }
    let source = b.source.unwrap_or_default();
    if source.len() > 64 {
        return Err(ApiError::bad_request("`source` must be at most 64 characters"));
    }
    let mut details = match b.details {
        None => serde_json::json!({}),
        Some(d @ serde_json::Value::Object(_)) if d.to_string().len() <= 4096 => d,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`details` must be a JSON object of at most 4 KiB",
            ))
        }
    };
    details["source"] = serde_json::json!(if source.is_empty() {
        "http".into()
    } else {
        format!("http:{source}")
    });
    let key = format!("http:{kind}:{source}");
    let now = nvr.clock.now();
    let edge = |key: String, start: bool, time: Time90k| Edge {
        channel: ch,
        kind: kind.clone(),
        key,
        start,
        time,
        details: details.clone(),
        trigger: true,
    };
    let send = |e: Edge| nvr.event_edge(e).map_err(|m| ApiError::busy(1, m));
    if !matches!(b.action.as_str(), "start" | "stop" | "pulse") {
        return Err(ApiError::bad_request(format!(
            "`action` must be start, stop or pulse (got `{}`)",
            crate::excerpt::short(&b.action)
        )));
    }
    nvr.access
        .record(Entry::new(
            p.actor,
            Some(client.ip()),
            Action::EventTrigger,
            format!("channel {ch}: {kind} {} {}", b.action, crate::excerpt::short(&source)),
        ))
        .await?;
    match b.action.as_str() {
        "start" => send(edge(key.clone(), true, now))?,
        "stop" => send(edge(key.clone(), false, now))?,
        "pulse" => {
            let d = match &b.duration {
                // Range-checked before it becomes a Duration: `from_secs_f64`
                // panics on negative or huge values.
                Some(serde_json::Value::Number(n)) => n
                    .as_f64()
                    .filter(|x| (0.1..=3600.0).contains(x))
                    .map(Duration::from_secs_f64),
                Some(serde_json::Value::String(s)) => parse_duration(s).ok(),
                _ => None,
            }
            .filter(|d| (0.1..=3600.0).contains(&d.as_secs_f64()))
            .ok_or_else(|| ApiError::bad_request("`duration` (0.1 s – 1 h) is required for a pulse"))?;
            let nvr2 = nvr.clone();
            crate::events::pulse(edge(key.clone(), true, now), d, move |e| nvr2.event_edge(e))
                .map_err(|m| ApiError::busy(1, m))?;
        }
        _ => unreachable!("checked above"),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "channel": ch, "type": kind, "action": b.action, "time": now.to_rfc3339() })),
    ))
}

/// `GET /api/v1/actions`: per action, deliveries, retries, failures, rate limiting.
pub async fn actions(State(nvr): State<Arc<Nvr>>) -> Json<serde_json::Value> {
    let list = nvr.actions.lock().map(|v| v.clone()).unwrap_or_default();
    Json(serde_json::json!({ "actions": list }))
}
