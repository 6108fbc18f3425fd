//! SMS segmentation: how many segments a text takes (GSM 03.38 septets, or
//! UCS-2 code units when a character is outside the GSM alphabet) and how a
//! text too long for an action's `max_segments` is cut or split.
//!
//! Pure: no I/O, no clock. Must never cut inside a character that takes two
//! units (a GSM extension escape such as `€`, a UTF-16 surrogate pair such as
//! an emoji): it works on `char`s and packs whole characters into segments,
//! as a phone reassembling a concatenated SMS expects.

use crate::config::SmsOverflow;

/// The GSM 03.38 default alphabet, indexed by its 7-bit code. 0x1B is the
/// escape to the extension table, not a character (NUL stands in for it).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\0', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table's characters and their codes after the escape: each
/// costs two septets.
const EXTENSION: [(char, u8); 10] = [
    ('\u{0c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// At most this many separate messages come out of `Split`; the last one
/// is truncated if the text is longer still.
pub const MAX_MESSAGES: usize = 10;

/// A cut within this many characters after a space moves back to the space,
/// so that a split does not break a word.
const NEAR_SPACE: usize = 20;

/// The GSM-7 code of `c` in the default alphabet.
pub fn basic_code(c: char) -> Option<u8> {
    if c == '\0' {
        return None;
    }
    BASIC.iter().position(|&b| b == c).map(|i| i as u8)
}

/// The code of `c` in the extension table (sent after the 0x1B escape).
pub fn extension_code(c: char) -> Option<u8> {
    EXTENSION.iter().find(|(e, _)| *e == c).map(|(_, code)| *code)
}

/// Which characters a route can carry as GSM-7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gsm7 {
    /// The default alphabet and its extension table (an SMS gateway).
    Full,
    /// The default alphabet only, without `Ξ` (0x1A): a modem in text mode
    /// reads the escape 0x1B as "cancel" and 0x1A as "send", so a text that
    /// needs either goes as UCS-2.
    BasicOnly,
}

/// How a text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38, 7 bits a character (extension characters take two).
    Gsm7,
    /// UCS-2 (UTF-16 code units; a character beyond the BMP takes two).
    Ucs2,
}

impl Coding {
    /// Units in a lone SMS and in each part of a concatenated one (whose
    /// user-data header takes 6 bytes).
    fn limits(self) -> (usize, usize) {
        match self {
            Coding::Gsm7 => (160, 153),
            Coding::Ucs2 => (70, 67),
        }
    }
}

/// The coding `text` needs on a route that carries `gsm7`.
pub fn coding(text: &str, gsm7: Gsm7) -> Coding {
    let ok = |c: char| match gsm7 {
        Gsm7::Full => basic_code(c).is_some() || extension_code(c).is_some(),
        Gsm7::BasicOnly => basic_code(c).is_some_and(|b| b != 0x1A),
    };
    if text.chars().all(ok) {
        Coding::Gsm7
    } else {
        Coding::Ucs2
    }
}

/// The units one character takes in `coding`.
fn cost(c: char, coding: Coding) -> usize {
    match coding {
        Coding::Gsm7 if extension_code(c).is_some() => 2,
        Coding::Gsm7 => 1,
        Coding::Ucs2 => c.len_utf16(),
    }
}

/// The septets (GSM-7) or UCS-2 units `text` takes, with its coding.
pub fn units(text: &str, gsm7: Gsm7) -> (Coding, usize) {
    let coding = coding(text, gsm7);
    (coding, text.chars().map(|c| cost(c, coding)).sum())
}

/// The segments `text` takes: one if it fits a lone SMS, else the parts of a
/// concatenated SMS, packed with whole characters.
pub fn segments(text: &str, gsm7: Gsm7) -> usize {
    let (coding, total) = units(text, gsm7);
    let (single, multi) = coding.limits();
    if total <= single {
        return 1;
    }
    let (mut n, mut used) = (1, 0);
    for c in text.chars().map(|c| cost(c, coding)) {
        if used + c > multi {
            n += 1;
            used = 0;
        }
        used += c;
    }
    n
}

fn fits(text: &str, max_segments: usize, gsm7: Gsm7) -> bool {
    segments(text, gsm7) <= max_segments
}

/// The most characters of `chars` that, followed by `suffix`, fit.
/// `suffix` alone must fit (it is at most "…").
fn longest_prefix(chars: &[char], suffix: &str, max_segments: usize, gsm7: Gsm7) -> usize {
    let with = |k: usize| {
        let mut s: String = chars[..k].iter().collect();
        s.push_str(suffix);
        s
    };
    // Invariant: `lo` characters fit, `hi + 1` do not (or do not exist).
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(&with(mid), max_segments, gsm7) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Where to cut `chars` whose first `k` fit: at the last space if one is
/// near, else at `k`.
fn near_space(chars: &[char], k: usize) -> usize {
    chars[..k]
        .iter()
        .rposition(|c| *c == ' ')
        .filter(|&i| i > 0 && k - i <= NEAR_SPACE)
        .unwrap_or(k)
}

/// `chars` cut (at a near space) to fit `max_segments` with a mark that something is missing:
/// "…" in a UCS-2 text; "..." in a GSM-7 one, which has no ellipsis
/// character (adding one would make the whole text UCS-2, less than half
/// as long).
fn truncate(chars: &[char], max_segments: usize, gsm7: Gsm7) -> String {
    let text: String = chars.iter().collect();
    if fits(&text, max_segments, gsm7) {
        return text;
    }
    let mark = match coding(&text, gsm7) {
        Coding::Gsm7 => "...",
        Coding::Ucs2 => "…",
    };
    let k = near_space(chars, longest_prefix(chars, mark, max_segments, gsm7));
    let mut s: String = chars[..k].iter().collect();
    s.truncate(s.trim_end().len());
    s.push_str(mark);
    s
}

/// `text` made to fit `max_segments` segments a message on a route that
/// carries `gsm7`: unchanged if it fits; else cut (`Truncate`, one message)
/// or split into up to `MAX_MESSAGES` messages (`Split`), cut at a space
/// where one is near.
pub fn fit(text: &str, max_segments: u32, overflow: SmsOverflow, gsm7: Gsm7) -> Vec<String> {
    let max = max_segments.max(1) as usize;
    let chars: Vec<char> = text.chars().collect();
    if overflow == SmsOverflow::Truncate || fits(text, max, gsm7) {
        return vec![truncate(&chars, max, gsm7)];
    }
    let mut out = Vec::new();
    let mut rest = &chars[..];
    while !rest.is_empty() {
        if out.len() == MAX_MESSAGES - 1 {
            out.push(truncate(rest, max, gsm7));
            break;
        }
        let whole: String = rest.iter().collect();
        if fits(&whole, max, gsm7) {
            out.push(whole.trim_end().to_string());
            break;
        }
        // At least one character fits: none takes more than two units.
        let cut = near_space(rest, longest_prefix(rest, "", max, gsm7).max(1));
        let part: String = rest[..cut].iter().collect();
        out.push(part.trim_end().to_string());
        rest = &rest[cut..];
        while rest.first().is_some_and(|c| c.is_whitespace()) {
            rest = &rest[1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use SmsOverflow::{Split, Truncate};

    #[test]
    fn the_alphabet_has_128_distinct_codes_and_the_extension_ten() {
        for (i, c) in BASIC.iter().enumerate() {
            if i != 0x1B {
                assert_eq!(basic_code(*c), Some(i as u8), "{c:?}");
                assert_eq!(extension_code(*c), None, "{c:?}");
            }
        }
        assert_eq!(basic_code('\0'), None);
        for (c, code) in EXTENSION {
            assert_eq!(extension_code(c), Some(code));
            assert_eq!(basic_code(c), None, "{c:?}");
        }
    }

    #[test]
    fn gsm_text_counts_septets_with_extension_characters_as_two() {
        assert_eq!(units("Hello", Gsm7::Full), (Coding::Gsm7, 5));
        assert_eq!(units("", Gsm7::Full), (Coding::Gsm7, 0));
        assert_eq!(units("@£$¥èéùìòÇ\nØø\rÅåΔ_", Gsm7::Full), (Coding::Gsm7, 18));
        for c in "^{}\\[~]|€\u{0c}".chars() {
            assert_eq!(units(&c.to_string(), Gsm7::Full), (Coding::Gsm7, 2), "{c:?}");
        }
        assert_eq!(units("a€b", Gsm7::Full), (Coding::Gsm7, 4));
    }

    #[test]
    fn anything_outside_gsm_makes_the_whole_text_ucs2() {
        assert_eq!(units("Grüße", Gsm7::Full), (Coding::Gsm7, 5), "ü and ß are GSM");
        assert_eq!(units("Straße ç", Gsm7::Full), (Coding::Ucs2, 8), "lower-case ç is not");
        assert_eq!(units("Привет", Gsm7::Full), (Coding::Ucs2, 6));
        assert_eq!(units("a€", Gsm7::Full).0, Coding::Gsm7);
        // In UCS-2, € is one unit; an emoji is a surrogate pair.
        assert_eq!(units("€ç", Gsm7::Full), (Coding::Ucs2, 2));
        assert_eq!(units("ok 😀", Gsm7::Full), (Coding::Ucs2, 5));
        assert_eq!(
            units("\u{1b}", Gsm7::Full).0,
            Coding::Ucs2,
            "a raw escape is no character"
        );
        assert_eq!(units("…", Gsm7::Full).0, Coding::Ucs2);
    }

    #[test]
    fn a_modem_route_sends_extension_characters_and_xi_as_ucs2() {
        assert_eq!(coding("a€", Gsm7::BasicOnly), Coding::Ucs2);
        assert_eq!(coding("[x]", Gsm7::BasicOnly), Coding::Ucs2);
        assert_eq!(coding("Ξ", Gsm7::BasicOnly), Coding::Ucs2);
        assert_eq!(coding("Ξ", Gsm7::Full), Coding::Gsm7);
        assert_eq!(coding("Door @ 12:00, ok?", Gsm7::BasicOnly), Coding::Gsm7);
    }

    #[test]
    fn segment_boundaries() {
        let g = |n| "a".repeat(n);
        assert_eq!(segments("", Gsm7::Full), 1);
        assert_eq!(segments(&g(160), Gsm7::Full), 1);
        assert_eq!(segments(&g(161), Gsm7::Full), 2);
        assert_eq!(segments(&g(306), Gsm7::Full), 2);
        assert_eq!(segments(&g(307), Gsm7::Full), 3);
        assert_eq!(segments(&g(1530), Gsm7::Full), 10);
        let u = |n| "ж".repeat(n);
        assert_eq!(segments(&u(70), Gsm7::Full), 1);
        assert_eq!(segments(&u(71), Gsm7::Full), 2);
        assert_eq!(segments(&u(134), Gsm7::Full), 2);
        assert_eq!(segments(&u(135), Gsm7::Full), 3);
        // 80 euro signs are 160 septets: one SMS; 81 are two.
        assert_eq!(segments(&"€".repeat(80), Gsm7::Full), 1);
        assert_eq!(segments(&"€".repeat(81), Gsm7::Full), 2);
        // Greedy packing never splits an escape: 152 septets then a €
        // starts the second part.
        let s = format!("{}€{}", g(152), g(10));
        assert_eq!(segments(&s, Gsm7::Full), 2);
        let s = format!("{}€{}", g(152), g(152));
        assert_eq!(segments(&s, Gsm7::Full), 3, "153 + 2 + 152 > 306");
        // Nor a surrogate pair: 66 units then an emoji.
        let s = format!("{}😀{}", u(66), u(10));
        assert_eq!(segments(&s, Gsm7::Full), 2);
        let s = format!("{}😀{}", u(66), u(66));
        assert_eq!(segments(&s, Gsm7::Full), 3);
    }

    #[test]
    fn a_text_that_fits_is_unchanged_either_way() {
        for o in [Truncate, Split] {
            assert_eq!(fit("Door on Lobby", 1, o, Gsm7::Full), vec!["Door on Lobby"]);
            assert_eq!(fit("", 1, o, Gsm7::Full), vec![""]);
            let two = "a".repeat(306);
            assert_eq!(fit(&two, 2, o, Gsm7::Full), vec![two.clone()]);
        }
    }

    #[test]
    fn truncate_cuts_to_the_limit_and_marks_the_cut() {
        let t = fit(&"a".repeat(200), 1, Truncate, Gsm7::Full);
        assert_eq!(t, vec![format!("{}...", "a".repeat(157))]);
        assert_eq!(units(&t[0], Gsm7::Full), (Coding::Gsm7, 160));
        let t = fit(&"a".repeat(400), 2, Truncate, Gsm7::Full);
        assert_eq!(units(&t[0], Gsm7::Full), (Coding::Gsm7, 306));
        assert!(t[0].ends_with("..."));
        let t = fit(&"ж".repeat(100), 1, Truncate, Gsm7::Full);
        assert_eq!(t, vec![format!("{}…", "ж".repeat(69))]);
        let t = fit(&"word ".repeat(50), 1, Truncate, Gsm7::Full);
        assert!(t[0].ends_with("word..."), "trailing space dropped: {:?}", t[0]);
        assert!(segments(&t[0], Gsm7::Full) == 1);
    }

    #[test]
    fn truncate_never_splits_an_escape_or_a_surrogate_pair() {
        // 156 septets then €: "…a€..." would be 161; the € goes whole.
        let s = format!("{}€€€", "a".repeat(156));
        let t = fit(&s, 1, Truncate, Gsm7::Full);
        assert_eq!(t, vec![format!("{}...", "a".repeat(156))]);
        let s = format!("{}😀😀", "ж".repeat(68));
        let t = fit(&s, 1, Truncate, Gsm7::Full);
        assert_eq!(t, vec![format!("{}…", "ж".repeat(68))]);
        assert!(t[0].chars().all(|c| c != '\u{fffd}'));
        for n in 60..75 {
            let s = format!("{}{}", "ж".repeat(n), "😀".repeat(20));
            for max in 1..=3 {
                let t = &fit(&s, max, Truncate, Gsm7::Full)[0];
                assert!(segments(t, Gsm7::Full) <= max as usize, "{n} {max}");
                assert_eq!(t.ends_with('…'), segments(&s, Gsm7::Full) > max as usize);
            }
        }
    }

    #[test]
    fn split_cuts_at_a_near_space_into_messages_that_each_fit() {
        let words = "alarm ".repeat(60); // 360 characters
        let parts = fit(&words, 1, Split, Gsm7::Full);
        assert_eq!(parts.len(), 3, "{parts:?}");
        for p in &parts {
            assert!(segments(p, Gsm7::Full) == 1, "{p:?}");
            assert!(p.starts_with("alarm") && p.ends_with("alarm"), "cut at a space: {p:?}");
        }
        assert_eq!(parts.join(" "), words.trim_end());
        // No space near the limit: a hard cut at it.
        let long = "x".repeat(400);
        let parts = fit(&long, 1, Split, Gsm7::Full);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![160, 160, 80]);
        // A space far back is not near: still a hard cut.
        let far = format!("ab {}", "x".repeat(300));
        let parts = fit(&far, 1, Split, Gsm7::Full);
        assert_eq!(parts[0].chars().count(), 160);
        // Two segments a message.
        let parts = fit(&"y".repeat(700), 2, Split, Gsm7::Full);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![306, 306, 88]);
    }

    #[test]
    fn split_stops_at_ten_messages_with_the_last_truncated() {
        let parts = fit(&"z".repeat(5000), 1, Split, Gsm7::Full);
        assert_eq!(parts.len(), MAX_MESSAGES);
        assert!(parts[..9].iter().all(|p| p.len() == 160));
        assert_eq!(parts[9], format!("{}...", "z".repeat(157)));
    }

    #[test]
    fn split_parts_take_their_own_coding() {
        // A GSM first half and a Cyrillic second half: the first part is 160
        // septets, the rest UCS-2 parts of 70.
        let s = format!("{}{}", "a".repeat(160), "ж".repeat(100));
        let parts = fit(&s, 1, Split, Gsm7::Full);
        assert_eq!(parts[0], "a".repeat(160));
        assert_eq!(parts[1..].concat(), "ж".repeat(100));
        assert!(parts.iter().all(|p| segments(p, Gsm7::Full) == 1));
        // Emoji never split across messages.
        let s = "😀".repeat(100);
        let parts = fit(&s, 1, Split, Gsm7::Full);
        assert_eq!(parts.concat(), s);
        assert!(parts.iter().all(|p| units(p, Gsm7::Full).1 <= 70));
    }

    #[test]
    fn every_cut_fits_for_many_lengths_and_limits() {
        let alphabet: Vec<char> = "ab €[]ж😀\n".chars().collect();
        for len in [0usize, 1, 69, 70, 71, 159, 160, 161, 300, 700, 2000] {
            let text: String = (0..len).map(|i| alphabet[(i * 7 + i / 3) % alphabet.len()]).collect();
            for max in 1..=10u32 {
                let t = fit(&text, max, Truncate, Gsm7::Full);
                assert_eq!(t.len(), 1);
                assert!(segments(&t[0], Gsm7::Full) <= max as usize, "{len} {max}");
                let s = fit(&text, max, Split, Gsm7::Full);
                assert!(!s.is_empty() && s.len() <= MAX_MESSAGES);
                for p in &s {
                    assert!(segments(p, Gsm7::Full) <= max as usize, "{len} {max} {p:?}");
                }
                if s.len() < MAX_MESSAGES {
                    let squeeze = |x: &str| x.chars().filter(|c| !c.is_whitespace()).collect::<String>();
                    assert_eq!(squeeze(&s.concat()), squeeze(&text), "nothing lost but spaces");
                }
            }
        }
    }
}
