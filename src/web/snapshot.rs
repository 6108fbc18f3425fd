//! `GET /api/v1/events/{id}/snapshot.jpg` (an event's thumbnail: its
//! channel's first key frame at or after its start) and
//! `GET /api/v1/channels/{n}/snapshot.jpg?time=` (the key frame at or before
//! a time: timeline hover, playback poster), as JPEG.
//!
//! Owns the snapshot cache (the last `CACHE_ENTRIES` event pictures, bounded
//! in bytes too) and the decode limit. Must never decode on the async
//! runtime, never run more than `DECODES` decodes at once (a 100-event list
//! must not starve recording or the API), and never show an event's picture
//! to a user who may not see its channel (checked here: the path has no
//! channel number for the access layer to check).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tokio::sync::Semaphore;

use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::Principal;
use crate::nvr::Nvr;
use crate::snapshot::{self, Snapshot, SnapshotError, DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH};
use crate::time::{Time90k, TICKS_PER_SEC};

/// Decodes running at once: each takes a core for a few tens of
/// milliseconds and holds a decoded picture (≈ 9 MB at 1080p, ≈ 37 MB at
/// 4K) in memory.
pub const DECODES: usize = 2;
/// How long a request waits for a decode slot before 503: long enough for a
/// browser's half-dozen parallel thumbnail requests to take turns.
const DECODE_WAIT: Duration = Duration::from_secs(2);
/// Event pictures kept.
pub const CACHE_ENTRIES: usize = 256;
/// And at most this many bytes of them (a 1920-wide JPEG is ~100–300 KB).
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// A picture of time this far in the past no longer changes (its key frame
/// and those before it are stored); nearer the live edge a later request may
/// find a newer key frame, so browsers must not keep it.
const SETTLED: i64 = 60 * TICKS_PER_SEC;
const CACHE_FOREVER: &str = "private, max-age=86400";
const CACHE_NOT: &str = "private, no-cache";

static DECODE_SLOTS: Semaphore = Semaphore::const_new(DECODES);
static CACHE: Mutex<Lru> = Mutex::new(Lru::new(CACHE_ENTRIES, CACHE_BYTES));

/// A JPEG's bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Jpeg(pub Vec<u8>);

/// An event picture in the cache: the store it came from (several NVRs may
/// share a process in tests), the event and the width.
type Key = (PathBuf, i64, u32);

/// The event's channel (for the rights check on a hit) and its picture.
#[derive(Clone)]
struct Cached {
    channel: u32,
    snap: Arc<Snapshot>,
}

/// Least recently used first; bounded in entries and in bytes. A list
/// rather than a map: 256 entries are compared faster than they are hashed
/// into a second structure, and the order is the list.
struct Lru {
    entries: VecDeque<(Key, Cached)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Lru {
    const fn new(max_entries: usize, max_bytes: usize) -> Lru {
        Lru {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn get(&mut self, k: &Key) -> Option<Cached> {
        let i = self.entries.iter().position(|(key, _)| key == k)?;
        let e = self.entries.remove(i)?;
        let v = e.1.clone();
        self.entries.push_back(e);
        Some(v)
    }

    fn put(&mut self, k: Key, v: Cached) {
        if let Some(i) = self.entries.iter().position(|(key, _)| *key == k) {
            if let Some((_, old)) = self.entries.remove(i) {
                self.bytes -= old.snap.jpeg.len();
            }
        }
        // A picture larger than the whole cache is served, not kept.
        if v.snap.jpeg.len() > self.max_bytes {
            return;
        }
        self.bytes += v.snap.jpeg.len();
        self.entries.push_back((k, v));
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some((_, old)) => self.bytes -= old.snap.jpeg.len(),
                None => break,
            }
        }
    }
}

fn width_param(q: &HashMap<String, String>) -> ApiResult<u32> {
    match q.get("width") {
        None => Ok(DEFAULT_WIDTH),
        Some(t) => params::integer("width", t, MIN_WIDTH..=MAX_WIDTH),
    }
}

/// The picture's answer: JPEG, its key frame's time, how long to keep it.
fn jpeg_response(snap: &Snapshot, cache_control: &'static str) -> Response {
    let mut r = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache_control)),
        ],
        snap.jpeg.clone(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&snap.time.to_rfc3339()) {
        r.headers_mut().insert("x-tandem-frame-time", v);
    }
    r
}

fn api_error(e: SnapshotError) -> ApiError {
    match e {
        SnapshotError::NoFootage(_) => ApiError::not_found(e.to_string()),
        SnapshotError::Width(_) => ApiError::bad_request(e.to_string()),
        // The footage is there but cannot be pictured: not the client's
        // fault, nor a server fault to retry.
        SnapshotError::Unsupported(_) | SnapshotError::Decode(_) => {
            ApiError::status(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        SnapshotError::Encode(_) | SnapshotError::Store(_) | SnapshotError::Io(_) => ApiError::internal(e),
    }
}

/// A decode slot, waiting up to `DECODE_WAIT` for one; 503 after that.
async fn decode_slot() -> ApiResult<tokio::sync::SemaphorePermit<'static>> {
    match tokio::time::timeout(DECODE_WAIT, DECODE_SLOTS.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(ApiError::busy(
            1,
            format!("{DECODES} snapshots are being made; try again shortly"),
        )),
    }
}

/// Makes the picture on the blocking pool, once a decode slot is free.
async fn render(nvr: &Nvr, channel: u32, time: Time90k, at_or_after: bool, width: u32) -> ApiResult<Snapshot> {
    let permit = decode_slot().await?;
    let reader = nvr.reader.clone();
    tokio::task::spawn_blocking(move || {
        // Held until the decode ends, even if the client has gone.
        let _permit = permit;
        snapshot::snapshot_at(&reader, channel, time, at_or_after, width)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(api_error)
}

#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/snapshot.jpg",
    tag = "events",
    summary = "An event's picture",
    description = "A JPEG of the first key frame at or after the event's start on its channel, `width` pixels \
                   wide (aspect kept). Cached (`Cache-Control: private, max-age=86400`); the key frame's time \
                   is in `X-Tandem-Frame-Time`. At most two pictures are decoded at once; past that, 503 with \
                   `Retry-After`.",
    params(
        ("id" = i64, Path, description = "The event's id (from `GET /api/v1/events`)", minimum = 1),
        ("width" = Option<u32>, Query, description = "Width in pixels, 64–1920 (default 640)", minimum = 64, maximum = 1920),
    ),
    responses(
        (status = 200, description = "The picture", content_type = "image/jpeg", body = Jpeg),
        (status = 400, description = "A bad id or width, named", body = ErrorBody),
        (status = 403, description = "The caller may not see the event's channel", body = ErrorBody),
        (status = 404, description = "No such event, an event of no channel, or no stored key frame after it", body = ErrorBody),
        (status = 422, description = "The footage cannot be pictured (H.265, or it does not decode)", body = ErrorBody),
        (status = 503, description = "Too many pictures being made; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn event_snapshot(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = params::integer("id", &id, 1..=i64::MAX)?;
    let width = width_param(&q)?;
    let (_, snap) = event_picture(&nvr, id, width, Some(&p)).await?;
    Ok(jpeg_response(&snap, CACHE_FOREVER))
}

/// Event `id`'s picture (its channel's first key frame at or after its
/// start) and its channel, `width` wide, from the cache or decoded once and
/// cached: the web client's thumbnails and the alerts' attachments share it.
/// `viewer` is checked before anything is decoded; `None` (the alerts, a
/// signed link) sees every channel.
pub async fn event_picture(
    nvr: &Nvr,
    id: i64,
    width: u32,
    viewer: Option<&Principal>,
) -> ApiResult<(u32, Arc<Snapshot>)> {
    let may_see = |ch: u32| match viewer {
        Some(p) if !p.can_see(ch) => Err(ApiError::forbidden(format!("{} may not see channel {ch}", p.user))),
        _ => Ok(()),
    };
    let sees_all = viewer.is_none_or(|p| p.sees_all());
    let key = (nvr.reader.dir.clone(), id, width);
    let hit = CACHE.lock().ok().and_then(|mut c| c.get(&key));
    if let Some(c) = hit {
        may_see(c.channel)?;
        return Ok((c.channel, c.snap));
    }
    let reader = nvr.reader.clone();
    let place = tokio::task::spawn_blocking(move || reader.event_place(id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let (channel, start) = match place {
        // The NVR's own events are listed only to those who see every
        // channel; to others they do not exist.
        None => return Err(ApiError::not_found(format!("no event {id}"))),
        Some((None, _)) if !sees_all => return Err(ApiError::not_found(format!("no event {id}"))),
        Some((None, _)) => {
            return Err(ApiError::not_found(format!(
                "event {id} belongs to no channel: no picture"
            )))
        }
        Some((Some(ch), start)) => (ch, start),
    };
    may_see(channel)?;
    let snap = Arc::new(render(nvr, channel, start, true, width).await?);
    // The first key frame after the start stays the first: footage is
    // stored in time order, so the picture is the event's for good.
    if let Ok(mut c) = CACHE.lock() {
        c.put(
            key,
            Cached {
                channel,
                snap: snap.clone(),
            },
        );
    }
    Ok((channel, snap))
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/snapshot.jpg",
    tag = "channels",
    summary = "A picture at a time",
    description = "A JPEG of the channel's key frame at or before `time` (looked for up to two minutes \
                   earlier), `width` pixels wide (aspect kept); its time is in `X-Tandem-Frame-Time`. Cached \
                   by browsers for a day once `time` is over a minute old. At most two pictures are decoded \
                   at once; past that, 503 with `Retry-After`.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("time" = String, Query, description = "RFC 3339 time", format = DateTime),
        ("width" = Option<u32>, Query, description = "Width in pixels, 64–1920 (default 640)", minimum = 64, maximum = 1920),
    ),
    responses(
        (status = 200, description = "The picture", content_type = "image/jpeg", body = Jpeg),
        (status = 400, description = "A bad channel number, time or width, named", body = ErrorBody),
        (status = 404, description = "No such channel, or no stored key frame before `time`", body = ErrorBody),
        (status = 422, description = "The footage cannot be pictured (H.265, or it does not decode)", body = ErrorBody),
        (status = 503, description = "Too many pictures being made; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn channel_snapshot(
    State(nvr): State<Arc<Nvr>>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let ch = params::channel(&nvr, &n)?;
    let time = params::time("time", q.get("time"))?;
    let width = width_param(&q)?;
    let snap = render(&nvr, ch, time, false, width).await?;
    let settled = nvr.clock.now().0.saturating_sub(time.0) > SETTLED;
    Ok(jpeg_response(&snap, if settled { CACHE_FOREVER } else { CACHE_NOT }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(len: usize) -> Cached {
        Cached {
            channel: 1,
            snap: Arc::new(Snapshot {
                jpeg: vec![0; len],
                width: 64,
                height: 36,
                time: Time90k(0),
            }),
        }
    }

    fn key(id: i64) -> Key {
        (PathBuf::from("/s"), id, 640)
    }

    #[test]
    fn lru_drops_the_least_recently_used_past_its_entries() {
        let mut c = Lru::new(3, 1000);
        for id in 1..=3 {
            c.put(key(id), cached(10));
        }
        // Touching 1 makes 2 the oldest.
        assert!(c.get(&key(1)).is_some());
        c.put(key(4), cached(10));
        assert!(c.get(&key(2)).is_none());
        for id in [1, 3, 4] {
            assert!(c.get(&key(id)).is_some(), "{id}");
        }
        assert_eq!((c.entries.len(), c.bytes), (3, 30));
        // Same event, other width: another entry.
        assert!(c.get(&(PathBuf::from("/s"), 1, 320)).is_none());
        assert!(c.get(&(PathBuf::from("/other"), 1, 640)).is_none());
    }

    #[test]
    fn lru_is_bounded_in_bytes_and_replaces_in_place() {
        let mut c = Lru::new(100, 100);
        c.put(key(1), cached(40));
        c.put(key(2), cached(40));
        c.put(key(3), cached(40));
        assert!(c.get(&key(1)).is_none());
        assert_eq!(c.bytes, 80);
        // Replacing an entry does not count it twice.
        c.put(key(3), cached(20));
        assert_eq!((c.entries.len(), c.bytes), (2, 60));
        // Larger than the whole cache: not kept, nothing else lost.
        c.put(key(9), cached(101));
        assert!(c.get(&key(9)).is_none());
        assert_eq!((c.entries.len(), c.bytes), (2, 60));
    }

    #[test]
    fn widths_are_checked_and_named() {
        let q = |w: &str| HashMap::from([("width".to_string(), w.to_string())]);
        assert_eq!(width_param(&HashMap::new()).unwrap(), DEFAULT_WIDTH);
        assert_eq!(width_param(&q("64")).unwrap(), 64);
        for bad in ["63", "1921", "-1", "abc", ""] {
            let e = width_param(&q(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message().contains("`width`"), "{}", e.message());
        }
    }

    #[test]
    fn a_third_decode_waits_then_gets_503_and_a_freed_slot_is_taken() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = decode_slot().await.unwrap();
            let b = decode_slot().await.unwrap();
            let t = std::time::Instant::now();
            let e = decode_slot().await.unwrap_err();
            assert!(t.elapsed() >= DECODE_WAIT, "{:?}", t.elapsed());
            assert_eq!((e.status, e.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
            // A slot freed while a request waits goes to it.
            let waiter = tokio::spawn(decode_slot());
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(a);
            assert!(waiter.await.unwrap().is_ok());
            drop(b);
        });
    }

    #[test]
    fn snapshot_errors_map_to_statuses() {
        let s = |e| api_error(e).status;
        assert_eq!(s(SnapshotError::NoFootage("x".into())), StatusCode::NOT_FOUND);
        assert_eq!(s(SnapshotError::Width(5)), StatusCode::BAD_REQUEST);
        assert_eq!(s(SnapshotError::Unsupported("h265")), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(s(SnapshotError::Decode("x".into())), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(s(SnapshotError::Store("x".into())), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
