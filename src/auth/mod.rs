//! Access control: who may use the HTTP API and what they may see. Owns the
//! roles, the principal an authenticated request carries, and (in its
//! submodules) users, sessions, API tokens and the audit log.
//!
//! Must never make recording wait: nothing here is on the path from a camera
//! to the disk, and a store with no user at all still records.

pub mod accounts;
pub mod audit_log;
pub mod client;
pub mod credentials;
pub mod password;
pub mod policy;
pub mod users;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: each role may do everything the ones below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch and export footage of their channels.
    Viewer,
    /// A viewer who may also trigger and acknowledge events.
    Operator,
    /// Everything: users, tokens, configuration, the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "`{}` is not a role (admin, operator or viewer)",
                crate::excerpt::short(s)
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made an authenticated request, put into the request's extensions by
/// the access layer in front of every route. Handlers take it as
/// `axum::Extension<Principal>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// How the audit log names them: the user name, or `NAME (token T)` for an API token.
    pub actor: String,
    /// The user the session or token belongs to.
    pub user: String,
    pub role: Role,
    /// The channels they may see; `None` for all.
    pub channels: Option<BTreeSet<u32>>,
}

impl Principal {
    pub fn can_see(&self, channel: u32) -> bool {
        self.role == Role::Admin || self.channels.as_ref().is_none_or(|c| c.contains(&channel))
    }

    pub fn sees_all(&self) -> bool {
        self.role == Role::Admin || self.channels.is_none()
    }

    pub fn has(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// Access settings (`[access]` in the configuration).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// Audit entries older than this are removed.
    pub audit_retention: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_idle: Duration::from_secs(24 * 3600),
            audit_retention: Duration::from_secs(366 * 24 * 3600),
        }
    }
}
