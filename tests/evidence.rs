//! Evidence exports and segment integrity end to end, with real processes:
//! a simulated camera recorded by `tandem serve`, `tandem export --evidence`
//! from its store, `tandem verify` of the archive (untouched, then with one
//! byte of the clip, the manifest, the signature or the zip structure
//! flipped), `tandem key show`, and a segment file changed on disk (same
//! size) found by the scrub and by `tandem verify --data`.
//!
//! Over HTTP: `evidence.zip` with an admin token verifies like the local
//! export and names the token's user; `/api/v1/key` serves the key `key show`
//! prints; without credentials 401, with a token narrowed to another channel
//! 403.

mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tandem_out(args: &[&str]) -> (bool, String) {
    let o = run_tandem(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Finished-or-not segment files of channel 1, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("video/ch1"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn flip(src: &[u8], at: usize, out: &Path) {
    let mut b = src.to_vec();
    b[at] ^= 0x01;
    std::fs::write(out, b).unwrap();
}

/// Where an entry's data starts in the archive, and its size.
fn entry_span(zip: &Path, name: &str) -> (usize, usize) {
    let mut a = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let f = a.by_name(name).unwrap();
    (f.data_start() as usize, f.size() as usize)
}

#[test]
fn evidence_export_verifies_and_any_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "25", "--gop", "25"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("nvr.toml");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        &cfg,
        format!(
            r#"
[storage]
dir = "{data}"
min_free = "10 MB"
segment_duration = "2s"
scrub_interval = "2s"
[http]
listen = "127.0.0.1:{port}"
[[network_camera]]
name = "gate-cam"
url = "{u}"
[[channel]]
number = 1
name = "gate"
camera = "gate-cam"
"#,
            data = data.display(),
            u = urls[0]
        ),
    )
    .unwrap();
    let token = provision(&cfg);
    remember_token(&base, &token);
    let mut nvr = spawn(
        "nvr",
        Command::new(tandem())
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .env("TANDEM_LOG", "info"),
        dir.path(),
    );
    // Several 2-s segments finished.
    wait_for(Duration::from_secs(40), "four segment files", || {
        segments(&data).len() >= 4
    });
    std::thread::sleep(Duration::from_secs(2));
    let start = rfc3339_offset(-6.0);
    let end = rfc3339_offset(-1.0);
    let zip = dir.path().join("case.zip");
    let clip = clip_args(1, &start, &end, &zip);
    let mut args = vec!["export", "--evidence", "--config", cfg.to_str().unwrap()];
    args.extend(clip.iter().map(String::as_str));
    let (ok, out) = tandem_out(&args);
    assert!(ok, "{out}");
    let z = std::fs::read(&zip).unwrap();

    // Untouched: every check holds, the frame count is printed.
    let (ok, out) = tandem_out(&["verify", zip.to_str().unwrap()]);
    assert!(ok, "{out}");
    for check in ["archive", "signature", "manifest fields", "clip hash", "frame count"] {
        assert!(out.contains(&format!("ok    {check}:")), "{check}: {out}");
    }
    let frames: u64 = out
        .split("VALID (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in {out}"));
    // 5 s at 25 fps, from the key frame before the start.
    assert!((100..=160).contains(&frames), "{frames} frames: {out}");
    assert!(out.contains("inside the manifest"), "no note about the key: {out}");
    // The manifest says who, what, and which audit entry.
    let mut a = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    let mut m = String::new();
    a.by_name("manifest.json").unwrap().read_to_string(&mut m).unwrap();
    let m: serde_json::Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["channel"], 1);
    assert_eq!(m["channel_name"], "gate");
    assert_eq!(m["camera"], "gate-cam");
    assert!(m["exported_by"].as_str().unwrap().starts_with("cli:"), "{m}");
    assert!(m["audit_entry"].as_i64().is_some(), "{m}");
    assert_eq!(m["frames"].as_u64(), Some(frames));

    // The NVR's key: `key show` prints it; verify with it holds, with another fails.
    let (ok, shown) = tandem_out(&["key", "show", "--data", data.to_str().unwrap()]);
    assert!(ok, "{shown}");
    let hex = shown
        .lines()
        .find_map(|l| l.strip_prefix("public key (hex): "))
        .unwrap()
        .to_string();
    assert_eq!(m["public_key"], hex.as_str());
    let (ok, out) = tandem_out(&["verify", zip.to_str().unwrap(), "--key", &hex]);
    assert!(ok && !out.contains("inside the manifest"), "{out}");
    let other = "11".repeat(32);
    let (ok, out) = tandem_out(&["verify", zip.to_str().unwrap(), "--key", &other]);
    assert!(!ok && out.contains("not the key given with --key"), "{out}");

    // Over HTTP, as the provisioned admin's token: the same checks hold, the
    // manifest names the token's user and the audit entry the answer names.
    let url = format!("{base}/api/v1/channels/1/evidence.zip?start={start}&end={end}");
    let r = http_get(&url).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/zip"));
    let web_zip = dir.path().join("web.zip");
    std::fs::write(&web_zip, &r.body).unwrap();
    let (ok, out) = tandem_out(&["verify", web_zip.to_str().unwrap(), "--key", &hex]);
    assert!(ok && out.contains("frames)"), "{out}");
    let mut a = zip::ZipArchive::new(std::fs::File::open(&web_zip).unwrap()).unwrap();
    let mut wm = String::new();
    a.by_name("manifest.json").unwrap().read_to_string(&mut wm).unwrap();
    let wm: serde_json::Value = serde_json::from_str(&wm).unwrap();
    assert!(wm["exported_by"].as_str().unwrap().contains("ci-admin"), "{wm}");
    assert_eq!(
        wm["audit_entry"].as_i64().map(|i| i.to_string()).as_deref(),
        r.header("x-tandem-audit-entry"),
        "{wm}"
    );
    assert_ne!(wm["audit_entry"], m["audit_entry"]);
    // `export --evidence --server` fetches the same kind of archive.
    let remote = dir.path().join("remote.zip");
    let clip = clip_args(1, &start, &end, &remote);
    let mut args = vec!["export", "--evidence", "--server", &base, "--token", &token];
    args.extend(clip.iter().map(String::as_str));
    let (ok, out) = tandem_out(&args);
    assert!(ok, "{out}");
    let (ok, out) = tandem_out(&["verify", remote.to_str().unwrap(), "--key", &hex]);
    assert!(ok, "{out}");
    // Streamed with its exact length promised up front.
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    let k = http_get(&format!("{base}/api/v1/key")).unwrap().json().unwrap();
    assert_eq!(k["public_key_hex"], hex.as_str(), "{k}");
    assert_eq!(http_anonymous("GET", &url, &[], b"").unwrap().status, 401);
    let o = run_tandem(&[
        "user",
        "token",
        "ci-admin",
        "--config",
        cfg.to_str().unwrap(),
        "--token-name",
        "narrow",
        "--role",
        "viewer",
        "--channels",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let narrow = format!("Bearer {}", String::from_utf8_lossy(&o.stdout).trim());
    let r = http_request("GET", &url, &[("Authorization", &narrow)], b"").unwrap();
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));

    // One byte flipped in each region: refused, and the reason names it.
    let (clip_at, clip_len) = entry_span(&zip, "clip.mp4");
    let (man_at, _) = entry_span(&zip, "manifest.json");
    let (sig_at, _) = entry_span(&zip, "manifest.sig");
    let central = z.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    let bad = dir.path().join("bad.zip");
    for (what, at, reason) in [
        ("clip media", clip_at + clip_len / 2, "clip.mp4"),
        ("manifest", man_at + 20, "manifest.json"),
        ("signature", sig_at + 10, "manifest.sig"),
        ("local header time", 10, "differs from the archive Tandem writes"),
        (
            "central directory time",
            central + 12,
            "differs from the archive Tandem writes",
        ),
        ("end of central directory", z.len() - 10, ""),
    ] {
        flip(&z, at, &bad);
        let (ok, out) = tandem_out(&["verify", bad.to_str().unwrap()]);
        assert!(!ok, "{what} flipped at {at} was accepted: {out}");
        assert!(out.contains("NOT VALID") && out.contains(reason), "{what}: {out}");
    }

    // A finished segment changed on disk, same size: the scrub logs it.
    // Every segment the writer finished was hashed as written and still matches.
    let (ok, out) = tandem_out(&["verify", "--data", data.to_str().unwrap()]);
    assert!(ok && out.contains(" 0 changed") && out.contains(" 0 unhashed"), "{out}");
    let intact: u64 = out
        .split(" intact")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(intact >= 3, "{out}");
    let victim = segments(&data)[0].clone();
    let mut seg = std::fs::read(&victim).unwrap();
    let len = seg.len();
    seg[len / 2] ^= 0x40;
    std::fs::write(&victim, &seg).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    wait_for(Duration::from_secs(30), "the scrub to log the changed segment", || {
        nvr.stderr().lines().any(|l| l.contains("scrub") && l.contains(&name))
    });
    nvr.terminate();
    let (ok, out) = tandem_out(&["verify", "--data", data.to_str().unwrap()]);
    assert!(!ok, "{out}");
    let changed: Vec<&str> = out.lines().filter(|l| l.starts_with("CHANGED")).collect();
    assert_eq!(changed.len(), 1, "{out}");
    assert!(
        // Named by the frame whose CRC-32 fails (or, for a record header, by
        // where the records stop adding up): `store::record_digest`.
        changed[0].contains(victim.to_str().unwrap())
            && ["CRC-32", "runs past", "SHA-256"]
                .iter()
                .any(|r| changed[0].contains(r)),
        "{out}"
    );
    // Scoped to another channel: nothing to find.
    let (ok, out) = tandem_out(&["verify", "--data", data.to_str().unwrap(), "--channel", "2"]);
    assert!(ok && out.contains("checked 0 segments"), "{out}");

    // The exports' audit entries chain; editing the CLI export's entry breaks it there.
    let (ok, out) = tandem_out(&["verify", "--audit", "--data", data.to_str().unwrap()]);
    assert!(ok && out.contains("chain intact"), "{out}");
    let id = m["audit_entry"].as_i64().unwrap();
    let c = rusqlite::Connection::open(data.join("index.db")).unwrap();
    c.execute_batch("DROP TRIGGER audit_append_only").unwrap();
    c.execute("UPDATE audit SET actor = 'mallory' WHERE id = ?1", [id])
        .unwrap();
    drop(c);
    let (ok, out) = tandem_out(&["verify", "--audit", "--data", data.to_str().unwrap()]);
    assert!(!ok && out.contains("BROKEN") && out.contains(&id.to_string()), "{out}");
}
