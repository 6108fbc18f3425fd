//! The per-frame index of a segment, stored as one compact blob per SQLite row.
//!
//! Owns the blob's encoding. Each frame costs two varints: the change in
//! duration (zig-zag, shifted left with the key-frame flag in bit 0) and the
//! change in size against the previous frame of the same kind (key or not).
//! Steady streams therefore cost 2–4 bytes per frame (Moonfire NVR's
//! encoding does the same). A year of 25 fps video is 790 M frames: about
//! 2.3 GiB of index per channel with the rows (`tandem bench index`: 4.8 kB
//! per 1-minute segment of a 4 Mbit/s camera), so a frame index is only ever
//! read for the segments a request needs.
//! Must never panic on a corrupt blob: decoding returns an error instead.

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEntry {
    /// 90 kHz ticks until the next frame.
    pub duration: u32,
    /// Bytes of frame data (length-prefixed NAL units), excluding the record header.
    pub size: u32,
    pub key: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("frame index truncated at byte {0}")]
    Truncated(usize),
    #[error("frame index has an out-of-range value at byte {0}")]
    OutOfRange(usize),
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Result<u64, IndexError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = data.get(*pos) else {
            return Err(IndexError::Truncated(*pos));
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(IndexError::OutOfRange(*pos))
}

/// Appends frames to a blob incrementally (the writer adds one per frame).
#[derive(Clone, Debug, Default)]
pub struct IndexEncoder {
    blob: Vec<u8>,
    prev_duration: i64,
    prev_size: [i64; 2],
}

impl IndexEncoder {
    pub fn push(&mut self, f: FrameEntry) {
        let d = i64::from(f.duration);
        put_varint((zigzag(d - self.prev_duration) << 1) | u64::from(f.key), &mut self.blob);
        let k = usize::from(f.key);
        put_varint(zigzag(i64::from(f.size) - self.prev_size[k]), &mut self.blob);
        self.prev_duration = d;
        self.prev_size[k] = i64::from(f.size);
    }
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// Where the encoder stands: `rewind` returns it there, as if the
    /// frames pushed since had never been (a write that failed).
    pub fn mark(&self) -> IndexMark {
        IndexMark {
            len: self.blob.len(),
            prev_duration: self.prev_duration,
            prev_size: self.prev_size,
        }
    }

    pub fn rewind(&mut self, m: IndexMark) {
        self.blob.truncate(m.len);
        self.prev_duration = m.prev_duration;
        self.prev_size = m.prev_size;
    }
}

/// A point of an `IndexEncoder` to rewind to (`IndexEncoder::mark`).
#[derive(Clone, Copy, Debug)]
pub struct IndexMark {
    len: usize,
    prev_duration: i64,
    prev_size: [i64; 2],
}

pub fn encode(frames: &[FrameEntry]) -> Vec<u8> {
    let mut e = IndexEncoder::default();
    for &f in frames {
        e.push(f);
    }
    e.blob
}

pub fn decode(blob: &[u8]) -> Result<Vec<FrameEntry>, IndexError> {
    let mut out = Vec::with_capacity(blob.len() / 3);
    let mut pos = 0;
    let mut prev_duration = 0i64;
    let mut prev_size = [0i64; 2];
    while pos < blob.len() {
        let start = pos;
        let a = get_varint(blob, &mut pos)?;
        let key = a & 1 == 1;
        let duration = prev_duration + unzigzag(a >> 1);
        let k = usize::from(key);
        let size = prev_size[k] + unzigzag(get_varint(blob, &mut pos)?);
        let (Ok(duration32), Ok(size32)) = (u32::try_from(duration), u32::try_from(size)) else {
            return Err(IndexError::OutOfRange(start));
        };
        prev_duration = duration;
        prev_size[k] = size;
        out.push(FrameEntry {
            duration: duration32,
            size: size32,
            key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewinding_to_a_mark_forgets_exactly_the_frames_after_it() {
        let f = |i: u32| FrameEntry {
            duration: 3000 + i % 3,
            size: 1000 + 37 * i,
            key: i % 5 == 0,
        };
        let mut e = IndexEncoder::default();
        (0..7).for_each(|i| e.push(f(i)));
        let m = e.mark();
        (7..12).for_each(|i| e.push(f(100 + i)));
        e.rewind(m);
        (7..20).for_each(|i| e.push(f(i)));
        assert_eq!(e.blob(), encode(&(0..20).map(f).collect::<Vec<_>>()));
    }

    #[test]
    fn round_trip_and_compactness() {
        let mut frames = Vec::new();
        for i in 0..1500u32 {
            let key = i % 25 == 0;
            let size = if key {
                90_000 + (i * 7) % 3000
            } else {
                15_000 + (i * 13) % 900
            };
            frames.push(FrameEntry {
                duration: 3600 + (i % 3),
                size,
                key,
            });
        }
        let blob = encode(&frames);
        assert_eq!(decode(&blob).unwrap(), frames);
        // Sizes vary by up to a few thousand bytes here, so 2-3 bytes of size delta.
        assert!(
            blob.len() < frames.len() * 5,
            "{} bytes for {} frames",
            blob.len(),
            frames.len()
        );
    }

    #[test]
    fn extremes_round_trip() {
        let frames = vec![
            FrameEntry {
                duration: 0,
                size: 0,
                key: true,
            },
            FrameEntry {
                duration: u32::MAX,
                size: u32::MAX,
                key: false,
            },
            FrameEntry {
                duration: 1,
                size: 1,
                key: false,
            },
            FrameEntry {
                duration: u32::MAX,
                size: 0,
                key: true,
            },
        ];
        assert_eq!(decode(&encode(&frames)).unwrap(), frames);
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let blob = encode(&[FrameEntry {
            duration: 3000,
            size: 5000,
            key: true,
        }]);
        assert!(matches!(decode(&blob[..blob.len() - 1]), Err(IndexError::Truncated(_))));
        assert!(decode(&[0xff; 11]).is_err());
        // A negative size.
        let mut bad = Vec::new();
        put_varint(0, &mut bad);
        put_varint(zigzag(-5), &mut bad);
        assert!(matches!(decode(&bad), Err(IndexError::OutOfRange(0))));
        // Arbitrary bytes never panic.
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..64)
                .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 17) % 256) as u8)
                .collect();
            let _ = decode(&junk);
        }
    }
}
