//! The evidence zip: writing it from a clip plan, and verifying a file.
//!
//! Layout, always the same for the same contents: `clip.mp4`, `manifest.json`,
//! `manifest.sig`, all stored uncompressed, fixed timestamps and permissions.
//! That makes the whole archive checkable, not only its contents: verify
//! parses it with the zip crate (entry CRCs checked), checks the signature
//! and the clip, then writes the archive Tandem would write for these
//! contents and compares it with the file byte for byte. A changed byte in
//! the data changes a hash or a CRC; one in any header, in the central
//! directory or between entries makes the file differ from the rebuild.
//!
//! Streaming without a spool file: the zip writer goes back to patch each
//! local header's CRC and sizes after the entry's data, which a stream has
//! already sent. So an archive to be streamed is first written to a `DryRun`
//! that discards the data but records every patch (and hashes the clip for
//! the manifest), then written again to a `StreamSink` that puts the patched
//! bytes in place as the headers pass and checks that the real patches
//! agree. A source that changed between the passes fails the stream.
//!
//! Bounded memory: the clip streams through in 1-MiB pieces on both sides.
//! Must never buffer a whole clip nor trust a size field of the file.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::{check_clip, check_manifest, Check, EvidenceError, Manifest, Verdict};
use super::{CLIP_NAME, MANIFEST_NAME, MAX_MANIFEST, SIGNATURE_NAME};
use crate::export::{write_range, Sources};
use crate::mp4::clip::Clip;

const CHUNK: usize = 1 << 20;

/// The options of every entry: what makes the layout reproducible.
fn options(len: u64) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644)
        // zip64 exactly when the zip format needs it, so the rebuild agrees.
        .large_file(len >= u64::from(u32::MAX))
}

/// Writes the archive to `out`: the clip streamed from its sources (hashed on
/// the way), then the manifest `finish` makes from the clip's SHA-256, then
/// its signature. Returns `out` and the manifest.
pub fn write<W: Write + Seek>(
    out: W,
    clip: &Clip,
    sources: Sources,
    key: &SigningKey,
    finish: impl FnOnce([u8; 32]) -> Result<Manifest, EvidenceError>,
) -> Result<(W, Manifest), EvidenceError> {
    let dead = Cell::new(false);
    let mut zip = ZipWriter::new(Guarded {
        inner: out,
        dead: &dead,
        pos: 0,
        end: 0,
    });
    let r = (|| {
        zip.start_file(CLIP_NAME, options(clip.len))?;
        let mut hash = Sha256::new();
        let mut err = None;
        write_range(clip, sources, 0, clip.len, CHUNK, |b| {
            hash.update(&b);
            match zip.write_all(&b) {
                Ok(()) => true,
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })
        .map_err(|e| EvidenceError::Clip(format!("{e:#}")))?;
        if let Some(e) = err {
            return Err(e.into());
        }
        let manifest = finish(hash.finalize().into())?;
        let bytes = manifest.to_bytes();
        let sig = super::sign(key, &bytes);
        put(&mut zip, MANIFEST_NAME, &bytes)?;
        put(&mut zip, SIGNATURE_NAME, &sig)?;
        Ok(manifest)
    })();
    match r {
        Ok(m) => Ok((zip.finish()?.inner, m)),
        Err(e) => {
            // The zip writer finishes itself when dropped: into the void.
            dead.set(true);
            Err(e)
        }
    }
}

/// Passes writes through until the archive is abandoned (`dead`), then
/// swallows them: a dropped `ZipWriter` writes its central directory, which
/// must not reach a half-written file or a client. It keeps its own account
/// of position and length so the writer's arithmetic stays sound either way.
struct Guarded<'a, W> {
    inner: W,
    dead: &'a Cell<bool>,
    pos: u64,
    end: u64,
}

impl<W: Write> Write for Guarded<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = if self.dead.get() {
            data.len()
        } else {
            self.inner.write(data).inspect_err(|_| self.dead.set(true))?
        };
        self.pos += n as u64;
        self.end = self.end.max(self.pos);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.dead.get() {
            return Ok(());
        }
        self.inner.flush()
    }
}

impl<W: Seek> Seek for Guarded<'_, W> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = seek_to(to, self.pos, self.end)?;
        if !self.dead.get() {
            self.inner
                .seek(SeekFrom::Start(pos))
                .inspect_err(|_| self.dead.set(true))?;
        }
        self.pos = pos;
        Ok(pos)
    }
}

/// An archive planned for streaming (`plan_stream`): its exact length, and
/// what the second pass must reproduce.
pub struct Planned {
    pub len: u64,
    pub manifest: Manifest,
    sha256: [u8; 32],
    patches: Vec<(u64, Vec<u8>)>,
}

/// The first pass: reads and hashes the clip, makes the manifest, and finds
/// the archive's length and the bytes the zip writer patches.
pub fn plan_stream(
    clip: &Clip,
    sources: Sources,
    key: &SigningKey,
    finish: impl FnOnce([u8; 32]) -> Manifest,
) -> Result<Planned, EvidenceError> {
    let mut sha = [0u8; 32];
    let (dry, manifest) = write(DryRun::default(), clip, sources, key, |h| {
        sha = h;
        Ok(finish(h))
    })?;
    Ok(Planned {
        len: dry.end,
        manifest,
        sha256: sha,
        patches: dry.patches,
    })
}

/// The second pass: sends the planned archive in pieces of at most `chunk`
/// bytes (the first `planned.len` bytes exactly, or an error). Stops with an
/// error when `send` returns false (the client left).
pub fn stream(
    planned: &Planned,
    clip: &Clip,
    sources: Sources,
    key: &SigningKey,
    chunk: usize,
    send: impl FnMut(Vec<u8>) -> bool,
) -> Result<(), EvidenceError> {
    let sink = StreamSink {
        patches: &planned.patches,
        next_patch: 0,
        sent: 0,
        pos: 0,
        buf: Vec::with_capacity(chunk),
        chunk: chunk.max(1),
        send,
    };
    let (mut sink, _) = write(sink, clip, sources, key, |h| {
        if h == planned.sha256 {
            Ok(planned.manifest.clone())
        } else {
            Err(EvidenceError::Clip(
                "the footage changed while the export was sent".into(),
            ))
        }
    })?;
    sink.flush_all()?;
    if sink.sent != planned.len || sink.next_patch != planned.patches.len() {
        return Err(EvidenceError::Clip(format!(
            "the archive came out {} bytes, not the {} planned",
            sink.sent, planned.len
        )));
    }
    Ok(())
}

/// Follows the zip writer without keeping the data: the archive's length and
/// every write that went back over written bytes.
#[derive(Default)]
struct DryRun {
    pos: u64,
    end: u64,
    patches: Vec<(u64, Vec<u8>)>,
}

impl Write for DryRun {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.pos < self.end {
            if self.pos + data.len() as u64 > self.end {
                return Err(std::io::Error::other("a patch runs past the end of the archive"));
            }
            self.patches.push((self.pos, data.to_vec()));
        }
        self.pos += data.len() as u64;
        self.end = self.end.max(self.pos);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for DryRun {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = seek_to(to, self.pos, self.end)?;
        Ok(self.pos)
    }
}

fn seek_to(to: SeekFrom, pos: u64, end: u64) -> std::io::Result<u64> {
    let rel = |b: u64, d: i64| {
        b.checked_add_signed(d)
            .ok_or_else(|| std::io::Error::other("seek before the start"))
    };
    match to {
        SeekFrom::Start(n) => Ok(n),
        SeekFrom::Current(d) => rel(pos, d),
        SeekFrom::End(d) => rel(end, d),
    }
}

/// Sends what the zip writer writes, with the planned patches already in
/// place; the writer's own patches, when they come, must equal the plan.
struct StreamSink<'a, F: FnMut(Vec<u8>) -> bool> {
    patches: &'a [(u64, Vec<u8>)],
    next_patch: usize,
    sent: u64,
    pos: u64,
    buf: Vec<u8>,
    chunk: usize,
    send: F,
}

impl<F: FnMut(Vec<u8>) -> bool> StreamSink<'_, F> {
    fn flush_all(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() && !(self.send)(std::mem::take(&mut self.buf)) {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }
}

impl<F: FnMut(Vec<u8>) -> bool> Write for StreamSink<'_, F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let len = data.len() as u64;
        if self.pos < self.sent {
            // The writer patching what was sent: it must be what was planned.
            match self.patches.get(self.next_patch) {
                Some((at, bytes)) if *at == self.pos && bytes[..] == data[..] => self.next_patch += 1,
                _ => {
                    return Err(std::io::Error::other(
                        "the archive differs from its plan: the footage changed while it was sent",
                    ))
                }
            }
            self.pos += len;
            return Ok(data.len());
        }
        if self.pos != self.sent {
            return Err(std::io::Error::other("the zip writer skipped ahead"));
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        for (at, bytes) in self.patches {
            let (a, b) = (*at, *at + bytes.len() as u64);
            if b <= self.pos || a >= self.pos + len {
                continue;
            }
            for p in a.max(self.pos)..b.min(self.pos + len) {
                self.buf[start + (p - self.pos) as usize] = bytes[(p - a) as usize];
            }
        }
        self.pos += len;
        self.sent += len;
        while self.buf.len() >= self.chunk {
            let rest = self.buf.split_off(self.chunk);
            let full = std::mem::replace(&mut self.buf, rest);
            if !(self.send)(full) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(Vec<u8>) -> bool> Seek for StreamSink<'_, F> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = seek_to(to, self.pos, self.sent)?;
        Ok(self.pos)
    }
}

fn put<W: Write + Seek>(zip: &mut ZipWriter<W>, name: &str, data: &[u8]) -> Result<(), EvidenceError> {
    zip.start_file(name, options(data.len() as u64))?;
    zip.write_all(data)?;
    Ok(())
}

/// Verifies an evidence archive; `trusted` is the key given with `--key`.
pub fn verify(path: &Path, trusted: Option<&VerifyingKey>) -> Verdict {
    let mut v = Verdict {
        key_from_manifest: trusted.is_none(),
        ..Default::default()
    };
    match verify_into(path, trusted, &mut v) {
        Ok(()) => {}
        Err(Stop(c)) => v.checks.push(c),
    }
    v
}

/// A failed check after which nothing further can be judged.
struct Stop(Check);

fn stop(name: &'static str, detail: impl Into<String>) -> Stop {
    Stop(Check::fail(name, detail))
}

fn verify_into(path: &Path, trusted: Option<&VerifyingKey>, v: &mut Verdict) -> Result<(), Stop> {
    let archive = "archive";
    let open = || File::open(path).map_err(|e| stop(archive, format!("{}: {e}", path.display())));
    let mut zip = ZipArchive::new(BufReader::new(open()?))
        .map_err(|e| stop(archive, format!("not a readable zip archive: {e}")))?;
    let names: BTreeSet<String> = zip.file_names().map(str::to_string).collect();
    let expected: BTreeSet<String> = [CLIP_NAME, MANIFEST_NAME, SIGNATURE_NAME]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if names != expected || zip.len() != expected.len() {
        let extra: Vec<_> = names.difference(&expected).cloned().collect();
        let missing: Vec<_> = expected.difference(&names).cloned().collect();
        return Err(stop(
            archive,
            format!(
                "entries differ from clip.mp4, manifest.json, manifest.sig ({} entries; extra: {extra:?}; missing: {missing:?})",
                zip.len()
            ),
        ));
    }
    let mut sizes = [0u64; 3];
    for (i, name) in [CLIP_NAME, MANIFEST_NAME, SIGNATURE_NAME].iter().enumerate() {
        let f = zip.by_name(name).map_err(|e| stop(archive, format!("{name}: {e}")))?;
        if f.compression() != CompressionMethod::Stored || f.encrypted() || f.is_dir() {
            return Err(stop(archive, format!("{name} is not a plain stored file")));
        }
        sizes[i] = f.size();
    }
    if sizes[1] > MAX_MANIFEST || sizes[2] != 64 {
        return Err(stop(
            archive,
            format!(
                "manifest.json holds {} bytes (at most {MAX_MANIFEST}), manifest.sig {} (must be 64)",
                sizes[1], sizes[2]
            ),
        ));
    }
    let small = |zip: &mut ZipArchive<BufReader<File>>, name: &str| -> Result<Vec<u8>, Stop> {
        let mut b = Vec::new();
        zip.by_name(name)
            .and_then(|f| Ok(f.take(MAX_MANIFEST).read_to_end(&mut b)?))
            .map_err(|e| stop(archive, format!("{name}: {e}")))?;
        Ok(b)
    };
    let manifest_bytes = small(&mut zip, MANIFEST_NAME)?;
    let sig = small(&mut zip, SIGNATURE_NAME)?;
    let (checks, manifest) = check_manifest(&manifest_bytes, &sig, trusted);
    // The archive check goes first; it is pushed when the rebuild is compared.
    let mut later = checks;
    let Some(m) = manifest else {
        v.checks.push(Check::pass(
            archive,
            "a zip archive of clip.mp4, manifest.json, manifest.sig",
        ));
        v.checks.append(&mut later);
        return Ok(());
    };
    // One pass over the clip: its hash, and the rebuild compared as it goes.
    let mut rebuild = ZipWriter::new(CompareSink::new(open()?).map_err(|e| stop(archive, e.to_string()))?);
    let (hash, clip_len, data_start) = {
        let mut f = zip
            .by_name(CLIP_NAME)
            .map_err(|e| stop(archive, format!("{CLIP_NAME}: {e}")))?;
        let data_start = f.data_start();
        rebuild
            .start_file(CLIP_NAME, options(f.size()))
            .map_err(|e| stop(archive, e.to_string()))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut n_total = 0u64;
        loop {
            // The zip crate checks the entry's CRC when it reaches the end.
            let n = f
                .read(&mut buf)
                .map_err(|e| stop(archive, format!("{CLIP_NAME}: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            rebuild.write_all(&buf[..n]).map_err(|e| stop(archive, e.to_string()))?;
            n_total += n as u64;
        }
        (<[u8; 32]>::from(hash.finalize()), n_total, data_start)
    };
    let rebuilt = put(&mut rebuild, MANIFEST_NAME, &manifest_bytes)
        .and_then(|()| put(&mut rebuild, SIGNATURE_NAME, &sig))
        .and_then(|()| Ok(rebuild.finish()?))
        .map_err(|e| stop(archive, e.to_string()))?;
    match rebuilt.outcome() {
        None => v.checks.push(Check::pass(
            archive,
            "clip.mp4, manifest.json, manifest.sig; CRCs hold; every byte is where Tandem writes it",
        )),
        Some(at) => v.checks.push(Check::fail(
            archive,
            format!("byte {at} differs from the archive Tandem writes for these contents: a zip header or the layout was changed"),
        )),
    }
    v.checks.append(&mut later);
    let frames = count_frames(path, data_start, clip_len);
    v.checks.extend(check_clip(&m, &hash, clip_len, frames));
    v.manifest = Some(m);
    Ok(())
}

/// Frames in the clip's sample table, each sample checked to lie inside the clip.
fn count_frames(path: &Path, base: u64, len: u64) -> Result<u64, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let track = crate::mp4::reader::read_track_at(&mut f, base, len).map_err(|e| e.to_string())?;
    if let Some(s) = track
        .samples
        .iter()
        .find(|s| s.offset.saturating_add(u64::from(s.size)) > len)
    {
        return Err(format!("a sample at offset {} lies outside the clip", s.offset));
    }
    Ok(track.samples.len() as u64)
}

/// A `Write + Seek` that compares what is written with an existing file
/// instead of storing it. The zip writer goes back to patch each local header
/// (CRC, sizes), so a byte may be written twice: the last write decides.
/// Pending differences are bounded: a rebuild has at most a few dozen
/// patched bytes at once, so more than `MAX_PENDING` means the files differ.
struct CompareSink {
    orig: BufReader<File>,
    orig_pos: u64,
    orig_len: u64,
    pos: u64,
    end: u64,
    differ: BTreeSet<u64>,
    overflow: Option<u64>,
    buf: Vec<u8>,
}

const MAX_PENDING: usize = 4096;

impl CompareSink {
    fn new(f: File) -> std::io::Result<CompareSink> {
        let orig_len = f.metadata()?.len();
        Ok(CompareSink {
            orig: BufReader::with_capacity(CHUNK, f),
            orig_pos: 0,
            orig_len,
            pos: 0,
            end: 0,
            differ: BTreeSet::new(),
            overflow: None,
            buf: Vec::new(),
        })
    }

    /// None when everything written equals the file, else the first differing offset.
    fn outcome(&self) -> Option<u64> {
        if let Some(at) = self.overflow {
            return Some(at);
        }
        match self.differ.first() {
            Some(&at) => Some(at),
            None if self.end != self.orig_len => Some(self.end.min(self.orig_len)),
            None => None,
        }
    }
}

impl Write for CompareSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.overflow.is_some() {
            self.pos += data.len() as u64;
            self.end = self.end.max(self.pos);
            return Ok(data.len());
        }
        let avail = self.orig_len.saturating_sub(self.pos).min(data.len() as u64) as usize;
        self.buf.resize(avail, 0);
        if avail > 0 {
            if self.orig_pos != self.pos {
                self.orig.seek(SeekFrom::Start(self.pos))?;
            }
            self.orig.read_exact(&mut self.buf)?;
            self.orig_pos = self.pos + avail as u64;
        }
        let start = self.pos;
        if self.buf[..] == data[..avail] && avail == data.len() {
            if !self.differ.is_empty() {
                let fixed: Vec<u64> = self.differ.range(start..start + avail as u64).copied().collect();
                for p in fixed {
                    self.differ.remove(&p);
                }
            }
        } else {
            for (i, &b) in data.iter().enumerate() {
                let p = start + i as u64;
                if i < avail && self.buf[i] == b {
                    self.differ.remove(&p);
                } else {
                    self.differ.insert(p);
                }
            }
            if self.differ.len() > MAX_PENDING {
                self.overflow = self.differ.first().copied();
            }
        }
        self.pos += data.len() as u64;
        self.end = self.end.max(self.pos);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for CompareSink {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = seek_to(to, self.pos, self.end)?;
        Ok(self.pos)
    }
}
