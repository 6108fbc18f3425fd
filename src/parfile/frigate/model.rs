//! The part of Frigate's `config.yml` the import reads, as typed values: every
//! field optional (Frigate's defaults are applied by the mapping, not here),
//! unknown keys ignored (`schema` lists them as warnings). Maps whose order
//! matters (cameras, zones, named masks) keep the file's order.
//! Must never resolve an environment variable or a secret.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A YAML mapping in file order.
#[derive(Clone, Debug)]
pub(super) struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Text, T>()? {
                    out.push((k.0, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A scalar read as text: YAML types `password: 1234` and `user: yes` as
/// numbers and booleans, which Frigate reads as strings.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file, read only to check every type where it is written (so an
/// error has a line); the values are read per section from the document
/// once merge keys and global sections are applied.
#[allow(dead_code)]
#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Frigate {
    pub mqtt: Option<Mqtt>,
    pub go2rtc: Option<Go2rtc>,
    pub cameras: Option<Ordered<Camera>>,
    pub record: Option<Record>,
    pub motion: Option<Motion>,
    pub detect: Option<Detect>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Mqtt {
    pub enabled: Option<bool>,
    pub host: Option<Text>,
    pub port: Option<u16>,
    pub user: Option<Text>,
    pub password: Option<Text>,
    pub client_id: Option<Text>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Go2rtc {
    /// Stream name → one source or a list of them (`rtsp://…`, `ffmpeg:…`, …).
    pub streams: Option<Ordered<Sources>>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(super) enum Sources {
    One(String),
    Many(Vec<serde_yaml_ng::Value>),
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Camera {
    pub enabled: Option<bool>,
    pub ffmpeg: Option<Ffmpeg>,
    pub detect: Option<Detect>,
    pub record: Option<Record>,
    pub motion: Option<Motion>,
    pub zones: Option<Ordered<Zone>>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Ffmpeg {
    #[serde(default)]
    pub inputs: Vec<Input>,
}

#[derive(Deserialize, Clone, Debug)]
pub(super) struct Input {
    pub path: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Detect {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Record {
    pub enabled: Option<bool>,
    /// Frigate ≤ 0.13: days of everything (`mode: all`) or of segments with
    /// motion / active objects.
    pub retain: Option<Retain>,
    /// Frigate ≥ 0.16: days of everything.
    pub continuous: Option<Retain>,
    /// Frigate ≥ 0.16: days of segments with motion.
    pub motion: Option<Retain>,
    /// Frigate ≤ 0.13.
    pub events: Option<Events>,
    /// Frigate ≥ 0.14.
    pub alerts: Option<Capture>,
    pub detections: Option<Capture>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Retain {
    pub days: Option<f64>,
    pub mode: Option<RetainMode>,
}

/// Which segments `record.retain` keeps (Frigate ≤ 0.13).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RetainMode {
    All,
    Motion,
    ActiveObjects,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Events {
    pub pre_capture: Option<u32>,
    pub post_capture: Option<u32>,
    pub retain: Option<EventRetain>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct EventRetain {
    pub default: Option<f64>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Capture {
    pub pre_capture: Option<u32>,
    pub post_capture: Option<u32>,
    pub retain: Option<Retain>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Motion {
    pub enabled: Option<bool>,
    pub threshold: Option<i64>,
    pub contour_area: Option<i64>,
    pub frame_height: Option<u32>,
    pub mask: Option<Masks>,
}

/// `mask: "x,y,…"`, a list of such strings, or (Frigate ≥ 0.17) named masks.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(super) enum Masks {
    One(String),
    List(Vec<String>),
    Named(Ordered<Zone>),
}

/// A zone or a named mask.
#[derive(Deserialize, Clone, Debug)]
pub(super) struct Zone {
    pub coordinates: Coordinates,
    pub enabled: Option<bool>,
}

/// `"x1,y1,x2,y2,…"` or a list of `"x,y"` strings.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(super) enum Coordinates {
    One(String),
    List(Vec<String>),
}
