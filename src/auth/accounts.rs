//! Reading and replacing the stored accounts as a whole, for the parameter
//! file: users with their roles, channels and password hashes, and API
//! tokens by the hash of their secret. Replacing is one transaction that
//! leaves the store either as it was or exactly as the file says.
//!
//! Must never see a plain password or a token's secret (only their hashes),
//! and never leave the NVR without an admin.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};

use super::users::{channels_from_sql, channels_to_sql, role_from_sql, UserError};
use crate::auth::Role;
use crate::config::accounts::{Accounts, TokenEntry, UserEntry};

/// Users and tokens as stored.
pub fn read(conn: &Connection) -> rusqlite::Result<Accounts> {
    let mut stmt = conn.prepare("SELECT name, role, channels, password_hash FROM user ORDER BY name")?;
    let users = stmt
        .query_map([], |r| {
            Ok(UserEntry {
                name: r.get(0)?,
                role: role_from_sql(&r.get::<_, String>(1)?),
                channels: channels_from_sql(r.get(2)?),
                password_hash: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn
        .prepare("SELECT name, user, role, channels, created_ms, expires_ms, secret_hash FROM api_token ORDER BY id")?;
    let tokens = stmt
        .query_map([], |r| {
            let hash: Vec<u8> = r.get(6)?;
            Ok(TokenEntry {
                name: r.get(0)?,
                user: r.get(1)?,
                role: role_from_sql(&r.get::<_, String>(2)?),
                channels: channels_from_sql(r.get(3)?),
                created_ms: r.get(4)?,
                expires_ms: r.get(5)?,
                secret_hash: <[u8; 32]>::try_from(hash.as_slice()).unwrap_or([0; 32]),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Accounts {
        users,
        tokens: Some(tokens),
    })
}

/// Makes the stored accounts `accounts` in one transaction; a line per
/// change. Tokens are touched only when `accounts.tokens` says what they
/// are. A user whose role, channels or password changes loses their
/// sessions (as when changed one at a time).
pub fn replace(conn: &Connection, accounts: &Accounts, now_ms: i64) -> Result<Vec<String>, UserError> {
    if !accounts.users.iter().any(|u| u.role == Role::Admin) {
        return Err(UserError::NoAdmin);
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let stored = read(&tx)?;
    let mut lines = Vec::new();
    let before: BTreeMap<&str, &UserEntry> = stored.users.iter().map(|u| (u.name.as_str(), u)).collect();
    let wanted: BTreeSet<&str> = accounts.users.iter().map(|u| u.name.as_str()).collect();
    for name in before.keys().filter(|n| !wanted.contains(*n)) {
        super::users::remove(&tx, name)?;
        lines.push(format!("user `{name}` removed"));
    }
    for u in &accounts.users {
        super::users::check_name(&u.name)?;
        let channels = channels_to_sql(&u.channels);
        match before.get(u.name.as_str()) {
            None => {
                super::users::insert_hashed(&tx, &u.name, u.role, &u.channels, &u.password_hash, now_ms)?;
                lines.push(format!("user `{}` added ({})", u.name, u.role));
            }
            Some(old) if *old == u => {}
            Some(_) => {
                tx.execute(
                    "UPDATE user SET role = ?2, channels = ?3, password_hash = ?4, changed_ms = ?5 WHERE name = ?1",
                    params![u.name, u.role.as_str(), channels, u.password_hash, now_ms],
                )?;
                tx.execute("DELETE FROM session WHERE user = ?1", [&u.name])?;
                lines.push(format!("user `{}` changed", u.name));
            }
        }
    }
    if let Some(tokens) = &accounts.tokens {
        let old: BTreeMap<[u8; 32], &TokenEntry> = stored
            .tokens
            .iter()
            .flatten()
            .filter(|t| wanted.contains(t.user.as_str()))
            .map(|t| (t.secret_hash, t))
            .collect();
        let new: BTreeSet<[u8; 32]> = tokens.iter().map(|t| t.secret_hash).collect();
        for (hash, t) in old.iter().filter(|(h, _)| !new.contains(*h)) {
            tx.execute("DELETE FROM api_token WHERE secret_hash = ?1", [hash.as_slice()])?;
            lines.push(format!("token `{}` of `{}` revoked", t.name, t.user));
        }
        for t in tokens {
            let channels = channels_to_sql(&t.channels);
            match old.get(&t.secret_hash) {
                Some(o) if *o == t => {}
                Some(_) => {
                    tx.execute(
                        "UPDATE api_token SET name = ?2, user = ?3, role = ?4, channels = ?5, expires_ms = ?6
                         WHERE secret_hash = ?1",
                        params![
                            t.secret_hash.as_slice(),
                            t.name,
                            t.user,
                            t.role.as_str(),
                            channels,
                            t.expires_ms
                        ],
                    )?;
                    lines.push(format!("token `{}` of `{}` changed", t.name, t.user));
                }
                None => {
                    tx.execute(
                        "INSERT INTO api_token (name, secret_hash, user, role, channels, created_ms, expires_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            t.name,
                            t.secret_hash.as_slice(),
                            t.user,
                            t.role.as_str(),
                            channels,
                            t.created_ms,
                            t.expires_ms
                        ],
                    )?;
                    lines.push(format!("token `{}` of `{}` added", t.name, t.user));
                }
            }
        }
    }
    tx.commit()?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role, hash: &str) -> UserEntry {
        UserEntry {
            name: name.into(),
            role,
            channels: (role != Role::Admin).then(|| [1, 2].into()),
            password_hash: format!("$argon2id$v=19${hash}"),
        }
    }

    #[test]
    fn replace_makes_the_store_what_the_file_says() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::db::open_dir(dir.path()).unwrap();
        crate::auth::users::add(&conn, "admin", Role::Admin, None, "a long password 1", 1).unwrap();
        crate::auth::users::add(&conn, "old", Role::Viewer, None, "a long password 2", 1).unwrap();
        let (_, secret) =
            crate::auth::credentials::create_token(&conn, "old", "gone", Role::Viewer, None, None, 1).unwrap();
        let mut a = read(&conn).unwrap();
        assert_eq!(a.users.len(), 2);
        assert_eq!(a.tokens.as_ref().unwrap().len(), 1);
        assert_eq!(
            a.tokens.as_ref().unwrap()[0].secret_hash,
            crate::auth::credentials::secret_hash(&secret)
        );
        // Unchanged: nothing to do.
        assert!(replace(&conn, &a, 2).unwrap().is_empty());

        a.users.retain(|u| u.name == "admin");
        a.users.push(user("ann", Role::Operator, "x"));
        a.tokens = Some(vec![TokenEntry {
            name: "vms".into(),
            user: "ann".into(),
            role: Role::Viewer,
            channels: None,
            created_ms: 5,
            expires_ms: None,
            secret_hash: [7; 32],
        }]);
        let lines = replace(&conn, &a, 3).unwrap();
        assert!(lines.contains(&"user `old` removed".to_string()), "{lines:?}");
        assert!(lines.contains(&"user `ann` added (operator)".to_string()), "{lines:?}");
        assert!(lines.contains(&"token `vms` of `ann` added".to_string()), "{lines:?}");
        let now = read(&conn).unwrap();
        assert_eq!(now.users, a.users);
        assert_eq!(now.tokens, a.tokens);

        // Tokens not stated are kept.
        let mut b = now.clone();
        b.tokens = None;
        b.users[1].role = Role::Viewer;
        assert_eq!(replace(&conn, &b, 4).unwrap(), vec!["user `ann` changed".to_string()]);
        assert_eq!(read(&conn).unwrap().tokens.unwrap().len(), 1);

        // No admin: refused, nothing changed.
        let c = Accounts {
            users: vec![user("ann", Role::Viewer, "y")],
            tokens: None,
        };
        assert!(matches!(replace(&conn, &c, 5), Err(UserError::NoAdmin)));
        assert_eq!(read(&conn).unwrap().users.len(), 2);
    }
}
