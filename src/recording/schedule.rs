//! The weekly recording schedule: which recording mode applies at an instant.
//!
//! A pure function of the schedule and the instant. Windows are written in
//! local civil time ("mon-fri 08:00-18:00") in the schedule's time zone and are
//! resolved to real instants per day, so daylight-saving changes behave the way
//! a person reading the schedule expects: a window edge that falls in the
//! spring-forward gap takes effect at the same elapsed time it would have had
//! (RFC 5545 "compatible" resolution: 02:30 in a 02:00→03:00 gap is 03:30), and
//! an edge in the autumn fold takes effect at its first occurrence, so a
//! window never ends and starts again when the clock repeats an hour.
//!
//! Must never read the clock: callers pass the instant.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::time::Time90k;

/// What a channel records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Nothing is written (events are still stored).
    #[serde(rename = "off")]
    Off,
    /// Everything is written; events do not change retention.
    #[serde(rename = "continuous")]
    Continuous,
    /// Only footage around events: pre-event buffer, event, post-event time.
    #[serde(rename = "events")]
    Events,
    /// Everything is written; footage around events is kept as event footage.
    #[serde(rename = "continuous+events")]
    ContinuousEvents,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "off" => Mode::Off,
            "continuous" => Mode::Continuous,
            "events" => Mode::Events,
            "continuous+events" => Mode::ContinuousEvents,
            _ => {
                return Err(format!(
                    "`{s}` is not a mode (continuous, events, continuous+events, off)"
                ))
            }
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Continuous => "continuous",
            Mode::Events => "events",
            Mode::ContinuousEvents => "continuous+events",
        }
    }
}

/// One window of the week: on each of `days`, from `from` to `to` local time.
/// `to` at or before `from` runs past midnight into the next day.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Bit i set = the window starts on that weekday (0 = Monday).
    pub days: u8,
    pub from: Time,
    pub to: Time,
    pub mode: Mode,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub tz: TimeZone,
    /// The mode outside every window.
    pub default: Mode,
    /// Earlier windows win where windows overlap.
    pub windows: Vec<Window>,
}

impl Schedule {
    /// A schedule with no windows: `mode` all the time.
    pub fn always(mode: Mode) -> Schedule {
        Schedule {
            tz: TimeZone::UTC,
            default: mode,
            windows: Vec::new(),
        }
    }

    pub fn mode_at(&self, t: Time90k) -> Mode {
        if self.windows.is_empty() {
            return self.default;
        }
        let Ok(ts) = Timestamp::from_microsecond(t.as_unix_micros()) else {
            return self.default;
        };
        let today = ts.to_zoned(self.tz.clone()).date();
        for w in &self.windows {
            // A window that started yesterday may still be running.
            for start_day in [today.yesterday(), Ok(today)].into_iter().flatten() {
                if w.days & (1 << weekday_index(start_day.weekday())) == 0 {
                    continue;
                }
                if let Some((a, b)) = self.resolve(w, start_day) {
                    if a <= ts && ts < b {
                        return w.mode;
                    }
                }
            }
        }
        self.default
    }

    /// The real instants [start, end) of window `w` starting on `day`.
    fn resolve(&self, w: &Window, day: Date) -> Option<(Timestamp, Timestamp)> {
        let end_day = if w.to <= w.from { day.tomorrow().ok()? } else { day };
        let a = self
            .tz
            .to_ambiguous_timestamp(day.to_datetime(w.from))
            .compatible()
            .ok()?;
        let b = self
            .tz
            .to_ambiguous_timestamp(end_day.to_datetime(w.to))
            .compatible()
            .ok()?;
        Some((a, b))
    }
}

fn weekday_index(d: Weekday) -> u8 {
    (d.to_monday_zero_offset()) as u8
}

/// Parses a day list: `mon-fri`, `sat,sun`, `daily`, `mon,wed-fri`.
pub fn parse_days(s: &str) -> Result<u8, String> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let idx = |n: &str| {
        let n = n.trim().to_ascii_lowercase();
        NAMES
            .iter()
            .position(|d| n.starts_with(d) && d.len() <= n.len())
            .ok_or_else(|| format!("`{n}` is not a day (mon … sun)"))
    };
    if matches!(s.trim(), "daily" | "all" | "*") {
        return Ok(0x7f);
    }
    let mut bits = 0u8;
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (idx(a)?, idx(b)?);
                let mut i = a;
                loop {
                    bits |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => bits |= 1 << idx(part)?,
        }
    }
    if bits == 0 {
        return Err("no days given".into());
    }
    Ok(bits)
}

/// Parses `HH:MM` (24-hour; `24:00` is the end of the day, taken as midnight).
pub fn parse_hhmm(s: &str) -> Result<Time, String> {
    let bad = || format!("`{s}` is not a time of day (HH:MM)");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h == 24 && m == 0 {
        return Ok(Time::midnight());
    }
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

pub fn parse_tz(s: &str) -> Result<TimeZone, String> {
    TimeZone::get(s).map_err(|e| format!("unknown time zone `{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: &str, local: &str) -> Time90k {
        let ts = local
            .parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(TimeZone::get(tz).unwrap())
            .unwrap()
            .timestamp();
        Time90k::from_unix_micros(ts.as_microsecond())
    }
    fn utc(s: &str) -> Time90k {
        Time90k::parse_rfc3339(s).unwrap()
    }

    fn business(tz: &str) -> Schedule {
        Schedule {
            tz: parse_tz(tz).unwrap(),
            default: Mode::Events,
            windows: vec![Window {
                days: parse_days("mon-fri").unwrap(),
                from: parse_hhmm("08:00").unwrap(),
                to: parse_hhmm("18:00").unwrap(),
                mode: Mode::Continuous,
            }],
        }
    }

    #[test]
    fn switches_exactly_at_window_edges() {
        let s = business("Europe/Berlin");
        // Friday 2026-11-20.
        let one = 90_000;
        assert_eq!(
            s.mode_at(at("Europe/Berlin", "2026-11-20T08:00:00") + -one),
            Mode::Events
        );
        assert_eq!(s.mode_at(at("Europe/Berlin", "2026-11-20T08:00:00")), Mode::Continuous);
        assert_eq!(s.mode_at(at("Europe/Berlin", "2026-11-20T17:59:59")), Mode::Continuous);
        assert_eq!(s.mode_at(at("Europe/Berlin", "2026-11-20T18:00:00")), Mode::Events);
        // Saturday: not a window day.
        assert_eq!(s.mode_at(at("Europe/Berlin", "2026-11-21T12:00:00")), Mode::Events);
        // The zone matters: 08:00 Berlin is 07:00 UTC in winter.
        assert_eq!(s.mode_at(utc("2026-11-20T06:59:59Z")), Mode::Events);
        assert_eq!(s.mode_at(utc("2026-11-20T07:00:00Z")), Mode::Continuous);
    }

    #[test]
    fn overnight_windows_run_past_midnight_and_honour_the_start_day() {
        let s = Schedule {
            tz: parse_tz("America/New_York").unwrap(),
            default: Mode::Continuous,
            windows: vec![Window {
                days: parse_days("fri").unwrap(),
                from: parse_hhmm("22:00").unwrap(),
                to: parse_hhmm("06:00").unwrap(),
                mode: Mode::Off,
            }],
        };
        let z = "America/New_York";
        assert_eq!(s.mode_at(at(z, "2026-11-20T21:59:59")), Mode::Continuous);
        assert_eq!(s.mode_at(at(z, "2026-11-20T22:00:00")), Mode::Off);
        assert_eq!(s.mode_at(at(z, "2026-11-21T05:59:59")), Mode::Off);
        assert_eq!(s.mode_at(at(z, "2026-11-21T06:00:00")), Mode::Continuous);
        // Saturday night is not Friday night.
        assert_eq!(s.mode_at(at(z, "2026-11-21T23:00:00")), Mode::Continuous);
    }

    #[test]
    fn spring_forward_gap() {
        // Berlin, Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let s = Schedule {
            tz: parse_tz("Europe/Berlin").unwrap(),
            default: Mode::Events,
            windows: vec![
                Window {
                    days: parse_days("sun").unwrap(),
                    from: parse_hhmm("01:00").unwrap(),
                    to: parse_hhmm("02:30").unwrap(),
                    mode: Mode::Continuous,
                },
                Window {
                    days: parse_days("sun").unwrap(),
                    from: parse_hhmm("04:00").unwrap(),
                    to: parse_hhmm("05:00").unwrap(),
                    mode: Mode::Off,
                },
            ],
        };
        // 01:00 CET = 00:00 UTC starts the window.
        assert_eq!(s.mode_at(utc("2026-03-28T23:59:59Z")), Mode::Events);
        assert_eq!(s.mode_at(utc("2026-03-29T00:00:00Z")), Mode::Continuous);
        // 02:30 does not exist; it ends 90 elapsed minutes after 01:00, at 03:30 CEST.
        assert_eq!(s.mode_at(utc("2026-03-29T01:29:59Z")), Mode::Continuous);
        assert_eq!(s.mode_at(utc("2026-03-29T01:30:00Z")), Mode::Events);
        // After the change, 04:00 CEST is 02:00 UTC.
        assert_eq!(s.mode_at(utc("2026-03-29T01:59:59Z")), Mode::Events);
        assert_eq!(s.mode_at(utc("2026-03-29T02:00:00Z")), Mode::Off);
        assert_eq!(s.mode_at(utc("2026-03-29T03:00:00Z")), Mode::Events);
    }

    #[test]
    fn fall_back_fold() {
        // Berlin, Sunday 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC);
        // local 02:00–03:00 happens twice.
        let s = Schedule {
            tz: parse_tz("Europe/Berlin").unwrap(),
            default: Mode::Events,
            windows: vec![Window {
                days: parse_days("sat").unwrap(),
                from: parse_hhmm("22:00").unwrap(),
                to: parse_hhmm("02:30").unwrap(),
                mode: Mode::Continuous,
            }],
        };
        // Starts 22:00 CEST Saturday = 20:00 UTC.
        assert_eq!(s.mode_at(utc("2026-10-24T19:59:59Z")), Mode::Events);
        assert_eq!(s.mode_at(utc("2026-10-24T20:00:00Z")), Mode::Continuous);
        // Ends at the first 02:30 (CEST, 00:30 UTC) ...
        assert_eq!(s.mode_at(utc("2026-10-25T00:29:59Z")), Mode::Continuous);
        assert_eq!(s.mode_at(utc("2026-10-25T00:30:00Z")), Mode::Events);
        // ... and does not come back when 02:00–02:30 repeats in CET.
        assert_eq!(s.mode_at(utc("2026-10-25T01:10:00Z")), Mode::Events);
        // Next Saturday's window is in winter time: 22:00 CET = 21:00 UTC.
        assert_eq!(s.mode_at(utc("2026-10-31T20:59:59Z")), Mode::Events);
        assert_eq!(s.mode_at(utc("2026-10-31T21:00:00Z")), Mode::Continuous);
    }

    #[test]
    fn every_minute_of_a_dst_week_agrees_with_a_local_clock_reading() {
        // Away from the changes themselves, the mode is what the local wall
        // clock says: check every minute of the week around both changes.
        let s = business("America/New_York");
        let tz = parse_tz("America/New_York").unwrap();
        for start in ["2026-03-05T00:00:00Z", "2026-10-29T00:00:00Z"] {
            let t0 = utc(start);
            for m in 0..(10 * 24 * 60) {
                let t = t0 + m * 60 * 90_000;
                let z = Timestamp::from_microsecond(t.as_unix_micros())
                    .unwrap()
                    .to_zoned(tz.clone());
                let workday = !matches!(z.weekday(), Weekday::Saturday | Weekday::Sunday);
                let want = if workday && (8..18).contains(&z.hour()) {
                    Mode::Continuous
                } else {
                    Mode::Events
                };
                assert_eq!(s.mode_at(t), want, "at {z}");
            }
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_days("mon-fri").unwrap(), 0b0011111);
        assert_eq!(parse_days("sat,sun").unwrap(), 0b1100000);
        assert_eq!(parse_days("fri-mon").unwrap(), 0b1110001);
        assert_eq!(parse_days("daily").unwrap(), 0x7f);
        assert!(parse_days("funday").is_err());
        assert!(parse_hhmm("25:00").is_err());
        assert!(parse_hhmm("8").is_err());
        assert_eq!(parse_hhmm("24:00").unwrap(), Time::midnight());
        assert!(parse_tz("Mars/Olympus").is_err());
        assert_eq!(Mode::parse("continuous+events").unwrap(), Mode::ContinuousEvents);
        assert!(Mode::parse("sometimes").is_err());
    }
}
