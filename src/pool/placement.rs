//! Placement: which member of the pool records which camera. A pure function
//! of its inputs (members with capacity and liveness, cameras with bitrate
//! and priority, the current assignment); the elected scheduler calls it on
//! every change and stores the result. Must never perform I/O, consult a
//! clock or a random source, or let `HashMap` order reach its output.
//!
//! # The method: stay, shed, then least-loaded first fit with priorities
//!
//! 1. **Stay.** A camera assigned to an alive member stays there.
//! 2. **Shed.** A member whose staying cameras exceed its capacity (it was
//!    lowered, or the stored assignment was over it) sheds cameras lowest
//!    priority first (within a priority the largest bitrate first, then by
//!    id), until it is within capacity; then each shed camera, highest first,
//!    is put back if it still fits. So a shed camera never fits back beside
//!    the ones that stayed, and the number shed is small (exactly minimal
//!    when only the channel count is exceeded; the bitrate case is a
//!    knapsack, solved greedily).
//! 3. **Place.** Every other camera (new; orphaned because its member is not
//!    alive or not a member at all; shed) is placed in the order priority,
//!    then bitrate (both descending), then id: on the **least-loaded** alive
//!    member that has room, where a member's load is the larger of its two
//!    used fractions, `max(channels used / channels, kbit/s used / kbit/s)`,
//!    in millionths, ties broken by member name. Least-loaded (rather than
//!    rendezvous hashing) because capacities differ between NVRs and
//!    stability already comes from step 1: a hash would only decide where
//!    the orphans go, and it would ignore how full each member is.
//! 4. **Preempt.** A camera that fits on no member may take the place of
//!    cameras of *strictly lower* priority: on the least-loaded member where
//!    removing lower-priority cameras (lowest first, as in step 2, then put
//!    back what fits) makes room. The removed cameras go back into the queue
//!    and are placed or left out in their turn.
//! 5. Whatever still fits nowhere is **unassigned**.
//!
//! # Invariants (tested exhaustively on small pools and by property tests)
//!
//! - No member ends over capacity, in channels or in kbit/s. A member with
//!   zero capacity (either limit) is valid and takes nothing that needs it.
//! - Every camera is either assigned to an alive member or unassigned.
//! - **Lowest priority left out first:** for an unassigned camera of
//!   priority p, no alive member could take it even after removing every
//!   camera of lower priority. In particular no camera is unassigned while
//!   some alive member has room for it.
//! - **Stability:** a camera on an alive member whose staying cameras fit
//!   its capacity stays there, unless preempted (step 4, which only happens
//!   when capacity is exhausted for a higher-priority camera). So after a
//!   failure with room to spare, the moves are exactly the failed members'
//!   cameras.
//! - **No move-back:** a member that returns gets new and orphaned cameras
//!   (it is the least loaded) but nothing is taken from the others unless
//!   `rebalance` is asked for.
//! - **Deterministic:** the result depends only on the sets given, not on
//!   the order of the slices nor on any hash order (every choice is broken
//!   by id or name).
//!
//! # Input that is not an error
//!
//! An assignment to a member that is unknown or not alive makes the camera
//! orphaned (`Reason::Orphaned`), like a failure. An assignment of a camera
//! not in the camera list is dropped (the camera left the pool). Duplicate
//! member names or camera ids are errors: which entry is meant is unknown.
//!
//! # Rebalance
//!
//! `rebalance` first does what `place` does, then moves cameras from the
//! most- to the least-loaded member while their loads differ by more than
//! the tolerance, at most `max_moves` cameras, each camera at most once,
//! then places again any camera still left out (the moves may have opened
//! room for it).
//! Each rebalance move takes a camera from a recording, healthy member: the
//! caller must carry it out **make-before-break** (the new owner records
//! before the old one stops), which is why moves are bounded per call.
//!
//! Bitrates and capacities are integers (kbit/s) so that sums are exact and
//! independent of the order they are added in.

use std::collections::BTreeMap;

use super::placement_state::State;
pub use crate::failover::capacity::Priority;

/// Camera id → member name.
pub type Assignment = BTreeMap<String, String>;

/// What a member can record: channels and kbit/s (the configuration's
/// `capacity = { channels, mbps }`, mbps × 1000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Capacity {
    pub channels: u32,
    pub kbps: u64,
}

/// One NVR of the pool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub capacity: Capacity,
    /// Holds its lease and takes cameras. A member that is not alive keeps
    /// none: its cameras are orphaned.
    pub alive: bool,
}

/// One camera of the pool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Camera {
    pub id: String,
    /// Expected bitrate (measured or declared), kbit/s.
    pub kbps: u64,
    /// In a pool `never` is simply the lowest: there is no primary to leave
    /// the camera on, so it is placed when there is room and left out first.
    pub priority: Priority,
}

/// Why a camera moves or is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not in the current assignment.
    New,
    /// Its member is not alive or not a member.
    Orphaned,
    /// Its member is over capacity.
    Shed,
    /// Removed for a camera of higher priority that fitted nowhere else.
    Preempted,
    /// Moved by `rebalance` from a more loaded member (make-before-break).
    Rebalance,
}

/// A camera to start recording on `to` (and to stop on `from`, if alive).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub camera: String,
    /// Its member in the current assignment (`None`: it had none).
    pub from: Option<String>,
    pub to: String,
    pub reason: Reason,
}

/// A camera no member can take.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unassigned {
    pub camera: String,
    pub from: Option<String>,
    pub reason: Reason,
}

/// The decision: the whole new assignment and how it differs from the
/// current one. `moves` and `unassigned` are sorted by camera id.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub assignment: Assignment,
    pub moves: Vec<Move>,
    pub unassigned: Vec<Unassigned>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlacementError {
    #[error("member {0:?} is listed more than once")]
    DuplicateMember(String),
    #[error("camera {0:?} is listed more than once")]
    DuplicateCamera(String),
    #[error("rebalance tolerance {0} is not a fraction between 0 and 1")]
    BadTolerance(f64),
}

/// The new assignment (see the module doc for the method and invariants).
pub fn place(members: &[Member], cameras: &[Camera], current: &Assignment) -> Result<Placement, PlacementError> {
    let mut s = State::new(members, cameras, current)?;
    s.settle();
    Ok(s.finish())
}

/// How far `rebalance` may go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RebalanceLimits {
    /// Cameras moved at most (each is a make-before-break handover).
    pub max_moves: usize,
    /// Balanced when the most and least loaded members' loads (fractions of
    /// capacity, see the module doc) differ by at most this.
    pub tolerance: f64,
}

/// `place`, then moves from the most- to the least-loaded members until
/// balanced within the tolerance or `max_moves` is reached. Each move of a
/// camera between two alive members (`Reason::Rebalance`) must be carried
/// out make-before-break.
pub fn rebalance(
    members: &[Member],
    cameras: &[Camera],
    current: &Assignment,
    limits: RebalanceLimits,
) -> Result<Placement, PlacementError> {
    if !(0.0..=1.0).contains(&limits.tolerance) {
        return Err(PlacementError::BadTolerance(limits.tolerance));
    }
    let mut s = State::new(members, cameras, current)?;
    s.settle();
    s.balance(limits.max_moves, (limits.tolerance * 1e6).round() as u64);
    s.place_left_out();
    Ok(s.finish())
}

/// A member's load as `place` measures it: the larger of its used fractions
/// of channels and of kbit/s, in millionths (above 1,000,000 when over
/// capacity, `u64::MAX` when it uses a limit of 0).
pub fn load(capacity: Capacity, channels: u32, kbps: u64) -> u64 {
    fn ratio(used: u64, cap: u64) -> u64 {
        match (used, cap) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            _ => (u128::from(used) * 1_000_000 / u128::from(cap)) as u64,
        }
    }
    ratio(u64::from(channels), u64::from(capacity.channels)).max(ratio(kbps, capacity.kbps))
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
