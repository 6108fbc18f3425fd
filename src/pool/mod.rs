//! The recorder pool (issue 13): NVRs that share one pool's cameras. This
//! module owns the scheduler's pure decisions; membership, election and the
//! stored assignment (etcd) are the caller's and live elsewhere.
//!
//! - `placement`: members, capacities, cameras, priorities and the current
//!   assignment → the new assignment, its moves and the cameras left out
//!   (`place`), and the optional spreading pass (`rebalance`).
//!
//! Must never perform I/O, consult a clock or a random source: the same
//! inputs give the same decision on every NVR that computes it.

pub mod placement;
mod placement_state;

pub use placement::{
    load, place, rebalance, Assignment, Camera, Capacity, Member, Move, Placement, PlacementError, Reason,
    RebalanceLimits, Unassigned,
};
