//! `GET /api/v1/storage`: the storage volume and each channel's footage —
//! used, free, oldest footage, recording rate and days of retention at that
//! rate (`store::capacity` computes; this handler only gathers the volume's
//! size and the index's figures on the blocking pool).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::doc::ErrorBody;
use super::{ApiError, ApiResult};
use crate::nvr::Nvr;
use crate::store::capacity::{self, StorageReport, Volume};
use crate::time::TICKS_PER_SEC;

/// The rate is what was recorded over the last hour: long enough to smooth
/// an event-mode channel's bursts, short enough to follow a changed camera.
const RATE_WINDOW: i64 = 3600 * TICKS_PER_SEC;

#[utoipa::path(
    get,
    path = "/api/v1/storage",
    tag = "system",
    summary = "Storage and retention",
    description = "The storage volume (size, free, kept free, footage stored, oldest footage, recording rate \
                   over the last hour and the days of footage it holds at that rate) and per channel its bytes, \
                   oldest footage, rate and days of retention — the least of what the volume, `max_age` and \
                   `max_bytes` allow, named in `limited_by`.",
    responses(
        (status = 200, description = "`{\"volume\", \"rate_window_s\", \"channels\": [...]}`", body = Object),
        (status = 500, description = "The index could not be read", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("operator")))
)]
pub async fn storage(State(nvr): State<Arc<Nvr>>) -> ApiResult<Json<StorageReport>> {
    let now = nvr.clock.now();
    let reader = nvr.reader.clone();
    let storage = nvr.config().storage.clone();
    let policies: HashMap<u32, _> = nvr.config().channels.iter().map(|c| (c.number, c.retention)).collect();
    let report = tokio::task::spawn_blocking(move || {
        let footage = reader.footage_figures(crate::time::Time90k(now.0 - RATE_WINDOW), now)?;
        let volume = Volume {
            path: storage.dir.display().to_string(),
            total_bytes: crate::config::volume_size(&storage.dir).unwrap_or(0),
            free_bytes: crate::store::free_bytes(&storage.dir)?,
            min_free_bytes: storage.min_free_bytes,
        };
        Ok::<_, anyhow::Error>(capacity::report(&volume, &footage, &policies, now, RATE_WINDOW))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(report))
}
