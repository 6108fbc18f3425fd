//! Builds an .mp4 for a [start, end) of one channel from stored frames, as a
//! "virtual file": the `ftyp`+`moov`+`mdat` header is built in memory and the
//! media is a list of slices of segment files, so any byte range can be served
//! without building the whole file.
//!
//! Decisions (see `docs/clips.md`):
//! - The clip starts at the key frame at or before `start`; an edit list trims
//!   the presentation to exactly `start`. `moov` comes before `mdat`.
//! - A gap in the recording is shown honestly on the timeline: the clip's time
//!   axis is wall-clock time, and the last frame before a gap is held until the
//!   footage resumes. The gaps are reported alongside (`Clip::gaps`, the
//!   `X-Tandem-Gaps` header, and the recordings API).
//! - A change of codec parameters adds a sample entry; frames refer to theirs.
//! - One time axis cannot show two frames at one instant: where stored
//!   segments overlap (a camera clock stepped back, overlapping imports) the
//!   earlier-starting segment's frames are kept and the others are omitted up
//!   to their next key frame — and every omitted stretch is reported
//!   (`Clip::overlaps`, `Clip::frames_omitted`). Stored time the store could
//!   not read (`DamagedSpan`) is reported too, and named in the gap it causes.
//!
//! Pure: no files are opened here. Must never re-encode or reorder frames,
//! and never drop a stored frame without listing it.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use super::{moov, write_full_box};
use crate::store::{db::SampleEntryRow, DamagedSpan, SegmentFrames};
use crate::time::Time90k;

/// Longest clip one file may hold: keeps every sample duration within 32 bits.
pub const MAX_CLIP: i64 = 12 * 3600 * 90_000;
/// Frames further apart than this (beyond their duration) mark a gap.
const GAP_TOLERANCE: i64 = 9_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClipError {
    #[error("the range is empty: end must be after start")]
    EmptyRange,
    #[error("the range is longer than 12 hours; export it in parts")]
    TooLong,
    #[error("no footage recorded in the requested range")]
    NoFootage,
    #[error("the footage stored in the requested range cannot be read: {0}")]
    Unreadable(String),
}

/// A piece of the media data: `len` bytes at `offset` of source file `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub source: usize,
    pub offset: u64,
    pub len: u32,
}

#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Gap {
    pub start: String,
    pub end: String,
    pub seconds: f64,
    /// The damaged files (`path: what is wrong`) whose footage would have
    /// filled this gap; empty for an ordinary hole in the recording.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
}

/// Stored frames left out of the clip because other stored footage covers
/// the same instants.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Overlap {
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub frames_omitted: u64,
    /// The segment whose frames were omitted.
    pub segment: i64,
}

#[derive(Debug)]
pub struct Clip {
    pub head: Vec<u8>,
    pub sources: Vec<PathBuf>,
    pub slices: Vec<Slice>,
    pub len: u64,
    pub etag: String,
    pub gaps: Vec<Gap>,
    pub overlaps: Vec<Overlap>,
    /// Stored frames not in the clip because of overlaps (sum over `overlaps`).
    pub frames_omitted: u64,
    /// Stored time in the range whose frames could not be read.
    pub damaged: Vec<DamagedSpan>,
    /// Presentation start and end after trimming.
    pub start: Time90k,
    pub end: Time90k,
    pub frames: usize,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

struct Sample {
    time: Time90k,
    duration: u32,
    size: u32,
    key: bool,
    entry: usize,
    source: usize,
    offset: u64,
}

pub fn build(
    segments: &[SegmentFrames],
    damaged: &[DamagedSpan],
    start: Time90k,
    end: Time90k,
) -> Result<Clip, ClipError> {
    if end <= start {
        return Err(ClipError::EmptyRange);
    }
    if end - start > MAX_CLIP {
        return Err(ClipError::TooLong);
    }
    let mut entries: Vec<Arc<SampleEntryRow>> = Vec::new();
    let mut sources = Vec::new();
    let mut all: Vec<Sample> = Vec::new();
    let mut omitted: Vec<(Time90k, Time90k, u64, i64)> = Vec::new();
    let mut source_ids = Vec::new();
    for seg in segments {
        let entry = match entries.iter().position(|e| e.id == seg.entry.id) {
            Some(i) => i,
            None => {
                entries.push(seg.entry.clone());
                entries.len() - 1
            }
        };
        sources.push(seg.path.clone());
        source_ids.push(seg.id);
        // Once a frame of this segment is omitted, its next frames depend on
        // it until the next key frame, so they are omitted too.
        let mut need_key = false;
        for f in &seg.frames {
            let shadowed = all.last().is_some_and(|l| f.time <= l.time);
            need_key = shadowed || (need_key && !f.key);
            if shadowed || need_key {
                let f_end = f.time + i64::from(f.duration);
                if f_end > start && f.time < end {
                    match omitted.last_mut() {
                        Some(o) if o.3 == seg.id && f.time - o.1 <= GAP_TOLERANCE => {
                            o.1 = o.1.max(f_end);
                            o.2 += 1;
                        }
                        _ => omitted.push((f.time, f_end, 1, seg.id)),
                    }
                }
                continue;
            }
            all.push(Sample {
                time: f.time,
                duration: f.duration,
                size: f.size,
                key: f.key,
                entry,
                source: sources.len() - 1,
                offset: f.offset,
            });
        }
    }
    let damaged: Vec<DamagedSpan> = damaged
        .iter()
        .filter(|d| d.end_90k > start && d.start_90k < end)
        .cloned()
        .collect();
    let no_footage = || {
        if damaged.is_empty() {
            ClipError::NoFootage
        } else {
            ClipError::Unreadable(name_damage(damaged.iter()).join("; "))
        }
    };
    // First frame that overlaps the range, then back to its key frame.
    let Some(first) = all.iter().position(|s| s.time + i64::from(s.duration) > start) else {
        return Err(no_footage());
    };
    let key = match all[..=first].iter().rposition(|s| s.key) {
        Some(k) => k,
        None => all[first..]
            .iter()
            .position(|s| s.key)
            .map(|k| k + first)
            .ok_or_else(no_footage)?,
    };
    let last = all.iter().rposition(|s| s.time < end).ok_or_else(no_footage)?;
    if last < key {
        return Err(no_footage());
    }
    let mut samples: Vec<Sample> = all.drain(key..=last).collect();
    let mut gaps = Vec::new();
    let n = samples.len();
    for i in 0..n {
        let d = if i + 1 < n {
            let own_end = samples[i].time + i64::from(samples[i].duration);
            let next = samples[i + 1].time;
            if next - own_end > GAP_TOLERANCE {
                gaps.push(Gap {
                    start: own_end.to_rfc3339(),
                    end: next.to_rfc3339(),
                    seconds: crate::time::secs_of(next - own_end),
                    damaged: name_damage(damaged.iter().filter(|d| d.end_90k > own_end && d.start_90k < next)),
                });
            }
            next - samples[i].time
        } else {
            (i64::from(samples[i].duration)).min(end - samples[i].time)
        };
        samples[i].duration = d.clamp(1, i64::from(u32::MAX)) as u32;
    }
    let media_start = samples[0].time;
    let pres_start = start.max(media_start);
    let media_end = samples[n - 1].time + i64::from(samples[n - 1].duration);
    let pres_end = end.min(media_end);
    let media_len: u64 = samples.iter().map(|s| u64::from(s.size)).sum();

    // Chunks: maximal runs of samples from the same source file.
    let mut chunks: Vec<(usize, usize)> = Vec::new(); // (first sample, count)
    for (i, s) in samples.iter().enumerate() {
        match chunks.last_mut() {
            Some((f, c)) if samples[*f].source == s.source => *c += 1,
            _ => chunks.push((i, 1)),
        }
        let _ = s;
    }
    let use_co64 = media_len > u64::from(u32::MAX) / 2;
    let build_head = |mdat_offset: u64| -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * 1024);
        moov::write_ftyp(&mut out, b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"]);
        let first = &entries[samples[0].entry];
        let pres_duration = (pres_end - pres_start) as u64;
        let header = moov::TrackHeader {
            width: first.width,
            height: first.height,
            duration: pres_duration,
            media_duration: (media_end - media_start) as u64,
            edit: Some((pres_duration, (pres_start - media_start) as u64)),
            fragmented: false,
        };
        moov::write_moov(&mut out, &header, |o| {
            write_stbl(o, &entries, &samples, &chunks, mdat_offset, use_co64);
        });
        let mdat_size = media_len + 16;
        out.extend_from_slice(&1u32.to_be_bytes()); // 64-bit "largesize" form
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&mdat_size.to_be_bytes());
        out
    };
    // The header's length does not depend on the offsets it contains, so build
    // it once to measure and once for real.
    let head_len = build_head(0).len() as u64;
    let head = build_head(head_len);
    // The ETag covers exactly what the file holds — the header and where
    // each sample's bytes come from — so it stays put while the segment being
    // written grows past the clip, and changes when anything in it changes.
    let mut etag = crc32fast::Hasher::new();
    etag.update(&head);
    for s in &samples {
        etag.update(&source_ids[s.source].to_be_bytes());
        etag.update(&s.offset.to_be_bytes());
    }
    debug_assert_eq!(head.len() as u64, head_len);
    let slices = samples
        .iter()
        .map(|s| Slice {
            source: s.source,
            offset: s.offset,
            len: s.size,
        })
        .collect();
    let first = &entries[samples[0].entry];
    Ok(Clip {
        len: head_len + media_len,
        head,
        sources,
        slices,
        etag: format!("\"t1-{:08x}-{:x}\"", etag.finalize(), media_len),
        gaps,
        frames_omitted: omitted.iter().map(|o| o.2).sum(),
        overlaps: omitted
            .into_iter()
            .map(|(a, b, frames, segment)| Overlap {
                start: a.to_rfc3339(),
                end: b.to_rfc3339(),
                seconds: crate::time::secs_of(b - a),
                frames_omitted: frames,
                segment,
            })
            .collect(),
        damaged,
        start: pres_start,
        end: pres_end,
        frames: n,
        codec: first.codec.clone(),
        width: first.width,
        height: first.height,
    })
}

/// Damaged files that would not fit a message or header are counted, not listed.
const NAMED_DAMAGE: usize = 10;

/// `path: why` for the first `NAMED_DAMAGE` damaged spans, then how many more.
fn name_damage<'a>(spans: impl Iterator<Item = &'a DamagedSpan>) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0;
    for d in spans {
        if out.len() < NAMED_DAMAGE {
            out.push(format!("{}: {}", d.file, d.why));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push(format!("and {more} more damaged segments"));
    }
    out
}

fn write_stbl(
    o: &mut Vec<u8>,
    entries: &[Arc<SampleEntryRow>],
    samples: &[Sample],
    chunks: &[(usize, usize)],
    mdat_offset: u64,
    co64: bool,
) {
    moov::write_stsd(o, entries.iter().map(|e| e.data.as_slice()));
    write_full_box(o, b"stts", 0, 0, |o| {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for s in samples {
            match runs.last_mut() {
                Some((c, d)) if *d == s.duration => *c += 1,
                _ => runs.push((1, s.duration)),
            }
        }
        o.extend_from_slice(&(runs.len() as u32).to_be_bytes());
        for (c, d) in runs {
            o.extend_from_slice(&c.to_be_bytes());
            o.extend_from_slice(&d.to_be_bytes());
        }
    });
    write_full_box(o, b"stss", 0, 0, |o| {
        let keys: Vec<u32> = samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.key)
            .map(|(i, _)| i as u32 + 1)
            .collect();
        o.extend_from_slice(&(keys.len() as u32).to_be_bytes());
        for k in keys {
            o.extend_from_slice(&k.to_be_bytes());
        }
    });
    write_full_box(o, b"stsz", 0, 0, |o| {
        o.extend_from_slice(&0u32.to_be_bytes());
        o.extend_from_slice(&(samples.len() as u32).to_be_bytes());
        for s in samples {
            o.extend_from_slice(&s.size.to_be_bytes());
        }
    });
    write_full_box(o, b"stsc", 0, 0, |o| {
        let mut rows: Vec<(u32, u32, u32)> = Vec::new();
        for (ci, &(first, count)) in chunks.iter().enumerate() {
            let sdi = samples[first].entry as u32 + 1;
            if rows.last().is_some_and(|&(_, c, d)| c == count as u32 && d == sdi) {
                continue;
            }
            rows.push((ci as u32 + 1, count as u32, sdi));
        }
        o.extend_from_slice(&(rows.len() as u32).to_be_bytes());
        for (a, b, c) in rows {
            for v in [a, b, c] {
                o.extend_from_slice(&v.to_be_bytes());
            }
        }
    });
    let mut offsets = Vec::with_capacity(chunks.len());
    let mut pos = mdat_offset;
    let mut ci = 0;
    for (i, s) in samples.iter().enumerate() {
        if ci < chunks.len() && chunks[ci].0 == i {
            offsets.push(pos);
            ci += 1;
        }
        pos += u64::from(s.size);
    }
    if co64 {
        write_full_box(o, b"co64", 0, 0, |o| {
            o.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
            for off in offsets {
                o.extend_from_slice(&off.to_be_bytes());
            }
        });
    } else {
        write_full_box(o, b"stco", 0, 0, |o| {
            o.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
            for off in offsets {
                o.extend_from_slice(&(off as u32).to_be_bytes());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::reader;
    use crate::store::FrameRef;

    fn entry(id: i64, w: u32) -> Arc<SampleEntryRow> {
        let mut data = vec![0u8; 40];
        data[4..8].copy_from_slice(b"avc1");
        data[32..34].copy_from_slice(&(w as u16).to_be_bytes());
        Arc::new(SampleEntryRow {
            id,
            data,
            codec: "h264".into(),
            width: w,
            height: 480,
        })
    }

    /// A segment of `n` frames at 25 fps from `start`, key frame every 10.
    fn seg(id: i64, start: i64, n: usize, e: Arc<SampleEntryRow>) -> SegmentFrames {
        let frames = (0..n)
            .map(|i| FrameRef {
                time: Time90k(start + i as i64 * 3600),
                duration: 3600,
                offset: 100 + i as u64 * 1000,
                size: 500 + i as u32,
                key: i % 10 == 0,
            })
            .collect();
        SegmentFrames {
            id,
            path: format!("/seg{id}").into(),
            entry: e,
            frames,
        }
    }

    fn parse(clip: &Clip) -> reader::Track {
        // Materialize the file with zero-filled media so the reader can parse it.
        let mut file = clip.head.clone();
        file.resize(clip.len as usize, 0);
        reader::read_track(&file).unwrap()
    }

    #[test]
    fn starts_at_key_frame_and_trims_with_edit_list() {
        let s = [seg(1, 0, 50, entry(1, 640))];
        // Start at frame 13 (+100 ticks): key frame 10 is the first sample.
        let clip = build(&s, &[], Time90k(13 * 3600 + 100), Time90k(40 * 3600)).unwrap();
        let t = parse(&clip);
        assert_eq!(t.samples.len(), 30); // frames 10..=39
        assert_eq!(t.samples[0].size, 510);
        assert!(t.samples[0].key);
        assert_eq!(t.edit_media_time, Some(3 * 3600 + 100));
        assert_eq!(t.edit_duration, Some(27 * 3600 - 100));
        assert_eq!(clip.slices[0].offset, 100 + 10 * 1000);
        assert!(clip.gaps.is_empty());
        // Chunk offset points just past the header.
        assert_eq!(t.samples[0].offset, clip.head.len() as u64);
        assert_eq!(t.samples[1].offset, clip.head.len() as u64 + 510);
        assert_eq!(t.width, 640);
    }

    #[test]
    fn gaps_are_held_on_the_timeline_and_reported() {
        let e = entry(1, 640);
        let s = [seg(1, 0, 20, e.clone()), seg(2, 20 * 3600 + 90_000 * 3, 20, e)];
        let clip = build(&s, &[], Time90k(0), Time90k(10_000_000)).unwrap();
        assert_eq!(clip.gaps.len(), 1);
        assert!((clip.gaps[0].seconds - 3.0).abs() < 1e-9);
        let t = parse(&clip);
        assert_eq!(t.samples.len(), 40);
        assert_eq!(t.samples[19].duration, 3600 + 270_000);
        // The file's timeline equals wall time: total = 40 frames + 3 s.
        let total: u64 = t.samples.iter().map(|s| u64::from(s.duration)).sum();
        assert_eq!(total, 40 * 3600 + 270_000);
        assert_eq!(t.chunk_count, 2);
    }

    #[test]
    fn parameter_change_adds_a_sample_entry() {
        let s = [seg(1, 0, 10, entry(1, 640)), seg(2, 10 * 3600, 10, entry(2, 1280))];
        let clip = build(&s, &[], Time90k(0), Time90k(20 * 3600)).unwrap();
        let t = parse(&clip);
        assert_eq!(t.entry_count, 2);
        assert_eq!(t.samples[9].entry, 1);
        assert_eq!(t.samples[10].entry, 2);
    }

    #[test]
    fn range_errors() {
        let s = [seg(1, 0, 10, entry(1, 640))];
        assert_eq!(
            build(&s, &[], Time90k(5), Time90k(5)).unwrap_err(),
            ClipError::EmptyRange
        );
        assert_eq!(
            build(&s, &[], Time90k(0), Time90k(MAX_CLIP + 1)).unwrap_err(),
            ClipError::TooLong
        );
        assert_eq!(
            build(&s, &[], Time90k(10 * 3600), Time90k(20 * 3600)).unwrap_err(),
            ClipError::NoFootage
        );
        assert_eq!(
            build(&[], &[], Time90k(0), Time90k(1)).unwrap_err(),
            ClipError::NoFootage
        );
    }

    #[test]
    fn end_trims_last_frame_and_etag_tracks_content() {
        let s = [seg(1, 0, 10, entry(1, 640))];
        let a = build(&s, &[], Time90k(0), Time90k(5 * 3600 + 10)).unwrap();
        let t = parse(&a);
        assert_eq!(t.samples.len(), 6);
        assert_eq!(t.samples[5].duration, 10);
        let b = build(&s, &[], Time90k(0), Time90k(5 * 3600 + 11)).unwrap();
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, build(&s, &[], Time90k(0), Time90k(5 * 3600 + 10)).unwrap().etag);
        // The segment grows past the clip's end: same file, same ETag.
        let grown = [seg(1, 0, 30, entry(1, 640))];
        assert_eq!(
            a.etag,
            build(&grown, &[], Time90k(0), Time90k(5 * 3600 + 10)).unwrap().etag
        );
        // Same frames from another segment: another file.
        let other = [seg(2, 0, 10, entry(1, 640))];
        assert_ne!(
            a.etag,
            build(&other, &[], Time90k(0), Time90k(5 * 3600 + 10)).unwrap().etag
        );
    }

    fn damaged(file: &str, a: i64, b: i64) -> DamagedSpan {
        DamagedSpan {
            file: file.into(),
            why: "file missing".into(),
            start: Time90k(a).to_rfc3339(),
            end: Time90k(b).to_rfc3339(),
            start_90k: Time90k(a),
            end_90k: Time90k(b),
        }
    }

    #[test]
    fn overlapping_segments_report_every_omitted_frame() {
        let e = entry(1, 640);
        // A camera clock stepped back 10 frames: segment 2 starts 10 frames
        // before segment 1 ends. Its first 10 frames are shadowed, and its
        // frames up to its next key frame (frame 10 of the segment, key every
        // 10) depend on them.
        let s = [seg(1, 0, 30, e.clone()), seg(2, 20 * 3600, 30, e.clone())];
        let clip = build(&s, &[], Time90k(0), Time90k(100 * 3600)).unwrap();
        assert_eq!(clip.frames, 50);
        assert_eq!(clip.frames_omitted, 10);
        assert_eq!(
            clip.frames as u64 + clip.frames_omitted,
            60,
            "every stored frame is kept or listed"
        );
        assert_eq!(clip.overlaps.len(), 1);
        assert_eq!(clip.overlaps[0].segment, 2);
        assert_eq!(clip.overlaps[0].start, Time90k(20 * 3600).to_rfc3339());
        assert!((clip.overlaps[0].seconds - 10.0 * 3600.0 / 90_000.0).abs() < 1e-9);
        // Stepped back 5 frames: the 5 shadowed frames and the 5 after them up
        // to segment 2's next key frame are omitted, counted in one stretch.
        let s = [seg(1, 0, 30, e.clone()), seg(2, 25 * 3600, 30, e.clone())];
        let clip = build(&s, &[], Time90k(0), Time90k(100 * 3600)).unwrap();
        assert_eq!(clip.frames_omitted, 10);
        assert_eq!(clip.overlaps.len(), 1);
        let t = parse(&clip);
        assert_eq!(t.samples.len(), 50);
        assert!(t.samples[30].key, "the later segment resumes at a key frame");
        // Omitted frames outside the requested range are not reported.
        let clip = build(&s, &[], Time90k(0), Time90k(20 * 3600)).unwrap();
        assert_eq!(clip.frames_omitted, 0);
        assert!(clip.overlaps.is_empty());
        // Without overlap nothing is omitted.
        let s = [seg(1, 0, 30, e.clone()), seg(2, 30 * 3600, 30, e)];
        let clip = build(&s, &[], Time90k(0), Time90k(100 * 3600)).unwrap();
        assert_eq!((clip.frames, clip.frames_omitted), (60, 0));
    }

    #[test]
    fn damaged_footage_is_named_in_its_gap_or_the_error() {
        let e = entry(1, 640);
        // Segment 2 (frames 20..40) is missing: a gap between 1 and 3, naming the file.
        let s = [seg(1, 0, 20, e.clone()), seg(3, 40 * 3600, 20, e.clone())];
        let d = [damaged("/v/2.seg", 20 * 3600, 40 * 3600)];
        let clip = build(&s, &d, Time90k(0), Time90k(60 * 3600)).unwrap();
        assert_eq!(clip.gaps.len(), 1);
        assert_eq!(clip.gaps[0].damaged, vec!["/v/2.seg: file missing".to_string()]);
        assert_eq!(clip.damaged, d.to_vec());
        // A range inside the damaged segment only: an error naming it.
        let err = build(&s, &d, Time90k(25 * 3600), Time90k(35 * 3600)).unwrap_err();
        assert_eq!(err, ClipError::Unreadable("/v/2.seg: file missing".into()));
        // A day of missing files is counted, not listed file by file.
        let many: Vec<DamagedSpan> = (0..30)
            .map(|i| damaged(&format!("/v/{i}"), 20 * 3600, 40 * 3600))
            .collect();
        let clip = build(&s, &many, Time90k(0), Time90k(60 * 3600)).unwrap();
        assert_eq!(clip.gaps[0].damaged.len(), NAMED_DAMAGE + 1);
        assert_eq!(clip.gaps[0].damaged[NAMED_DAMAGE], "and 20 more damaged segments");
        // Damage outside the range is not reported.
        let clip = build(&s, &d, Time90k(0), Time90k(10 * 3600)).unwrap();
        assert!(clip.damaged.is_empty() && clip.gaps.is_empty());
    }
}
