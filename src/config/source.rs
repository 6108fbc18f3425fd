//! Reading configuration sources safely and pointing at places in them: a
//! bounded reader for the configuration, password and rules files, the line
//! index that turns byte offsets into line numbers, and the `Checker` that
//! collects errors against one source text.
//!
//! Must never read more than `MAX_FILE` bytes from any file, never open
//! something that is not a regular file (a FIFO would block, `/dev/zero`
//! never ends), and never cost more than logarithmic time per error reported.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use super::ConfigError;

/// The largest password or rules file read (1 MiB): far above any real
/// site, far below what would hurt the NVR's memory.
pub const MAX_FILE: u64 = 1 << 20;
/// The largest configuration file read (8 MiB: thousands of channels with
/// comments fit many times over).
pub const MAX_CONFIG_FILE: u64 = 8 << 20;

/// Reads a small text file: refuses anything that is not a regular file and
/// anything longer than `MAX_FILE`, with a message naming which.
pub fn read_bounded(path: &Path) -> Result<String, String> {
    read_bounded_at_most(path, MAX_FILE)
}

pub fn read_bounded_at_most(path: &Path, limit: u64) -> Result<String, String> {
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("is not a regular file ({})", kind(&meta)));
    }
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("is larger than {} KiB", limit / 1024));
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Byte offset → line number, built once per text so that reporting N errors
/// costs O(N log lines), not O(N × text).
pub struct LineIndex {
    /// Offset of the first byte of every line.
    starts: Vec<usize>,
    /// Binary-search steps taken, so tests can check the cost without a clock.
    steps: Cell<u64>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            starts,
            steps: Cell::new(0),
        }
    }

    /// The 1-based line holding `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let (mut lo, mut hi) = (0usize, self.starts.len());
        // Invariant: starts[lo] <= offset, and offset < starts[hi] when hi < len.
        while hi - lo > 1 {
            self.steps.set(self.steps.get() + 1);
            let mid = lo + (hi - lo) / 2;
            if self.starts[mid] <= offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo + 1
    }

    pub fn lines(&self) -> usize {
        self.starts.len()
    }

    pub fn steps(&self) -> u64 {
        self.steps.get()
    }
}

/// Collects errors against one source text.
pub struct Checker<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub lines: LineIndex,
    pub errors: Vec<ConfigError>,
    /// Problems that do not stop the NVR but that an operator must see.
    pub warnings: Vec<ConfigError>,
    /// Secrets given beside the text (see `config::SecretValues`).
    pub secrets: super::SecretValues,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Checker<'a> {
        Checker {
            file,
            text,
            lines: LineIndex::new(text),
            errors: Vec::new(),
            warnings: Vec::new(),
            secrets: Default::default(),
        }
    }
    pub fn line_of(&self, offset: usize) -> usize {
        self.lines.line_of(offset)
    }
    /// A secret given beside the text, by its key.
    pub fn secret(&self, key: &str) -> Option<String> {
        self.secrets.get(key).cloned()
    }
    fn problem(&self, offset: usize, field: String, message: String) -> ConfigError {
        ConfigError {
            file: self.file.into(),
            line: self.line_of(offset),
            field,
            message,
        }
    }
    pub fn err(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let e = self.problem(offset, field.into(), message.into());
        self.errors.push(e);
    }
    pub fn warn(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let e = self.problem(offset, field.into(), message.into());
        self.warnings.push(e);
    }

    /// A secret the file gives as `{field}` (in clear), `{field}_env` (an
    /// environment variable) or `{field}_file` (resolved against `base`),
    /// at most one of them; errors go under `{prefix}.{field}…`. `None`
    /// when none is given or the one given cannot be read (reported).
    pub fn given_secret(
        &mut self,
        base: &Path,
        at: usize,
        prefix: &str,
        field: &str,
        [inline, env, file]: [&Option<toml::Spanned<String>>; 3],
    ) -> Option<(String, super::SecretSource)> {
        use super::SecretSource;
        if [inline, env, file].iter().filter(|g| g.is_some()).count() > 1 {
            self.err(
                at,
                format!("{prefix}.{field}"),
                format!("give only one of {field}, {field}_env, {field}_file"),
            );
            return None;
        }
        if let Some(v) = inline {
            return Some((v.get_ref().clone(), SecretSource::Inline));
        }
        if let Some(v) = env {
            return match std::env::var(v.get_ref()) {
                Ok(value) => Some((value, SecretSource::Env(v.get_ref().clone()))),
                Err(_) => {
                    self.err(
                        v.span().start,
                        format!("{prefix}.{field}_env"),
                        format!("environment variable `{}` is not set", v.get_ref()),
                    );
                    None
                }
            };
        }
        let p = file.as_ref()?;
        let path = base.join(p.get_ref());
        match read_bounded(&path) {
            Ok(v) => Some((v.trim_end_matches(['\n', '\r']).to_string(), SecretSource::File(path))),
            Err(e) => {
                self.err(
                    p.span().start,
                    format!("{prefix}.{field}_file"),
                    format!("cannot read `{}`: {e}", p.get_ref()),
                );
                None
            }
        }
    }

    /// The field a TOML error points at, read from the text: the key written
    /// before `offset` on its line (the last one, for inline tables), under
    /// the table header above it. toml's own messages (an integer out of
    /// range, a value of the wrong type) do not always say which field.
    pub fn field_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let line_no = self.line_of(offset);
        let start = self.lines.starts[line_no - 1];
        let before = self.text.get(start..offset).unwrap_or("");
        // Keys of the inline tables still open at `offset`, then the last key.
        let mut path: Vec<String> = Vec::new();
        for (i, ch) in before.char_indices() {
            match ch {
                '{' => path.push(
                    before[..i]
                        .rfind('=')
                        .map(|eq| last_key(&before[..eq]))
                        .unwrap_or_default(),
                ),
                '}' => {
                    path.pop();
                }
                _ => {}
            }
        }
        let inner_from = before.rfind('{').map(|i| i + 1).unwrap_or(0);
        let inner = &before[inner_from.min(before.len())..];
        if let Some(eq) = inner.rfind('=') {
            path.push(last_key(&inner[..eq]));
        }
        path.retain(|k| !k.is_empty());
        let key = path.join(".");
        let table = (0..line_no.saturating_sub(1))
            .rev()
            .take(10_000)
            .find_map(|l| {
                let s = self.lines.starts[l];
                let e = self.lines.starts.get(l + 1).copied().unwrap_or(self.text.len());
                let t = self.text.get(s..e)?.trim();
                t.starts_with('[')
                    .then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
            })
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (_, true) => table,
            (true, false) => key,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// The last bare or dotted key in `s` (what precedes an `=`).
fn last_key(s: &str) -> String {
    let s = s.trim_end();
    // After the last character that cannot be in a key, which may take
    // more than one byte (the text is whatever a client uploaded).
    let start = s
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_key_after_a_character_of_several_bytes_is_found_without_a_panic() {
        assert_eq!(super::last_key("é=1\nname "), "name");
        assert_eq!(super::last_key("x€key"), "key");
        assert_eq!(super::last_key("€"), "");
        assert_eq!(super::last_key("a.b-c_d"), "a.b-c_d");
    }

    use super::*;

    #[test]
    fn line_index_matches_counting_newlines() {
        let text = "a\n\nbc\nd";
        let idx = LineIndex::new(text);
        for off in 0..=text.len() + 3 {
            let naive = text[..off.min(text.len())].matches('\n').count() + 1;
            assert_eq!(idx.line_of(off), naive, "offset {off}");
        }
    }

    #[test]
    fn line_lookups_cost_logarithmic_steps() {
        // 32k lines, a lookup on every one: at most 16 steps each (2^15 lines).
        let text = "x = 1\n".repeat(32_768);
        let idx = LineIndex::new(&text);
        for l in 0..32_768 {
            assert_eq!(idx.line_of(l * 6 + 2), l + 1);
        }
        assert!(idx.steps() <= 32_768 * 16, "{} steps", idx.steps());
    }

    #[test]
    fn field_named_from_the_text() {
        let text = "[storage]\nmin_free = 9\n[[channel]]\nnumber = 92233\nx = { a = 1, b = 22 }\n";
        let c = Checker::new("f", text);
        assert_eq!(c.field_at(text.find("92233").unwrap()), "channel.number");
        assert_eq!(c.field_at(text.find("22 }").unwrap()), "channel.x.b");
        assert_eq!(c.field_at(text.find('9').unwrap()), "storage.min_free");
        assert_eq!(Checker::new("f", "n = 1").field_at(4), "n");
    }

    #[test]
    fn special_and_oversized_files_are_refused() {
        for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            if !Path::new(dev).exists() {
                continue;
            }
            let e = read_bounded(Path::new(dev)).unwrap_err();
            assert!(e.contains("not a regular file"), "{dev}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let e = read_bounded(dir.path()).unwrap_err();
        assert!(e.contains("directory"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        assert!(read_bounded_at_most(&big, 1024)
            .unwrap_err()
            .contains("larger than 1 KiB"));
        assert_eq!(read_bounded_at_most(&big, 2048).unwrap().len(), 2048);
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path we pass.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0 {
            assert!(read_bounded(&fifo).unwrap_err().contains("FIFO"));
        }
    }
}
