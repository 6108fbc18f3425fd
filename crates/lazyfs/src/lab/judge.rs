//! The lab's verdicts, as pure functions of what it collected: footage lost
//! before a cut (from `tandem audit`'s JSON and the cut instant), what the
//! restarted NVR's repair did and whether its log shows an inconsistent store
//! (from its log text), which phase of the store's life a cut fell in (from
//! the filesystem's trace), and the summary over all cuts.
//!
//! Must never do I/O: the driver (`lab`) gathers, these judge.

use serde_json::Value;

use crate::{OpKind, OpRecord};

/// A small seeded PRNG (xorshift64*): the lab's choices are reproducible
/// from the seed in its report, with no dependency for it.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses RFC 3339 (`2026-11-23T21:40:00.123456Z`, or with an offset) to µs since the epoch.
pub fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        let mut digits: String = frac.chars().take(6).collect();
        while digits.len() < 6 {
            digits.push('0');
        }
        micros = digits.parse().ok()?;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' => 0,
        b'+' | b'-' => {
            let sign = if b[i] == b'-' { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// µs since the epoch as RFC 3339 in UTC, to the microsecond.
pub fn format_rfc3339_us(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Footage lost before a cut on one channel, from `tandem audit --data`'s
/// JSON: the cut instant minus the capture time of the last frame stored
/// before it — the `last_before` of the gap spanning the cut, or, when
/// nothing after the cut is indexed yet, the last frame of all — but never
/// counting from before `since_us`, when the NVR that was cut began
/// recording (what was missing before that is the previous restart's gap,
/// not this cut's loss). 0 when frames on both sides are stored with no gap
/// between them.
pub fn lost_before_cut_s(audit: &Value, cut_us: i64, since_us: i64) -> Result<f64, String> {
    let t = |v: &Value, k: &str| {
        v[k].as_str()
            .and_then(parse_rfc3339_us)
            .ok_or_else(|| format!("audit field {k} is not a time: {}", v[k]))
    };
    let mut worst = 0.0f64;
    let cams = audit["cameras"].as_array().cloned().unwrap_or_default();
    if cams.is_empty() {
        // Nothing stored in the window at all: all of this run was lost.
        return Ok((cut_us - since_us).max(0) as f64 / 1e6);
    }
    for cam in &cams {
        let mut last_before = None;
        for g in cam["gaps"].as_array().into_iter().flatten() {
            let (lb, fa) = (t(g, "last_before")?, t(g, "first_after")?);
            if lb <= cut_us && cut_us <= fa {
                last_before = Some(lb);
            }
        }
        let last_before = match last_before {
            Some(lb) => lb,
            None => {
                let (first, last) = (t(cam, "first_capture")?, t(cam, "last_capture")?);
                if first > cut_us {
                    since_us
                } else {
                    last.min(cut_us)
                }
            }
        };
        worst = worst.max((cut_us - last_before.max(since_us)).max(0) as f64 / 1e6);
    }
    Ok(worst)
}

/// Removes terminal colour escapes (`ESC [ … m`) that the NVR's log may carry.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `key=` in a tracing log line (fields are `key=value`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    Some(rest.split_whitespace().next().unwrap_or("").trim_matches('"'))
}

/// What a restarted NVR's start-up repair did, from its log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairSeen {
    /// Whether repair changed anything (finished, discarded or cut a segment).
    pub repaired: bool,
    pub summary: String,
    /// The repair's own lines, colour removed.
    pub lines: Vec<String>,
    /// Lines that mean the store and index disagreed after the cut.
    pub alarms: Vec<String>,
    /// Whether the check of finished segments finished (its "checked" line).
    pub check_done: bool,
}

/// Reads a restarted NVR's log for its repair and for signs of an
/// inconsistent store: a finished segment found missing or short at
/// start-up, a file moved aside because no row or header describes it, a panic.
pub fn repair_from_log(log: &str) -> RepairSeen {
    let mut r = RepairSeen::default();
    let (mut repaired, mut discarded, mut frames, mut truncated, mut garbage) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for raw in log.lines() {
        let line = strip_ansi(raw);
        let alarm = line.contains("damaged segment:")
            || line.contains("moved aside")
            || line.contains("panicked")
            || line.contains("skipped a damaged stretch")
            || line.contains("header was damaged");
        if alarm {
            r.alarms.push(line.clone());
        }
        if line.contains("checked finished segments") {
            r.check_done = true;
        }
        if line.contains("segment repaired") {
            repaired += 1;
            frames += field(&line, "frames").and_then(|v| v.parse().ok()).unwrap_or(0);
            truncated += field(&line, "truncated_bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        } else if line.contains("discarding segment") {
            discarded += 1;
        } else if line.contains("store repaired after an unclean stop") {
            garbage += line
                .split("garbage_collected: ")
                .nth(1)
                .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        } else if !alarm {
            continue;
        }
        r.lines.push(line);
    }
    r.repaired = repaired + discarded + garbage > 0;
    r.summary = if r.repaired {
        format!(
            "{repaired} segments finished from their files ({frames} frames kept, {truncated} torn bytes cut), \
             {discarded} without a complete frame discarded, {garbage} deletions finished"
        )
    } else {
        "nothing to repair".into()
    };
    r
}

/// Which phases of the store's life the last durability operations before
/// a cut belong to: `rollover` (a segment file created whose directory was
/// not fsynced yet, or a create among the last operations), `retention` (an
/// unlink of a segment not yet followed by an index commit, or one among the
/// last operations), `import` (staging or the import channel's files among
/// the last operations), `flush` (a segment fsync followed by the index
/// commit, the steady state). `tail` is how many operations count as "last".
/// Paths are relative to the mount point, so the store's are found by their
/// inner parts (`video/chN/ID.seg`, `import/`, `-wal`).
pub fn phases(trace: &[OpRecord], import_channel_dir: &str, tail: usize) -> Vec<&'static str> {
    let mut out = Vec::new();
    let from = trace.len().saturating_sub(tail);
    let last = &trace[from..];
    let is_seg = |r: &OpRecord| r.path.contains("video/") && r.path.ends_with(".seg");
    let is_wal = |r: &OpRecord| r.op == OpKind::Fsync && r.path.ends_with("-wal");
    let open_create = trace
        .iter()
        .enumerate()
        .rev()
        .find(|(_, r)| r.op == OpKind::Create && is_seg(r));
    let creating = open_create.is_some_and(|(i, c)| {
        let dir = c.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        !trace[i + 1..]
            .iter()
            .any(|r| r.op == OpKind::FsyncDir && r.path.trim_end_matches('/') == dir)
    });
    if creating
        || last
            .iter()
            .any(|r| r.op == OpKind::Create && is_seg(r) && !r.path.contains(import_channel_dir))
    {
        out.push("rollover");
    }
    let unlink = trace
        .iter()
        .enumerate()
        .rev()
        .find(|(_, r)| r.op == OpKind::Unlink && is_seg(r));
    let deleting = unlink.is_some_and(|(i, _)| !trace[i + 1..].iter().any(is_wal));
    if deleting || last.iter().any(|r| r.op == OpKind::Unlink && is_seg(r)) {
        out.push("retention");
    }
    if last
        .iter()
        .any(|r| r.path.contains("import/") || r.path.contains(import_channel_dir))
    {
        out.push("import");
    }
    if out.is_empty() && last.iter().any(|r| r.op == OpKind::Fsync && is_seg(r)) {
        out.push("flush");
    }
    out
}

/// Mean and maximum of the lost seconds over cuts.
pub fn mean_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let max = v.iter().cloned().fold(0.0, f64::max);
    (v.iter().sum::<f64>() / v.len() as f64, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_round_trips_and_reads_offsets() {
        for us in [0i64, 1_763_933_000_123_456, 951_782_400_000_001, 4_102_444_799_999_999] {
            assert_eq!(parse_rfc3339_us(&format_rfc3339_us(us)), Some(us), "{us}");
        }
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_rfc3339_us("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00.123456789Z"), Some(123_456));
        assert_eq!(parse_rfc3339_us("2024-02-29T00:00:00Z"), Some(1_709_164_800_000_000));
        assert_eq!(parse_rfc3339_us("yesterday"), None);
        assert_eq!(parse_rfc3339_us("2024-02-29T00:00:00"), None);
    }

    fn t(us: i64) -> String {
        format_rfc3339_us(us)
    }

    #[test]
    fn lost_is_measured_from_the_gap_spanning_the_cut() {
        let cut = 100_000_000;
        let lost = |a: &Value, since| lost_before_cut_s(a, cut, since).unwrap();
        let a = json!({"cameras": [{"camera_id": 1, "first_capture": t(50_000_000), "last_capture": t(120_000_000),
            "gaps": [{"last_before": t(60_000_000), "first_after": t(61_000_000)},
                     {"last_before": t(99_300_000), "first_after": t(102_000_000)}]}]});
        assert!((lost(&a, 0) - 0.7).abs() < 1e-9);
        // Nothing after the cut indexed yet: the last frame of all.
        let a = json!({"cameras": [{"camera_id": 1, "first_capture": t(50_000_000), "last_capture": t(99_000_000), "gaps": []}]});
        assert!((lost(&a, 0) - 1.0).abs() < 1e-9);
        // The run that was cut began after that frame: counted from its start.
        assert!((lost(&a, 99_600_000) - 0.4).abs() < 1e-9);
        // Stored on both sides with no gap: nothing lost.
        let a = json!({"cameras": [{"camera_id": 1, "first_capture": t(50_000_000), "last_capture": t(120_000_000), "gaps": []}]});
        assert_eq!(lost(&a, 0), 0.0);
        // The worst camera counts.
        let a = json!({"cameras": [
            {"camera_id": 1, "first_capture": t(0), "last_capture": t(99_900_000), "gaps": []},
            {"camera_id": 2, "first_capture": t(0), "last_capture": t(98_000_000), "gaps": []}]});
        assert!((lost(&a, 0) - 2.0).abs() < 1e-9);
        // Nothing stored before the cut, or nothing at all: the run's whole recording.
        let a = json!({"cameras": [{"camera_id": 1, "first_capture": t(101_000_000), "last_capture": t(120_000_000), "gaps": []}]});
        assert!((lost(&a, 99_500_000) - 0.5).abs() < 1e-9);
        assert!((lost(&json!({"cameras": [], "frames_found": 0}), 99_000_000) - 1.0).abs() < 1e-9);
        let bad = json!({"cameras": [{"camera_id": 1, "first_capture": "x", "last_capture": t(0), "gaps": []}]});
        assert!(lost_before_cut_s(&bad, cut, 0).unwrap_err().contains("first_capture"));
    }

    #[test]
    fn repair_and_alarms_are_read_from_the_log() {
        let log = "2026-11-23T21:00:00Z  INFO tandem::store::repair: segment repaired channel=1 segment=5 \
                   file=/m/video/ch1/5.seg frames=37 skipped_stretches=0 truncated_bytes=1234 tail=\"torn\"\n\
                   2026-11-23T21:00:00Z  WARN tandem::store::repair: discarding segment with no complete frame: x\n\
                   \u{1b}[2m2026\u{1b}[0m  INFO tandem::store::repair: store repaired after an unclean stop \
                   report=RepairReport { segments_repaired: 1, garbage_collected: 2, bytes_truncated: 1234 }\n\
                   2026-11-23T21:00:00Z  INFO tandem::store::repair: checked finished segments segments=9 damaged=0\n";
        let r = repair_from_log(log);
        assert!(r.repaired && r.check_done && r.alarms.is_empty(), "{r:?}");
        assert_eq!(
            r.summary,
            "1 segments finished from their files (37 frames kept, 1234 torn bytes cut), \
             1 without a complete frame discarded, 2 deletions finished"
        );
        assert_eq!(r.lines.len(), 3);
        let clean = repair_from_log("INFO serving\n");
        assert!(!clean.repaired && !clean.check_done && clean.summary == "nothing to repair");
        let bad = repair_from_log("WARN tandem::store::repair: damaged segment: file truncated to 10 of 20 bytes\n");
        assert_eq!(bad.alarms.len(), 1);
    }

    fn op(seq: u64, op: OpKind, path: &str) -> OpRecord {
        OpRecord {
            seq,
            op,
            path: path.into(),
        }
    }

    #[test]
    fn phases_come_from_the_last_operations() {
        use OpKind::*;
        let flush = vec![op(1, Fsync, "video/ch1/3.seg"), op(2, Fsync, "index.db-wal")];
        assert_eq!(phases(&flush, "video/ch9/", 4), vec!["flush"]);
        let mut opening = flush.clone();
        opening.push(op(3, Create, "video/ch1/4.seg"));
        opening.push(op(4, Fsync, "video/ch1/4.seg"));
        assert_eq!(phases(&opening, "video/ch9/", 1), vec!["rollover"]);
        opening.push(op(5, FsyncDir, "video/ch1"));
        assert_eq!(phases(&opening, "video/ch9/", 1), Vec::<&str>::new());
        let mut deleting = flush.clone();
        deleting.push(op(3, Unlink, "video/ch2/1.seg"));
        deleting.push(op(4, FsyncDir, "video/ch2"));
        assert_eq!(phases(&deleting, "video/ch9/", 1), vec!["retention"]);
        deleting.push(op(5, Fsync, "index.db-wal"));
        assert_eq!(phases(&deleting, "video/ch9/", 1), Vec::<&str>::new());
        assert_eq!(phases(&deleting, "video/ch9/", 3), vec!["retention"]);
        let import = vec![op(1, Fsync, "data/import/ab-3.part")];
        assert_eq!(phases(&import, "video/ch9/", 4), vec!["import"]);
        let merge = vec![op(1, Create, "video/ch9/7.seg"), op(2, FsyncDir, "video/ch9")];
        assert_eq!(phases(&merge, "video/ch9/", 4), vec!["import"]);
    }

    #[test]
    fn the_prng_is_seeded_and_ranges_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.range(200, 3000);
            assert_eq!(x, b.range(200, 3000));
            assert!((200..3000).contains(&x));
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
        assert_eq!(mean_max(&[1.0, 3.0]), (2.0, 3.0));
        assert_eq!(mean_max(&[]), (0.0, 0.0));
    }
}
