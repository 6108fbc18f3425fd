//! For tools that start and talk to their own NVRs (the failover lab, the
//! benchmarks, the integration tests): a token per NVR, remembered by base
//! URL, and a way to mint one directly in a store before its NVR starts.
//!
//! Never used by the NVR to decide anything: this is the client side.

use std::path::Path;
use std::sync::Mutex;

use super::{credentials, users, Role};

/// API tokens by the base URL (`http://host:port`) of the NVR they open.
#[derive(Default)]
pub struct Bearers(Mutex<Vec<(String, String)>>);

impl Bearers {
    pub const fn new() -> Bearers {
        Bearers(Mutex::new(Vec::new()))
    }

    pub fn remember(&self, base: &str, token: &str) {
        let mut v = self.0.lock().expect("bearers");
        v.retain(|(b, _)| b != base);
        v.push((base.trim_end_matches('/').to_string(), token.to_string()));
    }

    /// The token for the NVR serving `url`, if one was remembered.
    pub fn for_url(&self, url: &str) -> Option<String> {
        self.0
            .lock()
            .expect("bearers")
            .iter()
            .find(|(b, _)| {
                url.strip_prefix(b.as_str())
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'))
            })
            .map(|(_, t)| t.clone())
    }

    /// `Authorization` header value for `url`, if any.
    pub fn header_for(&self, url: &str) -> Option<String> {
        self.for_url(url).map(|t| format!("Bearer {t}"))
    }
}

/// Creates (once) an admin user `name` with a random password nobody knows
/// in the store at `dir`, and a new API token for it: what an automated
/// harness needs to use the API of an NVR it starts itself.
pub fn mint_admin_token(dir: &Path, name: &str) -> anyhow::Result<String> {
    let conn = crate::store::db::open_dir(dir).map_err(anyhow::Error::msg)?;
    let now = crate::web::access::now_ms();
    if users::get(&conn, name)?.is_none() {
        users::add(&conn, name, Role::Admin, None, &credentials::new_secret(), now)?;
    }
    let (_, t) = credentials::create_token(&conn, name, "harness", Role::Admin, None, None, now)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_base() {
        let b = Bearers::new();
        b.remember("http://10.0.0.1:8080", "a");
        b.remember("http://10.0.0.1:80", "b");
        assert_eq!(b.for_url("http://10.0.0.1:8080/api/v1/x").as_deref(), Some("a"));
        assert_eq!(b.for_url("http://10.0.0.1:80/api").as_deref(), Some("b"));
        assert_eq!(b.for_url("http://10.0.0.1:808/api"), None);
        assert_eq!(b.header_for("http://10.0.0.1:8080").as_deref(), Some("Bearer a"));
        let d = tempfile::tempdir().unwrap();
        let t1 = mint_admin_token(d.path(), "harness").unwrap();
        let t2 = mint_admin_token(d.path(), "harness").unwrap();
        assert_ne!(t1, t2);
    }
}
