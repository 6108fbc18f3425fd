//! Signed, expiring links to an event's snapshot, so that the person an
//! alert reaches can open the picture without an account:
//! `{base}/api/v1/events/{id}/snapshot.jpg?expires={unix s}&sig={hex}` with
//! `sig = HMAC-SHA256(key, "{id}.{expires}")`.
//!
//! A link opens that one event's picture and nothing else, and only until it
//! expires. Must never accept a signature compared in variable time or a
//! link without an expiry.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a link opens the picture: long enough to read the alert the next
/// morning, short enough that a forwarded SMS stops working.
pub const LINK_LIFETIME_S: i64 = 7 * 24 * 3600;

fn mac(key: &str, id: i64, expires: i64) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    m.update(format!("{id}.{expires}").as_bytes());
    m
}

/// The query string (`expires=…&sig=…`) of a link to event `id`'s picture.
pub fn sign(key: &str, id: i64, expires_unix_s: i64) -> String {
    let sig = mac(key, id, expires_unix_s).finalize().into_bytes();
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("expires={expires_unix_s}&sig={hex}")
}

/// The whole link, `base` being the web client's URL (`https://nvr.example.com`).
pub fn snapshot_link(base: &str, key: &str, id: i64, now_unix_s: i64) -> String {
    format!(
        "{}/api/v1/events/{id}/snapshot.jpg?{}",
        base.trim_end_matches('/'),
        sign(key, id, now_unix_s + LINK_LIFETIME_S)
    )
}

/// Why a link was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link expired")]
    Expired,
    #[error("the link's signature does not match (altered, or for another event or NVR)")]
    BadSignature,
    #[error("`{0}` is malformed")]
    Malformed(&'static str),
}

/// Checks a link's `expires` and `sig` for event `id` at `now`.
pub fn verify(key: &str, id: i64, expires: &str, sig: &str, now_unix_s: i64) -> Result<(), LinkError> {
    let expires: i64 = expires.parse().map_err(|_| LinkError::Malformed("expires"))?;
    if sig.len() != 64 {
        return Err(LinkError::Malformed("sig"));
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| LinkError::Malformed("sig"))?;
    // Checked before the expiry so that a forged link learns nothing else.
    mac(key, id, expires)
        .verify_slice(&bytes)
        .map_err(|_| LinkError::BadSignature)?;
    if now_unix_s >= expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn parts(link: &str) -> (String, String) {
        let q = link.split_once('?').unwrap().1;
        let (e, s) = q.split_once('&').unwrap();
        (e["expires=".len()..].to_string(), s["sig=".len()..].to_string())
    }

    #[test]
    fn a_link_opens_its_event_until_it_expires() {
        let now = 1_800_000_000;
        let link = snapshot_link("https://nvr.example.com/", KEY, 42, now);
        assert!(link.starts_with("https://nvr.example.com/api/v1/events/42/snapshot.jpg?expires="));
        let (e, s) = parts(&link);
        assert_eq!(verify(KEY, 42, &e, &s, now), Ok(()));
        assert_eq!(verify(KEY, 42, &e, &s, now + LINK_LIFETIME_S - 1), Ok(()));
        assert_eq!(verify(KEY, 42, &e, &s, now + LINK_LIFETIME_S), Err(LinkError::Expired));
    }

    #[test]
    fn another_event_key_or_expiry_is_refused() {
        let (e, s) = parts(&snapshot_link("http://x", KEY, 42, 100));
        assert_eq!(verify(KEY, 43, &e, &s, 100), Err(LinkError::BadSignature));
        assert_eq!(
            verify(&KEY.replace('0', "1"), 42, &e, &s, 100),
            Err(LinkError::BadSignature)
        );
        let later = (e.parse::<i64>().unwrap() + 3600).to_string();
        assert_eq!(verify(KEY, 42, &later, &s, 100), Err(LinkError::BadSignature));
        assert_eq!(verify(KEY, 42, "soon", &s, 100), Err(LinkError::Malformed("expires")));
        assert_eq!(verify(KEY, 42, &e, "abc", 100), Err(LinkError::Malformed("sig")));
        assert_eq!(
            verify(KEY, 42, &e, &"zz".repeat(32), 100),
            Err(LinkError::Malformed("sig"))
        );
    }
}
