//! The ONVIF replay wire format (Streaming Specification §6), sans IO: the
//! `Range: clock=…` header, the RTP header extension `0xABAC` and NTP time.
//! Shared by Tandem's replay client and the simulated camera's replay server
//! so both ends agree byte for byte; GStreamer's `rtspsrc` (ONVIF mode) is the
//! independent check.
//!
//! Owns parsing and formatting only. Must never touch sockets or clocks, and
//! never panic on bytes from the network.

use crate::time::Time90k;

use super::ReplayFlags;

/// The RTP header extension profile ("defined by profile") of ONVIF replay.
pub const EXTENSION_ID: u16 = 0xABAC;
/// Its length in 32-bit words (NTP timestamp: 2, flags/CSeq/padding: 1).
pub const EXTENSION_WORDS: u16 = 3;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;

/// 64-bit NTP time (32.32 fixed point, seconds since 1900) of a Unix time.
pub fn ntp_from_time(t: Time90k) -> u64 {
    let secs = t.0.div_euclid(90_000) + NTP_UNIX_OFFSET_SECS;
    let ticks = t.0.rem_euclid(90_000) as u64;
    // Rounded so that ntp → time → ntp is stable at 90 kHz resolution.
    let frac = ((ticks << 32) + 45_000) / 90_000;
    ((secs as u64) << 32) + frac
}

/// The Unix time of a 64-bit NTP time, at 90 kHz resolution (rounded).
pub fn time_from_ntp(ntp: u64) -> Time90k {
    let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET_SECS;
    let frac = ntp & 0xffff_ffff;
    let ticks = ((frac * 90_000) + (1 << 31)) >> 32;
    Time90k(secs * 90_000 + ticks as i64)
}

/// One `0xABAC` extension: the frame's capture time and flags, and the low
/// byte of the CSeq of the PLAY request the packet answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension {
    pub ntp: u64,
    pub flags: ReplayFlags,
    pub cseq: u8,
}

/// The flags byte: C E D T in the four high bits, four bits must be zero.
fn flags_byte(f: ReplayFlags) -> u8 {
    (u8::from(f.clean_point) << 7)
        | (u8::from(f.end_of_run) << 6)
        | (u8::from(f.discontinuity) << 5)
        | (u8::from(f.terminal) << 4)
}

impl Extension {
    /// The extension as it follows the 12-byte RTP header (X bit set):
    /// profile, length, NTP (64 bit), flags, CSeq, two bytes of padding.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..2].copy_from_slice(&EXTENSION_ID.to_be_bytes());
        out[2..4].copy_from_slice(&EXTENSION_WORDS.to_be_bytes());
        out[4..12].copy_from_slice(&self.ntp.to_be_bytes());
        out[12] = flags_byte(self.flags);
        out[13] = self.cseq;
        out
    }

    /// Parses the extension data (after profile and length): at least 12
    /// bytes. Longer data (a future revision) is accepted, shorter refused.
    pub fn decode_data(data: &[u8]) -> Option<Extension> {
        let ntp = u64::from_be_bytes(data.get(0..8)?.try_into().ok()?);
        let f = *data.get(8)?;
        Some(Extension {
            ntp,
            flags: ReplayFlags {
                clean_point: f & 0x80 != 0,
                end_of_run: f & 0x40 != 0,
                discontinuity: f & 0x20 != 0,
                terminal: f & 0x10 != 0,
            },
            cseq: *data.get(9)?,
        })
    }

    /// Finds and parses the `0xABAC` extension of a whole RTP packet.
    pub fn from_rtp(packet: &[u8]) -> Option<Extension> {
        let (profile, data) = rtp_header_extension(packet)?;
        (profile == EXTENSION_ID)
            .then(|| Extension::decode_data(data))
            .flatten()
    }
}

/// The header extension of an RTP packet (RFC 3550 §5.3.1): its profile
/// and data, when the X bit is set and the packet is long enough.
pub fn rtp_header_extension(packet: &[u8]) -> Option<(u16, &[u8])> {
    let b0 = *packet.first()?;
    if b0 >> 6 != 2 || b0 & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(b0 & 0x0f);
    let profile = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    let words = usize::from(u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]));
    Some((profile, packet.get(at + 4..at + 4 + 4 * words)?))
}

/// `Range: clock=START-END`; END is absent for "to the end of the recording".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockRange {
    pub start: Option<Time90k>,
    pub end: Option<Time90k>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("Range {0:?} is not clock=START-END")]
    NotClock(String),
    #[error("Range time {0:?} is not ISO 8601 UTC (YYYYMMDDThhmmss[.fff]Z or YYYY-MM-DDThh:mm:ss[.fff]Z)")]
    BadTime(String),
}

impl ClockRange {
    /// Parses a `Range` header value. Only `clock=` is replay's unit.
    pub fn parse(header: &str) -> Result<ClockRange, RangeError> {
        let v = header.trim();
        // A `;time=` parameter (when to start playing) is not used by replay.
        let v = v.split(';').next().unwrap_or_default().trim();
        let Some(spec) = v.strip_prefix("clock=") else {
            return Err(RangeError::NotClock(crate::excerpt::short(header)));
        };
        // ISO 8601 extended form has '-' inside dates: split at the '-' that
        // follows a 'Z' (or at a leading '-' for "up to END").
        let (a, b) = if let Some(rest) = spec.strip_prefix('-') {
            ("", rest)
        } else {
            match spec.find("Z-") {
                Some(i) => (&spec[..=i], &spec[i + 2..]),
                None => (spec, ""),
            }
        };
        let time = |s: &str| -> Result<Option<Time90k>, RangeError> {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_clock(s).map(Some)
            }
        };
        Ok(ClockRange {
            start: time(a)?,
            end: time(b)?,
        })
    }

    pub fn format(&self) -> String {
        format!(
            "clock={}-{}",
            self.start.map(format_clock).unwrap_or_default(),
            self.end.map(format_clock).unwrap_or_default()
        )
    }

    /// The narrowest range the header's milliseconds can carry that holds
    /// all of this one: START rounded down, END rounded up. A request sent
    /// as `format` loses up to a millisecond at its end (truncated), and with
    /// it a frame captured in that millisecond; this one asks for up to a
    /// millisecond more, which the client trims (`ReplayStream`).
    pub fn format_covering(&self) -> String {
        let up = |t: Time90k| Time90k(t.0 + (TICKS_PER_MS - t.0.rem_euclid(TICKS_PER_MS)) % TICKS_PER_MS);
        format!(
            "clock={}-{}",
            self.start.map(format_clock).unwrap_or_default(),
            self.end.map(|e| format_clock(up(e))).unwrap_or_default()
        )
    }
}

/// 90 kHz ticks in the millisecond the `clock=` times are written in.
const TICKS_PER_MS: i64 = 90;

/// Formats ISO 8601 basic UTC with milliseconds, the form the ONVIF
/// specification's examples use: `20261124T101500.040Z`.
pub fn format_clock(t: Time90k) -> String {
    let ms = (t.0 * 1000).div_euclid(90_000);
    let secs = ms.div_euclid(1000);
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return "19700101T000000Z".into();
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        ms.rem_euclid(1000)
    )
}

/// Parses ISO 8601 UTC, basic or extended, with optional fraction.
pub fn parse_clock(s: &str) -> Result<Time90k, RangeError> {
    let bad = || RangeError::BadTime(crate::excerpt::short(s));
    let body = s.strip_suffix('Z').ok_or_else(bad)?;
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    let digits: String = whole.chars().filter(|c| *c != '-' && *c != ':').collect();
    if digits.len() != 15 || digits.as_bytes()[8] != b'T' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, RangeError> {
        let p = &digits[r];
        if !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let month = time::Month::try_from(num(4..6)? as u8).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).map_err(|_| bad())?;
    let tod = time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    let secs = time::PrimitiveDateTime::new(date, tod).assume_utc().unix_timestamp();
    Ok(Time90k(secs * 90_000 + nanos * 9 / 100_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trips_at_90k() {
        for t in [0i64, 1, 89_999, 90_000, 160_000_000_000_123, -5] {
            let t = Time90k(t);
            assert_eq!(time_from_ntp(ntp_from_time(t)), t, "{t:?}");
        }
        // 1970-01-01 is NTP second 2208988800.
        assert_eq!(ntp_from_time(Time90k(0)), 2_208_988_800u64 << 32);
        // Half a second is 0x8000_0000 in the fraction.
        assert_eq!(ntp_from_time(Time90k(45_000)) & 0xffff_ffff, 0x8000_0000);
    }

    #[test]
    fn extension_bit_layout() {
        let e = Extension {
            ntp: 0x0102_0304_0506_0708,
            flags: ReplayFlags {
                clean_point: true,
                end_of_run: false,
                discontinuity: true,
                terminal: true,
            },
            cseq: 7,
        };
        let b = e.encode();
        assert_eq!(&b[..4], &[0xab, 0xac, 0, 3]);
        assert_eq!(&b[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // C=0x80, E=0x40, D=0x20, T=0x10; low nibble must be zero.
        assert_eq!(b[12], 0x80 | 0x20 | 0x10);
        assert_eq!((b[13], b[14], b[15]), (7, 0, 0));
        for bits in 0..16u8 {
            let flags = ReplayFlags {
                clean_point: bits & 8 != 0,
                end_of_run: bits & 4 != 0,
                discontinuity: bits & 2 != 0,
                terminal: bits & 1 != 0,
            };
            let e = Extension {
                ntp: 42,
                flags,
                cseq: bits,
            };
            assert_eq!(Extension::decode_data(&e.encode()[4..]), Some(e));
        }
        assert_eq!(Extension::decode_data(&[0; 9]), None);
    }

    #[test]
    fn finds_the_extension_in_an_rtp_packet() {
        let e = Extension {
            ntp: ntp_from_time(Time90k(123_456_789)),
            flags: ReplayFlags {
                clean_point: true,
                ..Default::default()
            },
            cseq: 3,
        };
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&e.encode());
        p.extend_from_slice(&[0x65, 1, 2]);
        assert_eq!(Extension::from_rtp(&p), Some(e));
        // Without the X bit, or cut short, or another profile: none.
        let mut q = p.clone();
        q[0] = 0x80;
        assert_eq!(Extension::from_rtp(&q), None);
        assert_eq!(Extension::from_rtp(&p[..20]), None);
        let mut r = p.clone();
        r[12] = 0xbe;
        assert_eq!(Extension::from_rtp(&r), None);
        assert_eq!(Extension::from_rtp(&[]), None);
    }

    #[test]
    fn clock_ranges() {
        let t = parse_clock("20261124T101500Z").unwrap();
        assert_eq!(t, Time90k::parse_rfc3339("2026-11-24T10:15:00Z").unwrap());
        assert_eq!(parse_clock("2026-11-24T10:15:00.5Z").unwrap(), Time90k(t.0 + 45_000));
        assert_eq!(format_clock(Time90k(t.0 + 3_600)), "20261124T101500.040Z");
        let r = ClockRange::parse("clock=20261124T101500Z-20261124T101505.040Z").unwrap();
        assert_eq!(r.start, Some(t));
        assert_eq!(r.end, Some(Time90k(t.0 + 5 * 90_000 + 3_600)));
        let r = ClockRange::parse("clock=2026-11-24T10:15:00Z-2026-11-24T10:15:05Z").unwrap();
        assert_eq!((r.start, r.end), (Some(t), Some(Time90k(t.0 + 450_000))));
        let r = ClockRange::parse("clock=20261124T101500Z-").unwrap();
        assert_eq!((r.start, r.end), (Some(t), None));
        let r = ClockRange::parse("clock=-20261124T101500Z").unwrap();
        assert_eq!((r.start, r.end), (None, Some(t)));
        let r = ClockRange {
            start: Some(t),
            end: Some(Time90k(t.0 + 90)),
        };
        assert_eq!(ClockRange::parse(&r.format()).unwrap(), r);
        assert!(matches!(ClockRange::parse("npt=0-"), Err(RangeError::NotClock(_))));
        // Between milliseconds: `format` truncates both ends (END by up to a
        // millisecond: a frame captured in it would not be asked for);
        // `format_covering` holds the whole range, by under a millisecond more.
        for (a, b) in [(45, 45), (1, 89), (89, 1), (0, 0), (90, 180)] {
            let r = ClockRange {
                start: Some(Time90k(t.0 + a)),
                end: Some(Time90k(t.0 + 5 * 90_000 + b)),
            };
            let sent = ClockRange::parse(&r.format_covering()).unwrap();
            let (s, e) = (sent.start.unwrap(), sent.end.unwrap());
            let (rs, re) = (r.start.unwrap(), r.end.unwrap());
            assert!(s <= rs && rs - s < 90, "start {a}: {s:?} for {rs:?}");
            assert!(e >= re && e - re < 90, "end {b}: {e:?} for {re:?}");
            let truncated = ClockRange::parse(&r.format()).unwrap().end.unwrap();
            assert_eq!(truncated < re, b % 90 != 0, "end {b}");
        }
        assert_eq!(
            ClockRange { start: None, end: None }.format_covering(),
            "clock=-",
            "open ends stay open"
        );
        for bad in [
            "clock=2026",
            "clock=20261324T101500Z-",
            "clock=20261124T101500-",
            "clock=x",
        ] {
            assert!(ClockRange::parse(bad).is_err(), "{bad}");
        }
    }
}
