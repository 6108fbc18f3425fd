//! `tandem export --evidence` from a store: plan the clip, append the audit
//! entry (actor `cli:$USER`), write the signed archive.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};
use tandem::auth::audit_log::{self, Action, Entry};
use tandem::evidence::export::{self, Meta};
use tandem::store::Reader;
use tandem::time::Time90k;

use super::export::{to_json, Omissions};
use super::StoreRef;

pub(super) fn export_local(
    store: &StoreRef,
    channel: u32,
    start: Time90k,
    end: Time90k,
    out: &Path,
    omissions: &mut Omissions,
) -> Result<u64> {
    let dir = &store.dir;
    let clip = export::plan(&Reader::new(dir.clone()), channel, start, end)?;
    omissions.gaps = to_json(&clip.gaps);
    omissions.overlaps = to_json(&clip.overlaps);
    omissions.frames_omitted = clip.frames_omitted;
    omissions.damaged = to_json(&clip.damaged);
    let (key, _) = tandem::evidence::key::load_or_create(dir)?;
    let index = dir.join("index.db");
    let mut conn = tandem::store::db::open(&index).with_context(|| format!("opening {}", index.display()))?;
    tandem::store::db::migrate(&mut conn).map_err(|e| anyhow::anyhow!("{}: {e}", index.display()))?;
    let nvr_id = tandem::store::db::nvr_id(&conn)?;
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let actor = format!("cli:{user}");
    let now = Time90k::from_system(std::time::SystemTime::now());
    let target = format!("channel {channel} {}..{}", start.to_rfc3339(), end.to_rfc3339());
    let audit_id = audit_log::append(
        &conn,
        now.0 / 90,
        &Entry::new(actor.clone(), None, Action::EvidenceExport, target),
    )
    .map_err(|e| anyhow::anyhow!("appending to the audit log: {e}"))?;
    drop(conn);
    let ch = store
        .config
        .as_ref()
        .and_then(|c| c.channels.iter().find(|c| c.number == channel));
    let meta = Meta {
        nvr_id,
        channel,
        channel_name: ch.map(|c| c.name.clone()),
        camera: ch.and_then(|c| c.camera.clone()),
        requested: (start, end),
        exported_by: actor,
        exported_at: now,
        audit_entry: Some(audit_id),
    };
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let pb = super::export::progress(clip.len);
    let (w, m) = export::write(BufWriter::with_capacity(1 << 20, f), &clip, &meta, &key)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    pb.finish_and_clear();
    eprintln!(
        "evidence: {} frames, clip SHA-256 {}, audit entry {audit_id}, signed by key {}",
        m.frames,
        m.clip.sha256,
        tandem::evidence::fingerprint(&key.verifying_key())
    );
    Ok(f.metadata()?.len())
}
