//! The `[[user]]` and `[[token]]` tables: the accounts a parameter file
//! carries from one NVR to another (users with their roles, channels and
//! Argon2 password hashes — never passwords — and API tokens by the hash of
//! their secret). A configuration without these tables leaves the accounts
//! stored in the NVR alone; one with them makes them the whole set.
//!
//! Must never hold or write a plain password or token secret.

use std::collections::BTreeSet;

use crate::auth::Role;

/// Users and tokens as a parameter file states them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accounts {
    pub users: Vec<UserEntry>,
    /// `None`: the file does not say (exported without secrets), so the
    /// tokens stored are kept.
    pub tokens: Option<Vec<TokenEntry>>,
}

#[derive(Clone, PartialEq)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    /// The channels a non-admin may see; `None` for all.
    pub channels: Option<BTreeSet<u32>>,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq)]
pub struct TokenEntry {
    pub name: String,
    pub user: String,
    /// At most the user's role.
    pub role: Role,
    pub channels: Option<BTreeSet<u32>>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    /// SHA-256 of the token's secret: a secret itself (it lets a copy of
    /// the NVR accept the token), so only ever written sealed.
    pub secret_hash: [u8; 32],
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    name: Option<toml::Spanned<String>>,
    role: Option<toml::Spanned<String>>,
    channels: Option<Vec<u32>>,
    password_hash: Option<toml::Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    name: Option<toml::Spanned<String>>,
    user: Option<toml::Spanned<String>>,
    role: Option<toml::Spanned<String>>,
    channels: Option<Vec<u32>>,
    created_ms: Option<i64>,
    expires_ms: Option<i64>,
    secret_hash: Option<toml::Spanned<String>>,
}

use toml::Spanned;

use super::Checker;

/// Checks `[[user]]` and `[[token]]`; `None` when there are neither (and no
/// sealed secrets that would say "no tokens").
pub(super) fn parse(
    c: &mut Checker<'_>,
    users: &[Spanned<RawUser>],
    tokens: &[Spanned<RawToken>],
    sealed: bool,
) -> Option<Accounts> {
    if users.is_empty() && tokens.is_empty() {
        return None;
    }
    let mut out = Accounts::default();
    let mut names = std::collections::HashSet::new();
    for (i, u) in users.iter().enumerate() {
        let at = u.span().start;
        let u = u.get_ref();
        let f = |n: &str| format!("user[{i}].{n}");
        let name = match &u.name {
            Some(n) => match crate::auth::users::check_name(n.get_ref()) {
                Ok(()) if names.insert(n.get_ref().clone()) => Some(n.get_ref().clone()),
                Ok(()) => {
                    c.err(n.span().start, f("name"), format!("duplicate user `{}`", n.get_ref()));
                    None
                }
                Err(e) => {
                    c.err(n.span().start, f("name"), e.to_string());
                    None
                }
            },
            None => {
                c.err(at, f("name"), "is required");
                None
            }
        };
        let role = role(c, u.role.as_ref(), at, &f("role"));
        let hash = match &u.password_hash {
            Some(h) if h.get_ref().starts_with("$argon2") => Some(h.get_ref().clone()),
            Some(h) => {
                c.err(
                    h.span().start,
                    f("password_hash"),
                    "must be an Argon2 PHC string ($argon2id$…), never a password",
                );
                None
            }
            None => {
                c.err(at, f("password_hash"), "is required");
                None
            }
        };
        if let (Some(name), Some(role), Some(password_hash)) = (name, role, hash) {
            out.users.push(UserEntry {
                name,
                role,
                channels: channels(role, u.channels.as_ref()),
                password_hash,
            });
        }
    }
    if !users.is_empty() && !out.users.iter().any(|u| u.role == Role::Admin) && c.errors.is_empty() {
        c.err(
            users[0].span().start,
            "user",
            "no user is an admin: nobody could change the configuration again",
        );
    }
    if users.is_empty() && !tokens.is_empty() {
        c.err(
            tokens[0].span().start,
            "token",
            "tokens need the [[user]] tables they belong to",
        );
    }
    let mut list = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = t.span().start;
        let t = t.get_ref();
        let f = |n: &str| format!("token[{i}].{n}");
        let (Some(name), Some(user)) = (&t.name, &t.user) else {
            c.err(at, f("name"), "name and user are required");
            continue;
        };
        let Some(owner) = out.users.iter().find(|u| &u.name == user.get_ref()) else {
            c.err(
                user.span().start,
                f("user"),
                format!("no [[user]] is named `{}`", user.get_ref()),
            );
            continue;
        };
        let Some(role) = role(c, t.role.as_ref(), at, &f("role")) else {
            continue;
        };
        if role > owner.role {
            c.err(at, f("role"), format!("is above its user's role ({})", owner.role));
            continue;
        }
        let key = token_secret_key(user.get_ref(), name.get_ref(), t.created_ms.unwrap_or(0));
        let hex = t
            .secret_hash
            .as_ref()
            .map(|h| h.get_ref().clone())
            .or_else(|| c.secret(&key));
        let hash = hex
            .as_deref()
            .and_then(crate::evidence::unhex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let Some(secret_hash) = hash else {
            c.err(
                at,
                f("secret_hash"),
                "is required: 64 hex digits, sealed in [secrets] by an export (give its passphrase)",
            );
            continue;
        };
        list.push(TokenEntry {
            name: name.get_ref().clone(),
            user: user.get_ref().clone(),
            role,
            channels: channels(role, t.channels.as_ref()),
            created_ms: t.created_ms.unwrap_or(0),
            expires_ms: t.expires_ms,
            secret_hash,
        });
    }
    out.tokens = (sealed || !tokens.is_empty()).then_some(list);
    Some(out)
}

/// Where a token's hash goes among the sealed secrets: token names need not
/// be unique, so the creation time tells two of one user apart.
pub fn token_secret_key(user: &str, name: &str, created_ms: i64) -> String {
    format!("token.{user}.{name}.{created_ms}.secret_hash")
}

fn role(c: &mut Checker<'_>, r: Option<&Spanned<String>>, at: usize, field: &str) -> Option<Role> {
    match r {
        Some(r) => r
            .get_ref()
            .parse()
            .map_err(|e: String| c.err(r.span().start, field, e))
            .ok(),
        None => {
            c.err(at, field, "is required (admin, operator or viewer)");
            None
        }
    }
}

/// An admin sees every channel whatever is written.
fn channels(role: Role, list: Option<&Vec<u32>>) -> Option<BTreeSet<u32>> {
    list.filter(|_| role != Role::Admin)
        .map(|l| l.iter().copied().collect())
}

/// The `[[user]]` and `[[token]]` tables of `a`, token hashes in clear
/// (the parameter file moves them to its sealed secrets).
pub(super) fn render(a: &Accounts, doc: &mut toml::Table) {
    use toml::Value;
    let list = |s: &BTreeSet<u32>| Value::Array(s.iter().map(|n| Value::Integer(i64::from(*n))).collect());
    let users = a
        .users
        .iter()
        .map(|u| {
            let mut t = toml::Table::new();
            t.insert("name".into(), u.name.clone().into());
            t.insert("role".into(), u.role.as_str().into());
            if let Some(ch) = &u.channels {
                t.insert("channels".into(), list(ch));
            }
            t.insert("password_hash".into(), u.password_hash.clone().into());
            Value::Table(t)
        })
        .collect::<Vec<_>>();
    if !users.is_empty() {
        doc.insert("user".into(), Value::Array(users));
    }
    let tokens = a
        .tokens
        .iter()
        .flatten()
        .map(|k| {
            let mut t = toml::Table::new();
            t.insert("name".into(), k.name.clone().into());
            t.insert("user".into(), k.user.clone().into());
            t.insert("role".into(), k.role.as_str().into());
            if let Some(ch) = &k.channels {
                t.insert("channels".into(), list(ch));
            }
            t.insert("created_ms".into(), k.created_ms.into());
            if let Some(e) = k.expires_ms {
                t.insert("expires_ms".into(), e.into());
            }
            t.insert("secret_hash".into(), crate::evidence::hex(&k.secret_hash).into());
            Value::Table(t)
        })
        .collect::<Vec<_>>();
    if !tokens.is_empty() {
        doc.insert("token".into(), Value::Array(tokens));
    }
}
