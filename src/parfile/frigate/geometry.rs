//! Frigate's polygon coordinates and motion tuning in Tandem's terms: pixels
//! of the detect resolution or fractions (Frigate ≥ 0.14) → fractions of the
//! picture; `threshold`/`contour_area` → `sensitivity`/`min_area`.
//! Pure; must never guess a resolution it was not given.

use super::model::Coordinates;
/// Points as fractions of the picture, in TOML's number type.
pub(super) type Polygon = Vec<[f64; 2]>;

/// Why a polygon was not converted.
#[derive(Debug, PartialEq)]
pub(super) enum Refused {
    /// The text is not a polygon: the file is wrong.
    Invalid(String),
    /// A well-formed polygon Tandem cannot place (Frigate itself skips such
    /// masks with an error in its log).
    Skipped(String),
}

/// `size` is the camera's `detect` width × height, if the file gives it.
pub(super) fn polygon(c: &Coordinates, size: Option<(u32, u32)>) -> Result<Polygon, Refused> {
    let parts: Vec<&str> = match c {
        Coordinates::One(s) => s.split(',').collect(),
        Coordinates::List(v) => v.iter().flat_map(|s| s.split(',')).collect(),
    };
    let mut values = Vec::with_capacity(parts.len());
    for p in parts {
        match p.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => values.push(v),
            _ => {
                return Err(Refused::Invalid(format!(
                    "`{}` is not a coordinate (a number ≥ 0)",
                    p.trim()
                )))
            }
        }
    }
    if values.len() % 2 != 0 {
        return Err(Refused::Invalid(format!(
            "{} numbers do not make x,y pairs",
            values.len()
        )));
    }
    if values.len() < 6 {
        return Err(Refused::Invalid("a polygon needs at least 3 points".into()));
    }
    // Frigate's own rule (util/config.py get_relative_coordinates): any value
    // above 1 means the whole polygon is in pixels.
    let pixels = values.iter().any(|v| *v > 1.0);
    let (w, h) = if pixels {
        match size {
            Some((w, h)) if w > 0 && h > 0 => (w as f64, h as f64),
            _ => {
                return Err(Refused::Skipped(
                    "pixel coordinates need the camera's detect.width and detect.height to convert".into(),
                ))
            }
        }
    } else {
        (1.0, 1.0)
    };
    let mut out = Vec::with_capacity(values.len() / 2);
    for xy in values.chunks(2) {
        if xy[0] > w || xy[1] > h {
            return Err(Refused::Skipped(format!(
                "point {},{} is outside the detect resolution {w}x{h}",
                xy[0], xy[1]
            )));
        }
        out.push([round4(xy[0] / w), round4(xy[1] / h)]);
    }
    Ok(out)
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Frigate's `threshold` (1–255, default 30, lower is more sensitive) on
/// Tandem's `sensitivity` (1–100, default 50, higher is more sensitive):
/// piecewise linear so that the ends meet the ends and Frigate's default
/// lands on Tandem's.
pub(super) fn sensitivity(threshold: i64) -> u8 {
    let t = threshold.clamp(1, 255) as f64;
    let s = if t <= 30.0 {
        100.0 - (t - 1.0) * 50.0 / 29.0
    } else {
        50.0 - (t - 30.0) * 49.0 / 225.0
    };
    s.round().clamp(1.0, 100.0) as u8
}

/// Frigate's `contour_area` is pixels of its motion picture, resized to
/// `frame_height` rows (default 100) at the camera's aspect ratio (16:9 when
/// the detect size is not given): as a share of the picture.
pub(super) fn min_area(contour_area: i64, frame_height: Option<u32>, size: Option<(u32, u32)>) -> f64 {
    let rows = frame_height.filter(|h| *h > 0).unwrap_or(100) as f64;
    let aspect = match size {
        Some((w, h)) if w > 0 && h > 0 => w as f64 / h as f64,
        _ => 16.0 / 9.0,
    };
    let cols = (rows * aspect).round().max(1.0);
    let share = contour_area.max(0) as f64 / (rows * cols);
    ((share * 1e6).round() / 1e6).min(1.0)
}
