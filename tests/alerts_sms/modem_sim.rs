//! A GSM modem simulated on a pseudo-terminal pair for the SMS tests: it
//! answers the AT dialogue (a PIN prompt, an ERROR to retry, refused texts,
//! a missing prompt) and records what it was told.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the simulated modem was told.
#[derive(Debug, Default)]
pub struct ModemLog {
    pub commands: Vec<String>,
    pub pin: Option<String>,
    /// (number, text) as written after AT+CMGS, in the modem's charset.
    pub sms: Vec<(String, Vec<u8>)>,
}

/// A pty pair: the master (the modem's side) and the slave's path, with
/// the slave kept open so the master never sees a hang-up between dialogues.
pub fn pty() -> (OwnedFd, OwnedFd, PathBuf) {
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty writes two descriptors we then own; a zeroed termios
    // made raw is a valid argument; ttyname_r writes into our buffer.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::cfmakeraw(&mut t);
        assert_eq!(
            libc::openpty(&mut m, &mut s, std::ptr::null_mut(), &t, std::ptr::null()),
            0
        );
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ttyname_r(s, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().to_string();
        (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s), PathBuf::from(path))
    }
}

/// Plays a GSM modem on `master` until `sms` messages were sent: the SIM
/// wants PIN 1234, the first `AT+CMGF=1` is answered `ERROR`, the first
/// `refuse` texts get `+CMS ERROR: 500`, every other SMS `+CMGS: n`; the
/// first `mute` `AT+CMGS` get no prompt (ESC cancels the text entry).
pub fn modem(master: OwnedFd, sms: usize, refuse: usize, mute: usize) -> std::thread::JoinHandle<ModemLog> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut log = ModemLog::default();
        let (mut locked, mut cmgf_errors, mut refuse, mut mute) = (true, 1, refuse, mute);
        let mut buf = Vec::new();
        let mut text_for: Option<String> = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        // After the last SMS, stay a moment so that its final OK is read
        // before the master closes (which hangs up the slave).
        let mut linger: Option<Instant> = None;
        while Instant::now() < deadline && linger.is_none_or(|t| t.elapsed() < Duration::from_millis(500)) {
            if linger.is_none() && log.sms.len() >= sms {
                linger = Some(Instant::now());
            }
            let mut p = libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, 200) } <= 0 {
                continue;
            }
            let mut chunk = [0u8; 512];
            let n = match f.read(&mut chunk) {
                Ok(n) if n > 0 => n,
                _ => continue,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                if let Some(number) = &text_for {
                    if let Some(esc) = buf.iter().position(|b| *b == 0x1B) {
                        log.commands.push("(text cancelled)".into());
                        buf.drain(..=esc);
                        text_for = None;
                        f.write_all(b"\r\nOK\r\n").unwrap();
                        continue;
                    }
                    let Some(end) = buf.iter().position(|b| *b == 0x1A) else {
                        break;
                    };
                    if refuse > 0 {
                        refuse -= 1;
                        log.commands.push("(refused text)".into());
                        f.write_all(b"\r\n+CMS ERROR: 500\r\n").unwrap();
                    } else {
                        log.sms.push((number.clone(), buf[..end].to_vec()));
                        write!(f, "\r\n+CMGS: {}\r\n\r\nOK\r\n", log.sms.len()).unwrap();
                    }
                    buf.drain(..=end);
                    text_for = None;
                    continue;
                }
                // ESC outside text entry (a dialogue's first byte) is ignored.
                while buf.first() == Some(&0x1B) {
                    log.commands.push("(escape)".into());
                    buf.remove(0);
                }
                let Some(end) = buf.iter().position(|b| *b == b'\r') else {
                    break;
                };
                let cmd = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..=end);
                log.commands.push(cmd.clone());
                let answer = if let Some(pin) = cmd.strip_prefix("AT+CPIN=\"") {
                    log.pin = Some(pin.trim_end_matches('"').to_string());
                    locked = pin != "1234\"";
                    if locked {
                        "\r\n+CME ERROR: 16\r\n".to_string()
                    } else {
                        "\r\nOK\r\n".to_string()
                    }
                } else if cmd == "AT+CPIN?" {
                    let state = if locked { "SIM PIN" } else { "READY" };
                    format!("\r\n+CPIN: {state}\r\n\r\nOK\r\n")
                } else if cmd == "AT+CMGF=1" && cmgf_errors > 0 {
                    cmgf_errors -= 1;
                    "\r\nERROR\r\n".to_string()
                } else if let Some(n) = cmd.strip_prefix("AT+CMGS=\"") {
                    text_for = Some(n.trim_end_matches('"').to_string());
                    if mute > 0 {
                        mute -= 1;
                        String::new()
                    } else {
                        "\r\n> ".to_string()
                    }
                } else if cmd.starts_with("AT") {
                    "\r\nOK\r\n".to_string()
                } else {
                    "\r\nERROR\r\n".to_string()
                };
                f.write_all(answer.as_bytes()).unwrap();
            }
        }
        log
    })
}
