//! What `bench ingest` reads from the recording NVR's own API: the cost of
//! a `/metrics` scrape, the writer's durability counters and histograms,
//! retention's deletions and ingest's drops, each as a difference over the
//! measured window. Must never count anything the NVR did not report.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What a Prometheus scrape of the recording NVR costs, as its client sees
/// it (issue 14: under 5 ms at 256 channels).
#[derive(serde::Serialize)]
pub(super) struct Scrape {
    pub(super) scrapes: usize,
    pub(super) p50_ms: f64,
    pub(super) max_ms: f64,
    pub(super) bytes: usize,
}

impl Scrape {
    pub(super) fn measure(base: &str, token: &str, n: usize) -> Result<Scrape> {
        let auth = format!("Bearer {token}");
        let mut ms = Vec::with_capacity(n);
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let r = tandem::httpc::request_with_timeout(
                "GET",
                &format!("{base}/metrics"),
                &[("Authorization", &auth)],
                b"",
                Duration::from_secs(10),
            )?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            if r.status != 200 {
                bail!("GET /metrics answered {}", r.status);
            }
            bytes = r.body.len();
            std::thread::sleep(Duration::from_millis(100));
        }
        ms.sort_by(f64::total_cmp);
        Ok(Scrape {
            scrapes: n,
            p50_ms: ms[n / 2],
            max_ms: ms[n - 1],
            bytes,
        })
    }
}

/// What retention deleted and what was lost by the NVR's own counting,
/// over the whole measured window (the audit sees only what the cap kept).
#[derive(serde::Serialize)]
pub(super) struct RetentionFigures {
    pub(super) segments_deleted: u64,
    pub(super) bytes_deleted: u64,
    pub(super) writer_frames_lost: u64,
    pub(super) ingest_frames_dropped: u64,
}

/// Frames all channels' ingest dropped because the write buffer was full.
pub(super) fn ingest_dropped(base: &str, token: &str) -> Result<u64> {
    let r = tandem::httpc::request_with_timeout(
        "GET",
        &format!("{base}/api/v1/channels"),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
        Duration::from_secs(10),
    )?;
    let v = r.json()?;
    let channels = v.as_array().context("GET /api/v1/channels is not a list")?;
    Ok(channels
        .iter()
        .map(|c| c["ingest"]["dropped_frames"].as_u64().unwrap_or(0))
        .sum())
}

/// The writer's counters read from `GET /api/v1/store`.
pub(super) struct WriterFigures {
    pub(super) fsyncs: u64,
    pub(super) fsync_bytes: u64,
    pub(super) frames_lost: u64,
    pub(super) retention_segments: u64,
    pub(super) retention_bytes: u64,
    pub(super) arrival: tandem::store::health::Histogram,
    pub(super) capture: tandem::store::health::Histogram,
    /// How long each flush round's fdatasyncs took.
    pub(super) flush: tandem::store::health::Histogram,
    /// How long the writer's index commits took (absent before they were timed).
    pub(super) commit: Option<tandem::store::health::Histogram>,
}

/// `GET /api/v1/store` as JSON (the writer's counters and histograms).
pub(super) fn store_status(base: &str, token: &str) -> Result<serde_json::Value> {
    let r = tandem::httpc::request_with_timeout(
        "GET",
        &format!("{base}/api/v1/store"),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
        Duration::from_secs(10),
    )?;
    Ok(r.json()?)
}

pub(super) fn writer_figures(base: &str, token: &str) -> Result<WriterFigures> {
    use tandem::store::health::Histogram;
    let v = store_status(base, token)?;
    let w = &v["writer"];
    Ok(WriterFigures {
        fsyncs: w["fsyncs"].as_u64().context("no writer.fsyncs in /api/v1/store")?,
        fsync_bytes: w["fsync_bytes"]
            .as_u64()
            .context("no writer.fsync_bytes in /api/v1/store")?,
        frames_lost: w["frames_lost"]
            .as_u64()
            .context("no writer.frames_lost in /api/v1/store")?,
        retention_segments: w["retention_segments"]
            .as_u64()
            .context("no writer.retention_segments in /api/v1/store")?,
        retention_bytes: w["retention_bytes"]
            .as_u64()
            .context("no writer.retention_bytes in /api/v1/store")?,
        arrival: Histogram::from_json(&w["arrival_durable"]).context("no writer.arrival_durable in /api/v1/store")?,
        capture: Histogram::from_json(&w["durable"]).context("no writer.durable in /api/v1/store")?,
        flush: Histogram::from_json(&w["flush"]).context("no writer.flush in /api/v1/store")?,
        commit: Histogram::from_json(&w["commit"]),
    })
}

/// The cost of durability over the measured window.
#[derive(serde::Serialize)]
pub(super) struct Durability {
    pub(super) fsyncs_per_second: f64,
    pub(super) bytes_per_fsync: f64,
    /// Upper bound of the p99's histogram bucket (50-ms steps near a second).
    pub(super) arrival_to_durable_p99_ms: Option<u32>,
    pub(super) capture_to_durable_p99_ms: Option<u32>,
    /// The flush rounds' fdatasyncs (bucket upper bound; max exact).
    pub(super) flush_round_p99_ms: Option<u32>,
    pub(super) flush_round_max_ms: u32,
    /// The writer's index commits (not timed by builds before flush rounds).
    pub(super) commit_p99_ms: Option<u32>,
    pub(super) commit_max_ms: Option<u32>,
}

impl Durability {
    pub(super) fn between(before: &WriterFigures, after: &WriterFigures, seconds: f64) -> Durability {
        let fsyncs = after.fsyncs.saturating_sub(before.fsyncs);
        let bytes = after.fsync_bytes.saturating_sub(before.fsync_bytes);
        let commits = after
            .commit
            .as_ref()
            .zip(before.commit.as_ref())
            .map(|(a, b)| a.since(b));
        Durability {
            fsyncs_per_second: fsyncs as f64 / seconds.max(1e-3),
            bytes_per_fsync: if fsyncs == 0 { 0.0 } else { bytes as f64 / fsyncs as f64 },
            arrival_to_durable_p99_ms: after.arrival.since(&before.arrival).quantile_ms(0.99),
            capture_to_durable_p99_ms: after.capture.since(&before.capture).quantile_ms(0.99),
            flush_round_p99_ms: after.flush.since(&before.flush).quantile_ms(0.99),
            flush_round_max_ms: after.flush.since(&before.flush).max_ms(),
            commit_p99_ms: commits.as_ref().and_then(|c| c.quantile_ms(0.99)),
            commit_max_ms: commits.map(|c| c.max_ms()),
        }
    }
}
