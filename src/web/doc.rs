//! The OpenAPI 3 document of the HTTP API and the guard that keeps it true.
//!
//! The document is generated from the same registrations that build the
//! router (`web::api`, one `utoipa_axum::routes!` per handler annotated with
//! `#[utoipa::path]`), so a documented route is a routed one. The other
//! direction — a route added with a plain `.route()` that the document does
//! not list — is closed by `seal`: a layer on every route that refuses (404,
//! or 405 for an undocumented method of a documented path) any request whose
//! matched route is not an operation of the document, and logs the mistake.
//!
//! Each operation names who may call it in the extension `x-tandem-role`
//! (`public`, `peer`, `viewer`, `operator`, `admin`); `openapi()` turns that
//! into the operation's security requirements (bearer or session cookie, the
//! peer token for imports, none for public routes).
//!
//! Owns no request handling beyond serving the document; must never hold any
//! data of the site (the document is public).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;

use super::ApiError;

/// The extension each operation carries: who may call it.
pub const ROLE_EXTENSION: &str = "x-tandem-role";
/// Security scheme names in the document.
pub const BEARER: &str = "bearer";
pub const COOKIE: &str = "session_cookie";
pub const PEER: &str = "peer_token";
/// The session cookie's name, as the document states it.
pub const SESSION_COOKIE: &str = "tandem_session";

/// The error body every 4xx and 5xx carries.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, naming the field, parameter or header.
    pub error: String,
}

/// An MP4 file's bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Mp4(pub Vec<u8>);

/// The document's frame before the routes are added: title, version, the
/// security schemes.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Tandem NVR HTTP API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Recorded footage, clips, events and the NVR's health. Every operation names who may \
                     call it in `x-tandem-role`; all but the public ones need a bearer token \
                     (`Authorization: Bearer …`) or a session cookie. Errors are JSON `{\"error\": \"…\"}` \
                     naming what was wrong.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API token (`POST /api/v1/tokens`)"))
                .build(),
        ),
    );
    components.add_security_scheme(
        COOKIE,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            SESSION_COOKIE,
            "The session cookie `POST /api/v1/login` sets",
        ))),
    );
    components.add_security_scheme(
        PEER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The failover peer token (`failover.peer_token`), accepted only by the import routes",
                ))
                .build(),
        ),
    );
    doc
}

/// Every operation of a path item, with its method.
pub fn operations(item: &PathItem) -> Vec<(Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, o)| o.as_ref().map(|o| (m, o)))
    .collect()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(|o| o.as_mut())
}

/// Who may call an operation, from its `x-tandem-role` extension.
pub fn role_of(op: &Operation) -> Option<&str> {
    op.extensions.as_ref()?.get(ROLE_EXTENSION)?.as_str()
}

/// Fills each operation's security requirements from its role: public →
/// none, peer → the peer token, any user role → bearer or cookie.
fn apply_security(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            op.security = Some(match role_of(op) {
                Some("public") => Vec::new(),
                Some("peer") => vec![SecurityRequirement::new(PEER, Vec::<String>::new())],
                _ => vec![
                    SecurityRequirement::new(BEARER, Vec::<String>::new()),
                    SecurityRequirement::new(COOKIE, Vec::<String>::new()),
                ],
            });
        }
    }
}

/// The API's document, generated once from the registrations.
pub fn openapi() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = super::api(None).split_for_parts();
        apply_security(&mut doc);
        doc
    })
}

/// Every (method, path) the router serves, taken from the document; paths
/// are written as the router writes them (`/api/v1/channels/{n}/clip.mp4`).
pub fn routes() -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for (path, item) in &openapi().paths.paths {
        for (m, _) in operations(item) {
            out.push((m, path.clone()));
        }
    }
    out
}

/// The routes anyone may call without credentials (`x-tandem-role: public`).
pub fn public_routes() -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for (path, item) in &openapi().paths.paths {
        for (m, op) in operations(item) {
            if role_of(op) == Some("public") {
                out.push((m, path.clone()));
            }
        }
    }
    out
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "system",
    summary = "This document",
    description = "The OpenAPI 3 description of every route, generated from the code that routes them.",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
    extensions(("x-tandem-role" = json!("public")))
)]
pub async fn openapi_json() -> Response {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    match JSON.get_or_init(|| openapi().to_json().map_err(|e| e.to_string())) {
        Ok(j) => ([(header::CONTENT_TYPE, "application/json")], j.clone()).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// The operations a router may serve: (method, path) pairs, and the paths.
#[derive(Debug, Default)]
struct Documented {
    ops: HashSet<(Method, String)>,
    paths: BTreeSet<String>,
}

/// Splits `api` into its router and document and puts the guard on every
/// route: a request whose matched route is not an operation of the document
/// is refused, so a route added around the registration cannot be served.
pub fn seal<S>(api: OpenApiRouter<S>) -> (Router<S>, OpenApi)
where
    S: Clone + Send + Sync + 'static,
{
    let (router, doc) = api.split_for_parts();
    let mut known = Documented::default();
    for (path, item) in &doc.paths.paths {
        known.paths.insert(path.clone());
        for (m, _) in operations(item) {
            known.ops.insert((m, path.clone()));
        }
    }
    let router = router.layer(axum::middleware::from_fn_with_state(Arc::new(known), documented_only));
    (router, doc)
}

async fn documented_only(State(known): State<Arc<Documented>>, req: Request, next: Next) -> Response {
    // Unmatched requests carry no MatchedPath: the router's own 404/405.
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(req).await;
    };
    // The router answers HEAD with the GET handler.
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    if known.ops.contains(&(method.clone(), path.clone())) {
        return next.run(req).await;
    }
    tracing::error!("{method} {path} is routed but not in the OpenAPI document; refused (register it with `routes!`)");
    if known.paths.contains(&path) {
        ApiError::status(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here")).into_response()
    } else {
        ApiError::not_found("no such route").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;
    use utoipa_axum::routes;

    #[utoipa::path(get, path = "/documented", responses((status = 200)), extensions(("x-tandem-role" = json!("viewer"))))]
    async fn documented() -> &'static str {
        "ok"
    }

    async fn status(r: &Router, method: Method, uri: &str) -> StatusCode {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        r.clone().oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_route_added_around_the_registration_is_refused() {
        let api = OpenApiRouter::<()>::new()
            .routes(routes!(documented))
            .route("/sneaky", get(|| async { "served" }))
            .route("/documented", axum::routing::post(|| async { "served" }));
        let (router, doc) = seal(api);
        assert!(doc.paths.paths.contains_key("/documented"));
        assert!(!doc.paths.paths.contains_key("/sneaky"));
        assert_eq!(status(&router, Method::GET, "/documented").await, StatusCode::OK);
        assert_eq!(status(&router, Method::HEAD, "/documented").await, StatusCode::OK);
        assert_eq!(status(&router, Method::GET, "/sneaky").await, StatusCode::NOT_FOUND);
        assert_eq!(
            status(&router, Method::POST, "/documented").await,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(status(&router, Method::GET, "/nowhere").await, StatusCode::NOT_FOUND);
    }

    #[test]
    fn every_operation_names_its_role_and_security() {
        let doc = openapi();
        let roles = ["public", "peer", "viewer", "operator", "admin"];
        assert!(routes().len() >= 25, "{:?}", routes());
        for (path, item) in &doc.paths.paths {
            for (m, op) in operations(item) {
                let role = role_of(op).unwrap_or_else(|| panic!("{m} {path} has no {ROLE_EXTENSION}"));
                assert!(roles.contains(&role), "{m} {path}: role `{role}`");
                let sec = op.security.as_ref().unwrap();
                assert_eq!(sec.is_empty(), role == "public", "{m} {path}");
                // A success answer is described (101 for the live WebSocket).
                assert!(
                    op.responses.responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{m} {path}"
                );
            }
        }
        let public = public_routes();
        for want in [
            (Method::GET, "/"),
            (Method::GET, "/api/v1/openapi.json"),
            (Method::GET, "/api/v1/health"),
            (Method::POST, "/api/v1/login"),
        ] {
            assert!(
                public.iter().any(|(m, p)| *m == want.0 && p == want.1),
                "{want:?} public"
            );
        }
        let json = serde_json::to_value(doc).unwrap();
        assert_eq!(json["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        assert_eq!(json["components"]["securitySchemes"][BEARER]["scheme"], "bearer");
        assert_eq!(json["components"]["securitySchemes"][COOKIE]["in"], "cookie");
        let trigger = &json["paths"]["/api/v1/channels/{n}/events"]["post"];
        assert_eq!(trigger[ROLE_EXTENSION], "operator");
        assert!(trigger["requestBody"].is_object(), "{trigger}");
        let clip = &json["paths"]["/api/v1/channels/{n}/clip.mp4"]["get"];
        let names: Vec<&str> = clip["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["n", "start", "end", "federated"]);
    }

    /// The role the document states is the one the access layer enforces.
    #[test]
    fn every_documented_role_is_the_access_layers() {
        use crate::auth::policy::{need, Need};
        for (path, item) in &openapi().paths.paths {
            // A concrete request path: channel 1, any other parameter `x1`.
            let concrete: String = path
                .split('/')
                .map(|seg| match seg {
                    "{n}" => "1",
                    s if s.starts_with('{') => "x1",
                    s => s,
                })
                .collect::<Vec<_>>()
                .join("/");
            for (m, op) in operations(item) {
                let enforced = match need(&m, &concrete) {
                    Need::Public => "public",
                    Need::Peer => "peer",
                    // Peers read the status too; users need to be viewers.
                    Need::PeerOrUser | Need::PeerOrViewer { .. } => "viewer",
                    Need::User { role, .. } => role.as_str(),
                    Need::BadChannel => panic!("{m} {concrete}: the access layer finds no channel"),
                };
                assert_eq!(role_of(op), Some(enforced), "{m} {path}");
            }
        }
    }
}
