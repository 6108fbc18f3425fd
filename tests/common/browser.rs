//! Headless Chromium for the web client's tests: the library's WebDriver
//! client (`tandem::webdriver`, shared with `bench live`) re-exported, plus
//! the test-side checks — skip without Chromium outside CI, a console free of
//! errors, the simulated camera's session count read from its log.
#![allow(dead_code)]

use std::path::Path;

pub use tandem::webdriver::{Browser, Options};

use super::{prerequisite, Proc};

/// Whether Chromium and chromedriver are installed; prints why not and
/// returns false outside CI, fails inside it.
pub fn chromium_available() -> bool {
    let missing = Options::default().missing();
    prerequisite(missing.is_none(), missing.as_deref().unwrap_or_default())
}

/// A headless Chromium with a `width`×`height` viewport whose chromedriver
/// logs into `dir`; `None` (after printing why) when Chromium is missing
/// outside CI, a failure inside it.
pub fn browser(dir: &Path, width: u32, height: u32) -> Option<Browser> {
    let opts = Options {
        width,
        height,
        log_dir: Some(dir.to_path_buf()),
        ..Options::default()
    };
    let missing = opts.missing();
    if !prerequisite(missing.is_none(), missing.as_deref().unwrap_or_default()) {
        return None;
    }
    Some(Browser::start(&opts).unwrap_or_else(|e| panic!("starting headless Chromium: {e}")))
}

/// Fails on any console error or warning since the last call, except lines
/// containing one of `expected` (e.g. the 401 a wrong password answers).
pub fn assert_clean_console(b: &Browser, what: &str, expected: &[&str]) {
    let entries = b.console().expect("reading the browser console");
    let problems: Vec<String> = entries
        .iter()
        .filter(|e| e.is_problem() && !expected.iter().any(|x| e.message.contains(x)))
        .map(|e| format!("{} {}: {}", e.level, e.source, e.message))
        .collect();
    assert!(
        problems.is_empty(),
        "{what}: the browser console has problems:\n{}",
        problems.join("\n")
    );
}

/// Sessions PLAY-ing `camera` of a `tandem sim-camera` process, from the
/// last "simulated camera session" line it logged for that camera (0 when none).
pub fn sim_sessions(sim: &Proc, camera: u32) -> usize {
    let log = sim.stderr();
    assert!(
        log.contains("simulated video encoded"),
        "the simulated camera logs no info lines, so its sessions cannot be counted (TANDEM_LOG must allow info)"
    );
    sessions_in_log(&log, camera)
}

/// `sim_sessions` on log text (ANSI colours, if any, removed first).
pub fn sessions_in_log(log: &str, camera: u32) -> usize {
    let log = strip_ansi(log);
    let want = format!("camera={camera} ");
    log.lines()
        .filter(|l| l.contains("simulated camera session") && l.contains(&want))
        .filter_map(|l| l.split("sessions=").nth(1)?.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
