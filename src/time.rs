//! Wall-clock time in Tandem's storage unit, 90 kHz ticks since the Unix epoch.
//!
//! Owns the conversions between `Time90k`, RFC 3339 text and the system clock,
//! and the `Clock` trait that lets cores and tests inject "now".
//! Must never read the system clock anywhere but `SystemClock`.

use std::fmt;

/// 90 kHz is the RTP clock of every H.264/H.265 stream, so storing wall time in
/// the same unit lets frame durations pass from RTP to the index unconverted.
pub const TICKS_PER_SEC: i64 = 90_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time90k(pub i64);

impl Time90k {
    pub fn from_secs_f64(s: f64) -> Self {
        Time90k((s * TICKS_PER_SEC as f64).round() as i64)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / TICKS_PER_SEC as f64
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
        Time90k::from_system(std::time::SystemTime::now())
    }
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
    fn micros_round_trip() {
        let t = Time90k::from_unix_micros(1_700_000_000_123_400);
        assert_eq!(t.as_unix_micros(), 1_700_000_000_123_400);
    }
}
