//! Users in the store's index: name, role, the channels a non-admin may see,
//! and an Argon2id password hash. Shared by the `user` CLI and the HTTP API.
//!
//! Invariant: once a store has users, at least one of them is an admin —
//! neither deleting nor demoting may remove the last one, or nobody could
//! manage the NVR again without the command line.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::password::{self, PasswordError};
use super::Role;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The channels a non-admin may see; `None` for all.
    pub channels: Option<BTreeSet<u32>>,
    pub created_ms: i64,
    pub changed_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user name `{0}`: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`")]
    BadName(String),
    #[error("a user `{0}` already exists")]
    Exists(String),
    #[error("no user `{0}`")]
    NoSuchUser(String),
    #[error("`{0}` is the last admin; make another user admin first")]
    LastAdmin(String),
    #[error("no user would be an admin: nobody could manage the NVR any more")]
    NoAdmin,
    #[error("password: {0}")]
    Password(#[from] PasswordError),
    #[error("the user database: {0}")]
    Db(#[from] rusqlite::Error),
}

pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(crate::excerpt::short(name)))
    }
}

pub(crate) fn channels_to_sql(c: &Option<BTreeSet<u32>>) -> Option<String> {
    c.as_ref()
        .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()))
}

/// A stored list that does not parse grants nothing rather than everything.
pub(crate) fn channels_from_sql(s: Option<String>) -> Option<BTreeSet<u32>> {
    s.map(|s| serde_json::from_str(&s).unwrap_or_default())
}

pub(crate) fn role_from_sql(s: &str) -> Role {
    // An unknown stored role gets the least rights.
    s.parse().unwrap_or(Role::Viewer)
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    Ok((
        User {
            name: r.get(0)?,
            role: role_from_sql(&r.get::<_, String>(1)?),
            channels: channels_from_sql(r.get(2)?),
            created_ms: r.get(4)?,
            changed_ms: r.get(5)?,
        },
        r.get(3)?,
    ))
}

/// The user and their password hash.
pub fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<(User, String)>> {
    conn.query_row(
        "SELECT name, role, channels, password_hash, created_ms, changed_ms FROM user WHERE name = ?1",
        [name],
        read,
    )
    .optional()
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<User>> {
    let mut stmt =
        conn.prepare("SELECT name, role, channels, password_hash, created_ms, changed_ms FROM user ORDER BY name")?;
    let rows = stmt.query_map([], read)?;
    rows.map(|r| r.map(|(u, _)| u)).collect()
}

pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM user", [], |r| r.get(0))
}

/// Hashes the password (slow: call off the async runtime) and stores the user.
pub fn add(
    conn: &Connection,
    name: &str,
    role: Role,
    channels: Option<BTreeSet<u32>>,
    pw: &str,
    now_ms: i64,
) -> Result<User, UserError> {
    check_name(name)?;
    let h = password::hash(pw)?;
    let channels = if role == Role::Admin { None } else { channels };
    if insert_hashed(conn, name, role, &channels, &h, now_ms)? == 0 {
        return Err(UserError::Exists(name.into()));
    }
    Ok(User {
        name: name.into(),
        role,
        channels,
        created_ms: now_ms,
        changed_ms: now_ms,
    })
}

/// Sets a new password and ends the user's sessions (whoever knew the old
/// one is logged out).
pub fn set_password(conn: &Connection, name: &str, pw: &str, now_ms: i64) -> Result<(), UserError> {
    let h = password::hash(pw)?;
    let n = conn.execute(
        "UPDATE user SET password_hash = ?2, changed_ms = ?3 WHERE name = ?1",
        params![name, h, now_ms],
    )?;
    if n == 0 {
        return Err(UserError::NoSuchUser(name.into()));
    }
    conn.execute("DELETE FROM session WHERE user = ?1", [name])?;
    Ok(())
}

fn other_admins(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM user WHERE role = 'admin' AND name != ?1",
        [name],
        |r| r.get(0),
    )
}

/// Changes role and/or channels (`Some(None)`: all channels).
pub fn update(
    conn: &Connection,
    name: &str,
    role: Option<Role>,
    channels: Option<Option<BTreeSet<u32>>>,
    now_ms: i64,
) -> Result<User, UserError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (mut u, _) = get(&tx, name)?.ok_or_else(|| UserError::NoSuchUser(name.into()))?;
    if let Some(r) = role {
        if u.role == Role::Admin && r != Role::Admin && other_admins(&tx, name)? == 0 {
            return Err(UserError::LastAdmin(name.into()));
        }
        u.role = r;
    }
    if let Some(c) = channels {
        u.channels = c;
    }
    if u.role == Role::Admin {
        u.channels = None;
    }
    u.changed_ms = now_ms;
    tx.execute(
        "UPDATE user SET role = ?2, channels = ?3, changed_ms = ?4 WHERE name = ?1",
        params![name, u.role.as_str(), channels_to_sql(&u.channels), now_ms],
    )?;
    tx.commit()?;
    Ok(u)
}

/// Deletes the user with their sessions and tokens.
pub fn delete(conn: &Connection, name: &str) -> Result<(), UserError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (u, _) = get(&tx, name)?.ok_or_else(|| UserError::NoSuchUser(name.into()))?;
    if u.role == Role::Admin && other_admins(&tx, name)? == 0 {
        return Err(UserError::LastAdmin(name.into()));
    }
    remove(&tx, name)?;
    tx.commit()?;
    Ok(())
}

/// Stores a user whose password is already hashed (an Argon2id PHC string);
/// 0 when the name is taken. The parameter file's accounts come this way.
pub(crate) fn insert_hashed(
    conn: &Connection,
    name: &str,
    role: Role,
    channels: &Option<BTreeSet<u32>>,
    hash: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO user (name, role, channels, password_hash, created_ms, changed_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![name, role.as_str(), channels_to_sql(channels), hash, now_ms],
    )
}

/// Removes a user with their sessions and tokens, inside the caller's
/// transaction and without the last-admin check (the caller's).
pub(crate) fn remove(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    // Explicit, not only ON DELETE CASCADE: connections opened without
    // `foreign_keys = ON` must not leave a deleted user's tokens working.
    conn.execute("DELETE FROM session WHERE user = ?1", [name])?;
    conn.execute("DELETE FROM api_token WHERE user = ?1", [name])?;
    conn.execute("DELETE FROM user WHERE name = ?1", [name])?;
    Ok(())
}

/// Parses `1,2,5` (the `--channels` option and the API's list form).
pub fn parse_channels(s: &str) -> Result<BTreeSet<u32>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{}` is not a channel number", crate::excerpt::short(p)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let d = tempfile::tempdir().unwrap();
        let c = crate::store::db::open_dir(d.path()).unwrap();
        (d, c)
    }

    #[test]
    fn users_round_trip_and_the_last_admin_stays() {
        let (_d, c) = db();
        add(&c, "ann", Role::Admin, None, "ann-password-1", 1).unwrap();
        let v = add(&c, "vic", Role::Viewer, Some([1].into()), "vic-password-1", 2).unwrap();
        assert_eq!(v.channels, Some([1].into()));
        assert!(matches!(
            add(&c, "vic", Role::Viewer, None, "vic-password-1", 3),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            add(&c, "x y", Role::Viewer, None, "vic-password-1", 3),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            add(&c, "bob", Role::Viewer, None, "short", 3),
            Err(UserError::Password(_))
        ));
        let (u, h) = get(&c, "vic").unwrap().unwrap();
        assert_eq!(u.role, Role::Viewer);
        assert!(password::verify("vic-password-1", &h));
        assert!(matches!(delete(&c, "ann"), Err(UserError::LastAdmin(_))));
        assert!(matches!(
            update(&c, "ann", Some(Role::Viewer), None, 4),
            Err(UserError::LastAdmin(_))
        ));
        update(&c, "vic", Some(Role::Admin), None, 5).unwrap();
        assert_eq!(get(&c, "vic").unwrap().unwrap().0.channels, None, "admins see all");
        delete(&c, "ann").unwrap();
        set_password(&c, "vic", "vic-password-2", 6).unwrap();
        assert!(password::verify("vic-password-2", &get(&c, "vic").unwrap().unwrap().1));
        assert_eq!(list(&c).unwrap().len(), 1);
        assert!(matches!(
            set_password(&c, "nobody", "whatever-long-1", 7),
            Err(UserError::NoSuchUser(_))
        ));
    }

    #[test]
    fn channel_lists_parse() {
        assert_eq!(parse_channels("1, 2,5").unwrap(), [1, 2, 5].into());
        assert!(parse_channels("1,x").unwrap_err().contains("`x`"));
        assert!(parse_channels("0").is_err());
        assert!(parse_channels("99999999999").is_err());
        assert_eq!(channels_from_sql(Some("garbage".into())), Some(BTreeSet::new()));
    }
}
