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
