//! Message templates: `"{nvr}: {type} on {channel_name} at {start}"`.
//!
//! A template is parsed once, when the configuration is read, so that an
//! unknown template field is a configuration error naming the field instead of a
//! surprise in a message at three in the morning. Rendering is a pure
//! function of the template and the values; it never fails and never reads
//! the clock. `{{` and `}}` write literal braces.

use std::fmt;

/// The fields (`{name}`) a template may use.
pub const TEMPLATE_FIELDS: [&str; 9] = [
    "nvr",
    "channel",
    "channel_name",
    "type",
    "phase",
    "start",
    "end",
    "link",
    "snapshot_link",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

/// A parsed template; `source()` gives back the text it was parsed from.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

/// The values of one message's template fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub nvr: String,
    /// The channel number, or empty for an NVR-wide event.
    pub channel: String,
    pub channel_name: String,
    pub kind: String,
    /// "started", "ended" or empty for a moment.
    pub phase: String,
    /// In the site's time zone, e.g. "2026-11-23 19:04:05 CET".
    pub start: String,
    /// Empty while the event goes on.
    pub end: String,
    /// Where to watch the event (the web client), empty when unknown.
    pub link: String,
    /// A signed, expiring link to the event's snapshot; empty when none.
    pub snapshot_link: String,
}

impl Fields {
    fn get(&self, name: &str) -> &str {
        match name {
            "nvr" => &self.nvr,
            "channel" => &self.channel,
            "channel_name" => &self.channel_name,
            "type" => &self.kind,
            "phase" => &self.phase,
            "start" => &self.start,
            "end" => &self.end,
            "link" => &self.link,
            "snapshot_link" => &self.snapshot_link,
            _ => "",
        }
    }
}

impl Template {
    /// Parses `text`; the error names the first unknown or unclosed
    /// template field and lists the known ones.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let brace = rest.as_bytes()[i];
            let after = &rest[i + 1..];
            if after.as_bytes().first() == Some(&brace) {
                lit.push(brace as char);
                rest = &after[1..];
                continue;
            }
            if brace == b'}' {
                return Err("a lone `}` (write `}}` for a brace)".into());
            }
            let Some(end) = after.find('}') else {
                return Err("a `{` that is not closed (write `{{` for a brace)".into());
            };
            let name = &after[..end];
            let Some(known) = TEMPLATE_FIELDS.iter().find(|p| **p == name) else {
                return Err(format!(
                    "`{{{name}}}` is not a template field (use {})",
                    TEMPLATE_FIELDS.map(|p| format!("{{{p}}}")).join(", ")
                ));
            };
            if !lit.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Field(known));
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template {
            source: text.to_string(),
            pieces,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, f: &Fields) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(name) => out.push_str(f.get(name)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            nvr: "nvr-a".into(),
            channel: "3".into(),
            channel_name: "Lobby".into(),
            kind: "motion".into(),
            phase: "started".into(),
            start: "2026-11-23 19:04:05 CET".into(),
            end: String::new(),
            link: "https://nvr/#/ch/3".into(),
            snapshot_link: "https://nvr/s.jpg".into(),
        }
    }

    #[test]
    fn every_template_field_renders_its_value() {
        let all = TEMPLATE_FIELDS.map(|p| format!("<{{{p}}}>")).join("");
        let t = Template::parse(&all).unwrap();
        assert_eq!(
            t.render(&fields()),
            "<nvr-a><3><Lobby><motion><started><2026-11-23 19:04:05 CET><><https://nvr/#/ch/3><https://nvr/s.jpg>"
        );
        assert_eq!(t.source(), all);
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("{{x}} {type} }}").unwrap();
        assert_eq!(t.render(&fields()), "{x} motion }");
    }

    #[test]
    fn unknown_and_unclosed_template_fields_are_errors() {
        let e = Template::parse("{camera} moved").unwrap_err();
        assert!(
            e.contains("`{camera}` is not a template field") && e.contains("{channel_name}"),
            "{e}"
        );
        assert!(Template::parse("{type").unwrap_err().contains("not closed"));
        assert!(Template::parse("a } b").unwrap_err().contains("lone"));
        assert!(Template::parse("{}").is_err());
    }

    #[test]
    fn text_without_template_fields_is_kept_whole_including_unicode() {
        let t = Template::parse("Bewegung erkannt — 動き").unwrap();
        assert_eq!(t.render(&Fields::default()), "Bewegung erkannt — 動き");
        assert_eq!(Template::parse("").unwrap().render(&fields()), "");
    }
}
