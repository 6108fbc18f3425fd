//! Every number a client sends (path segments, query values, JSON body
//! fields) becomes a typed, range-checked value here, or a 400 that names the
//! field. Handlers never parse, cast or do arithmetic on a client's number
//! themselves: a value that reaches `Duration::from_secs_f64`, `Time90k`
//! arithmetic, a cast or an allocation has passed one of these first.
//!
//! Pure: no I/O; the one lookup (`channel`) asks the NVR whether the channel
//! exists. Must never panic on any input, and never echo more than a short
//! excerpt of what the client sent.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::{ApiError, ApiResult};
use crate::excerpt::short;
use crate::nvr::Nvr;
use crate::time::Time90k;

/// An integer from text (a path segment or a query value) within `range`.
pub fn integer<T>(field: &str, text: &str, range: RangeInclusive<T>) -> ApiResult<T>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let bad = || {
        ApiError::bad_request(format!(
            "`{field}` must be a whole number from {} to {} (got `{}`)",
            range.start(),
            range.end(),
            short(text)
        ))
    };
    let v: T = text.trim().parse().map_err(|_| bad())?;
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(bad())
    }
}

/// A required query value run through `integer`.
pub fn required_integer<T>(field: &str, text: Option<&String>, range: RangeInclusive<T>) -> ApiResult<T>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let text = text.ok_or_else(|| ApiError::bad_request(format!("query parameter `{field}` is required")))?;
    integer(field, text, range)
}

/// A length of time from JSON: a number of seconds or text like "10s" or
/// "250ms", within `min..=max`. The range is checked on the number before a
/// `Duration` is made (`Duration::from_secs_f64` panics on negative,
/// infinite or huge values).
pub fn seconds(field: &str, v: Option<&serde_json::Value>, min: Duration, max: Duration) -> ApiResult<Duration> {
    let bad = || {
        ApiError::bad_request(format!(
            "`{field}` must be a length of time from {} s to {} s (a number of seconds or text like \"10s\")",
            min.as_secs_f64(),
            max.as_secs_f64()
        ))
    };
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        Some(serde_json::Value::String(s)) => crate::config::units::parse_duration(s)
            .map_err(|_| bad())?
            .as_secs_f64(),
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < min.as_secs_f64() || secs > max.as_secs_f64() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// A required RFC 3339 time from the query, naming the parameter in the error.
pub fn time(name: &str, v: Option<&String>) -> ApiResult<Time90k> {
    let v = v.ok_or_else(|| ApiError::bad_request(format!("query parameter `{name}` is required (RFC 3339 time)")))?;
    Time90k::parse_rfc3339(v).map_err(|e| ApiError::bad_request(format!("query parameter `{name}`: {}", short(&e))))
}

/// An optional RFC 3339 time from the query, `default` when absent.
pub fn time_or(name: &str, v: Option<&String>, default: Time90k) -> ApiResult<Time90k> {
    match v {
        Some(_) => time(name, v),
        None => Ok(default),
    }
}

/// `start` before `end`, at most `max_ticks` apart: checked before the store
/// is asked, so the work (and memory) a request costs is bounded by what the
/// server allows, not by the range the client chose.
pub fn span(start: Time90k, end: Time90k, max_ticks: i64) -> ApiResult<()> {
    if end <= start {
        return Err(ApiError::bad_request("`end` must be after `start`"));
    }
    // Both come from RFC 3339 text (years 0001–9999), far inside i64, but the
    // subtraction is checked anyway: this function must not panic on any input.
    match end.0.checked_sub(start.0) {
        Some(d) if d <= max_ticks => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "`start` to `end` may span at most {} hours",
            max_ticks / crate::time::TICKS_PER_SEC / 3600
        ))),
    }
}

/// The highest channel number a configuration may use (`config` enforces it).
pub const MAX_CHANNEL: u32 = 4096;

/// A channel number (path segment or query value) of a configured channel:
/// 400 if it is not a number in range, 404 if no such channel exists.
pub fn channel(nvr: &Nvr, text: &str) -> ApiResult<u32> {
    let n = integer("channel", text, 1..=MAX_CHANNEL)?;
    if !nvr.has_channel(n) {
        return Err(ApiError::not_found(format!("no channel {n}")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(3600);

    fn msg(e: ApiError) -> String {
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        e.message
    }

    #[test]
    fn seconds_accepts_numbers_and_text_in_range() {
        assert_eq!(
            seconds("duration", Some(&json!(10)), MIN, MAX).unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(seconds("duration", Some(&json!(0.1)), MIN, MAX).unwrap(), MIN);
        assert_eq!(
            seconds("duration", Some(&json!("250ms")), MIN, MAX).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(seconds("duration", Some(&json!("1h")), MIN, MAX).unwrap(), MAX);
    }

    #[test]
    fn seconds_refuses_every_out_of_range_or_mistyped_value_naming_the_field() {
        let values = [
            json!(-1),
            json!(-0.0001),
            json!(0),
            json!(0.09),
            json!(3600.001),
            json!(1e300),
            json!(-1e300),
            json!(f64::MAX),
            json!(u64::MAX),
            json!(i64::MIN),
            json!("-5s"),
            json!("1e999"),
            json!("99999999999999999999999w"),
            json!("NaN"),
            json!("inf"),
            json!("2h"),
            json!(""),
            json!(true),
            json!(null),
            json!([1]),
            json!({"s": 1}),
        ];
        for v in values {
            let m = msg(seconds("duration", Some(&v), MIN, MAX).unwrap_err());
            assert!(m.contains("`duration`"), "{v}: {m}");
        }
        assert!(msg(seconds("duration", None, MIN, MAX).unwrap_err()).contains("`duration`"));
    }

    #[test]
    fn integers_refuse_out_of_range_negative_huge_and_foreign_text() {
        assert_eq!(integer("offset", "42", 0..=u64::MAX).unwrap(), 42);
        assert_eq!(integer("channel", "4096", 1..=MAX_CHANNEL).unwrap(), 4096);
        for bad in [
            "-1",
            "4097",
            "0",
            "1e3",
            "18446744073709551616",
            "",
            " ",
            "١",
            "0x10",
            "1.5",
            "+-1",
        ] {
            let m = msg(integer("channel", bad, 1..=MAX_CHANNEL).unwrap_err());
            assert!(m.contains("`channel`"), "{bad}: {m}");
        }
        for bad in ["-1", "99999999999999999999999"] {
            assert!(msg(integer("segment", bad, 0..=i64::MAX).unwrap_err()).contains("`segment`"));
        }
        let long = "9".repeat(10_000);
        let m = msg(integer("offset", &long, 0..=u64::MAX).unwrap_err());
        assert!(m.len() < 400, "the error echoes a short excerpt: {} bytes", m.len());
        assert!(msg(required_integer::<u64>("length", None, 0..=u64::MAX).unwrap_err()).contains("`length`"));
    }

    #[test]
    fn spans_are_ordered_and_bounded_without_overflow() {
        let t = |s: i64| Time90k(s);
        assert!(span(t(0), t(10), 10).is_ok());
        assert!(msg(span(t(10), t(10), 100).unwrap_err()).contains("after"));
        assert!(msg(span(t(0), t(11), 10).unwrap_err()).contains("at most"));
        assert!(span(t(i64::MIN), t(i64::MAX), i64::MAX).is_err());
        assert!(span(t(i64::MIN), t(0), i64::MAX).is_err());
    }

    #[test]
    fn times_name_their_parameter() {
        let m = msg(time("start", Some(&"yesterday".to_string())).unwrap_err());
        assert!(m.contains("`start`"), "{m}");
        assert!(msg(time("end", None).unwrap_err()).contains("`end`"));
        assert_eq!(time_or("end", None, Time90k(5)).unwrap(), Time90k(5));
        // The extremes RFC 3339 allows stay far inside i64 ticks.
        let lo = time("start", Some(&"0000-01-01T00:00:00Z".to_string())).unwrap();
        let hi = time("end", Some(&"9999-12-31T23:59:59.999999999Z".to_string())).unwrap();
        assert!(hi.0.checked_sub(lo.0).is_some());
    }
}
