//! The Chromium half of `tandem bench live`: glass-to-glass latency, from a
//! frame's capture time to the moment headless Chromium presents it.
//!
//! A page on the NVR's own origin opens the live WebSocket of one channel,
//! plays it through Media Source Extensions the way the web client does (the
//! camera's bytes appended as they come, the player kept at the live edge),
//! reads each fragment's `prft` box (capture time ↔ media time) and, with
//! `requestVideoFrameCallback`, maps every presented frame's media time back
//! to its capture time: latency = expected display time − capture time, on
//! the same machine's wall clock. The player is injected rather than taken
//! from the UI so that the figure measures the transport and Chromium's
//! pipeline, not the state of one page's scripts.
//!
//! Owns nothing but its browser, which is gone when the function returns.
//! Must never send the token anywhere but the NVR it measures (it rides as a
//! DevTools extra header on the NVR origin's requests).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tandem::webdriver::{Browser, Options};

/// What Chromium showed of one channel's live stream.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GlassToGlass {
    /// Frames presented and measured (after the warm-up).
    pub frames: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Frames Chromium dropped (`getVideoPlaybackQuality`).
    pub dropped_frames: u64,
    /// Times the player jumped to the live edge (lag over 1 s or a `drop`).
    pub live_edge_jumps: u64,
}

/// Seconds of catch-up ignored: a new viewer starts from the cached GOP,
/// whose frames are up to a GOP old when they are shown.
const WARM_UP_S: u64 = 3;

/// The injected player. Arguments: WebSocket URL, measured seconds, warm-up
/// seconds, callback. Answers `{samples, dropped, jumps}` or `{error}`.
const PLAYER: &str = r#"
const [url, seconds, warm, done] = arguments;
const video = document.createElement('video');
video.muted = true; video.autoplay = true; video.playsInline = true;
document.body.appendChild(video);
const ms = new MediaSource();
video.src = URL.createObjectURL(ms);
const captureAt = new Map();   // media time (ms, rounded) → capture time (Unix ms)
const samples = [];
let sb = null, expectInit = false, jumps = 0, failed = null;
const queue = [];
const t0 = performance.now();
function pump() {
  if (!sb || sb.updating || !queue.length) return;
  try { sb.appendBuffer(queue.shift()); } catch (e) { failed = 'append: ' + e; }
}
function edge() {
  const b = video.buffered;
  return b.length ? b.end(b.length - 1) : 0;
}
function toEdge() {
  const e = edge();
  if (e > 0) { video.currentTime = Math.max(0, e - 0.05); jumps++; }
}
function prft(buf) {
  const v = new DataView(buf);
  if (buf.byteLength < 32 || v.getUint32(4) !== 0x70726674) return;  // 'prft'
  const secs = v.getUint32(16) - 2208988800, frac = v.getUint32(20) / 4294967296;
  const media = v.getUint8(8) === 1 ? Number(v.getBigUint64(24)) : v.getUint32(24);
  captureAt.set(Math.round(media / 90), (secs + frac) * 1000);
  if (captureAt.size > 4000) captureAt.delete(captureAt.keys().next().value);
}
function onFrame(now, m) {
  const key = Math.round(m.mediaTime * 1000);
  const c = captureAt.get(key) ?? captureAt.get(key - 1) ?? captureAt.get(key + 1);
  if (c !== undefined && performance.now() - t0 > warm * 1000) {
    samples.push(performance.timeOrigin + m.expectedDisplayTime - c);
  }
  video.requestVideoFrameCallback(onFrame);
}
video.requestVideoFrameCallback(onFrame);
ms.addEventListener('sourceopen', () => {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onerror = () => { failed = failed || 'the WebSocket failed'; };
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      const m = JSON.parse(ev.data);
      if (m.type === 'init') {
        expectInit = true;
        if (!sb) {
          sb = ms.addSourceBuffer(m.mime);
          sb.mode = 'segments';
          sb.addEventListener('updateend', () => {
            // Far behind: jump; a little behind: play slightly faster until caught up.
            const lag = edge() - video.currentTime;
            if (lag > 1.0) toEdge();
            video.playbackRate = lag > 0.12 ? 1.1 : 1.0;
            if (video.buffered.length && video.currentTime - video.buffered.start(0) > 20 && !sb.updating) {
              sb.remove(0, video.currentTime - 10);
              return;
            }
            pump();
          });
        } else {
          sb.changeType(m.mime);
        }
      } else if (m.type === 'drop') {
        toEdge();
      }
      return;
    }
    if (expectInit) { expectInit = false; } else { prft(ev.data); }
    queue.push(ev.data);
    pump();
    if (video.paused) video.play().catch(() => {});
  };
  setTimeout(() => {
    ws.close();
    const q = video.getVideoPlaybackQuality();
    done(failed && !samples.length ? {error: failed}
      : {samples, dropped: q.droppedVideoFrames, jumps});
  }, (warm + seconds) * 1000);
}, {once: true});
"#;

/// Opens channel `channel`'s main stream on the NVR at `base` (`http://…`)
/// in headless Chromium, authenticated with `token`, and measures capture →
/// presented for `seconds` after a short warm-up.
pub fn glass_to_glass(base: &str, token: &str, channel: u32, seconds: u64) -> Result<GlassToGlass> {
    let opts = Options::default();
    if let Some(why) = opts.missing() {
        bail!("glass-to-glass needs headless Chromium: {why}");
    }
    let browser = Browser::start(&opts).context("starting headless Chromium")?;
    // A page of the NVR's origin, so the WebSocket's Origin is its own.
    browser.goto(&format!("{base}/api/v1/status"))?;
    browser.cdp("Network.enable", json!({}))?;
    browser.cdp(
        "Network.setExtraHTTPHeaders",
        json!({"headers": {"Authorization": format!("Bearer {token}")}}),
    )?;
    browser.set_script_timeout(Duration::from_secs(WARM_UP_S + seconds + 30))?;
    let ws = format!(
        "{}/api/v1/channels/{channel}/live?stream=main",
        base.replacen("http", "ws", 1)
    );
    let v = browser.execute_async(PLAYER, vec![json!(ws), json!(seconds), json!(WARM_UP_S)])?;
    let problems: Vec<String> = browser
        .console()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.level == "SEVERE")
        .map(|e| e.message)
        .collect();
    summarize(&v).with_context(|| format!("browser console: {problems:?}"))
}

fn summarize(v: &Value) -> Result<GlassToGlass> {
    if let Some(e) = v["error"].as_str() {
        bail!("the browser's player failed: {e}");
    }
    let mut samples: Vec<f64> = v["samples"]
        .as_array()
        .context("no samples in the player's answer")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    if samples.is_empty() {
        bail!("Chromium presented no frame of the live stream");
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    Ok(GlassToGlass {
        frames: samples.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        dropped_frames: v["dropped"].as_u64().unwrap_or(0),
        live_edge_jumps: v["jumps"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let g = summarize(&json!({"samples": samples, "dropped": 2, "jumps": 1})).unwrap();
        assert_eq!((g.frames, g.p50_ms, g.p99_ms), (100, 50.0, 99.0));
        assert_eq!((g.dropped_frames, g.live_edge_jumps), (2, 1));
        let one = summarize(&json!({"samples": [7.0]})).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }

    #[test]
    fn failures_are_named() {
        let e = summarize(&json!({"error": "the WebSocket failed"})).unwrap_err();
        assert!(e.to_string().contains("WebSocket failed"));
        assert!(summarize(&json!({"samples": []})).is_err());
        assert!(summarize(&json!({})).is_err());
    }
}
