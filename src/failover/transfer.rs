//! Failback transfers: footage this NVR recorded for a peer while a rule was
//! in `failure` is sent to the backup NVR once the rule returns to `normal`.
//!
//! Jobs are rows of the `transfer` table, so a restart does not forget what is
//! owed. One worker thread sends them: each segment file goes as is, in pieces,
//! to the peer's import endpoint; the peer says how much it already has, so a
//! cut transfer resumes where it stopped and a repeated one stores nothing
//! twice. Sending is paced to `failover.transfer_rate` so that it never crowds
//! out live video — the paper's central concern. Unreachable peers are retried
//! with capped backoff. Backups with `tls = true` are sent over HTTPS (the
//! peer's certificate checked against the configured trust); a job's target
//! keeps its `https://` across restarts, and a plain target that the current
//! configuration marks as TLS is sent over HTTPS too. Each segment goes with
//! its capture offset (camera clock − ours), so a peer whose clock differs
//! merges it by the camera's capture time. Must never send a
//! segment still being written, nor the peer token in plain text to a backup
//! configured for TLS.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::Connection;
use tracing::{info, warn};

use super::peer::UploadState;
use crate::store::{db, segment_path};

/// Largest piece sent in one request.
pub const MAX_CHUNK: usize = 1 << 20;

pub use crate::store::db::{NewTransfer as Job, TransferRow, TransferState};

fn conn(dir: &Path) -> Result<Connection> {
    Ok(db::open(&dir.join("index.db"))?)
}

pub fn queue(dir: &Path, job: &Job) -> Result<i64> {
    Ok(db::insert_transfer(&conn(dir)?, job)?)
}

pub fn list(dir: &Path) -> Result<Vec<TransferRow>> {
    Ok(db::transfers(&db::open_readonly(&dir.join("index.db"))?)?)
}

/// How long to wait before sending more so that `sent` bytes over `elapsed`
/// stay within `rate` bytes per second.
pub fn pace_delay(sent: u64, elapsed: Duration, rate: u64) -> Duration {
    let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
    due.saturating_sub(elapsed)
}

/// Piece size: at most a tenth of a second's worth, so the link sees no burst.
pub fn chunk_size(rate: u64) -> usize {
    ((rate / 10) as usize).clamp(16 * 1024, MAX_CHUNK)
}

/// A job's target as stored: `host:port`, or `https://host:port` for TLS.
pub fn target(address: &str, port: u16, tls: bool) -> String {
    let host = if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    if tls {
        format!("https://{host}:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `host:port` of every backup the configuration sends over TLS.
pub fn tls_targets(rules: &[crate::failover::rule::ConfiguredRule]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|r| r.rule.backup.as_ref().filter(|b| b.tls))
        .map(|b| target(&b.address, b.port.unwrap_or(8080), false))
        .collect()
}

/// The client TLS for backups, if the configuration has a peer trust.
pub fn peer_tls(settings: &crate::config::FailoverSettings) -> Option<crate::httpc::PeerTls> {
    let trust = settings.peer_trust.as_ref()?;
    crate::httpc::PeerTls::new(trust)
        .map_err(|e| tracing::error!("cannot check peers' TLS certificates: {e}"))
        .ok()
}

/// The URL base (`scheme://host:port`) a job's target is sent to: HTTPS when
/// the target says so or the configuration marks it as TLS, never downgraded.
pub fn base_url(target: &str, tls_targets: &[String]) -> String {
    if target.starts_with("https://") {
        target.to_string()
    } else if tls_targets.iter().any(|t| t == target) {
        format!("https://{target}")
    } else {
        format!("http://{target}")
    }
}

pub struct Worker {
    pub dir: PathBuf,
    pub origin: String,
    pub token: String,
    pub rate: u64,
    /// For `https://` targets; without it they fail with an error that says so.
    pub tls: Option<crate::httpc::PeerTls>,
    /// See `tls_targets`.
    pub tls_targets: Vec<String>,
}

impl Worker {
    /// Runs until `wake`'s sender is dropped; a message wakes it early.
    pub fn run(self, wake: Receiver<()>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let pending: Vec<TransferRow> = match list(&self.dir) {
                Ok(l) => l.into_iter().filter(|t| t.state == TransferState::Pending).collect(),
                Err(e) => {
                    warn!("cannot read transfer jobs: {e:#}");
                    Vec::new()
                }
            };
            let mut failed = false;
            for job in &pending {
                match self.run_job(job) {
                    Ok(bytes) => {
                        info!(job = job.id, rule = %job.owed.rule, channel = job.owed.local_channel, target = %job.owed.target, bytes, "failback transfer complete");
                        let _ = conn(&self.dir).and_then(|c| Ok(db::transfer_done(&c, job.id)?));
                        backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        failed = true;
                        warn!(job = job.id, target = %job.owed.target, "failback transfer interrupted, will retry: {e:#}");
                        let _ =
                            conn(&self.dir).and_then(|c| Ok(db::transfer_interrupted(&c, job.id, &format!("{e:#}"))?));
                    }
                }
            }
            let wait = if failed { backoff } else { Duration::from_secs(5) };
            if failed {
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            match wake.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn run_job(&self, job: &TransferRow) -> Result<u64> {
        let c = db::open_readonly(&self.dir.join("index.db"))?;
        let segs = db::segments_overlapping(&c, job.owed.local_channel, job.owed.start, job.owed.end)?;
        let mut total = 0;
        for s in segs.iter().filter(|s| s.start >= job.owed.start) {
            if let Some(why) = &s.damage {
                // Its file cannot be sent as recorded; retrying would never end.
                tracing::warn!(job = job.id, segment = s.id, "not sending a damaged segment: {why}");
                continue;
            }
            if s.state != db::COMPLETE {
                bail!("segment {} is still being written", s.id);
            }
            let path = segment_path(&self.dir, job.owed.local_channel, s.id);
            let offset = db::capture_offset_of(&c, s.id)?;
            total += self.send_segment(job, &path, s.id, s.bytes, offset)?;
            db::transfer_progress(&conn(&self.dir)?, job.id, total)?;
        }
        Ok(total)
    }

    fn url(&self, job: &TransferRow, seg: i64, rest: &str) -> String {
        format!(
            "{}/api/v1/import/{}/{}{}",
            base_url(&job.owed.target, &self.tls_targets),
            self.origin,
            seg,
            rest
        )
    }

    fn call(&self, method: &str, url: &str, body: &[u8]) -> Result<(u16, serde_json::Value)> {
        let auth = format!("Bearer {}", self.token);
        let r = crate::httpc::request_via(
            method,
            url,
            &[("Authorization", &auth)],
            body,
            Duration::from_secs(30),
            self.tls.as_ref(),
        )
        .with_context(|| format!("{method} {url}"))?;
        let v = r.json().unwrap_or(serde_json::Value::Null);
        Ok((r.status, v))
    }

    /// Sends one segment file, resuming from what the peer already has, with
    /// its capture offset (so the peer merges it by the camera's clock).
    fn send_segment(
        &self,
        job: &TransferRow,
        path: &Path,
        seg: i64,
        len: u64,
        capture_offset: Option<i64>,
    ) -> Result<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let (status, v) = self.call("GET", &self.url(job, seg, ""), b"")?;
        if status != 200 {
            bail!("peer answered {status}: {v}");
        }
        let state: UploadState = serde_json::from_value(v.clone()).map_err(|e| anyhow!("peer sent {v}: {e}"))?;
        if state.imported {
            return Ok(0);
        }
        let mut offset = state.received;
        if offset > len {
            // The staged upload is not ours as we know it (a sender that
            // crashed mid-piece, a damaged staging): start it over.
            self.reset(job, seg)?;
            offset = 0;
        }
        let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let chunk = chunk_size(self.rate);
        let mut buf = vec![0u8; chunk];
        let started = Instant::now();
        let mut sent = 0u64;
        while offset < len {
            let n = chunk.min((len - offset) as usize);
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(&mut buf[..n])?;
            std::thread::sleep(pace_delay(sent, started.elapsed(), self.rate));
            let (status, v) = self.call("PUT", &self.url(job, seg, &format!("?offset={offset}")), &buf[..n])?;
            match status {
                200 | 409 => {
                    let state: UploadState =
                        serde_json::from_value(v.clone()).map_err(|e| anyhow!("peer sent no offset: {v}: {e}"))?;
                    offset = state.received;
                }
                _ => bail!("peer refused a piece with {status}: {v}"),
            }
            sent += n as u64;
        }
        let (status, v) = self.call(
            "POST",
            &self.url(job, seg, &complete_query(job.owed.remote_channel, len, capture_offset)),
            b"",
        )?;
        if status == 422 {
            // The peer found the upload damaged and dropped it; the next
            // attempt sends it again from the start.
            self.reset(job, seg)?;
        }
        if status != 200 {
            bail!("peer did not merge segment {seg}: {status} {v}");
        }
        Ok(sent)
    }

    /// Drops the peer's staged copy of a segment.
    fn reset(&self, job: &TransferRow, seg: i64) -> Result<()> {
        let (status, v) = self.call("DELETE", &self.url(job, seg, ""), b"")?;
        if status != 204 {
            bail!("peer would not reset segment {seg}: {status} {v}");
        }
        Ok(())
    }
}

/// The `complete` call's query: the capture offset only when known (absent
/// means unknown to the receiver, which then does not shift).
pub fn complete_query(channel: u32, len: u64, capture_offset: Option<i64>) -> String {
    match capture_offset {
        Some(o) => format!("/complete?channel={channel}&length={len}&capture_offset={o}"),
        None => format!("/complete?channel={channel}&length={len}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_offset_goes_with_the_segment_when_known() {
        assert_eq!(
            complete_query(2, 100, Some(-270_000)),
            "/complete?channel=2&length=100&capture_offset=-270000"
        );
        assert_eq!(complete_query(2, 100, None), "/complete?channel=2&length=100");
    }

    #[test]
    fn tls_targets_are_never_sent_in_plain_text() {
        assert_eq!(target("10.0.0.2", 8443, true), "https://10.0.0.2:8443");
        assert_eq!(target("10.0.0.2", 8080, false), "10.0.0.2:8080");
        assert_eq!(target("fd00::2", 8443, true), "https://[fd00::2]:8443");
        let tls = vec!["nvr-b:8443".to_string()];
        assert_eq!(base_url("https://nvr-b:8443", &[]), "https://nvr-b:8443");
        // A job queued before the backup was switched to TLS goes over TLS now.
        assert_eq!(base_url("nvr-b:8443", &tls), "https://nvr-b:8443");
        assert_eq!(base_url("nvr-c:8080", &tls), "http://nvr-c:8080");
    }

    #[test]
    fn pacing_holds_the_rate() {
        let rate = 1_000_000;
        assert_eq!(pace_delay(0, Duration::ZERO, rate), Duration::ZERO);
        assert_eq!(pace_delay(500_000, Duration::ZERO, rate), Duration::from_millis(500));
        assert_eq!(
            pace_delay(500_000, Duration::from_millis(200), rate),
            Duration::from_millis(300)
        );
        assert_eq!(pace_delay(500_000, Duration::from_secs(2), rate), Duration::ZERO);
        // Simulated sending: total time ≈ bytes / rate, whatever the piece size.
        for rate in [50_000u64, 2_500_000, 100_000_000] {
            let chunk = chunk_size(rate) as u64;
            let (mut sent, mut t) = (0u64, Duration::ZERO);
            while sent < 10 * chunk {
                t += pace_delay(sent, t, rate);
                sent += chunk;
            }
            let expect = Duration::from_secs_f64((sent - chunk) as f64 / rate as f64);
            assert!(
                t.abs_diff(expect) < Duration::from_millis(1),
                "rate {rate}: {t:?} vs {expect:?}"
            );
        }
        assert_eq!(chunk_size(1_000), 16 * 1024);
        assert_eq!(chunk_size(1 << 40), MAX_CHUNK);
    }
}
