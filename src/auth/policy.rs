//! Which credential each request needs, decided from its method and path
//! alone, and the CSRF check of cookie-authenticated changes. Pure: the
//! access layer (`web::access`) asks and enforces.
//!
//! Invariant: a path this table does not name needs a logged-in user, so a
//! route added later is protected by default. Must never grant by prefix
//! what a differently encoded path could reach: channel numbers are decoded
//! the way the router's path extractor decodes them, and a channel segment
//! that is not a number is refused here rather than left to a handler.

use axum::http::Method;

use super::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone: the web client's files and login call, the health check,
    /// the API document.
    Public,
    /// Only a peer NVR's token (footage sent back by failback).
    Peer,
    /// A peer NVR's failover probe, or a user.
    PeerOrUser,
    /// A peer NVR's federated timeline (a channel's recordings and clips),
    /// or a viewer with the right to the channel.
    PeerOrViewer { channel: u32 },
    /// A user (session or API token) with at least this role, and the right
    /// to this channel when the path names one.
    User { role: Role, channel: Option<u32> },
    /// The path names a channel that is not a number.
    BadChannel,
}

fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

/// Decodes `%XX` as the router's `Path` extractor does, then parses.
fn channel_number(seg: &str) -> Option<u32> {
    let decoded = percent_decode(seg)?;
    decoded.parse().ok()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn need(method: &Method, path: &str) -> Need {
    let get = method == Method::GET || method == Method::HEAD;
    let user = |role| Need::User { role, channel: None };
    match segments(path).as_slice() {
        [""] | ["login"] if get => Need::Public,
        // The web client's own files: code and styles, no data of the site.
        ["ui", _] if get => Need::Public,
        ["api", "v1", "login"] if method == Method::POST => Need::Public,
        ["api", "v1", "health"] | ["api", "v1", "openapi.json"] if get => Need::Public,
        ["api", "v1", "import", ..] => Need::Peer,
        ["api", "v1", "status"] if get => Need::PeerOrUser,
        ["api", "v1", "users" | "audit" | "config", ..] => user(Role::Admin),
        // Sending a test alert reaches people outside: admins only.
        ["api", "v1", "actions", _, "test"] => user(Role::Admin),
        ["api", "v1", "rules" | "pool" | "archive" | "transfers" | "store" | "storage" | "actions", ..] => {
            user(Role::Operator)
        }
        // Every channel's state and the site's failover: an operator's view.
        ["metrics"] => user(Role::Operator),
        ["api", "v1", "channels", n, "recordings" | "clip.mp4"] if get => match channel_number(n) {
            None => Need::BadChannel,
            Some(channel) => Need::PeerOrViewer { channel },
        },
        ["api", "v1", "channels", n, rest @ ..] => match channel_number(n) {
            None => Need::BadChannel,
            Some(ch) => {
                let role = match rest {
                    // Triggering an event changes what is recorded.
                    ["events"] if !get => Role::Operator,
                    _ => Role::Viewer,
                };
                Need::User {
                    role,
                    channel: Some(ch),
                }
            }
        },
        _ => user(Role::Viewer),
    }
}

/// Whether a method can change state (and so needs the CSRF check when it
/// arrives with a cookie).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Compares without an early exit, so timing does not reveal a prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `host[:port]` of an absolute URL (an `Origin` or `Referer`).
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty())
}

/// A WebSocket handshake carries the cookie whichever page opens it, and is
/// not covered by the CORS rules: one from a browser (it sends `Origin`) must
/// come from a page of this host. Clients that are not browsers send none.
pub fn websocket_origin_ok(origin: Option<&str>, host: Option<&str>) -> bool {
    match origin {
        None => true,
        Some(o) => host.is_some_and(|h| authority(o).is_some_and(|a| a.eq_ignore_ascii_case(h))),
    }
}

/// The request's own headers a CSRF decision looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct CsrfInput<'a> {
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub host: Option<&'a str>,
    pub token_header: Option<&'a str>,
}

/// A state-changing request authenticated by a cookie passes when it carries
/// the session's CSRF token, or comes from a page of this same host (Origin,
/// else Referer). A browser attaches the cookie to a foreign site's form
/// post, but the foreign site can neither read the CSRF token nor forge the
/// Origin.
pub fn csrf_ok(i: &CsrfInput<'_>, session_csrf: &str) -> bool {
    if let Some(t) = i.token_header {
        return constant_time_eq(t.as_bytes(), session_csrf.as_bytes());
    }
    let Some(host) = i.host else {
        return false;
    };
    match (i.origin, i.referer) {
        (Some(o), _) => authority(o).is_some_and(|a| a.eq_ignore_ascii_case(host)),
        (None, Some(r)) => authority(r).is_some_and(|a| a.eq_ignore_ascii_case(host)),
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_origin() {
        let host = Some("nvr:8080");
        assert!(websocket_origin_ok(None, host), "not a browser");
        assert!(websocket_origin_ok(Some("https://nvr:8080"), host));
        assert!(websocket_origin_ok(Some("http://NVR:8080"), host));
        assert!(!websocket_origin_ok(Some("https://evil.example"), host));
        assert!(!websocket_origin_ok(Some("https://nvr:8081"), host));
        assert!(!websocket_origin_ok(Some("null"), host));
        assert!(!websocket_origin_ok(Some("https://nvr:8080"), None));
    }

    #[test]
    fn the_table() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(need(&g, "/"), Need::Public);
        assert_eq!(
            need(&p, "/"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
        assert_eq!(need(&p, "/api/v1/login"), Need::Public);
        assert_eq!(
            need(&g, "/api/v1/login"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
        assert_eq!(need(&g, "/api/v1/health"), Need::Public);
        assert_eq!(need(&g, "/ui/app.js"), Need::Public);
        assert_eq!(
            need(&p, "/ui/app.js"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
        assert_eq!(
            need(&g, "/ui/a/b"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
        assert_eq!(need(&g, "/api/v1/openapi.json"), Need::Public);
        let admin = Need::User {
            role: Role::Admin,
            channel: None,
        };
        let operator = Need::User {
            role: Role::Operator,
            channel: None,
        };
        assert_eq!(need(&p, "/api/v1/actions/mail/test"), admin);
        assert_eq!(need(&g, "/api/v1/actions/mail/outbox"), operator);
        assert_eq!(need(&g, "/api/v1/actions"), operator);
        assert_eq!(need(&Method::PUT, "/api/v1/import/a/b"), Need::Peer);
        assert_eq!(need(&g, "/api/v1/status"), Need::PeerOrUser);
        assert_eq!(
            need(&g, "/api/v1/channels/3/clip.mp4"),
            Need::PeerOrViewer { channel: 3 }
        );
        assert_eq!(
            need(&g, "/api/v1/channels/%33/recordings"),
            Need::PeerOrViewer { channel: 3 }
        );
        assert_eq!(need(&g, "/api/v1/channels/x/recordings"), Need::BadChannel);
        assert_eq!(
            need(&Method::POST, "/api/v1/channels/3/recordings"),
            Need::User {
                role: Role::Viewer,
                channel: Some(3)
            }
        );
        assert_eq!(
            need(&g, "/api/v1/users"),
            Need::User {
                role: Role::Admin,
                channel: None
            }
        );
        assert_eq!(
            need(&Method::DELETE, "/api/v1/users/x"),
            Need::User {
                role: Role::Admin,
                channel: None
            }
        );
        assert_eq!(
            need(&g, "/api/v1/audit"),
            Need::User {
                role: Role::Admin,
                channel: None
            }
        );
        assert_eq!(
            need(&g, "/api/v1/storage"),
            Need::User {
                role: Role::Operator,
                channel: None
            }
        );
        for p in ["/api/v1/rules", "/api/v1/pool", "/api/v1/archive"] {
            assert_eq!(
                need(&g, p),
                Need::User {
                    role: Role::Operator,
                    channel: None
                },
                "{p}"
            );
        }
        assert_eq!(
            need(&g, "/api/v1/channels/2/clip.mp4"),
            Need::PeerOrViewer { channel: 2 }
        );
        assert_eq!(
            need(&p, "/api/v1/channels/2/events"),
            Need::User {
                role: Role::Operator,
                channel: Some(2)
            }
        );
        assert_eq!(
            need(&g, "/api/v1/channels"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
        assert_eq!(
            need(&g, "/api/v1/something-new"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
        assert_eq!(
            need(&g, "/api/v1/health/x"),
            Need::User {
                role: Role::Viewer,
                channel: None
            }
        );
    }

    #[test]
    fn encoded_channel_numbers_are_decoded_or_refused() {
        let g = Method::GET;
        assert_eq!(
            need(&g, "/api/v1/channels/%32/recordings"),
            Need::PeerOrViewer { channel: 2 }
        );
        assert_eq!(
            need(&g, "/api/v1/channels/02/recordings"),
            Need::PeerOrViewer { channel: 2 }
        );
        assert_eq!(need(&g, "/api/v1/channels/x/recordings"), Need::BadChannel);
        assert_eq!(need(&g, "/api/v1/channels/%zz/recordings"), Need::BadChannel);
        assert_eq!(need(&g, "/api/v1/channels/99999999999/recordings"), Need::BadChannel);
        assert_eq!(need(&g, "/api/v1/channels/%FF/recordings"), Need::BadChannel);
    }

    #[test]
    fn csrf() {
        let host = Some("nvr.local:8080");
        let ok = |origin, referer, token| {
            csrf_ok(
                &CsrfInput {
                    origin,
                    referer,
                    host,
                    token_header: token,
                },
                "sekrit",
            )
        };
        assert!(ok(Some("http://nvr.local:8080"), None, None));
        assert!(ok(Some("https://NVR.local:8080"), None, None));
        assert!(!ok(Some("http://evil.example"), None, None));
        assert!(!ok(Some("null"), None, None));
        assert!(!ok(Some("http://nvr.local:8080.evil.example"), None, None));
        assert!(ok(None, Some("http://nvr.local:8080/index.html?x"), None));
        assert!(!ok(None, Some("http://evil.example/nvr.local:8080"), None));
        assert!(!ok(None, None, None));
        assert!(ok(None, None, Some("sekrit")));
        assert!(!ok(Some("http://nvr.local:8080"), None, Some("wrong")));
        assert!(!changes_state(&Method::GET));
        assert!(changes_state(&Method::DELETE));
    }
}
