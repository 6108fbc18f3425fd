//! `[access]`: how long an idle browser session lasts and how long the
//! audit log keeps its entries. Users themselves live in the store's index
//! (`tandem user`), not here.

use serde::Deserialize;
use toml::Spanned;

use super::events::duration;
use super::Checker;
use super::SizeOrNumber;
use crate::auth::Settings;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    session_idle: Option<Spanned<SizeOrNumber>>,
    audit_retention: Option<Spanned<SizeOrNumber>>,
}

pub(super) fn parse(c: &mut Checker, raw: Option<&Spanned<RawAccess>>) -> Settings {
    let mut s = Settings::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return s;
    };
    if let Some(v) = &raw.session_idle {
        // A minute at least (sessions are touched once a minute), a year at most.
        if let Some(d) = duration(c, v, "access.session_idle", 60.0, 365.0 * 86400.0) {
            s.session_idle = d;
        }
    }
    if let Some(v) = &raw.audit_retention {
        if let Some(d) = duration(c, v, "access.audit_retention", 86400.0, 100.0 * 365.0 * 86400.0) {
            s.audit_retention = d;
        }
    }
    s
}
