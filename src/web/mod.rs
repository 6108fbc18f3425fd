//! The HTTP API (`/api/v1/...`): one file per resource, one error type mapped
//! to status codes here. Handlers do blocking store reads on the blocking pool.
//! Must never hold the NVR's locks across an await, and never let a client's
//! bad input reach the recording path.

pub mod access;
mod accounts;
mod actions;
mod channels;
mod clip;
mod config;
pub mod doc;
pub mod endpoint;
mod events;
mod evidence;
mod gapfill;
mod import;
mod live;
mod metrics;
pub mod params;
pub mod server;
pub mod snapshot;
mod storage;
pub mod throttle;
pub mod tls;
mod ui;

pub use doc::{openapi, public_routes, routes};

use std::sync::Arc;

use crate::store::RecordingState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::nvr::Nvr;

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
    pub fn status_code(&self) -> StatusCode {
        self.status
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

#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "system",
    summary = "The NVR at a glance",
    description = "Version, NVR id, uptime, now, and per channel its binding, recording state \
                   (`recording`, `catching_up`, …), mode and whether live footage arrives. Also answered to \
                   a peer NVR's token: the failover probe reads it, and a standby's probe tells this NVR which \
                   channels it backs up (`backup_port`, `backup_tls`, `backup_channels` = `PRIMARY:STANDBY,…`), \
                   so this NVR's timeline can include footage the standby holds.",
    params(
        ("backup_port" = Option<u16>, Query, description = "A probing standby's HTTP port (peer token only)"),
        ("backup_tls" = Option<bool>, Query, description = "The standby answers over HTTPS"),
        ("backup_channels" = Option<String>, Query, description = "`PRIMARY:STANDBY` channel pairs, comma-separated"),
    ),
    responses(
        (status = 200, description = "Status", body = Object),
        (status = 400, description = "A malformed backup offer, named", body = doc::ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
async fn status(
    axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    user: Option<axum::Extension<crate::auth::Principal>>,
    axum::extract::Query(offer): axum::extract::Query<crate::failover::peer::StatusQuery>,
) -> ApiResult<Json<crate::failover::peer::Status>> {
    // Only a peer's probe (the access layer admitted its token and named
    // no user) may announce itself as a backup.
    if let (None, Some(port)) = (&user, offer.backup_port) {
        let pairs = offer.pairs().map_err(ApiError::bad_request)?;
        let tls = offer.backup_tls.unwrap_or(false);
        nvr.peers
            .learn(client.ip(), port, tls, pairs, std::time::Instant::now());
    }
    let views = nvr.channel_views();
    let now = nvr.clock.now();
    Ok(Json(crate::failover::peer::Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        nvr_id: nvr.nvr_id.clone(),
        uptime_s: nvr.started.elapsed().as_secs_f64(),
        now: now.to_rfc3339(),
        channels: views
            .iter()
            .map(|v| {
                // "recording" here means recording live footage now: the last
                // stored frame was captured within the last second. A peer's
                // failback waits for this, so stale frames a reconnecting link
                // delivers late do not count.
                let live = v.ingest.last_frame.is_some_and(|t| (now - t).abs() < 90_000);
                let state = match v.recording.state {
                    RecordingState::Recording if !live => RecordingState::CatchingUp,
                    s => s,
                };
                let mode = v.policy.as_ref().and_then(|p| p.mode).unwrap_or("continuous");
                // `live`: footage is arriving and the channel's policy is applied to
                // it now — recording, or in `events`/`off` mode ready to. Failback
                // waits for this, not for frames being written.
                let live = live && (state == RecordingState::Recording || matches!(mode, "events" | "off"));
                crate::failover::peer::ChannelStatus {
                    number: v.number,
                    binding: v.binding.clone(),
                    recording: state,
                    mode: mode.to_string(),
                    live,
                    connected: v.ingest.connected,
                }
            })
            .collect(),
    }))
}

/// Every failover rule: its state, counters, transition history and bindings.
#[utoipa::path(
    get,
    path = "/api/v1/rules",
    tag = "failover",
    summary = "Failover rules",
    description = "Every failover rule: its state (`normal`/`failure`), probe counters, transitions and bindings.",
    responses((status = 200, description = "`{\"rules\": [...]}`", body = Object)),
    extensions(("x-tandem-role" = json!("operator")))
)]
async fn rules(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> Json<serde_json::Value> {
    let list: Vec<serde_json::Value> = nvr
        .rules()
        .iter()
        .filter_map(|r| r.lock().ok().and_then(|s| serde_json::to_value(&*s).ok()))
        .collect();
    Json(serde_json::json!({ "rules": list }))
}

/// The S3 archive tier's state.
#[utoipa::path(
    get,
    path = "/api/v1/archive",
    tag = "storage",
    summary = "The S3 archive",
    description = "With `[archive]`: where it archives (bucket, prefix, endpoint, region), after how long, \
                   until what age and at what bandwidth; the archiver's latest pass (when, what it uploaded, \
                   expired and deleted, resumed bytes, errors); and what the index holds: archived segments \
                   and bytes, closed segments due and not yet archived, multipart uploads in progress.",
    responses(
        (status = 200, description = "The archive", body = Object),
        (status = 404, description = "This NVR has no archive", body = doc::ErrorBody)
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
async fn archive(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> ApiResult<Json<serde_json::Value>> {
    let (settings, last) = nvr
        .archive_status()
        .ok_or_else(|| ApiError::not_found("this NVR has no archive: no [archive] table in its configuration"))?;
    let after = i64::try_from(settings.after.as_millis())
        .unwrap_or(i64::MAX / 90)
        .saturating_mul(90);
    let due = crate::time::Time90k(nvr.clock.now().0.saturating_sub(after));
    let counts = nvr
        .access
        .with_db(move |c| crate::archive::rows::counts(c, due).map_err(ApiError::internal))
        .await?;
    Ok(Json(serde_json::json!({
        "bucket": settings.bucket,
        "prefix": settings.prefix,
        "endpoint": settings.endpoint,
        "region": settings.region,
        "after_s": settings.after.as_secs_f64(),
        "max_age_s": settings.max_age.map(|d| d.as_secs_f64()),
        "bandwidth_bytes_per_s": settings.bandwidth,
        "last_pass": last,
        "index": counts,
    })))
}

/// The recorder pool as this NVR sees it.
#[utoipa::path(
    get,
    path = "/api/v1/pool",
    tag = "failover",
    summary = "The recorder pool",
    description = "With `[pool]`: this NVR's name and standing (`registered`, `scheduler`, its lease), the elected \
                   scheduler, every member (address, capacity, version, lease), the stored assignment (camera → \
                   member), the cameras each member says it records now, the etcd revision this view reflects, \
                   the pool's cameras the assignment leaves out, each member's capacity used (`capacity_used`), \
                   the shared configuration pushed to the pool and each member's report of applying it. Kept as last read while etcd is unreachable.",
    responses(
        (status = 200, description = "The pool", body = Object),
        (status = 404, description = "This NVR is not in a pool", body = doc::ErrorBody)
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
async fn pool(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> ApiResult<Json<crate::nvr::PoolStatus>> {
    nvr.pool_status()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("this NVR is not in a pool: no [pool] table in its configuration"))
}

/// Failback transfers this NVR owes its peers, with progress.
#[utoipa::path(
    get,
    path = "/api/v1/transfers",
    tag = "failover",
    summary = "Failback transfers",
    description = "Footage this NVR owes its peers after a failover, with progress.",
    responses(
        (status = 200, description = "`{\"transfers\": [...]}`", body = Object),
        (status = 500, description = "The transfer list could not be read", body = doc::ErrorBody)
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
async fn transfers(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> ApiResult<Json<serde_json::Value>> {
    let dir = nvr.config().storage.dir.clone();
    let list = tokio::task::spawn_blocking(move || crate::failover::transfer::list(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "transfers": list })))
}

/// Every route of the API, each registered with its OpenAPI description
/// (`#[utoipa::path]` on the handler, `routes!` here): the router and the
/// document come from this one list. A new route is one more `.routes(...)`
/// line; a route added any other way is refused by `doc::seal`.
///
/// `nvr` is `None` only when the document alone is wanted (`doc::openapi`):
/// the import routes' peer-token gate needs the NVR and changes nothing in
/// the document.
fn api(nvr: Option<&Arc<Nvr>>) -> OpenApiRouter<Arc<Nvr>> {
    let mut import = OpenApiRouter::new()
        .routes(routes!(import::status, import::put_piece, import::reset))
        .routes(routes!(import::complete));
    if let Some(nvr) = nvr {
        import = import.route_layer(axum::middleware::from_fn_with_state(nvr.clone(), import::gate));
    }
    OpenApiRouter::with_openapi(doc::base())
        .routes(routes!(ui::index_page))
        .routes(routes!(ui::asset))
        .routes(routes!(doc::openapi_json))
        .routes(routes!(status))
        .routes(routes!(channels::list))
        .routes(routes!(channels::recordings))
        .routes(routes!(clip::clip))
        .routes(routes!(live::websocket))
        .routes(routes!(live::playlist))
        .routes(routes!(live::segment))
        .routes(routes!(evidence::evidence))
        .routes(routes!(evidence::key))
        .routes(routes!(events::trigger))
        .routes(routes!(events::search))
        .routes(routes!(actions::list))
        .routes(routes!(actions::rows))
        .routes(routes!(actions::test))
        .routes(routes!(snapshot::event_snapshot))
        .routes(routes!(snapshot::channel_snapshot))
        .routes(routes!(rules))
        .routes(routes!(pool))
        .routes(routes!(archive))
        .routes(routes!(transfers))
        .routes(routes!(gapfill::list))
        .routes(routes!(store_health))
        .routes(routes!(storage::storage))
        .routes(routes!(metrics::metrics))
        .routes(routes!(access::health))
        .routes(routes!(access::login))
        .routes(routes!(access::logout))
        .routes(routes!(access::me))
        .routes(routes!(accounts::list_users, accounts::add_user))
        .routes(routes!(accounts::change_user, accounts::delete_user))
        .routes(routes!(accounts::list_tokens, accounts::create_token))
        .routes(routes!(accounts::revoke_token))
        .routes(routes!(accounts::audit))
        .route_layer(axum::middleware::from_fn(refuse_large_bodies))
        .merge(import)
        .merge(
            // A parameter file is larger than a JSON body; bounded by its own limit.
            OpenApiRouter::new()
                .routes(routes!(config::get_config, config::put_config))
                .routes(routes!(config::versions))
                .routes(routes!(config::rollback))
                .route_layer(axum::extract::DefaultBodyLimit::max(config::MAX_CONFIG_BODY)),
        )
}

/// In front of the JSON routes: a body announced larger than they read is
/// refused before a byte of it is received (the extractor's own limit only
/// notices once it has read that much). Import pieces have their own bound.
async fn refuse_large_bodies(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_JSON_BODY as u64) {
        return ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {} KiB", MAX_JSON_BODY / 1024),
        )
        .into_response();
    }
    next.run(req).await
}

pub fn router(nvr: Arc<Nvr>) -> Router {
    let (routes, _) = doc::seal(api(Some(&nvr)));
    routes
        // Small JSON bodies everywhere; import pieces are streamed and bounded by their handler.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY))
        // Access control in front of every route, so a route added later is
        // protected by default; after the concurrency limit, so a flood of
        // bad credentials queues like any other request.
        .layer(axum::middleware::from_fn_with_state(nvr.clone(), access::layer))
        .layer(axum::middleware::from_fn_with_state(nvr.clone(), concurrency))
        .with_state(nvr)
}

/// The largest request body a JSON route reads.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// `GET /api/v1/store`: the writer's health (frame-to-durable latency,
/// events stored and dropped, descriptor reserve) and the importer's counters.
#[utoipa::path(
    get,
    path = "/api/v1/store",
    tag = "system",
    summary = "Store and HTTP health",
    description = "The writer's frame-to-durable latencies (from capture and from arrival), fsyncs, bytes \
                   made durable, failed fsyncs and frames lost to them, events stored and dropped, descriptor \
                   reserve; the write buffer's bound and fill; \
                   the importer's and the HTTP server's counters; the segment scrub's passes, segments \
                   checked and `mismatches` (files changed since they were written).",
    responses((status = 200, description = "`{\"writer\", \"write_buffer\", \"import\", \"http\", \"scrub\"}`", body = Object)),
    extensions(("x-tandem-role" = json!("operator")))
)]
async fn store_health(axum::extract::State(nvr): axum::extract::State<Arc<Nvr>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "writer": nvr.writer_stats(),
        "write_buffer": nvr.write_buffer(),
        "import": nvr.importer.stats.lock().map(|s| s.clone()).unwrap_or_default(),
        "http": nvr.http_stats(),
        "scrub": nvr.scrub.lock().map(|s| s.clone()).unwrap_or_default(),
        "live": { "totals": nvr.live.stats.snapshot(), "streams": nvr.live.overview() },
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
    let configs = nvr.subscribe_config();
    endpoint::serve_following(endpoint, router(nvr), limits, stats, configs, shutdown).await
}
