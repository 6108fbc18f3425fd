//! SMS through Kannel's `sendsms` HTTP interface (smsbox): one GET per
//! recipient and message part, the text in UTF-8 with `coding=2` (UCS-2)
//! when it needs it, else `coding=0` (GSM 7-bit).
//!
//! Must never log or quote the password; a 4xx (bad request or credentials)
//! is permanent, a 503 (bearerbox down) or no answer is retried.

use super::segments::{self, Coding, Gsm7};
use super::{each_part, quote};
use crate::alerts::http::request;
use crate::alerts::Delivery;

/// The sendsms URL for one SMS. Kannel takes the sender from the
/// sendsms-user's `default-sender` (or `faked-sender`): the action has none.
pub fn url_for(base: &url::Url, username: &str, password: &str, to: &str, text: &str) -> url::Url {
    let coding = match segments::coding(text, Gsm7::Full) {
        Coding::Gsm7 => "0",
        Coding::Ucs2 => "2",
    };
    let mut u = base.clone();
    u.query_pairs_mut()
        .append_pair("username", username)
        .append_pair("password", password)
        .append_pair("to", to)
        .append_pair("text", text)
        .append_pair("charset", "UTF-8")
        .append_pair("coding", coding);
    u
}

/// Kannel's answer as an outcome: 2xx ("0: Accepted for delivery", "Sent.",
/// "Queued for later delivery") delivered; 5xx (503: no bearerbox or SMSC)
/// and 429/408 retried; another 4xx failed, with Kannel's words.
pub fn classify(status: u16, body: &str) -> Delivery {
    match crate::alerts::http::classify_http(status, "Kannel") {
        Delivery::Delivered => Delivery::Delivered,
        Delivery::Retry(e) => Delivery::Retry(format!("{e}: {}", quote(body))),
        Delivery::Fail(e) => Delivery::Fail(format!("{e}: {}", quote(body))),
    }
}

pub async fn send(base: &url::Url, username: &str, password: &str, to: &[String], parts: &[String]) -> Delivery {
    let what = format!("Kannel at {}", base.host_str().unwrap_or("?"));
    each_part(to, parts, |number, text| {
        let u = url_for(base, username, password, number, text).to_string();
        let what = &what;
        async move {
            let headers = vec![("User-Agent", "Tandem NVR".to_string())];
            let r = request(what, "GET", u, headers, vec![], None).await?;
            Ok(classify(r.status, &String::from_utf8_lossy(&r.body)))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_carries_every_field_encoded() {
        let base = url::Url::parse("http://127.0.0.1:13013/cgi-bin/sendsms").unwrap();
        let u = url_for(&base, "tandem", "p&ss word", "+4915112345", "Door at Lobby & more");
        let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(u.path(), "/cgi-bin/sendsms");
        assert_eq!(get("username"), Some("tandem"));
        assert_eq!(get("password"), Some("p&ss word"));
        assert_eq!(get("to"), Some("+4915112345"));
        assert_eq!(get("text"), Some("Door at Lobby & more"));
        assert_eq!(get("charset"), Some("UTF-8"));
        assert_eq!(get("coding"), Some("0"));
        assert!(u.as_str().contains("to=%2B4915112345"), "{u}");
        let u = url_for(&base, "t", "p", "+1", "Tür 😀");
        assert!(u.query_pairs().any(|(k, v)| k == "coding" && v == "2"));
        let u = url_for(&base, "t", "p", "+1", "€5 [door]");
        assert!(
            u.query_pairs().any(|(k, v)| k == "coding" && v == "0"),
            "extension characters are GSM"
        );
    }

    #[test]
    fn kannel_answers_are_classified() {
        assert_eq!(classify(202, "0: Accepted for delivery"), Delivery::Delivered);
        assert_eq!(classify(202, "Sent."), Delivery::Delivered);
        assert_eq!(
            classify(503, "Sent failed\n"),
            Delivery::Retry("Kannel answered HTTP 503: Sent failed".into())
        );
        assert_eq!(
            classify(403, "Authorization failed for sendsms"),
            Delivery::Fail("Kannel answered HTTP 403: Authorization failed for sendsms".into())
        );
        assert!(matches!(classify(400, "x"), Delivery::Fail(_)));
    }
}
