//! Quoting text that came from outside (a camera's error, a peer's answer, a
//! client's field) in logs, errors and API answers: at most a short excerpt,
//! with control characters escaped, so a hostile peer cannot make a log line,
//! an event row or a JSON answer as large as it likes, nor forge log lines.
//!
//! Must never allocate more than the excerpt itself, whatever the input size.

/// The longest excerpt quoted by default, in characters.
pub const DEFAULT_CHARS: usize = 200;

/// At most `max_chars` characters of `s`, control characters escaped
/// (`\n`, `\u{1b}`), followed by `… (N bytes)` when cut.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(max_chars.min(s.len()) + 24);
    for (shown, c) in s.chars().enumerate() {
        if shown >= max_chars {
            out.push_str(&format!("… ({} bytes)", s.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `excerpt` with the default length.
pub fn short(s: &str) -> String {
    excerpt(s, DEFAULT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_control_characters_escaped() {
        assert_eq!(short("camera closed"), "camera closed");
        assert_eq!(short("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn long_text_is_cut_and_its_size_named() {
        let s = "x".repeat(1 << 20);
        let e = short(&s);
        assert!(e.starts_with(&"x".repeat(DEFAULT_CHARS)));
        assert!(e.ends_with("… (1048576 bytes)"), "{e}");
        assert!(e.len() < DEFAULT_CHARS + 32);
        // Multi-byte characters are never split.
        assert_eq!(excerpt("ééé", 2), "éé… (6 bytes)");
    }
}
