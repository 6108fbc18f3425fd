//! The site's merged timeline, judged by the cameras' own frame stamps: the
//! union of every NVR's store (a frame is lost only when no NVR of the site
//! stored it), per-store duplicates (what a merge stored twice), whether a
//! window around a fault is complete yet, and which round each hole belongs to.
//!
//! `window_complete` and `attribute` are pure; `store_stamps` and `site_stamps`
//! are the thin readers (they read live stores too: a growing segment's
//! complete records are readable). Must never write to a store.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::audit::{audit_stamps, AuditReport};
use crate::nal::FrameStamp;
use crate::store::Reader;
use crate::time::Time90k;

/// Every stamped frame of `channels` in the store, [start, end) by the NVR's clock.
pub fn store_stamps(dir: &Path, channels: &[u32], start: Time90k, end: Time90k) -> Result<Vec<FrameStamp>> {
    let reader = Reader::new(dir.to_path_buf());
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for &ch in channels {
        let footage = reader
            .footage(ch, start, end)
            .with_context(|| format!("reading channel {ch} of {}", dir.display()))?;
        for seg in footage.segments {
            // A segment retention or a merge removed meanwhile holds nothing now.
            let Ok(file) = std::fs::File::open(&seg.path) else {
                continue;
            };
            for fr in seg.frames.iter().filter(|f| f.time >= start && f.time < end) {
                buf.resize(fr.size as usize, 0);
                if file.read_exact_at(&mut buf, fr.offset).is_ok() {
                    if let Some(s) = FrameStamp::from_frame(&buf) {
                        out.push(s);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The union of every store's stamps (with repeats: one entry per stored copy).
pub fn site_stamps(stores: &[(PathBuf, Vec<u32>)], start: Time90k, end: Time90k) -> Result<Vec<FrameStamp>> {
    let mut out = Vec::new();
    for (dir, channels) in stores {
        out.extend(store_stamps(dir, channels, start, end)?);
    }
    Ok(out)
}

/// The whole site after the run: frames no NVR stored (from the union) and
/// frames some NVR stored twice (each store on its own: a standby keeping its
/// copy after failback is not a duplicate, a merge that kept both copies is).
pub struct SiteAudit {
    pub union: AuditReport,
    pub duplicates: u64,
    /// The first store's own timeline (the primary: where failback transfers land).
    pub first: AuditReport,
}

pub fn audit_site(stores: &[(PathBuf, Vec<u32>)]) -> Result<SiteAudit> {
    let (all_start, all_end) = (Time90k(0), Time90k(i64::MAX));
    let mut union = Vec::new();
    let mut duplicates = 0;
    let mut first = None;
    for (dir, channels) in stores {
        let s = store_stamps(dir, channels, all_start, all_end)?;
        let own = audit_stamps(s.iter().copied().map(Some));
        duplicates += own.duplicates;
        first.get_or_insert(own);
        union.extend(s);
    }
    Ok(SiteAudit {
        union: audit_stamps(union.into_iter().map(Some)),
        duplicates,
        first: first.unwrap_or_default(),
    })
}

/// Whether every camera in `cameras` has every frame it captured in
/// [from_us, to_us] (capture time, camera clock) somewhere in `stamps`:
/// a frame within `slack_us` of each end, and no sequence number missing between.
pub fn window_complete(stamps: &[FrameStamp], cameras: &[u32], from_us: i64, to_us: i64, slack_us: i64) -> bool {
    let mut by_cam: BTreeMap<u32, Vec<&FrameStamp>> = BTreeMap::new();
    for s in stamps {
        if s.capture_unix_micros >= from_us - slack_us && s.capture_unix_micros <= to_us + slack_us {
            by_cam.entry(s.camera_id).or_default().push(s);
        }
    }
    cameras.iter().all(|id| {
        let Some(v) = by_cam.get_mut(id) else {
            return false;
        };
        v.sort_by_key(|s| (s.boot_id, s.seq));
        v.dedup_by_key(|s| (s.boot_id, s.seq));
        let one_run = v
            .windows(2)
            .all(|w| w[0].boot_id == w[1].boot_id && w[1].seq == w[0].seq + 1);
        let first = v.iter().map(|s| s.capture_unix_micros).min().unwrap_or(i64::MAX);
        let last = v.iter().map(|s| s.capture_unix_micros).max().unwrap_or(i64::MIN);
        one_run && first <= from_us && last >= to_us
    })
}

/// A fault's span (microseconds since the epoch): injected, then cleared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub start_us: i64,
    pub end_us: i64,
}

/// What one round lost on the merged timeline.
#[derive(Debug, Default, PartialEq)]
pub struct RoundLoss {
    /// Camera id → seconds of holes that opened before the fault was cleared
    /// (the takeover's recording loss).
    pub loss_s: BTreeMap<u32, f64>,
    pub frames_lost: u64,
    /// Frames of holes that opened around or after the fault was cleared.
    pub failback_frames_lost: u64,
}

/// Each hole belongs to the last round that began before the hole ended
/// (TCP may deliver the first moments after a cut late, moving the hole).
pub fn attribute(audit: &AuditReport, rounds: &[Span]) -> Vec<RoundLoss> {
    let mut out: Vec<RoundLoss> = rounds.iter().map(|_| RoundLoss::default()).collect();
    for cam in &audit.cameras {
        for r in out.iter_mut() {
            r.loss_s.insert(cam.camera_id, 0.0);
        }
        for g in &cam.gaps {
            let Some(i) = rounds.iter().rposition(|r| r.start_us <= g.first_after_us) else {
                continue;
            };
            let (round, span) = (&mut out[i], rounds[i]);
            round.frames_lost += g.frames_missing;
            if g.last_before_us <= span.end_us {
                *round.loss_s.entry(cam.camera_id).or_default() += (g.first_after_us - g.last_before_us) as f64 / 1e6;
            }
            if g.last_before_us >= span.end_us - 1_000_000 {
                round.failback_frames_lost += g.frames_missing;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(cam: u32, seqs: impl IntoIterator<Item = u64>) -> Vec<FrameStamp> {
        seqs.into_iter()
            .map(|seq| FrameStamp {
                camera_id: cam,
                seq,
                capture_unix_micros: 1_000_000_000 + seq as i64 * 40_000,
                boot_id: 7,
            })
            .collect()
    }

    const T0: i64 = 1_000_000_000;

    #[test]
    fn a_window_is_complete_only_when_every_camera_covers_it_without_a_hole() {
        // Frames 0..=100 cover [T0, T0 + 4 s].
        let mut s = stamps(1, 0..=100);
        s.extend(stamps(2, 0..=100));
        assert!(window_complete(&s, &[1, 2], T0 + 400_000, T0 + 3_600_000, 80_000));
        // A camera nobody stored.
        assert!(!window_complete(&s, &[1, 2, 3], T0 + 400_000, T0 + 3_600_000, 80_000));
        // One frame missing inside the window.
        let holed: Vec<FrameStamp> = s
            .iter()
            .copied()
            .filter(|f| !(f.camera_id == 2 && f.seq == 50))
            .collect();
        assert!(!window_complete(&holed, &[1, 2], T0 + 400_000, T0 + 3_600_000, 80_000));
        // …but a hole outside it does not matter.
        assert!(window_complete(&holed, &[1], T0 + 400_000, T0 + 3_600_000, 80_000));
        // The window runs past the last stored frame: not yet complete.
        assert!(!window_complete(&s, &[1], T0 + 400_000, T0 + 5_000_000, 80_000));
        // Copies from two NVRs that together cover it are complete.
        let mut two = stamps(1, 0..=60);
        two.extend(stamps(1, 40..=100));
        assert!(window_complete(&two, &[1], T0, T0 + 4_000_000, 80_000));
        // A camera restart inside the window is not a complete run.
        let mut restarted = stamps(1, 0..=50);
        restarted.extend(stamps(1, 51..=100).into_iter().map(|mut f| {
            f.boot_id = 8;
            f
        }));
        assert!(!window_complete(&restarted, &[1], T0, T0 + 4_000_000, 80_000));
    }

    #[test]
    fn holes_go_to_the_round_that_began_before_they_ended() {
        let mut s = stamps(
            1,
            (0..=1000).filter(|q| !(100..110).contains(q) && !(600..605).contains(q)),
        );
        s.extend(stamps(2, (0..=1000).filter(|q| !(103..110).contains(q))));
        let audit = audit_stamps(s.into_iter().map(Some));
        let at = |seq: i64| T0 + seq * 40_000;
        let rounds = [
            Span {
                start_us: at(99),
                end_us: at(300),
            },
            Span {
                start_us: at(500),
                end_us: at(604),
            },
        ];
        let r = attribute(&audit, &rounds);
        assert_eq!(r[0].frames_lost, 10 + 7);
        assert!((r[0].loss_s[&1] - 0.44).abs() < 1e-9, "{r:?}");
        assert!((r[0].loss_s[&2] - 0.32).abs() < 1e-9, "{r:?}");
        assert_eq!(r[0].failback_frames_lost, 0);
        // The second round's hole opened within a second of the restore.
        assert_eq!(r[1].frames_lost, 5);
        assert_eq!(r[1].failback_frames_lost, 5);
        assert_eq!(r[1].loss_s[&2], 0.0);
        // A hole before any round belongs to none.
        let early = audit_stamps(stamps(1, (0..=100).filter(|q| *q != 5)).into_iter().map(Some));
        assert!(attribute(&early, &rounds).iter().all(|r| r.frames_lost == 0));
    }
}
