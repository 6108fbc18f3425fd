//! Evidence exports: a clip packed with a signed manifest into one zip that
//! anyone can check with `tandem verify`, and the NVR's signing key.
//!
//! Owns the manifest (what is signed), the judgement of a manifest and its
//! signature (pure, here), the key file (`key`), and the archive: writing it
//! and checking every byte of it (`archive`). Must never sign bytes other than
//! the exact `manifest.json` stored in the archive, and never report a check
//! as passed that it did not make.

pub mod archive;
pub mod export;
pub mod key;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::time::Time90k;

/// The `format` of manifests this Tandem writes and understands.
pub const FORMAT: &str = "tandem-evidence/1";
/// The archive's entries, in the order they are written.
pub const CLIP_NAME: &str = "clip.mp4";
pub const MANIFEST_NAME: &str = "manifest.json";
pub const SIGNATURE_NAME: &str = "manifest.sig";
/// A manifest larger than this is refused unread (gaps are listed, and a
/// 12-hour clip has at most a few thousand).
pub const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the signing key {file}: {why}")]
    Key { file: String, why: String },
    #[error("{0}")]
    Clip(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    pub start: String,
    pub end: String,
    pub seconds: f64,
    /// Damaged files whose footage would have filled the gap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipFile {
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What the NVR signs. Serialized once, signed over those exact bytes, and
/// stored as they are: verification never re-serializes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub nvr_id: String,
    pub channel: u32,
    pub channel_name: Option<String>,
    pub camera: Option<String>,
    pub requested: Range,
    /// First frame to the end of the last, after trimming to the request.
    pub actual: Range,
    pub frames: u64,
    pub gaps: Vec<Gap>,
    /// Stored frames left out because other footage covers the same time.
    pub frames_omitted: u64,
    /// Stored footage in the range that could not be read.
    pub damaged: Vec<String>,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub clip: ClipFile,
    pub exported_by: String,
    pub exported_at: String,
    /// The audit log entry of this export (`None`: no audit log to write to).
    pub audit_entry: Option<i64>,
    /// The Ed25519 key the manifest is signed with, hex.
    pub public_key: String,
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        v.push(b'\n');
        v
    }
}

/// Lowercase hex, as hashes and keys are written in manifests, the index and
/// fingerprints.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The key's fingerprint: the first 16 bytes of its SHA-256, hex.
pub fn fingerprint(k: &VerifyingKey) -> String {
    hex(&Sha256::digest(k.as_bytes())[..16])
}

/// Parses a public key given as 64 hex digits or as base64 of its 32 bytes.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, String> {
    use base64::Engine;
    let s = s.trim();
    let bytes = unhex(s)
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| "a public key is 64 hex digits or 44 characters of base64".to_string())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("a public key is 32 bytes, not {}", b.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

pub fn sign(key: &SigningKey, manifest: &[u8]) -> [u8; 64] {
    key.sign(manifest).to_bytes()
}

/// One named check of a verification and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The outcome of verifying one archive: every check made, in order.
#[derive(Debug, Default)]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub manifest: Option<Manifest>,
    /// Whether the signature was checked against the key inside the manifest
    /// (no `--key` given) rather than one the user trusts independently.
    pub key_from_manifest: bool,
}

impl Verdict {
    /// True only when checks were made and every one held.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// Judges the manifest and its signature: the signature (against `trusted`
/// when given, else the key the manifest names), and the fields that must
/// hold whatever the clip. Returns the parsed manifest when the signature held.
pub fn check_manifest(manifest: &[u8], sig: &[u8], trusted: Option<&VerifyingKey>) -> (Vec<Check>, Option<Manifest>) {
    let mut checks = Vec::new();
    let m: Manifest = match serde_json::from_slice(manifest) {
        Ok(m) => m,
        Err(e) => {
            checks.push(Check::fail(
                "manifest fields",
                format!("manifest.json does not parse: {e}"),
            ));
            return (checks, None);
        }
    };
    let named = match parse_public_key(&m.public_key) {
        Ok(k) => k,
        Err(e) => {
            checks.push(Check::fail("signature", format!("the manifest's public_key: {e}")));
            return (checks, None);
        }
    };
    let key = match trusted {
        Some(t) if t != &named => {
            checks.push(Check::fail(
                "signature",
                format!(
                    "signed by key {} (fingerprint {}), not the key given with --key (fingerprint {})",
                    m.public_key,
                    fingerprint(&named),
                    fingerprint(t)
                ),
            ));
            return (checks, None);
        }
        Some(t) => t,
        None => &named,
    };
    let sig: [u8; 64] = match sig.try_into() {
        Ok(s) => s,
        Err(_) => {
            checks.push(Check::fail(
                "signature",
                format!("manifest.sig holds {} bytes, not 64", sig.len()),
            ));
            return (checks, None);
        }
    };
    match key.verify_strict(manifest, &Signature::from_bytes(&sig)) {
        Ok(()) => checks.push(Check::pass(
            "signature",
            format!("Ed25519 over manifest.json by key fingerprint {}", fingerprint(key)),
        )),
        Err(_) => {
            checks.push(Check::fail(
                "signature",
                "does not match manifest.json: the manifest or the signature was changed",
            ));
            return (checks, None);
        }
    }
    let mut problems = Vec::new();
    if m.format != FORMAT {
        problems.push(format!("format `{}` is not {FORMAT}", m.format));
    }
    if m.clip.name != CLIP_NAME {
        problems.push(format!("clip.name `{}` is not {CLIP_NAME}", m.clip.name));
    }
    if unhex(&m.clip.sha256).is_none_or(|h| h.len() != 32) {
        problems.push("clip.sha256 is not 64 hex digits".into());
    }
    let t = |what: &str, s: &str, problems: &mut Vec<String>| match Time90k::parse_rfc3339(s) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("{what}: {e}"));
            None
        }
    };
    let rs = t("requested.start", &m.requested.start, &mut problems);
    let re = t("requested.end", &m.requested.end, &mut problems);
    let a_s = t("actual.start", &m.actual.start, &mut problems);
    let a_e = t("actual.end", &m.actual.end, &mut problems);
    t("exported_at", &m.exported_at, &mut problems);
    if let (Some(rs), Some(re), Some(a_s), Some(a_e)) = (rs, re, a_s, a_e) {
        if rs >= re {
            problems.push("requested.end is not after requested.start".into());
        }
        if a_s < rs || a_e > re || a_s > a_e {
            problems.push("the actual range is not inside the requested range".into());
        }
    }
    if m.exported_by.trim().is_empty() {
        problems.push("exported_by is empty".into());
    }
    if problems.is_empty() {
        checks.push(Check::pass(
            "manifest fields",
            format!(
                "channel {} ({}), {} to {}, exported by {} at {}, audit entry {}",
                m.channel,
                m.channel_name.as_deref().unwrap_or("unnamed"),
                m.actual.start,
                m.actual.end,
                m.exported_by,
                m.exported_at,
                m.audit_entry.map_or("none".to_string(), |i| i.to_string())
            ),
        ));
    } else {
        checks.push(Check::fail("manifest fields", problems.join("; ")));
    }
    (checks, Some(m))
}

/// Judges the clip against its (signed) manifest: its SHA-256 and size, and
/// the frames counted in its sample table.
pub fn check_clip(m: &Manifest, sha256: &[u8; 32], bytes: u64, frames: Result<u64, String>) -> Vec<Check> {
    let mut checks = Vec::new();
    let got = hex(sha256);
    if got == m.clip.sha256 && bytes == m.clip.bytes {
        checks.push(Check::pass("clip hash", format!("SHA-256 {got} over {bytes} bytes")));
    } else if bytes != m.clip.bytes {
        checks.push(Check::fail(
            "clip hash",
            format!("clip.mp4 holds {bytes} bytes; the manifest says {}", m.clip.bytes),
        ));
    } else {
        checks.push(Check::fail(
            "clip hash",
            format!("clip.mp4 has SHA-256 {got}; the manifest says {}", m.clip.sha256),
        ));
    }
    match frames {
        Ok(n) if n == m.frames => checks.push(Check::pass("frame count", format!("{n} frames"))),
        Ok(n) => checks.push(Check::fail(
            "frame count",
            format!("clip.mp4 holds {n} frames; the manifest says {}", m.frames),
        )),
        Err(e) => checks.push(Check::fail("frame count", format!("clip.mp4 cannot be read: {e}"))),
    }
    checks
}

#[cfg(test)]
mod tests;
