//! A small W3C WebDriver client for headless Chromium: starts `chromedriver`
//! on a free loopback port, opens one browser session and drives it (navigate,
//! find by CSS, click, type, run scripts, read the console, screenshot). The
//! web client's tests (`tests/web_client.rs`) and the glass-to-glass half of
//! `tandem bench live` share it.
//!
//! Owns the chromedriver process, the browser session and its throw-away
//! profile directory, and removes all three when dropped. Must never talk to
//! anything but 127.0.0.1, never leave a chromedriver or Chromium running
//! after the `Browser` is gone, and never buffer more than
//! `MAX_ANSWER` of an answer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key W3C WebDriver uses to name an element in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The largest answer read (a full-page screenshot of a big window fits).
const MAX_ANSWER: u64 = 64 << 20;

/// Long enough for a slow session start or page load; an async script gets
/// the time the caller allowed it (`set_script_timeout`) on top.
const HTTP_TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("{0} not found (install Debian's chromium and chromium-driver)")]
    Missing(PathBuf),
    #[error("starting chromedriver: {0}")]
    Spawn(std::io::Error),
    #[error("chromedriver did not become ready within {0:?}")]
    NotReady(Duration),
    #[error("WebDriver {command}: {source}")]
    Http { command: String, source: std::io::Error },
    #[error("WebDriver {command}: {error}: {message}")]
    Command {
        command: String,
        error: String,
        message: String,
    },
    #[error("WebDriver {command}: unexpected answer: {answer}")]
    Answer { command: String, answer: String },
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
}

pub type Result<T> = std::result::Result<T, WebDriverError>;

/// Where the browser comes from and how big its window is.
#[derive(Clone, Debug)]
pub struct Options {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Where chromedriver writes its log (kept for a failing test); none = discarded.
    pub log_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            chromium: "/usr/bin/chromium".into(),
            chromedriver: "/usr/bin/chromedriver".into(),
            width: 1280,
            height: 800,
            log_dir: None,
        }
    }
}

impl Options {
    /// Why a browser cannot start here, if it cannot (for tests to skip on).
    pub fn missing(&self) -> Option<String> {
        [&self.chromium, &self.chromedriver]
            .into_iter()
            .find(|p| !p.exists())
            .map(|p| WebDriverError::Missing(p.clone()).to_string())
    }
}

/// One element of the page, as WebDriver names it.
#[derive(Clone, Debug, PartialEq)]
pub struct Element(pub String);

impl Element {
    /// The element as a script argument (`arguments[i]` in `execute`).
    pub fn arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// One line of the browser's console (or a failed network load, which
/// Chromium reports there too).
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript`, `network`, …
    pub source: String,
    pub message: String,
}

impl LogEntry {
    /// Errors and warnings: what "a clean console" forbids.
    pub fn is_problem(&self) -> bool {
        self.level == "SEVERE" || self.level == "WARNING"
    }
}

/// A headless Chromium session driven through its own chromedriver.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    /// Chromium's own process, to wait for before its profile is removed.
    chromium_pid: Option<u32>,
    profile: PathBuf,
    /// What `set_script_timeout` allowed, so a long script's answer is awaited.
    script_timeout: std::cell::Cell<Duration>,
}

impl Browser {
    pub fn start(opts: &Options) -> Result<Browser> {
        for p in [&opts.chromium, &opts.chromedriver] {
            if !p.exists() {
                return Err(WebDriverError::Missing(p.clone()));
            }
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let profile = std::env::temp_dir().join(format!(
            "tandem-chromium-{}-{}-{:08x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile).map_err(WebDriverError::Spawn)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(WebDriverError::Spawn)?
            .port();
        let mut cmd = Command::new(&opts.chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = &opts.log_dir {
            cmd.arg(format!("--log-path={}", dir.join("chromedriver.log").display()));
        }
        let driver = cmd.spawn().map_err(WebDriverError::Spawn)?;
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            chromium_pid: None,
            profile,
            script_timeout: std::cell::Cell::new(Duration::from_secs(30)),
        };
        b.wait_ready(Duration::from_secs(20))?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": opts.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--autoplay-policy=no-user-gesture-required",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={},{}", opts.width, opts.height),
                    format!("--user-data-dir={}", b.profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Answer {
                command: "new session".into(),
                answer: v.to_string(),
            })?
            .to_string();
        b.chromium_pid = v["capabilities"]["goog:processID"].as_u64().map(|p| p as u32);
        // The viewport, not only the window, must match what a phone shows.
        b.set_viewport(opts.width, opts.height)?;
        Ok(b)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(v) = self.call("GET", "/status", None) {
                if v["ready"] == true {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(WebDriverError::NotReady(timeout))
    }

    /// One WebDriver command; its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let command = format!("{method} {path}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, body) = exchange(
            &self.base,
            method,
            path,
            body.as_bytes(),
            HTTP_TIMEOUT + self.script_timeout.get(),
        )
        .map_err(|source| WebDriverError::Http {
            command: command.clone(),
            source,
        })?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| WebDriverError::Answer {
            command: command.clone(),
            answer: crate::excerpt::excerpt(&String::from_utf8_lossy(&body), 200),
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status != 200 {
            return Err(WebDriverError::Command {
                command,
                error: value["error"].as_str().unwrap_or("error").to_string(),
                message: value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", Some(json!({ "url": url }))).map(drop)
    }

    pub fn current_url(&self) -> Result<String> {
        Ok(self
            .session_call("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub fn refresh(&self) -> Result<()> {
        self.session_call("POST", "/refresh", Some(json!({}))).map(drop)
    }

    /// Sets the layout viewport (CSS pixels) through DevTools, so that
    /// `innerWidth` is exactly `width` whatever the window decorations.
    pub fn set_viewport(&self, width: u32, height: u32) -> Result<()> {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .map(drop)
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.session_call("POST", "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params})))
    }

    /// The first element matching `css`, or a `no such element` error.
    pub fn find(&self, css: &str) -> Result<Element> {
        let v = self.session_call("POST", "/element", Some(json!({"using": "css selector", "value": css})))?;
        element_of(&v).ok_or_else(|| WebDriverError::Answer {
            command: format!("find {css}"),
            answer: v.to_string(),
        })
    }

    /// The first element an XPath expression names (e.g. a button by its text).
    pub fn find_xpath(&self, xpath: &str) -> Result<Element> {
        let v = self.session_call("POST", "/element", Some(json!({"using": "xpath", "value": xpath})))?;
        element_of(&v).ok_or_else(|| WebDriverError::Answer {
            command: format!("find {xpath}"),
            answer: v.to_string(),
        })
    }

    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.session_call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(element_of).collect())
            .unwrap_or_default())
    }

    /// Polls for an element matching `css` until `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let start = Instant::now();
        loop {
            match self.find(css) {
                Ok(e) => return Ok(e),
                Err(WebDriverError::Command { error, .. }) if error == "no such element" => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() > timeout {
                return Err(WebDriverError::Timeout {
                    what: format!("an element matching `{css}`"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, e: &Element) -> Result<()> {
        self.session_call("POST", &format!("/element/{}/click", e.0), Some(json!({})))
            .map(drop)
    }

    /// A real mouse click at viewport coordinates (CSS pixels), through
    /// WebDriver actions, so the page gets pointerdown/pointerup there.
    pub fn click_at(&self, x: f64, y: f64) -> Result<()> {
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x.round() as i64, "y": y.round() as i64},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0},
            ],
        }]});
        self.session_call("POST", "/actions", Some(actions))?;
        self.session_call("DELETE", "/actions", None).map(drop)
    }

    pub fn clear(&self, e: &Element) -> Result<()> {
        self.session_call("POST", &format!("/element/{}/clear", e.0), Some(json!({})))
            .map(drop)
    }

    pub fn send_keys(&self, e: &Element, text: &str) -> Result<()> {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .map(drop)
    }

    /// The element's attribute (`data-state`, …), `None` when absent.
    pub fn attr(&self, e: &Element, name: &str) -> Result<Option<String>> {
        let v = self.session_call("GET", &format!("/element/{}/attribute/{name}", e.0), None)?;
        Ok(v.as_str().map(str::to_string))
    }

    /// The element's rendered text.
    pub fn text(&self, e: &Element) -> Result<String> {
        let v = self.session_call("GET", &format!("/element/{}/text", e.0), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Runs `script` as a function body (`return …;`) with `args`.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.session_call("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Runs `script` with a callback as its last argument
    /// (`arguments[arguments.length - 1]`); the value passed to it.
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.session_call("POST", "/execute/async", Some(json!({"script": script, "args": args})))
    }

    /// How long `execute_async` scripts may run (WebDriver's default is 30 s).
    pub fn set_script_timeout(&self, d: Duration) -> Result<()> {
        self.script_timeout.set(d);
        self.session_call("POST", "/timeouts", Some(json!({"script": d.as_millis() as u64})))
            .map(drop)
    }

    /// Runs `script` every 100 ms until it returns something truthy (not
    /// null/false/0/""), and returns that.
    pub fn poll(&self, what: &str, timeout: Duration, script: &str, args: Vec<Value>) -> Result<Value> {
        let start = Instant::now();
        loop {
            let v = self.execute(script, args.clone())?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                return Err(WebDriverError::Timeout {
                    what: what.into(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The console lines since the last call (Chromium hands each out once).
    pub fn console(&self) -> Result<Vec<LogEntry>> {
        let v = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_string(),
                        source: e["source"].as_str().unwrap_or_default().to_string(),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The viewport as a PNG.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        let v = self.session_call("GET", "/screenshot", None)?;
        let b64 = v.as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| WebDriverError::Answer {
                command: "screenshot".into(),
                answer: crate::excerpt::excerpt(b64, 80),
            })
    }

    /// Writes a screenshot to `path`.
    pub fn save_screenshot(&self, path: &Path) -> Result<()> {
        let png = self.screenshot()?;
        std::fs::write(path, png).map_err(|source| WebDriverError::Http {
            command: format!("writing {}", path.display()),
            source,
        })
    }

    /// Ends the session and chromedriver (also done on drop).
    pub fn quit(self) {}
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Closing the session makes chromedriver stop its Chromium.
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium writes its profile until it has exited.
        let start = Instant::now();
        while let Some(pid) = self.chromium_pid {
            if !Path::new(&format!("/proc/{pid}")).exists() || start.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its helpers (renderer, GPU, zygote) can outlive it for a moment,
        // or be left behind: every process still naming this profile is ours.
        let start = Instant::now();
        loop {
            let left = processes_using(&self.profile);
            if left.is_empty() || start.elapsed() > Duration::from_secs(5) {
                break;
            }
            if start.elapsed() > Duration::from_secs(1) {
                for pid in left {
                    // SAFETY: kill(2) has no memory effects; the pid names a
                    // process started with this browser's own profile.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Live processes whose command line names `profile` (Chromium's
/// `--user-data-dir`), from `/proc`; zombies are not counted.
fn processes_using(profile: &Path) -> Vec<i32> {
    let needle = profile.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !cmd.is_empty() && cmd.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

/// One HTTP/1.1 exchange with chromedriver: its status and body. Its own
/// client because chromedriver answers `Connection: close` yet keeps the
/// socket open, so the body is read by its Content-Length, not to the end.
fn exchange(base: &str, method: &str, path: &str, body: &[u8], timeout: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s.take(MAX_ANSWER + 64 * 1024));
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {}", line.trim_end())))?;
    let mut length = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("the answer ended in its headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<u64>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("an answer without Content-Length"))?;
    if length > MAX_ANSWER {
        return Err(std::io::Error::other(format!("an answer of {length} bytes")));
    }
    let mut out = vec![0; length as usize];
    r.read_exact(&mut out)?;
    Ok((status, out))
}

fn element_of(v: &Value) -> Option<Element> {
    v.get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|s| Element(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_named_by_the_w3c_key() {
        let v = json!({ ELEMENT_KEY: "abc" });
        assert_eq!(element_of(&v), Some(Element("abc".into())));
        assert_eq!(Element("abc".into()).arg(), v);
        assert_eq!(element_of(&json!({"ELEMENT": "abc"})), None);
    }

    #[test]
    fn only_errors_and_warnings_are_problems() {
        let e = |level: &str| LogEntry {
            level: level.into(),
            source: "console-api".into(),
            message: String::new(),
        };
        assert!(e("SEVERE").is_problem());
        assert!(e("WARNING").is_problem());
        assert!(!e("INFO").is_problem());
        assert!(!e("DEBUG").is_problem());
    }

    #[test]
    fn a_missing_browser_is_named() {
        let o = Options {
            chromium: "/nonexistent/chromium".into(),
            ..Options::default()
        };
        assert!(o.missing().unwrap().contains("/nonexistent/chromium"));
        assert!(matches!(Browser::start(&o), Err(WebDriverError::Missing(_))));
    }
}
