//! SMS through a Twilio-compatible REST API: `POST
//! {url}/2010-04-01/Accounts/{account}/Messages.json` with Basic auth
//! `account:token` and the form fields `To`, `From`, `Body`; one request
//! per recipient and message part.
//!
//! Must never log or quote the token. 200/201 is sent; 429 and 5xx are
//! retried; another 4xx is failed with the API's `message`, bounded.

use base64::Engine;

use super::{each_part, quote};
use crate::alerts::http::request;
use crate::alerts::Delivery;

/// The Messages resource of `account` under `base`.
pub fn messages_url(base: &url::Url, account: &str) -> Result<url::Url, String> {
    let mut u = base.clone();
    u.path_segments_mut()
        .map_err(|_| format!("{base} cannot take a path"))?
        .pop_if_empty()
        .extend(["2010-04-01", "Accounts", account, "Messages.json"]);
    Ok(u)
}

/// The urlencoded form of one SMS.
pub fn form(to: &str, from: &str, body: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("To", to)
        .append_pair("From", from)
        .append_pair("Body", body)
        .finish()
}

/// The API's answer as an outcome, with its JSON `message` (or the start
/// of its body) quoted.
pub fn classify(status: u16, body: &[u8]) -> Delivery {
    let said = || {
        let text = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).to_string());
        format!("\"{}\"", quote(&text))
    };
    match status {
        200 | 201 => Delivery::Delivered,
        429 | 500..=599 => Delivery::Retry(format!("the SMS API answered HTTP {status}: {}", said())),
        _ => Delivery::Fail(format!("the SMS API answered HTTP {status}: {}", said())),
    }
}

pub async fn send(
    base: &url::Url,
    account: &str,
    token: &str,
    from: &str,
    to: &[String],
    parts: &[String],
) -> Delivery {
    let url = match messages_url(base, account) {
        Ok(u) => u,
        Err(e) => return Delivery::Fail(e),
    };
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{account}:{token}"))
    );
    let what = format!("the SMS API at {}", base.host_str().unwrap_or("?"));
    each_part(to, parts, |number, text| {
        let headers = vec![
            ("Authorization", auth.clone()),
            ("Content-Type", "application/x-www-form-urlencoded".to_string()),
            ("User-Agent", "Tandem NVR".to_string()),
        ];
        let body = form(number, from, text).into_bytes();
        let (what, url) = (&what, url.to_string());
        async move {
            let r = request(what, "POST", url, headers, body, None).await?;
            Ok(classify(r.status, &r.body))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_url_is_under_the_base() {
        let u = |b: &str| messages_url(&url::Url::parse(b).unwrap(), "AC01").unwrap().to_string();
        assert_eq!(
            u("https://api.twilio.com"),
            "https://api.twilio.com/2010-04-01/Accounts/AC01/Messages.json"
        );
        assert_eq!(
            u("http://127.0.0.1:18190/"),
            "http://127.0.0.1:18190/2010-04-01/Accounts/AC01/Messages.json"
        );
        assert_eq!(
            u("http://gw.local/proxy/"),
            "http://gw.local/proxy/2010-04-01/Accounts/AC01/Messages.json"
        );
        let odd = messages_url(&url::Url::parse("http://h/").unwrap(), "a/b").unwrap();
        assert!(odd.path().ends_with("/Accounts/a%2Fb/Messages.json"), "{odd}");
    }

    #[test]
    fn the_form_is_urlencoded() {
        assert_eq!(
            form("+4915", "+1555", "Door & Tür 😀"),
            "To=%2B4915&From=%2B1555&Body=Door+%26+T%C3%BCr+%F0%9F%98%80"
        );
    }

    #[test]
    fn answers_are_classified_with_the_apis_words() {
        assert_eq!(classify(201, b"{}"), Delivery::Delivered);
        assert_eq!(classify(200, b""), Delivery::Delivered);
        assert!(matches!(classify(429, b"{}"), Delivery::Retry(_)));
        assert!(matches!(classify(503, b"busy"), Delivery::Retry(e) if e.ends_with("\"busy\"")));
        assert_eq!(
            classify(
                400,
                br#"{"code":21211,"message":"The 'To' number +1 is not valid.","status":400}"#
            ),
            Delivery::Fail("the SMS API answered HTTP 400: \"The 'To' number +1 is not valid.\"".into())
        );
        match classify(401, "x".repeat(10_000).as_bytes()) {
            Delivery::Fail(e) => assert!(e.len() < 300, "bounded: {}", e.len()),
            d => panic!("{d:?}"),
        }
    }
}
