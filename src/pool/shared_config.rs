//! The pool's one configuration (`tandem config push --pool`): the parameter
//! file stored at `<prefix>config`, each member's report of applying it
//! (`<prefix>config-applied/<name>`, on its lease), and the text one NVR
//! applies — the file with that NVR's `[[override]]` merged, laid table by
//! table over what the NVR runs, its own `[pool]` kept (it says how to reach
//! the pool, so it cannot come from the pool).
//!
//! Pure: must never perform I/O. Must never let a file carrying secrets or a
//! `[pool]` table into etcd: every member and whoever can read etcd would
//! read the one, and the other would cut members off the pool.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Table;

use crate::config::{Config, ConfigError, ConfigErrors};

/// What `<prefix>config` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfigDoc {
    /// The name the file was pushed under (errors name it).
    pub file: String,
    pub text: String,
    /// SHA-256 of `text`, hex.
    pub sha256: String,
    /// RFC 3339, when it was pushed: with the digest, which push this is.
    pub pushed_at: String,
}

impl PoolConfigDoc {
    pub fn new(file: &str, text: &str, pushed_at: &str) -> PoolConfigDoc {
        PoolConfigDoc {
            file: file.to_string(),
            text: text.to_string(),
            sha256: hex(&Sha256::digest(text.as_bytes())),
            pushed_at: pushed_at.to_string(),
        }
    }

    /// Names this push in the members' reports (a file pushed again is a new push).
    pub fn id(&self) -> String {
        format!("{}@{}", &self.sha256[..self.sha256.len().min(12)], self.pushed_at)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A member's report of applying a push (`<prefix>config-applied/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDoc {
    /// `PoolConfigDoc::id` of the push.
    pub id: String,
    pub ok: bool,
    /// "unchanged", "applied (version N): …" or the errors, one line.
    pub result: String,
}

fn error(file: &str, field: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: file.to_string(),
        line: 0,
        field: field.to_string(),
        message,
    }])
}

/// Whether a parameter file may be stored for the whole pool.
pub fn check_pushable(text: &str, file: &str) -> Result<(), ConfigErrors> {
    let doc: Table = toml::from_str(text).map_err(|e| error(file, "", e.message().to_string()))?;
    if doc.contains_key("pool") {
        return Err(error(
            file,
            "pool",
            "a file for the whole pool must not carry [pool]: each NVR keeps its own (it says how to reach the pool)"
                .into(),
        ));
    }
    if doc.contains_key("secrets") {
        return Err(error(
            file,
            "secrets",
            "a file for the whole pool must not carry secrets: etcd is readable by every member; \
             export it with --no-secrets (each NVR keeps the secrets it has)"
                .into(),
        ));
    }
    Ok(())
}

/// The text NVR `nvr` applies: its overrides merged (`parfile::for_nvr`),
/// every top-level table or array the file has replacing the running one,
/// what the file lacks (typically `[storage]`, `[http]`) kept as it runs, and
/// the running `[pool]` kept whatever the file says.
pub fn text_for(doc: &PoolConfigDoc, nvr: &str, running: &Config) -> Result<String, ConfigErrors> {
    let merged = crate::parfile::for_nvr(&doc.text, &doc.file, nvr)?;
    let mut over: Table = toml::from_str(&merged).map_err(|e| error(&doc.file, "", e.message().to_string()))?;
    over.remove("pool");
    let base = crate::parfile::document(running);
    let pool = base.get("pool").cloned();
    let mut out = crate::parfile::apply::overlay(base, over);
    match pool {
        Some(p) => out.insert("pool".into(), p),
        None => out.remove("pool"),
    };
    toml::to_string(&out).map_err(|e| error(&doc.file, "", format!("cannot render: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Config {
        let text = r#"
[nvr]
name = "nvr-b"
[storage]
dir = "/var/lib/tandem-b"
[http]
listen = "127.0.0.1:8081"
[pool]
etcd = ["http://127.0.0.1:2379"]
capacity = { channels = 4, mbps = 40 }
[[network_camera]]
name = "old"
url = "rtsp://10.0.0.9/old"
[[channel]]
number = 1
camera = "old"
"#;
        crate::config::parse(text, "b.toml", std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn the_pool_file_replaces_what_it_has_keeps_the_rest_and_the_own_pool() {
        let file = r#"
[[network_camera]]
name = "lobby"
url = "rtsp://10.0.0.5/lobby"
[[channel]]
number = 1
camera = "lobby"
[[override]]
nvr = "nvr-b"
[[override.channel]]
number = 2
camera = "lobby"
"#;
        let doc = PoolConfigDoc::new("site.toml", file, "2026-11-24T10:00:00Z");
        let text = text_for(&doc, "nvr-b", &running()).unwrap();
        let c = crate::config::parse(&text, "x.toml", std::path::Path::new("/")).unwrap();
        assert_eq!(c.cameras.len(), 1, "the file's cameras replace the running ones");
        assert_eq!(c.cameras[0].name, "lobby");
        let numbers: Vec<u32> = c.channels.iter().map(|ch| ch.number).collect();
        assert_eq!(numbers, [1, 2], "nvr-b's override adds channel 2");
        assert_eq!(c.storage.dir, std::path::PathBuf::from("/var/lib/tandem-b"), "kept");
        assert!(c.pool.is_some(), "its own [pool] kept");
        // Another NVR gets no override.
        let other = crate::config::parse(
            &text_for(&doc, "nvr-c", &running()).unwrap(),
            "x.toml",
            std::path::Path::new("/"),
        )
        .unwrap();
        assert_eq!(other.channels.len(), 1);
    }

    #[test]
    fn a_pool_table_in_the_file_is_refused_at_push_and_ignored_if_stored() {
        let e = check_pushable("[pool]\nname = \"x\"\n", "site.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("site.toml") && e.contains("pool"), "{e}");
        let e = check_pushable("[secrets]\nsealed = \"x\"\n", "site.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("secrets") && e.contains("--no-secrets"), "{e}");
        assert!(check_pushable("[retention]\n", "f").is_ok());
        assert!(check_pushable("[[x", "f").is_err());
        // Stored by hand all the same: the running [pool] wins.
        let doc = PoolConfigDoc::new(
            "f",
            "[pool]\netcd = [\"http://10.9.9.9:2379\"]\ncapacity = { channels = 1, mbps = 1 }\n",
            "t",
        );
        let text = text_for(&doc, "nvr-b", &running()).unwrap();
        assert!(text.contains("127.0.0.1:2379") && !text.contains("10.9.9.9"), "{text}");
    }

    #[test]
    fn each_push_has_its_own_id() {
        let a = PoolConfigDoc::new("f", "x", "2026-11-24T10:00:00Z");
        let b = PoolConfigDoc::new("f", "x", "2026-11-24T10:00:01Z");
        assert_ne!(a.id(), b.id());
        assert_eq!(a.sha256.len(), 64);
        assert!(a.id().starts_with(&a.sha256[..12]));
    }
}
