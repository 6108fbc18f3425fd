//! E-mail over SMTP (lettre, async, rustls): plain for a site relay,
//! STARTTLS (required: a server that does not offer it gets nothing), or
//! implicit TLS (SMTPS); AUTH PLAIN/LOGIN when a username is configured. The
//! message is the text body, with the event's snapshot attached as
//! `image/jpeg`, and `Message-ID: <{id}@tandem>` so that a retried message
//! is recognisably the same one.
//!
//! Must never send a password over a connection that is not encrypted when
//! TLS was asked for, never accept a certificate the configured trust does
//! not vouch for, and never wait on a server longer than `TIMEOUT`.

use std::path::Path;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{trust, Delivery, Message};
use crate::config::{EmailTarget, MailTls};

/// Per network operation (connect, each reply); the whole attempt gets a
/// little more, so that a server trickling replies cannot hold it forever.
pub const TIMEOUT: Duration = Duration::from_secs(20);
const ATTEMPT: Duration = Duration::from_secs(30);

pub async fn send(t: &EmailTarget, msg: &Message, snapshot: Option<&[u8]>) -> Delivery {
    let mail = match compose(t, msg, snapshot) {
        Ok(m) => m,
        Err(e) => return Delivery::Fail(e),
    };
    // Reading the CA file (or, the first time, the system store) is file
    // I/O: off the runtime.
    let settings = t.clone();
    let transport = match tokio::task::spawn_blocking(move || transport(&settings)).await {
        Ok(Ok(tr)) => tr,
        Ok(Err(e)) => return Delivery::Fail(e),
        Err(e) => return Delivery::Retry(format!("preparing the SMTP connection: {e}")),
    };
    let server = format!("SMTP server {}:{}", t.smtp_host, t.smtp_port);
    match tokio::time::timeout(ATTEMPT, transport.send(mail)).await {
        Ok(Ok(_)) => Delivery::Delivered,
        Ok(Err(e)) => classify(&e, &server, t.ca_file.as_deref()),
        Err(_) => Delivery::Retry(format!("{server}: no answer within {} s", ATTEMPT.as_secs())),
    }
}

/// The mail itself: text, or text plus the JPEG as an attachment.
pub fn compose(t: &EmailTarget, msg: &Message, snapshot: Option<&[u8]>) -> Result<lettre::Message, String> {
    let mut b = lettre::Message::builder()
        .subject(msg.subject.clone())
        .message_id(Some(format!("<{}@tandem>", msg.id)));
    b = b.from(t.from.parse().map_err(|e| format!("from `{}`: {e}", t.from))?);
    for to in &t.to {
        b = b.to(to.parse().map_err(|e| format!("to `{to}`: {e}"))?);
    }
    let text = SinglePart::plain(msg.body.clone());
    let built = match snapshot {
        None => b.singlepart(text),
        Some(jpeg) => {
            let jpeg_type = ContentType::parse("image/jpeg").map_err(|e| e.to_string())?;
            let name = match msg.event_id {
                Some(id) => format!("snapshot-{id}.jpg"),
                None => "snapshot.jpg".to_string(),
            };
            b.multipart(
                MultiPart::mixed()
                    .singlepart(text)
                    .singlepart(Attachment::new(name).body(jpeg.to_vec(), jpeg_type)),
            )
        }
    };
    built.map_err(|e| format!("composing the mail: {e}"))
}

fn transport(t: &EmailTarget) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(t.smtp_host.as_str())
        .port(t.smtp_port)
        .timeout(Some(TIMEOUT));
    b = match t.tls {
        MailTls::None => b.tls(Tls::None),
        MailTls::StartTls => b.tls(Tls::Required(tls_parameters(t)?)),
        MailTls::Implicit => b.tls(Tls::Wrapper(tls_parameters(t)?)),
    };
    if let Some(user) = &t.username {
        let password = t.password.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        b = b
            .credentials(Credentials::new(user.clone(), password))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(b.build())
}

/// lettre 0.11 takes root certificates, not a rustls configuration: the same
/// anchors `trust` reads, each one lettre's store would accept.
fn tls_parameters(t: &EmailTarget) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(t.smtp_host.clone()).certificate_store(CertificateStore::None);
    let mut usable = 0;
    for der in trust::roots(t.ca_file.as_deref())? {
        // lettre adds roots strictly; one odd system certificate must not
        // make every mail fail, so only those a store takes are passed on.
        if rustls::RootCertStore::empty().add(der.clone()).is_err() {
            continue;
        }
        let c = Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?;
        b = b.add_root_certificate(c);
        usable += 1;
    }
    if usable == 0 {
        return Err(format!(
            "{}: no usable CA certificate",
            trust::describe(t.ca_file.as_deref())
        ));
    }
    b.build_rustls()
        .map_err(|e| format!("TLS settings for {}: {e}", t.smtp_host))
}

/// An SMTP failure as a delivery outcome: 4xx, a refused connection or a
/// timeout is worth another try; 5xx, a refused login, a refused
/// certificate or a server without STARTTLS will not get better.
fn classify(e: &lettre::transport::smtp::Error, server: &str, ca_file: Option<&Path>) -> Delivery {
    let text = chain(e);
    if let Some(detail) = certificate_refusal(e).or_else(|| trust::is_certificate_error(&text).then(|| text.clone())) {
        return Delivery::Fail(format!("{server}: {}", trust::not_trusted(ca_file, &detail)));
    }
    if e.is_permanent() {
        return Delivery::Fail(format!("{server} refused the message: {text}"));
    }
    if e.is_transient() || e.is_timeout() {
        return Delivery::Retry(format!("{server}: {text}"));
    }
    if e.is_client() {
        // "STARTTLS is not supported", "no compatible authentication
        // mechanism": the server's setup, not a passing fault.
        return Delivery::Fail(format!("{server}: {text}"));
    }
    Delivery::Retry(format!("{server}: {text}"))
}

/// The error and every cause, as one line (lettre's own text stops at
/// "Connection error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// rustls's own verdict, when the chain carries it (an `io::Error` hides
/// its payload from `source()`, so each one is opened).
fn certificate_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        let r = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
        });
        if let Some(r @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)) = r {
            return Some(r.to_string());
        }
        cur = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn target() -> EmailTarget {
        EmailTarget {
            smtp_host: "127.0.0.1".into(),
            smtp_port: 1,
            tls: MailTls::None,
            username: None,
            password: None::<Secret>,
            ca_file: None,
            from: "nvr@example.org".into(),
            to: vec!["a@example.org".into(), "b@example.org".into()],
        }
    }

    fn message() -> Message {
        Message {
            id: "tandem-site-42".into(),
            subject: "Motion on Yard".into(),
            body: "Motion on channel 1".into(),
            json: serde_json::json!({}),
            event_id: Some(7),
        }
    }

    #[test]
    fn the_mail_carries_its_id_text_and_snapshot() {
        let raw = compose(&target(), &message(), Some(&[0xff, 0xd8, 0xff, 0xd9]))
            .unwrap()
            .formatted();
        let s = String::from_utf8_lossy(&raw);
        assert!(s.contains("Message-ID: <tandem-site-42@tandem>"), "{s}");
        assert!(s.contains("To: a@example.org, b@example.org"), "{s}");
        assert!(s.contains("Content-Type: multipart/mixed"), "{s}");
        assert!(s.contains("Content-Type: image/jpeg"), "{s}");
        assert!(s.contains("filename=\"snapshot-7.jpg\""), "{s}");
        assert!(s.contains("Motion on channel 1"), "{s}");
        let plain = String::from_utf8_lossy(&compose(&target(), &message(), None).unwrap().formatted()).to_string();
        assert!(!plain.contains("multipart") && plain.contains("text/plain"), "{plain}");
    }

    #[test]
    fn a_bad_address_fails_naming_it() {
        let mut t = target();
        t.to.push("not an address".into());
        let e = compose(&t, &message(), None).unwrap_err();
        assert!(e.contains("to `not an address`"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_retried() {
        // Port 1 on loopback: nothing listens there.
        match send(&target(), &message(), None).await {
            Delivery::Retry(e) => assert!(e.contains("SMTP server 127.0.0.1:1"), "{e}"),
            d => panic!("{d:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_ca_file_fails_before_connecting() {
        let mut t = target();
        t.tls = MailTls::StartTls;
        t.ca_file = Some("/nonexistent/ca.pem".into());
        match send(&t, &message(), None).await {
            Delivery::Fail(e) => assert!(e.contains("/nonexistent/ca.pem"), "{e}"),
            d => panic!("{d:?}"),
        }
    }
}
