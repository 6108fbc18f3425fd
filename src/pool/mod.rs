//! The recorder pool (issue 13): NVRs that share one pool's cameras. This
//! module owns the scheduler's decisions and this NVR's membership through
//! etcd; carrying the assignment out (binding and unbinding channels) is
//! `nvr::pool`'s.
//!
//! - `placement`: members, capacities, cameras, priorities and the current
//!   assignment → the new assignment, its moves and the cameras left out
//!   (`place`), and the optional spreading pass (`rebalance`).
//! - `records`: the etcd key layout, the member record and the assignment
//!   document, the scheduler's step and the start/stop diff (pure).
//! - `backoff`: retry delays and which state changes to log (pure).
//! - `view`: the pool's keys folded into members, assignment, recording
//!   lists and the scheduler (pure).
//! - `handover`: the view → which cameras this NVR starts and stops,
//!   make-before-break (pure).
//! - `membership`: the only I/O here: lease, registration, election, the
//!   stored assignment, this NVR's recording list and the watch of it all.
//!
//! `placement`, `records`, `view`, `handover` and `backoff` must never perform I/O, consult a
//! clock or a random source: the same inputs give the same decision on every
//! NVR that computes it.

pub mod backoff;
pub mod handover;
pub mod membership;
pub mod placement;
mod placement_state;
pub mod records;
pub mod shared_config;
pub mod view;

pub use placement::{
    load, place, rebalance, Assignment, Camera, Capacity, Member, Move, Placement, PlacementError, Reason,
    RebalanceLimits, Unassigned,
};
