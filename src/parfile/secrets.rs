//! Secrets in a parameter file: which fields of the document are secrets,
//! taking them out of it, and sealing them with a passphrase (age's scrypt
//! recipient, ASCII-armoured, so `age -d` opens an exported file too).
//!
//! Must never write a secret anywhere but into the sealed text, and never
//! accept a sealed text costing more work than age's bound (its scrypt
//! identity refuses a work factor far above this machine's target, so a
//! hostile file cannot make an import run for hours).

use age::secrecy::SecretString;
use toml::{Table, Value};

use super::SecretValues;
use crate::config::accounts::token_secret_key;

/// Removes every secret from `doc` and returns them by key (see
/// `config::SecretValues`); references (`password_env`, `password_file`,
/// `peer_token_env`) are not secrets and stay.
pub fn extract(doc: &mut Table) -> SecretValues {
    let mut out = SecretValues::new();
    let mut take = |t: &mut Table, field: &str, key: String| {
        if let Some(Value::String(v)) = t.remove(field) {
            out.insert(key, v);
        }
    };
    for cam in tables(doc, "network_camera") {
        let name = str_of(cam, "name");
        take(cam, "password", format!("network_camera.{name}.password"));
    }
    for action in tables(doc, "action") {
        let name = str_of(action, "name");
        for field in ["password", "token", "pin"] {
            take(action, field, crate::config::actions::secret_key(&name, field));
        }
    }
    if let Some(Value::Table(m)) = doc.get_mut("mqtt") {
        take(m, "password", "mqtt.password".into());
    }
    if let Some(Value::Table(f)) = doc.get_mut("failover") {
        take(f, "peer_token", "failover.peer_token".into());
    }
    for tok in tables(doc, "token") {
        let created = tok.get("created_ms").and_then(Value::as_integer).unwrap_or(0);
        let key = token_secret_key(&str_of(tok, "user"), &str_of(tok, "name"), created);
        take(tok, "secret_hash", key);
    }
    out
}

fn tables<'a>(doc: &'a mut Table, key: &str) -> impl Iterator<Item = &'a mut Table> {
    doc.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_table_mut)
}

fn str_of(t: &Table, k: &str) -> String {
    t.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The secrets as an armoured age file sealed with `passphrase`.
pub fn seal(secrets: &SecretValues, passphrase: &str) -> Result<String, String> {
    if passphrase.chars().count() < 8 {
        return Err("the passphrase must be at least 8 characters".into());
    }
    let plain = toml::to_string(secrets).map_err(|e| e.to_string())?;
    let recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_string()));
    let sealed = age::encrypt_and_armor(&recipient, plain.as_bytes()).map_err(|e| e.to_string())?;
    Ok(sealed)
}

/// Opens what `seal` wrote.
pub fn open(sealed: &str, passphrase: &str) -> Result<SecretValues, String> {
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
    let plain = age::decrypt(&identity, sealed.as_bytes()).map_err(|e| match e {
        age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
            "the passphrase does not open the sealed secrets (wrong passphrase?)".to_string()
        }
        e => format!("cannot open the sealed secrets: {e}"),
    })?;
    let text = String::from_utf8(plain).map_err(|_| "the sealed secrets are not text".to_string())?;
    toml::from_str(&text).map_err(|e| format!("the sealed secrets are not a table of secrets: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_passphrase_only() {
        let mut s = SecretValues::new();
        s.insert("network_camera.lobby.password".into(), "p@ss \"quoted\"\n".into());
        s.insert("failover.peer_token".into(), "0123456789abcdef".into());
        let sealed = seal(&s, "correct horse").unwrap();
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{sealed}");
        assert!(!sealed.contains("p@ss") && !sealed.contains("0123456789abcdef"));
        assert_eq!(open(&sealed, "correct horse").unwrap(), s);
        let e = open(&sealed, "wrong horse!").unwrap_err();
        assert!(e.contains("passphrase does not open"), "{e}");
        assert!(open("not age at all", "correct horse").is_err());
        assert!(seal(&s, "short").unwrap_err().contains("at least 8"));
    }
}
