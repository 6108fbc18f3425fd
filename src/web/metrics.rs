//! `GET /metrics`: the NVR for Prometheus. Gathers one snapshot of figures
//! the NVR keeps anyway (channel views, writer counters, rules, transfers,
//! gap fill jobs, free space) and hands it to `crate::metrics` to encode.
//!
//! Must never block the runtime (the index and `statfs` are read on the
//! blocking pool) and never hold an NVR lock while encoding.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiResult};
use crate::metrics::{ChannelFigures, RuleFigures, Scrape};
use crate::nvr::Nvr;

/// Counts per state, in a stable order.
fn by_state<'a>(states: impl Iterator<Item = &'a str>) -> Vec<(String, u64)> {
    let mut m = BTreeMap::<String, u64>::new();
    for s in states {
        *m.entry(s.to_string()).or_default() += 1;
    }
    m.into_iter().collect()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    summary = "Prometheus metrics",
    description = "The NVR's figures in the Prometheus text format: per channel frames, bytes, reconnects, dropped \
                   frames, key frame requests, frames and bytes stored, connection and recording state, live \
                   viewers; the write buffer; fsyncs and the flush and frame-to-durable latency histograms; free \
                   space; segments and bytes retention deleted; failover rule states; failback transfers and gap fill jobs by state. Scrape it with a \
                   bearer token of an operator (`authorization: credentials_file` in Prometheus).",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 500, description = "The index could not be read", body = super::doc::ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
pub async fn metrics(State(nvr): State<Arc<Nvr>>) -> ApiResult<Response> {
    let views = nvr.channel_views();
    let writer = nvr.writer_stats();
    let buffer = nvr.write_buffer();
    let channels: Vec<ChannelFigures> = views
        .iter()
        .map(|v| ChannelFigures {
            number: v.number,
            camera: v.binding.clone().unwrap_or_default(),
            connected: v.ingest.connected,
            recording: v.recording.state == crate::store::RecordingState::Recording,
            frames: v.ingest.frames,
            bytes: v.ingest.bytes,
            reconnects: v.ingest.reconnects,
            dropped_frames: v.ingest.dropped_frames,
            key_frame_requests: v.ingest.key_frame_requests,
            frames_written: v.recording.frames_written,
            bytes_written: v.recording.bytes_written,
            segments_written: v.recording.segments_written,
            frames_lost: v.recording.frames_lost,
            live_viewers: nvr.live.viewers(v.number) as u64,
        })
        .collect();
    let rules: Vec<RuleFigures> = nvr
        .rules()
        .iter()
        .filter_map(|r| {
            let r = r.lock().ok()?;
            Some(RuleFigures {
                name: r.name.clone(),
                failure: r.machine.state == crate::failover::state::State::Failure,
            })
        })
        .collect();
    let dir = nvr.config().storage.dir.clone();
    let (free, transfers) = tokio::task::spawn_blocking(move || {
        let free = crate::store::free_bytes(&dir).ok();
        (free, crate::failover::transfer::list(&dir))
    })
    .await
    .map_err(ApiError::internal)?;
    let transfers = transfers.map_err(ApiError::internal)?;
    let jobs = nvr
        .gapfill
        .jobs(None, crate::gapfill::LIST_LIMIT)
        .await
        .map_err(ApiError::internal)?;
    let live_viewers = channels.iter().map(|c| c.live_viewers).sum();
    let scrape = Scrape {
        channels,
        buffer_capacity_bytes: buffer.capacity_bytes,
        buffer_used_bytes: buffer.used_bytes,
        buffer_queued_frames: buffer.queued_frames,
        buffer_dropped_frames: buffer.dropped_frames,
        buffer_slow_episodes: buffer.slow_episodes,
        fsyncs: writer.fsyncs,
        fsync_bytes: writer.fsync_bytes,
        fsync_errors: writer.fsync_errors,
        retention_segments: writer.retention_segments,
        retention_bytes: writer.retention_bytes,
        flush: writer.flush,
        durable: writer.durable,
        disk_free_bytes: free,
        rules,
        transfers: by_state(transfers.iter().map(|t| t.state.as_str())),
        transfer_bytes: transfers.iter().map(|t| t.bytes_sent).sum(),
        gapfill_jobs: by_state(jobs.iter().map(|j| j.state.as_str())),
        live_viewers,
        uptime_seconds: nvr.started.elapsed().as_secs_f64(),
    };
    let text = crate::metrics::render(scrape).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
