//! The NVR's Ed25519 signing key: `DATA/signing-key`, 32 secret bytes, mode
//! 0600, created on first need and loaded thereafter.
//!
//! Creation is atomic and race-free: the key is written and fsynced under a
//! temporary name, then hard-linked into place, which fails if another
//! process got there first (that key is loaded instead). Must never replace
//! an existing key: every export signed with it would stop verifying.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::EvidenceError;

pub const FILE_NAME: &str = "signing-key";

pub fn path(data: &Path) -> PathBuf {
    data.join(FILE_NAME)
}

fn key_err(p: &Path, why: impl Into<String>) -> EvidenceError {
    EvidenceError::Key {
        file: p.display().to_string(),
        why: why.into(),
    }
}

/// Loads the key, creating it first if the data directory has none.
/// Returns the key and whether it was created now.
pub fn load_or_create(data: &Path) -> Result<(SigningKey, bool), EvidenceError> {
    let p = path(data);
    match load(&p) {
        Ok(k) => return Ok((k, false)),
        Err(EvidenceError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let tmp = data.join(format!(
        ".{FILE_NAME}.{}.{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, &p)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            std::fs::File::open(data)?.sync_all()?;
            Ok((key, true))
        }
        // Another process created it between our look and our link: theirs wins.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(&p)?, false)),
        Err(e) => Err(e.into()),
    }
}

/// Loads an existing key file; refuses one of the wrong size or readable by
/// others.
pub fn load(p: &Path) -> Result<SigningKey, EvidenceError> {
    let meta = std::fs::metadata(p)?;
    if !meta.is_file() {
        return Err(key_err(p, "not a regular file"));
    }
    if meta.len() != 32 {
        return Err(key_err(p, format!("holds {} bytes, not 32", meta.len())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(key_err(
            p,
            format!(
                "mode {:o} lets others read it; make it 0600 (chmod 600)",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    let b = std::fs::read(p)?;
    let arr: [u8; 32] = b.try_into().map_err(|_| key_err(p, "changed size while read"))?;
    Ok(SigningKey::from_bytes(&arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_and_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let (k1, created) = load_or_create(d.path()).unwrap();
        assert!(created);
        let (k2, created) = load_or_create(d.path()).unwrap();
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        let mode = std::fs::metadata(path(d.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // Racing creators all end with the one key on disk.
        let d2 = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(d2.path()).unwrap().0.to_bytes()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]));
        assert_eq!(load(&path(d2.path())).unwrap().to_bytes(), keys[0]);
    }

    #[test]
    fn bad_key_files_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path());
        std::fs::write(&p, b"short").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create(d.path()).err().unwrap().to_string();
        assert!(e.contains("signing-key") && e.contains("5 bytes"), "{e}");
        std::fs::write(&p, [7u8; 32]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&p).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        // The bad file is left alone, never replaced.
        assert_eq!(std::fs::read(&p).unwrap(), [7u8; 32]);
    }
}
