//! The read side of the store: recordings (contiguous runs of stored time)
//! and the frames of a time range for clips, exports and audits.
//!
//! Opens its own read-only connection per call, so it runs on any blocking
//! thread while the writer records. Everything it plans it has checked: a
//! segment whose file is missing, shorter than its row or no longer its own
//! (marked at start-up, or found now) contributes only the frames still in
//! the file, and the rest is returned as a `DamagedSpan` naming the file, so
//! callers report it. Must never write to the index or to segment files.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tracing::warn;

use super::runs::CONTIGUOUS;
use super::segment_file::{self, SegmentHeader, RECORD_HEADER_LEN};
use super::{db, header_len, index, segment_path};
use crate::time::Time90k;

/// One frame's place in a segment file, with its wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    pub time: Time90k,
    pub duration: u32,
    pub offset: u64,
    pub size: u32,
    pub key: bool,
}

/// A segment's frames as read for playback.
#[derive(Clone, Debug)]
pub struct SegmentFrames {
    pub id: i64,
    pub path: PathBuf,
    pub entry: Arc<db::SampleEntryRow>,
    pub frames: Vec<FrameRef>,
}

/// Stored time whose frames cannot be read: a damaged file, or a damaged
/// stretch that repair stepped over.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DamagedSpan {
    pub file: String,
    pub why: String,
    pub start: String,
    pub end: String,
    #[serde(skip)]
    pub start_90k: Time90k,
    #[serde(skip)]
    pub end_90k: Time90k,
}

/// What a time range holds: the readable frames, segment by segment in time
/// order, and the stored time that cannot be read.
#[derive(Clone, Debug, Default)]
pub struct Footage {
    pub segments: Vec<SegmentFrames>,
    pub damaged: Vec<DamagedSpan>,
}

/// A stretch of stored time inside a run that other footage of the run also
/// covers (a camera clock stepping back, overlapping imports).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Overlap {
    pub start: String,
    pub end: String,
    pub seconds: f64,
}

/// A contiguous stretch of recording as listed by the recordings API.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecordingRun {
    pub start: String,
    pub end: String,
    #[serde(skip)]
    pub start_90k: Time90k,
    #[serde(skip)]
    pub end_90k: Time90k,
    pub frames: u64,
    pub bytes: u64,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub segments: u32,
    /// True while the last segment is still being written.
    pub growing: bool,
    /// Stored time hidden under other footage of this run: `end - start`
    /// plus these is all the time the run's frames cover. Overlaps up to
    /// 0.1 s (a last frame's guessed duration) are not listed.
    pub overlaps: Vec<Overlap>,
    /// `"gapfill"` for footage gap fill fetched from the camera's own
    /// recording; absent for what this NVR recorded (or a peer sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'static str>,
}

/// A segment's frames and its holes (as time spans), from `place_frames`.
pub type Placed = (Vec<FrameRef>, Vec<(Time90k, Time90k)>);

/// Places a finished segment's frames in time and in its file from its row
/// alone: durations and sizes from the frame index, then the holes repair
/// recorded. Also returns the holes as time spans. Pure.
pub fn place_frames(row: &db::SegmentRow, entry_len: usize) -> Result<Placed> {
    let blob = row.frame_index.as_deref().unwrap_or_default();
    let entries = index::decode(blob).with_context(|| format!("segment {}", row.id))?;
    let mut frames = Vec::with_capacity(entries.len());
    let mut holes = Vec::new();
    let mut off = header_len(entry_len);
    let mut t = row.start;
    for (i, e) in entries.iter().enumerate() {
        for h in row.holes.iter().filter(|h| h.frames_before == i) {
            holes.push((t, t + i64::from(h.ticks)));
            off += h.bytes;
            t = t + i64::from(h.ticks);
        }
        off += RECORD_HEADER_LEN;
        frames.push(FrameRef {
            time: t,
            duration: e.duration,
            offset: off,
            size: e.size,
            key: e.key,
        });
        off += u64::from(e.size);
        t = t + i64::from(e.duration);
    }
    Ok((frames, holes))
}

/// How many leading bytes of a finished segment's file can be served, given
/// what the row promises: checks the file exists and still starts with this
/// segment's header. `Err` says what is wrong.
fn usable_bytes(path: &std::path::Path, row: &db::SegmentRow, entry: &db::SampleEntryRow) -> Result<u64, String> {
    use std::os::unix::fs::FileExt;
    let promised = row.readable_bytes.unwrap_or(row.bytes).min(row.bytes);
    // Never open what is not a regular file: a FIFO would block the reader.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err("not a regular file".into());
    }
    let f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file missing".to_string(),
        _ => format!("file unreadable: {e}"),
    })?;
    let len = f.metadata().map_err(|e| format!("file unreadable: {e}"))?.len();
    let expect = SegmentHeader {
        channel: row.channel,
        segment_id: row.id,
        start: row.start,
        sample_entry: entry.data.clone(),
    }
    .encode();
    let mut got = vec![0u8; expect.len()];
    if f.read_exact_at(&mut got, 0).is_err() || got != expect {
        return Err(format!("file overwritten or cut inside its header ({len} bytes)"));
    }
    if len < promised {
        return Err(format!("file truncated to {len} of {} bytes", row.bytes));
    }
    Ok(promised)
}

/// The read side: opens its own read-only connection per call.
#[derive(Clone, Debug)]
pub struct Reader {
    pub dir: PathBuf,
}

impl Reader {
    pub fn new(dir: PathBuf) -> Reader {
        Reader { dir }
    }

    fn conn(&self) -> Result<rusqlite::Connection> {
        let p = self.dir.join("index.db");
        if !p.exists() {
            bail!("no Tandem store at {}", self.dir.display());
        }
        Ok(db::open_readonly(&p)?)
    }

    /// The channel's recording as runs of contiguous stored time. Damaged
    /// footage (as marked at start-up) and holes repair stepped over split
    /// runs; overlapping footage is listed in its run, never hidden. Whole
    /// days come from their summaries (`run_days`) where those are valid.
    pub fn recordings(&self, channel: u32, start: Time90k, end: Time90k) -> Result<Vec<RecordingRun>> {
        let conn = self.conn()?;
        let entries = db::sample_entries(&conn)?;
        Ok(super::run_days::recordings(&conn, channel, start.0, end.0, &entries)?.finish(&entries))
    }

    /// As `recordings`, folding every segment of the range one by one (no
    /// day summary): what `recordings` is measured and tested against.
    pub fn recordings_segment_by_segment(
        &self,
        channel: u32,
        start: Time90k,
        end: Time90k,
    ) -> Result<Vec<RecordingRun>> {
        let conn = self.conn()?;
        let entries = db::sample_entries(&conn)?;
        let rows = db::segments_overlapping_for_runs(&conn, channel, start, end)?;
        let mut fold = super::runs::RunFold::default();
        super::run_days::fold_rows(&conn, &mut fold, &rows, &entries)?;
        Ok(fold.finish(&entries))
    }

    /// Each channel's stored bytes, oldest footage and bytes recorded in
    /// [since, now): the inputs of `capacity::report`.
    pub fn footage_figures(&self, since: Time90k, now: Time90k) -> Result<Vec<super::capacity::ChannelFootage>> {
        Ok(db::footage_figures(&self.conn()?, since, now)?)
    }

    /// The frames of every segment overlapping [start, end), for clip building.
    pub fn segment_frames(&self, channel: u32, start: Time90k, end: Time90k) -> Result<Vec<SegmentFrames>> {
        Ok(self.footage(channel, start, end)?.segments)
    }

    /// The readable frames of every segment overlapping [start, end), and the
    /// stored time in it that cannot be read (with the files to blame).
    pub fn footage(&self, channel: u32, start: Time90k, end: Time90k) -> Result<Footage> {
        let conn = self.conn()?;
        let entries: HashMap<i64, Arc<db::SampleEntryRow>> = db::sample_entries(&conn)?
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let mut out = Footage::default();
        // Archived segments: (index in `out.segments`, id, start, end).
        let mut archived = Vec::new();
        for s in db::segments_overlapping(&conn, channel, start, end)? {
            let Some(entry) = entries.get(&s.sample_entry_id).cloned() else {
                continue;
            };
            let path = segment_path(&self.dir, channel, s.id);
            let mut damage = |a: Time90k, b: Time90k, why: String| {
                if b > a {
                    out.damaged.push(DamagedSpan {
                        file: path.display().to_string(),
                        why,
                        start: a.to_rfc3339(),
                        end: b.to_rfc3339(),
                        start_90k: a,
                        end_90k: b,
                    });
                }
            };
            if s.state == db::ARCHIVED {
                // In the bucket: placed from the row, fetched below.
                match place_frames(&s, entry.data.len()) {
                    Ok((frames, _)) if !frames.is_empty() => {
                        let w = crate::archive::hydrate::wanted(&frames, start, end);
                        let cache = crate::archive::hydrate::cache_path(&self.dir, channel, s.id);
                        archived.push((out.segments.len(), s.id, s.start, s.end));
                        out.segments.push(SegmentFrames {
                            id: s.id,
                            path: cache,
                            entry,
                            frames: frames[w].to_vec(),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => damage(s.start, s.end, format!("frame index unreadable: {e:#}")),
                }
                continue;
            }
            let frames = if s.state == db::COMPLETE {
                let (mut frames, holes) = match place_frames(&s, entry.data.len()) {
                    Ok(p) => p,
                    Err(e) => {
                        // One bad row costs its own footage, never the range's.
                        warn!(channel, segment = s.id, "{e:#}");
                        damage(s.start, s.end, format!("frame index unreadable: {e:#}"));
                        continue;
                    }
                };
                for (a, b) in holes {
                    damage(a, b, "damaged records skipped by repair".into());
                }
                let usable = usable_bytes(&path, &s, &entry);
                let limit = usable.as_ref().copied().unwrap_or(0);
                let keep = frames
                    .iter()
                    .take_while(|f| f.offset + u64::from(f.size) <= limit)
                    .count();
                if keep < frames.len() {
                    let why = match (usable, &s.damage) {
                        (_, Some(d)) => d.clone(),
                        (Err(e), None) => {
                            warn!(channel, segment = s.id, file = %path.display(), "damaged segment found while reading: {e}");
                            e
                        }
                        (Ok(_), None) => "file shorter than its index".into(),
                    };
                    damage(frames[keep].time, s.end, why);
                    frames.truncate(keep);
                }
                frames
            } else {
                // Still being written: read the records that are complete now.
                match File::open(&path) {
                    Ok(mut f) => {
                        let len = f.metadata()?.len();
                        match segment_file::scan(&mut f, len, false) {
                            Ok(scan) => scan
                                .frames
                                .iter()
                                .zip(scan.entries(3000))
                                .map(|(sf, e)| FrameRef {
                                    time: scan.header.start + i64::from(sf.pts),
                                    duration: e.duration,
                                    offset: sf.offset,
                                    size: sf.size,
                                    key: sf.key,
                                })
                                .collect(),
                            // Just created, its header not on disk yet: the
                            // writer owns it and nothing in it is readable so
                            // far (a real fault is repair's at the next start).
                            Err(segment_file::FormatError::BadMagic | segment_file::FormatError::BadHeader(_)) => {
                                tracing::debug!(
                                    channel,
                                    segment = s.id,
                                    len,
                                    "segment being written has no header yet"
                                );
                                Vec::new()
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(e) => {
                        damage(
                            s.start,
                            s.end,
                            format!("file of the segment being written unreadable: {e}"),
                        );
                        Vec::new()
                    }
                }
            };
            if !frames.is_empty() {
                out.segments.push(SegmentFrames {
                    id: s.id,
                    path,
                    entry,
                    frames,
                });
            }
        }
        if !archived.is_empty() {
            self.hydrate(&conn, channel, &mut out, &archived);
        }
        out.damaged.retain(|d| d.end_90k > start && d.start_90k < end);
        Ok(out)
    }

    /// Fetches the archived segments' wanted frames (`archive::hydrate`);
    /// what cannot be fetched is reported as damaged footage naming the
    /// object, never served as zeros.
    fn hydrate(
        &self,
        conn: &rusqlite::Connection,
        channel: u32,
        out: &mut Footage,
        archived: &[(usize, i64, Time90k, Time90k)],
    ) {
        use crate::archive::{hydrate, rows};
        let loc = rows::location(conn);
        let mut jobs = Vec::new();
        let mut failed: Vec<(usize, String)> = Vec::new();
        for &(i, id, _, _) in archived {
            match rows::archive_of(conn, id) {
                Ok(Some((key, _))) => jobs.push((
                    i,
                    hydrate::Job {
                        key,
                        cache: out.segments[i].path.clone(),
                        frames: out.segments[i].frames.clone(),
                    },
                )),
                Ok(None) => failed.push((i, "archived row without its object".into())),
                Err(e) => failed.push((i, format!("index: {e}"))),
            }
        }
        let err = match loc {
            Ok(Some(loc)) => hydrate::fetch(&loc, jobs.drain(..).map(|(_, j)| j).collect())
                .err()
                .map(|e| e.to_string()),
            Ok(None) => Some("archived footage, but this store has no archive location".into()),
            Err(e) => Some(format!("index: {e}")),
        };
        if let Some(e) = err {
            warn!(channel, "archived footage unreadable: {e}");
            failed.extend(archived.iter().map(|&(i, ..)| (i, format!("archive unreadable: {e}"))));
        }
        failed.sort_by_key(|(i, _)| *i);
        failed.dedup_by_key(|(i, _)| *i);
        for (i, why) in failed.iter().rev() {
            let seg = out.segments.remove(*i);
            let &(_, id, a, b) = archived.iter().find(|(j, ..)| j == i).expect("listed above");
            warn!(channel, segment = id, "{why}");
            out.damaged.push(DamagedSpan {
                file: seg.path.display().to_string(),
                why: why.clone(),
                start: a.to_rfc3339(),
                end: b.to_rfc3339(),
                start_90k: a,
                end_90k: b,
            });
        }
    }

    /// Whether a peer's segment has been imported already.
    pub fn imported(&self, origin: &str, origin_segment: i64) -> Result<bool> {
        Ok(db::imported(&self.conn()?, origin, origin_segment)?)
    }

    /// An event's channel and start, by id (`None`: no such event).
    pub fn event_place(&self, id: i64) -> Result<Option<(Option<u32>, Time90k)>> {
        Ok(db::event_place(&self.conn()?, id)?)
    }

    pub fn events(
        &self,
        channel: Option<u32>,
        kind: Option<&str>,
        start: Time90k,
        end: Time90k,
    ) -> Result<Vec<db::EventRow>> {
        Ok(db::events(&self.conn()?, channel, kind, start, end)?)
    }
}

/// The stretches of stored time a segment row offers to the recordings list,
/// with their frames and bytes: the whole row if it is intact, else the
/// readable frames between repair's holes and before the damage.
pub(crate) fn pieces(s: &db::SegmentRow, entry_len: usize) -> Vec<(Time90k, Time90k, u64, u64)> {
    if s.damage.is_none() && s.holes.is_empty() {
        return vec![(s.start, s.end, u64::from(s.frames), s.bytes)];
    }
    let Ok((frames, _)) = place_frames(s, entry_len) else {
        return Vec::new();
    };
    let limit = s.readable_bytes.unwrap_or(s.bytes);
    let mut out: Vec<(Time90k, Time90k, u64, u64)> = Vec::new();
    for f in frames.iter().take_while(|f| f.offset + u64::from(f.size) <= limit) {
        let f_end = f.time + i64::from(f.duration);
        let bytes = RECORD_HEADER_LEN + u64::from(f.size);
        match out.last_mut() {
            Some(p) if f.time - p.1 <= CONTIGUOUS => {
                p.1 = f_end;
                p.2 += 1;
                p.3 += bytes;
            }
            _ => out.push((f.time, f_end, 1, bytes)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::FrameEntry;
    use crate::store::segment_file::Hole;

    fn row(n: usize, holes: Vec<Hole>, damage: Option<(&str, u64)>) -> db::SegmentRow {
        let entries: Vec<FrameEntry> = (0..n)
            .map(|i| FrameEntry {
                duration: 3000,
                size: 100,
                key: i % 5 == 0,
            })
            .collect();
        let ticks: i64 = holes.iter().map(|h| i64::from(h.ticks)).sum();
        db::SegmentRow {
            id: 1,
            channel: 1,
            state: db::COMPLETE,
            start: Time90k(1_000_000),
            end: Time90k(1_000_000 + n as i64 * 3000 + ticks),
            frames: n as u32,
            key_frames: 0,
            bytes: header_len(10) + n as u64 * 116 + holes.iter().map(|h| h.bytes).sum::<u64>(),
            media_bytes: 0,
            sample_entry_id: 1,
            frame_index: Some(index::encode(&entries)),
            damage: damage.map(|d| d.0.to_string()),
            readable_bytes: damage.map(|d| d.1),
            holes,
        }
    }

    #[test]
    fn holes_move_later_frames_in_time_and_in_the_file() {
        let r = row(
            10,
            vec![Hole {
                frames_before: 4,
                bytes: 500,
                ticks: 90_000,
            }],
            None,
        );
        let (f, holes) = place_frames(&r, 10).unwrap();
        assert_eq!(f[0].offset, header_len(10) + 16);
        assert_eq!(f[3].time, Time90k(1_000_000 + 9000));
        assert_eq!(f[4].time, Time90k(1_000_000 + 12_000 + 90_000));
        assert_eq!(f[4].offset, f[3].offset + 100 + 500 + 16);
        assert_eq!(holes, vec![(Time90k(1_012_000), Time90k(1_102_000))]);
        // The recordings list shows the hole as a break between two runs.
        let p = pieces(&r, 10);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].1, p[1].0), (Time90k(1_012_000), Time90k(1_102_000)));
        assert_eq!(p[0].2 + p[1].2, 10);
        assert_eq!(p[1].1, r.end);
    }

    #[test]
    fn damaged_rows_offer_only_their_readable_frames() {
        let whole = row(10, vec![], None);
        assert_eq!(pieces(&whole, 10), vec![(whole.start, whole.end, 10, whole.bytes)]);
        let missing = row(10, vec![], Some(("file missing", 0)));
        assert!(pieces(&missing, 10).is_empty());
        // Truncated inside frame 6: frames 0..=5 remain.
        let cut = header_len(10) + 6 * 116 + 50;
        let p = pieces(&row(10, vec![], Some(("truncated", cut))), 10);
        assert_eq!(p, vec![(whole.start, whole.start + 6 * 3000, 6, 6 * 116)]);
    }

    #[test]
    fn recordings_list_overlapping_time_and_break_at_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        let e = db::upsert_sample_entry(&c, b"avc1", "h264", 640, 480).unwrap();
        let s = 90_000i64;
        let add = |a: i64, b: i64| {
            let id = db::insert_writing_segment(&c, 1, Time90k(a), e).unwrap();
            let p = db::Progress {
                end: Time90k(b),
                frames: 25,
                key_frames: 1,
                bytes: 1000,
                media_bytes: 900,
            };
            db::complete_segment(&c, id, &p, &[], None).unwrap();
            id
        };
        // A camera clock stepped back 10 s: the second segment starts inside the first.
        add(0, 60 * s);
        add(50 * s, 110 * s);
        add(110 * s, 170 * s);
        let missing = add(170 * s, 230 * s);
        add(230 * s, 290 * s);
        assert!(db::mark_damaged(&c, missing, "file missing", 0).unwrap());
        let runs = Reader::new(dir.path().to_path_buf())
            .recordings(1, Time90k(0), Time90k(1000 * s))
            .unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!((runs[0].start_90k, runs[0].end_90k), (Time90k(0), Time90k(170 * s)));
        assert_eq!(runs[0].frames, 75);
        assert_eq!(
            runs[0].overlaps,
            vec![Overlap {
                start: Time90k(50 * s).to_rfc3339(),
                end: Time90k(60 * s).to_rfc3339(),
                seconds: 10.0,
            }]
        );
        // The missing segment is a gap: the next run starts after it.
        assert_eq!(runs[1].start_90k, Time90k(230 * s));
        assert!(runs[1].overlaps.is_empty());
    }

    #[test]
    fn gap_fills_footage_is_its_own_run_among_other_channels_marks() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        let e = db::upsert_sample_entry(&c, b"avc1", "h264", 640, 480).unwrap();
        let s = 90_000i64;
        let add = |ch: u32, a: i64| {
            let p = db::Progress {
                end: Time90k(a + 60 * s),
                frames: 25,
                key_frames: 1,
                bytes: 1000,
                media_bytes: 900,
            };
            db::insert_finished_segment(&c, ch, Time90k(a), e, &p, &[], None).unwrap()
        };
        let first = add(1, 0);
        let other = add(2, 60 * s);
        add(1, 60 * s);
        add(1, 120 * s);
        // Gap fill merged channel 1's middle minute, and channel 2's minute
        // (whose id lies among channel 1's).
        assert_eq!(
            db::gapfill_mark_segments(&c, 7, 1, first, Time90k(60 * s), Time90k(120 * s)).unwrap(),
            1
        );
        assert_eq!(
            db::gapfill_mark_segments(&c, 8, 2, first, Time90k(0), Time90k(120 * s)).unwrap(),
            1
        );
        assert!(db::gapfill_segments_among(&c, first, first + 3)
            .unwrap()
            .contains(&other));
        let runs = Reader::new(dir.path().to_path_buf())
            .recordings(1, Time90k(0), Time90k(1000 * s))
            .unwrap();
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.start_90k.0 / s, r.end_90k.0 / s, r.origin))
            .collect();
        assert_eq!(got, vec![(0, 60, None), (60, 120, Some("gapfill")), (120, 180, None)]);
    }

    #[test]
    fn a_corrupt_frame_index_or_missing_file_costs_only_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        let mut entry = vec![0u8; 40];
        entry[4..8].copy_from_slice(b"avc1");
        let e = db::upsert_sample_entry(&c, &entry, "h264", 640, 480).unwrap();
        let add = |a: i64, index: &[u8]| {
            let id = db::insert_writing_segment(&c, 1, Time90k(a), e).unwrap();
            let p = db::Progress {
                end: Time90k(a + 9000),
                frames: 3,
                key_frames: 1,
                bytes: header_len(40) + 3 * 116,
                media_bytes: 300,
            };
            db::complete_segment(&c, id, &p, index, None).unwrap();
            id
        };
        let good = index::encode(
            &[FrameEntry {
                duration: 3000,
                size: 100,
                key: true,
            }; 3],
        );
        let corrupt = add(0, &[0xff; 11]);
        let missing = add(9000, &good);
        let f = Reader::new(dir.path().to_path_buf())
            .footage(1, Time90k(0), Time90k(18_000))
            .unwrap();
        assert!(f.segments.is_empty());
        assert_eq!(f.damaged.len(), 2);
        assert!(
            f.damaged[0].why.starts_with("frame index unreadable"),
            "{:?}",
            f.damaged[0]
        );
        assert!(f.damaged[0].file.ends_with(&format!("{corrupt:016}.seg")));
        assert_eq!(f.damaged[1].why, "file missing");
        assert!(f.damaged[1].file.ends_with(&format!("{missing:016}.seg")));
        assert_eq!(
            (f.damaged[1].start_90k, f.damaged[1].end_90k),
            (Time90k(9000), Time90k(18_000))
        );
    }
}
