//! Turns a planned `Clip` into bytes: any byte range of it, read from the
//! segment files in order. Serves both the HTTP clip endpoint (ranges, in
//! chunks on a blocking thread) and `tandem export --data` (the whole file).
//!
//! A response never promises bytes it cannot send: `open_sources` opens and
//! measures every file a byte range needs before the caller commits to a
//! status and a length (an open file stays readable even if it is unlinked
//! afterwards), and a read that still fails ends `write_range` with an error
//! naming the file, which the HTTP layer turns into an aborted connection.
//!
//! Blocking I/O only; callers on the async runtime must use `spawn_blocking`.
//! Must never read outside the slices the clip plan lists.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context, Result};

use crate::mp4::clip::Clip;

/// The source files of a clip, opened ahead of sending (see `open_sources`).
pub struct Sources(Vec<Option<File>>);

/// Checks that every source file bytes [start, end) of the clip read from
/// still holds all the bytes the plan reads, and opens them (at most
/// `keep_open`; the others are checked now and opened when reached). An
/// error names the file and what is wrong.
pub fn open_sources(clip: &Clip, start: u64, end: u64, keep_open: usize) -> Result<Sources> {
    let mut need: Vec<u64> = vec![0; clip.sources.len()];
    let mut slice_start = clip.head.len() as u64;
    for s in &clip.slices {
        let slice_end = slice_start + u64::from(s.len);
        if slice_end > start && slice_start < end {
            need[s.source] = need[s.source].max(s.offset + u64::from(s.len));
        }
        slice_start = slice_end;
    }
    let mut files = Vec::with_capacity(need.len());
    let mut open = 0;
    for (i, &n) in need.iter().enumerate() {
        if n == 0 {
            files.push(None);
            continue;
        }
        let p = &clip.sources[i];
        let f = File::open(p).with_context(|| format!("segment file {} is gone", p.display()))?;
        let len = f.metadata().with_context(|| format!("reading {}", p.display()))?.len();
        if len < n {
            anyhow::bail!(
                "segment file {} holds {len} bytes, fewer than the {n} the clip needs",
                p.display()
            );
        }
        if open < keep_open {
            files.push(Some(f));
            open += 1;
        } else {
            files.push(None);
        }
    }
    Ok(Sources(files))
}

/// Writes the whole clip to `out` (the CLI's exports), calling `progress`
/// with each piece's length; a failed write stops it and is returned.
pub fn write_clip(clip: &Clip, out: &mut impl std::io::Write, mut progress: impl FnMut(usize)) -> Result<()> {
    let sources = open_sources(clip, 0, clip.len, 64)?;
    let mut err = None;
    write_range(clip, sources, 0, clip.len, 1 << 20, |b| {
        progress(b.len());
        match out.write_all(&b) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Streams bytes [start, end) of the clip to `sink` in chunks of at most
/// `chunk` bytes, reading from `sources` (from `open_sources`). Stops early
/// (without error) if `sink` returns false. A source that cannot be read in
/// full is an error naming it: the caller must not pretend the clip ended.
pub fn write_range(
    clip: &Clip,
    sources: Sources,
    start: u64,
    end: u64,
    chunk: usize,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<()> {
    let end = end.min(clip.len);
    let chunk = chunk.max(1);
    let mut out = Chunker {
        buf: Vec::with_capacity(chunk),
        chunk,
        sink: &mut sink,
        stopped: false,
    };
    let head_len = clip.head.len() as u64;
    let mut pos = start;
    if pos < head_len {
        let to = end.min(head_len);
        out.push(&clip.head[pos as usize..to as usize]);
        pos = to;
    }
    let mut files = sources.0;
    files.resize_with(clip.sources.len(), || None);
    let mut read_buf = vec![0u8; chunk.min(1 << 20)];
    let mut slice_start = head_len;
    for s in &clip.slices {
        let slice_end = slice_start + u64::from(s.len);
        if slice_end <= pos {
            slice_start = slice_end;
            continue;
        }
        if slice_start >= end || out.stopped {
            break;
        }
        let from = pos.max(slice_start) - slice_start;
        let to = end.min(slice_end) - slice_start;
        let f = match &mut files[s.source] {
            Some(f) => f,
            slot => {
                let p = &clip.sources[s.source];
                slot.insert(File::open(p).with_context(|| format!("opening {}", p.display()))?)
            }
        };
        f.seek(SeekFrom::Start(s.offset + from))?;
        let mut remaining = (to - from) as usize;
        while remaining > 0 && !out.stopped {
            let n = remaining.min(read_buf.len());
            f.read_exact(&mut read_buf[..n])
                .with_context(|| format!("reading {}", clip.sources[s.source].display()))?;
            out.push(&read_buf[..n]);
            remaining -= n;
        }
        pos = slice_start + to;
        slice_start = slice_end;
    }
    out.finish();
    Ok(())
}

/// Regroups bytes into chunks of exactly `chunk` bytes (the last may be short).
struct Chunker<'a, F: FnMut(Vec<u8>) -> bool> {
    buf: Vec<u8>,
    chunk: usize,
    sink: &'a mut F,
    stopped: bool,
}

impl<F: FnMut(Vec<u8>) -> bool> Chunker<'_, F> {
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.stopped {
            let n = data.len().min(self.chunk - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.chunk {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
                self.stopped = !(self.sink)(full);
            }
        }
    }
    fn finish(mut self) {
        if !self.buf.is_empty() && !self.stopped {
            (self.sink)(std::mem::take(&mut self.buf));
        }
    }
}

/// A parsed `Range: bytes=…` header against a resource of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(h) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        // Multiple ranges: answering with the whole file is allowed and simpler.
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let r = match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => (len.saturating_sub(n), len),
            Err(_) => return RangeRequest::Full,
        },
        (false, _) => {
            let Ok(s) = a.parse::<u64>() else {
                return RangeRequest::Full;
            };
            let e = if b.is_empty() {
                len
            } else {
                match b.parse::<u64>() {
                    // `bytes=0-18446744073709551615` must not overflow.
                    Ok(e) if e >= s => e.saturating_add(1).min(len),
                    _ => return RangeRequest::Full,
                }
            };
            (s, e)
        }
        (true, true) => return RangeRequest::Full,
    };
    if r.0 >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(r.0, r.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeRequest::Partial(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeRequest::Partial(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeRequest::Partial(90, 100));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), RangeRequest::Partial(50, 100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeRequest::Full);
        // Client numbers at and past the edge of u64: no overflow, no panic.
        let max = u64::MAX;
        assert_eq!(
            parse_range(Some(&format!("bytes=0-{max}")), 100),
            RangeRequest::Partial(0, 100)
        );
        assert_eq!(
            parse_range(Some(&format!("bytes={max}-{max}")), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some(&format!("bytes=-{max}")), 100),
            RangeRequest::Partial(0, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=0-99999999999999999999999"), 100),
            RangeRequest::Full
        );
    }

    #[test]
    fn write_range_reads_exactly_the_requested_bytes() {
        use crate::mp4::clip::Slice;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &content).unwrap();
        let clip = Clip {
            head: b"HEAD".to_vec(),
            sources: vec![p.clone()],
            slices: vec![
                Slice {
                    source: 0,
                    offset: 10,
                    len: 5,
                },
                Slice {
                    source: 0,
                    offset: 500,
                    len: 7,
                },
            ],
            len: 16,
            etag: String::new(),
            gaps: vec![],
            overlaps: vec![],
            frames_omitted: 0,
            damaged: vec![],
            start: Default::default(),
            end: Default::default(),
            frames: 2,
            codec: String::new(),
            width: 0,
            height: 0,
        };
        let mut whole = b"HEAD".to_vec();
        whole.extend_from_slice(&content[10..15]);
        whole.extend_from_slice(&content[500..507]);
        for s in 0..16u64 {
            for e in s..=16u64 {
                for chunk in [1, 3, 64] {
                    let mut got = Vec::new();
                    let src = open_sources(&clip, s, e, 1).unwrap();
                    write_range(&clip, src, s, e, chunk, |b| {
                        assert!(b.len() <= chunk);
                        got.extend(b);
                        true
                    })
                    .unwrap();
                    assert_eq!(got, &whole[s as usize..e as usize], "range {s}..{e} chunk {chunk}");
                }
            }
        }
        // Opened before the file is unlinked: the bytes still come.
        let src = open_sources(&clip, 0, 16, 8).unwrap();
        std::fs::rename(&p, dir.path().join("moved")).unwrap();
        let mut got = Vec::new();
        write_range(&clip, src, 0, 16, 64, |b| {
            got.extend(b);
            true
        })
        .unwrap();
        assert_eq!(got, whole);
        // Gone before opening: an error naming the file, nothing promised.
        let err = open_sources(&clip, 0, 16, 8).err().unwrap().to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
        // Only the header requested: no file needed.
        assert!(open_sources(&clip, 0, 4, 8).is_ok());
        // Shorter than the plan: refused before sending.
        std::fs::write(&p, &content[..400]).unwrap();
        let err = open_sources(&clip, 0, 16, 8).err().unwrap().to_string();
        assert!(err.contains("fewer than the 507"), "{err}");
        // Cut after opening (the check is passed, the read then fails): an
        // error naming the file, never a silently short clip.
        std::fs::write(&p, &content).unwrap();
        let src = open_sources(&clip, 0, 16, 0).unwrap();
        std::fs::write(&p, &content[..100]).unwrap();
        let r = write_range(&clip, src, 0, 16, 64, |_| true);
        assert!(r.unwrap_err().to_string().contains(&p.display().to_string()));
    }
}
