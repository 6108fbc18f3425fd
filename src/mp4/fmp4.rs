//! Fragmented MP4 for live view: the init segment (`ftyp` + `moov` with
//! `mvex`, no samples) that a Media Source Extensions buffer or an HLS player
//! takes first, and media fragments (`prft` + `moof` + `mdat`) of one frame
//! (WebSocket live) or one GOP (HLS segment), and the RFC 6381 codec string a
//! browser needs to open a buffer for a sample entry.
//!
//! The camera's bytes are passed through: a fragment's `mdat` is the stored
//! frame as it is (length-prefixed NAL units, as in the clips).
//!
//! Pure: bytes in, bytes out. Must never re-encode, reorder or drop a frame it
//! is given.

use super::moov::{self, TrackHeader};
use super::{write_box, write_full_box};

/// sample_depends_on = 2 (an I frame).
const KEY_FLAGS: u32 = 0x0200_0000;
/// sample_depends_on = 1, sample_is_non_sync_sample.
const NON_KEY_FLAGS: u32 = 0x0101_0000;
/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The init segment for a stream whose frames use `entry` (a stored
/// `avc1`/`hvc1` sample entry box).
pub fn init_segment(entry: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len() + 800);
    moov::write_ftyp(&mut out, b"iso6", &[b"iso6", b"iso5", b"mp41"]);
    let header = TrackHeader {
        width,
        height,
        duration: 0,
        media_duration: 0,
        edit: None,
        fragmented: true,
    };
    moov::write_moov(&mut out, &header, |o| {
        moov::write_stsd(o, std::iter::once(entry));
        for table in [b"stts", b"stsc", b"stco"] {
            write_full_box(o, table, 0, 0, |o| o.extend_from_slice(&0u32.to_be_bytes()));
        }
        write_full_box(o, b"stsz", 0, 0, |o| o.extend_from_slice(&[0; 8]));
    });
    out
}

/// One frame of a fragment.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// 90 kHz ticks until the next frame.
    pub duration: u32,
    pub key: bool,
    pub data: &'a [u8],
}

/// A media fragment of `samples`, the first decoded at `decode_time` (90 kHz,
/// the connection's own media time). With `capture_unix_micros`, a `prft`
/// box says when the first sample was captured, so a client can measure its
/// latency and show wall-clock time.
pub fn fragment(sequence: u32, decode_time: u64, samples: &[Sample<'_>], capture_unix_micros: Option<i64>) -> Vec<u8> {
    let media: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = Vec::with_capacity(media + 128 + samples.len() * 12);
    if let Some(us) = capture_unix_micros {
        write_full_box(&mut out, b"prft", 1, 0, |o| {
            o.extend_from_slice(&1u32.to_be_bytes()); // reference track
            o.extend_from_slice(&ntp_timestamp(us).to_be_bytes());
            o.extend_from_slice(&decode_time.to_be_bytes());
        });
    }
    let moof_start = out.len();
    let mut data_offset_at = 0;
    write_box(&mut out, b"moof", |o| {
        write_full_box(o, b"mfhd", 0, 0, |o| o.extend_from_slice(&sequence.to_be_bytes()));
        write_box(o, b"traf", |o| {
            // default-base-is-moof: data offsets count from this moof.
            write_full_box(o, b"tfhd", 0, 0x02_0000, |o| o.extend_from_slice(&1u32.to_be_bytes()));
            write_full_box(o, b"tfdt", 1, 0, |o| o.extend_from_slice(&decode_time.to_be_bytes()));
            // data offset, then per sample: duration, size, flags.
            write_full_box(o, b"trun", 0, 0x0701, |o| {
                o.extend_from_slice(&(samples.len() as u32).to_be_bytes());
                data_offset_at = o.len();
                o.extend_from_slice(&[0; 4]);
                for s in samples {
                    o.extend_from_slice(&s.duration.to_be_bytes());
                    o.extend_from_slice(&(s.data.len() as u32).to_be_bytes());
                    let flags = if s.key { KEY_FLAGS } else { NON_KEY_FLAGS };
                    o.extend_from_slice(&flags.to_be_bytes());
                }
            });
        });
    });
    let moof_len = out.len() - moof_start;
    let offset = (moof_len + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&((media + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for s in samples {
        out.extend_from_slice(s.data);
    }
    out
}

/// Microseconds since 1970 as a 64-bit NTP timestamp (seconds since 1900 and
/// a binary fraction).
pub fn ntp_timestamp(unix_micros: i64) -> u64 {
    let secs = unix_micros.div_euclid(1_000_000) as u64 + NTP_UNIX_OFFSET;
    let frac = ((unix_micros.rem_euclid(1_000_000) as u64) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// The RFC 6381 `codecs` value of a stored `avc1`/`hvc1` sample entry, as a
/// browser's `MediaSource.isTypeSupported` and `addSourceBuffer` want it;
/// None when the entry has no parsable configuration box.
pub fn rfc6381_codec(entry: &[u8]) -> Option<String> {
    let kind = entry.get(4..8)?;
    // VisualSampleEntry: 8 header + 78 bytes of fields, then child boxes.
    let mut pos = 86;
    while pos + 8 <= entry.len() {
        let size = u32::from_be_bytes(entry[pos..pos + 4].try_into().ok()?) as usize;
        if size < 8 || pos + size > entry.len() {
            return None;
        }
        let body = &entry[pos + 8..pos + size];
        match &entry[pos + 4..pos + 8] {
            b"avcC" if body.len() >= 4 => {
                let prefix = if kind == b"avc3" { "avc3" } else { "avc1" };
                return Some(format!("{prefix}.{:02x}{:02x}{:02x}", body[1], body[2], body[3]));
            }
            b"hvcC" if body.len() >= 13 => return Some(hevc_codec(kind, body)),
            _ => {}
        }
        pos += size;
    }
    None
}

/// ISO/IEC 14496-15 annex E: `hvc1.<space><profile>.<compat>.<tier><level>.<constraints>`.
fn hevc_codec(kind: &[u8], c: &[u8]) -> String {
    let space = ["", "A", "B", "C"][usize::from(c[1] >> 6)];
    let tier = if c[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = c[1] & 0x1f;
    // The compatibility flags are written in reverse bit order.
    let compat = u32::from_be_bytes([c[2], c[3], c[4], c[5]]).reverse_bits();
    let level = c[12];
    let mut constraints: Vec<u8> = c[6..12].to_vec();
    while constraints.last() == Some(&0) {
        constraints.pop();
    }
    let prefix = if kind == b"hev1" { "hev1" } else { "hvc1" };
    let mut s = format!("{prefix}.{space}{profile}.{compat:x}.{tier}{level}");
    for b in constraints {
        s.push_str(&format!(".{b:x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&b[4..8]).into_owned(), b[8..size].to_vec()));
            b = &b[size..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    fn avc1_entry() -> Vec<u8> {
        let mut e = vec![0u8; 86];
        e[4..8].copy_from_slice(b"avc1");
        e[32..34].copy_from_slice(&1920u16.to_be_bytes());
        e[34..36].copy_from_slice(&1080u16.to_be_bytes());
        let avcc = [1u8, 0x64, 0x00, 0x28, 0xff, 0xe0];
        e.extend_from_slice(&((avcc.len() + 8) as u32).to_be_bytes());
        e.extend_from_slice(b"avcC");
        e.extend_from_slice(&avcc);
        let n = e.len() as u32;
        e[..4].copy_from_slice(&n.to_be_bytes());
        e
    }

    #[test]
    fn init_segment_is_ftyp_and_moov_with_mvex_and_the_entry() {
        let e = avc1_entry();
        let init = init_segment(&e, 1920, 1080);
        let top = boxes(&init);
        assert_eq!(top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), ["ftyp", "moov"]);
        let moov = boxes(&top[1].1);
        assert_eq!(
            moov.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["mvhd", "trak", "mvex"]
        );
        assert!(
            init.windows(e.len()).any(|w| w == e.as_slice()),
            "sample entry carried as is"
        );
        // The reader used for clips takes it too: one track, no samples.
        let t = crate::mp4::reader::read_track(&init).unwrap();
        assert_eq!((t.width, t.samples.len()), (1920, 0));
    }

    #[test]
    fn fragment_offsets_point_at_each_frame() {
        let a = vec![1u8; 100];
        let b = vec![2u8; 50];
        let samples = [
            Sample {
                duration: 3600,
                key: true,
                data: &a,
            },
            Sample {
                duration: 3000,
                key: false,
                data: &b,
            },
        ];
        let f = fragment(7, 90_000 * 5, &samples, Some(1_700_000_000_250_000));
        let top = boxes(&f);
        assert_eq!(
            top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["prft", "moof", "mdat"]
        );
        let prft = &top[0].1;
        let ntp = u64::from_be_bytes(prft[8..16].try_into().unwrap());
        assert_eq!(ntp >> 32, 1_700_000_000 + NTP_UNIX_OFFSET);
        assert_eq!(((ntp & 0xffff_ffff) * 1000) >> 32, 250, "fraction is a quarter second");
        assert_eq!(u64::from_be_bytes(prft[16..24].try_into().unwrap()), 450_000);
        let traf = boxes(&boxes(&top[1].1)[1].1);
        let tfdt = &traf[1].1;
        assert_eq!(u64::from_be_bytes(tfdt[4..12].try_into().unwrap()), 450_000);
        let trun = &traf[2].1;
        assert_eq!(u32::from_be_bytes(trun[4..8].try_into().unwrap()), 2);
        let off = u32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
        let moof_at = top[0].1.len() + 8;
        assert_eq!(&f[moof_at + off..moof_at + off + 100], a.as_slice());
        assert_eq!(&f[moof_at + off + 100..], b.as_slice());
        let flags = |i: usize| u32::from_be_bytes(trun[12 + i * 12 + 8..12 + i * 12 + 12].try_into().unwrap());
        assert_eq!((flags(0), flags(1)), (KEY_FLAGS, NON_KEY_FLAGS));
        assert!(
            !fragment(1, 0, &samples, None).starts_with(&f[..8]),
            "no prft without a capture time"
        );
    }

    #[test]
    fn codec_strings() {
        assert_eq!(rfc6381_codec(&avc1_entry()).as_deref(), Some("avc1.640028"));
        // Main profile, level 4.0 (120), tier L, constraint 0x90.
        let mut e = vec![0u8; 86];
        e[4..8].copy_from_slice(b"hvc1");
        let mut c = vec![1u8, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120];
        c.extend_from_slice(&[0; 10]);
        e.extend_from_slice(&((c.len() + 8) as u32).to_be_bytes());
        e.extend_from_slice(b"hvcC");
        e.extend_from_slice(&c);
        assert_eq!(rfc6381_codec(&e).as_deref(), Some("hvc1.1.6.L120.90"));
        assert_eq!(rfc6381_codec(&e[..90]), None, "a truncated child box is refused");
        assert_eq!(rfc6381_codec(b"xx"), None);
    }
}
