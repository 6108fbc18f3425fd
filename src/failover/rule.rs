//! Failover rules: the paper's JSON form (Fig. 6), accepted exactly as printed
//! — one rule object or an array of them — plus extensions that keep its shape:
//! `name`; `check.type` (`icmp` default, `tcp` with `port`, `http` for a peer
//! Tandem's status endpoint, with `port`); fractional `check.interval`;
//! `check.timeout`; `channel` in state records (the network camera's channel);
//! `release_delay` (seconds the standby keeps a camera after failback when the
//! check cannot confirm the primary records it); `backup.port`; `tls = true`
//! on an `http` check or a backup (HTTPS to the peer, its certificate checked
//! against `[failover] peer_ca` or `peer_fingerprint`); `capacity =
//! { channels = N, mbps = X }` (the standby's room for failed primaries'
//! cameras: one budget for the whole NVR, see `super::capacity`).
//!
//! Owns parsing and validation; errors name the rule and the field and are all
//! reported at once. Must never resolve addresses on the network or open
//! sockets: resolution goes through the configured network camera list.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Icmp,
    Tcp,
    Http,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Check {
    pub kind: CheckKind,
    pub address: String,
    pub port: Option<u16>,
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    pub failure_count: u32,
    pub normal_count: u32,
    /// `http` checks only: ask over HTTPS, trusting `failover.peer_ca` or
    /// `failover.peer_fingerprint`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One state record: local channel → network camera (by address and channel), or idle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StateRecord {
    pub camera: u32,
    /// `None` is the paper's `n/a`: the channel is idle in this state.
    pub address: Option<String>,
    pub channel: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CameraMap {
    pub local: u32,
    pub remote: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Backup {
    pub address: String,
    pub port: Option<u16>,
    pub cameras: Vec<CameraMap>,
    /// Send footage over HTTPS (the peer token goes with every piece).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Rule {
    pub name: String,
    pub check: Check,
    pub normal: Vec<StateRecord>,
    pub failure: Vec<StateRecord>,
    pub backup: Option<Backup>,
    #[serde(serialize_with = "secs")]
    pub release_delay: Duration,
    /// The standby's capacity, shared by every rule of this NVR (rules
    /// that give it must agree: the configuration checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<super::capacity::Capacity>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}: {}", self.rule, self.field, self.message)
    }
}

/// Seconds the standby keeps a channel after failback by default: long enough
/// for a primary's camera session to come back (see docs/failover.md).
pub const DEFAULT_RELEASE_DELAY: Duration = Duration::from_secs(20);

struct Ctx<'a> {
    rule: String,
    errors: &'a mut Vec<RuleError>,
}

impl Ctx<'_> {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(RuleError {
            rule: self.rule.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
    fn string(&mut self, v: &Value, field: &str) -> Option<String> {
        match v.get(field_leaf(field)) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::String(_)) => {
                self.err(field, "must not be empty");
                None
            }
            Some(other) => {
                self.err(field, format!("must be a string, not {other}"));
                None
            }
            None => {
                self.err(field, "is required");
                None
            }
        }
    }
    /// An optional boolean, false when absent.
    fn flag(&mut self, v: &Value, field: &str) -> bool {
        match v.get(field_leaf(field)) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.err(field, format!("must be true or false, not {other}"));
                false
            }
        }
    }
    fn positive_int(&mut self, v: &Value, field: &str, required: bool) -> Option<u32> {
        match v.get(field_leaf(field)) {
            Some(n) => match n.as_u64() {
                Some(x) if x >= 1 && x <= u64::from(u32::MAX) => Some(x as u32),
                _ => {
                    self.err(field, format!("must be a positive integer, not {n}"));
                    None
                }
            },
            None if required => {
                self.err(field, "is required");
                None
            }
            None => None,
        }
    }
    fn seconds(&mut self, v: &Value, field: &str, min: f64, max: f64) -> Option<Duration> {
        let n = v.get(field_leaf(field))?;
        match n.as_f64() {
            // Whole microseconds: what a rule written back (`to_value`) reads as the same.
            Some(x) if (min..=max).contains(&x) => Some(Duration::from_micros((x * 1e6).round() as u64)),
            _ => {
                self.err(
                    field,
                    format!("must be a number of seconds from {min} to {max}, not {n}"),
                );
                None
            }
        }
    }
    fn port(&mut self, v: &Value, field: &str) -> Option<u16> {
        let n = v.get(field_leaf(field))?;
        match n.as_u64() {
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            _ => {
                self.err(field, format!("must be a port number, not {n}"));
                None
            }
        }
    }
    fn unknown_keys(&mut self, v: &Value, prefix: &str, known: &[&str]) {
        if let Some(obj) = v.as_object() {
            for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
                self.err(
                    format!("{prefix}{k}"),
                    format!("unknown field (expected one of: {})", known.join(", ")),
                );
            }
        }
    }
}

fn field_leaf(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

/// Parses a rules document: one rule object or an array of them.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        vec![RuleError {
            rule: "-".into(),
            field: format!("line {} column {}", e.line(), e.column()),
            message: format!("not valid JSON: {e}"),
        }]
    })?;
    let list = match doc {
        Value::Array(a) => a,
        v @ Value::Object(_) => vec![v],
        other => {
            return Err(vec![RuleError {
                rule: "-".into(),
                field: "(document)".into(),
                message: format!("must be a rule object or an array of rules, not {other}"),
            }])
        }
    };
    let values: Vec<(usize, Value)> = list.into_iter().enumerate().collect();
    rules_from_values(&values)
}

/// Validates rules given as JSON values (from a rules file or the TOML config).
pub fn rules_from_values(values: &[(usize, Value)]) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, v) in values {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", i + 1));
        let mut c = Ctx {
            rule: format!("`{name}`"),
            errors: &mut errors,
        };
        if !v.is_object() {
            c.err("(rule)", "must be an object");
            continue;
        }
        if !names.insert(name.clone()) {
            c.err("name", "another rule has the same name");
        }
        c.unknown_keys(
            v,
            "",
            &["name", "check", "states", "backup", "release_delay", "capacity"],
        );
        if let Some(rule) = parse_rule(&mut c, v, name) {
            rules.push(rule);
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn parse_rule(c: &mut Ctx<'_>, v: &Value, name: String) -> Option<Rule> {
    let check = match v.get("check") {
        Some(ch) if ch.is_object() => parse_check(c, ch),
        _ => {
            c.err("check", "is required and must be an object");
            None
        }
    };
    let (normal, failure) = match v.get("states") {
        Some(s) if s.is_object() => {
            c.unknown_keys(s, "states.", &["normal", "failure"]);
            (parse_records(c, s, "normal"), parse_records(c, s, "failure"))
        }
        _ => {
            c.err(
                "states",
                "is required and must be an object with `normal` and `failure`",
            );
            (None, None)
        }
    };
    let backup = match v.get("backup") {
        None | Some(Value::Null) => Some(None),
        Some(b) if b.is_object() => parse_backup(c, b).map(Some),
        Some(_) => {
            c.err("backup", "must be an object");
            None
        }
    };
    let release_delay = c
        .seconds(v, "release_delay", 0.0, 3600.0)
        .unwrap_or(DEFAULT_RELEASE_DELAY);
    let capacity = match v.get("capacity") {
        None | Some(Value::Null) => Some(None),
        Some(cap) if cap.is_object() => parse_capacity(c, cap).map(Some),
        Some(other) => {
            c.err(
                "capacity",
                format!("must be an object like {{ \"channels\": 8, \"mbps\": 40 }}, not {other}"),
            );
            None
        }
    };
    let (check, normal, failure, backup, capacity) = (check?, normal?, failure?, backup?, capacity?);
    if let Some(b) = &backup {
        for (i, m) in b.cameras.iter().enumerate() {
            if !failure.iter().any(|r| r.camera == m.local) {
                c.err(
                    format!("backup.cameras[{i}].local"),
                    format!("camera {} has no record in states.failure", m.local),
                );
            }
        }
    }
    Some(Rule {
        name,
        check,
        normal,
        failure,
        backup,
        release_delay,
        capacity,
    })
}

fn parse_capacity(c: &mut Ctx<'_>, v: &Value) -> Option<super::capacity::Capacity> {
    c.unknown_keys(v, "capacity.", &["channels", "mbps"]);
    let channels = match v.get("channels") {
        None => Some(None),
        Some(n) => match n.as_u64() {
            Some(x) if x <= 4096 => Some(Some(x as u32)),
            _ => {
                c.err(
                    "capacity.channels",
                    format!("must be a whole number from 0 to 4096, not {n}"),
                );
                None
            }
        },
    };
    let mbps = match v.get("mbps") {
        None => Some(None),
        Some(n) => match n.as_f64() {
            Some(x) if x > 0.0 && x <= 100_000.0 => Some(Some(x)),
            _ => {
                c.err("capacity.mbps", format!("must be a number of Mbit/s above 0, not {n}"));
                None
            }
        },
    };
    let cap = super::capacity::Capacity {
        channels: channels?,
        mbps: mbps?,
    };
    if cap.is_unlimited() {
        c.err("capacity", "give `channels`, `mbps` or both");
        return None;
    }
    Some(cap)
}

fn parse_check(c: &mut Ctx<'_>, v: &Value) -> Option<Check> {
    c.unknown_keys(
        v,
        "check.",
        &[
            "address",
            "interval",
            "failure_count",
            "normal_count",
            "type",
            "port",
            "timeout",
            "tls",
        ],
    );
    let address = c.string(v, "check.address");
    let kind = match v.get("type").map(|t| t.as_str()) {
        None | Some(Some("icmp")) => Some(CheckKind::Icmp),
        Some(Some("tcp")) => Some(CheckKind::Tcp),
        Some(Some("http")) => Some(CheckKind::Http),
        Some(_) => {
            c.err(
                "check.type",
                format!("must be \"icmp\", \"tcp\" or \"http\", not {}", v["type"]),
            );
            None
        }
    };
    let port = c.port(v, "check.port");
    let tls = c.flag(v, "check.tls");
    if tls && kind.is_some_and(|k| k != CheckKind::Http) {
        c.err("check.tls", "only an `http` check speaks TLS");
    }
    if kind == Some(CheckKind::Tcp) && port.is_none() && v.get("port").is_none() {
        c.err("check.port", "is required for a tcp check");
    }
    let interval = match v.get("interval") {
        Some(_) => c.seconds(v, "check.interval", 0.05, 3600.0),
        None => {
            c.err("check.interval", "is required");
            None
        }
    };
    let failure_count = c.positive_int(v, "check.failure_count", true);
    let normal_count = c.positive_int(v, "check.normal_count", true);
    let timeout = match v.get("timeout") {
        Some(_) => c.seconds(v, "check.timeout", 0.01, 60.0),
        // Without a timeout, a probe may take up to its interval (at least 200 ms).
        None => interval.map(|i| i.max(Duration::from_millis(200))),
    };
    Some(Check {
        kind: kind?,
        address: address?,
        port,
        interval: interval?,
        timeout: timeout?,
        failure_count: failure_count?,
        normal_count: normal_count?,
        tls,
    })
}

fn parse_records(c: &mut Ctx<'_>, states: &Value, state: &str) -> Option<Vec<StateRecord>> {
    let Some(list) = states.get(state).and_then(Value::as_array) else {
        c.err(format!("states.{state}"), "is required and must be an array");
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, r) in list.iter().enumerate() {
        let f = format!("states.{state}[{i}]");
        if !r.is_object() {
            c.err(&f, "must be an object");
            ok = false;
            continue;
        }
        c.unknown_keys(r, &format!("{f}."), &["camera", "address", "channel"]);
        let camera = c.positive_int(r, &format!("{f}.camera"), true);
        let address = match r.get("address") {
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("n/a") => Some(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Some(Some(s.trim().to_string())),
            _ => {
                c.err(
                    format!("{f}.address"),
                    "is required: a network camera's address, or \"n/a\"",
                );
                None
            }
        };
        let channel = c.positive_int(r, &format!("{f}.channel"), false);
        match (camera, address) {
            (Some(camera), Some(address)) => {
                if out.iter().any(|o: &StateRecord| o.camera == camera) {
                    c.err(
                        format!("{f}.camera"),
                        format!("camera {camera} appears twice in this state"),
                    );
                    ok = false;
                }
                out.push(StateRecord {
                    camera,
                    address,
                    channel,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn parse_backup(c: &mut Ctx<'_>, v: &Value) -> Option<Backup> {
    c.unknown_keys(v, "backup.", &["address", "port", "cameras", "tls"]);
    let address = c.string(v, "backup.address");
    let port = c.port(v, "backup.port");
    let tls = c.flag(v, "backup.tls");
    let Some(list) = v.get("cameras").and_then(Value::as_array) else {
        c.err("backup.cameras", "is required and must be an array");
        return None;
    };
    let mut cameras = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let local = c.positive_int(m, &format!("backup.cameras[{i}].local"), true);
        let remote = c.positive_int(m, &format!("backup.cameras[{i}].remote"), true);
        if let (Some(local), Some(remote)) = (local, remote) {
            cameras.push(CameraMap { local, remote });
        }
    }
    (cameras.len() == list.len()).then_some(Backup {
        address: address?,
        port,
        cameras,
        tls,
    })
}

impl Rule {
    /// The rule in the form `rules_from_values` reads (the paper's JSON,
    /// with `name`): what a parameter file writes as a `[[rule]]` table.
    pub fn to_value(&self) -> Value {
        use serde_json::{json, Map};
        let records = |list: &[StateRecord]| -> Value {
            list.iter()
                .map(|r| {
                    let mut m = Map::new();
                    m.insert("camera".into(), json!(r.camera));
                    m.insert("address".into(), json!(r.address.as_deref().unwrap_or("n/a")));
                    if let Some(ch) = r.channel {
                        m.insert("channel".into(), json!(ch));
                    }
                    Value::Object(m)
                })
                .collect()
        };
        let c = &self.check;
        let mut check = Map::new();
        check.insert("type".into(), json!(c.kind));
        check.insert("address".into(), json!(c.address));
        if let Some(p) = c.port {
            check.insert("port".into(), json!(p));
        }
        check.insert("interval".into(), json!(c.interval.as_secs_f64()));
        check.insert("timeout".into(), json!(c.timeout.as_secs_f64()));
        check.insert("failure_count".into(), json!(c.failure_count));
        check.insert("normal_count".into(), json!(c.normal_count));
        if c.tls {
            check.insert("tls".into(), json!(true));
        }
        let mut rule = Map::new();
        rule.insert("name".into(), json!(self.name));
        rule.insert("check".into(), Value::Object(check));
        rule.insert(
            "states".into(),
            json!({ "normal": records(&self.normal), "failure": records(&self.failure) }),
        );
        if let Some(b) = &self.backup {
            let mut m = Map::new();
            m.insert("address".into(), json!(b.address));
            if let Some(p) = b.port {
                m.insert("port".into(), json!(p));
            }
            m.insert("cameras".into(), json!(b.cameras));
            if b.tls {
                m.insert("tls".into(), json!(true));
            }
            rule.insert("backup".into(), Value::Object(m));
        }
        rule.insert("release_delay".into(), json!(self.release_delay.as_secs_f64()));
        if let Some(cap) = &self.capacity {
            rule.insert("capacity".into(), json!(cap));
        }
        Value::Object(rule)
    }
}

#[cfg(test)]
mod tests;

/// Rule documents used by tests and the failover lab.
pub mod tests_fixture {
    /// The paper's Fig. 6, exactly as printed.
    pub const PAPER_FIG6: &str = include_str!("rule/paper_fig6.json");
}

/// A rule with its state records resolved to network camera names.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConfiguredRule {
    pub rule: Rule,
    /// (local channel, network camera name or None for idle) per state.
    pub normal: Vec<(u32, Option<String>)>,
    pub failure: Vec<(u32, Option<String>)>,
    /// Where the rule was written (a rules file, or the TOML file and line),
    /// for messages about it; `None` until the configuration sets it.
    #[serde(skip)]
    pub source: Option<String>,
    #[serde(skip)]
    pub line: usize,
}

/// What resolution needs to know of a network camera.
pub struct CameraRef<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub channel: Option<u32>,
}

/// Resolves every state record's `address` (+ `channel`) through the network
/// camera list, and checks each record's local camera is a configured channel.
pub fn resolve(rule: &Rule, cameras: &[CameraRef<'_>], channels: &[u32]) -> Result<ConfiguredRule, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut c = Ctx {
        rule: format!("`{}`", rule.name),
        errors: &mut errors,
    };
    let one_state = |c: &mut Ctx<'_>, state: &str, records: &[StateRecord]| -> Vec<(u32, Option<String>)> {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if !channels.contains(&r.camera) {
                c.err(
                    format!("states.{state}[{i}].camera"),
                    format!("this NVR has no channel {}", r.camera),
                );
            }
            let Some(addr) = &r.address else {
                out.push((r.camera, None));
                continue;
            };
            let matches: Vec<&CameraRef<'_>> = cameras
                .iter()
                // A record or camera without `channel` means channel 1, as in the paper.
                .filter(|cam| cam.host == addr && cam.channel.unwrap_or(1) == r.channel.unwrap_or(1))
                .collect();
            match matches.as_slice() {
                [one] => out.push((r.camera, Some(one.name.to_string()))),
                [] => c.err(
                    format!("states.{state}[{i}].address"),
                    format!(
                        "no network_camera has address {addr}{}",
                        r.channel.map(|ch| format!(" and channel {ch}")).unwrap_or_default()
                    ),
                ),
                many => c.err(
                    format!("states.{state}[{i}].address"),
                    format!(
                        "{} network cameras have address {addr}; add `channel` to choose one",
                        many.len()
                    ),
                ),
            }
        }
        out
    };
    let normal = one_state(&mut c, "normal", &rule.normal);
    let failure = one_state(&mut c, "failure", &rule.failure);
    if errors.is_empty() {
        Ok(ConfiguredRule {
            rule: rule.clone(),
            normal,
            failure,
            source: None,
            line: 0,
        })
    } else {
        Err(errors)
    }
}

/// Two configured rules are the same rule whatever file and line they were
/// read from (a rules file inlined by an export is not a change).
impl PartialEq for ConfiguredRule {
    fn eq(&self, o: &Self) -> bool {
        self.rule == o.rule && self.normal == o.normal && self.failure == o.failure
    }
}
