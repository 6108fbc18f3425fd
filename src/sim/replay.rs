//! The simulated camera's ONVIF replay, sans IO: which requests ask for
//! replay, what a PLAY asks for, the answer's headers, and the RTP packets of
//! a replayed frame (SEI stamp rebuilt exactly as it was live, `0xABAC`
//! extension on the first packet).
//!
//! Owns the replay decisions for `server`. Must never touch sockets or
//! clocks: the server passes in the ring, the loops and the time.

use super::edge::{EdgeFrame, EdgeRing, PlanError, PlannedFrame, Source};
use super::rtsp::{self, Request};
use super::video::EncodedLoop;
use crate::nal::FrameStamp;
use crate::replay::onvif::{self, ClockRange, Extension};
use crate::time::Time90k;

/// The only `Require` option this camera supports.
pub const ONVIF_REPLAY: &str = "onvif-replay";

/// What a request's `Require` header asks for: nothing, ONVIF replay, or an
/// option this camera does not have (answer 551 with `Unsupported`).
#[derive(Debug, PartialEq, Eq)]
pub enum Require {
    None,
    Replay,
    Unsupported(String),
}

pub fn require(req: &Request) -> Require {
    let mut out = Require::None;
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("Require") {
            continue;
        }
        for tag in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag.eq_ignore_ascii_case(ONVIF_REPLAY) {
                out = Require::Replay;
            } else {
                return Require::Unsupported(tag.to_string());
            }
        }
    }
    out
}

/// Whether a request's `Range` is in the `clock=` unit (a recording's).
pub fn clock_range(req: &Request) -> bool {
    req.header("Range")
        .is_some_and(|r| r.trim_start().starts_with("clock="))
}

/// A replay PLAY's parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct PlayRequest {
    pub range: ClockRange,
    /// `Rate-Control: no`: as fast as the connection takes it.
    pub rate_control: bool,
    /// Low byte of the PLAY's CSeq, echoed in every `0xABAC` extension.
    pub cseq: u8,
}

impl PlayRequest {
    /// Parses a PLAY carrying `Require: onvif-replay`. No `Range` means the
    /// whole recording; a `Range` that is not `clock=` is refused.
    pub fn parse(req: &Request) -> Result<PlayRequest, String> {
        let range = match req.header("Range") {
            Some(r) => ClockRange::parse(r).map_err(|e| e.to_string())?,
            None => ClockRange { start: None, end: None },
        };
        let rate_control = !req
            .header("Rate-Control")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"));
        let cseq = req.cseq().trim().parse::<u32>().unwrap_or(0) as u8;
        Ok(PlayRequest {
            range,
            rate_control,
            cseq,
        })
    }

    /// The frames to send, or the 457 answer's `Range` of what is recorded.
    pub fn plan(&self, ring: &EdgeRing) -> Result<Vec<PlannedFrame>, Option<ClockRange>> {
        let us = |t: Option<Time90k>| t.map(Time90k::as_unix_micros);
        ring.plan(us(self.range.start), us(self.range.end))
            .map_err(|e| match e {
                PlanError::Empty => None,
                PlanError::Outside { first, last } => Some(ClockRange {
                    start: Some(Time90k::from_unix_micros(first)),
                    end: Some(Time90k::from_unix_micros(last)),
                }),
            })
    }
}

/// The 200 answer's `Range`: from the first frame sent to the end of the last.
pub fn answered_range(plan: &[PlannedFrame], fps: u32) -> ClockRange {
    let t = |f: &PlannedFrame| Time90k::from_unix_micros(f.frame.capture_unix_micros);
    ClockRange {
        start: plan.first().map(t),
        end: plan.last().map(|f| t(f) + i64::from(90_000 / fps.max(1))),
    }
}

/// Who the camera is, for the SEI stamp of a replayed frame.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub camera_id: u32,
    pub boot_id: u64,
}

/// The RTP payloads of a recorded frame, stamped as it was live.
pub fn payloads(frame: &EdgeFrame, main: &EncodedLoop, switched: Option<&EncodedLoop>, who: Identity) -> Vec<Vec<u8>> {
    let lp = match (frame.source, switched) {
        (Source::Switched, Some(alt)) => alt,
        _ => main,
    };
    let stamp = FrameStamp {
        camera_id: who.camera_id,
        seq: frame.n,
        capture_unix_micros: frame.capture_unix_micros,
        boot_id: who.boot_id,
    }
    .to_h264_sei();
    lp.frames[frame.index as usize % lp.frames.len()].payloads_with_sei(&stamp)
}

/// RTP header fields shared by a session's packets.
#[derive(Clone, Copy, Debug)]
pub struct RtpParams {
    pub ssrc: u32,
    pub timestamp: u32,
    pub cseq: u8,
}

/// Appends the RTP packets of one replayed frame to `out`, each prefixed by
/// `prefix(len)` (the `$` interleave header over TCP, nothing over UDP), and
/// advances `seq`. Returns the packets' total RTP bytes (for RTCP).
pub fn packetize(
    planned: &PlannedFrame,
    payloads: &[Vec<u8>],
    p: RtpParams,
    seq: &mut u16,
    mut prefix: impl FnMut(&mut Vec<u8>, usize),
    out: &mut Vec<Vec<u8>>,
) -> usize {
    let ext = Extension {
        ntp: onvif::ntp_from_time(Time90k::from_unix_micros(planned.frame.capture_unix_micros)),
        flags: planned.flags,
        cseq: p.cseq,
    }
    .encode();
    let last = payloads.len().saturating_sub(1);
    let mut bytes = 0;
    for (k, payload) in payloads.iter().enumerate() {
        let extension = (k == 0).then_some(&ext[..]);
        let len = 12 + extension.map_or(0, <[u8]>::len) + payload.len();
        let mut pkt = Vec::with_capacity(len + 4);
        prefix(&mut pkt, len);
        rtsp::rtp_packet_ext(&mut pkt, k == last, *seq, p.timestamp, p.ssrc, extension, payload);
        *seq = seq.wrapping_add(1);
        bytes += len;
        out.push(pkt);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::ReplayFlags;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "PLAY".into(),
            uri: "rtsp://h/cam1".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn require_header() {
        assert_eq!(require(&req(&[])), Require::None);
        assert_eq!(require(&req(&[("Require", "onvif-replay")])), Require::Replay);
        assert_eq!(require(&req(&[("require", " ONVIF-Replay ")])), Require::Replay);
        assert_eq!(
            require(&req(&[("Require", "onvif-replay, x-foo")])),
            Require::Unsupported("x-foo".into())
        );
        assert!(clock_range(&req(&[("Range", "clock=19000101T000000Z-")])));
        assert!(!clock_range(&req(&[("Range", "npt=0.000-")])));
        assert!(!clock_range(&req(&[])));
    }

    #[test]
    fn play_request() {
        let p = PlayRequest::parse(&req(&[
            ("CSeq", "261"),
            ("Range", "clock=20261124T101500Z-20261124T101505Z"),
            ("Rate-Control", "no"),
        ]))
        .unwrap();
        assert!(!p.rate_control);
        assert_eq!(p.cseq, 5, "low byte of 261");
        assert!(p.range.start.is_some() && p.range.end.is_some());
        let p = PlayRequest::parse(&req(&[("CSeq", "3"), ("Rate-Control", "yes")])).unwrap();
        assert!(p.rate_control);
        assert_eq!(p.range, ClockRange { start: None, end: None });
        assert!(PlayRequest::parse(&req(&[("Range", "npt=0-")])).is_err());
    }

    #[test]
    fn first_packet_carries_the_extension() {
        let planned = PlannedFrame {
            frame: EdgeFrame {
                n: 7,
                capture_unix_micros: 1_000_000,
                source: Source::Main,
                index: 0,
                key: true,
            },
            flags: ReplayFlags {
                clean_point: true,
                terminal: true,
                ..Default::default()
            },
        };
        let payloads = vec![vec![0x67, 1], vec![0x68, 2], vec![0x65, 3, 4]];
        let mut seq = u16::MAX;
        let mut out = Vec::new();
        let params = RtpParams {
            ssrc: 9,
            timestamp: 1234,
            cseq: 4,
        };
        let bytes = packetize(&planned, &payloads, params, &mut seq, |_, _| {}, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(seq, 2, "wrapped past 65535");
        assert_eq!(bytes, out.iter().map(Vec::len).sum::<usize>());
        let ext = Extension::from_rtp(&out[0]).expect("extension on the first packet");
        assert_eq!(onvif::time_from_ntp(ext.ntp), Time90k::from_unix_micros(1_000_000));
        assert_eq!(ext.flags, planned.flags);
        assert_eq!(ext.cseq, 4);
        assert!(out[1..].iter().all(|p| Extension::from_rtp(p).is_none()));
        // Marker on the last packet only; payload intact after the extension.
        assert!(out.iter().map(|p| p[1] & 0x80 != 0).eq([false, false, true]));
        assert_eq!(&out[0][28..], &[0x67, 1]);
        assert_eq!(&out[2][12..], &[0x65, 3, 4]);
        // TCP framing: `$`, channel, length.
        let mut out = Vec::new();
        packetize(
            &planned,
            &payloads[..1],
            params,
            &mut seq,
            |v, len| {
                v.push(b'$');
                v.push(0);
                v.extend_from_slice(&(len as u16).to_be_bytes());
            },
            &mut out,
        );
        assert_eq!(&out[0][..4], &[b'$', 0, 0, 30]);
    }
}
