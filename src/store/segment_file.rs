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
//! Invariant: every record before the first invalid one is a complete frame.
//! Because the header carries everything the index row holds, a crash at any
//! instant leaves a file from which `scan` rebuilds the row — that is what
//! startup repair does. This module owns the format; it must never decide
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

/// One frame found in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedFrame {
    /// Byte offset of the frame data (after its record header).
    pub offset: u64,
    pub size: u32,
    pub pts: u32,
    pub key: bool,
}

#[derive(Debug)]
pub struct Scan {
    pub header: SegmentHeader,
    pub header_len: u64,
    pub frames: Vec<ScannedFrame>,
    /// Length of the valid prefix: header plus every complete record.
    pub valid_len: u64,
    /// Why scanning stopped before `limit`, if it did (a torn or corrupt tail).
    pub stopped: Option<&'static str>,
}

impl Scan {
    /// The index entries of the scanned frames. The last frame's duration is
    /// unknown from the file alone; it gets the previous frame's (or `fallback`).
    pub fn entries(&self, fallback: u32) -> Vec<FrameEntry> {
        let mut out: Vec<FrameEntry> = Vec::with_capacity(self.frames.len());
        for (i, f) in self.frames.iter().enumerate() {
            let duration = match self.frames.get(i + 1) {
                Some(n) => n.pts - f.pts,
                None => out.last().map(|e| e.duration).unwrap_or(fallback),
            };
            out.push(FrameEntry {
                duration,
                size: f.size,
                key: f.key,
            });
        }
        out
    }
}

/// Reads a segment file's frames up to `limit` bytes. With `verify`, every
/// record's checksum is checked (startup repair); without, only the headers are
/// read (serving the flushed part of a segment still being written).
pub fn scan(file: &mut File, limit: u64, verify: bool) -> Result<Scan, FormatError> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let (header, header_len) = SegmentHeader::read(&mut r)?;
    let mut frames = Vec::new();
    let mut pos = header_len;
    let mut stopped = None;
    let mut data = Vec::new();
    let mut last_pts: Option<u32> = None;
    loop {
        if pos + RECORD_HEADER_LEN > limit {
            if pos != limit {
                stopped = Some("torn record header at end of file");
            }
            break;
        }
        let mut h = [0u8; 16];
        if r.read_exact(&mut h).is_err() {
            stopped = Some("torn record header at end of file");
            break;
        }
        let word = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap_or_default());
        let (size, pts, flags, crc) = (word(0), word(4), word(8), word(12));
        if size == 0 || size > MAX_FRAME || flags > 1 || last_pts.is_some_and(|l| pts <= l) {
            stopped = Some("corrupt record header");
            break;
        }
        if pos + RECORD_HEADER_LEN + u64::from(size) > limit {
            stopped = Some("torn frame at end of file");
            break;
        }
        if verify {
            data.resize(size as usize, 0);
            if r.read_exact(&mut data).is_err() {
                stopped = Some("torn frame at end of file");
                break;
            }
            if record_crc(size, pts, flags, &data) != crc {
                stopped = Some("frame checksum mismatch");
                break;
            }
        } else if r.seek_relative(i64::from(size)).is_err() {
            stopped = Some("torn frame at end of file");
            break;
        }
        frames.push(ScannedFrame {
            offset: pos + RECORD_HEADER_LEN,
            size,
            pts,
            key: flags & 1 == 1,
        });
        last_pts = Some(pts);
        pos += RECORD_HEADER_LEN + u64::from(size);
    }
    Ok(Scan {
        header,
        header_len,
        frames,
        valid_len: pos,
        stopped,
    })
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
    fn corruption_stops_the_scan_at_the_damaged_frame() {
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
        assert_eq!(s2.frames.len(), 3);
        assert_eq!(s2.stopped, Some("frame checksum mismatch"));
        // Without verification the header still looks fine, so all frames are listed.
        let s3 = scan(&mut f, bytes.len() as u64, false).unwrap();
        assert_eq!(s3.frames.len(), 6);
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
