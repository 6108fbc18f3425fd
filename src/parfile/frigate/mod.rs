//! Frigate `config.yml` → Tandem configuration: each Frigate camera becomes
//! one `[[network_camera]]` and one `[[channel]]` (numbered in file order),
//! its record/detect inputs the camera's stream and substream, `record`
//! retention and capture times the channel's recording mode, retention and
//! pre/post, `motion` and `zones` its motion settings; `mqtt` becomes
//! `[mqtt]`. Every key with no Tandem equivalent is a warning naming its
//! path. Invalid YAML or a wrong type is an error naming the file, line and
//! key path.
//!
//! Must never resolve an environment variable or write a resolved secret
//! (`{FRIGATE_…}` substitutions become `password_env`), never read more than
//! `MAX_YAML` bytes, and never let YAML aliases expand past `MAX_NODES`.

mod camera;
mod geometry;
mod model;
mod schema;
mod streams;

use std::cell::Cell;
use std::fmt;
use std::fmt::Write;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml_ng::Value;

use crate::config::{ConfigError, ConfigErrors};
use model::{Camera, Frigate, Go2rtc, Mqtt};

/// Frigate configurations are a few kilobytes; this leaves room for
/// hundreds of cameras.
pub const MAX_YAML: usize = 8 << 20;

/// Values (scalars, sequences and mappings) the document may hold once its
/// aliases are expanded. serde_yaml_ng bounds nesting (128 levels) and alias
/// jumps (100 × the number of events), but not what each jump expands to: one
/// anchor of 100 000 values named by 100 000 aliases passes its check and
/// expands to 10¹⁰ values. Counting first, without building anything, stops
/// such a document after `MAX_NODES` steps.
pub const MAX_NODES: usize = 200_000;

/// A Frigate configuration in Tandem's vocabulary.
pub struct Converted {
    /// `[[network_camera]]`, `[[channel]]` and `[mqtt]` tables.
    pub toml: String,
    /// What has no Tandem equivalent, named.
    pub warnings: Vec<String>,
}

/// A string as a TOML value (quoted and escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub fn convert(yaml: &str, file: &str) -> Result<Converted, ConfigErrors> {
    let one = |line: usize, field: &str, message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message,
        }])
    };
    if yaml.len() > MAX_YAML {
        return Err(one(
            0,
            "",
            format!(
                "is {} bytes; a Frigate configuration of more than {} bytes is refused",
                yaml.len(),
                MAX_YAML
            ),
        ));
    }
    let budget = Cell::new(MAX_NODES);
    Budget(&budget)
        .deserialize(serde_yaml_ng::Deserializer::from_str(yaml))
        .map_err(|e| yaml_error(file, &e))?;
    let mut doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| yaml_error(file, &e))?;
    if !doc.is_mapping() {
        return Err(one(
            1,
            "",
            "is not a Frigate configuration (a YAML mapping with `cameras:`)".into(),
        ));
    }
    // Types are checked on the text, where errors have lines; the values are
    // then read from the document with `<<:` merge keys applied, as Frigate's
    // YAML loader does.
    let _: Frigate = serde_yaml_ng::from_str(yaml).map_err(|e| yaml_error(file, &e))?;
    doc.apply_merge().map_err(|e| yaml_error(file, &e))?;

    let mut warnings = schema::unread(&doc);
    let mut errors = Vec::new();
    let section = |v: &Value, key: &str| v.get(key).cloned().filter(|v| !v.is_null());
    let go2rtc: Option<Go2rtc> = typed(file, "go2rtc", section(&doc, "go2rtc"))?;
    let streams = go2rtc.as_ref().and_then(|g| g.streams.as_ref());
    let cameras = match doc.get("cameras") {
        Some(Value::Mapping(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(one(
                0,
                "cameras",
                "a Frigate configuration needs at least one camera".into(),
            ))
        }
    };
    let mut network_cameras = String::new();
    let mut channels = String::new();
    let mut ctx = camera::Ctx {
        streams,
        warnings: &mut warnings,
        errors: &mut errors,
    };
    for (i, (name, cam)) in cameras.iter().enumerate() {
        // A key that is no name fails the typed pass above; kept for safety.
        let Some(name) = schema::key_text(name) else { continue };
        let mut cam = cam.clone();
        for key in ["record", "motion", "detect"] {
            if let Some(global) = section(&doc, key) {
                let own = cam.get(key).cloned().unwrap_or(Value::Null);
                if let Value::Mapping(m) = &mut cam {
                    m.insert(Value::String(key.into()), deep_merge(global, own));
                }
            }
        }
        let cam: Camera = typed(file, &format!("cameras.{name}"), Some(cam))?.unwrap_or_default();
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let imported = camera::import(&mut ctx, number, &name, &cam);
        if let Some(t) = imported.network_camera {
            let _ = writeln!(network_cameras, "{t}");
        }
        let _ = writeln!(channels, "{}", imported.channel);
    }
    let mqtt: Option<Mqtt> = typed(file, "mqtt", section(&doc, "mqtt"))?;
    let mqtt = mqtt.and_then(|m| mqtt_table(m, &mut warnings));
    if !errors.is_empty() {
        return Err(ConfigErrors(
            errors
                .into_iter()
                .map(|e| ConfigError {
                    file: file.to_string(),
                    line: 0,
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        ));
    }
    let mut toml = String::from("# Imported from a Frigate configuration.\n\n");
    toml.push_str(&network_cameras);
    toml.push_str(&channels);
    if let Some(m) = mqtt {
        toml.push_str(&m);
    }
    Ok(Converted {
        toml: toml.trim_end().to_string() + "\n",
        warnings,
    })
}

/// Reads a section of the (merged) document as `T`.
fn typed<T: serde::de::DeserializeOwned>(file: &str, at: &str, v: Option<Value>) -> Result<Option<T>, ConfigErrors> {
    let Some(v) = v else { return Ok(None) };
    serde_yaml_ng::from_value(v).map(Some).map_err(|e| {
        let (field, message) = split_path(&e.to_string());
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: 0,
            field: match field {
                Some(f) => format!("{at}.{f}"),
                None => at.to_string(),
            },
            message,
        }])
    })
}

/// Frigate's merge of a global section under a camera's: mappings merge key
/// by key, anything else in the camera's replaces the global value.
fn deep_merge(global: Value, own: Value) -> Value {
    match (global, own) {
        (Value::Mapping(mut g), Value::Mapping(o)) => {
            for (k, v) in o {
                let merged = match g.remove(&k) {
                    Some(gv) => deep_merge(gv, v),
                    None => v,
                };
                g.insert(k, merged);
            }
            Value::Mapping(g)
        }
        (g, Value::Null) => g,
        (_, o) => o,
    }
}

fn mqtt_table(m: Mqtt, warnings: &mut Vec<String>) -> Option<String> {
    if m.enabled == Some(false) {
        warnings.push("mqtt.enabled: MQTT is off in Frigate; [mqtt] not imported".into());
        return None;
    }
    let host = match m.host {
        Some(h) if h.0.contains('{') => {
            warnings.push(format!(
                "mqtt.host: `{}` is an environment substitution, which Tandem cannot take for an address; [mqtt] not imported",
                h.0
            ));
            return None;
        }
        Some(h) if !h.0.trim().is_empty() => h.0.trim().to_string(),
        _ => {
            warnings.push("mqtt.host: no broker host; [mqtt] not imported".into());
            return None;
        }
    };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[mqtt]\nbroker = {}",
        toml_str(&format!("mqtt://{host}:{}", m.port.unwrap_or(1883)))
    );
    if let Some(id) = m.client_id {
        let _ = writeln!(t, "client_id = {}", toml_str(&id.0));
    }
    match m.user {
        Some(u) if u.0.contains('{') => {
            warnings.push(format!(
                "mqtt.user: `{}` is an environment substitution, which Tandem cannot take for a user name; user and password not imported",
                u.0
            ));
            return Some(t);
        }
        Some(u) => {
            let _ = writeln!(t, "username = {}", toml_str(&u.0));
        }
        None => {}
    }
    if let Some(p) = m.password.map(|p| p.0) {
        match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(var) if !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                let _ = writeln!(t, "password_env = {}", toml_str(var));
            }
            _ if p.contains('{') => warnings.push(
                "mqtt.password: a password mixing text and `{…}` cannot be imported; set mqtt.password_env by hand"
                    .into(),
            ),
            _ => {
                let _ = writeln!(t, "password = {}", toml_str(&p));
            }
        }
    }
    Some(t)
}

/// serde_yaml_ng's `PATH: MESSAGE at line L column C` as (path, message).
fn split_path(text: &str) -> (Option<String>, String) {
    let text = match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => &text[..i],
        _ => text,
    };
    match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') && !path.is_empty() && path != "." => {
            (Some(path.to_string()), msg.to_string())
        }
        _ => (None, text.to_string()),
    }
}

fn yaml_error(file: &str, e: &serde_yaml_ng::Error) -> ConfigErrors {
    let (field, mut message) = split_path(&e.to_string());
    if message == "repetition limit exceeded" {
        message = "aliases repeat too often (serde_yaml_ng's limit of 100 jumps per event); refused".into();
    }
    ConfigErrors(vec![ConfigError {
        file: file.to_string(),
        line: e.location().map(|l| l.line()).unwrap_or(0),
        field: field.unwrap_or_default(),
        message,
    }])
}

/// Walks a document without building it, one unit of budget per value.
struct Budget<'a>(&'a Cell<usize>);

impl Budget<'_> {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.0.get() {
            0 => Err(E::custom(format_args!(
                "more than {MAX_NODES} values once aliases are expanded; refused"
            ))),
            n => {
                self.0.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budget<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budget<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.take()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.take()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.take()?;
        Budget(self.0).deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(Budget(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(Budget(self.0))?.is_some() {
            map.next_value_seed(Budget(self.0))?;
        }
        Ok(())
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag value`): the tag, then the value.
        self.take()?;
        let ((), variant) = data.variant_seed(Budget(self.0))?;
        variant.newtype_variant_seed(Budget(self.0))
    }
}

impl fmt::Debug for Converted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Converted")
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
