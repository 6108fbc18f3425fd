//! SMS: text segmentation (GSM 03.38 / UCS-2) and the three routes a site
//! may have — Kannel's `sendsms` HTTP interface, a Twilio-compatible REST
//! API and a GSM modem on a serial port.

/// The serial speeds a modem may be configured with.
pub fn valid_baud(b: u32) -> bool {
    matches!(b, 9600 | 19200 | 38400 | 57600 | 115_200 | 230_400 | 460_800)
}

use super::{Delivery, Message};
use crate::config::SmsTarget;

/// Sends `msg.body` to every number of `t`, segmented as configured.
pub async fn send(t: &SmsTarget, _msg: &Message) -> Delivery {
    Delivery::Fail(format!("the {} SMS route is being built", t.provider.name()))
}
