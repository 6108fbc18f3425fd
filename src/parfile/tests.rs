use super::*;
use crate::config::render::tests::every_table;

fn opts(secrets: Secrets) -> ExportOptions {
    ExportOptions {
        secrets,
        nvr_id: "nvr-test-id".into(),
        now_ms: 1_790_000_000_000,
    }
}

fn read_opts(pass: Option<&str>, accept_edited: bool) -> ReadOptions {
    ReadOptions {
        passphrase: pass.map(str::to_string),
        accept_edited,
    }
}

#[test]
fn export_import_export_is_the_same_with_sealed_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let c = every_table(dir.path());
    let text = export(&c, &opts(Secrets::Seal("correct horse".into()))).unwrap();
    // Nothing secret in clear; references stay references.
    for secret in [
        "p@ss",
        "mqtt-secret",
        "0123456789abcdef0123",
        "ffeeddccbbaa9988",
        "dock-secret",
        "gate-secret",
        "smtp-secret",
        "kannel-secret",
        "9081",
    ] {
        assert!(!text.contains(secret), "{secret} in clear:\n{text}");
    }
    assert!(text.contains("password_env = \"TANDEM_RENDER_TEST_PW\""), "{text}");
    assert!(text.starts_with("# Tandem parameter file"), "{text}");
    assert!(text.find("[parameter_file]").unwrap() < text.find("[storage]").unwrap());

    let incoming = read(&text, "site.tpar", &read_opts(Some("correct horse"), false)).unwrap();
    let h = incoming.header.clone().unwrap();
    assert_eq!((h.format, h.nvr.as_str()), (FORMAT_VERSION, "nvr-test-id"));
    assert_eq!(h.exported, "2026-09-21T14:13:20Z");
    let again = parse(&incoming, "site.tpar", Path::new("/elsewhere")).unwrap();
    assert_eq!(again, c, "the file holds the whole configuration, secrets included");
    let text2 = export(&again, &opts(Secrets::Seal("another passphrase".into()))).unwrap();
    // The sealed text differs (fresh keys), the content does not.
    let body = |t: &str| {
        let mut d: toml::Table = toml::from_str(t).unwrap();
        d.remove("secrets");
        d.remove(HEADER);
        d
    };
    assert_eq!(body(&text), body(&text2));
}

#[test]
fn without_secrets_nothing_secret_is_written_and_tokens_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let c = every_table(dir.path());
    let text = export(&c, &opts(Secrets::Omit)).unwrap();
    assert!(!text.contains("[secrets]") && !text.contains("[[token]]"), "{text}");
    let incoming = read(&text, "site.tpar", &read_opts(None, false)).unwrap();
    assert!(incoming.secrets.is_empty());
    let back = parse(&incoming, "site.tpar", Path::new("/elsewhere"))
        .unwrap_err()
        .to_string();
    // The backup rule needs its peer token, which the file no longer has.
    assert!(back.contains("failover.peer_token"), "{back}");

    // Importing it over the running configuration keeps the running secrets.
    let mut incoming = incoming;
    let kept = inherit_secrets(&mut incoming, &c);
    assert!(kept.iter().any(|l| l.starts_with("failover.peer_token")), "{kept:?}");
    let back = parse(&incoming, "site.tpar", Path::new("/elsewhere")).unwrap();
    assert_eq!(back.failover.peer_token, c.failover.peer_token);
    assert_eq!(back.cameras, c.cameras);
    assert_eq!(back.mqtt, c.mqtt);
    let accounts = back.accounts.unwrap();
    assert_eq!(accounts.users, c.accounts.as_ref().unwrap().users);
    assert_eq!(accounts.tokens, None, "tokens not stated: the stored ones stay");
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_clear_error() {
    let text = export(&Config::default(), &opts(Secrets::Seal("correct horse".into()))).unwrap();
    let e = read(&text, "site.tpar", &read_opts(Some("wrong horse"), false))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("site.tpar") && e.contains("secrets.sealed") && e.contains("wrong passphrase"),
        "{e}"
    );
    let e = read(&text, "site.tpar", &read_opts(None, false))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("give the passphrase"), "{e}");
}

#[test]
fn an_edited_file_is_refused_unless_accepted_and_layout_is_not_an_edit() {
    let text = export(&Config::default(), &opts(Secrets::Omit)).unwrap();
    // Comments and blank lines are not content.
    let relaid = format!("# my notes\n\n{}", text.replace("\n\n", "\n"));
    assert!(read(&relaid, "f", &read_opts(None, false)).is_ok());
    let edited = text.replace("segment_duration = \"1m\"", "segment_duration = \"2m\"");
    assert_ne!(edited, text);
    let e = read(&edited, "site.tpar", &read_opts(None, false)).err().unwrap();
    assert_eq!(e.0[0].field, "parameter_file.sha256");
    assert!(e.0[0].line > 0, "{e}");
    assert!(e.to_string().contains("--accept-edited"), "{e}");
    let ok = read(&edited, "site.tpar", &read_opts(None, true)).unwrap();
    assert!(ok.notes.iter().any(|n| n.contains("edited")), "{:?}", ok.notes);
    let c = parse(&ok, "site.tpar", Path::new("")).unwrap();
    assert_eq!(c.storage.segment_duration, std::time::Duration::from_secs(120));
}

#[test]
fn a_newer_format_and_a_plain_config_file() {
    let text = export(&Config::default(), &opts(Secrets::Omit)).unwrap();
    let newer = text.replace("format = 1", "format = 9");
    let e = read(&newer, "f", &read_opts(None, true)).err().unwrap().to_string();
    assert!(e.contains("newer Tandem"), "{e}");
    let plain = "[storage]\ndir = \"/tmp/x\"\n";
    let r = read(plain, "tandem.toml", &read_opts(None, false)).unwrap();
    assert!(r.header.is_none());
    assert_eq!(
        parse(&r, "tandem.toml", Path::new("")).unwrap().storage.dir,
        Path::new("/tmp/x")
    );
    // A syntax error is reported by the configuration's own parser, with its line.
    let e = read("[storage]\ndir = \n", "bad.toml", &read_opts(None, false))
        .err()
        .unwrap();
    assert_eq!(e.0[0].line, 2, "{e}");
}
