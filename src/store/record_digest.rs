//! A finished segment's record digest: the SHA-256 of its header and of
//! every record header, in order. Each record header carries its frame's
//! CRC-32 (`segment_file`), so checking a file means checking every
//! record's CRC-32 against its frame and the digest against the index row.
//!
//! Why not a SHA-256 of the whole file, as schema 6 stored: hashing every
//! byte of video cost a sixth of the recorder's CPU (`bench ingest`, perf:
//! `sha2::sha256::x86::digest_blocks` 16 % at 128 streams, as much as the
//! kernel's copy into the page cache). The per-record CRC-32 is already
//! computed for crash repair, and a changed byte of video changes its
//! record's CRC-32 (every burst up to 32 bits, and all but 2^-32 of the
//! rest); a changed, added, dropped or reordered record changes the digest.
//! Neither digest ever proved who wrote a file: anyone able to rewrite a
//! segment can rewrite its row as well. Evidence exports sign what they
//! export (`evidence`).
//!
//! Owns the definition only; must never read the index or decide what a
//! mismatch means (`integrity` judges).

use std::io::Read;

use sha2::{Digest, Sha256};

use super::segment_file::{record_intact, RECORD_HEADER_LEN};

/// The writer's side: fed as the file is written, so the digest never
/// needs the file read back.
#[derive(Clone)]
pub struct RecordDigest(Sha256);

impl RecordDigest {
    /// Starts with the segment file's header (`SegmentHeader::encode`).
    pub fn new(segment_header: &[u8]) -> RecordDigest {
        RecordDigest(Sha256::new_with_prefix(segment_header))
    }

    /// Adds one record's 16-byte header (which holds the frame's CRC-32).
    pub fn record(&mut self, header: &[u8; RECORD_HEADER_LEN as usize]) {
        self.0.update(header);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Reads a segment file's first `limit` bytes from `r`, checks every
/// record's CRC-32 against its frame, and returns the record digest.
/// `progress` is told the bytes of each record read and returns false to
/// stop (the error is then `"stopped"`). Fails naming the byte where the
/// file stops being what was written.
pub fn check(r: &mut impl Read, limit: u64, progress: &mut dyn FnMut(u64) -> bool) -> Result<[u8; 32], String> {
    let mut head = [0u8; 12];
    r.read_exact(&mut head)
        .map_err(|e| format!("cannot read the segment header: {e}"))?;
    if &head[..8] != super::segment_file::MAGIC {
        return Err("not a Tandem segment file (bad magic)".into());
    }
    let body_len = u64::from(u32::from_be_bytes([head[8], head[9], head[10], head[11]])) + 4;
    if 12 + body_len > limit {
        return Err(format!(
            "its header ({} bytes) is longer than the {limit} bytes written",
            12 + body_len
        ));
    }
    let mut body = vec![0u8; body_len as usize];
    r.read_exact(&mut body)
        .map_err(|e| format!("cannot read the segment header: {e}"))?;
    let mut digest = Sha256::new_with_prefix(head);
    digest.update(&body);
    let mut pos = 12 + body_len;
    let mut data = Vec::new();
    while pos < limit {
        let mut rh = [0u8; RECORD_HEADER_LEN as usize];
        if pos + RECORD_HEADER_LEN > limit {
            return Err(format!("a partial record header at byte {pos}"));
        }
        r.read_exact(&mut rh)
            .map_err(|e| format!("read failed at byte {pos}: {e}"))?;
        let size = u64::from(u32::from_be_bytes([rh[0], rh[1], rh[2], rh[3]]));
        let end = pos + RECORD_HEADER_LEN + size;
        if end > limit {
            return Err(format!(
                "the record at byte {pos} ({size} bytes) runs past the {limit} bytes written"
            ));
        }
        data.resize(size as usize, 0);
        r.read_exact(&mut data)
            .map_err(|e| format!("read failed at byte {pos}: {e}"))?;
        if !record_intact(&rh, &data) {
            return Err(format!("the frame at byte {pos} fails its CRC-32"));
        }
        digest.update(rh);
        if !progress(end - pos) {
            return Err("stopped".into());
        }
        pos = end;
    }
    Ok(digest.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment_file::{record_header, SegmentHeader};
    use crate::time::Time90k;

    /// A segment file of `n` frames and the digest the writer would store.
    fn file(n: u32) -> (Vec<u8>, [u8; 32]) {
        let header = SegmentHeader {
            channel: 3,
            segment_id: 9,
            start: Time90k(0),
            sample_entry: vec![7; 40],
        }
        .encode();
        let mut d = RecordDigest::new(&header);
        let mut out = header;
        for i in 0..n {
            let data: Vec<u8> = (0..(50 + i * 13)).map(|b| (b * 7 + i) as u8).collect();
            let h = record_header(i * 3600, i % 25 == 0, &data);
            d.record(&h);
            out.extend_from_slice(&h);
            out.extend_from_slice(&data);
        }
        (out, d.finish())
    }

    fn checked(bytes: &[u8]) -> Result<[u8; 32], String> {
        check(&mut &bytes[..], bytes.len() as u64, &mut |_| true)
    }

    #[test]
    fn the_check_finds_the_digest_the_writer_made() {
        let (f, d) = file(30);
        assert_eq!(checked(&f), Ok(d));
        // A prefix that ends on a record boundary is a segment of its own.
        let (g, _) = file(0);
        assert_ne!(checked(&g).unwrap(), d);
    }

    #[test]
    fn any_changed_byte_is_found() {
        let (f, d) = file(6);
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x10;
            let r = checked(&g);
            assert!(r.as_ref().map_or(true, |h| *h != d), "byte {i}: {r:?}");
        }
    }

    #[test]
    fn a_dropped_record_changes_the_digest() {
        let (f, d) = file(4);
        let header_len = file(0).0.len();
        let first_len = 16 + 50;
        let mut g = f[..header_len].to_vec();
        g.extend_from_slice(&f[header_len + first_len..]);
        assert_ne!(checked(&g).unwrap(), d);
    }

    #[test]
    fn truncation_and_huge_sizes_are_named_not_read() {
        let (f, _) = file(3);
        let e = check(&mut &f[..], f.len() as u64 + 100, &mut |_| true).unwrap_err();
        assert!(e.contains("read failed") || e.contains("runs past"), "{e}");
        let e = check(&mut &f[..f.len() - 5], f.len() as u64 - 5, &mut |_| true).unwrap_err();
        assert!(e.contains("runs past"), "{e}");
        let mut g = f.clone();
        let first = file(0).0.len();
        g[first..first + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = checked(&g).unwrap_err();
        assert!(e.contains("runs past"), "{e}");
    }

    #[test]
    fn progress_can_stop_the_check() {
        let (f, _) = file(10);
        let mut seen = 0;
        let r = check(&mut &f[..], f.len() as u64, &mut |n| {
            seen += n;
            seen < 200
        });
        assert_eq!(r, Err("stopped".into()));
    }
}
