//! The `[archive]` table: where closed segments go once they are older than
//! `after` (an S3-compatible bucket and prefix, its endpoint and region), how
//! long the bucket keeps them (`max_age`), the upload's bandwidth cap and
//! where the credentials come from. Without the table nothing is archived.
//! Must never contact the object store or read the credentials file: it
//! checks what is written, the archiver (`crate::archive`) does the rest.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{units, Checker, SizeOrNumber};

/// `[archive] after` by default: two days on the local disk first.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(2 * 86_400);
/// `[archive] bandwidth` by default: 20 MiB/s.
pub const DEFAULT_BANDWIDTH: u64 = 20 << 20;
/// The least `bandwidth` accepted: below it one 4 Mbit/s camera outruns it.
pub const MIN_BANDWIDTH: u64 = 64 << 10;

/// Where the archiver's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveCredentials {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    Env,
    /// An AWS-style credentials file (`aws_access_key_id = …` lines).
    File(PathBuf),
}

/// The archive tier's settings (`[archive]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// The bucket (from `s3://bucket/prefix`).
    pub bucket: String,
    /// Object keys start with this (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Closed segments are archived once they ended this long ago.
    pub after: Duration,
    /// Archived footage is deleted from the bucket this long after it ended;
    /// `None`: kept forever.
    pub max_age: Option<Duration>,
    /// Bytes per second uploads may use at most.
    pub bandwidth: u64,
    pub credentials: ArchiveCredentials,
    /// Virtual-hosted-style requests (`bucket.host/key`) instead of the
    /// path style (`host/bucket/key`) MinIO, Ceph and the like need.
    pub virtual_hosted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArchive {
    url: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    after: Option<Spanned<SizeOrNumber>>,
    max_age: Option<Spanned<SizeOrNumber>>,
    bandwidth: Option<Spanned<SizeOrNumber>>,
    credentials: Option<Spanned<String>>,
    virtual_hosted: Option<bool>,
}

/// Splits `s3://bucket/prefix` into bucket and prefix. Pure.
pub fn parse_url(s: &str) -> Result<(String, String), String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{s}` is not an s3://bucket/prefix URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
    if !ok {
        return Err(format!(
            "`{bucket}` is not a bucket name (3 to 63 lowercase letters, digits, `-` or `.`)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(format!("`{prefix}` is not a usable key prefix"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Checks the `[archive]` table; `None` without it. A relative
/// `credentials` path is resolved against `base`, the configuration's
/// directory, like every file the configuration names.
pub(super) fn parse(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawArchive>>,
    base: &std::path::Path,
) -> Option<ArchiveSettings> {
    let raw_spanned = raw?;
    let table_at = raw_spanned.span().start;
    let raw = raw_spanned.get_ref();
    let mut ok = true;
    let (bucket, prefix) = match &raw.url {
        None => {
            c.err(table_at, "archive.url", "required: s3://bucket/prefix");
            ok = false;
            (String::new(), String::new())
        }
        Some(u) => match parse_url(u.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                c.err(u.span().start, "archive.url", e);
                ok = false;
                (String::new(), String::new())
            }
        },
    };
    let endpoint = raw.endpoint.as_ref().and_then(|e| match url::Url::parse(e.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Some(e.get_ref().trim_end_matches('/').to_string())
        }
        _ => {
            c.err(e.span().start, "archive.endpoint", "must be an http:// or https:// URL");
            ok = false;
            None
        }
    });
    let region = match &raw.region {
        Some(r) if r.get_ref().is_empty() => {
            c.err(r.span().start, "archive.region", "must not be empty");
            ok = false;
            String::new()
        }
        Some(r) => r.get_ref().clone(),
        None => "us-east-1".to_string(),
    };
    let mut duration = |c: &mut Checker<'_>, v: &Option<Spanned<SizeOrNumber>>, field: &str| {
        let v = v.as_ref()?;
        match units::parse_duration(&v.get_ref().text()) {
            Ok(d) if d >= Duration::from_secs(1) => Some(d),
            Ok(_) => {
                c.err(v.span().start, field, "must be at least 1 s");
                ok = false;
                None
            }
            Err(e) => {
                c.err(v.span().start, field, e);
                ok = false;
                None
            }
        }
    };
    let after = duration(c, &raw.after, "archive.after").unwrap_or(DEFAULT_AFTER);
    let max_age = duration(c, &raw.max_age, "archive.max_age");
    if let (Some(m), Some(v)) = (max_age, &raw.max_age) {
        if m <= after {
            c.err(
                v.span().start,
                "archive.max_age",
                "must be longer than `after`: footage would expire before it is archived",
            );
            ok = false;
        }
    }
    let mut bandwidth = DEFAULT_BANDWIDTH;
    if let Some(b) = &raw.bandwidth {
        let text = b.get_ref().text();
        let text = text.trim();
        let text = text.strip_suffix("/s").unwrap_or(text);
        match units::parse_bytes(text) {
            Ok(v) if v >= MIN_BANDWIDTH => bandwidth = v,
            Ok(_) => {
                c.err(b.span().start, "archive.bandwidth", "must be at least 64 KiB/s");
                ok = false;
            }
            Err(e) => {
                c.err(b.span().start, "archive.bandwidth", e);
                ok = false;
            }
        }
    }
    let credentials = match &raw.credentials {
        Some(p) if p.get_ref().is_empty() => {
            c.err(p.span().start, "archive.credentials", "must be a file's path");
            ok = false;
            ArchiveCredentials::Env
        }
        Some(p) => ArchiveCredentials::File(base.join(p.get_ref())),
        None => ArchiveCredentials::Env,
    };
    ok.then(|| ArchiveSettings {
        bucket,
        prefix,
        endpoint,
        region,
        after,
        max_age,
        bandwidth,
        credentials,
        virtual_hosted: raw.virtual_hosted.unwrap_or(false),
    })
}

/// Channels whose local retention deletes continuous footage before it is
/// old enough to archive (`max_age` not longer than `after`): what the
/// operator must hear, since that footage never reaches the bucket. Pure.
pub fn unarchived_channels(a: &ArchiveSettings, channels: &[super::ChannelConfig]) -> Vec<String> {
    let after = i64::try_from(a.after.as_millis())
        .unwrap_or(i64::MAX / 90)
        .saturating_mul(90);
    channels
        .iter()
        .filter(|ch| ch.retention.max_age.is_some_and(|m| m <= after))
        .map(|ch| {
            format!(
                "channel {}'s retention max_age deletes its footage before archive.after ({}) archives it",
                ch.number,
                units::format_duration(a.after)
            )
        })
        .collect()
}

/// `[archive]` as written back by `config::render`.
pub(super) fn render(a: &ArchiveSettings) -> toml::Table {
    let mut t = toml::Table::new();
    let url = if a.prefix.is_empty() {
        format!("s3://{}", a.bucket)
    } else {
        format!("s3://{}/{}", a.bucket, a.prefix)
    };
    t.insert("url".into(), url.into());
    if let Some(e) = &a.endpoint {
        t.insert("endpoint".into(), e.clone().into());
    }
    t.insert("region".into(), a.region.clone().into());
    t.insert("after".into(), units::format_duration(a.after).into());
    if let Some(m) = a.max_age {
        t.insert("max_age".into(), units::format_duration(m).into());
    }
    t.insert(
        "bandwidth".into(),
        toml::Value::Integer(a.bandwidth.min(i64::MAX as u64) as i64),
    );
    if let ArchiveCredentials::File(p) = &a.credentials {
        t.insert("credentials".into(), p.display().to_string().into());
    }
    if a.virtual_hosted {
        t.insert("virtual_hosted".into(), true.into());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Option<ArchiveSettings>, Vec<String>> {
        #[derive(Deserialize)]
        struct Doc {
            archive: Option<Spanned<RawArchive>>,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut c = Checker::new("t.toml", text);
        let a = parse(&mut c, doc.archive.as_ref(), std::path::Path::new("/etc/tandem"));
        if c.errors.is_empty() {
            Ok(a)
        } else {
            Err(c.errors.iter().map(|e| e.to_string()).collect())
        }
    }

    #[test]
    fn a_full_table_parses_and_renders_back() {
        let a = check(
            "[archive]\nurl = \"s3://cams/site-1/\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             after = \"2d\"\nmax_age = \"1y\"\nbandwidth = \"20MiB/s\"\ncredentials = \"s3\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((a.bucket.as_str(), a.prefix.as_str()), ("cams", "site-1"));
        assert_eq!(a.after, Duration::from_secs(2 * 86_400));
        assert_eq!(a.max_age, Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(a.bandwidth, 20 << 20);
        assert_eq!(a.credentials, ArchiveCredentials::File("/etc/tandem/s3".into()));
        assert!(!a.virtual_hosted);
        let back = toml::to_string(&toml::Table::from_iter([(
            "archive".to_string(),
            toml::Value::Table(render(&a)),
        )]))
        .unwrap();
        assert_eq!(check(&back).unwrap().unwrap(), a);
    }

    #[test]
    fn no_table_archives_nothing() {
        assert_eq!(check("").unwrap(), None);
    }

    #[test]
    fn errors_name_field_and_line() {
        let e = check("[archive]\nurl = \"http://x\"\nendpoint = \"ftp://h\"\nafter = \"3d\"\nmax_age = \"1d\"\nbandwidth = \"1KiB/s\"\n")
            .unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("t.toml:2: archive.url:"), "{e:?}");
        assert!(e[1].starts_with("t.toml:3: archive.endpoint:"), "{e:?}");
        assert!(e[2].starts_with("t.toml:5: archive.max_age:"), "{e:?}");
        assert!(e[3].starts_with("t.toml:6: archive.bandwidth:"), "{e:?}");
        let e = check("[archive]\nregion = \"x\"\n").unwrap_err();
        assert!(e[0].contains("archive.url: required"), "{e:?}");
    }

    #[test]
    fn short_local_retention_is_named() {
        let a = check("[archive]\nurl = \"s3://abc\"\nafter = \"2d\"\n")
            .unwrap()
            .unwrap();
        let ch = |number: u32, days: Option<i64>| super::super::ChannelConfig {
            number,
            name: format!("c{number}"),
            camera: None,
            retention: crate::store::retention::RetentionPolicy {
                max_age: days.map(|d| d * 86_400 * 90_000),
                ..Default::default()
            },
            recording: Default::default(),
            motion: None,
        };
        let w = unarchived_channels(&a, &[ch(1, Some(1)), ch(2, Some(2)), ch(3, Some(3)), ch(4, None)]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("channel 1's retention") && w[1].starts_with("channel 2's"),
            "{w:?}"
        );
    }

    #[test]
    fn bucket_names_and_prefixes_are_checked() {
        assert_eq!(parse_url("s3://abc").unwrap(), ("abc".into(), "".into()));
        assert!(parse_url("s3://AB").is_err());
        assert!(parse_url("s3://abc/x/../y").is_err());
        assert!(parse_url("gs://abc").is_err());
    }
}
