//! `/api/v1/events` (search), `POST /api/v1/channels/{n}/events` (the HTTP
//! trigger for external sensors). The alert actions are `web::actions`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;

use super::doc::ErrorBody;
use super::throttle::retry_after_secs;
use super::{params, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::auth::Principal;
use crate::config::events::{is_reserved_kind, valid_kind};
use crate::events::Edge;
use crate::nvr::Nvr;
use crate::time::Time90k;

/// `GET /api/v1/events?channel=N&type=T&start=…&end=…`: stored events, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    summary = "Stored events",
    description = "Events (motion, triggers, failover, …) overlapping `start`–`end`, oldest first, at most 10,000.",
    params(
        ("channel" = Option<u32>, Query, description = "Only this channel (1–4096)", minimum = 1, maximum = 4096),
        ("type" = Option<String>, Query, description = "Only this kind (`motion`, `door`, …)"),
        ("start" = Option<String>, Query, description = "RFC 3339 time; default: the beginning", format = DateTime),
        ("end" = Option<String>, Query, description = "RFC 3339 time; default: no end", format = DateTime),
    ),
    responses(
        (status = 200, description = "`{\"events\": [...]}`", body = Object),
        (status = 400, description = "A bad channel number or time, named", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn search(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let channel = match q.get("channel") {
        Some(c) => Some(params::channel(&nvr, c)?),
        None => None,
    };
    if let Some(ch) = channel.filter(|&ch| !p.can_see(ch)) {
        return Err(ApiError::forbidden(format!("{} may not see channel {ch}", p.user)));
    }
    let kind = q.get("type").cloned();
    let start = params::time_or("start", q.get("start"), Time90k(0))?;
    let end = params::time_or("end", q.get("end"), Time90k(i64::MAX))?;
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

/// The shortest and longest pulse.
pub const MIN_PULSE: Duration = Duration::from_millis(100);
pub const MAX_PULSE: Duration = Duration::from_secs(3600);

/// An event trigger from a sensor or another system.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// The event's kind: 1–32 characters of a-z, 0-9, _ and - (default `trigger`).
    #[serde(rename = "type")]
    #[schema(example = "door")]
    kind: Option<String>,
    /// `start`, `stop` or `pulse`.
    #[schema(example = "pulse")]
    action: String,
    /// For a pulse: its length, 0.1 s – 1 h, as seconds (a number) or text like "10s".
    #[schema(value_type = Option<Object>, example = 10)]
    duration: Option<serde_json::Value>,
    /// Tells several sensors of one type apart ("door-3"), at most 64 characters.
    source: Option<String>,
    /// Anything the sender wants stored with the event: a JSON object of at most 4 KiB.
    details: Option<serde_json::Value>,
}

/// `POST /api/v1/channels/{n}/events`: a door contact or alarm panel starts,
/// stops or pulses an event; event-mode channels record around it.
///
/// Rate limited per client and channel, and per channel (429 with
/// `Retry-After`): a flood costs the flooder, never a frame.
#[utoipa::path(
    post,
    path = "/api/v1/channels/{n}/events",
    tag = "events",
    summary = "Trigger an event",
    description = "Starts, stops or pulses an event on the channel; event-mode channels record around it. \
                   Rate limited per client and channel and per channel (429 with `Retry-After`).",
    params(("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096)),
    request_body = TriggerBody,
    responses(
        (status = 202, description = "Accepted: `{\"channel\", \"type\", \"action\", \"time\"}`", body = Object),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 403, description = "The kind is raised by the NVR itself", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Too many triggers; `Retry-After`", body = ErrorBody),
        (status = 503, description = "The recorder is shedding event work; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
pub async fn trigger(
    State(nvr): State<Arc<Nvr>>,
    Path(n): Path<String>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    body: Result<Json<TriggerBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let ch = params::channel(&nvr, &n)?;
    nvr.admit_trigger(client.ip(), ch).map_err(|wait| {
        ApiError::too_many(
            retry_after_secs(wait),
            format!("too many event triggers for channel {ch}; slow down"),
        )
    })?;
    let Json(b) = body.map_err(|e| {
        // Keep the rejection's own status where it says more (413 too
        // large, 415 not JSON); a field of the wrong type is a bad request.
        let status = match e.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::status(status, format!("body: {}", crate::excerpt::short(&e.body_text())))
    })?;
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
            let d = params::seconds("duration", b.duration.as_ref(), MIN_PULSE, MAX_PULSE)?;
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
