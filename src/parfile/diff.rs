//! What applying a configuration changes, item by item and field by field:
//! both sides are rendered to documents (`config::document`) and compared
//! there, so the diff speaks the file's own vocabulary and every table is
//! covered without a comparison written per type.
//!
//! Must never show a secret: secret fields read "(secret)" on both sides.

use std::collections::BTreeMap;
use std::fmt;

use toml::{Table, Value};

use crate::config::Config;

/// One item (a table, a camera, a channel, …) that differs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    /// "network_camera `cam1`", "channel 2", "rule `r1`", "user `ann`", "storage".
    pub item: String,
    pub kind: ChangeKind,
    /// (field, before, after); "" for a side that has no such field.
    pub fields: Vec<(String, String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// What applying `desired` over `running` changes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// "2 changed, 1 added, 0 removed", for logs and tables.
    pub fn summary(&self) -> String {
        let n = |k| self.changes.iter().filter(|c| c.kind == k).count();
        format!(
            "{} changed, {} added, {} removed",
            n(ChangeKind::Changed),
            n(ChangeKind::Added),
            n(ChangeKind::Removed)
        )
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no change");
        }
        for c in &self.changes {
            let mark = match c.kind {
                ChangeKind::Added => '+',
                ChangeKind::Removed => '-',
                ChangeKind::Changed => '~',
            };
            writeln!(f, "{mark} {}", c.item)?;
            if c.kind == ChangeKind::Changed {
                for (field, before, after) in &c.fields {
                    let side = |s: &str| {
                        if s.is_empty() {
                            "(none)".to_string()
                        } else {
                            s.to_string()
                        }
                    };
                    writeln!(f, "    {field}: {} → {}", side(before), side(after))?;
                }
            }
        }
        Ok(())
    }
}

/// Tables that are one item each, in reading order.
const SINGLE: &[&str] = &["nvr", "storage", "http", "access", "failover", "mqtt"];
/// Arrays of tables, with what names an item.
const LISTS: &[(&str, &[&str])] = &[
    ("network_camera", &["name"]),
    ("channel", &["number"]),
    ("rule", &["name"]),
    ("trigger", &["channel", "type", "mqtt_topic"]),
    ("action", &["name"]),
    ("user", &["name"]),
    ("token", &["user", "name", "created_ms"]),
];
/// Fields never shown.
const SECRET: &[&str] = &["password", "peer_token", "secret_hash", "password_hash", "token", "pin"];

/// `running` → `desired`, item by item. Accounts are compared only when both
/// sides state them (a configuration without accounts leaves them alone).
pub fn diff(running: &Config, desired: &Config) -> Diff {
    let (mut a, b) = (super::document(running), super::document(desired));
    if desired.accounts.is_none() {
        a.remove("user");
        a.remove("token");
    }
    if desired.accounts.as_ref().is_some_and(|x| x.tokens.is_none()) {
        a.remove("token");
    }
    let mut changes = Vec::new();
    for key in SINGLE {
        let (x, y) = (
            a.get(*key).and_then(Value::as_table),
            b.get(*key).and_then(Value::as_table),
        );
        if let Some(c) = compare(key.to_string(), x, y) {
            changes.push(c);
        }
    }
    for (key, id) in LISTS {
        let items = |d: &Table| -> BTreeMap<String, Table> {
            d.get(*key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_table)
                .map(|t| (name(key, id, t), t.clone()))
                .collect()
        };
        let (x, y) = (items(&a), items(&b));
        let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
        names.sort_by_key(|n| natural(n));
        names.dedup();
        for n in names {
            if let Some(c) = compare(n.clone(), x.get(n), y.get(n)) {
                changes.push(c);
            }
        }
    }
    Diff { changes }
}

fn name(key: &str, id: &[&str], t: &Table) -> String {
    let v = |k: &str| match t.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    match key {
        "channel" => format!("channel {}", v("number")),
        "trigger" => format!(
            "trigger `{}` on channel {} ({})",
            v("type"),
            v("channel"),
            v("mqtt_topic")
        ),
        "token" => format!("token `{}` of user `{}`", v("name"), v("user")),
        _ => format!("{key} `{}`", id.iter().map(|k| v(k)).collect::<Vec<_>>().join("/")),
    }
}

/// Orders "channel 10" after "channel 9".
fn natural(s: &str) -> (String, u64, String) {
    let digits: String = s
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    let prefix: String = s.chars().take_while(|c| !c.is_ascii_digit()).collect();
    (prefix, digits.parse().unwrap_or(0), s.to_string())
}

fn compare(item: String, before: Option<&Table>, after: Option<&Table>) -> Option<Change> {
    let empty = Table::new();
    let (kind, x, y) = match (before, after) {
        (None, None) => return None,
        (None, Some(y)) => (ChangeKind::Added, &empty, y),
        (Some(x), None) => (ChangeKind::Removed, x, &empty),
        (Some(x), Some(y)) if x == y => return None,
        (Some(x), Some(y)) => (ChangeKind::Changed, x, y),
    };
    let (mut fx, mut fy) = (BTreeMap::new(), BTreeMap::new());
    flatten("", x, &mut fx);
    flatten("", y, &mut fy);
    let mut fields = Vec::new();
    let keys: std::collections::BTreeSet<&String> = fx.keys().chain(fy.keys()).collect();
    for k in keys {
        let (b, a) = (fx.get(k), fy.get(k));
        if b != a {
            let shown = |v: Option<&String>| match v {
                None => String::new(),
                Some(_) if SECRET.contains(&k.rsplit('.').next().unwrap_or(k)) => "(secret)".to_string(),
                Some(v) => v.clone(),
            };
            let (sb, sa) = (shown(b), shown(a));
            // A secret that changed shows as "(secret) → (secret, changed)".
            let sa = if sb == sa && !sa.is_empty() {
                format!("{sa}, changed")
            } else {
                sa
            };
            fields.push((k.clone(), sb, sa));
        }
    }
    Some(Change { item, kind, fields })
}

/// Nested tables become dotted fields; anything else is shown as TOML writes it.
fn flatten(prefix: &str, t: &Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(inner) => flatten(&key, inner, out),
            v => {
                out.insert(key, v.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::render::tests::every_table;

    #[test]
    fn each_kind_of_change_is_named_with_its_fields() {
        let dir = tempfile::tempdir().unwrap();
        let running = every_table(dir.path());
        assert!(diff(&running, &running).is_empty());
        let mut desired = running.clone();
        desired.channels[0].name = "Front door".into();
        desired.channels.remove(2);
        desired.cameras[1].credentials.as_mut().unwrap().password = "new".into();
        desired.cameras[1].credentials.as_mut().unwrap().source = crate::config::SecretSource::Inline;
        let mut cam = desired.cameras[0].clone();
        cam.name = "yard".into();
        desired.cameras.push(cam);
        desired.storage.flush_interval = std::time::Duration::from_secs(2);
        let d = diff(&running, &desired);
        let text = d.to_string();
        assert!(
            text.contains("~ channel 1\n    name: \"Lobby\" → \"Front door\""),
            "{text}"
        );
        assert!(text.contains("- channel 3"), "{text}");
        assert!(text.contains("+ network_camera `yard`"), "{text}");
        assert!(
            text.contains("~ storage\n    flush_interval: \"300ms\" → \"2s\""),
            "{text}"
        );
        // The dock camera's password came from the environment and is now written: no value shown.
        assert!(text.contains("~ network_camera `dock`"), "{text}");
        assert!(!text.contains("\"new\"") && !text.contains("dock-secret"), "{text}");
        assert_eq!(d.summary(), "3 changed, 1 added, 1 removed");
    }

    #[test]
    fn an_action_secret_that_changed_shows_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let running = every_table(dir.path());
        let mut desired = running.clone();
        for a in &mut desired.actions {
            match &mut a.target {
                crate::config::ActionTarget::Sms(s) => match &mut s.provider {
                    crate::config::SmsProvider::Kannel { password, .. } => password.value = "kannel-new".into(),
                    crate::config::SmsProvider::Modem { pin: Some(p), .. } => p.value = "5555".into(),
                    _ => {}
                },
                crate::config::ActionTarget::Email(e) => {
                    if let Some(p) = &mut e.password {
                        p.value = "smtp-new".into();
                    }
                }
                _ => {}
            }
        }
        let text = diff(&running, &desired).to_string();
        assert!(text.contains("~ action `sms-kannel`"), "{text}");
        assert!(text.contains("~ action `sms-modem`"), "{text}");
        assert!(text.contains("~ action `provider-mail`"), "{text}");
        for secret in ["kannel-new", "kannel-secret", "5555", "9081", "smtp-new", "smtp-secret"] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
    }

    #[test]
    fn accounts_are_compared_only_when_the_file_states_them() {
        let dir = tempfile::tempdir().unwrap();
        let running = every_table(dir.path());
        let mut desired = running.clone();
        desired.accounts = None;
        assert!(diff(&running, &desired).is_empty());
        let mut desired = running.clone();
        desired.accounts.as_mut().unwrap().users.remove(1);
        let text = diff(&running, &desired).to_string();
        assert!(text.contains("- user `guard`"), "{text}");
        assert!(!text.contains("argon2"), "{text}");
    }
}
