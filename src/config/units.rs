//! Human units in configuration: byte sizes ("500 MiB", "2GB", 1048576) and
//! durations ("7d", "90s", "250ms", 60). Pure parsing; errors say what was
//! expected so the caller can prefix the file, line and field.

use std::time::Duration;

pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like \"500 MiB\""))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "`{unit}` is not a size unit (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v as u64)
}

/// A byte count for messages, in the largest binary unit that keeps it ≥ 1.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a duration exactly: the decimal is read digit by digit into
/// nanoseconds (not through a float), so what `format_duration` writes
/// reads back as the same value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let bad = || format!("`{s}` is not a duration like \"30s\" or \"7d\"");
    let unit_ns: u128 = match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 7 * 86_400_000_000_000,
        "y" => 365 * 86_400_000_000_000,
        _ => return Err(format!("`{unit}` is not a duration unit (use ms, s, m, h, d, w, y)")),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() > 12 {
        return Err(bad());
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    // Digits past the nanosecond of the largest unit change nothing.
    let frac = &frac[..frac.len().min(20)];
    let frac_ns = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse().map_err(|_| bad())?;
        digits * unit_ns / 10u128.pow(frac.len() as u32)
    };
    let ns = int * unit_ns + frac_ns;
    if ns > 100 * 365 * 86_400_000_000_000 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32))
}

/// A duration as the configuration writes it, in the largest unit that
/// keeps it whole ("7d", "90s", "250ms", "0.000001s"); `parse_duration`
/// reads it back exactly.
pub fn format_duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs > 0 && secs % n == 0 {
                return format!("{}{unit}", secs / n);
            }
        }
        return format!("{secs}s");
    }
    if nanos % 1_000_000 == 0 {
        return format!("{}ms", secs * 1000 + u64::from(nanos / 1_000_000));
    }
    let frac = format!("{nanos:09}");
    format!("{secs}.{}s", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("1 KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("2 gib").unwrap(), 2 << 30);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").unwrap_err().contains("size unit"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5 h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration(".").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert_eq!(parse_duration("0.3s").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration(".5m").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("101y").unwrap_err().contains("out of range"));
    }

    #[test]
    fn durations_written_read_back_exactly() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::from_nanos(1),
            Duration::from_secs(59),
            Duration::from_secs(7 * 86400),
            Duration::from_secs(5400),
            Duration::new(2, 500),
            Duration::from_secs_f64(0.3),
        ] {
            let s = format_duration(d);
            assert_eq!(parse_duration(&s).unwrap(), d, "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }
}
