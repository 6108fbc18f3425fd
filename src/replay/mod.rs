//! Replay of a camera's edge storage (ONVIF Profile G, Streaming
//! Specification §6 "Playback"): Tandem's client side. Opens an RTSP session
//! on the camera's replay URL, asks for exactly `[start, end)` of the camera's
//! own recording (`Require: onvif-replay`, `Range: clock=…`, `Rate-Control:
//! no`), and yields the frames with their capture time taken from the RTP
//! header extension `0xABAC` (NTP time + C/E/D/T flags).
//!
//! Owns the protocol only: it never decides which interval to ask for (that
//! is `gapfill`), never writes to the store, and never paces itself — the
//! caller reads frames at the rate it wants and TCP's flow control slows the
//! camera down, so a site-wide bandwidth cap lives in one place.
//!
//! The contract between `edge` (this client) and `gapfill` (its user) is
//! the types below and `open`/`ReplayStream::next`; the wire format is in
//! `onvif`, the session in `client`.

mod client;
pub mod onvif;

pub use client::ReplayStream;

use std::sync::Arc;

use crate::store::SampleEntry;
use crate::time::Time90k;

/// Where and how to ask a camera for its recording.
#[derive(Clone, Debug)]
pub struct ReplaySource {
    /// `rtsp://` URL without credentials: `[[network_camera]] replay_url`, or
    /// its live `url` when not given.
    pub url: url::Url,
    pub credentials: Option<crate::config::Credentials>,
    /// Bound on one access unit, as for live ingest.
    pub max_frame_bytes: usize,
}

/// The flags of the ONVIF replay header extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayFlags {
    /// C: the frame is a clean point (a key frame).
    pub clean_point: bool,
    /// E: the last frame of a contiguous run of the recording.
    pub end_of_run: bool,
    /// D: a discontinuity lies before this frame (the recording has a hole).
    pub discontinuity: bool,
    /// T: the last frame the server will send for this request.
    pub terminal: bool,
}

/// One frame of the camera's recording.
#[derive(Debug)]
pub struct ReplayFrame {
    /// When the camera captured it, by the camera's clock (from the NTP stamp).
    pub capture: Time90k,
    pub key: bool,
    pub flags: ReplayFlags,
    pub sample_entry: Arc<SampleEntry>,
    /// The access unit as the writer stores it (same format as live ingest).
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The camera answered, but not as ONVIF replay (no `0xABAC` stamps,
    /// refused `Require: onvif-replay`, …): retrying will not help.
    #[error("{url} does not replay its recording: {reason}")]
    Unsupported { url: String, reason: String },
    #[error("replay from {url} failed: {reason}")]
    Stream { url: String, reason: String },
    /// The camera does not have the interval (457 Invalid Range): it was
    /// overwritten or never recorded. `available` is what the camera says it
    /// holds, when it says. Retrying will not bring it back: gapfill reports
    /// the interval lost.
    #[error("{url} no longer has that interval{}", fmt_available(.available))]
    NotAvailable {
        url: String,
        available: Option<(Time90k, Time90k)>,
    },
}

fn fmt_available(a: &Option<(Time90k, Time90k)>) -> String {
    match a {
        Some((s, e)) => format!(" (it holds {s} to {e})"),
        None => String::new(),
    }
}

/// Opens a replay of the camera's recording of `[start, end)` (the camera's
/// clock): the first frame is the key frame at or before `start` (or the
/// first the camera still holds), the last one captured before `end` —
/// normally the one with `flags.terminal`; when the camera's terminal frame
/// was captured at or after `end` (the request's END is rounded up to the
/// millisecond), the stream ends before it, without a T.
pub async fn open(src: &ReplaySource, start: Time90k, end: Time90k) -> Result<ReplayStream, ReplayError> {
    client::open(src, start, end).await
}

impl ReplayStream {
    /// The next frame; `None` after the terminal frame, at a frame captured
    /// at or after `end`, or when the camera closed the session after the
    /// range. Reads the socket only while
    /// awaited: the caller's pace is the camera's pace.
    pub async fn next(&mut self) -> Option<Result<ReplayFrame, ReplayError>> {
        self.next_frame().await
    }
}

impl ReplayError {
    /// Worth another attempt later (network, camera busy), as opposed to a
    /// camera that cannot replay at all.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ReplayError::Unsupported { .. } | ReplayError::NotAvailable { .. })
    }
}
