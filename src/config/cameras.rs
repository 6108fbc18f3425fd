//! The `[[network_camera]]` tables: names, RTSP URLs, transport and
//! credentials (inline, from the environment, or from a bounded password file).
//! Must never contact a camera.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, Credentials, NetworkCamera, SecretSource, Transport};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCamera {
    pub(super) name: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) substream_url: Option<Spanned<String>>,
    pub(super) channel: Option<Spanned<i64>>,
    pub(super) transport: Option<Spanned<String>>,
    pub(super) username: Option<Spanned<String>>,
    pub(super) password: Option<Spanned<String>>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) edge_storage: Option<Spanned<bool>>,
    pub(super) replay_url: Option<Spanned<String>>,
    pub(super) priority: Option<Spanned<String>>,
}

/// Checks every network camera; returns them and the set of names given.
pub(super) fn network_cameras(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawCamera>],
    base: &Path,
) -> (Vec<NetworkCamera>, HashSet<String>) {
    let mut cameras = Vec::new();
    let mut names = HashSet::new();
    for (i, cam) in raw.iter().enumerate() {
        let at = cam.span().start;
        let cam = cam.get_ref();
        let prefix = format!("network_camera[{i}]");
        let name = match &cam.name {
            Some(n) if !n.get_ref().trim().is_empty() => {
                if !names.insert(n.get_ref().clone()) {
                    c.err(
                        n.span().start,
                        format!("{prefix}.name"),
                        format!("duplicate camera name `{}`", n.get_ref()),
                    );
                }
                n.get_ref().clone()
            }
            Some(n) => {
                c.err(n.span().start, format!("{prefix}.name"), "must not be empty");
                continue;
            }
            None => {
                c.err(at, format!("{prefix}.name"), "is required");
                continue;
            }
        };
        let prefix = format!("network_camera `{name}`");
        let mut url_creds = None;
        let mut parse_url = |c: &mut Checker, field: &str, v: &Spanned<String>| -> Option<url::Url> {
            match url::Url::parse(v.get_ref()) {
                Ok(mut u) if u.scheme() == "rtsp" || u.scheme() == "rtsps" => {
                    if u.host_str().is_none_or(|h| h.is_empty()) {
                        c.err(v.span().start, format!("{prefix}.{field}"), "URL has no host");
                        return None;
                    }
                    if !u.username().is_empty() {
                        let user = percent(u.username());
                        let pass = percent(u.password().unwrap_or(""));
                        url_creds.get_or_insert(Credentials {
                            username: user,
                            password: pass,
                            source: SecretSource::Inline,
                        });
                        let _ = u.set_username("");
                        let _ = u.set_password(None);
                    }
                    Some(u)
                }
                Ok(u) => {
                    c.err(
                        v.span().start,
                        format!("{prefix}.{field}"),
                        format!("scheme `{}` is not rtsp", u.scheme()),
                    );
                    None
                }
                Err(e) => {
                    c.err(
                        v.span().start,
                        format!("{prefix}.{field}"),
                        format!("`{}` is not a URL: {e}", v.get_ref()),
                    );
                    None
                }
            }
        };
        let url = match &cam.url {
            Some(u) => parse_url(c, "url", u),
            None => {
                c.err(at, format!("{prefix}.url"), "is required");
                None
            }
        };
        let substream_url = cam
            .substream_url
            .as_ref()
            .and_then(|u| parse_url(c, "substream_url", u));
        let replay_url = cam.replay_url.as_ref().and_then(|u| parse_url(c, "replay_url", u));
        let transport = match cam.transport.as_ref().map(|t| (t.get_ref().as_str(), t.span().start)) {
            None | Some(("tcp", _)) => Transport::Tcp,
            Some(("udp", _)) => Transport::Udp,
            Some((other, off)) => {
                c.err(
                    off,
                    format!("{prefix}.transport"),
                    format!("`{other}` is not `tcp` or `udp`"),
                );
                Transport::Tcp
            }
        };
        let password_sources = [&cam.password, &cam.password_env, &cam.password_file]
            .iter()
            .filter(|p| p.is_some())
            .count();
        let password = if password_sources > 0 {
            c.given_secret(
                base,
                at,
                &prefix,
                "password",
                [&cam.password, &cam.password_env, &cam.password_file],
            )
        } else {
            c.secret(&format!("network_camera.{name}.password"))
                .filter(|_| cam.username.is_some())
                .map(|p| (p, SecretSource::Inline))
        };
        let credentials = match (&cam.username, password) {
            (Some(u), p) => {
                let (password, source) = p.unwrap_or((String::new(), SecretSource::Inline));
                Some(Credentials {
                    username: u.get_ref().clone(),
                    password,
                    source,
                })
            }
            (None, _) if password_sources > 0 => {
                c.err(at, format!("{prefix}.username"), "is required when a password is given");
                None
            }
            (None, _) => url_creds,
        };
        let channel = match &cam.channel {
            Some(c2) if (1..=256).contains(c2.get_ref()) => Some(*c2.get_ref() as u32),
            Some(c2) => {
                c.err(
                    c2.span().start,
                    format!("{prefix}.channel"),
                    "must be between 1 and 256",
                );
                None
            }
            None => None,
        };
        let priority = match &cam.priority {
            None => Default::default(),
            Some(p) => crate::failover::capacity::Priority::parse(p.get_ref()).unwrap_or_else(|| {
                c.err(
                    p.span().start,
                    format!("{prefix}.priority"),
                    format!("`{}` is not `high`, `medium`, `low` or `never`", p.get_ref()),
                );
                Default::default()
            }),
        };
        if let Some(url) = url {
            cameras.push(NetworkCamera {
                name,
                url,
                substream_url,
                channel,
                transport,
                credentials,
                edge_storage: cam.edge_storage.as_ref().is_some_and(|e| *e.get_ref()),
                replay_url,
                priority,
            });
        }
    }
    (cameras, names)
}

fn percent(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}
