//! Wall-clock time in Tandem's storage unit, 90 kHz ticks since the Unix epoch.
//!
//! Owns the conversions between `Time90k`, RFC 3339 text and the system clock,
//! the `Clock` trait that lets cores and tests inject "now", and the lab's
//! clock offset (`TANDEM_CLOCK_OFFSET_MS`, honoured only in builds with
//! `debug_assertions` or the `lab-clock` feature) that makes one NVR's clock
//! differ from another's on one machine.
//! Must never read the system clock anywhere but `wall_now` (which
//! `SystemClock` uses): every wall-clock read that stamps footage, events,
//! segments or probes goes through it, so the injected offset reaches all.

use std::fmt;

/// 90 kHz is the RTP clock of every H.264/H.265 stream, so storing wall time in
/// the same unit lets frame durations pass from RTP to the index unconverted.
pub const TICKS_PER_SEC: i64 = 90_000;

/// A span of time in ticks, rounded to the nearest (a config's `"1.5s"`).
pub fn ticks_of(d: std::time::Duration) -> i64 {
    Time90k::from_secs_f64(d.as_secs_f64()).0
}

/// A span of ticks in seconds, for logs and the API.
pub fn secs_of(ticks: i64) -> f64 {
    ticks as f64 / TICKS_PER_SEC as f64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time90k(pub i64);

impl Time90k {
    pub fn from_secs_f64(s: f64) -> Self {
        Time90k((s * TICKS_PER_SEC as f64).round() as i64)
    }
    pub fn as_secs_f64(self) -> f64 {
        secs_of(self.0)
    }
    pub fn from_system(t: std::time::SystemTime) -> Self {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Time90k(d.as_secs() as i64 * TICKS_PER_SEC + (d.subsec_nanos() as i64 * 9 / 100_000))
    }
    pub fn from_unix_micros(us: i64) -> Self {
        Time90k(us * 9 / 100)
    }
    pub fn as_unix_micros(self) -> i64 {
        self.0 * 100 / 9
    }

    /// Parses RFC 3339 (`2026-11-22T10:00:00Z`, fractional seconds allowed).
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))?;
        let nanos = t.unix_timestamp_nanos();
        Ok(Time90k((nanos * 9 / 100_000) as i64))
    }

    pub fn to_rfc3339(self) -> String {
        let nanos = self.0 as i128 * 100_000 / 9;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| format!("@{}", self.0)),
            Err(_) => format!("@{}", self.0),
        }
    }
}

impl fmt::Display for Time90k {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Every time Tandem shows (the API, event and transition logs, peer
/// status) is RFC 3339 text, never ticks: one impl, so no struct can write a
/// time its own way.
impl serde::Serialize for Time90k {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl std::ops::Add<i64> for Time90k {
    type Output = Time90k;
    fn add(self, rhs: i64) -> Time90k {
        Time90k(self.0 + rhs)
    }
}

impl std::ops::Sub for Time90k {
    type Output = i64;
    fn sub(self, rhs: Time90k) -> i64 {
        self.0 - rhs.0
    }
}

/// Where "now" comes from. Cores take a `Time90k` argument instead; the I/O
/// shells that call them hold a `Clock`, so tests can substitute a fake one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Time90k;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time90k {
        wall_now()
    }
}

/// The environment variable that shifts this NVR's clock (milliseconds,
/// signed), for the lab and tests: two NVRs on one machine whose clocks
/// differ by seconds.
pub const CLOCK_OFFSET_ENV: &str = "TANDEM_CLOCK_OFFSET_MS";

/// Whether this build honours `TANDEM_CLOCK_OFFSET_MS`: test and debug
/// builds, and release builds with the `lab-clock` feature (the lab's).
pub const CLOCK_OFFSET_HONOURED: bool = cfg!(any(debug_assertions, feature = "lab-clock"));

/// The largest offset accepted: a day, far beyond any clock the lab fakes.
const MAX_OFFSET_MS: i64 = 24 * 3600 * 1000;

/// What `TANDEM_CLOCK_OFFSET_MS` does in this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockOffset {
    /// Not set (or 0).
    None,
    /// Honoured: every wall-clock read is shifted by this many 90 kHz ticks.
    Applied { ms: i64 },
    /// Set, but this build ignores it (a release build without `lab-clock`).
    Ignored { ms: i64 },
}

impl ClockOffset {
    pub fn ticks(self) -> i64 {
        match self {
            ClockOffset::Applied { ms } => ms * TICKS_PER_SEC / 1000,
            ClockOffset::None | ClockOffset::Ignored { .. } => 0,
        }
    }
}

/// The offset `value` (the variable's text, if set) asks for, in a build
/// that does (`honoured`) or does not honour it. Pure, for tests.
pub fn parse_clock_offset(value: Option<&str>, honoured: bool) -> Result<ClockOffset, String> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(ClockOffset::None);
    };
    let ms: i64 = v.parse().map_err(|_| {
        format!(
            "{CLOCK_OFFSET_ENV} = `{}` is not a whole number of milliseconds (e.g. 3000 or -250)",
            crate::excerpt::short(v)
        )
    })?;
    if ms.abs() > MAX_OFFSET_MS {
        return Err(format!(
            "{CLOCK_OFFSET_ENV} = {ms} is beyond ±{MAX_OFFSET_MS} ms (a day)"
        ));
    }
    Ok(match (ms, honoured) {
        (0, _) => ClockOffset::None,
        (ms, true) => ClockOffset::Applied { ms },
        (ms, false) => ClockOffset::Ignored { ms },
    })
}

static CLOCK_OFFSET: std::sync::OnceLock<ClockOffset> = std::sync::OnceLock::new();

/// This process's clock offset, read from the environment once. A bad value
/// counts as none here; `check_clock_offset` (at start) refuses it.
pub fn clock_offset() -> ClockOffset {
    *CLOCK_OFFSET.get_or_init(|| {
        let v = std::env::var(CLOCK_OFFSET_ENV).ok();
        parse_clock_offset(v.as_deref(), CLOCK_OFFSET_HONOURED).unwrap_or(ClockOffset::None)
    })
}

/// Checks `TANDEM_CLOCK_OFFSET_MS` at start and says what it does: an error
/// for a bad value, a warning when it shifts the clock (footage is stamped
/// off true time) or when this build ignores it.
pub fn check_clock_offset() -> Result<ClockOffset, String> {
    let v = std::env::var(CLOCK_OFFSET_ENV).ok();
    let o = parse_clock_offset(v.as_deref(), CLOCK_OFFSET_HONOURED)?;
    match clock_offset() {
        ClockOffset::Applied { ms } => tracing::warn!(
            offset_ms = ms,
            "{CLOCK_OFFSET_ENV} shifts this NVR's clock by {ms} ms: footage, events and probes are stamped off true time (a test build)"
        ),
        ClockOffset::Ignored { ms } => tracing::warn!(
            offset_ms = ms,
            "{CLOCK_OFFSET_ENV} = {ms} is ignored: only debug builds and builds with the `lab-clock` feature honour it"
        ),
        ClockOffset::None => {}
    }
    Ok(o)
}

/// "Now" by this NVR's clock: the system's wall clock plus the injected
/// offset, if any. The one place the system clock is read for stamping.
pub fn wall_now() -> Time90k {
    Time90k::from_system(std::time::SystemTime::now()) + clock_offset().ticks()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Time90k::parse_rfc3339("2026-11-22T10:00:00.5Z").unwrap();
        assert_eq!(t.0 % TICKS_PER_SEC, TICKS_PER_SEC / 2);
        assert_eq!(t.to_rfc3339(), "2026-11-22T10:00:00.5Z");
        assert!(Time90k::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn clock_offset_is_parsed_and_honoured_only_where_allowed() {
        assert_eq!(parse_clock_offset(None, true), Ok(ClockOffset::None));
        assert_eq!(parse_clock_offset(Some(" "), true), Ok(ClockOffset::None));
        assert_eq!(parse_clock_offset(Some("0"), true), Ok(ClockOffset::None));
        let plus = parse_clock_offset(Some("3000"), true).unwrap();
        assert_eq!(plus, ClockOffset::Applied { ms: 3000 });
        assert_eq!(plus.ticks(), 3 * TICKS_PER_SEC);
        assert_eq!(parse_clock_offset(Some("-250"), true).unwrap().ticks(), -22_500);
        // A release build without `lab-clock` reads it only to warn.
        let ignored = parse_clock_offset(Some("3000"), false).unwrap();
        assert_eq!(ignored, ClockOffset::Ignored { ms: 3000 });
        assert_eq!(ignored.ticks(), 0);
        let e = parse_clock_offset(Some("3s"), true).unwrap_err();
        assert!(e.contains(CLOCK_OFFSET_ENV) && e.contains("3s"), "{e}");
        assert!(parse_clock_offset(Some("99999999999"), true)
            .unwrap_err()
            .contains("a day"));
    }

    #[test]
    fn wall_now_is_the_system_clock_plus_the_offset() {
        let o = clock_offset();
        let env = std::env::var(CLOCK_OFFSET_ENV).ok();
        assert_eq!(
            o,
            parse_clock_offset(env.as_deref(), CLOCK_OFFSET_HONOURED).unwrap_or(ClockOffset::None)
        );
        let sys = Time90k::from_system(std::time::SystemTime::now());
        let d = wall_now() - sys - o.ticks();
        assert!(
            d.abs() < TICKS_PER_SEC,
            "wall_now is {d} ticks off the system clock + {o:?}"
        );
    }

    #[test]
    fn micros_round_trip() {
        let t = Time90k::from_unix_micros(1_700_000_000_123_400);
        assert_eq!(t.as_unix_micros(), 1_700_000_000_123_400);
    }
}
