//! The FUSE adapter and the shared control state (skeleton: to be written).
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{Match, OpRecord, Stats, When};

pub(crate) struct Shared;

/// A mounted lazy filesystem; dropping it unmounts.
pub struct Mount;

pub(crate) fn mount(_s: &Arc<Shared>, _dir: &Path) -> std::io::Result<Mount> {
    todo!()
}

impl Shared {
    pub(crate) fn new(_capacity: u64) -> Arc<Shared> {
        todo!()
    }
    pub(crate) fn cut(&self) {
        todo!()
    }
    pub(crate) fn cut_at(&self, _at: Match, _nth: u64, _when: When) {
        todo!()
    }
    pub(crate) fn cut_time_us(&self) -> Option<i64> {
        todo!()
    }
    pub(crate) fn power_on(&self) {
        todo!()
    }
    pub(crate) fn fail_fsync(&self, _p: &str, _count: u64) {
        todo!()
    }
    pub(crate) fn slow_fsync(&self, _d: Duration) {
        todo!()
    }
    pub(crate) fn enospc(&self, _p: &str) {
        todo!()
    }
    pub(crate) fn fail_reads(&self, _p: &str) {
        todo!()
    }
    pub(crate) fn clear_faults(&self) {
        todo!()
    }
    pub(crate) fn trace(&self) -> Vec<OpRecord> {
        todo!()
    }
    pub(crate) fn stats(&self) -> Stats {
        todo!()
    }
}
