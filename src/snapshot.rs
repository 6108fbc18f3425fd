//! Still pictures from stored footage: the key frame at or after a time (an
//! event's thumbnail) or at or before it (a timeline hover, a playback
//! poster), decoded with the openh264 path motion detection uses, scaled to a
//! requested width and encoded as JPEG.
//!
//! Owns the key-frame choice (pure), the scaler (pure) and the one-frame
//! decode. Must never decode more than the one key frame it chose, never read
//! a frame larger than ingest accepts, never write to the store, and never
//! run on the async runtime (it blocks: callers use `spawn_blocking`).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

use crate::motion::{annex_b, MotionFrame};
use crate::store::reader::{FrameRef, SegmentFrames};
use crate::store::{Reader, SampleEntry};
use crate::time::{Time90k, TICKS_PER_SEC};

/// The narrowest picture a client may ask for.
pub const MIN_WIDTH: u32 = 64;
/// The widest: a full-HD frame, never an upscaled 4K one.
pub const MAX_WIDTH: u32 = 1920;
/// The width when the client names none: a list thumbnail that stays sharp
/// on a high-density screen.
pub const DEFAULT_WIDTH: u32 = 640;
/// JPEG quality (1–100): small files with no visible blocking at thumbnail size.
pub const QUALITY: u8 = 80;
/// How far from the asked time a key frame is looked for: a few GOPs of even
/// a slow camera, yet the index read stays a couple of segments.
pub const SEARCH: i64 = 2 * 60 * TICKS_PER_SEC;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No key frame within `SEARCH` of the time on that side.
    #[error("no stored key frame {0}")]
    NoFootage(String),
    /// A codec openh264 cannot decode (`h265`).
    #[error("snapshots decode H.264 only; this footage is {0}")]
    Unsupported(&'static str),
    #[error("`width` must be from {MIN_WIDTH} to {MAX_WIDTH} (got {0})")]
    Width(u32),
    #[error("decoding the key frame: {0}")]
    Decode(String),
    #[error("encoding the JPEG: {0}")]
    Encode(String),
    #[error("reading the store index: {0}")]
    Store(String),
    #[error("reading the key frame: {0}")]
    Io(#[from] std::io::Error),
}

/// A JPEG of one stored key frame.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// When the key frame was captured (wall clock).
    pub time: Time90k,
}

/// An RGB picture, 3 bytes a pixel, rows packed.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// `width` if it is one a client may ask for.
pub fn check_width(width: u32) -> Result<u32, SnapshotError> {
    if (MIN_WIDTH..=MAX_WIDTH).contains(&width) {
        Ok(width)
    } else {
        Err(SnapshotError::Width(width))
    }
}

/// The JPEG of the key frame of `channel` at or after (`at_or_after`) or at
/// or before `time`, `width` pixels wide. Blocking.
pub fn jpeg_at(
    reader: &Reader,
    channel: u32,
    time: Time90k,
    at_or_after: bool,
    width: u32,
) -> Result<Vec<u8>, SnapshotError> {
    Ok(snapshot_at(reader, channel, time, at_or_after, width)?.jpeg)
}

/// Like `jpeg_at`, with the picture's size and the key frame's time.
pub fn snapshot_at(
    reader: &Reader,
    channel: u32,
    time: Time90k,
    at_or_after: bool,
    width: u32,
) -> Result<Snapshot, SnapshotError> {
    let width = check_width(width)?;
    let (start, end) = search_window(time, at_or_after);
    let footage = reader
        .footage(channel, start, end)
        .map_err(|e| SnapshotError::Store(format!("{e:#}")))?;
    let Some((s, f)) = choose_key_frame(&footage.segments, time, at_or_after) else {
        let side = if at_or_after { "at or after" } else { "at or before" };
        return Err(SnapshotError::NoFootage(format!(
            "on channel {channel} {side} {} (looked {} s {})",
            time.to_rfc3339(),
            SEARCH / TICKS_PER_SEC,
            if at_or_after { "later" } else { "earlier" }
        )));
    };
    let seg = &footage.segments[s];
    decodable(&seg.entry.codec)?;
    let data = read_frame(&seg.path, &f)?;
    let entry = SampleEntry::parse(seg.entry.data.clone())
        .ok_or_else(|| SnapshotError::Decode("the stored sample entry is not avc1/avc3".into()))?;
    if entry.codec != seg.entry.codec {
        return Err(SnapshotError::Decode(format!(
            "the sample entry says {} but the index says {}",
            entry.codec, seg.entry.codec
        )));
    }
    let picture = decode_key_frame(Arc::new(entry), f.time, data)?;
    let (w, h) = scaled_size(picture.width, picture.height, width as usize);
    let small = scale(&picture, w, h);
    Ok(Snapshot {
        jpeg: encode_jpeg(&small)?,
        width: w as u32,
        height: h as u32,
        time: f.time,
    })
}

/// The stored time read to find the key frame: `SEARCH` on the asked side,
/// and one tick past `time` so a key frame exactly at it is included.
pub fn search_window(time: Time90k, at_or_after: bool) -> (Time90k, Time90k) {
    if at_or_after {
        (time, Time90k(time.0.saturating_add(SEARCH)))
    } else {
        (
            Time90k(time.0.saturating_sub(SEARCH)),
            Time90k(time.0.saturating_add(1)),
        )
    }
}

/// The key frame nearest `time` on the asked side, as (segment index, frame):
/// the earliest at or after, or the latest at or before. Overlapping
/// segments (a camera clock that stepped back) are compared by time, not by
/// order. Pure.
pub fn choose_key_frame(segments: &[SegmentFrames], time: Time90k, at_or_after: bool) -> Option<(usize, FrameRef)> {
    let keys = segments
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.frames.iter().filter(|f| f.key).map(move |f| (i, *f)));
    if at_or_after {
        keys.filter(|(_, f)| f.time >= time).min_by_key(|(_, f)| f.time)
    } else {
        // `max_by_key` keeps the last of equals; the first stored one is wanted.
        keys.filter(|(_, f)| f.time <= time)
            .fold(None, |best: Option<(usize, FrameRef)>, c| match best {
                Some(b) if b.1.time >= c.1.time => Some(b),
                _ => Some(c),
            })
    }
}

/// Whether this module decodes the codec the index names (openh264: H.264 only).
fn decodable(codec: &str) -> Result<(), SnapshotError> {
    match codec {
        "h264" => Ok(()),
        "h265" => Err(SnapshotError::Unsupported("h265")),
        _ => Err(SnapshotError::Unsupported("an unknown codec")),
    }
}

/// One frame's bytes from its segment file, refusing what ingest would never
/// have stored (a damaged index must not make us allocate gigabytes).
fn read_frame(path: &std::path::Path, f: &FrameRef) -> Result<Vec<u8>, SnapshotError> {
    let size = f.size as usize;
    if size > crate::ingest::MAX_FRAME_BYTES {
        return Err(SnapshotError::Decode(format!(
            "the key frame is {size} bytes, over the {} byte bound",
            crate::ingest::MAX_FRAME_BYTES
        )));
    }
    let mut buf = vec![0u8; size];
    std::fs::File::open(path)?.read_exact_at(&mut buf, f.offset)?;
    Ok(buf)
}

/// Decodes one key frame (length-prefixed NAL units, as stored) to RGB. The
/// sample entry's parameter sets go in front of it, as motion does.
pub fn decode_key_frame(entry: Arc<SampleEntry>, time: Time90k, data: Vec<u8>) -> Result<Rgb, SnapshotError> {
    decodable(entry.codec)?;
    let frame = MotionFrame {
        time,
        key: true,
        entry,
        data: data.into(),
    };
    let mut buf = Vec::with_capacity(frame.data.len() + 256);
    annex_b(&frame, &mut buf);
    let mut decoder = Decoder::new().map_err(|e| SnapshotError::Decode(format!("creating the decoder: {e}")))?;
    let to_rgb = |pic: &openh264::decoder::DecodedYUV<'_>| {
        let (width, height) = pic.dimensions();
        let mut data = vec![0u8; width * height * 3];
        pic.write_rgb8(&mut data);
        Rgb { width, height, data }
    };
    let decoded = decoder.decode(&buf).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if let Some(pic) = decoded {
        return Ok(to_rgb(&pic));
    }
    // A decoder that holds the picture back for reordering gives it up on flush.
    let rest = decoder
        .flush_remaining()
        .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    rest.first()
        .map(to_rgb)
        .ok_or_else(|| SnapshotError::Decode("the key frame gave no picture".into()))
}

/// The size of a `width`-wide picture with the source's aspect (square
/// pixels assumed), at least one pixel high.
pub fn scaled_size(src_w: usize, src_h: usize, width: usize) -> (usize, usize) {
    if src_w == 0 {
        return (width, 1);
    }
    let h = (src_h * width + src_w / 2) / src_w;
    (width, h.max(1))
}

/// Resizes by averaging the source pixels each output pixel covers (a box
/// filter: no aliasing when shrinking; nearest pixel when enlarging). Pure.
pub fn scale(src: &Rgb, w: usize, h: usize) -> Rgb {
    if (w, h) == (src.width, src.height) || src.width == 0 || src.height == 0 {
        return src.clone();
    }
    // Output column x covers source columns [xs[x], xs[x + 1]), at least one.
    let spans = |n_src: usize, n_dst: usize| -> Vec<(usize, usize)> {
        (0..n_dst)
            .map(|i| {
                let a = (i * n_src / n_dst).min(n_src - 1);
                let b = ((i + 1) * n_src / n_dst).clamp(a + 1, n_src);
                (a, b)
            })
            .collect()
    };
    let xs = spans(src.width, w);
    let ys = spans(src.height, h);
    let mut data = Vec::with_capacity(w * h * 3);
    let mut row = vec![0u32; src.width * 3];
    for &(y0, y1) in &ys {
        // Sum the covered source rows once, then each output pixel's columns.
        row.iter_mut().for_each(|v| *v = 0);
        for y in y0..y1 {
            let line = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
            for (acc, &v) in row.iter_mut().zip(line) {
                *acc += u32::from(v);
            }
        }
        for &(x0, x1) in &xs {
            let n = ((x1 - x0) * (y1 - y0)) as u32;
            for c in 0..3 {
                let sum: u32 = (x0..x1).map(|x| row[x * 3 + c]).sum();
                data.push(((sum + n / 2) / n) as u8);
            }
        }
    }
    Rgb {
        width: w,
        height: h,
        data,
    }
}

/// Baseline JPEG at `QUALITY`, 4:2:0 chroma.
pub fn encode_jpeg(p: &Rgb) -> Result<Vec<u8>, SnapshotError> {
    let w = u16::try_from(p.width).map_err(|_| SnapshotError::Encode(format!("{} pixels wide", p.width)))?;
    let h = u16::try_from(p.height).map_err(|_| SnapshotError::Encode(format!("{} pixels high", p.height)))?;
    let mut out = Vec::with_capacity(p.width * p.height / 4);
    jpeg_encoder::Encoder::new(&mut out, QUALITY)
        .encode(&p.data, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
