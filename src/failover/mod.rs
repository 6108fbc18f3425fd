//! Rule-based failover between NVRs (the paper's design): rules, their probes,
//! the state machine, and the agent that rebinds channels on a transition;
//! N+M capacity, the peer protocol and the timeline federated across peers.

pub mod agent;
pub mod arbiter;
pub mod capacity;
pub mod federation;
pub mod handle;
pub mod peer;
pub mod probe;
pub mod rule;
pub mod state;
pub mod transfer;
