//! Browser sessions and API tokens: random secrets handed out once and
//! stored only as their SHA-256, looked up by that hash.
//!
//! A secret is 32 bytes from the OS generator, so its SHA-256 needs no salt
//! or slow hash: guessing one is hopeless, and finding it by hash is a plain
//! index lookup (no comparison whose timing depends on the secret).
//! This module must never store or log a secret itself.

use std::collections::BTreeSet;

use base64::Engine;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::users::{channels_from_sql, channels_to_sql, role_from_sql};
use super::{Principal, Role};

/// Prefix of API tokens, so a leaked one is recognisable in logs and scans.
pub const TOKEN_PREFIX: &str = "tandem_";
/// Longest credential accepted from a request; anything longer is garbage.
pub const MAX_SECRET_LEN: usize = 128;

pub fn new_secret() -> String {
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn secret_hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub last_seen_ms: i64,
}

/// Starts a session for `user`; returns the cookie's secret and the CSRF token.
pub fn create_session(
    conn: &Connection,
    user: &str,
    addr: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<(String, String)> {
    let secret = new_secret();
    let csrf = new_secret();
    conn.execute(
        "INSERT INTO session (secret_hash, user, csrf, created_ms, last_seen_ms, addr) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![secret_hash(&secret).as_slice(), user, csrf, now_ms, addr],
    )?;
    Ok((secret, csrf))
}

/// The live session with this secret hash: not idle for `idle_ms` or more.
pub fn session(conn: &Connection, hash: &[u8; 32], now_ms: i64, idle_ms: i64) -> rusqlite::Result<Option<Session>> {
    conn.query_row(
        "SELECT s.user, u.role, u.channels, s.csrf, s.last_seen_ms FROM session s JOIN user u ON u.name = s.user
         WHERE s.secret_hash = ?1 AND s.last_seen_ms > ?2",
        params![hash.as_slice(), now_ms.saturating_sub(idle_ms)],
        |r| {
            let user: String = r.get(0)?;
            Ok(Session {
                principal: Principal {
                    actor: user.clone(),
                    user,
                    role: role_from_sql(&r.get::<_, String>(1)?),
                    channels: channels_from_sql(r.get(2)?),
                },
                csrf: r.get(3)?,
                last_seen_ms: r.get(4)?,
            })
        },
    )
    .optional()
}

pub fn touch_session(conn: &Connection, hash: &[u8; 32], now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE session SET last_seen_ms = ?2 WHERE secret_hash = ?1",
        params![hash.as_slice(), now_ms],
    )?;
    Ok(())
}

pub fn delete_session(conn: &Connection, hash: &[u8; 32]) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM session WHERE secret_hash = ?1", [hash.as_slice()])? > 0)
}

/// Forgets sessions idle since before `before_ms`.
pub fn expire_sessions(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM session WHERE last_seen_ms <= ?1", [before_ms])
}

/// An API token as listed (never with its secret).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub role: Role,
    pub channels: Option<BTreeSet<u32>>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// What a token may do: never more than its user, whatever it was created with.
fn narrowed(
    user_role: Role,
    user_ch: Option<BTreeSet<u32>>,
    role: Role,
    ch: Option<BTreeSet<u32>>,
) -> (Role, Option<BTreeSet<u32>>) {
    let role = role.min(user_role);
    let ch = match (user_ch, ch) {
        (None, c) | (c, None) => c,
        (Some(a), Some(b)) => Some(a.intersection(&b).copied().collect()),
    };
    (role, if role == Role::Admin { None } else { ch })
}

/// Stores a new token; returns its id and secret (shown once).
pub fn create_token(
    conn: &Connection,
    user: &str,
    name: &str,
    role: Role,
    channels: Option<BTreeSet<u32>>,
    expires_ms: Option<i64>,
    now_ms: i64,
) -> rusqlite::Result<(i64, String)> {
    let secret = format!("{TOKEN_PREFIX}{}", new_secret());
    conn.execute(
        "INSERT INTO api_token (name, secret_hash, user, role, channels, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            name,
            secret_hash(&secret).as_slice(),
            user,
            role.as_str(),
            channels_to_sql(&channels),
            now_ms,
            expires_ms
        ],
    )?;
    Ok((conn.last_insert_rowid(), secret))
}

/// The principal of a valid (known, unexpired) token, and its id.
pub fn token(conn: &Connection, hash: &[u8; 32], now_ms: i64) -> rusqlite::Result<Option<(Principal, i64)>> {
    conn.query_row(
        "SELECT t.id, t.name, t.user, t.role, t.channels, u.role, u.channels
         FROM api_token t JOIN user u ON u.name = t.user
         WHERE t.secret_hash = ?1 AND (t.expires_ms IS NULL OR t.expires_ms > ?2)",
        params![hash.as_slice(), now_ms],
        |r| {
            let name: String = r.get(1)?;
            let user: String = r.get(2)?;
            let (role, channels) = narrowed(
                role_from_sql(&r.get::<_, String>(5)?),
                channels_from_sql(r.get(6)?),
                role_from_sql(&r.get::<_, String>(3)?),
                channels_from_sql(r.get(4)?),
            );
            Ok((
                Principal {
                    actor: format!("{user} (token {name})"),
                    user,
                    role,
                    channels,
                },
                r.get(0)?,
            ))
        },
    )
    .optional()
}

pub fn touch_token(conn: &Connection, id: i64, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE api_token SET last_used_ms = ?2 WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(())
}

/// Tokens of one user, or of everyone.
pub fn list_tokens(conn: &Connection, user: Option<&str>) -> rusqlite::Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, user, role, channels, created_ms, expires_ms, last_used_ms FROM api_token
         WHERE ?1 IS NULL OR user = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([user], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            user: r.get(2)?,
            role: role_from_sql(&r.get::<_, String>(3)?),
            channels: channels_from_sql(r.get(4)?),
            created_ms: r.get(5)?,
            expires_ms: r.get(6)?,
            last_used_ms: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Revokes a token; returns its owner when it existed.
pub fn revoke_token(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    let owner: Option<String> = conn
        .query_row("SELECT user FROM api_token WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    conn.execute("DELETE FROM api_token WHERE id = ?1", [id])?;
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users;

    fn db() -> (tempfile::TempDir, Connection) {
        let d = tempfile::tempdir().unwrap();
        let c = crate::store::db::open_dir(d.path()).unwrap();
        users::add(&c, "ann", Role::Admin, None, "ann-password-1", 0).unwrap();
        users::add(&c, "vic", Role::Viewer, Some([1, 2].into()), "vic-password-1", 0).unwrap();
        (d, c)
    }

    #[test]
    fn sessions_live_idle_out_and_end() {
        let (_d, c) = db();
        let (secret, csrf) = create_session(&c, "vic", Some("10.0.0.1"), 1_000).unwrap();
        let h = secret_hash(&secret);
        let s = session(&c, &h, 2_000, 10_000).unwrap().unwrap();
        assert_eq!(
            (s.principal.user.as_str(), s.principal.role, s.csrf),
            ("vic", Role::Viewer, csrf)
        );
        assert!(session(&c, &h, 11_000, 10_000).unwrap().is_none(), "idle too long");
        touch_session(&c, &h, 9_000).unwrap();
        assert!(session(&c, &h, 11_000, 10_000).unwrap().is_some(), "touched");
        assert!(session(&c, &secret_hash("other"), 2_000, 10_000).unwrap().is_none());
        assert!(delete_session(&c, &h).unwrap());
        assert!(session(&c, &h, 9_500, 10_000).unwrap().is_none());
        create_session(&c, "vic", None, 1_000).unwrap();
        assert_eq!(expire_sessions(&c, 1_000).unwrap(), 1);
    }

    #[test]
    fn tokens_are_narrowed_to_their_user_and_expire() {
        let (_d, c) = db();
        let (id, secret) = create_token(&c, "vic", "script", Role::Admin, Some([2, 3].into()), Some(5_000), 0).unwrap();
        assert!(secret.starts_with(TOKEN_PREFIX));
        let (p, tid) = token(&c, &secret_hash(&secret), 1_000).unwrap().unwrap();
        assert_eq!(tid, id);
        assert_eq!(p.role, Role::Viewer, "never more than the user");
        assert_eq!(p.channels, Some([2].into()), "never other channels");
        assert_eq!(p.actor, "vic (token script)");
        assert!(token(&c, &secret_hash(&secret), 5_000).unwrap().is_none(), "expired");
        let (_, s2) = create_token(&c, "ann", "vms", Role::Operator, None, None, 0).unwrap();
        let (p2, id2) = token(&c, &secret_hash(&s2), 1).unwrap().unwrap();
        assert_eq!((p2.role, p2.channels), (Role::Operator, None));
        assert_eq!(list_tokens(&c, Some("ann")).unwrap().len(), 1);
        assert_eq!(list_tokens(&c, None).unwrap().len(), 2);
        assert_eq!(revoke_token(&c, id2).unwrap().as_deref(), Some("ann"));
        assert!(token(&c, &secret_hash(&s2), 1).unwrap().is_none());
        users::delete(&c, "vic").unwrap();
        assert!(
            list_tokens(&c, None).unwrap().is_empty(),
            "a deleted user's tokens go with them"
        );
    }
}
