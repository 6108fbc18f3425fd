//! Recording policy: what each channel writes, when — the weekly schedule of
//! modes and the event gate with its pre-event buffer. Both are pure; the
//! store writer applies them to every arriving frame.

pub mod gate;
pub mod schedule;

pub use gate::{EventPolicy, Gate, GateStats};
pub use schedule::{Mode, Schedule};

/// A channel's whole recording policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingPolicy {
    pub schedule: Schedule,
    pub events: EventPolicy,
}

impl Default for RecordingPolicy {
    fn default() -> Self {
        RecordingPolicy {
            schedule: Schedule::always(Mode::Continuous),
            events: EventPolicy::default(),
        }
    }
}
