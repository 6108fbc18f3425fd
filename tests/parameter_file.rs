//! The parameter file end to end, through the `tandem` binary against running
//! NVRs: export → import → export round trip of every table, secrets sealed
//! or left out, a wrong passphrase, atomicity (every error listed, nothing
//! applied, recording untouched), a checksum mismatch, versions and rollback
//! with their audit entries, push to several NVRs with overrides, the HTTP
//! API's `If-Match` and admin-only rules, and SIGHUP.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const PASSPHRASE: &str = "correct horse battery";

/// Two Frigate cameras (record and detect roles, retention) and a detector
/// Tandem has no equivalent for.
const FRIGATE: &str = r#"
detectors:
  cpu1:
    type: cpu
cameras:
  porch:
    ffmpeg:
      inputs:
        - path: rtsp://127.0.0.1:1/main
          roles: [record]
        - path: rtsp://127.0.0.1:1/sub
          roles: [detect]
    record:
      enabled: true
      retain:
        days: 3
  yard:
    ffmpeg:
      inputs:
        - path: rtsp://127.0.0.2:1/main
          roles: [record, detect]
"#;

/// A configuration using every table; channel 1 records `cam` (a simulated
/// camera). Every address is on loopback.
fn every_table(dir: &Path, name: &str, cam: &str) -> String {
    format!(
        r#"[nvr]
name = "{name}"

[storage]
dir = "{data}"
min_free = "10 MB"
segment_duration = "2m"

[http]
listen = "{{listen}}"

[access]
session_idle = "2h"
audit_retention = "90d"

[[network_camera]]
name = "lobby"
url = "{cam}"
channel = 1

[[network_camera]]
name = "dock"
url = "rtsp://127.0.0.3:1/s1"
transport = "tcp"
username = "viewer"
password = "dock-secret"

[[channel]]
number = 1
name = "Lobby"
camera = "lobby"
retention = {{ max_age = "7d", event_max_age = "forever", max_bytes = "1 GiB" }}
recording = {{ mode = "continuous+events", time_zone = "Europe/Paris", pre = "2.5s", post = "1m", max_event = "10m", buffer_limit = "64 MiB", schedule = [ {{ days = "sat", from = "22:00", to = "24:00", mode = "continuous" }} ] }}
motion = {{ sensitivity = 70, min_area = 0.013, zones = [ [[0.1, 0.1], [0.9, 0.1], [0.5, 0.95]] ], masks = [ [[0, 0], [0.2, 0], [0.2, 0.3]] ], hold = "1500ms", record = false }}

[[channel]]
number = 2
camera = "dock"

[[channel]]
number = 3

[failover]
peer_token = "0123456789abcdef0123"
transfer_rate = "1 MB"

[[rule]]
name = "for-a"
release_delay = 2.5
check = {{ address = "127.0.0.1", type = "http", port = 1, interval = 0.3, timeout = 0.25, failure_count = 3, normal_count = 1 }}
states.normal = [ {{ camera = 1, address = "n/a" }} ]
states.failure = [ {{ camera = 1, address = "127.0.0.1", channel = 1 }} ]

[mqtt]
broker = "mqtt://127.0.0.1:1"
client_id = "{name}"
username = "tandem"
password = "mqtt-secret"
topic_prefix = "site"
discovery = false

[[trigger]]
channel = 2
type = "door"
mqtt_topic = "zigbee/door"
payload_start = "open"
payload_stop = "closed"
pulse = "5s"

[[action]]
name = "ops-mail"
type = "email"
smtp = "smtp://127.0.0.1:1"
from = "nvr@example.org"
to = ["ops@example.org"]
channels = [1, 2]
events = ["door", "motion"]
min_interval = "30s"

[[action]]
type = "webhook"
url = "http://127.0.0.1:1/hook"
"#,
        data = dir.join(format!("{name}-data")).display()
    )
}

/// A small configuration: channel 1 records `cam`. Its storage settings
/// are `every_table`'s (they cannot change while an NVR runs).
fn small(dir: &Path, name: &str, cam: &str) -> String {
    format!(
        "[nvr]\nname = \"{name}\"\n[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\nsegment_duration = \"2m\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"c\"\nurl = \"{cam}\"\n[[channel]]\nnumber = 1\nname = \"Front\"\ncamera = \"c\"\n",
        dir.join(format!("{name}-data")).display()
    )
}

fn token(n: &Nvr) -> String {
    token_for(&n.base).expect("a token for the NVR")
}

/// `tandem config ARGS --server BASE --token T`, with the output (stdout and
/// stderr together) for messages.
fn config_cmd(n: &Nvr, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let t = token(n);
    let mut cmd = std::process::Command::new(tandem());
    cmd.arg("config")
        .args(args)
        .args(["--server", &n.base, "--token", &t])
        .env("TANDEM_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn export(n: &Nvr, out: &Path, secrets: bool) -> String {
    let o = out.to_str().unwrap();
    let (code, text) = if secrets {
        config_cmd(
            n,
            &["export", "-o", o, "--passphrase-env", "PAR_PW"],
            &[("PAR_PW", PASSPHRASE)],
        )
    } else {
        config_cmd(n, &["export", "-o", o, "--no-secrets"], &[])
    };
    assert_eq!(code, 0, "export: {text}");
    std::fs::read_to_string(out).unwrap()
}

/// The file without its header and sealed secrets: what must round-trip.
fn body(text: &str) -> toml::Table {
    let mut t: toml::Table = text.parse().unwrap();
    t.remove("parameter_file");
    t.remove("secrets");
    t
}

fn secrets(text: &str) -> tandem::parfile::SecretValues {
    tandem::parfile::read(
        text,
        "t",
        &tandem::parfile::ReadOptions {
            passphrase: Some(PASSPHRASE.into()),
            accept_edited: true,
        },
    )
    .unwrap()
    .secrets
}

fn channel_name(n: &Nvr, ch: u32) -> String {
    let v = http_get(&format!("{}/api/v1/channels", n.base))
        .unwrap()
        .json()
        .unwrap();
    list_of(&v, "channels")
        .iter()
        .find(|c| c["number"] == ch)
        .and_then(|c| c["name"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn config_changes(n: &Nvr) -> usize {
    let v = http_get(&format!("{}/api/v1/audit?action=config_change", n.base))
        .unwrap()
        .json()
        .unwrap();
    list_of(&v, "entries")
        .iter()
        .filter(|e| e["action"] == "config_change")
        .count()
}

/// A JSON answer's list: the answer itself, or its field `key`.
fn list_of(v: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    v.as_array().or_else(|| v[key].as_array()).cloned().unwrap_or_default()
}

#[test]
fn every_table_round_trips_with_sealed_secrets_and_without() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cam, urls) = sim_camera(d, 1, &[]);
    let a = nvr(d, "nvr-a", &every_table(d, "nvr-a", &urls[0]));
    let b = nvr(d, "nvr-b", &small(d, "nvr-b", &urls[0]));

    let sealed = export(&a, &d.join("a.tpar"), true);
    for secret in ["dock-secret", "mqtt-secret", "0123456789abcdef0123"] {
        assert!(!sealed.contains(secret), "{secret} in clear in the export");
    }
    let open = secrets(&sealed);
    assert!(open.values().any(|v| v == "dock-secret"), "{open:?}");
    let plain = export(&a, &d.join("a-plain.tpar"), false);
    assert!(!plain.contains("[secrets]"), "--no-secrets wrote secrets:\n{plain}");
    for secret in ["dock-secret", "mqtt-secret", "0123456789abcdef0123"] {
        assert!(!plain.contains(secret), "{secret} in a --no-secrets export");
    }

    // B runs on its own store and address: the file is edited for them.
    let b_cfg = std::fs::read_to_string(&b.config).unwrap();
    let b_listen = b_cfg.lines().find(|l| l.starts_with("listen")).unwrap().to_string();
    let a_listen = std::fs::read_to_string(&a.config)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("listen"))
        .unwrap()
        .to_string();
    let for_b = sealed
        .replace(
            &d.join("nvr-a-data").display().to_string(),
            &d.join("nvr-b-data").display().to_string(),
        )
        .replace(&a_listen, &b_listen);
    let file = d.join("for-b.tpar");
    std::fs::write(&file, &for_b).unwrap();
    let before = export(&b, &d.join("b-before.tpar"), false);

    // A wrong passphrase: a clear error, nothing applied.
    let (code, out) = config_cmd(
        &b,
        &[
            "import",
            file.to_str().unwrap(),
            "--accept-edited",
            "--passphrase-env",
            "PAR_PW",
        ],
        &[("PAR_PW", "wrong passphrase")],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("secrets") && out.contains("passphrase"), "{out}");
    assert_eq!(body(&export(&b, &d.join("b-same.tpar"), false)), body(&before));

    let (code, out) = config_cmd(
        &b,
        &[
            "import",
            file.to_str().unwrap(),
            "--accept-edited",
            "--passphrase-env",
            "PAR_PW",
        ],
        &[("PAR_PW", PASSPHRASE)],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied as version"), "{out}");
    // B's accounts are now A's: A's token opens B.
    remember_token(&b.base, &token(&a));
    let again = export(&b, &d.join("b-after.tpar"), true);
    assert_eq!(
        body(&again),
        body(&for_b),
        "export → import → export changed the content"
    );
    assert_eq!(secrets(&again), secrets(&for_b), "secrets differ after decryption");
}

#[test]
fn a_bad_file_changes_nothing_and_an_edited_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cam, urls) = sim_camera(d, 1, &[]);
    let n = nvr(d, "nvr", &every_table(d, "nvr", &urls[0]));
    wait_for(Duration::from_secs(30), "recording", || frames_written(&n.base, 1) > 10);
    let good = export(&n, &d.join("good.tpar"), false);

    // Two bad fields deep inside: both listed, exit 2, nothing applied.
    let bad = good
        .replace("pre = \"2500ms\"", "pre = \"banana\"")
        .replace("sensitivity = 70", "sensitivity = 700");
    assert_ne!(bad, good, "the fields to break are in the export:\n{good}");
    let f = d.join("bad.tpar");
    std::fs::write(&f, &bad).unwrap();
    let frames = frames_written(&n.base, 1);
    let (code, out) = config_cmd(&n, &["import", f.to_str().unwrap(), "--accept-edited"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("pre") && out.contains("sensitivity"),
        "every error listed: {out}"
    );
    assert_eq!(body(&export(&n, &d.join("same.tpar"), false)), body(&good));
    wait_for(Duration::from_secs(10), "recording to go on", || {
        frames_written(&n.base, 1) > frames + 10
    });

    // A checksum mismatch: refused, the reason named, unless accepted.
    let edited = good.replacen("Lobby", "Hall", 1);
    let f = d.join("edited.tpar");
    std::fs::write(&f, &edited).unwrap();
    let (code, out) = config_cmd(&n, &["import", f.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.to_lowercase().contains("checksum"), "{out}");
    // Refused, but what the edit changes is shown either way.
    assert!(out.contains("~ channel 1") && out.contains("\"Hall\""), "{out}");
    assert_eq!(channel_name(&n, 1), "Lobby");
    let (code, out) = config_cmd(&n, &["import", f.to_str().unwrap(), "--dry-run"], &[]);
    assert_eq!(code, 2, "a dry run checks the checksum too: {out}");
    assert!(out.contains("\"Hall\""), "{out}");
}

#[test]
fn versions_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cam, urls) = sim_camera(d, 1, &[]);
    let n = nvr(d, "nvr", &small(d, "nvr", &urls[0]));
    let base = export(&n, &d.join("base.tpar"), false);
    let audited = config_changes(&n);
    let (a, b) = (d.join("a.tpar"), d.join("b.tpar"));
    std::fs::write(&a, base.replace("Front", "Version A")).unwrap();
    std::fs::write(&b, base.replace("Front", "Version B")).unwrap();

    let (code, out) = config_cmd(
        &n,
        &["import", a.to_str().unwrap(), "--accept-edited", "--dry-run"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Version A") && out.contains("dry run"), "{out}");
    assert_eq!(channel_name(&n, 1), "Front", "a dry run applies nothing");

    let (code, out) = config_cmd(&n, &["import", a.to_str().unwrap(), "--accept-edited"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(channel_name(&n, 1), "Version A");
    let versions = http_get(&format!("{}/api/v1/config/versions", n.base))
        .unwrap()
        .json()
        .unwrap();
    let version_a = versions["current"].as_i64().unwrap();
    let (code, out) = config_cmd(&n, &["import", b.to_str().unwrap(), "--accept-edited"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(channel_name(&n, 1), "Version B");

    let (code, out) = config_cmd(&n, &["rollback", &version_a.to_string()], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(channel_name(&n, 1), "Version A");
    assert_eq!(
        body(&export(&n, &d.join("now.tpar"), false)),
        body(&std::fs::read_to_string(&a).unwrap())
    );
    assert_eq!(config_changes(&n), audited + 3, "one audit entry per apply");

    let (code, out) = config_cmd(&n, &["versions"], &[]);
    assert_eq!(code, 0, "{out}");
    // The start version, A, B and A again.
    assert!(out.lines().count() > 4, "{out}");
    assert!(out.contains("start"), "{out}");

    // Without a version: the one before the current one (B).
    let (code, out) = config_cmd(&n, &["rollback"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(channel_name(&n, 1), "Version B");
}

#[test]
fn push_applies_each_nvr_its_overrides_and_reports_the_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cam, urls) = sim_camera(d, 1, &[]);
    let a = nvr(d, "nvr-a", &small(d, "nvr-a", &urls[0]));
    let b = nvr(d, "nvr-b", &small(d, "nvr-b", &urls[0]));
    let base = export(&a, &d.join("a.tpar"), false);
    let b_cfg = std::fs::read_to_string(&b.config).unwrap();
    let b_listen = b_cfg.lines().find(|l| l.starts_with("listen")).unwrap();
    // The fleet file: A's configuration with a new channel name, and B's
    // store and address as B's override (which names it, too).
    let mut fleet = base.replace("Front", "Fleet");
    fleet += &format!(
        "\n[[override]]\nnvr = \"nvr-b\"\n[override.storage]\ndir = \"{}\"\n\
         [override.http]\n{b_listen}\n[[override.channel]]\nnumber = 1\nname = \"Fleet B\"\n",
        d.join("nvr-b-data").display()
    );
    let f = d.join("fleet.tpar");
    std::fs::write(&f, &fleet).unwrap();
    let gone = format!("http://127.0.0.1:{}", free_port());
    let tokens = format!("{},{},{}", token(&a), token(&b), token(&a));
    let o = std::process::Command::new(tandem())
        .args(["config", "push", f.to_str().unwrap(), "--accept-edited"])
        .args(["--to", &a.base, "--to", &b.base, "--to", &gone, "--token", &tokens])
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "one NVR failed: the exit status says so: {out}");
    let row = |url: &str| out.lines().find(|l| l.starts_with(url)).unwrap_or_default().to_string();
    assert!(row(&a.base).contains("applied"), "{out}");
    assert!(
        row(&b.base).contains("nvr-b") && row(&b.base).contains("applied"),
        "{out}"
    );
    assert!(row(&gone).contains("failed"), "{out}");
    assert_eq!(channel_name(&a, 1), "Fleet");
    assert_eq!(channel_name(&b, 1), "Fleet B");
}

#[test]
fn http_api_checks_if_match_and_admin_rights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cam, urls) = sim_camera(d, 1, &[]);
    let n = nvr(d, "nvr", &small(d, "nvr", &urls[0]));
    let url = format!("{}/api/v1/config", n.base);
    let r = http_get(&url).unwrap();
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("an ETag").to_string();
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("[secrets]"), "no passphrase, no secrets");

    let dry = http_request(
        "PUT",
        &format!("{url}?dry_run=1"),
        &[("If-Match", &etag)],
        text.as_bytes(),
    )
    .unwrap();
    assert_eq!(dry.status, 200, "{}", String::from_utf8_lossy(&dry.body));
    assert_eq!(dry.json().unwrap()["dry_run"], true);
    let stale = http_request("PUT", &url, &[("If-Match", "\"999999\"")], text.as_bytes()).unwrap();
    assert_eq!(stale.status, 412, "{}", String::from_utf8_lossy(&stale.body));
    let bad = http_request("PUT", &url, &[], b"[storage]\ndir = 5\n").unwrap();
    assert_eq!(bad.status, 422, "{}", String::from_utf8_lossy(&bad.body));
    assert!(!bad.json().unwrap()["errors"].as_array().unwrap().is_empty());

    // A Frigate config.yml is converted and laid over what runs; what
    // Tandem has no use for is named.
    let yml = FRIGATE.as_bytes();
    let r = http_request(
        "PUT",
        &format!("{url}?dry_run=1"),
        &[("Tandem-File-Name", "config.yml")],
        yml,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let o = r.json().unwrap();
    let notes = o["notes"].to_string();
    assert!(notes.contains("frigate:") && notes.contains("detectors"), "{o}");
    assert!(o["diff_text"].as_str().unwrap().contains("network_camera"), "{o}");

    // A viewer may not read or change the configuration.
    let cfg = n.config.to_str().unwrap();
    let o = std::process::Command::new(tandem())
        .args([
            "user",
            "add",
            "vic",
            "--role",
            "viewer",
            "--config",
            cfg,
            "--password-env",
            "PW",
        ])
        .env("PW", "viewer-password-0123")
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_tandem(&["user", "token", "vic", "--config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let viewer = format!("Bearer {}", String::from_utf8(o.stdout).unwrap().trim());
    let h = [("Authorization", viewer.as_str())];
    assert_eq!(http_request("GET", &url, &h, b"").unwrap().status, 403);
    assert_eq!(http_request("PUT", &url, &h, text.as_bytes()).unwrap().status, 403);
    let versions = format!("{url}/versions");
    assert_eq!(http_request("GET", &versions, &h, b"").unwrap().status, 403);
    let rollback = format!("{url}/rollback");
    assert_eq!(http_request("POST", &rollback, &h, b"").unwrap().status, 403);
}

#[test]
fn sighup_applies_the_edited_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cam, urls) = sim_camera(d, 1, &[]);
    let n = nvr(d, "nvr", &small(d, "nvr", &urls[0]));
    assert_eq!(channel_name(&n, 1), "Front");
    let text = std::fs::read_to_string(&n.config).unwrap();
    std::fs::write(&n.config, text.replace("Front", "After SIGHUP")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(n.proc.child.id() as i32, libc::SIGHUP) };
    wait_for(Duration::from_secs(10), "the SIGHUP apply", || {
        channel_name(&n, 1) == "After SIGHUP"
    });
    // The version is stored just after the configuration is published, so
    // the two are seen a few milliseconds apart: wait for it, not race it.
    let versions_url = format!("{}/api/v1/config/versions", n.base);
    let newest_origin = || {
        let v = http_get(&versions_url).unwrap().json().unwrap();
        v["versions"][0]["origin"].as_str().unwrap_or_default().to_string()
    };
    wait_for(Duration::from_secs(5), "the SIGHUP version", || {
        newest_origin() == "sighup"
    });
    let versions = http_get(&versions_url).unwrap().json().unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2, "{versions}");
    // A broken file on SIGHUP changes nothing and the NVR keeps running.
    std::fs::write(&n.config, "[storage\n").unwrap();
    unsafe { libc::kill(n.proc.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(channel_name(&n, 1), "After SIGHUP");
}

#[test]
fn config_file_import_rewrites_the_file_and_stores_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("nvr.toml");
    std::fs::write(
        &conf,
        small(d, "nvr", "rtsp://127.0.0.1:1/c").replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let out = d.join("x.tpar");
    let o = run_tandem(&[
        "config",
        "export",
        "-o",
        out.to_str().unwrap(),
        "--no-secrets",
        "--config",
        c,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::write(&out, text.replace("Front", "Back")).unwrap();
    let f = out.to_str().unwrap();

    let o = run_tandem(&["config", "import", f, "--accept-edited", "--dry-run", "--config", c]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Back"));
    assert!(
        std::fs::read_to_string(&conf).unwrap().contains("Front"),
        "a dry run writes nothing"
    );

    let o = run_tandem(&["config", "import", f, "--accept-edited", "--config", c]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let now = std::fs::read_to_string(&conf).unwrap();
    assert!(now.contains("Back") && !now.contains("Front"), "{now}");
    assert_eq!(
        run_tandem(&["check", "--config", c]).status.code(),
        Some(0),
        "the file written is valid"
    );
    let o = run_tandem(&["config", "versions", "--config", c]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cli"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let o = run_tandem(&["config", "export", "-o", f, "--config", c]);
    assert!(!o.status.success(), "an export must say what to do with secrets");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-secrets"));
}
