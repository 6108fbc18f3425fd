//! The web client's files, built into the binary: the app shell at `/` and
//! its stylesheet and ES modules at `/ui/{file}` (`src/web/ui/`, plain
//! JavaScript, no build step). Served with `Cache-Control: no-cache` and a
//! content ETag, so a browser revalidates each load with a cheap 304 and an
//! upgraded NVR is never run with yesterday's scripts.
//!
//! Owns only static bytes: must never serve anything of the site (the routes
//! are public, the pages fetch data through the API with the user's
//! credential) and never read the disk at run time (works offline, one file
//! to install).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::doc::ErrorBody;
use super::ApiError;

/// One asset: its name under `/ui/`, its content type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// The shell is served at `/`; the rest at `/ui/{name}`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("ui/index.html"),
};

const ASSETS: &[Asset] = &[
    INDEX,
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("ui/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("ui/favicon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        bytes: include_bytes!("ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        bytes: include_bytes!("ui/api.js"),
    },
    Asset {
        name: "live.js",
        content_type: JS,
        bytes: include_bytes!("ui/live.js"),
    },
    Asset {
        name: "timeline.js",
        content_type: JS,
        bytes: include_bytes!("ui/timeline.js"),
    },
    Asset {
        name: "playback.js",
        content_type: JS,
        bytes: include_bytes!("ui/playback.js"),
    },
    Asset {
        name: "events.js",
        content_type: JS,
        bytes: include_bytes!("ui/events.js"),
    },
    Asset {
        name: "status.js",
        content_type: JS,
        bytes: include_bytes!("ui/status.js"),
    },
    Asset {
        name: "admin.js",
        content_type: JS,
        bytes: include_bytes!("ui/admin.js"),
    },
];

/// Each asset's strong ETag: the first 16 bytes of its SHA-256, hex.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", crate::evidence::hex(&Sha256::digest(a.bytes)[..16])))
            .collect()
    })
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let a = &ASSETS[i];
    serve_bytes(a.bytes, a.content_type, &etags()[i], headers)
}

fn serve_bytes(bytes: &'static [u8], content_type: &'static str, tag: &str, headers: &HeaderMap) -> Response {
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(tag).expect("hex ETag is a valid header"),
        ),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response()
}

fn find(name: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.name == name)
}

#[utoipa::path(
    get,
    path = "/",
    tag = "system",
    summary = "The web client",
    description = "The app shell of the built-in web client (live grid, playback, events, status, admin). It \
                   holds no data: it shows a login form until `GET /api/v1/me` answers.",
    responses(
        (status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
    ),
    extensions(("x-tandem-role" = json!("public")))
)]
pub async fn index_page(headers: HeaderMap) -> Response {
    let i = find(INDEX.name).expect("the shell is an asset");
    let mut r = match super::access::session_cookie(&headers) {
        None => serve(i, &headers),
        Some(_) => marked_shell(&headers),
    };
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("Cookie"));
    r
}

fn marked_shell(headers: &HeaderMap) -> Response {
    // A browser holding a session cookie (from a login here, or one a
    // harness set) gets the shell marked so, and asks `/api/v1/me` at once;
    // one without shows the form without a 401 on its console. Only the
    // cookie's presence is looked at: its validity is /me's to say.
    static MARKED: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    let (bytes, tag) = MARKED.get_or_init(|| {
        let text = String::from_utf8_lossy(INDEX.bytes).replacen("<html", "<html data-session=\"1\"", 1);
        let tag = format!("\"{}\"", crate::evidence::hex(&Sha256::digest(text.as_bytes())[..16]));
        (text.into_bytes(), tag)
    });
    serve_bytes(bytes, INDEX.content_type, tag, headers)
}

#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "system",
    summary = "A file of the web client",
    description = "The web client's stylesheet, icon and JavaScript modules, built into the binary. \
                   `Cache-Control: no-cache` with an ETag.",
    params(("file" = String, Path, description = "The file's name, e.g. `app.js`")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 404, description = "No such file", body = ErrorBody),
    ),
    extensions(("x-tandem-role" = json!("public")))
)]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&file) {
        Some(i) => serve(i, &headers),
        None => {
            ApiError::not_found(format!("no file `{}` in the web client", crate::excerpt::short(&file))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_name_and_etag() {
        let names: std::collections::HashSet<_> = ASSETS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), ASSETS.len());
        let tags: std::collections::HashSet<_> = etags().iter().collect();
        assert_eq!(tags.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
    }

    #[test]
    fn the_shell_loads_only_files_that_exist() {
        let html = std::str::from_utf8(INDEX.bytes).unwrap();
        let mut refs = 0;
        for part in html.split("/ui/").skip(1) {
            let name: String = part.chars().take_while(|c| !matches!(c, '"' | '\'' | '?')).collect();
            assert!(
                find(&name).is_some(),
                "index.html loads /ui/{name}, which is not served"
            );
            refs += 1;
        }
        assert!(refs >= 2, "the shell loads its stylesheet and app module");
        // Every module imports siblings by relative name; each must be served.
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let src = std::str::from_utf8(a.bytes).unwrap();
            for part in src.split("from './").skip(1) {
                let name: String = part.chars().take_while(|c| *c != '\'').collect();
                assert!(
                    find(&name).is_some(),
                    "{} imports ./{name}, which is not served",
                    a.name
                );
            }
        }
    }

    #[tokio::test]
    async fn a_matching_etag_is_a_304_and_unknown_files_are_404() {
        let i = find("app.js").unwrap();
        let r = serve(i, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let tag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve(i, &h).status(), StatusCode::NOT_MODIFIED);
        let r = asset(Path("../index.db".into()), HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = index_page(HeaderMap::new()).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }

    async fn body(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_shell_is_marked_when_a_session_cookie_comes_with_it() {
        let plain = index_page(HeaderMap::new()).await;
        let plain_tag = plain.headers()[header::ETAG].clone();
        assert!(!body(plain).await.contains("data-session"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("tandem_session=abc; other=1"));
        let marked = index_page(h.clone()).await;
        let tag = marked.headers()[header::ETAG].clone();
        assert_ne!(tag, plain_tag, "the two shells are cached apart");
        assert_eq!(marked.headers()[header::VARY], "Cookie");
        assert!(body(marked).await.contains("<html data-session=\"1\""));
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(index_page(h).await.status(), StatusCode::NOT_MODIFIED);
    }
}
