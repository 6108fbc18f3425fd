//! The on-disk form of a segment: a self-describing file of frame records.
//!
//! ```text
//! file   := header record*
//! header := "TNDMSEG1" u32:body_len body u32:crc32(body)
//! body   := u32:version=1 u32:channel i64:segment_id i64:start_90k u32:entry_len sample_entry
//! record := u32:size u32:pts_90k u32:flags u32:crc32(size,pts,flags,data) data[size]
//! ```
//! `pts_90k` is relative to the segment's start and strictly increasing;
//! `flags` bit 0 marks a key frame; `data` is the frame as length-prefixed NAL
//! units; `sample_entry` is the mp4 `avc1`/`hvc1` box that decodes it.
//!
//! Invariant: every record that verifies is a complete frame, wherever it
//! lies. Because the header carries everything the index row holds and each
//! record its own time and checksum, a crash at any instant — or a damaged
//! stretch in the middle — leaves a file from which `scan` rebuilds the row,
//! stepping over records that do not verify (`Skip`) and keeping every one
//! after them. That is what startup repair does. This module owns the format; it must never decide
//! policy (what to keep or delete) or touch the database.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use thiserror::Error;

use crate::store::index::FrameEntry;
use crate::time::Time90k;

pub const MAGIC: &[u8; 8] = b"TNDMSEG1";
pub const RECORD_HEADER_LEN: u64 = 16;
const VERSION: u32 = 1;
/// No real frame comes near this; a larger size means a corrupt record.
const MAX_FRAME: u32 = 64 << 20;
const MAX_ENTRY: u32 = 1 << 20;

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("not a Tandem segment file (bad magic)")]
    BadMagic,
    #[error("segment header is damaged: {0}")]
    BadHeader(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub channel: u32,
    pub segment_id: i64,
    pub start: Time90k,
    pub sample_entry: Vec<u8>,
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(28 + self.sample_entry.len());
        body.extend_from_slice(&VERSION.to_be_bytes());
        body.extend_from_slice(&self.channel.to_be_bytes());
        body.extend_from_slice(&self.segment_id.to_be_bytes());
        body.extend_from_slice(&self.start.0.to_be_bytes());
        body.extend_from_slice(&(self.sample_entry.len() as u32).to_be_bytes());
        body.extend_from_slice(&self.sample_entry);
        let mut out = Vec::with_capacity(body.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out
    }

    /// Reads the header; returns it and its length in bytes.
    pub fn read(r: &mut impl Read) -> Result<(SegmentHeader, u64), FormatError> {
        let mut head = [0u8; 12];
        r.read_exact(&mut head).map_err(|_| FormatError::BadMagic)?;
        if &head[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let len = u32::from_be_bytes(head[8..12].try_into().unwrap_or_default());
        if !(28..=MAX_ENTRY + 28).contains(&len) {
            return Err(FormatError::BadHeader("length out of range"));
        }
        let mut body = vec![0u8; len as usize + 4];
        r.read_exact(&mut body)
            .map_err(|_| FormatError::BadHeader("truncated"))?;
        let (body, crc) = body.split_at(len as usize);
        if crc32fast::hash(body).to_be_bytes() != crc {
            return Err(FormatError::BadHeader("checksum mismatch"));
        }
        let u32_at = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap_or_default());
        let i64_at = |i: usize| i64::from_be_bytes(body[i..i + 8].try_into().unwrap_or_default());
        if u32_at(0) != VERSION {
            return Err(FormatError::BadHeader("unknown version"));
        }
        let entry_len = u32_at(24) as usize;
        if 28 + entry_len != body.len() {
            return Err(FormatError::BadHeader("sample entry length mismatch"));
        }
        Ok((
            SegmentHeader {
                channel: u32_at(4),
                segment_id: i64_at(8),
                start: Time90k(i64_at(16)),
                sample_entry: body[28..].to_vec(),
            },
            12 + len as u64 + 4,
        ))
    }
}

fn record_crc(size: u32, pts: u32, flags: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&size.to_be_bytes());
    h.update(&pts.to_be_bytes());
    h.update(&flags.to_be_bytes());
    h.update(data);
    h.finalize()
}

pub fn record_header(pts: u32, key: bool, data: &[u8]) -> [u8; RECORD_HEADER_LEN as usize] {
    let size = data.len() as u32;
    let flags = u32::from(key);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&size.to_be_bytes());
    h[4..8].copy_from_slice(&pts.to_be_bytes());
    h[8..12].copy_from_slice(&flags.to_be_bytes());
    h[12..16].copy_from_slice(&record_crc(size, pts, flags, data).to_be_bytes());
    h
}

/// True if `head` (a 16-byte record header) describes `data` and its
/// checksum verifies: the frame read back is the frame written.
pub fn record_intact(head: &[u8], data: &[u8]) -> bool {
    let word = |i: usize| {
        head.get(i..i + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()))
    };
    match (word(0), word(4), word(8), word(12)) {
        (Some(size), Some(pts), Some(flags), Some(crc)) => {
            size as usize == data.len() && record_crc(size, pts, flags, data) == crc
        }
        _ => false,
    }
}

/// One frame found in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedFrame {
    /// Byte offset of the frame data (after its record header).
    pub offset: u64,
    pub size: u32,
    pub pts: u32,
    pub key: bool,
}

/// A damaged stretch between two intact records that a verifying scan stepped
/// over: `bytes` bytes at `offset`, after the first `frames_before` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip {
    pub offset: u64,
    pub bytes: u64,
    pub frames_before: usize,
    /// What was wrong with the record at `offset`.
    pub why: &'static str,
}

/// A skipped stretch as the index keeps it: after `frames_before` frames, the
/// next `bytes` bytes hold no frame and the next `ticks` of time no footage.
/// `ticks` comes from the surviving records' own times, so the timeline stays
/// exact across the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hole {
    pub frames_before: usize,
    pub bytes: u64,
    pub ticks: u32,
}

#[derive(Debug)]
pub struct Scan {
    pub header: SegmentHeader,
    pub header_len: u64,
    pub frames: Vec<ScannedFrame>,
    /// Damaged stretches stepped over (verifying scans only), in file order.
    pub skips: Vec<Skip>,
    /// Length of the valid prefix: header plus every complete record and the
    /// skipped stretches between them.
    pub valid_len: u64,
    /// Why scanning stopped before the limit, if it did: a torn or corrupt
    /// tail, to be cut off at `valid_len`. Stretches stepped over in the
    /// middle are in `skips` instead: a file with skips but no tail damage is
    /// complete (an import takes its intact frames; a transfer of it must not
    /// be refused forever).
    pub stopped: Option<&'static str>,
}

impl Scan {
    fn hole_before(&self, i: usize) -> Option<&Skip> {
        self.skips.iter().find(|s| s.frames_before == i)
    }

    /// The index entries of the scanned frames. A frame's duration runs to the
    /// next frame; before a skipped stretch, and for the last frame, that is
    /// unknown from the file alone, so it gets the previous frame's duration
    /// (or `fallback`), never reaching past the next frame.
    pub fn entries(&self, fallback: u32) -> Vec<FrameEntry> {
        let mut out: Vec<FrameEntry> = Vec::with_capacity(self.frames.len());
        for (i, f) in self.frames.iter().enumerate() {
            let guess = out.last().map(|e| e.duration).unwrap_or(fallback);
            let duration = match self.frames.get(i + 1) {
                Some(n) if self.hole_before(i + 1).is_none() => n.pts - f.pts,
                Some(n) => guess.min(n.pts - f.pts),
                None => guess,
            };
            out.push(FrameEntry {
                duration,
                size: f.size,
                key: f.key,
            });
        }
        out
    }

    /// The skipped stretches as index holes, consistent with `entries(fallback)`:
    /// each frame's time is the segment start plus the durations and hole ticks
    /// before it, which equals the start plus its recorded `pts`.
    pub fn holes(&self, fallback: u32) -> Vec<Hole> {
        let entries = self.entries(fallback);
        self.skips
            .iter()
            .filter_map(|s| {
                let next = self.frames.get(s.frames_before)?;
                let prev_end = match s.frames_before.checked_sub(1) {
                    Some(p) => self.frames[p].pts + entries[p].duration,
                    None => 0,
                };
                Some(Hole {
                    frames_before: s.frames_before,
                    bytes: s.bytes,
                    ticks: next.pts.saturating_sub(prev_end),
                })
            })
            .collect()
    }
}

/// Random access to the bytes of a segment (a file, or memory in tests).
pub trait Source {
    /// Exactly `len` bytes at `off`; the caller never asks past the scan limit.
    fn get(&mut self, off: u64, len: usize) -> std::io::Result<&[u8]>;
}

impl Source for &[u8] {
    fn get(&mut self, off: u64, len: usize) -> std::io::Result<&[u8]> {
        let start = usize::try_from(off).map_err(std::io::Error::other)?;
        <[u8]>::get(self, start..start.saturating_add(len)).ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
    }
}

/// A file read through one window of at least 1 MiB, so that a scan that
/// steps byte by byte over a damaged stretch costs no system call per step.
struct Window<'a> {
    file: &'a File,
    limit: u64,
    base: u64,
    buf: Vec<u8>,
}

impl Source for Window<'_> {
    fn get(&mut self, off: u64, len: usize) -> std::io::Result<&[u8]> {
        use std::os::unix::fs::FileExt;
        let end = off + len as u64;
        if off < self.base || end > self.base + self.buf.len() as u64 {
            let want = (len.max(1 << 20) as u64)
                .min(self.limit.saturating_sub(off))
                .max(len as u64);
            self.buf.resize(want as usize, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.base = off;
        }
        let s = (off - self.base) as usize;
        Ok(&self.buf[s..s + len])
    }
}

/// Why the record at `pos` is not a frame; `wasted` grows by the bytes
/// hashed for a checksum that then failed.
fn check_record(
    src: &mut impl Source,
    pos: u64,
    limit: u64,
    verify: bool,
    last_pts: Option<u32>,
    wasted: &mut u64,
) -> Result<ScannedFrame, &'static str> {
    if pos + RECORD_HEADER_LEN > limit {
        return Err("torn record header at end of file");
    }
    let h = src.get(pos, 16).map_err(|_| "unreadable record header")?;
    let word = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap_or_default());
    let (size, pts, flags, crc) = (word(0), word(4), word(8), word(12));
    if size == 0 || size > MAX_FRAME || flags > 1 || last_pts.is_some_and(|l| pts <= l) {
        return Err("corrupt record header");
    }
    if pos + RECORD_HEADER_LEN + u64::from(size) > limit {
        return Err("torn frame at end of file");
    }
    if verify {
        let data = src
            .get(pos + RECORD_HEADER_LEN, size as usize)
            .map_err(|_| "unreadable frame")?;
        if record_crc(size, pts, flags, data) != crc {
            *wasted += u64::from(size);
            return Err("frame checksum mismatch");
        }
    }
    Ok(ScannedFrame {
        offset: pos + RECORD_HEADER_LEN,
        size,
        pts,
        key: flags & 1 == 1,
    })
}

/// Reads a segment file's frames up to `limit` bytes. With `verify` (startup
/// repair, imports), every record's checksum is checked and a damaged record
/// is stepped over: the scan resumes at the next offset where a whole record
/// verifies, so one bad record never costs the intact frames after it.
/// Without `verify` (serving the flushed part of a segment still being
/// written) only the headers are read and the scan stops at the first bad one.
pub fn scan(file: &mut File, limit: u64, verify: bool) -> Result<Scan, FormatError> {
    scan_at_most(file, limit, verify, usize::MAX)
}

/// `scan`, stopping (as at a damaged tail, `stopped = "too many frames"`)
/// after `max_frames` records: for files from outside, whose frame count
/// must not decide how much memory the scan takes.
pub fn scan_at_most(file: &mut File, limit: u64, verify: bool, max_frames: usize) -> Result<Scan, FormatError> {
    file.seek(SeekFrom::Start(0))?;
    let (header, header_len) = SegmentHeader::read(&mut BufReader::new(&mut *file))?;
    let mut w = Window {
        file,
        limit,
        base: 0,
        buf: Vec::new(),
    };
    Ok(scan_records(&mut w, header, header_len, limit, verify, max_frames))
}

/// Scans the records of a file whose own header is damaged, given the header
/// it should have (rebuilt from its index row), verifying every record.
pub fn scan_with_header(file: &File, header: SegmentHeader, limit: u64) -> Scan {
    let header_len = header.encode().len() as u64;
    let mut w = Window {
        file,
        limit,
        base: 0,
        buf: Vec::new(),
    };
    scan_records(&mut w, header, header_len, limit, true, usize::MAX)
}

/// The record loop of `scan`, over any byte source (pure given its input).
pub fn scan_records(
    src: &mut impl Source,
    header: SegmentHeader,
    header_len: u64,
    limit: u64,
    verify: bool,
    max_frames: usize,
) -> Scan {
    let mut frames: Vec<ScannedFrame> = Vec::new();
    let mut skips = Vec::new();
    let mut pos = header_len;
    let mut stopped = None;
    // Garbage crafted to look like record headers claiming large frames could
    // make the search hash far more than the file; past this many wasted
    // bytes the rest is treated as a damaged tail.
    let budget = limit + u64::from(MAX_FRAME);
    let mut wasted = 0u64;
    loop {
        if pos >= limit {
            break;
        }
        if frames.len() >= max_frames {
            stopped = Some("too many frames");
            break;
        }
        let last_pts = frames.last().map(|f| f.pts);
        match check_record(src, pos, limit, verify, last_pts, &mut wasted) {
            Ok(f) => {
                pos = f.offset + u64::from(f.size);
                frames.push(f);
            }
            Err(why) => {
                let mut next = None;
                if verify {
                    for q in pos + 1..limit.saturating_sub(RECORD_HEADER_LEN) {
                        if wasted > budget {
                            break;
                        }
                        if check_record(src, q, limit, true, last_pts, &mut wasted).is_ok() {
                            next = Some(q);
                            break;
                        }
                    }
                }
                match next {
                    Some(q) => {
                        skips.push(Skip {
                            offset: pos,
                            bytes: q - pos,
                            frames_before: frames.len(),
                            why,
                        });
                        pos = q;
                    }
                    None => {
                        stopped = Some(why);
                        break;
                    }
                }
            }
        }
    }
    Scan {
        header,
        header_len,
        frames,
        skips,
        valid_len: pos.min(limit),
        stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_segment(path: &std::path::Path, n: u32) -> Vec<Vec<u8>> {
        let mut f = File::create(path).unwrap();
        let header = SegmentHeader {
            channel: 3,
            segment_id: 42,
            start: Time90k(1_000),
            sample_entry: vec![1, 2, 3],
        };
        f.write_all(&header.encode()).unwrap();
        let mut datas = Vec::new();
        for i in 0..n {
            let data: Vec<u8> = (0..(100 + i * 10)).map(|b| (b + i) as u8).collect();
            f.write_all(&record_header(i * 3000, i % 10 == 0, &data)).unwrap();
            f.write_all(&data).unwrap();
            datas.push(data);
        }
        datas
    }

    #[test]
    fn scan_reads_back_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let datas = write_segment(&p, 20);
        let mut f = File::open(&p).unwrap();
        let len = f.metadata().unwrap().len();
        let s = scan(&mut f, len, true).unwrap();
        assert_eq!(s.header.channel, 3);
        assert_eq!(s.header.segment_id, 42);
        assert_eq!(s.frames.len(), 20);
        assert_eq!(s.valid_len, len);
        assert!(s.stopped.is_none());
        let e = s.entries(1);
        assert_eq!(e[0].duration, 3000);
        assert_eq!(e[19].duration, 3000);
        assert_eq!(e[5].size as usize, datas[5].len());
        assert!(e[10].key && !e[11].key);
    }

    #[test]
    fn every_truncation_keeps_every_complete_frame() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        write_segment(&p, 5);
        let full = std::fs::read(&p).unwrap();
        let mut f = File::open(&p).unwrap();
        let complete = scan(&mut f, full.len() as u64, true).unwrap();
        for cut in complete.header_len..full.len() as u64 {
            let q = dir.path().join("t");
            std::fs::write(&q, &full[..cut as usize]).unwrap();
            let mut g = File::open(&q).unwrap();
            let s = scan(&mut g, cut, true).unwrap();
            let expect = complete
                .frames
                .iter()
                .filter(|fr| fr.offset + u64::from(fr.size) <= cut)
                .count();
            assert_eq!(s.frames.len(), expect, "cut at {cut}");
            assert!(s.valid_len <= cut);
        }
    }

    #[test]
    fn corruption_is_stepped_over_and_later_frames_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        write_segment(&p, 6);
        let mut bytes = std::fs::read(&p).unwrap();
        let mut f = File::open(&p).unwrap();
        let s = scan(&mut f, bytes.len() as u64, true).unwrap();
        let victim = s.frames[3].offset as usize + 5;
        bytes[victim] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let mut f = File::open(&p).unwrap();
        let s2 = scan(&mut f, bytes.len() as u64, true).unwrap();
        assert_eq!(s2.frames.len(), 5);
        assert_eq!(s2.stopped, None, "nothing to cut at the end");
        assert_eq!(s2.valid_len, bytes.len() as u64);
        assert_eq!(
            s2.skips,
            vec![Skip {
                offset: s.frames[3].offset - RECORD_HEADER_LEN,
                bytes: RECORD_HEADER_LEN + u64::from(s.frames[3].size),
                frames_before: 3,
                why: "frame checksum mismatch",
            }]
        );
        // The hole is exactly the lost frame's time; the timeline is unchanged.
        assert_eq!(
            s2.holes(3000),
            vec![Hole {
                frames_before: 3,
                bytes: s2.skips[0].bytes,
                ticks: 3000,
            }]
        );
        // Without verification the header still looks fine, so all frames are listed.
        let s3 = scan(&mut f, bytes.len() as u64, false).unwrap();
        assert_eq!(s3.frames.len(), 6);
    }

    /// A segment in memory: header then `n` records of varying size whose data
    /// holds no zero byte (so zeroing any of it is real damage).
    /// Each record's start, end and pts.
    type Records = Vec<(u64, u64, u32)>;

    fn segment_bytes(n: u32) -> (Vec<u8>, SegmentHeader, u64, Records) {
        let header = SegmentHeader {
            channel: 1,
            segment_id: 7,
            start: Time90k(0),
            sample_entry: vec![9; 5],
        };
        let mut out = header.encode();
        let header_len = out.len() as u64;
        let mut records = Vec::new();
        for i in 0..n {
            let data: Vec<u8> = (0..(20 + (i * 7) % 40))
                .map(|b| ((b * 13 + i) % 255 + 1) as u8)
                .collect();
            let start = out.len() as u64;
            out.extend_from_slice(&record_header(i * 3000, i % 4 == 0, &data));
            out.extend_from_slice(&data);
            records.push((start, out.len() as u64, i * 3000));
        }
        (out, header, header_len, records)
    }

    /// Scans damaged bytes of `segment_bytes(24)` and checks the one property that matters: exactly
    /// the records whose bytes are unchanged are found, and every found
    /// frame's time, rebuilt as the index does from durations and holes,
    /// equals its recorded time.
    fn check_damaged(original: &[u8], damaged: &[u8], what: &str) {
        let (_, header, header_len, records) = segment_bytes(24);
        let intact: Vec<u32> = records
            .iter()
            .filter(|(a, b, _)| {
                (*b as usize) <= damaged.len()
                    && original[*a as usize..*b as usize] == damaged[*a as usize..*b as usize]
            })
            .map(|r| r.2)
            .collect();
        let mut src: &[u8] = damaged;
        let s = scan_records(&mut src, header, header_len, damaged.len() as u64, true, usize::MAX);
        let found: Vec<u32> = s.frames.iter().map(|f| f.pts).collect();
        assert_eq!(found, intact, "{what}");
        let entries = s.entries(3000);
        let holes = s.holes(3000);
        let mut t = 0i64;
        for (i, (f, e)) in s.frames.iter().zip(&entries).enumerate() {
            for h in holes.iter().filter(|h| h.frames_before == i) {
                t += i64::from(h.ticks);
            }
            assert_eq!(t, i64::from(f.pts), "{what}: time of frame {i}");
            t += i64::from(e.duration);
        }
        assert!(s.valid_len <= damaged.len() as u64, "{what}");
        assert_eq!(s.stopped.is_some(), s.valid_len < damaged.len() as u64, "{what}");
        // Every record lost before the cut is inside a skipped stretch.
        let cut_records = records.iter().filter(|r| r.0 < s.valid_len).count();
        let skipped_bytes: u64 = s.skips.iter().map(|k| k.bytes).sum();
        assert_eq!(
            intact
                .iter()
                .filter(|&&p| records.iter().any(|r| r.2 == p && r.0 < s.valid_len))
                .count(),
            s.frames.len(),
            "{what}"
        );
        assert!(cut_records == s.frames.len() || skipped_bytes > 0, "{what}");
    }

    #[test]
    fn every_flipped_byte_costs_only_its_own_record() {
        let (bytes, _, header_len, _) = segment_bytes(24);
        for i in header_len as usize..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut d = bytes.clone();
                d[i] ^= mask;
                check_damaged(&bytes, &d, &format!("byte {i} ^ {mask:#x}"));
            }
        }
    }

    #[test]
    fn zeroed_and_garbage_ranges_cost_only_the_records_they_touch() {
        let (bytes, header, header_len, records) = segment_bytes(24);
        let h = header_len as usize;
        for len in [1usize, 4, 16, 17, 60, 200, 700] {
            for at in (h..bytes.len()).step_by(7) {
                let end = (at + len).min(bytes.len());
                let mut d = bytes.clone();
                d[at..end].fill(0);
                check_damaged(&bytes, &d, &format!("zeroed {at}..{end}"));
                let mut g = bytes.clone();
                for (k, b) in g[at..end].iter_mut().enumerate() {
                    *b = (k as u8).wrapping_mul(151).wrapping_add(at as u8);
                }
                check_damaged(&bytes, &g, &format!("garbage {at}..{end}"));
            }
        }
        // Garbage that looks like a record header: plausible size, time and
        // flags but a wrong checksum, in place of record 5's header, claiming
        // the whole rest of the file, or just up to the next record.
        let (a, b, _) = records[5];
        for size in [(bytes.len() as u64 - a - 16) as u32, (b - a - 16) as u32, 3] {
            let mut d = bytes.clone();
            d[a as usize..a as usize + 4].copy_from_slice(&size.to_be_bytes());
            d[a as usize + 4..a as usize + 8].copy_from_slice(&16_000u32.to_be_bytes());
            d[a as usize + 12] ^= 0x55;
            check_damaged(&bytes, &d, &format!("fake header of size {size}"));
        }
        // Bytes cut out of the middle (later records shift back) or garbage
        // inserted (they shift forward): every whole record is still found.
        let (a, _, _) = records[5];
        let (_, b, _) = records[7];
        for (from, to) in [(a + 3, b - 3), (a, b), (a + 20, records[8].0)] {
            let mut d = bytes[..from as usize].to_vec();
            d.extend_from_slice(&bytes[to as usize..]);
            let mut src: &[u8] = &d;
            let s = scan_records(&mut src, header.clone(), header_len, d.len() as u64, true, usize::MAX);
            let expect: Vec<u32> = records
                .iter()
                .filter(|r| r.1 <= from || r.0 >= to)
                .map(|r| r.2)
                .collect();
            let found: Vec<u32> = s.frames.iter().map(|f| f.pts).collect();
            assert_eq!(found, expect, "cut {from}..{to}");
        }
        let mut d = bytes[..a as usize + 9].to_vec();
        d.extend_from_slice(&[0x5a; 333]);
        d.extend_from_slice(&bytes[a as usize + 9..]);
        let mut src: &[u8] = &d;
        let s = scan_records(&mut src, header.clone(), header_len, d.len() as u64, true, usize::MAX);
        assert_eq!(s.frames.len(), 23, "garbage inserted into record 5");
        // Several damaged stretches in one file.
        let mut d = bytes.clone();
        for r in [2usize, 3, 9, 17] {
            d[records[r].0 as usize + 20] ^= 0x10;
        }
        check_damaged(&bytes, &d, "four damaged records");
        // Truncation inside the damage: the tail is cut, earlier frames stay.
        let mut d = bytes.clone();
        d[records[20].0 as usize + 3] ^= 1;
        let cut = records[22].0 as usize + 9;
        check_damaged(&bytes, &d[..cut], "damaged then truncated");
    }

    /// A byte source that counts the bytes handed out.
    struct Counting<'a> {
        bytes: &'a [u8],
        served: u64,
    }

    impl Source for Counting<'_> {
        fn get(&mut self, off: u64, len: usize) -> std::io::Result<&[u8]> {
            self.served += len as u64;
            let mut b: &[u8] = self.bytes;
            let _ = Source::get(&mut b, off, len)?;
            Ok(&self.bytes[off as usize..off as usize + len])
        }
    }

    #[test]
    fn garbage_posing_as_large_records_costs_bounded_work() {
        // Every 16 bytes a plausible record header (size reaching the end of
        // the file, a later time, no flags) with a wrong checksum: trying each
        // naively would hash about 130 MB for this 1 MiB stretch.
        let (mut bytes, header, header_len, _) = segment_bytes(2);
        let body = 1 << 20;
        let start = bytes.len();
        bytes.resize(start + body, 0);
        for at in (start..start + body - 16).step_by(16) {
            let size = (start + body - at - 16) as u32;
            bytes[at..at + 4].copy_from_slice(&size.to_be_bytes());
            bytes[at + 4..at + 8].copy_from_slice(&1_000_000u32.to_be_bytes());
        }
        let mut src = Counting {
            bytes: &bytes,
            served: 0,
        };
        let s = scan_records(&mut src, header, header_len, bytes.len() as u64, true, usize::MAX);
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.valid_len, start as u64);
        let limit = bytes.len() as u64;
        assert!(
            src.served <= 2 * limit + u64::from(MAX_FRAME) + (1 << 20) * 17,
            "{} bytes read for a {limit}-byte file",
            src.served
        );
        let mut wasted = 0;
        let mut plain: &[u8] = &bytes;
        let _ = check_record(&mut plain, start as u64, limit, true, None, &mut wasted);
        assert_eq!(wasted, (body - 16) as u64, "a failed checksum counts its bytes");
    }

    #[test]
    fn record_intact_checks_size_and_checksum() {
        let data = b"frame data";
        let h = record_header(3000, true, data);
        assert!(record_intact(&h, data));
        assert!(!record_intact(&h, b"frame dat!"));
        assert!(!record_intact(&h, b"frame"));
        assert!(!record_intact(&h[..12], data));
        let mut bad = h;
        bad[5] ^= 1;
        assert!(!record_intact(&bad, data));
    }

    #[test]
    fn damaged_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        write_segment(&p, 1);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[14] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let mut f = File::open(&p).unwrap();
        assert!(matches!(
            scan(&mut f, bytes.len() as u64, true),
            Err(FormatError::BadHeader(_))
        ));
        std::fs::write(&p, b"hello").unwrap();
        let mut f = File::open(&p).unwrap();
        assert!(matches!(scan(&mut f, 5, true), Err(FormatError::BadMagic)));
    }
}
