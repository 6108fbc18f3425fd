//! `GET /api/v1/channels/{n}/evidence.zip?start=…&end=…`: the clip of a range
//! with a signed manifest (see `crate::evidence`), and `GET /api/v1/key`: the
//! public key that verifies it.
//!
//! The export is audited before it is written, so the audit entry's id is in
//! the signed manifest. The archive is streamed, never spooled: a first pass
//! reads and hashes the clip and fixes the archive's exact length (see
//! `evidence::archive`), the second sends it. Must never buffer a clip in
//! memory nor serve a channel the principal may not see.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::{Extension, Json};

use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::audit_log::{Action, Entry};
use crate::auth::Principal;
use crate::evidence::export::{self, Meta, PlanError};
use crate::mp4::clip::ClipError;
use crate::nvr::Nvr;

const CHUNK: usize = 256 * 1024;

/// A zip archive's bytes (only its schema is used: the document's body type).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Zip(Vec<u8>);

#[utoipa::path(
    get,
    path = "/api/v1/channels/{n}/evidence.zip",
    tag = "channels",
    summary = "An evidence export: the clip, a manifest and its signature",
    description = "A zip of `clip.mp4` (as `clip.mp4` serves it), `manifest.json` (NVR id, channel and \
                   camera, requested and actual range, frame count, gaps, codec, the clip's SHA-256, who \
                   exported it and when, the audit entry id, the public key) and `manifest.sig` (Ed25519 \
                   over the manifest's bytes, with the key `GET /api/v1/key` serves). Check it with \
                   `tandem verify`. Audited (`evidence_export`) before it is written; the entry's id is \
                   also in `X-Tandem-Audit-Entry`. Streamed with its exact length.",
    params(
        ("n" = u32, Path, description = "Channel number (1–4096)", minimum = 1, maximum = 4096),
        ("start" = String, Query, description = "RFC 3339 time", format = DateTime),
        ("end" = String, Query, description = "RFC 3339 time, after `start`, at most 12 h later", format = DateTime),
    ),
    responses(
        (status = 200, description = "The evidence archive", content_type = "application/zip", body = Zip),
        (status = 400, description = "A bad channel number, time or range, named", body = ErrorBody),
        (status = 403, description = "The caller may not see this channel", body = ErrorBody),
        (status = 404, description = "No such channel, or no footage in the range", body = ErrorBody),
        (status = 503, description = "Footage changed while the export was prepared, or the audit log is \
                                      backed up; `Retry-After`", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn evidence(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let ch = params::channel(&nvr, &n)?;
    if !p.can_see(ch) {
        return Err(ApiError::forbidden(format!("you may not see channel {ch}")));
    }
    let start = params::time("start", q.get("start"))?;
    let end = params::time("end", q.get("end"))?;
    let reader = nvr.reader.clone();
    let clip = tokio::task::spawn_blocking(move || export::plan(&reader, ch, start, end))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            PlanError::Clip(e @ (ClipError::NoFootage | ClipError::Unreadable(_))) => {
                ApiError::not_found(e.to_string())
            }
            PlanError::Clip(e) => ApiError::bad_request(e.to_string()),
            PlanError::Store(e) => ApiError::internal(format!("{e:#}")),
        })?;
    let target = format!("channel {ch} {}..{}", start.to_rfc3339(), end.to_rfc3339());
    let now = nvr.clock.now();
    let audit_id = nvr
        .access
        .record(Entry::new(
            p.actor.clone(),
            Some(client.ip()),
            Action::EvidenceExport,
            target,
        ))
        .await?;
    let view = nvr.channel_views().into_iter().find(|v| v.number == ch);
    let meta = Meta {
        nvr_id: nvr.nvr_id.clone(),
        channel: ch,
        channel_name: view.as_ref().map(|v| v.name.clone()),
        camera: view.and_then(|v| v.binding),
        requested: (start, end),
        exported_by: p.actor.clone(),
        exported_at: now,
        audit_entry: Some(audit_id),
    };
    let key = nvr.signing_key.clone();
    let (clip, planned, sources, key) = tokio::task::spawn_blocking(move || {
        let (planned, sources) = export::plan_stream(&clip, &meta, &key)?;
        Ok::<_, crate::evidence::EvidenceError>((clip, planned, sources, key))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        tracing::warn!(channel = ch, audit_entry = audit_id, "evidence export failed: {e}");
        ApiError::busy(
            1,
            format!("footage changed while the export was prepared ({e}); try again"),
        )
    })?;
    let len = planned.len;
    tracing::info!(channel = ch, actor = %p.actor, audit_entry = audit_id, bytes = len, "evidence export");
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let r = crate::evidence::archive::stream(&planned, &clip, sources, &key, CHUNK, |b| {
            tx.blocking_send(Ok(b)).is_ok()
        });
        if let Err(e) = r {
            // The length was promised: a short body must abort the connection.
            tracing::warn!(channel = ch, audit_entry = audit_id, "evidence export ended early: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let name = format!(
        "attachment; filename=\"evidence-ch{ch}-{}.zip\"",
        start.to_rfc3339().replace(':', "")
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-tandem-audit-entry", HeaderValue::from(audit_id));
    Ok(resp)
}

/// `GET /api/v1/key`: the NVR's evidence signing key (public half).
#[utoipa::path(
    get,
    path = "/api/v1/key",
    tag = "system",
    summary = "The evidence signing key",
    description = "The public half of the Ed25519 key that signs evidence exports: `algorithm`, \
                   `public_key_hex`, `public_key_base64` and `fingerprint` (the first 16 bytes of the \
                   key's SHA-256, hex). Give it to `tandem verify --key`.",
    responses((status = 200, description = "The public key", body = Object)),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn key(State(nvr): State<Arc<Nvr>>) -> Json<serde_json::Value> {
    use base64::Engine;
    let k = nvr.signing_key.verifying_key();
    Json(serde_json::json!({
        "algorithm": "ed25519",
        "public_key_hex": crate::evidence::hex(k.as_bytes()),
        "public_key_base64": base64::engine::general_purpose::STANDARD.encode(k.as_bytes()),
        "fingerprint": crate::evidence::fingerprint(&k),
    }))
}
