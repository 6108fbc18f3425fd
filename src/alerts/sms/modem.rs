//! SMS through a GSM modem on a serial port: the AT dialogue in text mode
//! (`AT`, `ATE0`, `AT+CPIN?` and the SIM PIN, `AT+CMGF=1`, `AT+CSCS`, `AT+CMGS`).
//!
//! Must never hold the runtime (the port is non-blocking and driven by
//! tokio's reactor), never let two senders talk to one modem at once (one
//! async lock per device path), never buffer more than `MAX_LINE` bytes of a
//! line, never spend more than `BUDGET` on one attempt, and never send a
//! wrong PIN twice: three wrong PINs lock the SIM. An attempt may be
//! cancelled at any point (the outbox's own timeout): the next one starts by
//! cancelling whatever text entry the last one left open.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::{timeout_at, Instant};
use tracing::info;

use super::segments::{self, Coding, Gsm7};
use crate::alerts::Delivery;

/// The longest line a modem may send before it is taken as garbage.
pub const MAX_LINE: usize = 1024;
/// The longest one attempt (set-up and every SMS of the alert) may take:
/// under the outbox's 30 s per attempt, so that the error says which step
/// was slow.
pub const BUDGET: Duration = Duration::from_secs(25);
/// The longest one command may wait for its final answer.
const COMMAND: Duration = Duration::from_secs(10);
/// Tries of a command the modem answers with `ERROR` before the attempt is
/// given back as `Retry`.
const TRIES: u32 = 3;
/// The pause before repeating a refused command: a SIM just unlocked or a
/// network just registering answers ERROR ("SIM busy") for a moment.
const PAUSE: Duration = Duration::from_millis(500);

const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;

/// One lock per device: a modem holds one dialogue at a time.
static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

fn lock_for(device: &Path) -> Arc<tokio::sync::Mutex<()>> {
    let mut m = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(device.to_path_buf()).or_default().clone()
}

/// A modem's final or intermediate answer, as the dialogue reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// `ERROR`, `+CMS ERROR: n`, `+CME ERROR: n`.
    Error(String),
    /// The `> ` that asks for a message's text.
    Prompt,
    /// Anything else: information (`+CPIN: READY`, `+CMGS: 7`) or an echo.
    Info(String),
}

/// Classifies one line the modem sent (without its line end).
pub fn classify(line: &str) -> Reply {
    let l = line.trim();
    if l == "OK" {
        Reply::Ok
    } else if l == "ERROR" || l.starts_with("+CMS ERROR") || l.starts_with("+CME ERROR") {
        Reply::Error(l.to_string())
    } else {
        Reply::Info(l.to_string())
    }
}

/// What `AT+CPIN?` said about the SIM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimState {
    Ready,
    WantsPin,
    /// PUK, PH-SIM PIN, …: nothing Tandem can answer.
    Wants(String),
}

pub fn sim_state(info: &[String]) -> Option<SimState> {
    let v = info.iter().find_map(|l| l.strip_prefix("+CPIN:"))?.trim();
    Some(match v {
        "READY" => SimState::Ready,
        "SIM PIN" => SimState::WantsPin,
        other => SimState::Wants(other.to_string()),
    })
}

/// The text (or number) as the modem's character set wants it: GSM codes
/// one byte each, or UCS-2 as hex digits ("0041" for "A").
pub fn encode(text: &str, coding: Coding) -> Vec<u8> {
    match coding {
        Coding::Gsm7 => text.chars().map(|c| segments::basic_code(c).unwrap_or(b'?')).collect(),
        Coding::Ucs2 => {
            let mut out = Vec::new();
            for u in text.encode_utf16() {
                out.extend_from_slice(format!("{u:04X}").as_bytes());
            }
            out
        }
    }
}

/// Sets the serial line raw (no echo, no line editing, no CR/LF mapping, 8N1)
/// at `baud`. Written here rather than taken from a serial crate: those pull
/// in libudev for port enumeration, which an NVR that is told its device
/// path does not need.
fn raw_mode(f: &File, baud: u32) -> std::io::Result<()> {
    let speed = match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        _ => return Err(std::io::Error::other(format!("{baud} is not a serial speed"))),
    };
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `f` for the whole block;
    // `t` is a plain C struct that tcgetattr fills before it is read.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        // Ignore the modem-control lines (no carrier on an idle modem) and
        // hardware flow control, which USB modems do not need.
        t.c_cflag |= libc::CLOCAL | libc::CREAD;
        t.c_cflag &= !libc::CRTSCTS;
        if libc::cfsetspeed(&mut t, speed) != 0 || libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Whatever the modem said before we came is not an answer to us.
        libc::tcflush(fd, libc::TCIOFLUSH);
    }
    Ok(())
}

/// Why a step of the dialogue did not succeed, before it becomes a `Delivery`.
enum Step {
    /// The modem answered `ERROR` (worth repeating the command).
    Refused(String),
    /// No answer in time, the port failed, a line too long: give the
    /// attempt back.
    Broken(String),
}

struct Port {
    fd: AsyncFd<File>,
    buf: Vec<u8>,
}

impl Port {
    async fn write(&self, mut data: &[u8]) -> Result<(), Step> {
        while !data.is_empty() {
            let mut g = self.fd.writable().await.map_err(|e| Step::Broken(e.to_string()))?;
            match g.try_io(|f| f.get_ref().write(data)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(Step::Broken(format!("writing failed: {e}"))),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// The next non-empty line, or the text prompt, by `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Reply, Step> {
        loop {
            let start = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            self.buf.drain(..start);
            if self.buf.first() == Some(&b'>') {
                let n = if self.buf.get(1) == Some(&b' ') { 2 } else { 1 };
                self.buf.drain(..n);
                return Ok(Reply::Prompt);
            }
            if let Some(end) = self.buf.iter().position(|b| matches!(b, b'\r' | b'\n')) {
                let line = String::from_utf8_lossy(&self.buf[..end]).to_string();
                self.buf.drain(..=end);
                return Ok(classify(&line));
            }
            if self.buf.len() > MAX_LINE {
                return Err(Step::Broken(format!("sent a line longer than {MAX_LINE} bytes")));
            }
            let mut chunk = [0u8; 256];
            let read = timeout_at(deadline, async {
                loop {
                    let mut g = self.fd.readable().await?;
                    match g.try_io(|f| f.get_ref().read(&mut chunk)) {
                        Ok(r) => return r,
                        Err(_would_block) => continue,
                    }
                }
            })
            .await;
            match read {
                Err(_) => return Err(Step::Broken("no answer in time".into())),
                Ok(Ok(0)) => return Err(Step::Broken("the port was closed".into())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(Step::Broken(format!("reading failed: {e}"))),
            }
        }
    }

    /// Sends `cmd` and reads up to its final answer: the information lines
    /// (without the echo) on OK.
    async fn command(&mut self, cmd: &str, deadline: Instant) -> Result<Vec<String>, Step> {
        self.write(format!("{cmd}\r").as_bytes()).await?;
        let deadline = deadline.min(Instant::now() + COMMAND);
        let mut info = Vec::new();
        loop {
            match self.next(deadline).await? {
                Reply::Ok => return Ok(info),
                Reply::Error(e) => return Err(Step::Refused(e)),
                Reply::Info(l) if l == cmd => {}
                Reply::Info(l) => info.push(l),
                Reply::Prompt => return Err(Step::Broken("asked for text where none was due".into())),
            }
        }
    }

    /// `command`, repeated while the modem answers ERROR, up to `TRIES`.
    async fn retried(&mut self, cmd: &str, deadline: Instant) -> Result<Vec<String>, String> {
        let mut last = String::new();
        for _ in 0..TRIES {
            match self.command(cmd, deadline).await {
                Ok(info) => return Ok(info),
                Err(Step::Refused(e)) => {
                    last = e;
                    tokio::time::sleep(PAUSE).await;
                }
                Err(Step::Broken(e)) => return Err(format!("{cmd}: {e}")),
            }
        }
        Err(format!("{cmd} answered {last} {TRIES} times"))
    }

    /// One SMS: `AT+CMGS`, the prompt, the text and Ctrl-Z, `+CMGS: n`, OK.
    async fn cmgs(&mut self, number: &[u8], text: &[u8], deadline: Instant) -> Result<String, Step> {
        let mut cmd = b"AT+CMGS=\"".to_vec();
        cmd.extend_from_slice(number);
        cmd.extend_from_slice(b"\"\r");
        self.write(&cmd).await?;
        loop {
            match self.next(deadline.min(Instant::now() + COMMAND)).await {
                Ok(Reply::Prompt) => break,
                Ok(Reply::Error(e)) => return Err(Step::Refused(e)),
                // The echo, or an unsolicited line (RING, +CMTI: …).
                Ok(Reply::Info(_)) => {}
                Ok(Reply::Ok) => return Err(Step::Broken("answered OK instead of the text prompt".into())),
                Err(e) => {
                    // Leave no half-open message behind for the next dialogue.
                    let _ = self.write(&[ESC]).await;
                    return Err(e);
                }
            }
        }
        let mut body = text.to_vec();
        body.push(CTRL_Z);
        self.write(&body).await?;
        let mut reference = None;
        loop {
            match self.next(deadline).await? {
                Reply::Ok => return Ok(reference.unwrap_or_default()),
                Reply::Error(e) => return Err(Step::Refused(e)),
                Reply::Info(l) => {
                    if let Some(r) = l.strip_prefix("+CMGS:") {
                        reference = Some(r.trim().to_string());
                    }
                }
                Reply::Prompt => {}
            }
        }
    }
}

/// Opens `device` for a dialogue: `Err` is the whole attempt's outcome.
fn open(device: &Path, baud: u32) -> Result<Port, Delivery> {
    let d = device.display();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(device)
        .map_err(|e| match e.kind() {
            // A USB modem that was pulled or is re-enumerating comes back.
            std::io::ErrorKind::NotFound => Delivery::Retry(format!("modem {d} not present")),
            _ => Delivery::Retry(format!("modem {d} cannot be opened: {e}")),
        })?;
    raw_mode(&f, baud).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTTY) => Delivery::Fail(format!("{d} is not a serial port")),
        _ => Delivery::Retry(format!("modem {d}: setting {baud} baud failed: {e}")),
    })?;
    // SAFETY: `f` owns its descriptor and the AsyncFd owns `f`: it stays
    // open and the same until the AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register(f) }.map_err(|e| Delivery::Retry(format!("modem {d}: {e}")))?;
    Ok(Port { fd, buf: Vec::new() })
}

/// Checks the modem and the SIM and sets text mode: `Err` is the outcome.
async fn set_up(p: &mut Port, pin: Option<&str>, d: &str, deadline: Instant) -> Result<(), Delivery> {
    let retry = |e: String| Delivery::Retry(format!("modem {d}: {e}"));
    // An attempt cancelled while the modem waited for a text left it in
    // text entry: ESC leaves that without sending; what the modem says to
    // it is discarded.
    if let Err(Step::Refused(e) | Step::Broken(e)) = p.write(&[ESC]).await {
        return Err(retry(e));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SAFETY: the descriptor is open, owned by the AsyncFd.
    unsafe { libc::tcflush(p.fd.as_raw_fd(), libc::TCIFLUSH) };
    p.buf.clear();
    p.retried("AT", deadline).await.map_err(retry)?;
    // Echo off: an echoed text line reading "OK" or "ERROR" would pass for
    // the modem's answer.
    p.retried("ATE0", deadline).await.map_err(retry)?;
    let info = p.retried("AT+CPIN?", deadline).await.map_err(retry)?;
    match sim_state(&info) {
        Some(SimState::Ready) => {}
        Some(SimState::WantsPin) => {
            let Some(pin) = pin else {
                return Err(Delivery::Fail(format!(
                    "modem {d}: the SIM wants a PIN and none is configured (pin_env)"
                )));
            };
            // Sent once: a wrong PIN repeated locks the SIM after three.
            match p.command(&format!("AT+CPIN=\"{pin}\""), deadline).await {
                Ok(_) => info!(device = d, "SIM unlocked with the configured PIN"),
                // "SIM busy": the PIN was not judged, ask again later.
                Err(Step::Refused(e)) if e == "+CME ERROR: 14" => {
                    return Err(retry(format!("AT+CPIN=\"****\" answered {e} (SIM busy)")))
                }
                Err(Step::Refused(e)) => {
                    return Err(Delivery::Fail(format!(
                        "modem {d}: the SIM refused the PIN ({e}); not tried again, three wrong PINs lock it"
                    )))
                }
                Err(Step::Broken(e)) => return Err(retry(format!("AT+CPIN=\"****\": {e}"))),
            }
        }
        Some(SimState::Wants(what)) => {
            return Err(Delivery::Fail(format!("modem {d}: the SIM wants {what}")));
        }
        None => return Err(retry(format!("AT+CPIN? gave no SIM state: {info:?}"))),
    }
    p.retried("AT+CMGF=1", deadline).await.map_err(retry)?;
    Ok(())
}

/// Sends every text of `parts` to every number of `to`, one SMS each (text
/// mode cannot concatenate: a part longer than one segment goes as several).
pub async fn send(device: &Path, baud: u32, pin: Option<&str>, to: &[String], parts: &[String]) -> Delivery {
    let lock = lock_for(device);
    let _one_at_a_time = lock.lock().await;
    let d = device.display().to_string();
    let mut p = match open(device, baud) {
        Ok(p) => p,
        Err(d) => return d,
    };
    let deadline = Instant::now() + BUDGET;
    if let Err(d) = set_up(&mut p, pin, &d, deadline).await {
        return d;
    }
    let sms: Vec<String> = parts
        .iter()
        .flat_map(|t| segments::fit(t, 1, crate::config::SmsOverflow::Split, Gsm7::BasicOnly))
        .collect();
    let mut tally = super::Tally::default();
    let mut charset = None;
    for number in to {
        for text in &sms {
            let coding = segments::coding(text, Gsm7::BasicOnly);
            let outcome = one(&mut p, &mut charset, coding, number, text, &d, deadline).await;
            if !tally.add(number, outcome) {
                break;
            }
        }
    }
    tally.outcome()
}

/// One SMS by `deadline`, switching the character set if needed.
async fn one(
    p: &mut Port,
    charset: &mut Option<Coding>,
    coding: Coding,
    number: &str,
    text: &str,
    d: &str,
    deadline: Instant,
) -> Delivery {
    let retry = |e: String| Delivery::Retry(format!("modem {d}: {e}"));
    if *charset != Some(coding) {
        let cmds: &[&str] = match coding {
            Coding::Gsm7 => &["AT+CSCS=\"GSM\""],
            // Data coding scheme 8 (UCS-2) for the text-mode message.
            Coding::Ucs2 => &["AT+CSCS=\"UCS2\"", "AT+CSMP=17,167,0,8"],
        };
        for c in cmds {
            if let Err(e) = p.retried(c, deadline).await {
                return retry(e);
            }
        }
        *charset = Some(coding);
    }
    // In UCS2 the number, too, is written in the character set.
    let (n, t) = (encode(number, coding), encode(text, coding));
    let mut last = String::new();
    for _ in 0..TRIES {
        match p.cmgs(&n, &t, deadline).await {
            Ok(reference) => {
                info!(device = d, to = number, reference, "SMS sent by modem");
                return Delivery::Delivered;
            }
            Err(Step::Refused(e)) => {
                last = e;
                tokio::time::sleep(PAUSE).await;
            }
            Err(Step::Broken(e)) => return retry(format!("AT+CMGS to {number}: {e}")),
        }
    }
    retry(format!("AT+CMGS to {number} answered {last} {TRIES} times"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified() {
        assert_eq!(classify("OK"), Reply::Ok);
        assert_eq!(classify(" OK "), Reply::Ok);
        assert_eq!(classify("ERROR"), Reply::Error("ERROR".into()));
        assert_eq!(classify("+CMS ERROR: 500"), Reply::Error("+CMS ERROR: 500".into()));
        assert_eq!(classify("+CME ERROR: 16"), Reply::Error("+CME ERROR: 16".into()));
        assert_eq!(classify("+CMGS: 12"), Reply::Info("+CMGS: 12".into()));
        assert_eq!(classify("OKAY"), Reply::Info("OKAY".into()));
    }

    #[test]
    fn sim_states() {
        let s = |l: &str| sim_state(&[l.to_string()]);
        assert_eq!(s("+CPIN: READY"), Some(SimState::Ready));
        assert_eq!(s("+CPIN: SIM PIN"), Some(SimState::WantsPin));
        assert_eq!(s("+CPIN: SIM PUK"), Some(SimState::Wants("SIM PUK".into())));
        assert_eq!(s("AT+CPIN?"), None);
        assert_eq!(sim_state(&[]), None);
    }

    #[test]
    fn texts_are_encoded_for_the_character_set() {
        assert_eq!(encode("Hi @ 5$", Coding::Gsm7), b"Hi \x00 5\x02");
        assert_eq!(encode("è_¿", Coding::Gsm7), vec![0x04, 0x11, 0x60]);
        assert_eq!(encode("A€", Coding::Ucs2), b"004120AC");
        assert_eq!(encode("😀", Coding::Ucs2), b"D83DDE00");
        assert_eq!(encode("+49", Coding::Ucs2), b"002B00340039");
    }

    #[test]
    fn each_device_has_one_lock() {
        let a = lock_for(Path::new("/dev/ttyUSB7"));
        let b = lock_for(Path::new("/dev/ttyUSB7"));
        let c = lock_for(Path::new("/dev/ttyUSB8"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[tokio::test]
    async fn a_missing_device_is_retried_and_named() {
        let d = send(
            Path::new("/dev/tandem-no-such-modem"),
            115_200,
            None,
            &["+491".into()],
            &["x".into()],
        )
        .await;
        assert_eq!(d, Delivery::Retry("modem /dev/tandem-no-such-modem not present".into()));
    }

    #[tokio::test]
    async fn a_file_that_is_no_serial_port_fails() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let d = send(f.path(), 115_200, None, &["+491".into()], &["x".into()]).await;
        assert!(
            matches!(&d, Delivery::Fail(e) if e.contains("is not a serial port")),
            "{d:?}"
        );
    }
}
