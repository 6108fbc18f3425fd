//! The event gate: per channel, decides which arriving frames are written,
//! holding the pre-event buffer in memory.
//!
//! Pure: frames, trigger starts and stops, and the current mode go in; frames
//! to write (in order, each marked whether it lies in an event window) come
//! out. The writer thread owns one gate per channel.
//!
//! Invariants:
//! - Output for a channel is in arrival order and begins at a key frame after
//!   every pause, so every stored run decodes from its first frame.
//! - In `events` mode an event starting at `s` writes from the key frame at or
//!   before `s − pre` (as far back as the buffer reaches) up to and including
//!   the last frame at or before `last end + post`, capped at `max_len` after
//!   the window's first frame.
//! - The buffer holds at most `buffer_limit` bytes; beyond that whole GOPs are
//!   dropped from its front (counted in `stats`), never partial ones.
//!
//! Must never do I/O.

use std::collections::{BTreeMap, VecDeque};

use super::schedule::Mode;
use crate::media::Frame;
use crate::time::Time90k;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPolicy {
    /// Footage kept from before an event starts (90 kHz ticks).
    pub pre: i64,
    /// Footage kept after the last event of a window ends.
    pub post: i64,
    /// The longest one event window may run.
    pub max_len: i64,
    /// Memory the pre-event buffer may use.
    pub buffer_limit: usize,
}

pub const SEC: i64 = 90_000;

impl Default for EventPolicy {
    /// The seed's example policy: 30 s before, 2 minutes after.
    fn default() -> Self {
        EventPolicy {
            pre: 30 * SEC,
            post: 120 * SEC,
            max_len: 30 * 60 * SEC,
            buffer_limit: 64 << 20,
        }
    }
}

/// Counters the API shows for one channel's gate.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GateStats {
    pub mode: Option<&'static str>,
    pub buffer_bytes: usize,
    pub buffer_frames: usize,
    /// Seconds of footage the buffer holds now.
    pub buffer_seconds: f64,
    pub buffer_limit_bytes: usize,
    /// GOPs dropped from the buffer's front because of `buffer_limit`.
    pub buffer_overflows: u64,
    pub in_event: bool,
    pub event_windows: u64,
    pub capped_windows: u64,
}

#[derive(Debug)]
struct Window {
    /// Time of the window's first frame.
    start: Time90k,
    /// Write up to here once no trigger is open; `None` while one is.
    until: Option<Time90k>,
    /// Opened with no key frame buffered (just after a pause): frames are
    /// skipped until one arrives, so the written run decodes.
    awaiting_key: bool,
}

/// A frame to write, and whether it lies in an event window.
pub type Output = (Frame, bool);

pub struct Gate {
    policy: EventPolicy,
    buf: VecDeque<Frame>,
    buf_bytes: usize,
    /// Open triggers by source key, with their start times.
    open: BTreeMap<String, Time90k>,
    /// The latest end of a trigger stopped while the window was open.
    last_end: Option<Time90k>,
    window: Option<Window>,
    /// Triggers started during a window that hit `max_len` wait for a stop.
    capped: bool,
    pub stats: GateStats,
}

impl Gate {
    pub fn new(policy: EventPolicy) -> Gate {
        Gate {
            policy,
            buf: VecDeque::new(),
            buf_bytes: 0,
            open: BTreeMap::new(),
            last_end: None,
            window: None,
            capped: false,
            stats: GateStats {
                buffer_limit_bytes: policy.buffer_limit,
                ..Default::default()
            },
        }
    }

    /// Takes a new policy (live apply); the buffer and open window stay, and
    /// a smaller `buffer_limit` trims the buffer at the next frame.
    pub fn set_policy(&mut self, policy: EventPolicy) {
        self.policy = policy;
        self.stats.buffer_limit_bytes = policy.buffer_limit;
    }

    /// Where the open window's footage begins (for `continuous+events`, the
    /// already-written footage from `event − pre` on).
    pub fn window_start(&self) -> Option<Time90k> {
        self.window.as_ref().map(|w| w.start)
    }

    /// A trigger (motion, a door contact, …) started at `time`.
    pub fn start(&mut self, key: &str, time: Time90k, mode: Mode, out: &mut Vec<Output>) {
        self.open.insert(key.to_string(), time);
        if self.capped {
            return;
        }
        match &mut self.window {
            Some(w) => w.until = None,
            None => self.open_window(time, mode, out),
        }
    }

    /// The trigger `key` ended at `time`. Unknown keys are ignored.
    pub fn stop(&mut self, key: &str, time: Time90k) {
        if self.open.remove(key).is_none() {
            return;
        }
        self.last_end = Some(self.last_end.map_or(time, |e| e.max(time)));
        if self.open.is_empty() {
            self.capped = false;
            let end = self.last_end.unwrap_or(time);
            if let Some(w) = &mut self.window {
                w.until = Some(end + self.policy.post);
            }
        }
    }

    fn open_window(&mut self, time: Time90k, mode: Mode, out: &mut Vec<Output>) {
        let from = time + -self.policy.pre;
        self.stats.event_windows += 1;
        self.last_end = None;
        match mode {
            Mode::Events => {
                // The last key frame at or before `from`, else the oldest held.
                let i = self
                    .buf
                    .iter()
                    .rposition(|f| f.key && f.time <= from)
                    .or_else(|| self.buf.iter().position(|f| f.key));
                let start = i.map(|i| self.buf[i].time).unwrap_or(time);
                if let Some(i) = i {
                    self.drop_front(i);
                }
                self.window = Some(Window {
                    start,
                    until: None,
                    awaiting_key: i.is_none(),
                });
                self.buf_bytes = 0;
                out.extend(self.buf.drain(..).map(|f| (f, true)));
            }
            Mode::ContinuousEvents => {
                self.window = Some(Window {
                    start: from,
                    until: None,
                    awaiting_key: false,
                });
            }
            Mode::Continuous | Mode::Off => {}
        }
        self.update_stats(mode);
    }

    /// Whether a frame at `t` lies in the open window; closes the window
    /// when `t` is past its end or its cap.
    fn admits(&mut self, t: Time90k) -> bool {
        let Some(w) = &self.window else { return false };
        let over_post = w.until.is_some_and(|u| t > u);
        let over_cap = t - w.start > self.policy.max_len;
        if over_post || over_cap {
            if over_cap && !over_post {
                self.stats.capped_windows += 1;
                // Triggers still open may not reopen a window until they stop.
                self.capped = !self.open.is_empty();
            }
            self.window = None;
            self.last_end = None;
            return false;
        }
        true
    }

    /// A window is due when a trigger is open (it may have started under
    /// another mode, or before a capped window).
    fn reopen_if_due(&mut self, mode: Mode, out: &mut Vec<Output>) {
        if self.window.is_none() && !self.capped {
            if let Some(t) = self.open.values().min().copied() {
                self.open_window(t, mode, out);
            }
        }
    }

    /// Decides about one arriving frame under `mode`.
    pub fn frame(&mut self, f: Frame, mode: Mode, out: &mut Vec<Output>) {
        match mode {
            Mode::Off | Mode::Continuous => {
                self.clear_buffer();
                self.window = None;
                if mode == Mode::Continuous {
                    out.push((f, false));
                }
            }
            Mode::ContinuousEvents => {
                self.clear_buffer();
                self.reopen_if_due(mode, out);
                let in_window = self.admits(f.time);
                out.push((f, in_window));
            }
            Mode::Events => {
                self.reopen_if_due(mode, out);
                if self.admits(f.time) {
                    let w = self.window.as_mut().expect("admits implies a window");
                    if w.awaiting_key && f.key {
                        w.awaiting_key = false;
                    }
                    if !w.awaiting_key {
                        out.push((f, true));
                    }
                } else if f.key || !self.buf.is_empty() {
                    self.push_buffer(f);
                }
            }
        }
        self.update_stats(mode);
    }

    fn push_buffer(&mut self, f: Frame) {
        let now = f.time;
        self.buf_bytes += f.data.len();
        self.buf.push_back(f);
        // Keep from the newest key frame at or before now − pre.
        let horizon = now + -self.policy.pre;
        if let Some(i) = self.buf.iter().rposition(|f| f.key && f.time <= horizon) {
            self.drop_front(i);
        }
        while self.buf_bytes > self.policy.buffer_limit {
            // Drop the oldest GOP whole; never leave a buffer that starts mid-GOP.
            let next_key = self.buf.iter().skip(1).position(|f| f.key).map(|i| i + 1);
            self.stats.buffer_overflows += 1;
            match next_key {
                Some(i) => self.drop_front(i),
                None => {
                    self.clear_buffer();
                    break;
                }
            }
        }
    }

    fn drop_front(&mut self, n: usize) {
        for f in self.buf.drain(..n) {
            self.buf_bytes -= f.data.len();
        }
    }

    fn clear_buffer(&mut self) {
        self.buf.clear();
        self.buf_bytes = 0;
    }

    fn update_stats(&mut self, mode: Mode) {
        let s = &mut self.stats;
        s.mode = Some(mode.as_str());
        s.buffer_bytes = self.buf_bytes;
        s.buffer_frames = self.buf.len();
        s.buffer_seconds = match (self.buf.front(), self.buf.back()) {
            (Some(a), Some(b)) => (b.time - a.time) as f64 / SEC as f64,
            _ => 0.0,
        };
        s.in_event = self.window.is_some();
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
