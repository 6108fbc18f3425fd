//! Reading an archive from the bucket alone, without the NVR or its index
//! (`tandem archive ls|export`): the NVRs, channels and days under the
//! prefix, each day's segments from its day index, and the footage of a
//! time range — placed from the day index exactly as the NVR places it from
//! its rows, fetched with ranged GETs into a cache directory the caller
//! owns. Must never write to the bucket.

use std::path::Path;
use std::sync::Arc;

use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

use super::day_index::{self, DayIndex};
use super::{hydrate, ArchiveError, Location};
use crate::store::db::SampleEntryRow;
use crate::store::{reader, Footage, SegmentFrames};
use crate::time::Time90k;

const DAY: i64 = 86_400 * 90_000;

/// A channel's archived day as `ls` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DaySummary {
    pub nvr: String,
    pub channel: u32,
    pub day: String,
    pub segments: usize,
    pub frames: u64,
    pub bytes: u64,
    pub start: String,
    pub end: String,
}

fn last_part(p: &ObjectPath) -> String {
    p.parts()
        .next_back()
        .map(|x| x.as_ref().to_string())
        .unwrap_or_default()
}

/// The names one level below `p` ("folders" of the listing), sorted.
pub(crate) async fn children(store: &Arc<AmazonS3>, p: &ObjectPath) -> Result<Vec<String>, ArchiveError> {
    let r = store.list_with_delimiter(Some(p)).await?;
    let mut v: Vec<String> = r.common_prefixes.iter().map(last_part).collect();
    v.sort();
    Ok(v)
}

fn root(loc: &Location) -> ObjectPath {
    ObjectPath::from(loc.prefix.as_str())
}

/// The NVRs that archived under the prefix.
pub async fn nvrs(loc: &Location) -> Result<Vec<String>, ArchiveError> {
    children(&loc.client()?, &root(loc)).await
}

/// Every archived day of `nvr` (of one channel if given), from the day indexes.
pub async fn days(loc: &Location, nvr: &str, channel: Option<u32>) -> Result<Vec<DaySummary>, ArchiveError> {
    let store = loc.client()?;
    let mut out = Vec::new();
    for ch in children(&store, &loc.nvr_root(nvr)).await? {
        let Some(n) = ch.strip_prefix("ch").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if channel.is_some_and(|c| c != n) {
            continue;
        }
        let chroot = ObjectPath::from(format!("{}/{ch}", loc.nvr_root(nvr)));
        for day in children(&store, &chroot).await? {
            let key = loc.day_index_key(nvr, n, &day);
            let d = day_index::load(&store, &key, nvr, n, &day).await?;
            if d.segments.is_empty() {
                continue;
            }
            let start = d.segments.values().map(|e| e.start_90k).min().unwrap_or(0);
            let end = d.segments.values().map(|e| e.end_90k).max().unwrap_or(0);
            out.push(DaySummary {
                nvr: nvr.to_string(),
                channel: n,
                day,
                segments: d.segments.len(),
                frames: d.segments.values().map(|e| u64::from(e.frames)).sum(),
                bytes: d.segments.values().map(|e| e.bytes).sum(),
                start: Time90k(start).to_rfc3339(),
                end: Time90k(end).to_rfc3339(),
            });
        }
    }
    Ok(out)
}

/// One day's index (`None`: no such day).
pub async fn day(loc: &Location, nvr: &str, channel: u32, day: &str) -> Result<Option<DayIndex>, ArchiveError> {
    let store = loc.client()?;
    let d = day_index::load(&store, &loc.day_index_key(nvr, channel, day), nvr, channel, day).await?;
    Ok((!d.segments.is_empty()).then_some(d))
}

/// The archived footage of [start, end) of a channel, its frames fetched
/// into `cache` (a directory the caller removes), ready for `mp4::clip`.
pub async fn footage(
    loc: &Location,
    nvr: &str,
    channel: u32,
    start: Time90k,
    end: Time90k,
    cache: &Path,
) -> Result<Footage, ArchiveError> {
    let store = loc.client()?;
    let mut segs: Vec<(SegmentFrames, String)> = Vec::new();
    // A segment is filed under the day it starts: look a day back for one
    // that began before `start`.
    let mut t = Time90k(start.0 - DAY);
    while t < end + DAY {
        let d = super::day_of(t);
        t = t + DAY;
        let key = loc.day_index_key(nvr, channel, &d);
        let idx = day_index::load(&store, &key, nvr, channel, &d).await?;
        let dir = key.as_ref().rsplit_once('/').map_or("", |(a, _)| a).to_string();
        for e in idx.segments.values() {
            if e.end_90k <= start.0 || e.start_90k >= end.0 {
                continue;
            }
            let bad = |why: String| ArchiveError::Segment { id: e.id, why };
            let (row, entry) = e.to_row(channel).map_err(bad)?;
            let (frames, _) = reader::place_frames(&row, entry.data.len()).map_err(|x| bad(format!("{x:#}")))?;
            if frames.is_empty() {
                continue;
            }
            let w = hydrate::wanted(&frames, start, end);
            let entry: Arc<SampleEntryRow> = Arc::new(entry);
            segs.push((
                SegmentFrames {
                    id: e.id,
                    path: hydrate::cache_path(cache, channel, e.id),
                    entry,
                    frames: frames[w].to_vec(),
                },
                format!("{dir}/{}", e.object),
            ));
        }
    }
    segs.sort_by_key(|(s, _)| (s.frames.first().map(|f| f.time), s.id));
    let jobs = segs
        .iter()
        .map(|(s, key)| hydrate::Job {
            key: key.clone(),
            cache: s.path.clone(),
            frames: s.frames.clone(),
        })
        .collect();
    hydrate::fetch_async(loc, jobs).await?;
    Ok(Footage {
        segments: segs.into_iter().map(|(s, _)| s).collect(),
        damaged: Vec::new(),
    })
}
