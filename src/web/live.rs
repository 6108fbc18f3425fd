//! Live view over HTTP: the WebSocket that carries fMP4 fragments into a
//! browser's Media Source Extensions (`/api/v1/channels/{n}/live`) and live
//! HLS for players without them (`live.m3u8`, `live/init.mp4`,
//! `live/{seq}.m4s`). The wire format is in `docs/live.md`.
//!
//! Owns one task per viewer that drains the viewer's queue in `live::Hub` onto
//! its socket. Must never let a viewer delay ingest or another viewer (a slow
//! socket only fills its own queue, and the hub skips it ahead), never serve a
//! channel the caller may not see (the access layer checks the path), and
//! never outlive the credential it was opened with: the session or token is
//! checked again every `RECHECK`, and a revoked one closes the socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::{SinkExt, StreamExt};

use super::access::Credential;
use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::auth::Principal;
use crate::live::packager::{Out, Packager};
use crate::live::{Hub, Msg, Stream};
use crate::nvr::Nvr;

/// Viewers served at once over WebSocket, all channels together: each holds
/// a socket and a queue of up to `live::QUEUE` frames.
pub const MAX_VIEWERS: usize = 512;
/// How often a viewer's session or token is checked again.
const RECHECK: Duration = Duration::from_secs(30);
/// How long the live playlist waits for the stream's first complete segment.
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(15);
/// How long the live playlist waits for an offline camera's session.
const OFFLINE_WAIT: Duration = Duration::from_secs(5);
/// Text a client may send (it needs to send nothing).
const MAX_CLIENT_MESSAGE: usize = 4096;

fn stream_param(q: &HashMap<String, String>) -> ApiResult<Stream> {
    match q.get("stream") {
        None => Ok(Stream::Main),
        Some(s) => Stream::parse(s).ok_or_else(|| ApiError::bad_request("`stream` must be `main` or `sub`")),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/live",
    tag = "live",
    summary = "Live view (WebSocket)",
    description = "Upgrades to a WebSocket that sends the channel's live video as fragmented MP4 for Media Source \
                   Extensions: a JSON `init` text message and the init segment, then one `prft`+`moof`+`mdat` \
                   binary message per frame from the most recent key frame on; `drop` when the viewer fell behind \
                   and was moved to a newer key frame; `state` when the camera goes offline or comes back. \
                   See docs/live.md.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("stream" = Option<String>, Query, description = "`main` (default) or `sub` (the camera's substream \
                                                           when it has one, else main)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "A bad channel number or stream, named", body = ErrorBody),
        (status = 403, description = "A WebSocket opened from another site's page", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 503, description = "Too many live viewers; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn websocket(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let ch = params::channel(&nvr, &n)?;
    let want = stream_param(&q)?;
    let hv = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if !crate::auth::policy::websocket_origin_ok(hv(header::ORIGIN), hv(header::HOST)) {
        return Err(ApiError::forbidden(
            "a live view opened from another site's page is refused",
        ));
    }
    if nvr.live.stats.viewers.load(std::sync::atomic::Ordering::Relaxed) as usize >= MAX_VIEWERS {
        return Err(ApiError::busy(
            5,
            format!("{MAX_VIEWERS} live viewers are watching already"),
        ));
    }
    let credential = Credential::of(&headers);
    let target = format!("channel {ch} {}", want.as_str());
    nvr.access
        .record(Entry::new(
            p.actor.clone(),
            Some(client.ip()),
            Action::LiveView,
            target.clone(),
        ))
        .await?;
    let hub = nvr.live_source(ch, want);
    let viewer = Viewer {
        nvr,
        hub,
        actor: p.actor,
        client,
        target,
        credential,
    };
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| viewer.run(socket)))
}

struct Viewer {
    nvr: Arc<Nvr>,
    hub: Arc<Hub>,
    actor: String,
    client: SocketAddr,
    target: String,
    credential: Option<Credential>,
}

/// Why a viewer's socket ended.
enum End {
    ClientLeft,
    SocketError,
    Revoked,
    Shutdown,
}

impl Viewer {
    async fn run(self, socket: WebSocket) {
        let started = Instant::now();
        let (mut sink, mut incoming) = socket.split();
        let end = self.pump(&mut sink, &mut incoming).await;
        let (why, close) = match end {
            End::ClientLeft => ("ended by the viewer", None),
            End::SocketError => ("the connection failed", None),
            End::Revoked => (
                "closed: the session or token was revoked",
                Some((1008, "credential revoked")),
            ),
            End::Shutdown => ("closed: the NVR is shutting down", Some((1001, "NVR shutting down"))),
        };
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(frame)))).await;
        }
        let secs = started.elapsed().as_secs();
        tracing::debug!(viewer = %self.actor, target = %self.target, secs, "live view {why}");
        // How long they watched: the second half of the audit record.
        let e = Entry::new(self.actor, Some(self.client.ip()), Action::LiveView, self.target)
            .outcome(format!("{why} after {secs} s"));
        let _ = self.nvr.access.record(e).await;
    }

    async fn pump(
        &self,
        sink: &mut futures::stream::SplitSink<WebSocket, Message>,
        incoming: &mut futures::stream::SplitStream<WebSocket>,
    ) -> End {
        let mut sub = self.hub.subscribe();
        let mut closing = self.nvr.live.closing();
        let mut packager = Packager::new(self.hub.stream);
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        let mut out = Vec::new();
        let state = sub.state.borrow_and_update().clone();
        if !state.online && send_state(sink, &state).await.is_err() {
            return End::SocketError;
        }
        for f in std::mem::take(&mut sub.backlog) {
            packager.frame(&f, &mut out);
            // The cached GOP is old on purpose: not counted as added latency.
            if self.send_all(sink, &mut out, None).await.is_err() {
                return End::SocketError;
            }
        }
        loop {
            tokio::select! {
                m = sub.rx.recv() => match m {
                    Some(Msg::Frame(f)) => {
                        packager.frame(&f, &mut out);
                        if self.send_all(sink, &mut out, Some(&f)).await.is_err() {
                            return End::SocketError;
                        }
                    }
                    Some(Msg::Skipped(n)) => {
                        packager.skipped();
                        let msg = serde_json::json!({"type": "drop", "skipped": n}).to_string();
                        if sink.send(Message::Text(msg.into())).await.is_err() {
                            return End::SocketError;
                        }
                    }
                    None => return End::Shutdown,
                },
                r = sub.state.changed() => {
                    if r.is_err() {
                        return End::Shutdown;
                    }
                    let s = sub.state.borrow_and_update().clone();
                    if send_state(sink, &s).await.is_err() {
                        return End::SocketError;
                    }
                }
                m = incoming.next() => match m {
                    None | Some(Ok(Message::Close(_))) => return End::ClientLeft,
                    Some(Err(_)) => return End::SocketError,
                    // Pings are answered by the WebSocket layer; text is ignored.
                    Some(Ok(_)) => {}
                },
                _ = recheck.tick() => {
                    if let Some(c) = self.credential {
                        if !self.nvr.access.still_valid(c).await {
                            return End::Revoked;
                        }
                    }
                }
                r = closing.changed() => {
                    if r.is_err() || *closing.borrow_and_update() {
                        return End::Shutdown;
                    }
                }
            }
        }
    }

    async fn send_all(
        &self,
        sink: &mut futures::stream::SplitSink<WebSocket, Message>,
        out: &mut Vec<Out>,
        live: Option<&crate::live::LiveFrame>,
    ) -> Result<(), axum::Error> {
        for o in out.drain(..) {
            match o {
                Out::Init { json, segment } => {
                    sink.feed(Message::Text(json.into())).await?;
                    sink.feed(Message::Binary(segment.into())).await?;
                }
                Out::Media(m) => {
                    let len = m.len();
                    sink.send(Message::Binary(m.into())).await?;
                    self.hub.record_sent(live, len);
                }
            }
        }
        Ok(())
    }
}

async fn send_state(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    s: &crate::live::CameraState,
) -> Result<(), axum::Error> {
    let msg = serde_json::json!({
        "type": "state",
        "state": if s.online { "online" } else { "offline" },
        "error": s.error,
    });
    sink.send(Message::Text(msg.to_string().into())).await
}

/// The hub behind an HLS request, with the HLS ring running.
fn hls_hub(nvr: &Arc<Nvr>, n: &str, q: &HashMap<String, String>) -> ApiResult<(Arc<Hub>, Stream)> {
    let ch = params::channel(nvr, n)?;
    let want = stream_param(q)?;
    // A WebSocket viewer of an unbound channel waits for a binding (a
    // failover may bring one); an HLS player is told at once.
    if !nvr.is_bound(ch) {
        return Err(ApiError::not_found(format!("channel {ch} has no camera bound now")));
    }
    Ok((nvr.live_source(ch, want), want))
}

fn hls_response(content_type: &'static str, body: bytes::Bytes) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/live.m3u8",
    tag = "live",
    summary = "Live HLS playlist",
    description = "The channel's live video as HLS with fMP4 segments (one per GOP, the last six), for players \
                   without Media Source Extensions. The first request of a stream waits for its first complete \
                   GOP (at most 15 s; 5 s for a camera that is offline).",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("stream" = Option<String>, Query, description = "`main` (default) or `sub`"),
    ),
    responses(
        (status = 200, description = "The playlist", content_type = "application/vnd.apple.mpegurl", body = String),
        (status = 400, description = "A bad channel number or stream, named", body = ErrorBody),
        (status = 404, description = "No such channel, no camera bound, or no live video from the camera \
                                      (offline for 5 s, or no complete GOP within 15 s)", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn playlist(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (hub, want) = hls_hub(&nvr, &n, &q)?;
    let query = format!("stream={}", want.as_str());
    // One audit entry per viewer and stream while they keep polling.
    if hub.hls_viewer_is_new(&p.actor) {
        let target = format!("channel {} {} (HLS)", hub.channel, want.as_str());
        nvr.access
            .record(Entry::new(p.actor, Some(client.ip()), Action::LiveView, target))
            .await?;
    }
    let started = Instant::now();
    loop {
        if let Some(text) = hub.with_hls(|r| r.playlist(&query)) {
            return Ok(hls_response("application/vnd.apple.mpegurl", text.into()));
        }
        let waited = started.elapsed();
        let state = hub.state();
        // An offline camera is given the time a session takes to start (an
        // on-demand substream), a connected one the time of a GOP.
        if waited >= FIRST_SEGMENT_WAIT || (!state.online && waited >= OFFLINE_WAIT) {
            let why = state.error.unwrap_or_else(|| "no complete GOP yet".into());
            return Err(ApiError::not_found(format!("no live video from the camera: {why}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/live/{file}",
    tag = "live",
    summary = "Live HLS init segment and media segments",
    description = "`init.mp4`, or `{sequence}.m4s` as listed in the playlist.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("file" = String, Path, description = "`init.mp4` or `{sequence}.m4s`"),
        ("stream" = Option<String>, Query, description = "`main` (default) or `sub`"),
    ),
    responses(
        (status = 200, description = "fMP4", content_type = "video/mp4", body = Vec<u8>),
        (status = 400, description = "A bad channel number, stream or file name, named", body = ErrorBody),
        (status = 404, description = "No such channel, or the segment has left the window", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn segment(
    State(nvr): State<Arc<Nvr>>,
    Path((n, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (hub, _) = hls_hub(&nvr, &n, &q)?;
    let found = if file == "init.mp4" {
        hub.with_hls(|r| r.init())
    } else {
        let seq = file
            .strip_suffix(".m4s")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("the file must be `init.mp4` or `{sequence}.m4s`"))?;
        hub.with_hls(|r| r.segment(seq))
    };
    let data = found.ok_or_else(|| ApiError::not_found(format!("`{file}` is not in the live window")))?;
    Ok(hls_response("video/mp4", data))
}
