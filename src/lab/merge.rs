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
use crate::store::{db, Reader};
use crate::time::Time90k;

/// Where one stored copy of a frame is: enough to trace a duplicate to the
/// merge that made it (`segment` in the store's index; `gapfill` when gap
/// fill merged that segment, else live or a failback import).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Copy {
    pub segment: i64,
    pub time_90k: i64,
    /// As stored: a segment's last frame gets the previous interval, or 1 tick.
    pub duration: u32,
    pub key: bool,
    pub gapfill: bool,
}

/// A frame one store holds more than once.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Duplicate {
    pub store: String,
    pub channel: u32,
    pub camera: u32,
    pub seq: u64,
    pub copies: Vec<Copy>,
}

/// A stored frame's stamp, channel and place.
pub type StoredFrame = (FrameStamp, u32, Copy);

/// Every stamped frame of `channels` in the store, [start, end) by the NVR's
/// clock, with the channel and place of each copy.
fn store_frames(dir: &Path, channels: &[u32], start: Time90k, end: Time90k) -> Result<Vec<StoredFrame>> {
    let reader = Reader::new(dir.to_path_buf());
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for &ch in channels {
        let footage = reader
            .footage(ch, start, end)
            .with_context(|| format!("reading channel {ch} of {}", dir.display()))?;
        // Which segments gap fill merged (best effort: diagnostics only).
        let filled = db::open_readonly(&dir.join("index.db"))
            .and_then(|c| db::gapfill_segment_ids(&c, ch, start, end))
            .unwrap_or_default();
        for seg in footage.segments {
            // A segment retention or a merge removed meanwhile holds nothing now.
            let Ok(file) = std::fs::File::open(&seg.path) else {
                continue;
            };
            for fr in seg.frames.iter().filter(|f| f.time >= start && f.time < end) {
                buf.resize(fr.size as usize, 0);
                if file.read_exact_at(&mut buf, fr.offset).is_ok() {
                    if let Some(s) = FrameStamp::from_frame(&buf) {
                        let copy = Copy {
                            segment: seg.id,
                            time_90k: fr.time.0,
                            duration: fr.duration,
                            key: fr.key,
                            gapfill: filled.contains(&seg.id),
                        };
                        out.push((s, ch, copy));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Every stamped frame of `channels` in the store, [start, end) by the NVR's clock.
pub fn store_stamps(dir: &Path, channels: &[u32], start: Time90k, end: Time90k) -> Result<Vec<FrameStamp>> {
    Ok(store_frames(dir, channels, start, end)?
        .into_iter()
        .map(|(s, _, _)| s)
        .collect())
}

/// The union of every store's stamps (with repeats: one entry per stored copy).
pub fn site_stamps(stores: &[(PathBuf, Vec<u32>)], start: Time90k, end: Time90k) -> Result<Vec<FrameStamp>> {
    let mut out = Vec::new();
    for (dir, channels) in stores {
        out.extend(store_stamps(dir, channels, start, end)?);
    }
    Ok(out)
}

/// The frames of one store held more than once (same camera, boot and
/// sequence number), each with every copy.
pub fn duplicates_in(store: &str, frames: &[StoredFrame]) -> Vec<Duplicate> {
    let mut by_frame: BTreeMap<(u32, u64, u64), Vec<&StoredFrame>> = BTreeMap::new();
    for f in frames {
        by_frame
            .entry((f.0.camera_id, f.0.boot_id, f.0.seq))
            .or_default()
            .push(f);
    }
    by_frame
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((camera, _, seq), v)| Duplicate {
            store: store.to_string(),
            channel: v[0].1,
            camera,
            seq,
            copies: v.iter().map(|f| f.2.clone()).collect(),
        })
        .collect()
}

/// The whole site after the run: frames no NVR stored (from the union) and
/// frames some NVR stored twice (each store on its own: a standby keeping its
/// copy after failback is not a duplicate, a merge that kept both copies is).
pub struct SiteAudit {
    pub union: AuditReport,
    pub duplicates: u64,
    /// Each frame stored twice, with where its copies are (at most
    /// `MAX_LISTED`; `duplicates` counts them all).
    pub listed: Vec<Duplicate>,
    /// The first store's own timeline (the primary: where failback transfers land).
    pub first: AuditReport,
}

/// Duplicates listed in a report, at most.
pub const MAX_LISTED: usize = 50;

pub fn audit_site(stores: &[(PathBuf, Vec<u32>)]) -> Result<SiteAudit> {
    let (all_start, all_end) = (Time90k(0), Time90k(i64::MAX));
    let mut union = Vec::new();
    let mut duplicates = 0;
    let mut listed = Vec::new();
    let mut first = None;
    for (dir, channels) in stores {
        let frames = store_frames(dir, channels, all_start, all_end)?;
        // `topology/nvr-data`: the pair and the clock-skew pair both have a `pri-data`.
        let name = dir
            .iter()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<PathBuf>()
            .display()
            .to_string();
        for d in duplicates_in(&name, &frames) {
            if listed.len() < MAX_LISTED {
                listed.push(d);
            }
        }
        let s: Vec<FrameStamp> = frames.into_iter().map(|(s, _, _)| s).collect();
        let own = audit_stamps(s.iter().copied().map(Some));
        duplicates += own.duplicates;
        first.get_or_insert(own);
        union.extend(s);
    }
    Ok(SiteAudit {
        union: audit_stamps(union.into_iter().map(Some)),
        duplicates,
        listed,
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
    fn a_frame_stored_twice_is_listed_with_both_copies() {
        let copy = |segment: i64, time_90k: i64, duration: u32, gapfill: bool| Copy {
            segment,
            time_90k,
            duration,
            key: true,
            gapfill,
        };
        let mut frames: Vec<StoredFrame> = stamps(1, 0..5)
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, 1, copy(12, i as i64 * 3600, 3600, false)))
            .collect();
        // The lab's case: a live segment's lone last frame (1 tick) and gap
        // fill's copy of it.
        frames.push((stamps(1, [5])[0], 1, copy(16, 5 * 3600, 1, false)));
        frames.push((stamps(1, [5])[0], 1, copy(20, 5 * 3600, 3600, true)));
        // The same sequence number from another boot or camera is another frame.
        let mut other_boot = stamps(1, [5])[0];
        other_boot.boot_id = 8;
        frames.push((other_boot, 1, copy(30, 99 * 3600, 3600, false)));
        frames.push((stamps(2, [5])[0], 2, copy(31, 5 * 3600, 3600, false)));
        let d = duplicates_in("pair/stb-data", &frames);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].camera, d[0].seq, d[0].channel), (1, 5, 1));
        assert_eq!(d[0].store, "pair/stb-data");
        assert_eq!(
            d[0].copies,
            vec![copy(16, 5 * 3600, 1, false), copy(20, 5 * 3600, 3600, true)]
        );
        assert!(duplicates_in("x", &frames[..5]).is_empty());
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
