//! The one way a configuration is applied to a running NVR — from the API,
//! SIGHUP and rollback alike: read → inherit secrets from what runs → parse →
//! diff → (a dry run stops here) → accounts → `Nvr::apply` → version stored →
//! audit entry. A Frigate `config.yml` is converted first and laid over the
//! running document.
//!
//! Owns the order of those steps and their all-or-nothing rule: a
//! configuration error anywhere means nothing is applied. Must never
//! reconcile anything itself (that is `Nvr::apply`'s) and never run two
//! applies at once (they are serialised here, so `If-Match` is checked
//! against the version the apply will replace).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::audit_log::{Action, Entry};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::nvr::Nvr;
use crate::reconcile::{ApplyError, ApplyReport};
use crate::store::config_versions;

use super::{Diff, ReadOptions};

/// Where the text to apply comes from.
pub enum Source {
    /// A parameter file, a plain configuration file or a Frigate `config.yml`.
    Text { text: String, file: String },
    /// A stored version (`None`: the one before the current one).
    Version(Option<i64>),
}

/// One apply.
pub struct Request {
    pub source: Source,
    pub passphrase: Option<String>,
    pub accept_edited: bool,
    pub dry_run: bool,
    /// The audit log's name for who asks.
    pub actor: String,
    /// The client's address, or "sighup", "start", "cli".
    pub origin: String,
    /// Relative paths in the text are taken from here.
    pub base: PathBuf,
    /// Refuse unless the current version is this one (`If-Match`).
    pub expect_version: Option<i64>,
}

/// What an apply did (or, for a dry run, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub dry_run: bool,
    /// True when the file changes nothing: nothing was applied or stored.
    pub unchanged: bool,
    pub diff: Diff,
    /// The diff as an operator reads it.
    pub diff_text: String,
    /// What reading noticed, secrets kept from the running configuration,
    /// what a Frigate file had that Tandem has no use for.
    pub notes: Vec<String>,
    /// A line per account changed.
    pub accounts: Vec<String>,
    /// What the NVR changed.
    pub report: Option<ApplyReport>,
    /// The version stored (the current one after the apply).
    pub version: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The configuration is wrong; every error is listed, nothing applied.
    #[error("{0}")]
    Config(ConfigErrors),
    /// `If-Match` named another version than the current one.
    #[error("the configuration changed since version {expected} was read (now {current}); read it again")]
    Stale { expected: i64, current: i64 },
    /// No such stored version (or none to roll back to).
    #[error("{0}")]
    NoVersion(String),
    /// The store or the audit log could not be used.
    #[error("{0}")]
    Store(String),
    /// The file was edited after its export and that was not accepted; what
    /// the edit changes is shown all the same.
    #[error("{errors}")]
    Edited { errors: ConfigErrors, diff: Diff },
}

impl Failure {
    /// The errors a client should fix, one per line.
    pub fn errors(&self) -> Vec<String> {
        match self {
            Failure::Config(e) => e.0.iter().map(|e| e.to_string()).collect(),
            Failure::Edited { errors, diff } => {
                let mut lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                lines.push("what the file would change:".into());
                lines.extend(diff.to_string().lines().map(str::to_string));
                lines
            }
            other => vec![other.to_string()],
        }
    }
}

fn one_error(file: &str, field: &str, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: file.to_string(),
        line: 0,
        field: field.to_string(),
        message: message.into(),
    }])
}

/// Whether `text` is a Frigate `config.yml` rather than TOML: by the file's
/// name, or, for an upload without one, by being YAML and not TOML.
pub fn is_frigate(file: &str, text: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".yml") || lower.ends_with(".yaml") {
        return true;
    }
    if text.parse::<toml::Table>().is_ok() {
        return false;
    }
    let first = text
        .lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    match first {
        Some("---") => true,
        Some(l) => {
            // `key:` or `key: value` at the start of a line; TOML has `key =`.
            let key_end = l.find(':').unwrap_or(0);
            key_end > 0
                && l[..key_end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !l.contains(" = ")
        }
        None => false,
    }
}

/// Lays the tables of `over` on `base`: a table `over` has replaces the
/// whole of the same table in `base`; the others stay.
pub fn overlay(mut base: toml::Table, over: toml::Table) -> toml::Table {
    for (k, v) in over {
        base.insert(k, v);
    }
    base
}

/// The configuration a text asks for, and what reading it noticed: a
/// Frigate file converted and laid over the running document, the header,
/// checksum and secrets checked (`read`), the running secrets inherited,
/// everything validated. Pure: the CLI's `--config` path runs it too.
pub fn prepare(
    text: &str,
    file: &str,
    opts: &ReadOptions,
    running: &Config,
    base: &std::path::Path,
) -> Result<(Config, Vec<String>), Failure> {
    let mut notes = Vec::new();
    let converted;
    let text = if is_frigate(file, text) {
        let c = super::frigate::convert(text, file).map_err(Failure::Config)?;
        notes.extend(c.warnings.iter().map(|w| format!("frigate: {w}")));
        let over: toml::Table = c
            .toml
            .parse()
            .map_err(|e| Failure::Config(one_error(file, "", format!("the converted configuration: {e}"))))?;
        converted = toml::to_string(&overlay(super::document(running), over))
            .map_err(|e| Failure::Config(one_error(file, "", format!("cannot render: {e}"))))?;
        converted.as_str()
    } else {
        text
    };
    let mut incoming = match super::read(text, file, opts) {
        Ok(i) => i,
        Err(errors) if !opts.accept_edited && errors.0.iter().any(|e| e.field == "parameter_file.sha256") => {
            // Refused, but the diff is shown either way: the operator decides
            // on what the edit does, not on a checksum.
            let accepted = ReadOptions {
                passphrase: opts.passphrase.clone(),
                accept_edited: true,
            };
            let diff = prepare(text, file, &accepted, running, base)
                // Accounts left out: the stored ones are not at hand here.
                .map(|(desired, _)| {
                    super::diff(
                        running,
                        &Config {
                            accounts: None,
                            ..desired
                        },
                    )
                })
                .unwrap_or_default();
            return Err(Failure::Edited { errors, diff });
        }
        Err(e) => return Err(Failure::Config(e)),
    };
    notes.extend(incoming.notes.iter().cloned());
    notes.extend(super::inherit_secrets(&mut incoming, running));
    let desired = super::parse(&incoming, file, base).map_err(Failure::Config)?;
    Ok((desired, notes))
}

/// The document of `config` as TOML text (what a version stores).
pub fn document_text(config: &Config) -> Result<String, String> {
    toml::to_string(&super::document(config)).map_err(|e| format!("cannot render the configuration: {e}"))
}

/// One line for the audit log: the items the diff touches.
pub fn summary(diff: &Diff) -> String {
    if diff.is_empty() {
        return "no change".into();
    }
    let items: Vec<String> = diff
        .changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                super::ChangeKind::Added => "+",
                super::ChangeKind::Removed => "-",
                super::ChangeKind::Changed => "~",
            };
            format!("{kind}{}", c.item)
        })
        .collect();
    crate::excerpt::short(&items.join(", "))
}

/// Serialises applies across the process: the `If-Match` check, the apply
/// and the version it stores happen as one.
static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the pipeline. On any error nothing was applied (an account change
/// already made is put back when the NVR then refuses the configuration).
pub async fn apply(nvr: &Arc<Nvr>, req: Request) -> Result<Outcome, Failure> {
    let _one = APPLYING.lock().await;
    let access = nvr.access.clone();
    let store_err = |e: crate::web::ApiError| Failure::Store(e.message().to_string());
    let current = access
        .with_db(|c| config_versions::current_id(c).map_err(crate::web::ApiError::internal))
        .await
        .map_err(store_err)?;
    if let Some(expected) = req.expect_version {
        if expected != current {
            return Err(Failure::Stale { expected, current });
        }
    }
    let running = nvr.config();
    let mut notes = Vec::new();
    let (text, file) = match req.source {
        Source::Text { text, file } => (text, file),
        Source::Version(id) => {
            let found = access
                .with_db(move |c| {
                    match id {
                        Some(id) => config_versions::get(c, id),
                        None => config_versions::previous(c),
                    }
                    .map_err(crate::web::ApiError::internal)
                })
                .await
                .map_err(store_err)?;
            let Some(found) = found else {
                return Err(Failure::NoVersion(match id {
                    Some(id) => format!(
                        "no stored configuration version {id} (the last {} are kept)",
                        config_versions::KEEP
                    ),
                    None => "no earlier configuration version to roll back to".into(),
                }));
            };
            let (id, document) = (found.summary.id, found.document);
            notes.push(format!("rolling back to version {id}"));
            (document, format!("version {id}"))
        }
    };
    let opts = ReadOptions {
        passphrase: req.passphrase.clone(),
        accept_edited: req.accept_edited,
    };
    let (desired, read_notes) = prepare(&text, &file, &opts, &running, &req.base)?;
    notes.extend(read_notes);

    // Accounts are compared (and replaced) only when the file manages them.
    let mut before = (*running).clone();
    let stored_accounts = match desired.accounts.is_some() {
        true => {
            let a = access
                .with_db(|c| crate::auth::accounts::read(c).map_err(crate::web::ApiError::internal))
                .await
                .map_err(store_err)?;
            before.accounts = Some(a.clone());
            Some(a)
        }
        false => None,
    };
    let diff = super::diff(&before, &desired);
    // What cannot change while running is found before anything changes,
    // and a dry run reports it too.
    let refused = crate::reconcile::problems(&running, &desired);
    if !refused.is_empty() {
        return Err(Failure::Config(ConfigErrors(refused)));
    }
    let mut out = Outcome {
        dry_run: req.dry_run,
        unchanged: diff.is_empty(),
        diff_text: diff.to_string(),
        diff,
        notes,
        ..Default::default()
    };
    if req.dry_run || out.unchanged {
        return Ok(out);
    }

    let document = document_text(&desired).map_err(Failure::Store)?;
    if let Some(accounts) = desired.accounts.clone() {
        out.accounts = access
            .with_db(move |c| {
                crate::auth::accounts::replace(c, &accounts, crate::web::access::now_ms())
                    .map_err(|e| crate::web::ApiError::bad_request(e.to_string()))
            })
            .await
            .map_err(|e| Failure::Config(one_error(&file, "user", e.message())))?;
        access.forget_cached();
    }
    let report = match nvr.apply(desired).await {
        Ok(r) => r,
        Err(ApplyError::Refused(errors)) => {
            if let Some(old) = stored_accounts {
                let put_back = access
                    .with_db(move |c| {
                        crate::auth::accounts::replace(c, &old, crate::web::access::now_ms())
                            .map_err(|e| crate::web::ApiError::internal(e.to_string()))
                    })
                    .await;
                if let Err(e) = put_back {
                    tracing::error!("could not put the accounts back after a refused apply: {}", e.message());
                }
                access.forget_cached();
            }
            return Err(Failure::Config(ConfigErrors(errors)));
        }
    };
    out.report = Some(report);

    let diff_json = serde_json::to_string(&out.diff).map_err(|e| Failure::Store(e.to_string()))?;
    let (actor, origin, source) = (req.actor.clone(), req.origin.clone(), file.clone());
    let version = access
        .with_db(move |c| {
            config_versions::insert(
                c,
                &config_versions::NewVersion {
                    applied_ms: crate::web::access::now_ms(),
                    actor: &actor,
                    origin: &origin,
                    source: &source,
                    document: &document,
                    diff: &diff_json,
                },
            )
            .map_err(crate::web::ApiError::internal)
        })
        .await
        .map_err(|e| Failure::Store(format!("applied, but the version could not be stored: {}", e.message())))?;
    out.version = Some(version);
    let addr = req.origin.parse::<IpAddr>().ok();
    access
        .record(Entry::new(
            req.actor.clone(),
            addr,
            Action::ConfigChange,
            format!("version {version} from {file}: {}", summary(&out.diff)),
        ))
        .await
        .map_err(|e| Failure::Store(format!("applied as version {version}, but {}", e.message())))?;
    tracing::info!(
        version,
        actor = %req.actor,
        origin = %req.origin,
        changes = out.diff.changes.len(),
        "configuration applied"
    );
    Ok(out)
}

/// Records the configuration the NVR started with as a version when it is
/// not the latest stored one, so that a first rollback has a target.
pub async fn record_start(nvr: &Arc<Nvr>, source: &str) -> Result<Option<i64>, String> {
    let _one = APPLYING.lock().await;
    let document = document_text(&nvr.config())?;
    let source = source.to_string();
    nvr.access
        .with_db(move |c| {
            let latest = config_versions::latest(c).map_err(crate::web::ApiError::internal)?;
            if latest.is_some_and(|v| v.summary.sha256 == config_versions::sha256_hex(&document)) {
                return Ok(None);
            }
            config_versions::insert(
                c,
                &config_versions::NewVersion {
                    applied_ms: crate::web::access::now_ms(),
                    actor: "tandem",
                    origin: "start",
                    source: &source,
                    document: &document,
                    diff: "{\"changes\":[]}",
                },
            )
            .map(Some)
            .map_err(crate::web::ApiError::internal)
        })
        .await
        .map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frigate_is_told_by_name_or_by_content() {
        assert!(is_frigate("config.yml", "whatever"));
        assert!(is_frigate("CONFIG.YAML", ""));
        assert!(is_frigate("upload", "mqtt:\n  host: x\ncameras:\n  a: {}\n"));
        assert!(is_frigate("upload", "# Frigate\n---\ncameras: {}\n"));
        assert!(!is_frigate("site.tpar", "[storage]\ndir = \"/x\"\n"));
        assert!(!is_frigate("upload", "[nvr]\nname = \"a:b\"\n"));
        assert!(!is_frigate("upload", ""));
        // Broken TOML stays TOML, so its errors are TOML's.
        assert!(!is_frigate("upload", "[storage\ndir = \"/x\"\n"));
        assert!(!is_frigate("upload", "a = \"b: c\n"));
    }

    #[test]
    fn overlay_replaces_whole_tables_and_keeps_the_rest() {
        let base: toml::Table = "[storage]\ndir = \"/d\"\n[[channel]]\nnumber = 1\n[[channel]]\nnumber = 2\n"
            .parse()
            .unwrap();
        let over: toml::Table = "[[channel]]\nnumber = 7\n".parse().unwrap();
        let out = overlay(base, over);
        assert_eq!(out["storage"]["dir"].as_str(), Some("/d"));
        let ch = out["channel"].as_array().unwrap();
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0]["number"].as_integer(), Some(7));
    }

    #[test]
    fn summary_names_each_item_with_its_kind() {
        use super::super::{Change, ChangeKind};
        assert_eq!(summary(&Diff::default()), "no change");
        let d = Diff {
            changes: vec![
                Change {
                    item: "channel 2".into(),
                    kind: ChangeKind::Changed,
                    fields: vec![],
                },
                Change {
                    item: "user `bo`".into(),
                    kind: ChangeKind::Added,
                    fields: vec![],
                },
                Change {
                    item: "rule `r`".into(),
                    kind: ChangeKind::Removed,
                    fields: vec![],
                },
            ],
        };
        assert_eq!(summary(&d), "~channel 2, +user `bo`, -rule `r`");
    }

    #[test]
    fn every_failure_reads_as_a_list_of_errors() {
        let f = Failure::Config(ConfigErrors(vec![
            ConfigError {
                file: "f".into(),
                line: 3,
                field: "channel.name".into(),
                message: "empty".into(),
            },
            ConfigError {
                file: "f".into(),
                line: 9,
                field: "storage.dir".into(),
                message: "missing".into(),
            },
        ]));
        assert_eq!(f.errors().len(), 2);
        let s = Failure::Stale {
            expected: 3,
            current: 4,
        };
        assert_eq!(s.errors().len(), 1);
        assert!(s.errors()[0].contains("version 3"), "{:?}", s.errors());
    }
}
