//! The replay client's session: RTSP over TCP with retina (DESCRIBE, SETUP,
//! PLAY with `Require: onvif-replay`, `Range: clock=…`, `Rate-Control: no`),
//! frames depacketized as live ingest does (MP4 format, the same sample-entry
//! path), each paired with the `0xABAC` extension of its first packet.
//!
//! Owns one replay request. Must never read ahead of its caller (retina reads
//! the socket only while `next()` is polled, so TCP flow control paces the
//! camera) and never buffer more than one access unit (`max_frame_bytes`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use retina::client::{Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};

use super::onvif::{self, ClockRange, Extension};
use super::{ReplayError, ReplayFrame, ReplaySource};
use crate::store::SampleEntry;
use crate::time::Time90k;

/// DESCRIBE, SETUP and PLAY together may take this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// No frame for this long: the camera stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Header extensions remembered to pair frames with (a frame's first packet
/// is at most a few packets back when its last one completes it).
const KEEP_EXTENSIONS: usize = 8;

/// A replay under way; see `super::open`.
pub struct ReplayStream {
    url: String,
    demuxed: Demuxed,
    stream_i: usize,
    entry: Option<Arc<SampleEntry>>,
    /// The requested end (camera clock): frames captured at or after it are
    /// not the caller's, though the camera may send one (see `open`).
    end: Time90k,
    done: bool,
}

impl std::fmt::Debug for ReplayStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayStream")
            .field("url", &self.url)
            .field("done", &self.done)
            .finish()
    }
}

/// Maps a retina error of the session's setup to a replay error.
fn setup_error(url: &str, e: retina::Error) -> ReplayError {
    let reason = crate::excerpt::short(format!("{e}").lines().next().unwrap_or_default());
    match e.status_code() {
        // Invalid Range: the camera no longer (or never) had the interval.
        Some(457) => ReplayError::NotAvailable {
            url: url.to_string(),
            available: available_in(&format!("{e}")),
        },
        // Option not supported, method not allowed/implemented, not found.
        Some(551 | 405 | 501 | 404) => ReplayError::Unsupported {
            url: url.to_string(),
            reason,
        },
        Some(_) => ReplayError::Stream {
            url: url.to_string(),
            reason,
        },
        None => ReplayError::Connect {
            url: url.to_string(),
            reason,
        },
    }
}

/// The recorded range a 457 answer names (vendored retina quotes the
/// answer's `Range` header in the error: `…; Range: clock=A-B`).
pub(crate) fn available_in(error_text: &str) -> Option<(Time90k, Time90k)> {
    let at = error_text.find("Range: clock=")? + "Range: ".len();
    let value = error_text[at..].split_whitespace().next()?;
    let r = ClockRange::parse(value).ok()?;
    Some((r.start?, r.end?))
}

pub(super) async fn open(src: &ReplaySource, start: Time90k, end: Time90k) -> Result<ReplayStream, ReplayError> {
    let url = src.url.to_string();
    if end <= start {
        return Err(ReplayError::NotAvailable { url, available: None });
    }
    let creds = src.credentials.as_ref().map(|c| retina::client::Credentials {
        username: c.username.clone(),
        password: c.password.clone(),
    });
    let opts = SessionOptions::default()
        .creds(creds)
        .user_agent("Tandem NVR".into())
        .max_frame_bytes(src.max_frame_bytes);
    // In whole milliseconds, rounded outwards: truncating END would leave
    // out a frame captured in its last millisecond (the flaky edge_replay
    // test); what the camera sends past `end` is trimmed in `next`.
    let range = ClockRange {
        start: Some(start),
        end: Some(end),
    }
    .format_covering();
    let connect = async {
        let mut session = Session::describe(src.url.clone(), opts)
            .await
            .map_err(|e| setup_error(&url, e))?;
        let stream_i = session
            .streams()
            .iter()
            .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
            .ok_or_else(|| ReplayError::Unsupported {
                url: url.clone(),
                reason: "the camera offers no H.264 or H.265 video stream".into(),
            })?;
        // TCP always: its flow control is how the caller paces the camera.
        session
            .setup(
                stream_i,
                SetupOptions::default()
                    .transport(Transport::Tcp(Default::default()))
                    .frame_format(FrameFormat::MP4),
            )
            .await
            .map_err(|e| setup_error(&url, e))?;
        let playing = session
            .play(PlayOptions::default().range(&range).onvif_replay(false))
            .await
            .map_err(|e| setup_error(&url, e))?;
        let mut demuxed = playing.demuxed().map_err(|e| setup_error(&url, e))?;
        demuxed.keep_header_extensions(KEEP_EXTENSIONS);
        Ok::<_, ReplayError>((demuxed, stream_i))
    };
    let (demuxed, stream_i) =
        tokio::time::timeout(SETUP_TIMEOUT, connect)
            .await
            .map_err(|_| ReplayError::Connect {
                url: url.clone(),
                reason: format!("RTSP setup timed out after {} s", SETUP_TIMEOUT.as_secs()),
            })??;
    tracing::debug!(%url, %range, "replay started");
    Ok(ReplayStream {
        url,
        demuxed,
        stream_i,
        entry: None,
        end,
        done: false,
    })
}

impl ReplayStream {
    fn stream_error(&self, reason: impl Into<String>) -> ReplayError {
        ReplayError::Stream {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    pub(super) async fn next_frame(&mut self) -> Option<Result<ReplayFrame, ReplayError>> {
        if self.done {
            return None;
        }
        let r = self.next_inner().await;
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }

    async fn next_inner(&mut self) -> Option<Result<ReplayFrame, ReplayError>> {
        loop {
            let f = match tokio::time::timeout(STALL_TIMEOUT, self.demuxed.next()).await {
                Err(_) => {
                    return Some(Err(
                        self.stream_error(format!("no frame for {} s", STALL_TIMEOUT.as_secs()))
                    ))
                }
                // The server closed after the range: the stream is complete.
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    let text = crate::excerpt::short(format!("{e}").lines().next().unwrap_or_default());
                    return Some(Err(self.stream_error(text)));
                }
                Ok(Some(Ok(CodecItem::VideoFrame(f)))) => f,
                Ok(Some(Ok(_))) => continue,
            };
            if f.loss() > 0 {
                return Some(Err(self.stream_error(format!("{} packets lost", f.loss()))));
            }
            let ext = self
                .demuxed
                .header_extension(self.stream_i, f.timestamp())
                .filter(|e| e.profile == onvif::EXTENSION_ID)
                .and_then(|e| Extension::decode_data(&e.data));
            let Some(ext) = ext else {
                return Some(Err(ReplayError::Unsupported {
                    url: self.url.clone(),
                    reason: "a frame without the ONVIF replay header extension 0xABAC".into(),
                }));
            };
            let capture = onvif::time_from_ntp(ext.ntp);
            if capture >= self.end {
                // Past the requested range (the millisecond END was rounded
                // up by): frames come in capture order, so the replay is over.
                return None;
            }
            if f.has_new_parameters() || self.entry.is_none() {
                match self.sample_entry() {
                    Ok(e) => self.entry = Some(e),
                    Err(reason) => return Some(Err(self.stream_error(reason))),
                }
            }
            if ext.flags.terminal {
                self.done = true;
            }
            let sample_entry = self.entry.clone().expect("set above");
            return Some(Ok(ReplayFrame {
                capture,
                key: f.is_random_access_point(),
                flags: ext.flags,
                sample_entry,
                data: f.into_data(),
            }));
        }
    }

    /// The sample entry of the stream's current parameters (the one live
    /// ingest builds).
    fn sample_entry(&self) -> Result<Arc<SampleEntry>, String> {
        let Some(ParametersRef::Video(p)) = self.demuxed.streams()[self.stream_i].parameters() else {
            return Err("no video parameters before the first frame".into());
        };
        crate::ingest::sample_entry_of(p).map(Arc::new)
    }

    /// Whether the frame with the T flag has been returned.
    pub fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_range_from_a_457() {
        let text = "RTSP PLAY response error 457 Invalid Range: Unexpected RTSP response status; \
                    Range: clock=20261124T101500Z-20261124T101600.500Z\n\nconn: …";
        let (a, b) = available_in(text).unwrap();
        assert_eq!(b.0 - a.0, 60 * 90_000 + 45_000);
        assert_eq!(available_in("457 Invalid Range"), None);
        assert_eq!(available_in("Range: clock=garbage"), None);
    }
}
