//! Counting loss from the simulated cameras' frame stamps: given the stamps
//! found in stored footage (in any order), report per camera the frames found,
//! frames lost between the first and last found, duplicates, and each gap —
//! per camera run: a camera process that restarts numbers its frames from 0
//! again under a new boot id, so runs are counted apart and each restart is
//! listed with the time between the runs, never as loss or duplicates.
//!
//! `audit_stamps` is pure; `audit_mp4` and `audit_store` are the thin readers.
//! Must never assume the footage is sorted or from one camera.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};

use crate::nal::FrameStamp;
use crate::store::Reader;
use crate::time::Time90k;

#[derive(Debug, Default, serde::Serialize, PartialEq)]
pub struct AuditReport {
    /// Distinct frames found, over every camera and run.
    pub frames_found: u64,
    /// Frames missing inside camera runs (never across a camera restart).
    pub frames_lost: u64,
    /// Frames stored more than once (same camera, run and sequence number).
    pub duplicates: u64,
    /// Frames that carried no stamp (not from a Tandem simulated camera).
    pub frames_unstamped: u64,
    /// Camera restarts seen (a new run of a camera), over every camera.
    pub restarts: u64,
    pub cameras: Vec<CameraAudit>,
}

/// One camera's frames. With a single run the fields mean what they always
/// did; with several, counts are summed over runs, `first_*` come from the
/// first run and `last_*` from the last, and `gaps` are losses inside runs.
#[derive(Debug, Default, serde::Serialize, PartialEq)]
pub struct CameraAudit {
    pub camera_id: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_capture: String,
    pub last_capture: String,
    pub frames_found: u64,
    pub frames_lost: u64,
    pub duplicates: u64,
    /// Median capture interval, seconds.
    pub frame_interval_s: f64,
    pub gaps: Vec<GapReport>,
    /// Each run of the camera (one per start of its process), in capture order.
    pub runs: Vec<RunAudit>,
    /// Between consecutive runs: when one ended and the next began.
    pub restarts: Vec<RestartReport>,
}

/// One run of a camera: frames sharing a boot id (stamps without one form a
/// single run, as before boot ids existed).
#[derive(Debug, Default, serde::Serialize, PartialEq)]
pub struct RunAudit {
    /// The stamp's boot id, in hex; "0" for stamps that carry none.
    pub boot_id: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_capture: String,
    pub last_capture: String,
    pub frames_found: u64,
    pub frames_lost: u64,
    pub duplicates: u64,
}

/// A camera restart: not a loss the NVR caused, reported apart from `gaps`.
#[derive(Debug, serde::Serialize, PartialEq)]
pub struct RestartReport {
    pub before_boot_id: String,
    pub after_boot_id: String,
    /// Last frame of the earlier run and first frame of the later one.
    pub last_seq_before: u64,
    pub first_seq_after: u64,
    pub last_before: String,
    pub first_after: String,
    /// Capture time between those two frames (negative if the runs overlap).
    pub seconds: f64,
}

#[derive(Debug, serde::Serialize, PartialEq)]
pub struct GapReport {
    /// Last sequence number stored before the gap and first after it.
    pub after_seq: u64,
    pub before_seq: u64,
    pub frames_missing: u64,
    /// Capture time of the last frame stored before the gap and of the first after it.
    pub last_before: String,
    pub first_after: String,
    /// Footage missing: `frames_missing` × the frame interval.
    pub seconds: f64,
    #[serde(skip)]
    pub last_before_us: i64,
    #[serde(skip)]
    pub first_after_us: i64,
}

fn rfc3339_us(us: i64) -> String {
    Time90k::from_unix_micros(us).to_rfc3339()
}

/// One run's stamps, sorted and deduplicated, with what was removed.
struct Run {
    boot_id: u64,
    frames: Vec<FrameStamp>,
    duplicates: u64,
}

impl Run {
    fn lost(&self) -> u64 {
        let (first, last) = (self.frames[0], self.frames[self.frames.len() - 1]);
        last.seq - first.seq + 1 - self.frames.len() as u64
    }
}

pub fn audit_stamps(stamps: impl IntoIterator<Item = Option<FrameStamp>>) -> AuditReport {
    let mut report = AuditReport::default();
    let mut by_cam: BTreeMap<u32, BTreeMap<u64, Vec<FrameStamp>>> = BTreeMap::new();
    for s in stamps {
        match s {
            Some(s) => by_cam
                .entry(s.camera_id)
                .or_default()
                .entry(s.boot_id)
                .or_default()
                .push(s),
            None => report.frames_unstamped += 1,
        }
    }
    for (camera_id, boots) in by_cam {
        let mut runs: Vec<Run> = boots
            .into_iter()
            .map(|(boot_id, mut v)| {
                v.sort_by_key(|s| s.seq);
                let total = v.len() as u64;
                v.dedup_by_key(|s| s.seq);
                Run {
                    boot_id,
                    duplicates: total - v.len() as u64,
                    frames: v,
                }
            })
            .collect();
        // Runs in the order the camera lived them.
        runs.sort_by_key(|r| (r.frames[0].capture_unix_micros, r.boot_id));
        let mut deltas: Vec<i64> = runs
            .iter()
            .flat_map(|r| r.frames.windows(2))
            .filter(|w| w[1].seq == w[0].seq + 1)
            .map(|w| w[1].capture_unix_micros - w[0].capture_unix_micros)
            .collect();
        deltas.sort_unstable();
        let interval_us = deltas.get(deltas.len() / 2).copied().unwrap_or(40_000);
        let mut gaps = Vec::new();
        for w in runs.iter().flat_map(|r| r.frames.windows(2)) {
            if w[1].seq > w[0].seq + 1 {
                let missing = w[1].seq - w[0].seq - 1;
                gaps.push(GapReport {
                    after_seq: w[0].seq,
                    before_seq: w[1].seq,
                    frames_missing: missing,
                    last_before: rfc3339_us(w[0].capture_unix_micros),
                    first_after: rfc3339_us(w[1].capture_unix_micros),
                    seconds: missing as f64 * interval_us as f64 / 1e6,
                    last_before_us: w[0].capture_unix_micros,
                    first_after_us: w[1].capture_unix_micros,
                });
            }
        }
        let restarts: Vec<RestartReport> = runs
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0].frames[w[0].frames.len() - 1], w[1].frames[0]);
                RestartReport {
                    before_boot_id: format!("{:x}", w[0].boot_id),
                    after_boot_id: format!("{:x}", w[1].boot_id),
                    last_seq_before: a.seq,
                    first_seq_after: b.seq,
                    last_before: rfc3339_us(a.capture_unix_micros),
                    first_after: rfc3339_us(b.capture_unix_micros),
                    seconds: (b.capture_unix_micros - a.capture_unix_micros) as f64 / 1e6,
                }
            })
            .collect();
        let run_reports: Vec<RunAudit> = runs
            .iter()
            .map(|r| {
                let (first, last) = (r.frames[0], r.frames[r.frames.len() - 1]);
                RunAudit {
                    boot_id: format!("{:x}", r.boot_id),
                    first_seq: first.seq,
                    last_seq: last.seq,
                    first_capture: rfc3339_us(first.capture_unix_micros),
                    last_capture: rfc3339_us(last.capture_unix_micros),
                    frames_found: r.frames.len() as u64,
                    frames_lost: r.lost(),
                    duplicates: r.duplicates,
                }
            })
            .collect();
        let first = runs[0].frames[0];
        let last_run = &runs[runs.len() - 1];
        let last = last_run.frames[last_run.frames.len() - 1];
        let found: u64 = runs.iter().map(|r| r.frames.len() as u64).sum();
        let lost: u64 = runs.iter().map(Run::lost).sum();
        let duplicates: u64 = runs.iter().map(|r| r.duplicates).sum();
        report.frames_found += found;
        report.frames_lost += lost;
        report.duplicates += duplicates;
        report.restarts += restarts.len() as u64;
        report.cameras.push(CameraAudit {
            camera_id,
            first_seq: first.seq,
            last_seq: last.seq,
            first_capture: rfc3339_us(first.capture_unix_micros),
            last_capture: rfc3339_us(last.capture_unix_micros),
            frames_found: found,
            frames_lost: lost,
            duplicates,
            frame_interval_s: interval_us as f64 / 1e6,
            gaps,
            runs: run_reports,
            restarts,
        });
    }
    report
}

/// Audits every sample of the first video track of an .mp4 file.
pub fn audit_mp4(path: &Path) -> Result<AuditReport> {
    Ok(audit_stamps(stamps_mp4(path)?))
}

/// The stamp of every sample of an .mp4's first video track, in file order.
pub fn stamps_mp4(path: &Path) -> Result<Vec<Option<FrameStamp>>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let track = crate::mp4::reader::read_track_file(&mut f).with_context(|| format!("reading {}", path.display()))?;
    let mut stamps = Vec::with_capacity(track.samples.len());
    let mut buf = Vec::new();
    for s in &track.samples {
        buf.resize(s.size as usize, 0);
        f.seek(SeekFrom::Start(s.offset))?;
        f.read_exact(&mut buf)
            .with_context(|| format!("{}: sample at offset {} is truncated", path.display(), s.offset))?;
        stamps.push(FrameStamp::from_frame(&buf));
    }
    Ok(stamps)
}

/// Audits a channel's stored footage in [start, end).
pub fn audit_store(reader: &Reader, channel: u32, start: Time90k, end: Time90k) -> Result<AuditReport> {
    Ok(audit_store_checked(reader, channel, start, end)?.0)
}

/// Like `audit_store`, and also checks every frame's record checksum: frames
/// that cannot be read or fail it are left out, and each damaged file is
/// named (`path: what is wrong`) instead of failing the whole audit.
pub fn audit_store_checked(
    reader: &Reader,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> Result<(AuditReport, Vec<String>)> {
    use crate::store::segment_file::{record_intact, RECORD_HEADER_LEN};
    let footage = reader.footage(channel, start, end)?;
    let mut damaged: Vec<String> = footage
        .damaged
        .iter()
        .map(|d| format!("{}: {} (footage from {} to {})", d.file, d.why, d.start, d.end))
        .collect();
    let mut stamps = Vec::new();
    let mut buf = Vec::new();
    for seg in footage.segments {
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            Err(e) => {
                damaged.push(format!("{}: cannot open: {e}", seg.path.display()));
                continue;
            }
        };
        let (mut bad, mut first_bad) = (0u64, None);
        for fr in seg.frames.iter().filter(|fr| fr.time >= start && fr.time < end) {
            use std::os::unix::fs::FileExt;
            let head_at = fr.offset.saturating_sub(RECORD_HEADER_LEN);
            buf.resize(RECORD_HEADER_LEN as usize + fr.size as usize, 0);
            let ok = file.read_exact_at(&mut buf, head_at).is_ok()
                && record_intact(&buf[..RECORD_HEADER_LEN as usize], &buf[RECORD_HEADER_LEN as usize..]);
            if !ok {
                bad += 1;
                first_bad.get_or_insert(head_at);
                continue;
            }
            stamps.push(FrameStamp::from_frame(&buf[RECORD_HEADER_LEN as usize..]));
        }
        if let Some(at) = first_bad {
            damaged.push(format!(
                "{}: {bad} frames unreadable or failing their checksum (the first at byte {at})",
                seg.path.display()
            ));
        }
    }
    Ok((audit_stamps(stamps), damaged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(cam: u32, seq: u64) -> Option<FrameStamp> {
        Some(FrameStamp {
            camera_id: cam,
            seq,
            capture_unix_micros: seq as i64 * 40_000,
            boot_id: 0,
        })
    }

    /// Frame `seq` of the camera run `boot` that started at `start_us`.
    fn run_st(boot: u64, start_us: i64, seq: u64) -> Option<FrameStamp> {
        Some(FrameStamp {
            camera_id: 1,
            seq,
            capture_unix_micros: start_us + seq as i64 * 40_000,
            boot_id: boot,
        })
    }

    #[test]
    fn camera_restarts_are_runs_not_duplicates() {
        // 43 restarts, as in the review: each run numbers its frames from 0,
        // 2 s of downtime between runs, 25 frames lost inside run 10 only.
        let mut v = Vec::new();
        let mut start = 1_700_000_000_000_000i64;
        for boot in 1..=44u64 {
            for seq in 0..100u64 {
                if boot == 10 && (40..65).contains(&seq) {
                    continue;
                }
                v.push(run_st(boot * 7919, start, seq));
            }
            start += 100 * 40_000 + 2_000_000;
        }
        v.push(run_st(
            3 * 7919,
            1_700_000_000_000_000 + 2 * (100 * 40_000 + 2_000_000),
            5,
        ));
        v.reverse();
        let r = audit_stamps(v);
        assert_eq!(r.frames_found, 44 * 100 - 25);
        assert_eq!(r.frames_lost, 25);
        assert_eq!(r.duplicates, 1, "only the frame stored twice");
        assert_eq!(r.restarts, 43);
        let c = &r.cameras[0];
        assert_eq!(c.runs.len(), 44);
        assert_eq!(c.restarts.len(), 43);
        assert_eq!(c.gaps.len(), 1);
        assert_eq!((c.gaps[0].after_seq, c.gaps[0].before_seq), (39, 65));
        // Runs in capture order; each restart spans the 2 s of downtime (+ one frame interval).
        assert_eq!(c.runs[0].boot_id, format!("{:x}", 7919));
        assert_eq!(c.runs[9].frames_lost, 25);
        assert_eq!(c.runs[2].duplicates, 1);
        for rs in &c.restarts {
            assert_eq!((rs.last_seq_before, rs.first_seq_after), (99, 0));
            assert!((rs.seconds - 2.04).abs() < 1e-9, "{rs:?}");
        }
        assert_eq!((c.first_seq, c.last_seq), (0, 99));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cameras"][0]["restarts"][0]["seconds"], 2.04);
    }

    #[test]
    fn one_run_reads_as_before() {
        // A single run: the report has the shape and meaning it always had.
        let v: Vec<_> = (0..50).filter(|s| *s != 20).map(|s| run_st(99, 0, s)).collect();
        let r = audit_stamps(v);
        assert_eq!((r.frames_found, r.frames_lost, r.duplicates, r.restarts), (49, 1, 0, 0));
        let c = &r.cameras[0];
        assert_eq!(c.runs.len(), 1);
        assert!(c.restarts.is_empty());
        assert_eq!((c.runs[0].frames_found, c.runs[0].frames_lost), (49, 1));
    }

    #[test]
    fn counts_gaps_duplicates_and_cameras() {
        let mut v: Vec<_> = (0..100).filter(|s| !(40..65).contains(s)).map(|s| st(1, s)).collect();
        v.push(st(1, 10));
        v.extend((5..8).map(|s| st(2, s)));
        v.push(None);
        v.reverse();
        let r = audit_stamps(v);
        assert_eq!(r.frames_found, 75 + 3);
        assert_eq!(r.frames_lost, 25);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.frames_unstamped, 1);
        let c1 = &r.cameras[0];
        assert_eq!((c1.first_seq, c1.last_seq), (0, 99));
        assert_eq!(c1.gaps.len(), 1);
        assert_eq!(c1.gaps[0].after_seq, 39);
        assert_eq!(c1.gaps[0].before_seq, 65);
        assert_eq!(c1.gaps[0].frames_missing, 25);
        assert!((c1.gaps[0].seconds - 1.0).abs() < 1e-9);
        assert!((c1.frame_interval_s - 0.04).abs() < 1e-9);
        assert_eq!(r.cameras[1].frames_lost, 0);
    }

    #[test]
    fn empty_input() {
        assert_eq!(audit_stamps(Vec::new()), AuditReport::default());
    }
}
