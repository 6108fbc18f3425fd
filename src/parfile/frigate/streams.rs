//! Frigate input paths → a Tandem camera address and credentials: user and
//! password taken out of the URL, `{FRIGATE_…}` substitutions kept as the
//! name of the variable (`password_env`), go2rtc restreams
//! (`rtsp://127.0.0.1:8554/NAME`) followed to the source they restream.
//! Pure; must never read the environment or carry a resolved secret.

use super::model::{Ordered, Sources};

/// A camera's password as Frigate gives it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Secret {
    /// `{FRIGATE_RTSP_PASSWORD}`: Frigate substitutes the variable at start.
    Env(String),
    Literal(String),
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Stream {
    /// The address without user information.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A `{FRIGATE_…}` user name, which Tandem cannot take by reference.
    pub username_env: Option<String>,
}

/// `{NAME}` → `NAME`.
fn substitution(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    (!inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(inner)
}

/// Splits an RTSP input path; the error says why it cannot be a Tandem camera.
pub(super) fn split(raw: &str) -> Result<Stream, String> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| format!("`{raw}` is not a URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "rtsp" && scheme != "rtsps" {
        return Err(format!("`{scheme}://` is not RTSP; Tandem records RTSP cameras only"));
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, address) = match rest[..auth_end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if address.contains('{') {
        return Err(
            "an environment substitution in the address cannot be imported (only the password may be one)".into(),
        );
    }
    let url = format!("{scheme}://{address}");
    url::Url::parse(&url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let mut stream = Stream {
        url,
        username: None,
        password: None,
        username_env: None,
    };
    if let Some(info) = userinfo {
        let (user, pass) = info.split_once(':').unwrap_or((info, ""));
        if let Some(var) = substitution(user) {
            stream.username_env = Some(var.to_string());
        } else if user.contains('{') {
            return Err("a user name mixing text and `{…}` cannot be imported".into());
        } else if !user.is_empty() {
            stream.username = Some(decode(user));
        }
        if let Some(var) = substitution(pass) {
            stream.password = Some(Secret::Env(var.to_string()));
        } else if pass.contains('{') {
            return Err("a password mixing text and `{…}` cannot be imported; use one variable".into());
        } else if !pass.is_empty() {
            stream.password = Some(Secret::Literal(decode(pass)));
        }
    }
    Ok(stream)
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The go2rtc stream an input restreams, if it is one: Frigate's bundled
/// go2rtc serves RTSP on port 8554 of the same host.
pub(super) fn restream_name(raw: &str) -> Option<String> {
    let u = url::Url::parse(raw.trim()).ok()?;
    let local = matches!(u.host_str()?, "127.0.0.1" | "localhost" | "[::1]" | "::1");
    if !local || u.port() != Some(8554) {
        return None;
    }
    let name = u.path().trim_start_matches('/');
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// The first RTSP source of go2rtc stream `name` (`ffmpeg:` prefixes and
/// `#…` options stripped), or why there is none.
pub(super) fn go2rtc_source(streams: Option<&Ordered<Sources>>, name: &str) -> Result<String, String> {
    let Some((_, sources)) = streams.and_then(|s| s.0.iter().find(|(n, _)| n == name)) else {
        return Err(format!(
            "restreams go2rtc stream `{name}`, which go2rtc.streams does not define"
        ));
    };
    let list: Vec<String> = match sources {
        Sources::One(s) => vec![s.clone()],
        Sources::Many(v) => v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
    };
    list.iter()
        .map(|s| {
            let s = s.trim();
            let s = s.strip_prefix("ffmpeg:").unwrap_or(s);
            s.split('#').next().unwrap_or(s).to_string()
        })
        .find(|s| {
            let l = s.to_ascii_lowercase();
            l.starts_with("rtsp://") || l.starts_with("rtsps://")
        })
        .ok_or_else(|| {
            format!(
                "restreams go2rtc stream `{name}`, whose sources are not RTSP ({})",
                list.join(", ")
            )
        })
}
