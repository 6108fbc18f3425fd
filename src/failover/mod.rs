//! Rule-based failover between NVRs (the paper's design): rules, their probes,
//! the state machine, and the agent that rebinds channels on a transition.

pub mod agent;
pub mod arbiter;
pub mod probe;
pub mod rule;
pub mod state;
pub mod transfer;
