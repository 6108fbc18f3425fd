//! The Prometheus exposition of the NVR (`GET /metrics`): a snapshot of the
//! figures the NVR already keeps (`Scrape`), encoded in the Prometheus text
//! format by `prometheus-client` at each scrape.
//!
//! Owns the metric names, their help and their labels, and nothing else: it
//! takes a snapshot gathered by `web::metrics` and returns text. Must never
//! touch a lock, a file or a clock, and never instrument the recording path:
//! every figure here is one the NVR counts anyway.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::store::health::Histogram;

/// One channel's figures.
#[derive(Clone, Debug, Default)]
pub struct ChannelFigures {
    pub number: u32,
    /// The network camera bound now ("" when idle).
    pub camera: String,
    pub connected: bool,
    /// The writer records this channel now (`recording.state == "recording"`).
    pub recording: bool,
    pub frames: u64,
    pub bytes: u64,
    pub reconnects: u64,
    pub dropped_frames: u64,
    pub key_frame_requests: u64,
    pub frames_written: u64,
    pub bytes_written: u64,
    pub segments_written: u64,
    pub frames_lost: u64,
    pub live_viewers: u64,
}

/// A failover rule: its name and whether it is in `failure`.
#[derive(Clone, Debug, Default)]
pub struct RuleFigures {
    pub name: String,
    pub failure: bool,
}

/// Everything one scrape reports.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub channels: Vec<ChannelFigures>,
    pub buffer_capacity_bytes: u64,
    pub buffer_used_bytes: u64,
    pub buffer_queued_frames: u64,
    pub buffer_dropped_frames: u64,
    pub buffer_slow_episodes: u64,
    pub fsyncs: u64,
    pub fsync_bytes: u64,
    pub fsync_errors: u64,
    pub retention_segments: u64,
    pub retention_bytes: u64,
    /// Each flush round's fdatasyncs.
    pub flush: Histogram,
    /// Frame capture → durable.
    pub durable: Histogram,
    pub disk_free_bytes: Option<u64>,
    pub rules: Vec<RuleFigures>,
    /// Failback transfers by state (`queued`, `running`, `done`, …) and the
    /// bytes they sent.
    pub transfers: Vec<(String, u64)>,
    pub transfer_bytes: u64,
    /// The most recent gap fill jobs (`gapfill::LIST_LIMIT`) by state.
    pub gapfill_jobs: Vec<(String, u64)>,
    pub live_viewers: u64,
    pub uptime_seconds: f64,
}

/// The scrape in the Prometheus text format (version 0.0.4 compatible
/// OpenMetrics text, `# EOF` terminated).
pub fn render(scrape: Scrape) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("tandem");
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(64 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

type Labels<'a> = [(&'static str, &'a str); 2];

impl Scrape {
    fn per_channel(
        &self,
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        counter: bool,
        f: impl Fn(&ChannelFigures) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let kind = if counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let mut m = e.encode_descriptor(name, help, None, kind)?;
        for c in &self.channels {
            let number = c.number.to_string();
            let labels: Labels = [("channel", &number), ("camera", &c.camera)];
            let fam = m.encode_family(&labels)?;
            if counter {
                ConstCounter::new(f(c)).encode(fam)?;
            } else {
                ConstGauge::new(f(c) as i64).encode(fam)?;
            }
        }
        Ok(())
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count(), &h.seconds_buckets(), None)
}

/// A gauge per value of one label (`state`, `rule`).
fn by_label(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (k, v) in values {
        let labels = [(label, k.as_str())];
        ConstGauge::new(*v as i64).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut e;
        self.per_channel(e, "channel_frames", "Frames received from the camera", true, |c| {
            c.frames
        })?;
        self.per_channel(
            e,
            "channel_bytes",
            "Bytes of video received from the camera",
            true,
            |c| c.bytes,
        )?;
        self.per_channel(e, "channel_reconnects", "RTSP sessions restarted", true, |c| {
            c.reconnects
        })?;
        self.per_channel(
            e,
            "channel_dropped_frames",
            "Frames dropped because the write buffer was full",
            true,
            |c| c.dropped_frames,
        )?;
        self.per_channel(
            e,
            "channel_key_frame_requests",
            "RTCP key frame requests sent to the camera",
            true,
            |c| c.key_frame_requests,
        )?;
        self.per_channel(e, "channel_frames_written", "Frames stored", true, |c| c.frames_written)?;
        self.per_channel(e, "channel_bytes_written", "Bytes stored", true, |c| c.bytes_written)?;
        self.per_channel(e, "channel_segments_written", "Segments stored", true, |c| {
            c.segments_written
        })?;
        self.per_channel(
            e,
            "channel_frames_lost",
            "Frames written and then lost to a failed fsync",
            true,
            |c| c.frames_lost,
        )?;
        self.per_channel(
            e,
            "channel_connected",
            "1 while the camera's session delivers video",
            false,
            |c| u64::from(c.connected),
        )?;
        self.per_channel(e, "channel_recording", "1 while the channel is recorded", false, |c| {
            u64::from(c.recording)
        })?;
        self.per_channel(
            e,
            "channel_live_viewers",
            "Live viewers of the channel now",
            false,
            |c| c.live_viewers,
        )?;
        gauge(
            e,
            "write_buffer_capacity_bytes",
            "The write buffer's bound",
            self.buffer_capacity_bytes as i64,
        )?;
        gauge(
            e,
            "write_buffer_used_bytes",
            "Bytes waiting for the writer",
            self.buffer_used_bytes as i64,
        )?;
        gauge(
            e,
            "write_buffer_queued_frames",
            "Frames waiting for the writer",
            self.buffer_queued_frames as i64,
        )?;
        counter(
            e,
            "write_buffer_dropped_frames",
            "Frames refused because the write buffer was full",
            self.buffer_dropped_frames,
        )?;
        counter(
            e,
            "write_buffer_slow_episodes",
            "Times the writer fell behind",
            self.buffer_slow_episodes,
        )?;
        counter(e, "fsyncs", "fdatasyncs of segment files that succeeded", self.fsyncs)?;
        counter(
            e,
            "fsync_bytes",
            "Bytes those fdatasyncs made durable",
            self.fsync_bytes,
        )?;
        counter(e, "fsync_errors", "fdatasyncs that failed", self.fsync_errors)?;
        counter(
            e,
            "retention_deleted_segments",
            "Segments retention deleted",
            self.retention_segments,
        )?;
        counter(
            e,
            "retention_deleted_bytes",
            "Bytes of the segment files retention deleted",
            self.retention_bytes,
        )?;
        histogram(
            e,
            "flush_seconds",
            "How long each flush round's fdatasyncs took",
            &self.flush,
        )?;
        histogram(
            e,
            "frame_durable_seconds",
            "From a frame's capture to the fdatasync that made it durable",
            &self.durable,
        )?;
        if let Some(free) = self.disk_free_bytes {
            gauge(e, "disk_free_bytes", "Free bytes on the storage volume", free as i64)?;
        }
        let rules: Vec<(String, u64)> = self
            .rules
            .iter()
            .map(|r| (r.name.clone(), u64::from(r.failure)))
            .collect();
        by_label(
            e,
            "rule_failure",
            "1 while the failover rule is in failure",
            "rule",
            &rules,
        )?;
        by_label(e, "transfers", "Failback transfers by state", "state", &self.transfers)?;
        counter(
            e,
            "transfer_bytes",
            "Bytes the failback transfers sent",
            self.transfer_bytes,
        )?;
        by_label(
            e,
            "gapfill_jobs",
            "The most recent gap fill jobs by state",
            "state",
            &self.gapfill_jobs,
        )?;
        gauge(
            e,
            "live_viewers",
            "Live viewers now, all channels",
            self.live_viewers as i64,
        )?;
        let up = prometheus_client::metrics::gauge::ConstGauge::new(self.uptime_seconds);
        up.encode(e.encode_descriptor(
            "uptime_seconds",
            "Seconds since the NVR started",
            None,
            up.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(channels: u32) -> Scrape {
        let mut durable = Histogram::default();
        durable.record_ms(400);
        durable.record_ms(1200);
        Scrape {
            channels: (1..=channels)
                .map(|n| ChannelFigures {
                    number: n,
                    camera: format!("cam \"{n}\""),
                    connected: n % 2 == 1,
                    recording: true,
                    frames: 1000 + u64::from(n),
                    ..Default::default()
                })
                .collect(),
            durable,
            disk_free_bytes: Some(5_000_000),
            rules: vec![RuleFigures {
                name: "watch-a".into(),
                failure: true,
            }],
            transfers: vec![("done".into(), 2)],
            ..Default::default()
        }
    }

    #[test]
    fn families_carry_their_channels_and_types() {
        let text = render(scrape(2)).unwrap();
        assert!(text.contains("# TYPE tandem_channel_frames counter"), "{text}");
        // Label values are escaped: a camera name cannot break the format.
        assert!(
            text.contains(r#"tandem_channel_frames_total{channel="1",camera="cam \"1\""} 1001"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tandem_channel_connected{channel="2",camera="cam \"2\""} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"tandem_rule_failure{rule="watch-a"} 1"#), "{text}");
        assert!(text.contains(r#"tandem_transfers{state="done"} 2"#), "{text}");
        assert!(text.contains("tandem_disk_free_bytes 5000000"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let text = render(scrape(1)).unwrap();
        assert!(text.contains("tandem_frame_durable_seconds_sum 1.6"), "{text}");
        assert!(text.contains("tandem_frame_durable_seconds_count 2"), "{text}");
        assert!(
            text.contains(r#"tandem_frame_durable_seconds_bucket{le="0.4"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tandem_frame_durable_seconds_bucket{le="1.2"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tandem_frame_durable_seconds_bucket{le="+Inf"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn every_channel_appears_once_per_family() {
        let text = render(scrape(256)).unwrap();
        let lines = text
            .lines()
            .filter(|l| l.starts_with("tandem_channel_frames_total{"))
            .count();
        assert_eq!(lines, 256);
    }
}
