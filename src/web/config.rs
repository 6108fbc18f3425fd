//! `/api/v1/config`: the whole configuration as a parameter file (export),
//! applied live (import, with `If-Match` on the current version and a dry
//! run), the stored versions and rollback. Admins only.
//!
//! Owns the HTTP side only: every apply goes through `parfile::apply`. Must
//! never send a secret in clear (they are sealed with the passphrase the
//! client sends, or left out) and never read an unbounded body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::doc::ErrorBody;
use super::{ApiError, ApiResult};
use crate::auth::Principal;
use crate::nvr::Nvr;
use crate::parfile::apply::{self, Failure, Request, Source};
use crate::store::config_versions;

/// The largest parameter file a PUT takes (the size a configuration file may have).
pub const MAX_CONFIG_BODY: usize = crate::config::source::MAX_CONFIG_FILE as usize;

/// The header that carries the passphrase sealing (export) or opening
/// (import) the secrets.
pub const PASSPHRASE_HEADER: &str = "tandem-passphrase";
/// The header naming the uploaded file, for messages and the version list.
pub const FILE_NAME_HEADER: &str = "tandem-file-name";

/// The version an `If-Match` names: `None` for `*` (any); `Some(None)` for
/// one that cannot be a version of this NVR (it never matches).
pub fn if_match(value: &str) -> Option<Option<i64>> {
    let v = value.trim();
    if v == "*" {
        return None;
    }
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    Some(v.parse::<i64>().ok())
}

/// The `ETag` of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn flag(q: &HashMap<String, String>, name: &str) -> ApiResult<bool> {
    match q.get(name).map(String::as_str) {
        None => Ok(false),
        Some("1" | "true" | "") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!("`{name}` is `{other}`; give 1 or 0"))),
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("the `{name}` header is not text"))),
    }
}

fn failure(f: Failure) -> Response {
    let status = match &f {
        Failure::Config(_) | Failure::Edited { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Failure::Stale { .. } => StatusCode::PRECONDITION_FAILED,
        Failure::NoVersion(_) => StatusCode::NOT_FOUND,
        Failure::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let errors = f.errors();
    let first = errors.first().cloned().unwrap_or_default();
    let error = match errors.len() {
        0 | 1 => first,
        n => format!("{n} errors in the configuration, nothing applied; first: {first}"),
    };
    (status, Json(serde_json::json!({ "error": error, "errors": errors }))).into_response()
}

fn outcome(o: apply::Outcome) -> Response {
    let mut r = Json(&o).into_response();
    if let Some(v) = o.version {
        if let Ok(h) = HeaderValue::from_str(&etag(v)) {
            r.headers_mut().insert(header::ETAG, h);
        }
    }
    r
}

#[utoipa::path(
    get,
    path = "/api/v1/config",
    tag = "config",
    summary = "Export the configuration",
    description = "The whole configuration as a parameter file (TOML with a `[parameter_file]` header), \
                   accounts included. Secrets are sealed with the passphrase in the `Tandem-Passphrase` \
                   header, or left out without one. `ETag` is the current version, for `If-Match` on PUT.",
    params(("Tandem-Passphrase" = Option<String>, Header, description = "Seal the secrets with this passphrase")),
    responses(
        (status = 200, description = "The parameter file", content_type = "application/toml", body = String),
        (status = 503, description = "The store could not be read", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn get_config(State(nvr): State<Arc<Nvr>>, headers: HeaderMap) -> ApiResult<Response> {
    let secrets = match header_str(&headers, PASSPHRASE_HEADER)? {
        Some("") => return Err(ApiError::bad_request("the `Tandem-Passphrase` header is empty")),
        Some(p) => crate::parfile::Secrets::Seal(p.to_string()),
        None => crate::parfile::Secrets::Omit,
    };
    let (accounts, version) = nvr
        .access
        .with_db(|c| {
            let a = crate::auth::accounts::read(c).map_err(ApiError::internal)?;
            let v = config_versions::current_id(c).map_err(ApiError::internal)?;
            Ok((a, v))
        })
        .await?;
    let mut config = (*nvr.config()).clone();
    config.accounts = Some(accounts);
    let opts = crate::parfile::ExportOptions {
        secrets,
        nvr_id: nvr.nvr_id.clone(),
        now_ms: super::access::now_ms(),
    };
    let text = tokio::task::spawn_blocking(move || crate::parfile::export(&config, &opts))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/toml; charset=utf-8"),
    );
    if let Ok(h) = HeaderValue::from_str(&etag(version)) {
        r.headers_mut().insert(header::ETAG, h);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[utoipa::path(
    put,
    path = "/api/v1/config",
    tag = "config",
    summary = "Apply a configuration",
    description = "Validates the whole file (a parameter file, a plain configuration file or a Frigate \
                   `config.yml`), then applies it to the running NVR without a restart, as one: one error \
                   and nothing changes (422, every error listed). Answers the diff, what changed and the \
                   new version (`ETag`). With `If-Match` the apply happens only if the current version is \
                   still that one (412 otherwise). `dry_run=1` answers the diff alone. The body is at most \
                   8 MiB.",
    params(
        ("dry_run" = Option<u8>, Query, description = "1: validate and answer the diff, apply nothing"),
        ("accept_edited" = Option<u8>, Query, description = "1: take a file whose checksum does not match (edited by hand on purpose)"),
        ("If-Match" = Option<String>, Header, description = "The version (`ETag` of GET) this change was made on"),
        ("Tandem-Passphrase" = Option<String>, Header, description = "Opens the file's sealed secrets"),
        ("Tandem-File-Name" = Option<String>, Header, description = "The file's name, for messages and the version list"),
    ),
    request_body(content = String, content_type = "application/toml", description = "The parameter file"),
    responses(
        (status = 200, description = "`{dry_run, unchanged, diff, diff_text, notes, accounts, report, version}`", body = Object),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 412, description = "The configuration changed since the `If-Match` version", body = ErrorBody),
        (status = 413, description = "The body is larger than 8 MiB", body = ErrorBody),
        (status = 422, description = "`{error, errors: [...]}`: every problem, nothing applied", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn put_config(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let dry_run = flag(&q, "dry_run")?;
    let accept_edited = flag(&q, "accept_edited")?;
    let expect = match header_str(&headers, header::IF_MATCH.as_str())?.and_then(if_match) {
        None => None,
        Some(Some(v)) => Some(v),
        // Names no version: it cannot be the current one.
        Some(None) => Some(-1),
    };
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let file = header_str(&headers, FILE_NAME_HEADER)?
        .map(crate::excerpt::short)
        .unwrap_or_else(|| "upload".into());
    let req = Request {
        source: Source::Text { text, file },
        passphrase: header_str(&headers, PASSPHRASE_HEADER)?.map(str::to_string),
        accept_edited,
        dry_run,
        actor: p.actor,
        origin: addr.ip().to_string(),
        base: std::env::current_dir().unwrap_or_default(),
        expect_version: expect,
    };
    Ok(match apply::apply(&nvr, req).await {
        Ok(o) => outcome(o),
        Err(f) => failure(f),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/config/versions",
    tag = "config",
    summary = "Configuration versions",
    description = "The configurations applied (the last 50), newest first: id, when, who, from where \
                   (an address, `sighup`, `start`, `cli`), the file, its SHA-256 and the diff it made.",
    responses(
        (status = 200, description = "`{\"current\": N, \"versions\": [...]}`", body = Object),
        (status = 503, description = "The store could not be read", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn versions(State(nvr): State<Arc<Nvr>>) -> ApiResult<Json<serde_json::Value>> {
    let list = nvr
        .access
        .with_db(|c| config_versions::list(c).map_err(ApiError::internal))
        .await?;
    let current = list.first().map(|v| v.id).unwrap_or(0);
    Ok(Json(serde_json::json!({ "current": current, "versions": list })))
}

#[derive(Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to apply again; omitted: the one before the current one.
    version: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/api/v1/config/rollback",
    tag = "config",
    summary = "Roll back the configuration",
    description = "Applies a stored version again, live, as a new version. Without a body (or without \
                   `version`), the version before the current one.",
    request_body(content = Option<RollbackBody>, description = "`{\"version\": N}`, optional"),
    responses(
        (status = 200, description = "As PUT answers", body = Object),
        (status = 400, description = "The body is not `{\"version\": N}`", body = ErrorBody),
        (status = 404, description = "No such version, or none before the current one", body = ErrorBody),
        (status = 422, description = "The version no longer applies (every problem listed)", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("admin")))
)]
pub async fn rollback(
    State(nvr): State<Arc<Nvr>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let b: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body: {e}")))?
    };
    let req = Request {
        source: Source::Version(b.version),
        passphrase: None,
        accept_edited: true,
        dry_run: false,
        actor: p.actor,
        origin: addr.ip().to_string(),
        base: std::env::current_dir().unwrap_or_default(),
        expect_version: None,
    };
    Ok(match apply::apply(&nvr, req).await {
        Ok(o) => outcome(o),
        Err(f) => failure(f),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_names_a_version_or_any() {
        assert_eq!(if_match("*"), None);
        assert_eq!(if_match("\"12\""), Some(Some(12)));
        assert_eq!(if_match(" W/\"3\" "), Some(Some(3)));
        assert_eq!(if_match("7"), Some(Some(7)));
        assert_eq!(if_match("\"abc\""), Some(None));
        assert_eq!(if_match(""), Some(None));
    }

    #[test]
    fn etag_round_trips_through_if_match() {
        for v in [0, 1, 49, 1_000_000] {
            assert_eq!(if_match(&etag(v)), Some(Some(v)));
        }
    }

    #[test]
    fn flags_take_one_or_zero_and_name_a_bad_value() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(!flag(&HashMap::new(), "dry_run").unwrap());
        assert!(flag(&q("dry_run", "1"), "dry_run").unwrap());
        assert!(flag(&q("dry_run", "true"), "dry_run").unwrap());
        assert!(!flag(&q("dry_run", "0"), "dry_run").unwrap());
        let e = flag(&q("dry_run", "yes"), "dry_run").unwrap_err();
        assert!(e.message().contains("dry_run"), "{}", e.message());
    }

    #[test]
    fn failures_map_to_their_status() {
        let s = |f| failure(f).status();
        assert_eq!(
            s(Failure::Stale {
                expected: 1,
                current: 2
            }),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(s(Failure::NoVersion("x".into())), StatusCode::NOT_FOUND);
        assert_eq!(
            s(Failure::Config(crate::config::ConfigErrors(vec![]))),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(s(Failure::Store("x".into())), StatusCode::SERVICE_UNAVAILABLE);
    }
}
