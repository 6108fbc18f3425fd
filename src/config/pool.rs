//! The `[pool]` table (issue 13): the etcd endpoints of a recorder pool, this
//! NVR's name and capacity in it, the lease time and the key prefix. Without
//! `[pool]` the NVR is not in a pool and nothing else changes. Must never
//! contact etcd: whether the endpoints answer is `pool::membership`'s concern.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{units, Checker, SizeOrNumber};
use crate::pool::Capacity;

/// `[pool] lease_ttl` by default. The lab uses 1 s (etcd's least).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);
/// `[pool] prefix` by default.
pub const DEFAULT_PREFIX: &str = "/tandem/";
/// Longest lease accepted: beyond it a dead NVR's cameras wait too long.
const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);

/// This NVR's membership of a pool (`[pool]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// etcd client endpoints (`http://host:2379`); any one that answers will do.
    pub etcd: Vec<url::Url>,
    /// This NVR's name in the pool (`[pool] name`, else `[nvr] name`).
    pub name: String,
    pub capacity: Capacity,
    /// How long the pool waits, after this NVR stops renewing its lease,
    /// before its cameras go to others. Whole seconds: etcd's unit.
    pub lease_ttl: Duration,
    /// Prefix of every key the pool writes; starts and ends with `/`.
    pub prefix: String,
    /// Where the other NVRs reach this one (published in its member record);
    /// `None`: this NVR's HTTP listen address.
    pub address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    etcd: Option<Spanned<Vec<Spanned<String>>>>,
    name: Option<Spanned<String>>,
    capacity: Option<Spanned<RawCapacity>>,
    lease_ttl: Option<Spanned<SizeOrNumber>>,
    prefix: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    channels: Option<Spanned<i64>>,
    mbps: Option<Spanned<f64>>,
}

/// Checks the `[pool]` table; `nvr_name` is `[nvr] name`, the default name.
pub(super) fn parse(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawPool>>,
    nvr_name: Option<&str>,
) -> Option<PoolSettings> {
    let raw_spanned = raw?;
    let at = raw_spanned.span().start;
    let raw = raw_spanned.get_ref();
    let errors = c.errors.len();

    let mut etcd = Vec::new();
    match &raw.etcd {
        None => c.err(
            at,
            "pool.etcd",
            "required: the etcd client endpoints, e.g. [\"http://10.0.0.2:2379\"]",
        ),
        Some(list) if list.get_ref().is_empty() => c.err(list.span().start, "pool.etcd", "needs at least one endpoint"),
        Some(list) => {
            for e in list.get_ref() {
                match endpoint(e.get_ref()) {
                    Ok(u) => etcd.push(u),
                    Err(m) => c.err(e.span().start, "pool.etcd", m),
                }
            }
        }
    }

    let name = match (&raw.name, nvr_name) {
        (Some(n), _) => {
            let v = n.get_ref().trim();
            if let Err(m) = check_name(v) {
                c.err(n.span().start, "pool.name", m);
            }
            v.to_string()
        }
        (None, Some(n)) => n.to_string(),
        (None, None) => {
            c.err(at, "pool.name", "required (or [nvr] name): this NVR's name in the pool");
            String::new()
        }
    };

    let mut capacity = Capacity::default();
    match &raw.capacity {
        None => c.err(at, "pool.capacity", "required: capacity = { channels = N, mbps = N }"),
        Some(cap) => {
            let (cap_at, cap) = (cap.span().start, cap.get_ref());
            match &cap.channels {
                None => c.err(cap_at, "pool.capacity.channels", "required"),
                Some(ch) => match u32::try_from(*ch.get_ref()) {
                    Ok(v) => capacity.channels = v,
                    Err(_) => c.err(
                        ch.span().start,
                        "pool.capacity.channels",
                        "must be a whole number from 0",
                    ),
                },
            }
            match &cap.mbps {
                None => c.err(cap_at, "pool.capacity.mbps", "required (Mbit/s this NVR can record)"),
                Some(m) => {
                    let v = *m.get_ref();
                    if v.is_finite() && (0.0..=1e9).contains(&v) {
                        capacity.kbps = (v * 1000.0).round() as u64;
                    } else {
                        c.err(
                            m.span().start,
                            "pool.capacity.mbps",
                            "must be a number of Mbit/s from 0",
                        );
                    }
                }
            }
        }
    }

    let mut lease_ttl = DEFAULT_LEASE_TTL;
    if let Some(t) = &raw.lease_ttl {
        match units::parse_duration(&t.get_ref().text()) {
            Ok(d) => match check_lease_ttl(d) {
                Ok(()) => lease_ttl = d,
                Err(m) => c.err(t.span().start, "pool.lease_ttl", m),
            },
            Err(e) => c.err(t.span().start, "pool.lease_ttl", e),
        }
    }

    let mut prefix = DEFAULT_PREFIX.to_string();
    if let Some(p) = &raw.prefix {
        let v = p.get_ref();
        if v.len() >= 2 && v.starts_with('/') && v.ends_with('/') && !v.contains(char::is_whitespace) {
            prefix = v.clone();
        } else {
            c.err(
                p.span().start,
                "pool.prefix",
                "must start and end with '/' (e.g. \"/tandem/\") and hold no space",
            );
        }
    }

    let mut address = None;
    if let Some(a) = &raw.address {
        match url::Url::parse(a.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                address = Some(a.get_ref().clone())
            }
            _ => c.err(
                a.span().start,
                "pool.address",
                "must be an http:// or https:// URL with a host",
            ),
        }
    }

    (c.errors.len() == errors).then_some(PoolSettings {
        etcd,
        name,
        capacity,
        lease_ttl,
        prefix,
        address,
    })
}

fn endpoint(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match u.scheme() {
        "http" if u.host().is_some() => Ok(u),
        "https" => Err(format!(
            "{s:?}: TLS to etcd is not supported yet; use http:// on a trusted network"
        )),
        _ => Err(format!("{s:?}: must be http://host:port")),
    }
}

/// A member name becomes one etcd key segment; the same rule as `[nvr] name`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("use 1 to 64 letters, digits, `-`, `_` or `.` (it is part of an etcd key)".into())
    }
}

fn check_lease_ttl(d: Duration) -> Result<(), String> {
    if d.subsec_nanos() != 0 || d.is_zero() {
        Err("must be a whole number of seconds from 1 s (etcd leases count seconds)".into())
    } else if d > MAX_LEASE_TTL {
        Err("must be at most 1 h".into())
    } else {
        Ok(())
    }
}

/// `[pool]` as written back by `config::render`.
pub(super) fn render(p: &PoolSettings) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert(
        "etcd".into(),
        toml::Value::Array(
            p.etcd
                .iter()
                .map(|u| toml::Value::String(u.as_str().trim_end_matches('/').into()))
                .collect(),
        ),
    );
    t.insert("name".into(), p.name.clone().into());
    let mut cap = toml::Table::new();
    cap.insert("channels".into(), toml::Value::Integer(i64::from(p.capacity.channels)));
    cap.insert("mbps".into(), toml::Value::Float(p.capacity.kbps as f64 / 1000.0));
    t.insert("capacity".into(), toml::Value::Table(cap));
    if p.lease_ttl != DEFAULT_LEASE_TTL {
        t.insert("lease_ttl".into(), units::format_duration(p.lease_ttl).into());
    }
    if p.prefix != DEFAULT_PREFIX {
        t.insert("prefix".into(), p.prefix.clone().into());
    }
    if let Some(a) = &p.address {
        t.insert("address".into(), a.clone().into());
    }
    t
}
