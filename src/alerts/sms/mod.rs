//! SMS: text segmentation (GSM 03.38 / UCS-2) and the three routes a site
//! may have — Kannel's `sendsms` HTTP interface, a Twilio-compatible REST
//! API and a GSM modem on a serial port.
//!
//! Must never block the runtime (HTTP on the blocking pool, the modem on the
//! reactor, everything under a timeout), send a token to an `https://`
//! gateway whose certificate the system roots do not vouch for, read more
//! than `alerts::http::MAX_ANSWER` bytes of a gateway's answer, nor report `Delivered` unless every
//! recipient got every part. None of the routes can de-duplicate, so a
//! retried alert is sent whole again (at least once, not exactly once).

pub mod kannel;
pub mod modem;
pub mod segments;
pub mod twilio;

use std::future::Future;

use super::{Delivery, Message};
use crate::config::{SmsProvider, SmsTarget};

/// The serial speeds a modem may be configured with.
pub fn valid_baud(b: u32) -> bool {
    matches!(b, 9600 | 19200 | 38400 | 57600 | 115_200 | 230_400 | 460_800)
}

/// The most of a gateway's answer quoted in an error.
const QUOTE: usize = 200;

/// Sends `msg.body` to every number of `t`, segmented as configured.
pub async fn send(t: &SmsTarget, msg: &Message) -> Delivery {
    let gsm7 = match t.provider {
        SmsProvider::Modem { .. } => segments::Gsm7::BasicOnly,
        _ => segments::Gsm7::Full,
    };
    let parts = segments::fit(&msg.body, t.max_segments, t.overflow, gsm7);
    match &t.provider {
        SmsProvider::Kannel {
            url,
            username,
            password,
        } => kannel::send(url, username, &password.value, &t.to, &parts).await,
        SmsProvider::Twilio {
            url,
            account,
            token,
            from,
        } => twilio::send(url, account, &token.value, from, &t.to, &parts).await,
        SmsProvider::Modem { device, baud, pin } => {
            modem::send(device, *baud, pin.as_ref().map(|p| p.value.as_str()), &t.to, &parts).await
        }
    }
}

/// The outcomes of one alert's requests (a recipient and a part each),
/// summed up: delivered only if all were; else retried if any is worth
/// retrying (the whole alert goes again), else failed.
/// Sends every part to every number with `one`, whose `Err` means the
/// gateway itself could not be reached: then the other numbers are not tried
/// (each would wait out its own timeout, and the alert goes again whole).
/// A number whose part failed gets none of its later parts.
async fn each_part<F, Fut>(to: &[String], parts: &[String], mut one: F) -> Delivery
where
    F: FnMut(&str, &str) -> Fut,
    Fut: Future<Output = Result<Delivery, Delivery>>,
{
    let mut tally = Tally::default();
    'all: for number in to {
        for text in parts {
            match one(number, text).await {
                Ok(outcome) => {
                    if !tally.add(number, outcome) {
                        break;
                    }
                }
                Err(unreachable) => {
                    tally.add(number, unreachable);
                    break 'all;
                }
            }
        }
    }
    tally.outcome()
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    retry: Vec<String>,
    fail: Vec<String>,
}

impl Tally {
    /// Adds one outcome for `to`; false if it was not delivered (the
    /// recipient's further parts are not sent: they would read out of order).
    pub(crate) fn add(&mut self, to: &str, d: Delivery) -> bool {
        match d {
            Delivery::Delivered => return true,
            Delivery::Retry(e) => self.retry.push(format!("to {to}: {e}")),
            Delivery::Fail(e) => self.fail.push(format!("to {to}: {e}")),
        }
        false
    }

    pub(crate) fn outcome(self) -> Delivery {
        let all = || [&self.retry[..], &self.fail[..]].concat().join("; ");
        if !self.retry.is_empty() {
            Delivery::Retry(all())
        } else if !self.fail.is_empty() {
            Delivery::Fail(all())
        } else {
            Delivery::Delivered
        }
    }
}

/// At most `QUOTE` characters of a gateway's answer, on one line.
fn quote(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_delivered_only_when_everything_was() {
        let mut t = Tally::default();
        assert!(t.add("+1", Delivery::Delivered));
        assert_eq!(t.outcome(), Delivery::Delivered);
        let mut t = Tally::default();
        assert!(!t.add("+1", Delivery::Fail("bad number".into())));
        assert!(t.add("+2", Delivery::Delivered));
        assert_eq!(t.outcome(), Delivery::Fail("to +1: bad number".into()));
        let mut t = Tally::default();
        t.add("+1", Delivery::Fail("bad number".into()));
        t.add("+2", Delivery::Retry("HTTP 503".into()));
        assert_eq!(
            t.outcome(),
            Delivery::Retry("to +2: HTTP 503; to +1: bad number".into()),
            "a transient failure keeps the alert alive"
        );
    }

    #[test]
    fn quotes_are_bounded_and_on_one_line() {
        assert_eq!(quote("  Sent.\r\n"), "Sent.");
        let q = quote(&"é".repeat(1000));
        assert_eq!(q.chars().count(), QUOTE + 1);
        assert!(q.ends_with('…'));
    }
}
