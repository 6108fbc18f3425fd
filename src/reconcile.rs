//! (helper "apply" owns this file) Live apply: what must change to go from the
//! running configuration to the desired one.

use crate::config::ConfigError;

/// What an apply did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ApplyReport {
    /// One line per thing changed, for the operator ("channel 2: ingest restarted (camera sim2 → sim9)").
    pub steps: Vec<String>,
    /// Channels whose ingest was restarted.
    pub restarted: Vec<u32>,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Nothing was changed.
    #[error("{}", crate::config::ConfigErrors(.0.clone()))]
    Refused(Vec<ConfigError>),
}
