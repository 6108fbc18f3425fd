//! (helper "frigate" owns this file) Frigate `config.yml` → Tandem configuration.

use crate::config::ConfigErrors;

/// A Frigate configuration in Tandem's vocabulary.
pub struct Converted {
    /// `[[network_camera]]`, `[[channel]]` and `[mqtt]` tables.
    pub toml: String,
    /// What has no Tandem equivalent, named.
    pub warnings: Vec<String>,
}

pub fn convert(yaml: &str, file: &str) -> Result<Converted, ConfigErrors> {
    let _ = (yaml, file);
    todo!()
}
