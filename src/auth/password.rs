//! Password hashing: Argon2id with parameters chosen so one check takes
//! about a tenth of a second on a small NVR (measured by `tandem bench
//! auth`), slow enough to make guessing costly and fast enough for a login.
//!
//! Must never compare secrets with `==` (the argon2 crate's verify is
//! constant-time) and never reveal, by timing, whether a user exists:
//! `verify_absent` spends the same work on a user name that is not there.

use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password `user add` and `user passwd` accept.
pub const MIN_LEN: usize = 12;
/// Longer passwords are refused before hashing: hashing is the expensive part,
/// and nobody types a kilobyte.
pub const MAX_LEN: usize = 1024;

/// Memory per hash in KiB; with `ITERATIONS` it sets the cost. Logins hash
/// at most `web::access::HASHING_AT_ONCE` at a time, which bounds the memory.
pub const MEMORY_KIB: u32 = 32 * 1024;
pub const ITERATIONS: u32 = 3;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("the password must be at most {MAX_LEN} bytes")]
    TooLong,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Checks the length rules a new password must meet.
pub fn acceptable(pw: &str) -> Result<(), PasswordError> {
    if pw.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if pw.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// A PHC string (`$argon2id$v=19$m=…`) for a new password.
pub fn hash(pw: &str) -> Result<String, PasswordError> {
    acceptable(pw)?;
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `pw` matches the stored hash. A malformed stored hash matches nothing.
pub fn verify(pw: &str, stored: &str) -> bool {
    if pw.len() > MAX_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    // The stored string carries its own parameters, so hashes made with older
    // parameters keep working.
    Argon2::default().verify_password(pw.as_bytes(), &parsed).is_ok()
}

/// Spends the work of one `verify` for a user name that does not exist.
pub fn verify_absent(pw: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let d = DUMMY.get_or_init(|| hash("tandem-no-such-user-dummy").expect("hashing a constant"));
    let _ = verify(pw, d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_rules_hold() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(h.contains(&format!("m={MEMORY_KIB},t={ITERATIONS}")), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(hash("correct horse battery").unwrap(), h, "salted");
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::TooLong));
        // Twelve characters, not bytes.
        assert!(acceptable("ééééééééééé").is_err());
        assert!(acceptable("éééééééééééé").is_ok());
        verify_absent("anything at all");
    }
}
