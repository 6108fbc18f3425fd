//! The MQTT connection: subscription triggers in, event announcements out.
//!
//! One client per NVR. Incoming publishes on a trigger's topic become event
//! edges for the store writer; outgoing, every event is published as JSON to
//! `{prefix}/{nvr}/events`, start/end events drive retained `ON`/`OFF` state
//! topics `{prefix}/{nvr}/channel/{n}/{type}`, and Home Assistant discovery
//! configs make those binary sensors appear by themselves. The broker's
//! availability topic carries `online`/`offline` (the latter as last will).
//!
//! Must never block the dispatcher or a trigger on a broker that is down:
//! publishes are offered to the client's queue without waiting.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tracing::{info, warn};

use super::{Edge, Notice, Phase};
use crate::config::{MqttConfig, TriggerConfig};
use crate::store::{Command, WriterTx};
use crate::time::Clock;

#[derive(Clone)]
pub struct Mqtt {
    client: AsyncClient,
    nvr_id: String,
    /// `{prefix}/{nvr}`.
    base: String,
    /// Ends the connection task (`stop`), when a live apply replaces this client.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Why there is no connection at all (the TLS files could not be
    /// used): what a publish reports instead of a queue error.
    broken: Option<Arc<str>>,
}

/// The largest snapshot published on a channel's `snapshot` topic.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024;

/// What the NVR announces sensors for in Home Assistant: (channel, type).
pub type Sensors = Vec<(u32, String)>;

impl Mqtt {
    /// Connects (in the background, reconnecting forever) and starts handling
    /// triggers.
    pub fn start(
        cfg: &MqttConfig,
        nvr_id: &str,
        triggers: Vec<TriggerConfig>,
        sensors: Sensors,
        writer: WriterTx,
        clock: Arc<dyn Clock>,
    ) -> Mqtt {
        let base = format!("{}/{nvr_id}", cfg.topic_prefix);
        let id = cfg.client_id.clone().unwrap_or_else(|| format!("tandem-{nvr_id}"));
        let mut opts = MqttOptions::new(id, cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(10));
        // Triggers in stay small; snapshots out are JPEGs (tens to hundreds of KB).
        opts.set_max_packet_size(10 * 1024, MAX_SNAPSHOT_BYTES + 1024);
        opts.set_last_will(LastWill::new(
            format!("{base}/status"),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(u) = &cfg.username {
            opts.set_credentials(u.clone(), cfg.password.clone().unwrap_or_default());
        }
        let mut broken = None;
        if let Some(tls) = &cfg.tls {
            let pair = tls.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            match crate::alerts::trust::client_config(tls.ca_file.as_deref(), pair) {
                Ok(c) => {
                    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(c)));
                }
                Err(e) => {
                    // Never fall back to plain TCP: no connection at all.
                    tracing::error!(broker = %cfg.host, "MQTT over TLS not started: {e}");
                    broken = Some(Arc::from(format!("MQTT over TLS not started: {e}")));
                }
            }
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let me = Mqtt {
            client,
            nvr_id: nvr_id.to_string(),
            base,
            stop: Arc::new(stop),
            broken: broken.clone(),
        };
        if broken.is_some() {
            return me;
        }
        let trust = cfg
            .tls
            .as_ref()
            .map(|t| crate::alerts::trust::describe(t.ca_file.as_deref()));
        let me2 = me.clone();
        let discovery = cfg.discovery_prefix.clone();
        tokio::spawn(async move {
            let mut connected = false;
            // A refused certificate is said once, not every 2 s of retrying.
            let mut told_refusal = false;
            // Each trigger topic is rate limited like the HTTP trigger: a
            // flapping or hostile publisher costs itself, not the recording.
            let mut throttle = crate::web::throttle::Throttle::new(crate::web::TRIGGER_RATE, 1024);
            loop {
                let polled = tokio::select! {
                    p = eventloop.poll() => p,
                    _ = stopped.wait_for(|s| *s) => {
                        info!(broker = %me2.base, "MQTT client stopped: the configuration changed");
                        return;
                    }
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!(broker = %me2.base, tls = trust.is_some(), "MQTT connected");
                        connected = true;
                        told_refusal = false;
                        me2.on_connect(&triggers, &sensors, discovery.as_deref());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if !triggers.iter().any(|t| t.mqtt_topic == p.topic) {
                            continue;
                        }
                        if let Err(wait) = throttle.check(&p.topic, std::time::Instant::now()) {
                            tracing::debug!(topic = %crate::excerpt::short(&p.topic), ?wait, "MQTT trigger over its rate; message ignored");
                            continue;
                        }
                        let payload = crate::excerpt::short(String::from_utf8_lossy(&p.payload).trim());
                        for t in triggers.iter().filter(|t| t.mqtt_topic == p.topic) {
                            trigger(t, &payload, &writer, &*clock);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let text = e.to_string();
                        if let Some(t) = trust
                            .as_deref()
                            .filter(|_| crate::alerts::trust::is_certificate_error(&text))
                        {
                            if !told_refusal {
                                warn!("MQTT broker refused: certificate not trusted ({t}): {text}");
                                told_refusal = true;
                            }
                        } else if connected {
                            warn!("MQTT connection lost: {e}");
                        } else {
                            tracing::debug!("MQTT connect failed: {e}");
                        }
                        connected = false;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
        me
    }

    /// Says `offline` and ends the connection (a live apply replaced it).
    pub fn stop(&self) {
        self.offer(format!("{}/status", self.base), true, "offline");
        let _ = self.client.try_disconnect();
        self.stop.send_replace(true);
    }

    fn offer(&self, topic: String, retain: bool, payload: impl Into<Vec<u8>>) {
        // Said once when the client was not started; not once per event.
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            warn!("MQTT publish dropped: {e}");
        }
    }

    fn on_connect(&self, triggers: &[TriggerConfig], sensors: &Sensors, discovery: Option<&str>) {
        let nvr = &self.nvr_id;
        for t in triggers {
            if let Err(e) = self.client.try_subscribe(t.mqtt_topic.clone(), QoS::AtLeastOnce) {
                warn!(topic = t.mqtt_topic, "MQTT subscribe failed: {e}");
            }
        }
        self.offer(format!("{}/status", self.base), true, "online");
        let Some(prefix) = discovery else { return };
        for (ch, kind) in sensors {
            let uid = format!("tandem_{nvr}_ch{ch}_{kind}").replace('-', "_");
            let device_class = match kind.as_str() {
                "motion" => "motion",
                "door" => "door",
                _ => "problem",
            };
            let config = serde_json::json!({
                "name": format!("Channel {ch} {}", kind.replace('_', " ")),
                "unique_id": uid,
                "state_topic": format!("{}/channel/{ch}/{kind}", self.base),
                "availability_topic": format!("{}/status", self.base),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": device_class,
                "device": { "identifiers": [format!("tandem_{nvr}")], "name": format!("Tandem NVR {nvr}"), "manufacturer": "Tandem" },
            });
            self.offer(format!("{prefix}/binary_sensor/{uid}/config"), true, config.to_string());
        }
        // A camera entity per channel with sensors, showing the retained
        // picture of its latest event (`publish_snapshot`).
        let mut channels: Vec<u32> = sensors.iter().map(|(ch, _)| *ch).collect();
        channels.sort_unstable();
        channels.dedup();
        for ch in channels {
            let uid = format!("tandem_{nvr}_ch{ch}_snapshot").replace('-', "_");
            let config = serde_json::json!({
                "name": format!("Channel {ch} last event"),
                "unique_id": uid,
                "topic": format!("{}/channel/{ch}/snapshot", self.base),
                "availability_topic": format!("{}/status", self.base),
                "device": { "identifiers": [format!("tandem_{nvr}")], "name": format!("Tandem NVR {nvr}"), "manufacturer": "Tandem" },
            });
            self.offer(format!("{prefix}/camera/{uid}/config"), true, config.to_string());
        }
    }

    /// The picture of a channel's latest event, retained on
    /// `{prefix}/{nvr}/channel/{n}/snapshot` (Home Assistant's MQTT camera).
    pub fn publish_snapshot(&self, channel: u32, jpeg: Vec<u8>) {
        if jpeg.len() > MAX_SNAPSHOT_BYTES {
            warn!(
                channel,
                bytes = jpeg.len(),
                "snapshot too large for MQTT; not published"
            );
            return;
        }
        self.offer(format!("{}/channel/{channel}/snapshot", self.base), true, jpeg);
    }

    /// Retained ON/OFF state of a channel's event type.
    pub fn publish_state(&self, n: &Notice) {
        let (Some(ch), Some(state)) = (
            n.channel,
            match n.phase {
                Phase::Start => Some("ON"),
                Phase::End => Some("OFF"),
                Phase::Instant => None,
            },
        ) else {
            return;
        };
        self.offer(format!("{}/channel/{ch}/{}", self.base, n.kind), true, state);
    }

    /// The message's JSON on `{base}/events` (the `mqtt` action).
    pub async fn publish_event(&self, json: &serde_json::Value) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.to_string());
        }
        let body = json.to_string();
        let topic = format!("{}/events", self.base);
        tokio::time::timeout(
            Duration::from_secs(5),
            self.client.publish(topic, QoS::AtLeastOnce, false, body),
        )
        .await
        .map_err(|_| "MQTT client queue full (broker unreachable?)".to_string())?
        .map_err(|e| e.to_string())
    }
}

fn send(writer: &WriterTx, c: Command) {
    if let Err(e) = writer.try_send(c) {
        warn!("MQTT trigger dropped: the store is not taking events ({e})");
    }
}

/// Applies one message on a trigger topic.
fn trigger(t: &TriggerConfig, payload: &str, writer: &WriterTx, clock: &dyn Clock) {
    let now = clock.now();
    let key = format!("mqtt:{}", t.mqtt_topic);
    let details = serde_json::json!({ "source": "mqtt", "topic": t.mqtt_topic, "payload": payload });
    let edge_of = |key: String, start: bool, time| Edge {
        channel: t.channel,
        kind: t.kind.clone(),
        key,
        start,
        time,
        details: details.clone(),
        trigger: true,
    };
    let edge = |key, start, time| Command::EventEdge(edge_of(key, start, time));
    if payload == t.payload_start {
        match t.pulse {
            Some(d) => {
                let w = writer.clone();
                if let Err(e) = super::pulse(edge_of(key, true, now), d, move |e| {
                    w.try_send(Command::EventEdge(e)).map_err(|e| e.to_string())
                }) {
                    warn!(topic = t.mqtt_topic, "MQTT trigger dropped: {e}");
                }
            }
            None => send(writer, edge(key, true, now)),
        }
    } else if payload == t.payload_stop && t.pulse.is_none() {
        send(writer, edge(key, false, now));
    } else {
        warn!(
            topic = t.mqtt_topic,
            payload, "MQTT trigger: payload is neither start nor stop"
        );
    }
}
