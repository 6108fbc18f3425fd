//! The writer's side of recording policy and events: runs each arriving frame
//! through the channel's schedule and event gate, marks footage in event
//! windows, and stores events before announcing them.
//!
//! Must never block on an action: notices are offered with `try_send`, and a
//! full queue drops the notice (logged), never a frame.

use std::collections::HashMap;

use tracing::{info, warn};

use super::db;
use super::writer::Writer;
use crate::events::{Edge, Notice, Phase};
use crate::media::Frame;
use crate::recording::{Gate, GateStats, Mode};
use crate::time::Time90k;

const MINUTE: i64 = 60 * 90_000;
/// Events with duration a channel may have open at once; outside sources
/// (each HTTP `source`, each MQTT topic) cannot grow the writer's memory past it.
pub(super) const MAX_OPEN_EVENTS: usize = 256;
/// Event rows and notices waiting for the next commit; if the index cannot be
/// written for that long (a full disk), the oldest are dropped, logged.
const MAX_PENDING: usize = 16_384;

/// Events stored since the last commit: their rows are written in the next
/// flush's transaction, or on their own at most every 100 ms (`writer::EVENT_COMMIT`),
/// and their notices sent after it commits ("stored, then announced"). Ids are handed out here — the writer is the only thread that
/// inserts events — so a start's id is known before its row is written.
pub(super) struct EventLog {
    next_id: i64,
    ops: Vec<db::EventOp>,
    notices: Vec<Notice>,
    /// Rows dropped because the index could not be written for too long.
    pub dropped: u64,
}

impl EventLog {
    pub(super) fn new(conn: &rusqlite::Connection) -> rusqlite::Result<EventLog> {
        Ok(EventLog {
            next_id: db::next_event_id(conn)?,
            ops: Vec::new(),
            notices: Vec::new(),
            dropped: 0,
        })
    }

    fn insert(
        &mut self,
        channel: Option<u32>,
        kind: &str,
        start: Time90k,
        end: Option<Time90k>,
        details: serde_json::Value,
    ) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.push(db::EventOp::Insert {
            id,
            channel,
            kind: kind.to_string(),
            start,
            end,
            details,
        });
        id
    }

    fn end(&mut self, id: i64, end: Time90k, details: Option<serde_json::Value>) {
        self.push(db::EventOp::End { id, end, details });
    }

    fn push(&mut self, op: db::EventOp) {
        if self.ops.len() >= MAX_PENDING {
            let n = MAX_PENDING / 2;
            self.ops.drain(..n);
            self.dropped += n as u64;
            warn!(
                dropped = n,
                "the index has not been writable for a while; dropped the oldest unsaved events"
            );
        }
        self.ops.push(op);
    }

    fn announce(&mut self, n: Notice) {
        if self.notices.len() >= MAX_PENDING {
            self.notices.drain(..MAX_PENDING / 2);
        }
        self.notices.push(n);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.notices.is_empty()
    }

    /// The rows to write in this flush's transaction.
    pub(super) fn ops(&self) -> &[db::EventOp] {
        &self.ops
    }

    /// The flush committed: forget the rows, hand out the notices.
    pub(super) fn committed(&mut self) -> Vec<Notice> {
        self.ops.clear();
        std::mem::take(&mut self.notices)
    }
}

/// Per-channel policy state held by the writer.
pub(super) struct ChannelPolicy {
    gate: Gate,
    /// The mode for one minute of time (schedules have minute resolution).
    mode_cache: Option<(i64, Mode)>,
    /// Frames written are in an event window.
    in_window: bool,
    window_start: Time90k,
    /// A window just closed: start a new segment at the next key frame so
    /// that continuous footage after it is not kept as event footage.
    cut_at_key: bool,
    /// Stored event rows of events that have started and not ended.
    open_events: HashMap<String, (i64, Time90k)>,
    /// Frames since the gate's statistics were last published.
    unpublished: u32,
    /// Trigger edges not yet applied to the gate: each is applied just before
    /// the first frame at or after its time, so a trigger takes effect at its
    /// place in the channel's timeline however the two queues interleave.
    pending_triggers: std::collections::VecDeque<Edge>,
}

pub type GateStatsMap = std::sync::Arc<std::sync::Mutex<HashMap<u32, GateStats>>>;

impl Writer {
    fn policy_state(&mut self, ch: u32) -> &mut ChannelPolicy {
        let cfg = &self.cfg.recording;
        self.policy.entry(ch).or_insert_with(|| ChannelPolicy {
            gate: Gate::new(cfg.get(&ch).map(|p| p.events).unwrap_or_default()),
            mode_cache: None,
            in_window: false,
            window_start: Time90k(0),
            cut_at_key: false,
            open_events: HashMap::new(),
            unpublished: 0,
            pending_triggers: Default::default(),
        })
    }

    /// Takes a channel's new recording policy and retention (live apply):
    /// the gate keeps its buffer and open triggers, the schedule is read
    /// afresh at the next frame.
    pub(super) fn set_policy(
        &mut self,
        ch: u32,
        recording: crate::recording::RecordingPolicy,
        retention: crate::store::retention::RetentionPolicy,
    ) {
        info!(channel = ch, "recording policy and retention updated");
        if let Some(st) = self.policy.get_mut(&ch) {
            st.gate.set_policy(recording.events);
            st.mode_cache = None;
        }
        self.cfg.recording.insert(ch, recording);
        self.cfg.policies.insert(ch, retention);
    }

    fn mode_at(&mut self, ch: u32, t: Time90k) -> Mode {
        let minute = t.0.div_euclid(MINUTE);
        if let Some((m, mode)) = self.policy_state(ch).mode_cache {
            if m == minute {
                return mode;
            }
        }
        // A channel without a policy records continuously (RecordingPolicy's default).
        let mode = self
            .cfg
            .recording
            .get(&ch)
            .map_or(Mode::Continuous, |p| p.schedule.mode_at(t));
        let st = self.policy_state(ch);
        if st.mode_cache.is_some_and(|(_, old)| old != mode) {
            info!(channel = ch, mode = mode.as_str(), "recording mode changed by schedule");
        }
        st.mode_cache = Some((minute, mode));
        mode
    }

    /// Runs a frame from ingest through the channel's policy.
    pub(super) fn on_frame(&mut self, f: Frame) {
        let ch = f.channel;
        self.apply_triggers(ch, Some(f.time));
        let mode = self.mode_at(ch, f.time);
        let mut out = std::mem::take(&mut self.gate_out);
        self.policy_state(ch).gate.frame(f, mode, &mut out);
        if out.is_empty() {
            // Nothing written: the run of written frames, if any, has ended.
            self.end_run(ch);
        }
        self.write_gated(ch, &mut out);
        self.gate_out = out;
        // The API reads these a few times a second at most; spare the lock
        // and copy on every frame of every channel (window changes publish
        // at once, in `follow_window`).
        let st = self.policy_state(ch);
        st.unpublished += 1;
        if st.unpublished >= 16 {
            self.publish_gate_stats(ch);
        }
    }

    /// Brings the writer's view of the event window in line with the gate's,
    /// before the gate's output is written: an opening window marks the
    /// footage it reaches back over; a closing one cuts the segment at the
    /// next key frame so continuous footage after it stays unmarked.
    fn follow_window(&mut self, ch: u32) {
        let st = self.policy_state(ch);
        match (st.gate.window_start(), st.in_window) {
            (Some(start), false) => {
                st.in_window = true;
                st.window_start = start;
                info!(channel = ch, %start, "event recording started");
                self.mark_event_footage(ch, start);
            }
            (None, true) => {
                st.in_window = false;
                st.cut_at_key = true;
                info!(channel = ch, "event recording ended");
            }
            _ => return,
        }
        self.publish_gate_stats(ch);
    }

    /// Marks the footage of an event window from `start` on, durably: a
    /// mark a power cut undid would leave the event's footage to the
    /// shorter retention of continuous footage.
    fn mark_event_footage(&self, ch: u32, start: Time90k) {
        let segments = self.unsettled_reaching(ch, start);
        if let Err(e) = db::synced(self.conn(), || {
            db::mark_event_footage(self.conn(), ch, start, &segments)
        }) {
            warn!(channel = ch, "cannot mark event footage: {e}");
        }
    }

    fn write_gated(&mut self, ch: u32, out: &mut Vec<(Frame, bool)>) {
        self.follow_window(ch);
        for (f, in_window) in out.drain(..) {
            let st = self.policy_state(ch);
            if st.cut_at_key && f.key {
                st.cut_at_key = false;
                self.close_at(ch, f.time);
            }
            // A segment that starts inside a window is event footage too.
            if self.record(f) && in_window {
                let start = self.policy_state(ch).window_start;
                self.mark_event_footage(ch, start);
            }
        }
    }

    /// The channel's segments whose rows wait for a flush round (the open
    /// one, and closed ones not yet completed) that reach past `start`.
    fn unsettled_reaching(&self, ch: u32, start: Time90k) -> Vec<i64> {
        let open = self.channels.get(&ch).and_then(|st| st.open.as_ref());
        let closing = self.closing.iter().filter(|(c, _)| *c == ch).map(|(_, o)| o);
        open.into_iter()
            .chain(closing)
            .filter(|o| o.end() > start)
            .map(|o| o.id)
            .collect()
    }

    fn publish_gate_stats(&mut self, ch: u32) {
        let st = self.policy_state(ch);
        st.unpublished = 0;
        let stats = st.gate.stats.clone();
        if let Ok(mut m) = self.gate_stats.lock() {
            m.insert(ch, stats);
        }
    }

    /// Stores an event with duration's start or end, feeds the gate, and
    /// announces it once stored (at the next commit, batched with others:
    /// never one commit per event).
    pub(super) fn on_edge(&mut self, e: Edge) {
        let ch = e.channel;
        let (id, start, end) = if e.start {
            let id = self
                .event_log
                .insert(Some(ch), &e.kind, e.time, None, e.details.clone());
            let st = self.policy_state(ch);
            // A start without an end (the source restarted) is closed here.
            let replaced = st.open_events.insert(e.key.clone(), (id, e.time));
            // Bound what outside sources can hold open: past the cap, the
            // oldest open event of the channel ends now.
            let evicted = if st.open_events.len() > MAX_OPEN_EVENTS {
                let oldest = st
                    .open_events
                    .iter()
                    .filter(|(k, _)| **k != e.key)
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone());
                oldest.and_then(|k| st.open_events.remove(&k).map(|v| (k, v)))
            } else {
                None
            };
            if let Some((old, t)) = replaced {
                self.event_log.end(old, t.max(e.time), None);
            }
            if let Some((key, (old, t))) = evicted {
                let msg = "too many open events on a channel; the oldest are ended";
                if let Some(n) = self.repeated.check(msg, std::time::Instant::now()) {
                    warn!(channel = ch, key = %crate::excerpt::short(&key), repeats_since_last_line = n, "{msg}");
                }
                self.policy_state(ch).gate.stop(&key, e.time);
                self.event_log.end(
                    old,
                    t.max(e.time),
                    Some(serde_json::json!({ "ended": "too many open events" })),
                );
            }
            (id, e.time, None)
        } else {
            match self.policy_state(ch).open_events.remove(&e.key) {
                Some((id, start)) => {
                    let end = e.time.max(start);
                    self.event_log.end(id, end, Some(e.details.clone()));
                    (id, start, Some(end))
                }
                // An end whose start this process never saw: nothing to close.
                None => return,
            }
        };
        info!(channel = ch, kind = e.kind, id, start = e.start, "event");
        let notice = Notice {
            id,
            channel: Some(ch),
            kind: e.kind.clone(),
            phase: if e.start { Phase::Start } else { Phase::End },
            start,
            end,
            details: e.details.clone(),
        };
        if e.trigger {
            let st = self.policy_state(ch);
            st.pending_triggers.push_back(e);
            if st.pending_triggers.len() > MAX_OPEN_EVENTS {
                // A channel whose frames stopped cannot hold triggers forever.
                self.apply_one_trigger(ch);
            }
        }
        self.event_log.announce(notice);
    }

    /// Applies the channel's pending triggers dated at or before `until`
    /// (all of them for `None`).
    pub(super) fn apply_triggers(&mut self, ch: u32, until: Option<Time90k>) {
        while let Some(t) = self
            .policy
            .get(&ch)
            .and_then(|p| p.pending_triggers.front())
            .map(|e| e.time)
        {
            if until.is_some_and(|u| t > u) {
                break;
            }
            self.apply_one_trigger(ch);
        }
    }

    /// Triggers of channels that receive no frames are applied once their
    /// time has passed by `grace` (they start nothing, but they must not pile up).
    pub(super) fn apply_stale_triggers(&mut self, now: Time90k, grace: i64) {
        let chans: Vec<u32> = self.policy.keys().copied().collect();
        for ch in chans {
            self.apply_triggers(ch, Some(now + -grace));
        }
    }

    fn apply_one_trigger(&mut self, ch: u32) {
        let Some(e) = self.policy_state(ch).pending_triggers.pop_front() else {
            return;
        };
        let mode = self.mode_at(ch, e.time);
        let mut out = std::mem::take(&mut self.gate_out);
        let gate = &mut self.policy_state(ch).gate;
        if e.start {
            gate.start(&e.key, e.time, mode, &mut out);
        } else {
            gate.stop(&e.key, e.time);
        }
        self.write_gated(ch, &mut out);
        self.gate_out = out;
        self.publish_gate_stats(ch);
    }

    /// Offers a notice to the action dispatcher, if there is one.
    pub(super) fn notify(&self, n: Notice) {
        if let Some(tx) = &self.notifier {
            if let Err(e) = tx.try_send(n) {
                warn!("event actions are behind; a notice was dropped: {e}");
            }
        }
    }

    /// Stores an instant event and announces it (at the next commit).
    pub(super) fn event(&mut self, channel: Option<u32>, kind: &str, time: Time90k, details: serde_json::Value) {
        let id = self.event_log.insert(channel, kind, time, Some(time), details.clone());
        self.event_log.announce(Notice {
            id,
            channel,
            kind: kind.to_string(),
            phase: Phase::Instant,
            start: time,
            end: Some(time),
            details,
        });
    }
}
