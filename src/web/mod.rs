//! The HTTP API (`/api/v1/...`): one file per resource, one error type mapped
//! to status codes here. Handlers do blocking store reads on the blocking pool.
//! Must never hold the NVR's locks across an await, and never let a client's
//! bad input reach the recording path.

pub mod access;
mod accounts;
mod channels;
mod clip;
pub mod endpoint;
mod events;
mod import;
pub mod server;
pub mod throttle;
pub mod tls;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::nvr::Nvr;
use crate::time::Time90k;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds, sent as `Retry-After` (429, 503).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: m.into(),
            retry_after: None,
        }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: m.into(),
            retry_after: None,
        }
    }
    pub fn status(status: StatusCode, m: impl Into<String>) -> Self {
        ApiError {
            status,
            message: m.into(),
            retry_after: None,
        }
    }
    /// 503 with `Retry-After`: the NVR is protecting its recording; the
    /// request may succeed later.
    pub fn busy(retry_after: u64, m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: m.into(),
            retry_after: Some(retry_after),
        }
    }
    /// 429 with `Retry-After`: this client (or source) is over its rate.
    pub fn too_many(retry_after: u64, m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: m.into(),
            retry_after: Some(retry_after),
        }
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        ApiError::status(StatusCode::FORBIDDEN, m)
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        let m = crate::excerpt::short(&e.to_string());
        tracing::error!("internal error serving a request: {m}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: m,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// HTTP event triggers one client may send for one channel.
pub const TRIGGER_RATE: throttle::Rate = throttle::Rate {
    per_second: 10.0,
    burst: 20.0,
};
/// HTTP event triggers for one channel from all clients together: what
/// bounds the writer's event work per channel, whoever floods.
pub const CHANNEL_TRIGGER_RATE: throttle::Rate = throttle::Rate {
    per_second: 20.0,
    burst: 40.0,
};
pub use import::IMPORT_SLOTS;

/// In front of every route: at most `server::MAX_IN_FLIGHT` requests are
/// handled at once (each may hold an index connection and a segment file);
/// past that a request waits up to two seconds, then gets 503.
async fn concurrency(
    axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let permit = tokio::time::timeout(std::time::Duration::from_secs(2), nvr.requests.clone().acquire_owned()).await;
    let Ok(Ok(permit)) = permit else {
        return ApiError::busy(1, "the NVR is busy; try again shortly").into_response();
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

/// Parses a required RFC 3339 query parameter, naming it in the error.
pub(crate) fn time_param(name: &str, v: Option<&String>) -> ApiResult<Time90k> {
    let v = v.ok_or_else(|| ApiError::bad_request(format!("query parameter `{name}` is required (RFC 3339 time)")))?;
    Time90k::parse_rfc3339(v).map_err(|e| ApiError::bad_request(format!("query parameter `{name}`: {e}")))
}

pub(crate) fn channel_param(nvr: &Nvr, n: &str) -> ApiResult<u32> {
    let n: u32 = n
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{n}` is not a channel number")))?;
    if !nvr.has_channel(n) {
        return Err(ApiError::not_found(format!("no channel {n}")));
    }
    Ok(n)
}

async fn status(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> Json<serde_json::Value> {
    let views = nvr.channel_views();
    let now = nvr.clock.now();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "nvr_id": nvr.nvr_id,
        "uptime_s": nvr.started.elapsed().as_secs_f64(),
        "now": now.to_rfc3339(),
        "channels": views.iter().map(|v| {
            // "recording" here means recording live footage now: the last
            // stored frame was captured within the last second. A peer's
            // failback waits for this, so stale frames a reconnecting link
            // delivers late do not count.
            let live = v.ingest.last_frame.is_some_and(|t| (now - t).abs() < 90_000);
            let state = if v.recording.state == "recording" && !live { "catching_up" } else { v.recording.state };
            let mode = v.policy.as_ref().and_then(|p| p.mode).unwrap_or("continuous");
            // `live`: footage is arriving and the channel's policy is applied to
            // it now — recording, or in `events`/`off` mode ready to. Failback
            // waits for this, not for frames being written.
            let live = live && (state == "recording" || matches!(mode, "events" | "off"));
            serde_json::json!({
                "number": v.number,
                "binding": v.binding,
                "recording": state,
                "mode": mode,
                "live": live,
                "connected": v.ingest.connected,
            })
        }).collect::<Vec<_>>(),
    }))
}

/// Every failover rule: its state, counters, transition history and bindings.
async fn rules(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> Json<serde_json::Value> {
    let list: Vec<serde_json::Value> = nvr
        .rules
        .iter()
        .filter_map(|r| r.lock().ok().and_then(|s| serde_json::to_value(&*s).ok()))
        .collect();
    Json(serde_json::json!({ "rules": list }))
}

/// Failback transfers this NVR owes its peers, with progress.
async fn transfers(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> ApiResult<Json<serde_json::Value>> {
    let dir = nvr.config.storage.dir.clone();
    let list = tokio::task::spawn_blocking(move || crate::failover::transfer::list(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "transfers": list })))
}

pub fn router(nvr: Arc<Nvr>) -> Router {
    Router::new()
        .route("/", get(channels::index_page))
        .route("/api/v1/status", get(status))
        .route("/api/v1/channels", get(channels::list))
        .route("/api/v1/channels/{n}/recordings", get(channels::recordings))
        .route("/api/v1/channels/{n}/clip.mp4", get(clip::clip))
        .route("/api/v1/channels/{n}/events", axum::routing::post(events::trigger))
        .route("/api/v1/events", get(events::search))
        .route("/api/v1/actions", get(events::actions))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/transfers", get(transfers))
        .route("/api/v1/store", get(store_health))
        .route("/api/v1/health", get(access::health))
        .route("/api/v1/login", axum::routing::post(access::login))
        .route("/api/v1/logout", axum::routing::post(access::logout))
        .route("/api/v1/me", get(access::me))
        .route("/api/v1/users", get(accounts::list_users).post(accounts::add_user))
        .route(
            "/api/v1/users/{name}",
            axum::routing::put(accounts::change_user).delete(accounts::delete_user),
        )
        .route(
            "/api/v1/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route("/api/v1/tokens/{id}", axum::routing::delete(accounts::revoke_token))
        .route("/api/v1/audit", get(accounts::audit))
        .merge(
            Router::new()
                .route(
                    "/api/v1/import/{origin}/{segment}",
                    get(import::status).put(import::put_piece).delete(import::reset),
                )
                .route(
                    "/api/v1/import/{origin}/{segment}/complete",
                    axum::routing::post(import::complete),
                )
                .route_layer(axum::middleware::from_fn_with_state(nvr.clone(), import::gate)),
        )
        // Small JSON bodies everywhere; import pieces are streamed and bounded by their handler.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        // Access control in front of every route, so a route added later is
        // protected by default; after the concurrency limit, so a flood of
        // bad credentials queues like any other request.
        .layer(axum::middleware::from_fn_with_state(nvr.clone(), access::layer))
        .layer(axum::middleware::from_fn_with_state(nvr.clone(), concurrency))
        .with_state(nvr)
}

/// `GET /api/v1/store`: the writer's health (frame-to-durable latency,
/// events stored and dropped, descriptor reserve) and the importer's counters.
async fn store_health(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "writer": nvr.writer_stats(),
        "import": nvr.importer.stats.lock().map(|s| s.clone()).unwrap_or_default(),
        "http": nvr.http_stats(),
    }))
}

/// Serves the API on `endpoint` (HTTP or HTTPS, and its redirects) until
/// `shutdown` resolves, within `server::Limits`.
pub async fn serve(
    endpoint: endpoint::Endpoint,
    nvr: Arc<Nvr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = nvr.http_limits.clone();
    let stats = nvr.http.clone();
    endpoint.serve(router(nvr), limits, stats, shutdown).await
}
