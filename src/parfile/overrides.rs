//! Per-NVR overrides for `config push`: one file sets up a fleet, and each
//! `[[override]]` table (`nvr = "nvr-b"`, which is also that NVR's
//! `[nvr] name`) replaces fields for one NVR. An
//! override is a partial document merged into the file by identity: tables
//! merge key by key; channels merge by `number`, and cameras, rules, actions
//! and users by `name`, so `[[override.channel]] number = 1  camera = "b1"`
//! changes channel 1's camera and nothing else; an item the file lacks is added.
//!
//! Must never change the file's other NVRs' view: merging is on a copy.

use toml::{Table, Value};

use crate::config::{ConfigError, ConfigErrors};

/// What names an item of an array of tables, for merging.
fn identity(key: &str) -> Option<&'static str> {
    match key {
        "channel" => Some("number"),
        "network_camera" | "rule" | "action" | "user" => Some("name"),
        _ => None,
    }
}

/// The file for NVR `nvr`: its `[[override]]` tables merged in, every
/// `[[override]]` and the header removed (the checksum was the whole
/// file's, checked before; the merged file is a new document).
pub fn for_nvr(text: &str, file: &str, nvr: &str) -> Result<String, ConfigErrors> {
    let err = |m: String| {
        ConfigErrors(vec![ConfigError {
            file: file.into(),
            line: 0,
            field: "override".into(),
            message: m,
        }])
    };
    let mut doc: Table = toml::from_str(text).map_err(|e| err(e.message().to_string()))?;
    let overrides = match doc.remove("override") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("must be [[override]] tables".into())),
    };
    doc.remove("parameter_file");
    for (i, o) in overrides.into_iter().enumerate() {
        let Value::Table(mut o) = o else {
            return Err(err(format!("[{i}] must be a table")));
        };
        match o.remove("nvr") {
            Some(Value::String(n)) if n == nvr => {
                // The override's `nvr` names the NVR it is for: that is its
                // `[nvr] name` too (the key cannot also hold a table).
                let mut named = Table::new();
                named.insert("name".into(), Value::String(n));
                o.insert("nvr".into(), Value::Table(named));
                merge(&mut doc, o)
            }
            Some(Value::String(_)) => {}
            _ => return Err(err(format!("[{i}].nvr is required: the name of the NVR it is for"))),
        }
    }
    toml::to_string(&doc).map_err(|e| err(e.to_string()))
}

/// The names of the NVRs the file's `[[override]]` tables are for, in order.
pub fn override_names(text: &str) -> Vec<String> {
    let Ok(doc) = toml::from_str::<Table>(text) else {
        return Vec::new();
    };
    let mut names: Vec<String> = doc
        .get("override")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("nvr").and_then(Value::as_str).map(str::to_string))
        .collect();
    names.dedup();
    names
}

fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (Some(Value::Array(b)), Value::Array(o)) if identity(&k).is_some() => {
                let id = identity(&k).unwrap_or_default();
                for item in o {
                    let Value::Table(item) = item else { continue };
                    let found = b
                        .iter_mut()
                        .filter_map(Value::as_table_mut)
                        .find(|t| item.get(id).is_some() && t.get(id) == item.get(id));
                    match found {
                        Some(t) => merge(t, item),
                        None => b.push(Value::Table(item)),
                    }
                }
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = r#"
[parameter_file]
format = 1
[nvr]
name = "nvr-a"
[http]
listen = "0.0.0.0:8080"
[[channel]]
number = 1
camera = "a1"
name = "Gate"
[[channel]]
number = 2
camera = "a2"
[[rule]]
name = "r"
backup = { address = "10.0.0.2", cameras = [ { local = 1, remote = 1 } ] }

[[override]]
nvr = "nvr-b"
[[override.channel]]
number = 1
camera = "b1"
[[override.channel]]
number = 3
camera = "b3"
[[override.rule]]
name = "r"
backup = { address = "10.0.0.1" }

[[override]]
nvr = "nvr-c"
[override.http]
listen = "0.0.0.0:9090"
"#;

    #[test]
    fn each_nvr_gets_its_fields_and_nothing_else() {
        assert_eq!(override_names(FLEET), vec!["nvr-b", "nvr-c"]);
        let b: Table = toml::from_str(&for_nvr(FLEET, "fleet.tpar", "nvr-b").unwrap()).unwrap();
        assert!(b.get("override").is_none() && b.get("parameter_file").is_none());
        assert_eq!(b["nvr"]["name"].as_str(), Some("nvr-b"));
        let ch = b["channel"].as_array().unwrap();
        assert_eq!(ch.len(), 3);
        assert_eq!(ch[0]["camera"].as_str(), Some("b1"));
        assert_eq!(ch[0]["name"].as_str(), Some("Gate"), "fields not overridden stay");
        assert_eq!(ch[1]["camera"].as_str(), Some("a2"));
        assert_eq!(ch[2]["number"].as_integer(), Some(3));
        let backup = &b["rule"].as_array().unwrap()[0]["backup"];
        assert_eq!(backup["address"].as_str(), Some("10.0.0.1"));
        assert!(backup["cameras"].as_array().is_some(), "a table merges key by key");
        assert_eq!(b["http"]["listen"].as_str(), Some("0.0.0.0:8080"));

        let c: Table = toml::from_str(&for_nvr(FLEET, "fleet.tpar", "nvr-c").unwrap()).unwrap();
        assert_eq!(c["http"]["listen"].as_str(), Some("0.0.0.0:9090"));
        assert_eq!(c["nvr"]["name"].as_str(), Some("nvr-c"));
        assert_eq!(c["channel"].as_array().unwrap()[0]["camera"].as_str(), Some("a1"));

        // An NVR without overrides gets the file as it is, minus the overrides.
        let d: Table = toml::from_str(&for_nvr(FLEET, "fleet.tpar", "nvr-d").unwrap()).unwrap();
        assert_eq!(d["channel"].as_array().unwrap().len(), 2);
        assert_eq!(d["nvr"]["name"].as_str(), Some("nvr-a"));

        let bad = "[[override]]\nname = \"x\"\n";
        let e = for_nvr(bad, "f.tpar", "x").unwrap_err().to_string();
        assert!(e.contains("override: [0].nvr is required"), "{e}");
    }
}
