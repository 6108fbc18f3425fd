//! Importing footage a peer recorded for one of our channels (failback): the
//! peer uploads its segment file as is (the format is self-describing and
//! checksummed), and the writer thread merges it into this store.
//!
//! Merging keeps our own footage where both exist: imported frames that
//! overlap anything we recorded are dropped, and each kept run starts at a key
//! frame, so the merged timeline has no duplicates and every run decodes.
//! Idempotent: an (origin, segment) pair is imported once; a repeat answers
//! `already`. Must never modify or delete footage this NVR recorded.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use tracing::info;

use super::writer::Writer;
use super::{db, segment_file, SampleEntry};
use crate::time::Time90k;

#[derive(Debug)]
pub struct ImportRequest {
    pub channel: u32,
    pub origin: String,
    pub origin_segment: i64,
    /// The complete uploaded segment file.
    pub staged: PathBuf,
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportOutcome {
    /// This segment had been imported before; nothing was stored.
    pub already: bool,
    pub segments: u32,
    pub frames_kept: u32,
    /// Frames dropped because this NVR had recorded that time itself.
    pub frames_dropped: u32,
}

/// One imported frame: time, duration, key flag.
pub type FrameSpan = (Time90k, u32, bool);

/// Which frames to keep: those whose middle lies in none of `local` (our own
/// recorded ranges), grouped in runs that each start at a key frame.
///
/// Two NVRs stamp the same camera frame with slightly different wall-clock
/// times; judging a frame by its middle tolerates offsets up to half a frame
/// interval without dropping a frame neither side kept or keeping one twice.
pub fn plan_kept(frames: &[FrameSpan], local: &[(Time90k, Time90k)]) -> Vec<Range<usize>> {
    let covered = |&(t, d, _): &FrameSpan| {
        let mid = t + i64::from(d) / 2;
        local.iter().any(|&(a, b)| a <= mid && mid < b)
    };
    let mut runs = Vec::new();
    let mut cur: Option<Range<usize>> = None;
    for (i, f) in frames.iter().enumerate() {
        if covered(f) {
            runs.extend(cur.take());
            continue;
        }
        match &mut cur {
            Some(r) => r.end = i + 1,
            // A run may start only at a key frame.
            None if f.2 => cur = Some(i..i + 1),
            None => {}
        }
    }
    runs.extend(cur);
    runs
}

impl Writer {
    pub(super) fn import(&mut self, req: &ImportRequest) -> Result<ImportOutcome, String> {
        let known: Option<i64> = self
            .conn()
            .query_row(
                "SELECT frames_kept FROM import WHERE origin = ?1 AND origin_segment = ?2",
                params![req.origin, req.origin_segment],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        if known.is_some() {
            let _ = std::fs::remove_file(&req.staged);
            return Ok(ImportOutcome {
                already: true,
                ..Default::default()
            });
        }
        let mut file = File::open(&req.staged).map_err(|e| format!("opening upload: {e}"))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let scan = segment_file::scan(&mut file, len, true).map_err(|e| format!("upload is not a segment: {e}"))?;
        if let Some(why) = scan.stopped {
            let _ = std::fs::remove_file(&req.staged);
            return Err(format!("upload is damaged ({why}); send it again"));
        }
        let entry = Arc::new(SampleEntry::parse(scan.header.sample_entry.clone()).ok_or("unsupported codec")?);
        let entries = scan.entries(3000);
        let spans: Vec<FrameSpan> = scan
            .frames
            .iter()
            .zip(&entries)
            .map(|(f, e)| (scan.header.start + i64::from(f.pts), e.duration, f.key))
            .collect();
        let Some(&(first, _, _)) = spans.first() else {
            return Err("upload holds no frames".into());
        };
        let last = spans.last().map(|&(t, d, _)| t + i64::from(d)).unwrap_or(first);
        let mut local: Vec<(Time90k, Time90k)> = db::segments_overlapping(self.conn(), req.channel, first, last)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|s| (s.start, s.end))
            .collect();
        local.extend(self.open_range(req.channel));
        let runs = plan_kept(&spans, &local);
        let mut out = ImportOutcome::default();
        let mut data = Vec::new();
        for run in &runs {
            let mut seg = self
                .create_segment(req.channel, spans[run.start].0, &entry, 0)
                .map_err(|e| e.to_string())?;
            for i in run.clone() {
                let f = scan.frames[i];
                data.resize(f.size as usize, 0);
                file.seek(SeekFrom::Start(f.offset))
                    .and_then(|_| file.read_exact(&mut data))
                    .map_err(|e| e.to_string())?;
                seg.write_frame(spans[i].0, f.key, &data).map_err(|e| e.to_string())?;
            }
            let end = spans[run.end - 1].0 + i64::from(spans[run.end - 1].1);
            self.finish_segment(req.channel, seg, Some(end));
            out.segments += 1;
            out.frames_kept += run.len() as u32;
        }
        out.frames_dropped = spans.len() as u32 - out.frames_kept;
        self.conn()
            .execute(
                "INSERT INTO import (origin, origin_segment, channel, received_90k, frames_kept) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![req.origin, req.origin_segment, req.channel, self.now().0, out.frames_kept],
            )
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&req.staged);
        info!(
            channel = req.channel,
            origin = %req.origin,
            origin_segment = req.origin_segment,
            kept = out.frames_kept,
            dropped = out.frames_dropped,
            "footage imported from peer"
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, key_every: usize) -> Vec<FrameSpan> {
        (0..n)
            .map(|i| (Time90k(i as i64 * 3600), 3600, i % key_every == 0))
            .collect()
    }

    #[test]
    fn keeps_everything_without_local_footage() {
        assert_eq!(plan_kept(&frames(20, 5), &[]), vec![0..20]);
    }

    #[test]
    fn drops_overlap_and_restarts_at_a_key_frame() {
        // Local footage covers frames 7..=9 (times 25200..36000).
        let local = [(Time90k(7 * 3600), Time90k(10 * 3600))];
        // After the overlap, frame 10 is a key frame (key every 5).
        assert_eq!(plan_kept(&frames(20, 5), &local), vec![0..7, 10..20]);
        // With key frames every 4, the run after the overlap waits for frame 12.
        assert_eq!(plan_kept(&frames(20, 4), &local), vec![0..7, 12..20]);
    }

    #[test]
    fn failback_overlap_at_the_end_is_trimmed() {
        // The primary resumed during frame 15 (its clock 100 ticks late): the
        // standby's frames from 15 on are the primary's too and are dropped.
        let local = [(Time90k(15 * 3600 + 100), Time90k(1_000_000))];
        assert_eq!(plan_kept(&frames(20, 5), &local), vec![0..15]);
        // Its clock early by most of a frame: frame 14 is still the standby's.
        let local = [(Time90k(15 * 3600 - 1700), Time90k(1_000_000))];
        assert_eq!(plan_kept(&frames(20, 5), &local), vec![0..15]);
        // Everything covered: nothing kept.
        assert!(plan_kept(&frames(20, 5), &[(Time90k(0), Time90k(i64::MAX / 2))]).is_empty());
    }

    #[test]
    fn leading_non_key_frames_are_dropped() {
        let mut f = frames(10, 5);
        f[0].2 = false;
        assert_eq!(plan_kept(&f, &[]), vec![5..10]);
    }
}
