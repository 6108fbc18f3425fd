//! Two NVRs whose clocks are 3 s apart (`TANDEM_CLOCK_OFFSET_MS`, honoured
//! by this debug build) record the same simulated camera in turn, on
//! loopback: the second (clock +3 s) holds the camera first, through a
//! failover rule watching the first; when the first starts and records, the
//! second hands the camera back and transfers its footage. Merged by the
//! camera's clock (each segment's capture offset, from the camera's RTCP
//! sender reports), the first NVR's store then holds every frame the camera
//! sent from the second's first frame on, once: no duplicates, nothing
//! missing at the seam. Merged by the NVRs' own clocks, the 3 s would show
//! as 75 missing frames at the seam (or as duplicates the other way).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "clock-skew-peer-token-0123";

/// `tandem serve` with its clock shifted by `offset_ms`.
fn start_skewed(dir: &std::path::Path, name: &str, config: &str, port: u16, offset_ms: i64) -> Nvr {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config.replace("{listen}", &format!("127.0.0.1:{port}"))).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    remember_token(&base, &provision(&path));
    let mut cmd = Command::new(tandem());
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("TANDEM_LOG", "info")
        .env("TANDEM_CLOCK_OFFSET_MS", offset_ms.to_string())
        .stdout(Stdio::null());
    let proc = spawn(name, &mut cmd, dir);
    let n = Nvr {
        proc,
        base,
        config: path,
    };
    wait_for(Duration::from_secs(30), &format!("{name}'s API"), || {
        http_get(&format!("{}/api/v1/status", n.base)).is_ok_and(|r| r.status == 200)
    });
    n
}

/// The log without its colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn capture_offset_s(base: &str) -> Option<f64> {
    channel_view(base, 1)["ingest"]["capture_offset_s"].as_f64()
}

#[test]
fn nvrs_with_clocks_3_s_apart_merge_without_duplicates_or_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--gop", "10", "--bitrate-kbps", "300"]);
    let first_port = free_port();
    let (first_data, second_data) = (dir.path().join("first-data"), dir.path().join("second-data"));

    // The second NVR (clock +3 s) takes the camera while the first is absent.
    let second_cfg = standby_config(&second_data, TOKEN, &urls[0], first_port, 20, "");
    let second = start_skewed(dir.path(), "second", &second_cfg, free_port(), 3000);
    wait_for(Duration::from_secs(15), "the second NVR recording", || {
        frames_written(&second.base, 1) > 50
    });
    assert!(
        second.proc.stderr().contains("shifts this NVR's clock by 3000 ms"),
        "the offset is honoured and said at start"
    );
    // It measured the camera's clock against its own (it hands the camera
    // back as soon as the first records, so ask now).
    wait_for(Duration::from_secs(5), "the second's capture offset", || {
        capture_offset_s(&second.base).is_some()
    });
    let b = capture_offset_s(&second.base);

    // The first NVR (true clock) starts and records the camera itself.
    let first_cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [failover]\npeer_token = \"{TOKEN}\"\n\
         [[network_camera]]\nname = \"cam\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\ncamera = \"cam\"\n",
        first_data.display(),
        urls[0]
    );
    let mut first = start_skewed(dir.path(), "first", &first_cfg, first_port, 0);
    wait_for(Duration::from_secs(15), "the first NVR recording", || {
        frames_written(&first.base, 1) > 25
    });
    // Both measured the camera's clock against their own: 3 s apart.
    let a = capture_offset_s(&first.base);
    let (Some(a), Some(b)) = (a, b) else {
        panic!("no capture offset (first {a:?}, second {b:?}): the camera's RTCP sender reports did not reach ingest");
    };
    assert!((a - b - 3.0).abs() < 0.1, "offsets {a} and {b} s: not 3 s apart");

    // The second hands back once the first records, and sends its footage.
    wait_for(Duration::from_secs(20), "the second NVR to release the camera", || {
        channel_view(&second.base, 1)["binding"].is_null()
    });
    wait_for(Duration::from_secs(30), "the failback transfer", || {
        let t = http_get(&format!("{}/api/v1/transfers", second.base))
            .unwrap()
            .json()
            .unwrap();
        t["transfers"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|j| j["state"] == "done"))
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(first.proc.terminate().success());
    let log = strip_ansi(&first.proc.stderr());
    assert!(log.contains("footage imported from peer"), "{log}");
    // The first's store: from the second's first frame on, every frame once.
    let merged = audit_json(&["--data", first_data.to_str().unwrap(), "--channel", "1"]);
    let own = audit_json(&["--data", second_data.to_str().unwrap(), "--channel", "1"]);
    let cam = &merged["cameras"][0];
    assert_eq!(merged["duplicates"], 0, "{merged}");
    assert_eq!(merged["frames_lost"], 0, "a hole at the seam: {merged}");
    assert!(cam["gaps"].as_array().unwrap().is_empty(), "{merged}");
    // The merged timeline starts with the second's footage (the lead-in the
    // first never saw), at the very frame the second recorded first.
    assert_eq!(cam["first_seq"], own["cameras"][0]["first_seq"], "{merged} {own}");
    assert!(
        cam["frames_found"].as_u64().unwrap() > own["cameras"][0]["frames_found"].as_u64().unwrap(),
        "{merged} {own}"
    );
    // The second stamped frames 3 s late: they move 3 s back.
    let shifts: Vec<f64> = log
        .split("shift_s=")
        .skip(1)
        .filter_map(|s| {
            s.split_whitespace()
                .next()?
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .collect();
    assert!(!shifts.is_empty(), "{log}");
    assert!(
        shifts.iter().all(|s| (s + 3.0).abs() < 0.1),
        "imports shifted by {shifts:?} s"
    );
}
