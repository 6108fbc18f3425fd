//! What the failover agent may ask of the NVR: bind a channel, record an
//! event, queue a failback transfer, request a gap fill, and read the few
//! settings and figures it decides with. The agent sees only this trait, so
//! it does not import `Nvr` (no import circle) and can be driven by a test
//! double; `Nvr`'s implementation is here too.
//!
//! Must never expose the NVR's locks or its store to the agent, and no
//! method may block the runtime (binding is synchronous and quick; transfer
//! queueing runs its SQL on the blocking pool).

use futures::future::BoxFuture;

use super::capacity::Priority;
use super::transfer::Job;
use crate::httpc::PeerTrust;
use crate::ingest::IngestHandle;
use crate::nvr::Nvr;
use crate::time::Time90k;

/// Sessions a binding replaced: stop them after leaving any lock.
#[must_use = "the replaced sessions must be stopped"]
pub struct Replaced(Vec<IngestHandle>);

impl Replaced {
    pub async fn stop(self) {
        for h in self.0 {
            h.stop().await;
        }
    }
}

pub trait NvrHandle: Send + Sync + 'static {
    /// This NVR's clock (the lab may offset it).
    fn now(&self) -> Time90k;
    /// Binds `channel` to the network camera (or to nothing) at once;
    /// recording follows. Returns the sessions to stop.
    fn bind(&self, channel: u32, camera: Option<&str>) -> anyhow::Result<Replaced>;
    /// Records an event in the event log (never blocks).
    fn record_event(&self, channel: Option<u32>, kind: &'static str, details: serde_json::Value);
    /// Stores a failback transfer owed to a peer and wakes the sender.
    fn queue_transfer(&self, job: Job) -> BoxFuture<'_, ()>;
    /// Asks gap fill for `channel`'s footage from `start` to `end` (this
    /// NVR's clock): the lead-in a takeover missed.
    fn fill_gap(&self, channel: u32, start: Time90k, end: Time90k);
    /// The token peers share, sent with probes.
    fn peer_token(&self) -> Option<String>;
    /// How a peer's TLS certificate is checked.
    fn peer_trust(&self) -> Option<PeerTrust>;
    /// Every network camera's priority and measured bitrate (Mbit/s) when
    /// this NVR records it now.
    fn cameras(&self) -> Vec<(String, Priority, Option<f64>)>;
    /// This NVR's HTTP port and whether it speaks HTTPS, for peers to call.
    fn listener(&self) -> (u16, bool);
}

impl NvrHandle for Nvr {
    fn now(&self) -> Time90k {
        self.clock.now()
    }

    fn bind(&self, channel: u32, camera: Option<&str>) -> anyhow::Result<Replaced> {
        let (main, sub) = self.bind_now(channel, camera)?;
        Ok(Replaced([main, sub].into_iter().flatten().collect()))
    }

    fn record_event(&self, channel: Option<u32>, kind: &'static str, details: serde_json::Value) {
        Nvr::record_event(self, channel, kind, details)
    }

    fn queue_transfer(&self, job: Job) -> BoxFuture<'_, ()> {
        Box::pin(Nvr::queue_transfer(self, job))
    }

    fn fill_gap(&self, channel: u32, start: Time90k, end: Time90k) {
        tracing::debug!(
            channel,
            start = %start.to_rfc3339(),
            end = %end.to_rfc3339(),
            "takeover lead-in asked of gap fill"
        );
        self.gapfill
            .request(channel, start, end, crate::gapfill::Reason::Takeover);
    }

    fn peer_token(&self) -> Option<String> {
        self.config().failover.peer_token.clone()
    }

    fn peer_trust(&self) -> Option<PeerTrust> {
        self.config().failover.peer_trust.clone()
    }

    fn listener(&self) -> (u16, bool) {
        let c = self.config();
        (c.listen.port(), c.is_tls())
    }

    fn cameras(&self) -> Vec<(String, Priority, Option<f64>)> {
        let views = self.channel_views();
        self.config()
            .cameras
            .iter()
            .map(|c| {
                let measured = views
                    .iter()
                    .filter(|v| v.binding.as_deref() == Some(c.name.as_str()) && v.ingest.bitrate_kbps > 0.0)
                    .map(|v| v.ingest.bitrate_kbps / 1000.0)
                    .reduce(f64::max);
                (c.name.clone(), c.priority, measured)
            })
            .collect()
    }
}
