//! The S3 archive tier (issue 13): closed segments older than `[archive]
//! after` move to an S3-compatible bucket, their index rows then point at the
//! object (state `ARCHIVED`), and the local file is deleted only after the
//! upload was read back and verified. Clips and recordings span both tiers
//! (`hydrate` fetches the byte ranges a clip needs with ranged GETs), and
//! every day of a channel has an index object so the bucket is readable
//! without the NVR (`tandem archive ls|export`). See `docs/archive.md`.
//!
//! This module owns the bucket's layout and the client. Must never hold
//! credentials anywhere but in memory (the index stores where the archive
//! is and where its credentials come from, never the secrets), and never
//! let a row point at an object that was not verified.

pub mod bucket;
pub mod day_index;
pub mod hydrate;
pub mod offline;
pub mod plan;
pub mod rows;
pub mod task;
pub mod uploads;

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use thiserror::Error;

use crate::config::archive::{ArchiveCredentials, ArchiveSettings};
use crate::time::Time90k;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("segment {id}: {why}")]
    Segment { id: i64, why: String },
    #[error("verification of {key} failed: {why}")]
    Verify { key: String, why: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("day index {key}: {why}")]
    DayIndex { key: String, why: String },
}

/// Where an archive is: enough to reach it again without the configuration
/// (stored in the index's `meta` table so the read side finds it, and given
/// on the command line to `tandem archive`). Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    #[serde(default)]
    pub virtual_hosted: bool,
    /// A credentials file; `None`: the environment.
    pub credentials: Option<PathBuf>,
}

impl Location {
    pub fn of(a: &ArchiveSettings) -> Location {
        Location {
            bucket: a.bucket.clone(),
            prefix: a.prefix.clone(),
            endpoint: a.endpoint.clone(),
            region: a.region.clone(),
            virtual_hosted: a.virtual_hosted,
            credentials: match &a.credentials {
                ArchiveCredentials::Env => None,
                ArchiveCredentials::File(p) => Some(p.clone()),
            },
        }
    }

    /// The client for this location, with credentials from the file or the
    /// environment. Plain `http://` is allowed only where the endpoint says so.
    pub fn client(&self) -> Result<Arc<AmazonS3>, ArchiveError> {
        // reqwest is built without a crypto provider of its own: rustls
        // takes the process default, ring (as the rest of Tandem uses).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (id, secret, token) = match &self.credentials {
            Some(p) => read_credentials_file(p)?,
            None => {
                let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
                    (Some(i), Some(s)) => (i, s, get("AWS_SESSION_TOKEN")),
                    _ => {
                        return Err(ArchiveError::Credentials(
                            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or [archive] credentials".into(),
                        ))
                    }
                }
            }
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(self.virtual_hosted);
        // A few quick retries, then the pass ends and the next one (seconds
        // later) starts over: the default (10 retries over up to 3 min) would
        // hold a pass on a dead server for minutes.
        b = b.with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        });
        if let Some(t) = token {
            b = b.with_token(t);
        }
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        Ok(Arc::new(b.build()?))
    }

    fn join(&self, rest: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rest)
        } else {
            ObjectPath::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// Where one NVR's archive starts: `prefix/nvr/`.
    pub fn nvr_root(&self, nvr: &str) -> ObjectPath {
        self.join(nvr)
    }

    /// `prefix/nvr/ch<N>/YYYY-MM-DD/<id>.seg`: the segment file as it was.
    pub fn segment_key(&self, nvr: &str, channel: u32, start: Time90k, id: i64) -> ObjectPath {
        self.join(&format!("{nvr}/ch{channel}/{}/{id:016}.seg", day_of(start)))
    }

    /// `prefix/nvr/ch<N>/YYYY-MM-DD/index.json`: the day's index object.
    pub fn day_index_key(&self, nvr: &str, channel: u32, day: &str) -> ObjectPath {
        self.join(&format!("{nvr}/ch{channel}/{day}/index.json"))
    }
}

/// The UTC day (`YYYY-MM-DD`) a time falls on: the bucket's folders.
pub fn day_of(t: Time90k) -> String {
    let secs = t.0.div_euclid(90_000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => "invalid-date".into(),
    }
}

/// Reads an AWS-style credentials file (`aws_access_key_id = …`,
/// `aws_secret_access_key = …`, optional `aws_session_token`; the first
/// profile that has them), bounded like every file Tandem reads.
fn read_credentials_file(p: &std::path::Path) -> Result<(String, String, Option<String>), ArchiveError> {
    let text = crate::config::source::read_bounded(p).map_err(ArchiveError::Credentials)?;
    parse_credentials(&text).ok_or_else(|| {
        ArchiveError::Credentials(format!(
            "{}: no aws_access_key_id and aws_secret_access_key",
            p.display()
        ))
    })
}

/// Pure: the keys of an AWS-style credentials file.
pub fn parse_credentials(text: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && id.is_some() && secret.is_some() {
            break;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some((id?, secret?, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let l = Location {
            bucket: "b".into(),
            prefix: "site/a".into(),
            endpoint: None,
            region: "r".into(),
            virtual_hosted: false,
            credentials: None,
        };
        // 2026-11-24T00:00:05Z
        let t = Time90k(1_795_478_405 * 90_000);
        assert_eq!(
            l.segment_key("nvr1", 3, t, 42).as_ref(),
            "site/a/nvr1/ch3/2026-11-24/0000000000000042.seg"
        );
        assert_eq!(
            l.day_index_key("nvr1", 3, "2026-11-24").as_ref(),
            "site/a/nvr1/ch3/2026-11-24/index.json"
        );
        let bare = Location {
            prefix: String::new(),
            ..l
        };
        assert_eq!(bare.nvr_root("n").as_ref(), "n");
    }

    #[test]
    fn credentials_files_are_read_from_the_first_complete_profile() {
        let t = "[default]\naws_access_key_id = A\naws_secret_access_key=S\n[other]\naws_access_key_id = B\n";
        assert_eq!(parse_credentials(t), Some(("A".into(), "S".into(), None)));
        assert_eq!(parse_credentials("aws_access_key_id = A\n"), None);
    }
}
