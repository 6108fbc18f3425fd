//! What a recorded frame is, shared by ingest, the recording policy, the
//! store and the live hub: the frame as handed to the writer, and the codec
//! parameters (sample entry) of a run of frames. Its own module so that
//! `recording` (the policy that passes or holds frames) and `store` (which
//! applies the policy) both depend on it instead of on each other.
//! Must never hold I/O or policy: data only.

use std::sync::Arc;

use crate::time::Time90k;

/// A frame on its way to the writer.
#[derive(Debug)]
pub struct Frame {
    pub channel: u32,
    /// Changes whenever ingest reconnects or drops a frame: a new run never
    /// continues the previous segment.
    pub run: u64,
    pub time: Time90k,
    pub key: bool,
    pub sample_entry: Arc<SampleEntry>,
    /// Shared with the live hub and motion without a copy (see ingest).
    pub data: bytes::Bytes,
    /// The camera's clock minus this NVR's for this frame, in 90 kHz ticks
    /// (`ingest::capture`), `None` while unknown: the segment row keeps its
    /// first known value, so peers merge by the camera's capture time.
    pub capture_offset: Option<i64>,
}

/// The codec parameters of a run of frames: the mp4 sample entry box plus what
/// the API reports about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleEntry {
    pub data: Vec<u8>,
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
}

impl SampleEntry {
    /// Reads codec and size back from an `avc1`/`hvc1` VisualSampleEntry box.
    pub fn parse(data: Vec<u8>) -> Option<SampleEntry> {
        if data.len() < 36 {
            return None;
        }
        let codec = match &data[4..8] {
            b"avc1" | b"avc3" => "h264",
            b"hvc1" | b"hev1" => "h265",
            _ => return None,
        };
        let width = u32::from(u16::from_be_bytes([data[32], data[33]]));
        let height = u32::from(u16::from_be_bytes([data[34], data[35]]));
        Some(SampleEntry {
            data,
            codec,
            width,
            height,
        })
    }
}
