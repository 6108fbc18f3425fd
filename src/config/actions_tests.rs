//! The `[[action]]` tables' checks: each bad field is reported with its
//! line and name, nothing else is.

use std::path::Path;
use std::time::Duration;

use super::actions::{DEFAULT_OFFLINE_GRACE, DEFAULT_RETRY_FOR};
use super::*;

fn errors(actions: &str) -> Vec<(usize, String, String)> {
    let text = format!("[storage]\nmin_free = 0\n{actions}");
    match parse(&text, "site.toml", Path::new("/etc/tandem")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.into_iter().map(|e| (e.line, e.field, e.message)).collect(),
    }
}

fn one_error(actions: &str) -> (usize, String, String) {
    let e = errors(actions);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

fn ok(actions: &str) -> Vec<ActionConfig> {
    let text = format!("[storage]\nmin_free = 0\n{actions}");
    parse(&text, "site.toml", Path::new("/etc/tandem")).unwrap().actions
}

#[test]
fn an_unknown_template_field_names_the_field_and_line() {
    let (line, field, msg) =
        one_error("[[action]]\ntype = \"webhook\"\nurl = \"http://h/\"\nsubject = \"{nvr} {camera}\"\n");
    assert_eq!((line, field.as_str()), (6, "action[0].subject"));
    assert!(msg.contains("`{camera}` is not a template field"), "{msg}");
    let (line, field, _) = one_error(
        "[[action]]\ntype = \"sms\"\nprovider = \"modem\"\ndevice = \"/dev/ttyUSB0\"\nto = [\"+4915112345678\"]\ntemplate = \"{type\"\n",
    );
    assert_eq!((line, field.as_str()), (8, "action[0].body"));
}

#[test]
fn sms_providers_need_their_fields() {
    let e = errors("[[action]]\ntype = \"sms\"\nprovider = \"kannel\"\nto = [\"+4915112345678\"]\n");
    let fields: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        fields,
        ["action[0].url", "action[0].username", "action[0].password"],
        "{e:?}"
    );
    let e = errors("[[action]]\ntype = \"sms\"\nprovider = \"twilio\"\nto = [\"+15552223333\"]\n");
    let fields: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        fields,
        ["action[0].account", "action[0].from", "action[0].token"],
        "{e:?}"
    );
    let (_, f, m) = one_error("[[action]]\ntype = \"sms\"\nprovider = \"pigeon\"\nto = [\"+15552223333\"]\n");
    assert_eq!(f, "action[0].provider");
    assert!(m.contains("kannel, twilio, modem"), "{m}");
    let (_, f, _) = one_error("[[action]]\ntype = \"sms\"\nto = [\"+15552223333\"]\n");
    assert_eq!(f, "action[0].provider");
}

#[test]
fn phone_numbers_segments_pins_and_speeds_are_checked() {
    let modem = |extra: &str| {
        format!("[[action]]\ntype = \"sms\"\nprovider = \"modem\"\ndevice = \"/dev/ttyUSB0\"\nto = [\"+4915112345678\"]\n{extra}")
    };
    let (line, f, m) = one_error(&modem("").replace("+4915112345678", "0151 123"));
    assert_eq!((line, f.as_str()), (7, "action[0].to"));
    assert!(m.contains("international form"), "{m}");
    assert_eq!(one_error(&modem("max_segments = 11\n")).1, "action[0].max_segments");
    assert_eq!(one_error(&modem("overflow = \"wrap\"\n")).1, "action[0].overflow");
    assert_eq!(one_error(&modem("pin = \"12\"\n")).1, "action[0].pin");
    assert_eq!(one_error(&modem("baud = 1234\n")).1, "action[0].baud");
    assert_eq!(one_error(&modem("snapshot_width = 10\n")).1, "action[0].snapshot_width");
    let a = &ok(&modem("pin = \"9081\"\nmax_segments = 3\noverflow = \"split\"\n"))[0];
    let ActionTarget::Sms(s) = &a.target else { panic!() };
    assert_eq!((s.max_segments, s.overflow), (3, SmsOverflow::Split));
    assert!(matches!(&s.provider, SmsProvider::Modem { baud: 115_200, pin: Some(p), .. } if p.value == "9081"));
    // A secret never shows in debug output.
    assert!(!format!("{a:?}").contains("9081"));
}

#[test]
fn mail_tls_follows_the_port_unless_given() {
    let mail = |smtp: &str, extra: &str| {
        format!("[[action]]\ntype = \"email\"\nsmtp = \"{smtp}\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n{extra}")
    };
    let tls = |smtp: &str, extra: &str| match &ok(&mail(smtp, extra))[0].target {
        ActionTarget::Email(e) => (e.tls, e.smtp_port),
        _ => panic!(),
    };
    assert_eq!(tls("smtp://h", ""), (MailTls::None, 25));
    assert_eq!(tls("smtp://h:587", ""), (MailTls::StartTls, 587));
    assert_eq!(tls("smtps://h", ""), (MailTls::Implicit, 465));
    assert_eq!(tls("smtp://h:2525", "tls = \"starttls\"\n"), (MailTls::StartTls, 2525));
    let (_, f, m) = one_error(&mail("smtp://h", "tls = \"ssl\"\n"));
    assert_eq!(f, "action[0].tls");
    assert!(m.contains("starttls, implicit, none"), "{m}");
    let (_, f, _) = one_error(&mail("smtp://h:587", "password = \"x\"\n"));
    assert_eq!(f, "action[0].username");
    let (_, f, m) = one_error(&mail("smtp://h:587", "ca_file = \"/nonexistent/ca.pem\"\n"));
    assert_eq!(f, "action[0].ca_file");
    assert!(m.contains("/nonexistent/ca.pem"), "{m}");
    let (_, f, _) = one_error(&mail("imap://h", ""));
    assert_eq!(f, "action[0].smtp");
}

#[test]
fn webhooks_take_https_and_secrets_come_from_one_place() {
    let a = &ok("[[action]]\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n")[0];
    assert!(matches!(&a.target, ActionTarget::Webhook { url, ca_file: None } if url.scheme() == "https"));
    assert_eq!(
        one_error("[[action]]\ntype = \"webhook\"\nurl = \"ftp://h/\"\n").1,
        "action[0].url"
    );
    let (_, f, m) = one_error(
        "[[action]]\ntype = \"sms\"\nprovider = \"twilio\"\naccount = \"AC1\"\nfrom = \"+15550001111\"\n\
         to = [\"+15552223333\"]\ntoken = \"t\"\ntoken_env = \"T\"\n",
    );
    assert_eq!(f, "action[0].token");
    assert!(m.contains("only one of token, token_env, token_file"), "{m}");
    let (_, f, m) = one_error(
        "[[action]]\ntype = \"sms\"\nprovider = \"twilio\"\naccount = \"AC1\"\nfrom = \"+15550001111\"\n\
         to = [\"+15552223333\"]\ntoken_env = \"TANDEM_SURELY_UNSET_VARIABLE\"\n",
    );
    assert_eq!(f, "action[0].token_env");
    assert!(m.contains("TANDEM_SURELY_UNSET_VARIABLE"), "{m}");
}

#[test]
fn schedule_retry_and_grace_have_defaults_and_bounds() {
    let a = &ok("[[action]]\ntype = \"webhook\"\nurl = \"http://h/\"\n")[0];
    assert_eq!(a.retry_for, DEFAULT_RETRY_FOR);
    assert_eq!(a.offline_grace, DEFAULT_OFFLINE_GRACE);
    assert!(a.schedule.is_none() && a.snapshot && a.subject.is_none());
    assert!(a.scheduled_at(crate::time::Time90k(0)));
    let a = &ok(
        "[[action]]\ntype = \"webhook\"\nurl = \"http://h/\"\ntime_zone = \"UTC\"\n\
                 schedule = [{ days = \"mon\", from = \"08:00\", to = \"09:00\" }]\nretry_for = \"10m\"\n",
    )[0];
    assert_eq!(a.retry_for, Duration::from_secs(600));
    // 1970-01-05 was a Monday.
    let at = |h: i64| crate::time::Time90k((4 * 86400 + h * 3600) * 90_000);
    assert!(!a.scheduled_at(at(7)) && a.scheduled_at(at(8)) && !a.scheduled_at(at(9)));
    assert!(!a.scheduled_at(at(8 + 24)), "Tuesday is outside the schedule");
    let e = errors(
        "[[action]]\ntype = \"webhook\"\nurl = \"http://h/\"\nretry_for = \"30d\"\n\
                    schedule = [{ days = \"someday\", from = \"8\" }]\ntime_zone = \"Mars/Olympus\"\n",
    );
    let fields: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        fields,
        [
            "action[0].retry_for",
            "action[0].schedule[0].days",
            "action[0].schedule[0].from",
            "action[0].schedule[0].to",
            "action[0].time_zone",
        ],
        "{e:?}"
    );
}
