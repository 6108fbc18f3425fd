//! Reading and replacing the stored accounts as a whole, for the parameter
//! file. Must never touch a plain password or a token's secret.

use rusqlite::Connection;

use super::users::UserError;
use crate::config::accounts::Accounts;

/// Users and tokens as stored.
pub fn read(conn: &Connection) -> rusqlite::Result<Accounts> {
    let _ = conn;
    todo!()
}

/// Makes the stored accounts `accounts` in one transaction; a line per change.
pub fn replace(conn: &Connection, accounts: &Accounts, now_ms: i64) -> Result<Vec<String>, UserError> {
    let _ = (conn, accounts, now_ms);
    todo!()
}
