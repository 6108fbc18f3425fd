//! Reads the first video track's sample table from an .mp4: where each sample
//! is, how long it lasts, whether it is a key frame. `audit` uses it to read
//! frame stamps out of Tandem's clips and other recorders' files.
//!
//! Sans-IO over the `moov` bytes; `read_track_file` is the thin file adapter.
//! Must never trust a size field: every read is bounds-checked.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Mp4Error {
    #[error("not an mp4 file: {0}")]
    Malformed(String),
    #[error("the file has no video track")]
    NoVideo,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn bad(s: impl Into<String>) -> Mp4Error {
    Mp4Error::Malformed(s.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    pub duration: u32,
    pub key: bool,
    /// 1-based sample description index.
    pub entry: u32,
}

#[derive(Debug, Default)]
pub struct Track {
    pub timescale: u32,
    pub samples: Vec<Sample>,
    pub edit_media_time: Option<i64>,
    pub edit_duration: Option<u64>,
    pub entry_count: u32,
    pub chunk_count: u32,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

/// Iterates the child boxes of `data`: (type, body).
fn boxes(data: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), Mp4Error>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (hdr, size) = match size32 {
            1 if rest.len() >= 16 => (16, u64::from_be_bytes(rest[8..16].try_into().unwrap_or_default())),
            0 => (8, rest.len() as u64),
            s => (8, s),
        };
        if size < hdr as u64 || size > rest.len() as u64 {
            rest = &[];
            return Some(Err(bad(format!(
                "box {} overruns its parent",
                String::from_utf8_lossy(&kind)
            ))));
        }
        let body = &rest[hdr..size as usize];
        rest = &rest[size as usize..];
        Some(Ok((kind, body)))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    for b in boxes(data) {
        let (k, body) = b?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn need<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], Mp4Error> {
    child(data, kind)?.ok_or_else(|| bad(format!("missing {} box", String::from_utf8_lossy(kind))))
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Mp4Error> {
        if self.0.len() < n {
            return Err(bad("table truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, Mp4Error> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, Mp4Error> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    /// Reads a table entry count and checks it fits what remains.
    fn count(&mut self, entry_size: usize) -> Result<usize, Mp4Error> {
        let n = self.u32()? as usize;
        if n.saturating_mul(entry_size) > self.0.len() {
            return Err(bad("table count exceeds box"));
        }
        Ok(n)
    }
}

/// Parses the `moov` box body (or a whole file held in memory).
pub fn read_track(data: &[u8]) -> Result<Track, Mp4Error> {
    let moov = match child(data, b"moov")? {
        Some(m) => m,
        None => data,
    };
    for b in boxes(moov) {
        let (k, trak) = b?;
        if &k != b"trak" {
            continue;
        }
        let mdia = need(trak, b"mdia")?;
        let hdlr = need(mdia, b"hdlr")?;
        if hdlr.get(8..12) != Some(b"vide") {
            continue;
        }
        return parse_trak(trak, mdia);
    }
    Err(Mp4Error::NoVideo)
}

fn parse_trak(trak: &[u8], mdia: &[u8]) -> Result<Track, Mp4Error> {
    let mut t = Track::default();
    let mdhd = need(mdia, b"mdhd")?;
    let mut c = Cursor(mdhd);
    let version = c.take(4)?[0];
    if version == 1 {
        c.take(16)?;
    } else {
        c.take(8)?;
    }
    t.timescale = c.u32()?;
    if let Some(edts) = child(trak, b"edts")? {
        if let Some(elst) = child(edts, b"elst")? {
            let mut c = Cursor(elst);
            let v = c.take(4)?[0];
            let n = c.u32()?;
            // Skip leading empty edits; report the first real one.
            for _ in 0..n {
                let (dur, mt) = if v == 1 {
                    (c.u64()?, c.u64()? as i64)
                } else {
                    (u64::from(c.u32()?), i64::from(c.u32()? as i32))
                };
                c.take(4)?;
                if mt >= 0 {
                    t.edit_media_time = Some(mt);
                    t.edit_duration = Some(dur);
                    break;
                }
            }
        }
    }
    let stbl = need(need(mdia, b"minf")?, b"stbl")?;
    // stsd: codec and size of the first entry.
    let stsd = need(stbl, b"stsd")?;
    let mut c = Cursor(stsd);
    c.take(4)?;
    t.entry_count = c.u32()?;
    if let Some(Ok((kind, body))) = boxes(c.0).next() {
        t.codec = String::from_utf8_lossy(&kind).into_owned();
        if body.len() >= 28 {
            t.width = u32::from(u16::from_be_bytes([body[24], body[25]]));
            t.height = u32::from(u16::from_be_bytes([body[26], body[27]]));
        }
    }
    // stsz
    let mut c = Cursor(need(stbl, b"stsz")?);
    c.take(4)?;
    let fixed = c.u32()?;
    let n = c.u32()? as usize;
    let mut sizes = Vec::with_capacity(n.min(1 << 24));
    if fixed == 0 {
        if n.saturating_mul(4) > c.0.len() {
            return Err(bad("stsz count exceeds box"));
        }
        for _ in 0..n {
            sizes.push(c.u32()?);
        }
    } else {
        sizes.resize(n, fixed);
    }
    // stts
    let mut durations = Vec::with_capacity(n);
    let mut c = Cursor(need(stbl, b"stts")?);
    c.take(4)?;
    for _ in 0..c.count(8)? {
        let (count, d) = (c.u32()?, c.u32()?);
        for _ in 0..count {
            if durations.len() >= n {
                break;
            }
            durations.push(d);
        }
    }
    durations.resize(n, durations.last().copied().unwrap_or(0));
    // stss (absent: every sample is a key frame)
    let mut keys = vec![child(stbl, b"stss")?.is_none(); n];
    if let Some(stss) = child(stbl, b"stss")? {
        let mut c = Cursor(stss);
        c.take(4)?;
        for _ in 0..c.count(4)? {
            let k = c.u32()? as usize;
            if (1..=n).contains(&k) {
                keys[k - 1] = true;
            }
        }
    }
    // chunk offsets
    let mut chunk_offsets = Vec::new();
    if let Some(stco) = child(stbl, b"stco")? {
        let mut c = Cursor(stco);
        c.take(4)?;
        for _ in 0..c.count(4)? {
            chunk_offsets.push(u64::from(c.u32()?));
        }
    } else {
        let mut c = Cursor(need(stbl, b"co64")?);
        c.take(4)?;
        for _ in 0..c.count(8)? {
            chunk_offsets.push(c.u64()?);
        }
    }
    t.chunk_count = chunk_offsets.len() as u32;
    // stsc: expand to per-chunk (samples, entry).
    let mut c = Cursor(need(stbl, b"stsc")?);
    c.take(4)?;
    let mut runs = Vec::new();
    for _ in 0..c.count(12)? {
        runs.push((c.u32()?, c.u32()?, c.u32()?));
    }
    let mut sample = 0usize;
    for (ci, &off) in chunk_offsets.iter().enumerate() {
        let chunk_no = ci as u32 + 1;
        let Some(&(_, per, entry)) = runs.iter().rev().find(|r| r.0 <= chunk_no) else {
            return Err(bad("stsc does not cover chunk 1"));
        };
        let mut pos = off;
        for _ in 0..per {
            if sample >= n {
                break;
            }
            t.samples.push(Sample {
                offset: pos,
                size: sizes[sample],
                duration: durations[sample],
                key: keys[sample],
                entry,
            });
            pos += u64::from(sizes[sample]);
            sample += 1;
        }
    }
    if sample != n {
        return Err(bad(format!("chunks hold {sample} samples but stsz lists {n}")));
    }
    Ok(t)
}

/// Finds and parses `moov` in a file without reading the media.
pub fn read_track_file(f: &mut File) -> Result<Track, Mp4Error> {
    let len = f.metadata()?.len();
    read_track_at(f, 0, len)
}

/// Like `read_track_file` for an .mp4 stored as the `len` bytes at `base` of
/// a larger file (an uncompressed zip entry). Sample offsets stay relative
/// to the .mp4's start.
pub fn read_track_at<F: Read + Seek>(f: &mut F, base: u64, len: u64) -> Result<Track, Mp4Error> {
    let mut pos = 0u64;
    while pos + 8 <= len {
        f.seek(SeekFrom::Start(base + pos))?;
        let mut h = [0u8; 16];
        f.read_exact(&mut h[..8])?;
        let mut size = u64::from(u32::from_be_bytes(h[..4].try_into().unwrap_or_default()));
        let mut hdr = 8;
        if size == 1 {
            f.read_exact(&mut h[8..16])?;
            size = u64::from_be_bytes(h[8..16].try_into().unwrap_or_default());
            hdr = 16;
        } else if size == 0 {
            size = len - pos;
        }
        if size < hdr || pos + size > len {
            return Err(bad("top-level box overruns the file"));
        }
        if &h[4..8] == b"moov" {
            if size > 512 << 20 {
                return Err(bad("moov larger than 512 MiB"));
            }
            let mut body = vec![0u8; (size - hdr) as usize];
            f.read_exact(&mut body)?;
            return read_track(&body);
        }
        pos += size;
    }
    Err(bad("no moov box"))
}
