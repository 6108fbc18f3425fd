//! Parameter sets that flap: a camera alternating between parameter sets
//! (SPS/PPS) would end a segment at every change, one file per frame. Once a
//! set seen recently comes back, ingest records the run with in-band
//! parameter sets instead: one `avc3`/`hev1` sample entry for the run, and
//! the current SPS/PPS (VPS) carried in front of every key frame and of every
//! frame that changes them, so every frame still decodes.
//!
//! Owns the flapping decision (pure, `now` injected) and the byte-level
//! helpers. Must never drop or reorder a frame's own NAL units, and never
//! hold more than a few hashes of past sets.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use crate::store::SampleEntry;
use crate::time::Time90k;

/// A set that comes back within this long of being replaced means flapping.
pub const FLAP_WINDOW: i64 = 5 * 60 * 90_000;
/// In-band recording ends after the parameters stay unchanged this long.
pub const QUIET: i64 = 2 * 60 * 90_000;
/// Past sets remembered.
const RECENT: usize = 8;

fn hash(data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// One session's parameter-set history.
#[derive(Debug, Default)]
pub struct ParamWatch {
    /// Hashes of the sample entries seen, with when each was last current.
    recent: VecDeque<(u64, Time90k)>,
    current: Option<u64>,
    /// When the parameters last changed.
    changed: Option<Time90k>,
    inband: bool,
}

impl ParamWatch {
    /// The camera's parameters are now those of sample entry `entry`.
    /// Returns true when this change starts in-band recording.
    pub fn on_parameters(&mut self, entry: &[u8], now: Time90k) -> bool {
        let h = hash(entry);
        if self.current == Some(h) {
            return false;
        }
        if let Some(old) = self.current.replace(h) {
            self.recent.retain(|(x, _)| *x != old);
            self.recent.push_back((old, now));
            if self.recent.len() > RECENT {
                self.recent.pop_front();
            }
        }
        let first = self.changed.is_none();
        self.changed = Some(now);
        if first {
            return false;
        }
        let back = self.recent.iter().any(|&(x, t)| x == h && now - t <= FLAP_WINDOW);
        if back && !self.inband {
            self.inband = true;
            return true;
        }
        false
    }

    pub fn inband(&self) -> bool {
        self.inband
    }

    /// At a key frame: whether in-band recording may end because the
    /// parameters have been stable for `QUIET`.
    pub fn leave_inband(&mut self, now: Time90k) -> bool {
        if self.inband && self.changed.is_some_and(|c| now - c >= QUIET) {
            self.inband = false;
            return true;
        }
        false
    }
}

/// The in-band variant of an out-of-band sample entry: the same box, typed
/// `avc3` (H.264) or `hev1` (H.265), which tells readers that parameter sets
/// in the samples take precedence over those in the configuration record.
pub fn inband_entry(e: &SampleEntry) -> Option<SampleEntry> {
    let mut data = e.data.clone();
    let t = data.get_mut(4..8)?;
    match &*t {
        b"avc1" | b"avc3" => t.copy_from_slice(b"avc3"),
        b"hvc1" | b"hev1" => t.copy_from_slice(b"hev1"),
        _ => return None,
    }
    SampleEntry::parse(data)
}

/// The parameter-set NAL units of a sample entry (`avcC` or `hvcC`).
pub fn parameter_sets(e: &SampleEntry) -> Option<Vec<Vec<u8>>> {
    if e.codec == "h264" {
        return Some(
            crate::motion::avcc_parameter_sets(&e.data)?
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
        );
    }
    let at = e.data.windows(4).position(|w| w == b"hvcC")? + 4;
    let c = e.data.get(at..)?;
    // HEVCDecoderConfigurationRecord: 22 bytes of profile and format, then
    // arrays of NAL units by type.
    let arrays = *c.get(22)?;
    let mut p = 23;
    let mut out = Vec::new();
    for _ in 0..arrays {
        let n = u16::from_be_bytes([*c.get(p + 1)?, *c.get(p + 2)?]);
        p += 3;
        for _ in 0..n {
            let len = usize::from(u16::from_be_bytes([*c.get(p)?, *c.get(p + 1)?]));
            out.push(c.get(p + 2..p + 2 + len)?.to_vec());
            p += 2 + len;
        }
    }
    Some(out)
}

/// `frame` (4-byte length-prefixed NAL units) with `sets` in front.
pub fn with_parameter_sets(sets: &[Vec<u8>], frame: Vec<u8>) -> Vec<u8> {
    let extra: usize = sets.iter().map(|s| s.len() + 4).sum();
    let mut out = Vec::with_capacity(extra + frame.len());
    for s in sets {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&frame);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time90k = Time90k(1_000_000 * 90_000);
    const S: i64 = 90_000;

    #[test]
    fn a_set_coming_back_starts_inband_recording() {
        let mut w = ParamWatch::default();
        assert!(!w.on_parameters(b"A", T0));
        assert!(!w.on_parameters(b"A", T0 + S));
        // A camera changing its resolution once is not flapping.
        assert!(!w.on_parameters(b"B", T0 + 2 * S));
        assert!(!w.inband());
        // Coming back to A is.
        assert!(w.on_parameters(b"A", T0 + 3 * S));
        assert!(w.inband());
        // Further alternation stays in-band without saying so again.
        assert!(!w.on_parameters(b"B", T0 + 4 * S));
        assert!(!w.on_parameters(b"A", T0 + 5 * S));
        assert!(w.inband());
    }

    #[test]
    fn a_set_coming_back_after_the_window_is_a_change_not_flapping() {
        let mut w = ParamWatch::default();
        w.on_parameters(b"A", T0);
        w.on_parameters(b"B", T0 + S);
        assert!(!w.on_parameters(b"A", T0 + S + FLAP_WINDOW + 1));
        assert!(!w.inband());
    }

    #[test]
    fn inband_recording_ends_after_quiet() {
        let mut w = ParamWatch::default();
        w.on_parameters(b"A", T0);
        w.on_parameters(b"B", T0 + S);
        w.on_parameters(b"A", T0 + 2 * S);
        assert!(!w.leave_inband(T0 + (2 * S + QUIET - 1)));
        assert!(w.leave_inband(T0 + 2 * S + QUIET));
        assert!(!w.inband());
        assert!(!w.leave_inband(T0 + 3 * S + QUIET));
    }

    #[test]
    fn memory_is_bounded() {
        let mut w = ParamWatch::default();
        for i in 0..1000u32 {
            w.on_parameters(&i.to_be_bytes(), T0 + i64::from(i));
        }
        assert!(w.recent.len() <= RECENT);
        assert!(!w.inband());
    }

    #[test]
    fn inband_entry_keeps_the_configuration_and_carries_sets_in_frames() {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xaa];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let e = crate::motion::avc1_entry(&sps, &pps, 640, 360).unwrap();
        let ib = inband_entry(&e).unwrap();
        assert_eq!(&ib.data[4..8], b"avc3");
        assert_eq!((ib.codec, ib.width, ib.height), ("h264", 640, 360));
        assert_eq!(ib.data[8..], e.data[8..]);
        let sets = parameter_sets(&ib).unwrap();
        assert_eq!(sets, vec![sps.to_vec(), pps.to_vec()]);
        let f = with_parameter_sets(&sets, vec![0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(
            f,
            [&[0, 0, 0, 5][..], &sps, &[0, 0, 0, 4], &pps, &[0, 0, 0, 2, 0x65, 0x88]].concat()
        );
    }

    #[test]
    fn hvcc_parameter_sets_are_read() {
        let mut data = vec![0u8; 86];
        data[4..8].copy_from_slice(b"hvc1");
        let mut hvcc = vec![1u8; 22];
        hvcc.push(2); // two arrays
        hvcc.extend_from_slice(&[0x20, 0, 1, 0, 2, 0x40, 0x01]); // VPS
        hvcc.extend_from_slice(&[0x21, 0, 1, 0, 3, 0x42, 0x01, 0x07]); // SPS
        data.extend_from_slice(&(hvcc.len() as u32 + 8).to_be_bytes());
        data.extend_from_slice(b"hvcC");
        data.extend_from_slice(&hvcc);
        let e = SampleEntry::parse(data).unwrap();
        assert_eq!(&inband_entry(&e).unwrap().data[4..8], b"hev1");
        assert_eq!(
            parameter_sets(&e).unwrap(),
            vec![vec![0x40, 0x01], vec![0x42, 0x01, 0x07]]
        );
        // A truncated record is refused, not misread.
        let mut short = e.data.clone();
        short.truncate(short.len() - 2);
        assert!(parameter_sets(&SampleEntry::parse(short).unwrap()).is_none());
    }
}
