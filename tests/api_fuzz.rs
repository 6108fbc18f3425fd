//! Bad input gets a 4xx, never a 5xx or a panic. An NVR built in-process
//! (recording a stamped simulated camera, so clips and recordings have
//! footage) gets random requests at every route of its OpenAPI document —
//! random methods, path segments (out of range, negative, huge, non-ASCII),
//! query values, headers and JSON bodies (wrong types, huge numbers, deep
//! nesting, oversized) — and must answer each below 500 without panicking.
//! Over a real socket: malformed JSON, oversized bodies, overlong and too many
//! headers, garbage cookies and tokens get their 4xx; every documented route
//! is routed; the served document is the router's.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tower::ServiceExt;

use tandem::nvr::Nvr as Recorder;
use tandem::time::{SystemClock, Time90k};

const PEER_TOKEN: &str = "api-fuzz-peer-token";
/// Channels 1 and 2 record the camera; the rest are idle, so triggers
/// spread over many channels' rate limits and more bodies are validated.
const CHANNELS: u32 = 16;

/// The user the tests act as.
const FUZZ_USER: &str = "fuzz-admin";

/// The bearer token every request of the tests authenticates with, made the
/// way an admin's script gets one: a user in the store, and an API token of
/// theirs. Returns the token and its id.
fn api_token(rt: &tokio::runtime::Runtime, nvr: &Recorder) -> (String, i64) {
    use tandem::auth::{credentials, users, Role};
    let now = tandem::web::access::now_ms();
    rt.block_on(nvr.access.with_db(move |c| {
        users::add(c, FUZZ_USER, Role::Admin, None, "a fuzzing password, long enough", now)
            .map_err(tandem::web::ApiError::internal)?;
        let (id, secret) = credentials::create_token(c, FUZZ_USER, "api-fuzz", Role::Admin, None, None, now)
            .map_err(tandem::web::ApiError::internal)?;
        Ok((secret, id))
    }))
    .unwrap()
}

/// An NVR in this process, its router, and what it needs kept alive.
struct Site {
    rt: tokio::runtime::Runtime,
    nvr: Arc<Recorder>,
    router: Router,
    token: String,
    token_id: i64,
    _camera: common::Proc,
    dir: tempfile::TempDir,
}

impl Site {
    fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (camera, urls) = common::sim_camera(dir.path(), 1, &[]);
        let store = dir.path().join("store");
        let mut cfg = format!(
            "[storage]\ndir = \"{}\"\nmin_free = \"64 MiB\"\nsegment_duration = \"2s\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[failover]\npeer_token = \"{PEER_TOKEN}\"\n\
             [[network_camera]]\nname = \"c1\"\nurl = \"{}\"\n",
            store.display(),
            urls[0]
        );
        for n in 1..=CHANNELS {
            cfg.push_str(&format!("[[channel]]\nnumber = {n}\n"));
            if n <= 2 {
                cfg.push_str("camera = \"c1\"\n");
            }
        }
        let config = tandem::config::parse(&cfg, "api-fuzz.toml", dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let nvr = rt.block_on(async { Recorder::start(config, Arc::new(SystemClock)).unwrap() });
        let router = tandem::web::router(nvr.clone());
        let (token, token_id) = api_token(&rt, &nvr);
        let site = Site {
            rt,
            nvr,
            router,
            token,
            token_id,
            _camera: camera,
            dir,
        };
        // Footage a clip can serve: a growing segment is listed from its
        // row's insert, before the writer has written a frame to its file
        // (it gathers up to 200 ms of frames per write).
        common::wait_for(Duration::from_secs(30), "footage on channel 1", || {
            let (now_a, now_b) = (common::rfc3339_offset(-60.0), common::rfc3339_offset(60.0));
            let r = site.send(&Req {
                method: "GET".into(),
                path: "/api/v1/channels/1/recordings".into(),
                query: vec![("start".into(), now_a), ("end".into(), now_b)],
                ..Req::default()
            });
            r.0 == 200
                && serde_json::from_slice::<serde_json::Value>(&r.1).is_ok_and(|v| {
                    v["recordings"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|r| r["frames"].as_u64() > Some(0)))
                })
        });
        site
    }

    /// Sends `r` through the router in-process; the status and the body.
    fn send(&self, r: &Req) -> (u16, Vec<u8>) {
        let mut uri = r.path.clone();
        // The fuzzer must not revoke its own credential half way: however
        // the id is written (`+1` and `%2B1` name token 1 too).
        if let Some(rest) = uri.strip_prefix("/api/v1/tokens/") {
            let decoded: String = url::form_urlencoded::parse(format!("x={}", rest.replace('+', "%2B")).as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
            if decoded.parse::<i64>() == Ok(self.token_id) {
                uri = "/api/v1/tokens/0".into();
            }
        }
        if !r.query.is_empty() {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &r.query {
                q.append_pair(k, v);
            }
            uri = format!("{uri}?{}", q.finish());
        }
        let mut b = Request::builder()
            .method(Method::from_bytes(r.method.as_bytes()).unwrap())
            .uri(&uri);
        for (k, v) in &r.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        match r.auth {
            Auth::Token => b = b.header("authorization", format!("Bearer {}", self.token)),
            Auth::Peer => b = b.header("authorization", format!("Bearer {PEER_TOKEN}")),
            Auth::Garbage => b = b.header("authorization", "Bearer ;;\"garbage\"\t=== %ff"),
            Auth::None => {}
        }
        let mut req = b.body(Body::from(r.body.clone())).unwrap();
        req.extensions_mut().insert(ConnectInfo(r.client));
        let router = self.router.clone();
        self.rt.block_on(async move {
            let resp = tokio::time::timeout(Duration::from_secs(30), router.oneshot(req))
                .await
                .expect("a response within 30 s")
                .unwrap();
            let status = resp.status().as_u16();
            let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
                .await
                .expect("the body within 30 s")
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            (status, body)
        })
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let nvr = self.nvr.clone();
        self.rt.block_on(async move { nvr.shutdown().await });
    }
}

#[derive(Clone, Copy, Debug, Default)]
enum Auth {
    #[default]
    Token,
    Peer,
    Garbage,
    None,
}

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    auth: Auth,
    client: SocketAddr,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            method: "GET".into(),
            path: "/".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            auth: Auth::Token,
            client: "127.0.0.1:40000".parse().unwrap(),
        }
    }
}

/// A path segment: numbers in and out of range, negative, huge, non-ASCII,
/// traversal, empty-ish.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (1..=CHANNELS).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0", "-0", "-1", "4097", "18446744073709551616", "99999999999999999999999999", "1e9",
            "0x1f", "+1", " 1", "1.5", "NaN", "١٢", "..", "%00", "ab", "deadbeef",
        ])
        .prop_map(String::from),
        1 => "[0-9a-f]{1,80}",
        1 => "\\PC{1,40}",
    ]
}

/// RFC 3339 around now (where the footage is), at the extremes, and not.
fn time_text() -> impl Strategy<Value = String> {
    let now = Time90k::from_system(std::time::SystemTime::now());
    prop_oneof![
        3 => (-120i64..120).prop_map(move |s| (now + s * 90_000).to_rfc3339()),
        1 => any::<i32>().prop_map(move |s| (now + i64::from(s) * 90_000).to_rfc3339()),
        1 => prop::sample::select(vec![
            "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z", "2026-11-22T25:00:00Z", "2026-11-22T10:00:00+23:59",
            "-2026-11-22T10:00:00Z", "now", "",
        ])
        .prop_map(String::from),
    ]
}

/// A query value of any kind.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => time_text(),
        2 => segment(),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => prop::sample::select(vec!["-1", "1e308", "-1e308", "inf", "NaN", "0.0000001", "10s", "-5s"])
            .prop_map(String::from),
        1 => "\\PC{0,60}",
        1 => Just("9".repeat(5000)),
    ]
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        4 => prop::sample::select(vec!["start", "end", "channel", "type", "offset", "length", "duration"])
            .prop_map(String::from),
        1 => "[a-z_]{1,10}",
        1 => "\\PC{1,10}",
    ];
    prop::collection::vec((key, query_value()), 0..6)
}

/// A JSON number of any size or sign.
fn number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)),
        (-10.0f64..4000.0).prop_map(serde_json::Value::from),
    ]
}

/// Any JSON value, nested a few levels, keys often the trigger's fields.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        number(),
        "\\PC{0,40}".prop_map(serde_json::Value::from),
        prop::sample::select(vec!["start", "stop", "pulse", "10s", "-5s", "1e999", "door", "motion"])
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 8, |inner| {
        let key = prop_oneof![
            3 => prop::sample::select(vec!["type", "action", "duration", "source", "details"]).prop_map(String::from),
            1 => "\\PC{0,12}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body shaped like an event trigger, with random field values.
fn trigger_body() -> impl Strategy<Value = serde_json::Value> {
    let action = prop_oneof![
        prop::sample::select(vec!["start", "stop", "pulse", "pulse", "PULSE", ""]).prop_map(serde_json::Value::from),
        json(),
    ];
    let duration = prop_oneof![number(), json(), query_value().prop_map(serde_json::Value::from)];
    let kind = prop_oneof![
        prop::sample::select(vec!["door", "motion", "failover", "a-b_c"]).prop_map(serde_json::Value::from),
        json(),
    ];
    (
        action,
        prop::option::of(duration),
        prop::option::of(kind),
        prop::option::of(json()),
    )
        .prop_map(|(a, d, k, details)| {
            let mut o = serde_json::Map::new();
            o.insert("action".into(), a);
            if let Some(d) = d {
                o.insert("duration".into(), d);
            }
            if let Some(k) = k {
                o.insert("type".into(), k);
            }
            if let Some(x) = details {
                o.insert("details".into(), x);
            }
            serde_json::Value::Object(o)
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => trigger_body().prop_map(|v| v.to_string().into_bytes()),
        2 => json().prop_map(|v| v.to_string().into_bytes()),
        1 => (1usize..5000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => (1usize..5000).prop_map(|d| "{\"details\":".repeat(d).into_bytes()),
        1 => (60_000usize..200_000).prop_map(|n| format!("{{\"action\":\"start\",\"source\":\"{}\"}}", "x".repeat(n)).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => Just(b"{\"action\":".to_vec()),
        1 => Just(b"{\"action\":\"pulse\",\"duration\":1e400}".to_vec()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let content_type = prop_oneof![
        4 => Just(Some("application/json")),
        1 => Just(None),
        1 => prop::sample::select(vec![
            "application/json; charset=utf-8",
            "text/plain",
            "application/octet-stream",
            "multipart/form-data; boundary=x",
        ])
        .prop_map(Some),
    ];
    let range = prop::option::of(prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        (0u64..100_000, prop::option::of(0u64..100_000))
            .prop_map(|(a, b)| format!("bytes={a}-{}", b.map(|b| b.to_string()).unwrap_or_default())),
        any::<u64>().prop_map(|n| format!("bytes=-{n}")),
        // Numbers at the edge of u64, where `+ 1` overflows.
        (0u64..1000, (u64::MAX - 2)..=u64::MAX).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        prop::sample::select(vec![
            "bytes=-0",
            "bytes=5-2",
            "bytes=0-1,2-3",
            "bytes=",
            "items=0-1",
            "bytes=18446744073709551615-"
        ])
        .prop_map(String::from),
    ]);
    let cond = prop::option::of(prop::sample::select(vec!["*", "\"x\"", "W/\"y\"", ""]));
    let cookie = prop::option::of(prop_oneof![
        "[ -~]{0,200}",
        Just("tandem_session=".to_string() + &"A".repeat(4000)),
        Just(";;;=;=;tandem_session;".to_string()),
    ]);
    (content_type, range, cond, cookie).prop_map(|(ct, range, cond, cookie)| {
        let mut h = Vec::new();
        if let Some(v) = ct {
            h.push(("content-type".to_string(), v.to_string()));
        }
        if let Some(v) = range {
            h.push(("range".to_string(), v));
        }
        if let Some(v) = cond {
            h.push(("if-none-match".to_string(), v.to_string()));
            h.push(("if-range".to_string(), v.to_string()));
        }
        if let Some(v) = cookie {
            h.push(("cookie".to_string(), v));
        }
        h
    })
}

/// Fills `{param}`s of a documented path with random segments.
fn fill(path: &str, segs: &[String]) -> String {
    let mut out = String::new();
    let mut segs = segs.iter();
    for part in path.split('/').skip(1) {
        out.push('/');
        if part.starts_with('{') && part.ends_with('}') {
            let s = segs.next().map(String::as_str).unwrap_or("1");
            out.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
        } else {
            out.push_str(part);
        }
    }
    out
}

fn request(routes: Vec<(Method, String)>) -> impl Strategy<Value = Req> {
    let method = prop_oneof![
        6 => Just(None),
        1 => prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FROB"])
            .prop_map(Some),
    ];
    let auth = prop_oneof![
        6 => Just(Auth::Token),
        3 => Just(Auth::Peer),
        1 => Just(Auth::Garbage),
        1 => Just(Auth::None),
    ];
    (
        prop::sample::select(routes),
        method,
        prop::collection::vec(segment(), 2),
        query(),
        headers(),
        body(),
        auth,
        any::<[u8; 4]>(),
    )
        .prop_map(|((m, path), other, segs, query, headers, body, auth, ip)| Req {
            method: other.map(str::to_string).unwrap_or_else(|| m.to_string()),
            path: fill(&path, &segs),
            query,
            headers,
            body,
            auth,
            client: SocketAddr::from((ip, 40000)),
        })
}

/// The event trigger, the route with the most client numbers: a trigger-shaped
/// body with random values, to a channel that exists, from a random client.
fn trigger_request() -> impl Strategy<Value = Req> {
    (1..=CHANNELS, trigger_body(), any::<[u8; 4]>()).prop_map(|(ch, body, ip)| Req {
        method: "POST".into(),
        path: format!("/api/v1/channels/{ch}/events"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        client: SocketAddr::from((ip, 40000)),
        ..Req::default()
    })
}

/// A clip of the recorded channel around now, with random `Range` and
/// conditional headers: the numbers a player sends.
fn clip_request() -> impl Strategy<Value = Req> {
    let now = Time90k::from_system(std::time::SystemTime::now());
    let t = move |s: i64| (now + s * 90_000).to_rfc3339();
    (
        1u32..=2,
        -90i64..30,
        -30i64..90,
        headers(),
        prop_oneof![Just("GET"), Just("HEAD")],
    )
        .prop_map(move |(ch, a, b, headers, method)| Req {
            method: method.into(),
            path: format!("/api/v1/channels/{ch}/clip.mp4"),
            query: vec![("start".into(), t(a)), ("end".into(), t(b))],
            headers,
            ..Req::default()
        })
}

#[test]
fn random_requests_at_every_route_never_get_a_5xx_or_a_panic() {
    let site = Site::start();
    let routes = tandem::web::routes();
    assert!(routes.len() >= 14, "{routes:?}");
    let cases: u32 = std::env::var("API_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let counts = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let strategy = prop_oneof![4 => request(routes), 1 => trigger_request(), 2 => clip_request()];
    let result = runner.run(&strategy, |r| {
        let (status, body) = site.send(&r);
        *counts.lock().unwrap().entry(status).or_default() += 1;
        prop_assert!(
            status < 500,
            "{} {} {:?} → {status}: {}",
            r.method,
            r.path,
            r.query,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        Ok(())
    });
    let counts = counts.into_inner().unwrap();
    eprintln!("statuses: {counts:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
    // The requests reached the handlers, not just the router's refusals.
    assert!(counts.contains_key(&200), "{counts:?}");
    assert!(counts.contains_key(&400), "{counts:?}");
    assert!(counts.contains_key(&202), "some triggers were accepted: {counts:?}");
    assert!(counts.contains_key(&206), "some clip ranges were served: {counts:?}");
    // The NVR still records after the storm.
    let views = site.nvr.channel_views();
    assert!(
        views.iter().any(|v| v.number == 1 && v.ingest.connected),
        "channel 1 still connected"
    );
    drop(site);
}

/// Every documented operation is routed (neither 404 nor 405 with valid
/// path parameters), and the document served is the one `routes()` reads.
#[test]
fn every_documented_route_is_routed_and_the_served_document_matches() {
    let site = Site::start();
    for (m, path) in tandem::web::routes() {
        // Parameters that name something real where one exists; a user and a
        // token that do not exist, so nothing of the test's own is deleted.
        let segs: Vec<String> = path
            .split('/')
            .filter(|p| p.starts_with('{'))
            .map(|p| match p {
                "{origin}" => "ab",
                "{name}" => "nobody",
                "{id}" => "999999",
                _ => "1",
            })
            .map(String::from)
            .collect();
        let r = Req {
            method: m.to_string(),
            path: fill(&path, &segs),
            auth: if path.starts_with("/api/v1/import/") {
                Auth::Peer
            } else {
                Auth::Token
            },
            headers: vec![("content-type".into(), "application/json".into())],
            body: if m == Method::POST && path.contains("/events") {
                br#"{"action":"start","type":"door"}"#.to_vec()
            } else {
                Vec::new()
            },
            ..Req::default()
        };
        let (status, body) = site.send(&r);
        // A handler's 404 names what it did not find; the router's has no
        // body and the guard's says "no such route".
        let text = String::from_utf8_lossy(&body);
        let unrouted = status == 405 || status == 404 && (body.is_empty() || text.contains("no such route"));
        assert!(!unrouted && status < 500, "{m} {} → {status}: {text}", r.path);
    }
    let (status, body) = site.send(&Req {
        path: "/api/v1/openapi.json".into(),
        auth: Auth::None,
        ..Req::default()
    });
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut served: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            served.push((m.to_uppercase(), path.clone()));
        }
    }
    let mut listed: Vec<(String, String)> = tandem::web::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    served.sort();
    listed.sort();
    assert_eq!(served, listed);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Every route of the router but the public ones answers 401 without
/// credentials and with garbage ones. The list is the router's own:
/// `web::routes()` reads the document the router is built from, and the
/// router serves no route the document lacks (`web::doc::seal`).
#[test]
fn every_route_but_the_public_ones_answers_401_without_credentials() {
    let site = Site::start();
    let public = tandem::web::public_routes();
    let expected_public = [
        (Method::GET, "/"),
        (Method::GET, "/ui/{file}"),
        (Method::GET, "/api/v1/openapi.json"),
        (Method::GET, "/api/v1/health"),
        (Method::POST, "/api/v1/login"),
    ];
    let mut listed: Vec<(Method, &str)> = public.iter().map(|(m, p)| (m.clone(), p.as_str())).collect();
    listed.sort_by_key(|(m, p)| (p.to_string(), m.to_string()));
    let mut want = expected_public.to_vec();
    want.sort_by_key(|(m, p)| (p.to_string(), m.to_string()));
    assert_eq!(listed, want, "the public routes are exactly these");
    let mut checked = 0;
    for (m, path) in tandem::web::routes() {
        if public.contains(&(m.clone(), path.clone())) {
            continue;
        }
        for auth in [Auth::None, Auth::Garbage] {
            let r = Req {
                method: m.to_string(),
                path: fill(&path, &["1".into(), "1".into()]),
                auth,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{}".to_vec(),
                ..Req::default()
            };
            let (status, body) = site.send(&r);
            assert_eq!(
                status,
                401,
                "{m} {} ({auth:?}): {}",
                r.path,
                String::from_utf8_lossy(&body)
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked} protected routes");
}

/// Writes `head` (and `body`) to the server and reads the status line.
fn raw_status(port: u16, head: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]).to_string();
    line.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {line:?}"))
}

#[test]
fn hostile_requests_over_a_socket_get_their_4xx() {
    let site = Site::start();
    let listener = site.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = tandem::web::endpoint::Endpoint {
        listener,
        tls: None,
        redirect: None,
    };
    let server = site.rt.spawn(tandem::web::serve(endpoint, site.nvr.clone(), async {
        let _ = stopped.await;
    }));
    let auth = format!("Authorization: Bearer {}\r\n", site.token);
    let post = |path: &str, ct: &str, body: &[u8]| {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        raw_status(port, &head, body)
    };
    // Each trigger goes to its own idle channel: rate limits do not mask the answer.
    let mut ch = 2;
    let mut trigger = |ct: &str, body: &[u8]| {
        ch += 1;
        post(&format!("/api/v1/channels/{ch}/events"), ct, body)
    };
    for body in [
        &b"{\"action\":"[..],
        b"{\"action\": 5}",
        b"[]",
        b"{\"action\":\"start\",\"surprise\":1}",
        b"{\"action\":\"pulse\",\"duration\":1e400}",
        b"{\"action\":\"pulse\",\"duration\":-1}",
        b"{\"action\":\"pulse\",\"duration\":18446744073709551616}",
        b"{\"action\":\"pulse\",\"duration\":\"99999999999999999999w\"}",
        b"{\"action\":\"pulse\",\"duration\":1e-320}",
        b"{\"action\":\"pulse\"}",
        b"\xff\xfe{}",
    ] {
        assert_eq!(
            trigger("application/json", body),
            400,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(trigger("text/plain", b"{\"action\":\"start\"}"), 415);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        trigger("application/json", deep.as_bytes()),
        413,
        "deep nesting past the body limit"
    );
    let deep = format!(
        "{{\"action\":\"start\",\"details\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(
        trigger("application/json", deep.as_bytes()),
        400,
        "deep nesting under the body limit"
    );
    let big = format!("{{\"action\":\"start\",\"source\":\"{}\"}}", "x".repeat(100_000));
    assert_eq!(trigger("application/json", big.as_bytes()), 413);
    // A body announced larger than the limit is refused before it is sent.
    let head = format!(
        "POST /api/v1/channels/1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    );
    assert_eq!(raw_status(port, &head, b"{"), 413);
    // Out-of-range numbers in the path and query.
    let get = |target: &str, extra: &str| {
        raw_status(
            port,
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
            b"",
        )
    };
    let a = auth.as_str();
    for target in [
        "/api/v1/channels/18446744073709551616/recordings?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z",
        "/api/v1/channels/-1/clip.mp4?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z",
        "/api/v1/channels/%C3%A9/clip.mp4",
        "/api/v1/channels/1/clip.mp4?start=0000-01-01T00:00:00Z&end=9999-12-31T23:59:59Z",
        "/api/v1/channels/1/recordings?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
        "/api/v1/events?channel=99999999999",
        "/api/v1/events?start=%FF",
    ] {
        let s = get(target, a);
        assert!(
            (400..500).contains(&s) && s != 404 || target.contains("%C3%A9") && s == 400,
            "{target} → {s}"
        );
    }
    // A Range past u64 on a real clip: served, not overflowed.
    let (start, end) = (common::rfc3339_offset(-30.0), common::rfc3339_offset(0.0));
    let clip = format!("/api/v1/channels/1/clip.mp4?start={start}&end={end}");
    let s = get(&clip, &format!("{a}Range: bytes=0-18446744073709551615\r\n"));
    assert!([200, 206].contains(&s), "{s}");
    assert_eq!(get(&clip, &format!("{a}Range: bytes=18446744073709551615-\r\n")), 416);
    // Overlong headers and too many of them.
    assert_eq!(
        get("/api/v1/status", &format!("X-Junk: {}\r\n", "j".repeat(40_000))),
        431
    );
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(get("/api/v1/status", &many), 431);
    let long_uri = format!("/api/v1/status?x={}", "q".repeat(40_000));
    let s = get(&long_uri, "");
    assert!((400..500).contains(&s), "a 40 kB request line → {s}");
    // Garbage credentials are worth exactly as much as none.
    let plain = get("/api/v1/status", "");
    assert!(plain < 500, "{plain}");
    for creds in [
        "Authorization: Bearer \r\n".to_string(),
        "Authorization: Bearer ;;;;\r\n".to_string(),
        format!("Authorization: Bearer {}\r\n", "A".repeat(8000)),
        "Authorization: Basic Zm9vOmJhcg==\r\n".to_string(),
        "Cookie: tandem_session=\r\n".to_string(),
        format!("Cookie: tandem_session={}\r\n", "%".repeat(8000)),
        "Cookie: ;;;=;=\"\r\n".to_string(),
        "Cookie: tandem_session=a; tandem_session=b\r\n".to_string(),
    ] {
        assert_eq!(get("/api/v1/status", &creds), plain, "{creds:?}");
        // The peer-token routes refuse them.
        assert_eq!(get("/api/v1/import/ab/1", &creds), 401, "{creds:?}");
    }
    // Control characters in a header are refused by the HTTP parser itself.
    assert_eq!(get("/api/v1/status", "Authorization: \u{7f}\u{1}\r\n"), 400);
    let _ = stop.send(());
    site.rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(site.dir.path().join("store").exists());
}
