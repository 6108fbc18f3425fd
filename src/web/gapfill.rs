//! `GET /api/v1/gapfill`: gap fill's jobs with their progress, and the
//! pending and filled stretches the `recordings` answer lists beside a
//! channel's runs. Reads only; the jobs are `crate::gapfill`'s.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};

use super::doc::ErrorBody;
use super::{params, ApiError, ApiResult};
use crate::auth::Principal;
use crate::gapfill::{Job, State as JobState};
use crate::nvr::Nvr;
use crate::time::Time90k;

/// A job as the API shows it.
#[derive(Debug, serde::Serialize)]
pub struct JobView {
    pub id: i64,
    pub channel: u32,
    pub camera: String,
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub reason: crate::gapfill::Reason,
    pub state: JobState,
    /// Of the hole, the share merged so far (0 to 1).
    pub progress: f64,
    pub filled_to: Option<String>,
    /// Bytes fetched from the camera.
    pub bytes: u64,
    /// Frames merged.
    pub frames: u64,
    /// Seconds of the hole the camera no longer had.
    pub lost_s: f64,
    pub attempts: u32,
    /// When a pending job is next tried.
    pub next_attempt: Option<String>,
    pub last_error: Option<String>,
    pub created: String,
    pub updated: String,
}

fn secs(t: i64) -> f64 {
    crate::time::secs_of(t)
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> JobView {
        let len = (j.end - j.start).max(1);
        let progress = match (j.state, j.filled_to) {
            (JobState::Done, _) => 1.0,
            (_, Some(f)) => ((f - j.start) as f64 / len as f64).clamp(0.0, 1.0),
            (_, None) => 0.0,
        };
        JobView {
            id: j.id,
            channel: j.channel,
            camera: j.camera.clone(),
            start: j.start.to_rfc3339(),
            end: j.end.to_rfc3339(),
            seconds: secs(j.end - j.start),
            reason: j.reason,
            state: j.state,
            progress,
            filled_to: j.filled_to.map(Time90k::to_rfc3339),
            bytes: j.bytes,
            frames: j.frames,
            lost_s: secs(j.lost_90k),
            attempts: j.attempts,
            next_attempt: (j.state == JobState::Pending).then(|| j.next_attempt.to_rfc3339()),
            last_error: j.last_error.clone(),
            created: j.created.to_rfc3339(),
            updated: j.updated.to_rfc3339(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/gapfill",
    tag = "channels",
    summary = "Gap-fill jobs",
    description = "Holes in the channels' timelines being fetched from the cameras' edge storage, newest first \
                   (at most 500): channel, camera, interval, reason (reconnect, startup, takeover, failback, \
                   manual), state (pending, running, done, lost, failed), progress, bytes fetched, frames merged, \
                   seconds the camera no longer had, attempts, next attempt and last error.",
    params(("channel" = Option<u32>, Query, description = "Only this channel's jobs", minimum = 1, maximum = 4096)),
    responses(
        (status = 200, description = "`{\"jobs\": [...]}`", body = Object),
        (status = 400, description = "A bad channel number, named", body = ErrorBody),
        (status = 500, description = "The jobs could not be read", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("viewer")))
)]
pub async fn list(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let channel = match q.get("channel") {
        Some(c) => Some(params::channel(&nvr, c)?),
        None => None,
    };
    let jobs = nvr
        .gapfill
        .jobs(channel, crate::gapfill::LIST_LIMIT)
        .await
        .map_err(ApiError::internal)?;
    let jobs: Vec<JobView> = jobs
        .iter()
        .filter(|j| p.can_see(j.channel))
        .map(JobView::from)
        .collect();
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

/// One stretch of a channel's timeline that gap fill is working on (or has
/// finished): `pending`/`running` (not fetched yet), `done`, `lost`, `failed`.
#[derive(Debug, serde::Serialize)]
pub struct Stretch {
    pub start: String,
    pub end: String,
    pub state: JobState,
    pub progress: f64,
}

/// The channel's gap-fill stretches overlapping [start, end), for `recordings`.
pub async fn stretches(nvr: &Nvr, channel: u32, start: Time90k, end: Time90k) -> ApiResult<Vec<Stretch>> {
    let jobs = nvr
        .gapfill
        .overlapping(channel, start, end)
        .await
        .map_err(ApiError::internal)?;
    Ok(jobs
        .iter()
        .map(|j| {
            let v = JobView::from(j);
            Stretch {
                start: v.start,
                end: v.end,
                state: v.state,
                progress: v.progress,
            }
        })
        .collect())
}
