//! One evidence export from the store: plan the clip (the same plan the clip
//! endpoint and `tandem export` use), then write the archive with a manifest
//! made from the plan. Callers append their audit entry between the two so
//! that the entry's id is signed into the manifest.
//!
//! Blocking I/O; callers on the async runtime use `spawn_blocking`. Must never
//! mux the clip itself: `mp4::clip` and `export::write_range` do.

use std::io::{Seek, Write};

use ed25519_dalek::SigningKey;

use super::{archive, hex, ClipFile, EvidenceError, Gap, Manifest, Range, FORMAT};
use crate::mp4::clip::{self, Clip, ClipError};
use crate::store::Reader;
use crate::time::Time90k;

/// Source files kept open from planning to writing (as the clip endpoint).
const KEEP_OPEN: usize = 64;

/// Who exports what, for the manifest.
#[derive(Clone, Debug)]
pub struct Meta {
    pub nvr_id: String,
    pub channel: u32,
    pub channel_name: Option<String>,
    pub camera: Option<String>,
    pub requested: (Time90k, Time90k),
    pub exported_by: String,
    pub exported_at: Time90k,
    pub audit_entry: Option<i64>,
}

/// Why a range cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Clip(#[from] ClipError),
    #[error("reading the index: {0:#}")]
    Store(anyhow::Error),
}

pub fn plan(reader: &Reader, channel: u32, start: Time90k, end: Time90k) -> Result<Clip, PlanError> {
    let footage = reader.footage(channel, start, end).map_err(PlanError::Store)?;
    Ok(clip::build(&footage.segments, &footage.damaged, start, end)?)
}

/// The manifest of a planned clip whose bytes hash to `sha256`. Pure.
pub fn manifest(clip: &Clip, meta: &Meta, key: &ed25519_dalek::VerifyingKey, sha256: [u8; 32]) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        nvr_id: meta.nvr_id.clone(),
        channel: meta.channel,
        channel_name: meta.channel_name.clone(),
        camera: meta.camera.clone(),
        requested: Range {
            start: meta.requested.0.to_rfc3339(),
            end: meta.requested.1.to_rfc3339(),
        },
        actual: Range {
            start: clip.start.to_rfc3339(),
            end: clip.end.to_rfc3339(),
        },
        frames: clip.frames as u64,
        gaps: clip
            .gaps
            .iter()
            .map(|g| Gap {
                start: g.start.clone(),
                end: g.end.clone(),
                seconds: g.seconds,
                damaged: g.damaged.clone(),
            })
            .collect(),
        frames_omitted: clip.frames_omitted,
        damaged: clip.damaged.iter().map(|d| format!("{}: {}", d.file, d.why)).collect(),
        codec: clip.codec.clone(),
        width: clip.width,
        height: clip.height,
        clip: ClipFile {
            name: super::CLIP_NAME.into(),
            bytes: clip.len,
            sha256: hex(&sha256),
        },
        exported_by: meta.exported_by.clone(),
        exported_at: meta.exported_at.to_rfc3339(),
        audit_entry: meta.audit_entry,
        public_key: hex(key.as_bytes()),
    }
}

/// Writes the evidence archive of a planned clip to `out`.
pub fn write<W: Write + Seek>(
    out: W,
    clip: &Clip,
    meta: &Meta,
    key: &SigningKey,
) -> Result<(W, Manifest), EvidenceError> {
    let sources = sources(clip)?;
    let public = key.verifying_key();
    archive::write(out, clip, sources, key, |sha| Ok(manifest(clip, meta, &public, sha)))
}

fn sources(clip: &Clip) -> Result<crate::export::Sources, EvidenceError> {
    crate::export::open_sources(clip, 0, clip.len, KEEP_OPEN).map_err(|e| EvidenceError::Clip(format!("{e:#}")))
}

/// For streaming (HTTP): the first pass, which reads and hashes the clip and
/// fixes the archive's length, and the sources for the second pass, opened
/// and measured now so that the answer's status and length can be promised.
pub fn plan_stream(
    clip: &Clip,
    meta: &Meta,
    key: &SigningKey,
) -> Result<(archive::Planned, crate::export::Sources), EvidenceError> {
    let public = key.verifying_key();
    let planned = archive::plan_stream(clip, sources(clip)?, key, |sha| manifest(clip, meta, &public, sha))?;
    Ok((planned, sources(clip)?))
}
