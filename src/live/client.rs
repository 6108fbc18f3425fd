//! A plain live-view client, as a program rather than a browser uses the
//! WebSocket: connects to `/api/v1/channels/{n}/live`, reads for a while and
//! reports what arrived — init segments, fragments, bytes, `drop` notices,
//! camera states, the time to the first picture, and per fragment the
//! latency from its capture time (`prft`) to its arrival. `bench live` and
//! the live-view tests run many of these at once.
//!
//! Must never write to the server beyond the handshake (a viewer need not),
//! and never keep more than its counters and the latency samples.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What one viewer saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Watched {
    pub inits: u64,
    pub fragments: u64,
    pub key_fragments: u64,
    pub bytes: u64,
    /// `drop` notices and the frames they said were skipped.
    pub drops: u64,
    pub frames_skipped: u64,
    /// Camera states announced, in order (`online`/`offline`).
    pub states: Vec<String>,
    /// The `stream` the init message named.
    pub stream: Option<String>,
    /// From the handshake's start to the first fragment.
    pub first_fragment_ms: Option<f64>,
    /// Capture time → arrival, per fragment from the second key frame on
    /// (the cached GOP a viewer starts with is old on purpose), milliseconds.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

/// The capture time in a fragment's `prft` box as Unix microseconds.
pub fn prft_capture_micros(fragment: &[u8]) -> Option<i64> {
    if fragment.len() < 24 || &fragment[4..8] != b"prft" {
        return None;
    }
    let ntp = u64::from_be_bytes(fragment[16..24].try_into().ok()?);
    let secs = (ntp >> 32) as i64 - 2_208_988_800;
    let micros = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    Some(secs * 1_000_000 + micros as i64)
}

/// Whether a fragment's (single) sample is a key frame (`trun` flags).
fn is_key(fragment: &[u8]) -> bool {
    let Some(at) = fragment.windows(4).position(|w| w == b"trun") else {
        return false;
    };
    // full box header, count, data offset, then duration, size, flags.
    let flags_at = at + 4 + 4 + 4 + 4 + 8;
    fragment
        .get(flags_at..flags_at + 4)
        .is_some_and(|f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]) & 0x0001_0000 == 0)
}

/// Watches `url` (`ws://host:port/api/v1/channels/N/live?stream=…`) for
/// `for_how_long`, sending `token` as a bearer token.
pub async fn watch(url: &str, token: &str, for_how_long: Duration) -> Result<Watched> {
    let mut req = url.into_client_request().context("live view URL")?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().context("token")?);
    let started = Instant::now();
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req))
        .await
        .context("the WebSocket handshake timed out")?
        .context("the WebSocket handshake failed")?;
    let mut w = Watched::default();
    let deadline = tokio::time::Instant::now() + for_how_long;
    // Binary messages after an `init` text are init segments.
    let mut expect_init = false;
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let m = match m {
            None => break,
            Some(Err(e)) => bail!("the live view failed after {} fragments: {e}", w.fragments),
            Some(Ok(m)) => m,
        };
        match m {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).context("a text message that is not JSON")?;
                match v["type"].as_str() {
                    Some("init") => {
                        expect_init = true;
                        w.stream = v["stream"].as_str().map(str::to_string);
                    }
                    Some("drop") => {
                        w.drops += 1;
                        w.frames_skipped += v["skipped"].as_u64().unwrap_or(0);
                    }
                    Some("state") => w.states.push(v["state"].as_str().unwrap_or("?").to_string()),
                    _ => bail!("an unknown message: {t}"),
                }
            }
            Message::Binary(b) => {
                if expect_init {
                    expect_init = false;
                    w.inits += 1;
                    continue;
                }
                w.fragments += 1;
                w.bytes += b.len() as u64;
                if is_key(&b) {
                    w.key_fragments += 1;
                }
                if w.first_fragment_ms.is_none() {
                    w.first_fragment_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                }
                if w.key_fragments < 2 {
                    continue;
                }
                if let Some(c) = prft_capture_micros(&b) {
                    let now = crate::time::Time90k::from_system(SystemTime::now()).as_unix_micros();
                    w.latencies_ms.push((now - c) as f64 / 1000.0);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::fmp4;

    #[test]
    fn reads_back_what_the_packager_writes() {
        let data = [1u8; 20];
        let s = |key| fmp4::Sample {
            duration: 3600,
            key,
            data: &data,
        };
        let f = fmp4::fragment(1, 0, &[s(true)], Some(1_763_000_000_123_456));
        let got = prft_capture_micros(&f).unwrap();
        assert!((got - 1_763_000_000_123_456).abs() <= 1, "{got}");
        assert!(is_key(&f));
        assert!(!is_key(&fmp4::fragment(2, 0, &[s(false)], None)));
        assert_eq!(prft_capture_micros(&fmp4::fragment(2, 0, &[s(false)], None)), None);
    }
}
