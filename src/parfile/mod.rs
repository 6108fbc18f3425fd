//! The parameter file (`.tpar`): the whole configuration of an NVR as one
//! portable TOML file — the configuration file's own vocabulary plus a
//! `[parameter_file]` header (format version, Tandem version, source NVR,
//! export time, SHA-256 of the canonical content) and a `[secrets]` table
//! sealed with a passphrase (age, scrypt). Exporting renders the running
//! configuration; reading checks the header and opens the secrets; parsing
//! gives the `Config` to apply.
//!
//! Must never write a secret in clear, and never apply anything: applying is
//! `apply`'s, reconciling the running NVR is `Nvr::apply`'s.

pub mod apply;
mod diff;
pub mod frigate;
mod overrides;
mod secrets;

use std::path::Path;

pub use crate::config::{document, SecretValues};
use crate::config::{Config, ConfigError, ConfigErrors};

/// The format this Tandem writes.
pub const FORMAT_VERSION: u32 = 1;

/// The `[parameter_file]` table.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub format: u32,
    /// The Tandem version that wrote the file.
    pub tandem: String,
    /// The NVR it was exported from (its `nvr_id`).
    pub nvr: String,
    /// RFC 3339.
    pub exported: String,
    /// Hex SHA-256 of the canonical content (everything but this field).
    pub sha256: String,
}

/// What to do with secrets on export.
#[derive(Clone, Debug)]
pub enum Secrets {
    /// Seal them with this passphrase.
    Seal(String),
    /// Leave them out.
    Omit,
}

pub struct ExportOptions {
    pub secrets: Secrets,
    pub nvr_id: String,
    pub now_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ParError {
    #[error("cannot seal the secrets: {0}")]
    Seal(String),
    #[error("cannot render the configuration: {0}")]
    Render(String),
}

/// Renders `config` (with its `accounts`, read from the store by the caller)
/// as a parameter file: header, body in the configuration's vocabulary,
/// secrets sealed or left out.
pub fn export(config: &Config, opts: &ExportOptions) -> Result<String, ParError> {
    let mut doc = document(config);
    let secrets = secrets::extract(&mut doc);
    match &opts.secrets {
        Secrets::Seal(pass) => {
            let sealed = secrets::seal(&secrets, pass).map_err(ParError::Seal)?;
            let mut t = toml::Table::new();
            t.insert("sealed".into(), sealed.into());
            doc.insert("secrets".into(), toml::Value::Table(t));
        }
        Secrets::Omit => {
            // A token is its hash: without secrets there is no token to write.
            doc.remove("token");
        }
    }
    let exported = jiff::Timestamp::from_millisecond(opts.now_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut header = Header {
        format: FORMAT_VERSION,
        tandem: env!("CARGO_PKG_VERSION").to_string(),
        nvr: opts.nvr_id.clone(),
        exported,
        sha256: String::new(),
    };
    let header_value = toml::Value::try_from(&header).map_err(|e| ParError::Render(e.to_string()))?;
    doc.insert(HEADER.into(), header_value);
    header.sha256 = checksum(&doc).map_err(ParError::Render)?;
    let header_value = toml::Value::try_from(&header).map_err(|e| ParError::Render(e.to_string()))?;
    doc.insert(HEADER.into(), header_value);
    layout(&doc).map_err(ParError::Render)
}

/// The header's table name.
const HEADER: &str = "parameter_file";

/// The order a person reads a configuration in; anything else follows.
const ORDER: &[&str] = &[
    HEADER,
    "nvr",
    "storage",
    "http",
    "access",
    "network_camera",
    "channel",
    "failover",
    "rule",
    "mqtt",
    "trigger",
    "action",
    "user",
    "token",
    "override",
    "secrets",
];

/// The document as text, tables in `ORDER` (toml's own writer sorts keys).
fn layout(doc: &toml::Table) -> Result<String, String> {
    let mut out = String::from(
        "# Tandem parameter file: the whole configuration of an NVR.\n\
         # Import with `tandem config import FILE`; an edit by hand needs --accept-edited.\n\n",
    );
    let rest = doc.keys().filter(|k| !ORDER.contains(&k.as_str()));
    for key in ORDER.iter().copied().chain(rest.map(String::as_str)) {
        let Some(v) = doc.get(key) else { continue };
        let mut one = toml::Table::new();
        one.insert(key.to_string(), v.clone());
        out.push_str(&toml::to_string(&one).map_err(|e| e.to_string())?);
        out.push('\n');
    }
    Ok(out)
}

/// Hex SHA-256 of the canonical content: the document as toml writes it
/// (keys sorted, comments and layout gone) without the checksum itself, so
/// that re-indenting a file does not count as an edit and changing a value does.
fn checksum(doc: &toml::Table) -> Result<String, String> {
    use sha2::Digest;
    let mut doc = doc.clone();
    if let Some(toml::Value::Table(h)) = doc.get_mut(HEADER) {
        h.remove("sha256");
    }
    let canonical = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(crate::evidence::hex(&sha2::Sha256::digest(canonical.as_bytes())))
}

pub struct ReadOptions {
    pub passphrase: Option<String>,
    /// Take a file whose checksum does not match (edited by hand on purpose).
    pub accept_edited: bool,
}

/// A parameter file read and checked, ready to parse.
pub struct Incoming {
    pub text: String,
    pub header: Option<Header>,
    /// Opened `[secrets]`; empty when the file has none.
    pub secrets: SecretValues,
    /// What reading noticed (a migration, an accepted edit).
    pub notes: Vec<String>,
}

/// Checks the header and checksum and opens the secrets; a plain
/// configuration file (no header) is read as it is.
pub fn read(text: &str, file: &str, opts: &ReadOptions) -> Result<Incoming, ConfigErrors> {
    let doc: toml::Table = match toml::from_str(text) {
        Ok(d) => d,
        // The configuration parser reports syntax errors with their field.
        Err(_) => return Err(parse_errors(text, file)),
    };
    let err = |field: &str, message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: line_of(text, field),
            field: field.to_string(),
            message,
        }])
    };
    let mut notes = Vec::new();
    let header = match doc.get(HEADER) {
        None => {
            notes.push("a configuration file without a parameter-file header: read as it is".to_string());
            None
        }
        Some(v) => {
            let h: Header = v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| err(HEADER, e.message().to_string()))?;
            if h.format > FORMAT_VERSION {
                return Err(err(
                    "parameter_file.format",
                    format!(
                        "format {} was written by a newer Tandem ({}); this one reads up to format {FORMAT_VERSION}",
                        h.format, h.tandem
                    ),
                ));
            }
            if h.format < 1 {
                return Err(err("parameter_file.format", "must be 1 or more".into()));
            }
            let sum = checksum(&doc).map_err(|e| err(HEADER, e))?;
            if sum != h.sha256 {
                if !opts.accept_edited {
                    return Err(err(
                        "parameter_file.sha256",
                        "the content does not match the checksum written at export: the file was damaged or \
                         edited since; import with --accept-edited if the edit is wanted"
                            .into(),
                    ));
                }
                notes.push("the file was edited since its export (checksum differs): accepted as asked".into());
            }
            Some(h)
        }
    };
    let secrets = match doc.get("secrets") {
        None => SecretValues::new(),
        Some(t) => {
            let sealed = t.get("sealed").and_then(toml::Value::as_str).ok_or_else(|| {
                err(
                    "secrets.sealed",
                    "must be the sealed secrets written by an export".into(),
                )
            })?;
            let Some(pass) = &opts.passphrase else {
                return Err(err(
                    "secrets",
                    "the file holds sealed secrets: give the passphrase it was exported with (--passphrase-env VAR)"
                        .into(),
                ));
            };
            secrets::open(sealed, pass).map_err(|e| err("secrets.sealed", e))?
        }
    };
    Ok(Incoming {
        text: text.to_string(),
        header,
        secrets,
        notes,
    })
}

/// The configuration parser's own report of a syntax error.
fn parse_errors(text: &str, file: &str) -> ConfigErrors {
    match crate::config::parse(text, file, Path::new("")) {
        Err(e) => e,
        Ok(_) => ConfigErrors(vec![ConfigError {
            file: file.into(),
            line: 0,
            field: String::new(),
            message: "is not TOML".into(),
        }]),
    }
}

/// The line a top-level table starts on, for errors about it (0: unknown).
fn line_of(text: &str, field: &str) -> usize {
    let table = field.split('.').next().unwrap_or(field);
    text.lines()
        .position(|l| l.trim() == format!("[{table}]"))
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Parses and validates what `read` returned, secrets in place.
pub fn parse(incoming: &Incoming, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let (config, warnings) = crate::config::parse_with_secrets(&incoming.text, file, base, incoming.secrets.clone())?;
    for w in warnings {
        tracing::warn!("configuration: {w}");
    }
    Ok(config)
}

/// Secrets the incoming file does not give (it was exported without them)
/// taken from the running configuration where the same camera, broker, peer
/// or token is meant: call before `parse`. A secret written in the file
/// always wins. Returns a line per secret that may be kept.
pub fn inherit_secrets(incoming: &mut Incoming, running: &Config) -> Vec<String> {
    let mut doc = document(running);
    let mut lines = Vec::new();
    for (key, value) in secrets::extract(&mut doc) {
        if let std::collections::btree_map::Entry::Vacant(e) = incoming.secrets.entry(key) {
            lines.push(format!(
                "{}: kept from the running configuration unless the file gives it",
                e.key()
            ));
            e.insert(value);
        }
    }
    lines
}

pub use diff::{diff, Change, ChangeKind, Diff};

pub use overrides::{for_nvr, override_names};

#[cfg(test)]
mod tests;
