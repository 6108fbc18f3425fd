//! The access layer: one middleware in front of every route that decides,
//! from `auth::policy`, whether a request needs nothing, a peer NVR's token,
//! or a user's session cookie or API token, and refuses the rest with 401
//! (who are you?) or 403 (not you). Also owns login, logout and `me`.
//!
//! Invariants: a route nobody listed needs a logged-in user; a cookie alone
//! never changes state without the CSRF check; the peer token opens only the
//! NVR-to-NVR routes; a failed login costs an Argon2 check whether or not the
//! user exists and is throttled per user name and per client address; a
//! signed alert link (`alerts::link`) opens exactly its event's picture,
//! as an anonymous viewer of that event's channel, and is audited.
//! Must never touch the recording path: credential lookups and password
//! checks run on the blocking pool with their own connections.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rusqlite::Connection;

use super::doc::ErrorBody;
use super::throttle::{retry_after_secs, Rate, Throttle};
use super::{ApiError, ApiResult};
use crate::auth::audit_log::{Action, Appender, Entry};
use crate::auth::credentials::{self, MAX_SECRET_LEN};
use crate::auth::policy::{self, CsrfInput, Need};
use crate::auth::{password, users, Principal, Role};
use crate::nvr::Nvr;

pub const COOKIE: &str = "tandem_session";
/// Failed logins allowed per user name and per client address: a burst of
/// five, then one every twelve seconds (five a minute).
pub const LOGIN_FAILURES: Rate = Rate {
    per_second: 5.0 / 60.0,
    burst: 5.0,
};
/// Password checks run at once. Each holds `password::MEMORY_KIB` of memory
/// and a core for a tenth of a second; more would only queue for the CPU.
pub const HASHING_AT_ONCE: usize = 2;
/// How long a validated credential is trusted before it is looked up again;
/// also how long a revocation from the command line takes to bite.
const CACHE_FOR: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;
/// A session's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

#[derive(Clone)]
enum Cached {
    Session { principal: Principal, csrf: String },
    Token { principal: Principal },
}

/// The access layer's state, one per server.
pub struct Access {
    db: std::path::PathBuf,
    /// A live apply changes them in place (`set_settings`).
    settings: Mutex<crate::auth::Settings>,
    /// Set `Secure` on the session cookie (the server speaks TLS).
    pub secure_cookies: std::sync::atomic::AtomicBool,
    pub audit: Appender,
    conns: Mutex<Vec<Connection>>,
    cache: Mutex<HashMap<[u8; 32], (Cached, Instant)>>,
    failures: Mutex<Throttle>,
    hashing: Arc<tokio::sync::Semaphore>,
}

impl Access {
    /// Session and audit settings now.
    pub fn settings(&self) -> crate::auth::Settings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Takes new settings (live apply); sessions are judged by them from now on.
    pub fn set_settings(&self, settings: crate::auth::Settings) {
        if let Ok(mut s) = self.settings.lock() {
            *s = settings;
        }
    }

    pub fn open(dir: &std::path::Path, settings: crate::auth::Settings) -> anyhow::Result<Access> {
        let db = dir.join("index.db");
        Ok(Access {
            audit: Appender::start(&db)?,
            db,
            settings: Mutex::new(settings),
            secure_cookies: Default::default(),
            conns: Mutex::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(Throttle::new(LOGIN_FAILURES, 10_000)),
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_AT_ONCE)),
        })
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match me.conns.lock().expect("conn pool").pop() {
                Some(c) => c,
                None => crate::store::db::open(&me.db).map_err(ApiError::internal)?,
            };
            let r = f(&conn);
            let mut pool = me.conns.lock().expect("conn pool");
            if pool.len() < 4 {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Drops every cached credential (after a revocation, logout or user change).
    pub fn forget_cached(&self) {
        self.cache.lock().expect("cache").clear();
    }

    /// Appends an audit entry and waits for it (503 when the log is backed up:
    /// an audited action does not happen unrecorded).
    pub async fn record(&self, e: Entry) -> ApiResult<i64> {
        self.audit
            .append(now_ms(), e)
            .await
            .map_err(|e| ApiError::busy(1, format!("cannot record this in the audit log: {e}")))
    }

    async fn lookup(self: &Arc<Self>, hash: [u8; 32], cookie: bool) -> ApiResult<Option<Cached>> {
        let now = Instant::now();
        if let Some((c, at)) = self.cache.lock().expect("cache").get(&hash) {
            if now.duration_since(*at) < CACHE_FOR {
                return Ok(Some(c.clone()));
            }
        }
        let idle = self.settings().session_idle.as_millis() as i64;
        let found = self
            .with_db(move |c| {
                let now = now_ms();
                if cookie {
                    let s = credentials::session(c, &hash, now, idle).map_err(ApiError::internal)?;
                    if let Some(s) = &s {
                        if now - s.last_seen_ms > TOUCH_EVERY_MS {
                            touch_without_waiting(c, |c| credentials::touch_session(c, &hash, now));
                        }
                    }
                    Ok(s.map(|s| Cached::Session {
                        principal: s.principal,
                        csrf: s.csrf,
                    }))
                } else {
                    let t = credentials::token(c, &hash, now).map_err(ApiError::internal)?;
                    if let Some((_, id)) = &t {
                        touch_without_waiting(c, |c| credentials::touch_token(c, *id, now));
                    }
                    Ok(t.map(|(principal, _)| Cached::Token { principal }))
                }
            })
            .await?;
        if let Some(f) = &found {
            let mut cache = self.cache.lock().expect("cache");
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (_, at)| now.duration_since(*at) < CACHE_FOR);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(hash, (f.clone(), now));
        }
        Ok(found)
    }
}

/// Records a credential's use without waiting for the index: while another
/// connection holds the write lock (the store writer's commit on a slow
/// disk waits on its fsync for seconds), the touch is skipped and a later
/// lookup records it — a request never waits on the disk for bookkeeping.
fn touch_without_waiting(c: &rusqlite::Connection, touch: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>) {
    let _ = c.busy_timeout(Duration::ZERO);
    if let Err(e) = touch(c) {
        tracing::debug!("credential use not recorded this time: {e}");
    }
    let _ = c.busy_timeout(crate::store::db::BUSY_TIMEOUT);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unauthorized(m: &str) -> Response {
    let mut r = ApiError::status(StatusCode::UNAUTHORIZED, m).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tandem\""),
    );
    r
}

fn forbidden(m: impl Into<String>) -> Response {
    ApiError::status(StatusCode::FORBIDDEN, m).into_response()
}

/// The bearer credential, if the request sent one. Garbage (not UTF-8, too
/// long, another scheme) counts as a wrong credential, not as none.
fn bearer(h: &HeaderMap) -> Option<Result<&str, ()>> {
    let v = h.get(header::AUTHORIZATION)?;
    let s = v.to_str().map_err(|_| ());
    Some(s.and_then(|s| {
        let t = s.strip_prefix("Bearer ").ok_or(())?.trim();
        (!t.is_empty() && t.len() <= MAX_SECRET_LEN).then_some(t).ok_or(())
    }))
}

/// The session cookie's value, if any cookie header carries one.
pub fn session_cookie(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The credential a request was let in with (its hash, and whether it was
/// the session cookie), so a connection that outlives the request — a live
/// view WebSocket — can check later that it was not revoked.
#[derive(Clone, Copy, Debug)]
pub struct Credential {
    hash: [u8; 32],
    cookie: bool,
}

impl Credential {
    pub fn of(h: &HeaderMap) -> Option<Credential> {
        match (bearer(h), session_cookie(h)) {
            (Some(Ok(t)), _) => Some(Credential {
                hash: credentials::secret_hash(t),
                cookie: false,
            }),
            (None, Some(c)) if c.len() <= MAX_SECRET_LEN => Some(Credential {
                hash: credentials::secret_hash(c),
                cookie: true,
            }),
            _ => None,
        }
    }
}

impl Access {
    /// Whether the session or token is still valid (not revoked, expired or
    /// deleted with its user); a session in use is kept alive by this.
    pub async fn still_valid(self: &Arc<Self>, c: Credential) -> bool {
        matches!(self.lookup(c.hash, c.cookie).await, Ok(Some(_)))
    }
}

fn is_peer(nvr: &Nvr, given: &str) -> bool {
    nvr.config()
        .failover
        .peer_token
        .as_deref()
        .is_some_and(|t| policy::constant_time_eq(given.as_bytes(), t.as_bytes()))
}

pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// The event of a signed snapshot link (`GET /api/v1/events/{id}/snapshot.jpg?expires=…&sig=…`)
/// and its `expires` and `sig`, if the request is one.
pub fn signed_link(req: &Request) -> Option<(i64, String, String)> {
    if !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD) {
        return None;
    }
    let id = req
        .uri()
        .path()
        .strip_prefix("/api/v1/events/")?
        .strip_suffix("/snapshot.jpg")?
        .parse::<i64>()
        .ok()?;
    let (mut expires, mut sig) = (None, None);
    for (k, v) in req.uri().query()?.split('&').filter_map(|kv| kv.split_once('=')) {
        match k {
            "expires" => expires = Some(v.to_string()),
            "sig" => sig = Some(v.to_string()),
            _ => {}
        }
    }
    Some((id, expires.unwrap_or_default(), sig?))
}

/// Lets a signed snapshot link in as an anonymous viewer of that one
/// event's channel, or refuses it with 403 and the reason; both audited.
async fn admit_link(
    nvr: &Arc<Nvr>,
    mut req: Request,
    next: Next,
    (id, expires, sig): (i64, String, String),
) -> Response {
    let addr = client_ip(&req);
    let now_s = now_ms() / 1000;
    let checked = match nvr.outbox.link_key() {
        Some(key) => crate::alerts::link::verify(key, id, &expires, &sig, now_s).map_err(|e| e.to_string()),
        None => Err("this NVR has no link key".to_string()),
    };
    let audit =
        |outcome: &str| Entry::new("signed link", addr, Action::SnapshotLink, format!("event {id}")).outcome(outcome);
    if let Err(why) = checked {
        let _ = nvr.access.record(audit(&why)).await;
        return forbidden(format!("snapshot link refused: {why}"));
    }
    let reader = nvr.reader.clone();
    let place = tokio::task::spawn_blocking(move || reader.event_place(id)).await;
    let channels = match place {
        Ok(Ok(Some((Some(ch), _)))) => [ch].into(),
        // No such event, or one of no channel: the handler says so (404).
        Ok(Ok(_)) => Default::default(),
        Ok(Err(e)) => return ApiError::internal(e).into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if let Err(e) = nvr.access.record(audit("ok")).await {
        return e.into_response();
    }
    req.extensions_mut().insert(Principal {
        actor: format!("signed link (event {id})"),
        user: "signed link".into(),
        role: Role::Viewer,
        channels: Some(channels),
    });
    next.run(req).await
}

/// The access layer itself (see the module doc).
pub async fn layer(State(nvr): State<Arc<Nvr>>, mut req: Request, next: Next) -> Response {
    if let Some(link) = signed_link(&req) {
        return admit_link(&nvr, req, next, link).await;
    }
    let need = policy::need(req.method(), req.uri().path());
    let (role, channel) = match need {
        Need::Public => return next.run(req).await,
        Need::BadChannel => return ApiError::bad_request("the channel in the path is not a number").into_response(),
        Need::Peer => {
            if nvr.config().failover.peer_token.is_none() {
                return forbidden("importing is disabled: no failover.peer_token is configured");
            }
            return match bearer(req.headers()) {
                Some(Ok(t)) if is_peer(&nvr, t) => next.run(req).await,
                _ => unauthorized("a valid peer token is required"),
            };
        }
        Need::PeerOrUser => {
            if let Some(Ok(t)) = bearer(req.headers()) {
                if is_peer(&nvr, t) {
                    return next.run(req).await;
                }
            }
            (Role::Viewer, None)
        }
        Need::PeerOrViewer { channel } => {
            if let Some(Ok(t)) = bearer(req.headers()) {
                if is_peer(&nvr, t) {
                    req.extensions_mut().insert(Principal {
                        actor: "peer NVR".into(),
                        user: "peer".into(),
                        role: Role::Viewer,
                        channels: None,
                    });
                    return next.run(req).await;
                }
            }
            (Role::Viewer, Some(channel))
        }
        Need::User { role, channel } => (role, channel),
    };
    let access = nvr.access.clone();
    let cached = match (bearer(req.headers()), session_cookie(req.headers())) {
        (Some(Err(())), _) => return unauthorized("the Authorization header is not a valid bearer token"),
        (Some(Ok(t)), _) if is_peer(&nvr, t) => {
            return unauthorized("the peer token is accepted only for NVR-to-NVR calls")
        }
        (Some(Ok(t)), _) => access.lookup(credentials::secret_hash(t), false).await,
        (None, Some(c)) if c.len() <= MAX_SECRET_LEN => access.lookup(credentials::secret_hash(c), true).await,
        (None, Some(_)) => Ok(None),
        (None, None) => {
            return unauthorized("log in (POST /api/v1/login) or send an API token (Authorization: Bearer …)")
        }
    };
    let principal = match cached {
        Err(e) => return e.into_response(),
        Ok(None) => {
            return unauthorized("the session or token is not valid (expired, revoked or unknown); log in again")
        }
        Ok(Some(Cached::Token { principal })) => principal,
        Ok(Some(Cached::Session { principal, csrf })) => {
            if policy::changes_state(req.method()) {
                let h = req.headers();
                let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
                let input = CsrfInput {
                    origin: get(header::ORIGIN),
                    referer: get(header::REFERER),
                    host: get(header::HOST),
                    token_header: h.get("x-csrf-token").and_then(|v| v.to_str().ok()),
                };
                if !policy::csrf_ok(&input, &csrf) {
                    return forbidden(
                        "cross-site request refused: send X-CSRF-Token (from the login answer) or an Origin of this host",
                    );
                }
            }
            principal
        }
    };
    if !principal.has(role) {
        return forbidden(format!(
            "this needs the {role} role; {} is {}",
            principal.user, principal.role
        ));
    }
    if let Some(ch) = channel {
        if !principal.can_see(ch) {
            return forbidden(format!("{} may not see channel {ch}", principal.user));
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/v1/login`: checks the password and starts a session (cookie).
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "access",
    summary = "Log in",
    description = "Checks the password and starts a session: sets the `tandem_session` cookie (HttpOnly, \
                   SameSite=Lax, Secure under TLS) and answers the user, role, channels and the session's CSRF \
                   token (send it as `X-CSRF-Token` with state-changing requests). Failed logins are throttled \
                   per user name and per client address.",
    request_body = LoginBody,
    responses(
        (status = 200, description = "`{\"user\", \"role\", \"channels\", \"csrf_token\"}` and the cookie", body = Object),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "Wrong user name or password (the same answer for both)", body = ErrorBody),
        (status = 403, description = "A cross-site login", body = ErrorBody),
        (status = 429, description = "Too many failed logins; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("public")))
)]
pub async fn login(
    State(nvr): State<Arc<Nvr>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(b): Json<LoginBody>,
) -> ApiResult<Response> {
    let access = nvr.access.clone();
    // A login form on a foreign site must not log the browser in as someone.
    if let (Some(o), Some(h)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let input = CsrfInput {
            origin: o.to_str().ok(),
            host: h.to_str().ok(),
            ..Default::default()
        };
        if !policy::csrf_ok(&input, "") {
            return Err(ApiError::status(StatusCode::FORBIDDEN, "cross-site login refused"));
        }
    }
    let name = crate::excerpt::short(&b.username);
    let keys = [format!("user:{name}"), format!("addr:{}", addr.ip())];
    let refused = {
        let t = access.failures.lock().expect("throttle");
        let now = Instant::now();
        keys.iter().filter_map(|k| t.peek(k, now).err()).max()
    };
    if let Some(wait) = refused {
        access.audit.append_later(
            now_ms(),
            Entry::new(name.clone(), Some(addr.ip()), Action::LoginFailed, "").outcome("throttled"),
        );
        return Err(ApiError::too_many(
            retry_after_secs(wait),
            "too many failed logins; wait before trying again",
        ));
    }
    let permit = tokio::time::timeout(Duration::from_secs(5), access.hashing.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::busy(1, "too many logins at once; try again shortly"))?;
    let (user, pw) = (b.username.clone(), b.password);
    let found = access
        .with_db(move |c| {
            let u = users::get(c, &user).map_err(ApiError::internal)?;
            Ok(match u {
                Some((u, h)) if password::verify(&pw, &h) => Some(u),
                Some(_) => None,
                None => {
                    password::verify_absent(&pw);
                    None
                }
            })
        })
        .await;
    drop(permit);
    let Some(user) = found? else {
        {
            let mut t = access.failures.lock().expect("throttle");
            let now = Instant::now();
            for k in &keys {
                let _ = t.check(k, now);
            }
        }
        access.audit.append_later(
            now_ms(),
            Entry::new(name, Some(addr.ip()), Action::LoginFailed, "").outcome("wrong user name or password"),
        );
        return Err(ApiError::status(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    };
    let (u, ip) = (user.name.clone(), addr.ip().to_string());
    let (secret, csrf) = access
        .with_db(move |c| credentials::create_session(c, &u, Some(&ip), now_ms()).map_err(ApiError::internal))
        .await?;
    access
        .record(Entry::new(user.name.clone(), Some(addr.ip()), Action::Login, ""))
        .await?;
    tracing::info!(user = %user.name, addr = %addr.ip(), "user logged in");
    let idle = access.settings().session_idle.as_secs();
    let cookie = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={idle}{}",
        if access.secure_cookies.load(std::sync::atomic::Ordering::Relaxed) {
            "; Secure"
        } else {
            ""
        }
    );
    let mut r = Json(serde_json::json!({
        "user": user.name,
        "role": user.role,
        "channels": user.channels,
        "csrf_token": csrf,
    }))
    .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(r)
}

/// `POST /api/v1/logout`: ends this session (a token is not a session: 400).
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "access",
    summary = "Log out",
    description = "Ends this session and clears its cookie. API tokens are revoked, not logged out (400).",
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "No session cookie", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn logout(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(secret) = session_cookie(&headers).map(str::to_owned) else {
        return Err(ApiError::bad_request(
            "no session to end: API tokens are revoked, not logged out",
        ));
    };
    let access = nvr.access.clone();
    access
        .with_db(move |c| {
            credentials::delete_session(c, &credentials::secret_hash(&secret)).map_err(ApiError::internal)
        })
        .await?;
    access.forget_cached();
    access
        .record(Entry::new(p.actor, Some(addr.ip()), Action::Logout, ""))
        .await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tandem_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(r)
}

/// `GET /api/v1/me`: who this credential is and what it may see.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "access",
    summary = "Who am I",
    description = "The user (and token) this credential is, its role and the channels it may see.",
    responses((status = 200, description = "`{\"user\", \"actor\", \"role\", \"channels\"}`", body = Object)),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn me(Extension(p): Extension<Principal>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": p.user,
        "actor": p.actor,
        "role": p.role,
        "channels": p.channels,
    }))
}

/// `GET /api/v1/health`: the bare liveness answer, for load balancers and
/// monitors that hold no credential.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "system",
    summary = "Liveness",
    description = "The bare liveness answer for load balancers and monitors that hold no credential.",
    responses((status = 200, description = "`{\"ok\": true}`", body = Object)),
    extensions(("x-tandem-role" = json!("public")))
)]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

/// Removes idle sessions and audit entries past retention, once an hour.
pub async fn housekeeping(nvr: Arc<Nvr>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let settings = nvr.access.settings();
        let idle = settings.session_idle.as_millis() as i64;
        let keep = settings.audit_retention.as_millis() as i64;
        let r = nvr
            .access
            .with_db(move |c| {
                let now = now_ms();
                let s = credentials::expire_sessions(c, now - idle).map_err(ApiError::internal)?;
                let a = crate::auth::audit_log::expire(c, now - keep).map_err(ApiError::internal)?;
                Ok((s, a))
            })
            .await;
        match r {
            Ok((0, 0)) => {}
            Ok((s, a)) => tracing::info!(
                sessions = s,
                audit_entries = a,
                "expired idle sessions and old audit entries"
            ),
            Err(e) => tracing::warn!("access housekeeping failed: {}", e.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn only_a_get_of_an_event_picture_with_a_signature_is_a_signed_link() {
        let sig = "ab".repeat(32);
        assert_eq!(
            signed_link(&req(
                "GET",
                &format!("/api/v1/events/42/snapshot.jpg?expires=9&sig={sig}&width=320")
            )),
            Some((42, "9".into(), sig.clone()))
        );
        // No expiry: still a link (refused by `verify` as malformed).
        assert_eq!(
            signed_link(&req("HEAD", &format!("/api/v1/events/42/snapshot.jpg?sig={sig}"))),
            Some((42, String::new(), sig.clone()))
        );
        // Anything else goes through the ordinary checks.
        for (m, uri) in [
            ("GET", "/api/v1/events/42/snapshot.jpg"),
            ("GET", "/api/v1/events/42/snapshot.jpg?expires=9"),
            ("POST", "/api/v1/events/42/snapshot.jpg?expires=9&sig=ab"),
            ("GET", "/api/v1/events/x/snapshot.jpg?expires=9&sig=ab"),
            ("GET", "/api/v1/channels/1/snapshot.jpg?expires=9&sig=ab"),
            ("GET", "/api/v1/events/42/clip.mp4?expires=9&sig=ab"),
            ("GET", "/api/v1/events/42/snapshot.jpg/x?expires=9&sig=ab"),
        ] {
            assert_eq!(signed_link(&req(m, uri)), None, "{m} {uri}");
        }
    }
}
