//! `/api/v1/actions`: the alert actions' deliveries (counters since start and
//! the durable outbox's counts), an action's recent outbox rows, and a test
//! message sent through an action at once.
//!
//! Must never send through the outbox from here (a test is sent directly
//! and not retried) and never show a row of another action.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::doc::ErrorBody;
use super::{ApiError, ApiResult};
use crate::alerts::Delivery;
use crate::auth::Principal;
use crate::nvr::Nvr;
use crate::store::outbox::{self, Summary};

/// Rows `GET /api/v1/actions/{name}/outbox` lists at most.
pub const RECENT_ROWS: usize = 100;

fn rfc3339_ms(ms: i64) -> String {
    crate::time::Time90k::from_unix_micros(ms.saturating_mul(1000)).to_rfc3339()
}

/// `GET /api/v1/actions`: per action, deliveries, retries, failures, rate limiting.
#[utoipa::path(
    get,
    path = "/api/v1/actions",
    tag = "events",
    summary = "Alert deliveries",
    description = "Per configured action (MQTT, webhook, e-mail, SMS): `name`, `type`; counters since the NVR \
                   (or the action) started — `delivered`, `failed`, `retries`, `rate_limited`, `unscheduled` \
                   (outside its schedule), `within_grace` (camera back within the offline grace); and from the \
                   durable outbox — `pending`, `outbox` (`pending`, `delivered`, `failed` rows kept), \
                   `last_error`, `last_delivered` (RFC 3339).",
    responses(
        (status = 200, description = "`{\"actions\": [...]}`", body = Object),
        (status = 500, description = "The outbox could not be read", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
pub async fn list(State(nvr): State<Arc<Nvr>>) -> ApiResult<Json<serde_json::Value>> {
    let d = nvr.dispatcher();
    let stats = nvr.actions.lock().map(|v| v.clone()).unwrap_or_default();
    let names: Vec<String> = d.actions.iter().map(|a| a.name.clone()).collect();
    let summaries = nvr
        .outbox
        .with_conn(move |c| {
            names
                .iter()
                .map(|n| outbox::summary(c, n))
                .collect::<outbox::Result<Vec<Summary>>>()
        })
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<serde_json::Value> = d
        .actions
        .iter()
        .zip(summaries)
        .map(|(a, sum)| {
            let s = stats.iter().find(|s| s.name == a.name).cloned().unwrap_or_default();
            serde_json::json!({
                "name": a.name,
                "type": a.target.kind(),
                "delivered": s.delivered,
                "failed": s.failed,
                "retries": s.retries,
                "rate_limited": s.rate_limited,
                "unscheduled": s.unscheduled,
                "within_grace": s.within_grace,
                "pending": sum.pending,
                "outbox": { "pending": sum.pending, "delivered": sum.delivered, "failed": sum.failed },
                "last_error": s.last_error.or(sum.last_error),
                "last_delivered": sum.last_delivered_ms.map(rfc3339_ms),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "actions": list })))
}

fn known(nvr: &Nvr, name: &str) -> ApiResult<()> {
    match nvr.dispatcher().actions.iter().any(|a| a.name == name) {
        true => Ok(()),
        false => Err(ApiError::not_found(format!(
            "no action named `{}`",
            crate::excerpt::short(name)
        ))),
    }
}

/// `GET /api/v1/actions/{name}/outbox`: the action's newest outbox rows.
#[utoipa::path(
    get,
    path = "/api/v1/actions/{name}/outbox",
    tag = "events",
    summary = "An action's outbox",
    description = "The action's newest 100 queued, delivered and failed alerts, newest first: `id`, `state` \
                   (`pending`, `delivered`, `failed`), `created`, `attempts`, `next_attempt`, `give_up`, \
                   `last_error`, `delivered`, the message's `message_id`, `subject` and `event_id`. Finished rows \
                   are kept 7 days (at most 10,000).",
    params(("name" = String, Path, description = "The action's name")),
    responses(
        (status = 200, description = "`{\"action\": name, \"rows\": [...]}`", body = Object),
        (status = 404, description = "No such action", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
pub async fn rows(State(nvr): State<Arc<Nvr>>, Path(name): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    known(&nvr, &name)?;
    let n2 = name.clone();
    let rows = nvr
        .outbox
        .with_conn(move |c| outbox::recent(c, &n2, RECENT_ROWS))
        .await
        .map_err(ApiError::internal)?;
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "state": r.state,
                "channel": r.channel,
                "created": rfc3339_ms(r.created_ms),
                "attempts": r.attempts,
                "next_attempt": rfc3339_ms(r.next_attempt_ms),
                "give_up": rfc3339_ms(r.give_up_ms),
                "last_error": r.last_error,
                "delivered": r.delivered_ms.map(rfc3339_ms),
                "message_id": r.message.id,
                "subject": r.message.subject,
                "event_id": r.message.event_id,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "action": name, "rows": rows })))
}

/// `POST /api/v1/actions/{name}/test`: a test message through the action now.
#[utoipa::path(
    post,
    path = "/api/v1/actions/{name}/test",
    tag = "events",
    summary = "Test an action",
    description = "Sends a test message (event type `test`) through the action at once — not through the outbox, \
                   not retried, past its schedule and rate limit — and answers what happened: \
                   `{\"delivered\": true}`, or 502 with the transport's error (host, status, the server's reply).",
    params(("name" = String, Path, description = "The action's name")),
    responses(
        (status = 200, description = "`{\"action\": name, \"delivered\": true}`", body = Object),
        (status = 404, description = "No such action", body = ErrorBody),
        (status = 502, description = "Not delivered: `{\"error\": why, \"retryable\": bool}`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn test(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    known(&nvr, &name)?;
    tracing::info!(action = name, by = p.actor, "test message requested");
    let outcome = nvr.dispatcher().test(&name).await;
    let (error, retryable) = match outcome {
        None => return Err(ApiError::not_found(format!("no action named `{name}`"))),
        Some(Delivery::Delivered) => {
            return Ok(Json(serde_json::json!({ "action": name, "delivered": true })).into_response())
        }
        Some(Delivery::Retry(e)) => (e, true),
        Some(Delivery::Fail(e)) => (e, false),
    };
    Ok((
        StatusCode::BAD_GATEWAY,
        Json(serde_json::json!({ "action": name, "delivered": false, "error": error, "retryable": retryable })),
    )
        .into_response())
}
