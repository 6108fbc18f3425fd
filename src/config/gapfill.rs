//! The `[gapfill]` table: the site-wide bandwidth cap of gap fill (`rate`,
//! bytes per second shared by every replay) and how old a hole may be and
//! still be asked for (`max_age`). Must never contact a camera.

use serde::Deserialize;
use toml::Spanned;

use super::{units, Checker, SizeOrNumber};

/// `[gapfill] rate` by default: 4 MB/s, eight 4 Mbit/s cameras replaying at once.
pub const DEFAULT_RATE: u64 = 4_000_000;
/// The least `rate` accepted: slower, a hole would never catch up.
pub const MIN_RATE: u64 = 10_000;

/// Gap fill's settings (`[gapfill]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapfillSettings {
    /// Bytes per second all replays together may fetch.
    pub rate: u64,
    /// Holes ending longer ago than this are not asked for (the camera's card
    /// has overwritten them); `None`: no limit.
    pub max_age: Option<std::time::Duration>,
}

impl Default for GapfillSettings {
    fn default() -> Self {
        GapfillSettings {
            rate: DEFAULT_RATE,
            max_age: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGapfill {
    rate: Option<Spanned<SizeOrNumber>>,
    max_age: Option<Spanned<SizeOrNumber>>,
}

/// Checks the `[gapfill]` table.
pub(super) fn parse(c: &mut Checker<'_>, raw: Option<&Spanned<RawGapfill>>) -> GapfillSettings {
    let mut g = GapfillSettings::default();
    let Some(raw) = raw else { return g };
    let raw = raw.get_ref();
    if let Some(r) = &raw.rate {
        match units::parse_bytes(&r.get_ref().text()) {
            Ok(b) if b >= MIN_RATE => g.rate = b,
            Ok(_) => c.err(r.span().start, "gapfill.rate", "must be at least 10 kB (per second)"),
            Err(e) => c.err(r.span().start, "gapfill.rate", e),
        }
    }
    if let Some(a) = &raw.max_age {
        match units::parse_duration(&a.get_ref().text()) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => g.max_age = Some(d),
            Ok(_) => c.err(a.span().start, "gapfill.max_age", "must be at least 1 s"),
            Err(e) => c.err(a.span().start, "gapfill.max_age", e),
        }
    }
    g
}

/// `[gapfill]` as written back by `config::render` (empty when all defaults).
pub(super) fn render(g: &GapfillSettings) -> toml::Table {
    let mut t = toml::Table::new();
    if g.rate != DEFAULT_RATE {
        t.insert("rate".into(), toml::Value::Integer(g.rate.min(i64::MAX as u64) as i64));
    }
    if let Some(a) = g.max_age {
        t.insert("max_age".into(), units::format_duration(a).into());
    }
    t
}
