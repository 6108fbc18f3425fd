//! The `[failover]` table and the failover rules (from its JSON `rules`
//! file and from `[[rule]]` tables), resolved against the configured cameras
//! and channels, plus the checks that catch rule sets which would lose or
//! duplicate footage: channels shared between rules (accepted, with the
//! arbitration explained in a warning) and a backup address that is this NVR.
//! Must never open a socket or resolve a name.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{units, ChannelConfig, Checker, ConfigError, FailoverSettings, NetworkCamera, RawConfig, SizeOrNumber};
use crate::failover::rule::ConfiguredRule;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    /// A JSON rules file in the paper's form.
    pub(super) rules: Option<Spanned<String>>,
    pub(super) peer_token: Option<Spanned<String>>,
    pub(super) peer_token_env: Option<Spanned<String>>,
    pub(super) transfer_rate: Option<Spanned<SizeOrNumber>>,
    /// PEM CA certificate(s) a peer's TLS certificate must chain to.
    pub(super) peer_ca: Option<Spanned<String>>,
    /// `sha256:HEX` of the one certificate a peer may present.
    pub(super) peer_fingerprint: Option<Spanned<String>>,
}

/// Checks the `[failover]` table.
pub(super) fn failover_settings(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawFailover>>,
    rules: &[crate::failover::rule::ConfiguredRule],
    base: &Path,
) -> FailoverSettings {
    let mut failover = FailoverSettings::default();
    if let Some(f) = raw {
        let f = f.get_ref();
        match (&f.peer_token, &f.peer_token_env) {
            (Some(t), None) if t.get_ref().len() >= 16 => failover.peer_token = Some(t.get_ref().clone()),
            (Some(t), None) => c.err(t.span().start, "failover.peer_token", "must be at least 16 characters"),
            (None, Some(v)) => match std::env::var(v.get_ref()) {
                Ok(t) if t.len() >= 16 => {
                    failover.peer_token = Some(t);
                    failover.peer_token_env = Some(v.get_ref().clone());
                }
                Ok(_) => c.err(
                    v.span().start,
                    "failover.peer_token_env",
                    "the token must be at least 16 characters",
                ),
                Err(_) => c.err(
                    v.span().start,
                    "failover.peer_token_env",
                    format!("environment variable `{}` is not set", v.get_ref()),
                ),
            },
            (Some(t), Some(_)) => c.err(
                t.span().start,
                "failover.peer_token",
                "give peer_token or peer_token_env, not both",
            ),
            (None, None) => failover.peer_token = c.secret("failover.peer_token"),
        }
        if let Some(r) = &f.transfer_rate {
            match units::parse_bytes(&r.get_ref().text()) {
                Ok(b) if b >= 10_000 => failover.transfer_rate = b,
                Ok(_) => c.err(
                    r.span().start,
                    "failover.transfer_rate",
                    "must be at least 10 kB (per second)",
                ),
                Err(e) => c.err(r.span().start, "failover.transfer_rate", e),
            }
        }
        failover.peer_trust = peer_trust(c, f, base);
    }
    let uses_tls = rules
        .iter()
        .any(|r| r.rule.check.tls || r.rule.backup.as_ref().is_some_and(|b| b.tls));
    if uses_tls && failover.peer_trust.is_none() && c.errors.is_empty() {
        c.err(
            raw.map(|f| f.span().start).unwrap_or(0),
            "failover.peer_ca",
            "rules with `tls = true` need failover.peer_ca or failover.peer_fingerprint to check the peer's certificate",
        );
    }
    if rules.iter().any(|r| r.rule.backup.is_some()) && failover.peer_token.is_none() && c.errors.is_empty() {
        c.err(
            0,
            "failover.peer_token",
            "rules with `backup` need a peer token to send footage back",
        );
    }
    failover
}

/// `peer_ca` (read and parsed now, so `tandem check` finds a bad file) or
/// `peer_fingerprint`; not both.
fn peer_trust(c: &mut Checker<'_>, f: &RawFailover, base: &Path) -> Option<crate::httpc::PeerTrust> {
    use crate::httpc::PeerTrust;
    match (&f.peer_ca, &f.peer_fingerprint) {
        (Some(ca), Some(_)) => {
            c.err(
                ca.span().start,
                "failover.peer_ca",
                "give peer_ca or peer_fingerprint, not both",
            );
            None
        }
        (Some(ca), None) => {
            let path = base.join(ca.get_ref());
            let trust = crate::web::tls::load_certs(&path)
                .map_err(|e| e.to_string())
                .map(|roots| PeerTrust::Ca { path, roots })
                .and_then(|t| crate::httpc::PeerTls::new(&t).map(|_| t));
            match trust {
                Ok(t) => Some(t),
                Err(e) => {
                    c.err(ca.span().start, "failover.peer_ca", e);
                    None
                }
            }
        }
        (None, Some(fp)) => match crate::web::tls::parse_fingerprint(fp.get_ref()) {
            Ok(fp) => Some(PeerTrust::Fingerprint(fp)),
            Err(e) => {
                c.err(fp.span().start, "failover.peer_fingerprint", e);
                None
            }
        },
        (None, None) => None,
    }
}

/// Loads rules from the JSON file named in `[failover]` and from `[[rule]]`
/// tables, then resolves them against the cameras and channels.
pub(super) fn load_rules(
    c: &mut Checker<'_>,
    raw: &RawConfig,
    base: &Path,
    cameras: &[NetworkCamera],
    channels: &[ChannelConfig],
) -> Vec<crate::failover::rule::ConfiguredRule> {
    use crate::failover::rule::{self as r, CameraRef};
    let push_errors = |c: &mut Checker<'_>, file: &str, line: usize, errs: Vec<r::RuleError>| {
        for e in errs {
            c.errors.push(ConfigError {
                file: file.to_string(),
                line,
                field: format!("rule {}: {}", e.rule, e.field),
                message: e.message,
            });
        }
    };
    // (source file, line, rule), for reporting.
    let mut parsed: Vec<(String, usize, r::Rule)> = Vec::new();
    if let Some(f) = raw.failover.as_ref().and_then(|f| f.get_ref().rules.as_ref()) {
        let path = base.join(f.get_ref());
        let shown = path.display().to_string();
        match super::source::read_bounded(&path) {
            Ok(text) => match r::parse_rules(&text) {
                Ok(rules) => parsed.extend(rules.into_iter().map(|x| (shown.clone(), 0, x))),
                Err(errs) => push_errors(c, &shown, 0, errs),
            },
            Err(e) => c.err(
                f.span().start,
                "failover.rules",
                format!("cannot read `{}`: {e}", f.get_ref()),
            ),
        }
    }
    let file = c.file.to_string();
    for (i, t) in raw.rule.iter().enumerate() {
        let line = c.line_of(t.span().start);
        let json = match serde_json::to_value(t.get_ref()) {
            Ok(v) => v,
            Err(e) => {
                c.err(t.span().start, format!("rule[{i}]"), e.to_string());
                continue;
            }
        };
        match r::rules_from_values(&[(i, json)]) {
            Ok(mut rules) => parsed.push((file.clone(), line, rules.remove(0))),
            Err(errs) => push_errors(c, &file, line, errs),
        }
    }
    let refs: Vec<CameraRef<'_>> = cameras
        .iter()
        .map(|cam| CameraRef {
            name: &cam.name,
            host: cam.url.host_str().unwrap_or(""),
            channel: cam.channel,
        })
        .collect();
    let numbers: Vec<u32> = channels.iter().map(|ch| ch.number).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (file, line, rule) in parsed {
        if !seen.insert(rule.name.clone()) {
            let e = r::RuleError {
                rule: format!("`{}`", rule.name),
                field: "name".into(),
                message: "another rule has the same name".into(),
            };
            push_errors(c, &file, line, vec![e]);
            continue;
        }
        match r::resolve(&rule, &refs, &numbers) {
            Ok(cr) => out.push(ConfiguredRule {
                source: Some(file),
                line,
                ..cr
            }),
            Err(errs) => push_errors(c, &file, line, errs),
        }
    }
    check_capacity(c, &out);
    out
}

/// The capacity is the standby's, one budget for all its rules: rules that
/// state it must state the same (a rules file has one rule per primary and
/// no place for the NVR's own figures).
fn check_capacity(c: &mut Checker<'_>, rules: &[ConfiguredRule]) {
    let mut given = rules.iter().filter_map(|r| r.rule.capacity.map(|cap| (r, cap)));
    let Some((first, cap)) = given.next() else { return };
    for (r, other) in given.filter(|(_, o)| *o != cap) {
        let (file, line) = rule_place(c, r);
        c.errors.push(ConfigError {
            file,
            line,
            field: format!("rule `{}`: capacity", r.rule.name),
            message: format!(
                "{other:?} differs from rule `{}`'s {cap:?}: the capacity is this NVR's, shared by all its rules; \
                 give the same figures or give them on one rule only",
                first.rule.name
            ),
        });
    }
}

/// Channels named by more than one rule. The agents arbitrate them at run
/// time (see `failover::arbiter` and docs/failover.md): the first rule to
/// enter failure holds the channel, the others wait. That is accepted, but an
/// operator must know it, and `normal` cameras that disagree are named.
pub(super) fn check_shared_channels(c: &mut Checker<'_>, rules: &[ConfiguredRule]) {
    let mut by_channel: BTreeMap<u32, Vec<&ConfiguredRule>> = BTreeMap::new();
    for r in rules {
        let mut mine: Vec<u32> = r.normal.iter().chain(&r.failure).map(|(ch, _)| *ch).collect();
        mine.sort_unstable();
        mine.dedup();
        for ch in mine {
            by_channel.entry(ch).or_default().push(r);
        }
    }
    for (ch, users) in by_channel.into_iter().filter(|(_, u)| u.len() > 1) {
        let names: Vec<String> = users.iter().map(|r| format!("`{}`", r.rule.name)).collect();
        let (file, line) = rule_place(c, users[1]);
        c.warnings.push(ConfigError {
            file: file.clone(),
            line,
            field: format!("rule `{}`: states (channel {ch})", users[1].rule.name),
            message: format!(
                "channel {ch} is bound by rules {}: the first rule to enter failure holds it and the others wait \
                 until it is released; while several are in failure only the holder's camera is recorded \
                 (see docs/failover.md)",
                names.join(", ")
            ),
        });
        // Resting binding: the first camera a rule binds the channel to in `normal`.
        let cams: Vec<(&str, &String)> = users
            .iter()
            .filter_map(|r| {
                r.normal
                    .iter()
                    .find(|(n, _)| *n == ch)
                    .and_then(|(_, cam)| cam.as_ref().map(|cam| (r.rule.name.as_str(), cam)))
            })
            .collect();
        if let Some((first, cam)) = cams.first() {
            for (other, o) in cams[1..].iter().filter(|(_, o)| o != cam) {
                c.warnings.push(ConfigError {
                    file: file.clone(),
                    line,
                    field: format!("rule `{other}`: states.normal (channel {ch})"),
                    message: format!(
                        "binds channel {ch} to `{o}` in `normal`, but rule `{first}` (listed first) binds it to \
                         `{cam}`; `{cam}` is recorded when no rule is in failure"
                    ),
                });
            }
        }
    }
}

/// Where a rule was written, for messages about it.
fn rule_place(c: &Checker<'_>, r: &ConfiguredRule) -> (String, usize) {
    (r.source.clone().unwrap_or_else(|| c.file.to_string()), r.line)
}

/// A `backup` that is this NVR's own HTTP listener would send its own footage
/// back to itself, imported as duplicates: refused. Names are not resolved
/// (no network at check time); `localhost` counts as loopback.
pub(super) fn check_backup_is_not_self(c: &mut Checker<'_>, rules: &[ConfiguredRule], listen: SocketAddr) {
    let own = own_addresses();
    for r in rules {
        let Some(b) = &r.rule.backup else { continue };
        let port = b.port.unwrap_or(8080);
        if backup_is_self(&b.address, port, listen, &own) {
            let (file, line) = rule_place(c, r);
            c.errors.push(ConfigError {
                file,
                line,
                field: format!("rule `{}`: backup.address", r.rule.name),
                message: format!(
                    "{}:{port} is this NVR's own HTTP listener (http.listen = {listen}): it would import its own \
                     footage as duplicates; name the peer NVR",
                    b.address
                ),
            });
        }
    }
}

/// Pure: is `address:port` the listener at `listen`, given this host's own
/// interface addresses?
pub fn backup_is_self(address: &str, port: u16, listen: SocketAddr, own: &[IpAddr]) -> bool {
    if port != listen.port() {
        return false;
    }
    let a = address.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if a.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        match a.parse() {
            Ok(ip) => ip,
            // A host name: unknown without resolving it.
            Err(_) => return false,
        }
    };
    let l = listen.ip();
    if l.is_unspecified() {
        // Listening on every address: any address of this host reaches it.
        ip.is_loopback() || ip.is_unspecified() || own.contains(&ip)
    } else {
        ip == l || (ip.is_loopback() && l.is_loopback() && a.eq_ignore_ascii_case("localhost"))
    }
}

/// This host's interface addresses (empty when they cannot be listed).
fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifs) != 0 {
            return out;
        }
        let mut p = ifs;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifs);
    }
    out
}
