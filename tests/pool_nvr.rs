//! Three Tandem NVRs in a pool over a real etcd (lease TTL 1 s) share four
//! simulated cameras: every camera is recorded by exactly one NVR; one NVR
//! killed (SIGKILL) → each of its cameras is recorded again by another
//! within the lease time plus one RTSP setup; the killed NVR started again
//! gets cameras back by the join's rebalance, make-before-break. Reads the pool through
//! `GET /api/v1/pool` as an operator would. Prints the measured times.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{free_port, have_program, http_get, nvr, prerequisite, recorder_config, sim_camera, start_etcd, wait_for};

const CAMERAS: u32 = 4;

/// A member's `[pool]` table: etcd on loopback, lease TTL 1 s, prefix `/t/`.
fn pool_table(client_port: u16, name: &str, channels: u32) -> String {
    format!(
        "[pool]\netcd = [\"http://127.0.0.1:{client_port}\"]\nname = \"{name}\"\n\
         capacity = {{ channels = {channels}, mbps = 100 }}\nlease_ttl = \"1s\"\nprefix = \"/t/\"\n"
    )
}

fn pool(base: &str) -> Option<serde_json::Value> {
    let r = http_get(&format!("{base}/api/v1/pool")).ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

/// Camera → member, from the stored assignment.
fn assignment(p: &serde_json::Value) -> BTreeMap<String, String> {
    p["view"]["assignment"]["cameras"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(c, n)| (c.clone(), n.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `member` lists `camera` as recorded now.
fn records(p: &serde_json::Value, member: &str, camera: &str) -> bool {
    p["view"]["recording"][member]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c.as_str() == Some(camera)))
}

#[test]
fn a_killed_member_s_cameras_are_recorded_again_by_the_others() {
    if !prerequisite(have_program("etcd"), "etcd (Debian package etcd-server)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let _etcd = start_etcd(tmp.path(), client_port, peer_port);
    let (_cams, urls) = sim_camera(tmp.path(), CAMERAS, &["--bitrate-kbps", "200"]);
    let named: Vec<(String, String)> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| (format!("cam-{}", i + 1), u.clone()))
        .collect();
    let refs: Vec<(&str, &str)> = named.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
    let config = |name: &str| {
        let data = tmp.path().join(name);
        recorder_config(&data, &refs) + &pool_table(client_port, name, CAMERAS)
    };
    let mut nvrs: BTreeMap<String, common::Nvr> = ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), nvr(tmp.path(), n, &config(n))))
        .collect();
    let base_a = nvrs["a"].base.clone();

    // Every camera assigned, within capacity, and recorded by its owner.
    let mut view = serde_json::Value::Null;
    wait_for(Duration::from_secs(30), "every camera recorded by its owner", || {
        let Some(p) = pool(&base_a) else { return false };
        let a = assignment(&p);
        let ok = a.len() == CAMERAS as usize && a.iter().all(|(c, m)| records(&p, m, c));
        view = p;
        ok
    });
    let owners = assignment(&view);
    let mut per_member: BTreeMap<&str, usize> = BTreeMap::new();
    for m in owners.values() {
        *per_member.entry(m.as_str()).or_default() += 1;
    }
    assert!(
        per_member.values().all(|&n| n <= CAMERAS as usize),
        "over capacity: {per_member:?}"
    );
    assert!(view["scheduler"].is_string(), "a scheduler is elected: {view}");
    let used: u64 = view["capacity_used"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["cameras"].as_u64().unwrap())
        .sum();
    assert_eq!(used, u64::from(CAMERAS), "capacity used adds up: {view}");

    // Kill the member with the most cameras (the first to register took
    // them all: placement never moves a camera off a live member).
    let victim = per_member
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(m, _)| m.to_string())
        .unwrap();
    let lost: BTreeSet<String> = owners
        .iter()
        .filter(|(_, m)| **m == victim)
        .map(|(c, _)| c.clone())
        .collect();
    assert!(!lost.is_empty());
    let killed = Instant::now();
    nvrs.get_mut(&victim).unwrap().proc.kill();
    let survivor = if victim == "a" { "b" } else { "a" };
    let base = nvrs[survivor].base.clone();
    let mut again: BTreeMap<String, Duration> = BTreeMap::new();
    wait_for(
        Duration::from_secs(15),
        "the killed NVR's cameras recorded again",
        || {
            let Some(p) = pool(&base) else { return false };
            let a = assignment(&p);
            for c in &lost {
                if let Some(m) = a.get(c).filter(|m| **m != victim) {
                    if records(&p, m, c) {
                        again.entry(c.clone()).or_insert_with(|| killed.elapsed());
                    }
                }
            }
            again.len() == lost.len()
        },
    );
    let worst = again.values().max().copied().unwrap_or_default();
    println!(
        "pool: {victim} killed with {} cameras; recorded again on the others after {:?} (worst {worst:?})",
        lost.len(),
        again
    );
    // TTL 1 s + one RTSP setup + the 200-ms look at the channels, with room
    // for a loaded CI machine.
    assert!(
        worst <= Duration::from_secs(4),
        "cameras recorded again only after {worst:?}"
    );

    // The killed NVR comes back: the join moves cameras to it, make-before-
    // break — it records each before its old owner lets go, so every camera
    // stays recorded by its owner and only moves to the returning NVR.
    let after_kill = assignment(&pool(&base).unwrap());
    let back = nvr(tmp.path(), &format!("{victim}-again"), &config(&victim));
    wait_for(
        Duration::from_secs(15),
        "cameras moved to the returning NVR and recorded there",
        || {
            pool(&back.base).is_some_and(|p| {
                let a = assignment(&p);
                p["status"]["registered"] == true
                    && a.values().any(|m| *m == victim)
                    && a.len() == CAMERAS as usize
                    && a.iter().all(|(c, m)| records(&p, m, c))
            })
        },
    );
    let now = assignment(&pool(&base).unwrap());
    for (c, m) in &now {
        assert!(
            *m == victim || after_kill[c] == *m,
            "{c} moved to {m}, not to the returning NVR"
        );
    }
}

/// `tandem config push FILE --pool`: one file stored in etcd, applied live
/// by every member with its own `[[override]]`, keeping its own `[pool]`,
/// `[storage]` and `[http]`; the camera the file adds is placed by the
/// scheduler and recorded; a file carrying `[pool]` is refused before
/// anything is stored.
#[test]
fn a_file_pushed_to_the_pool_is_applied_by_every_member() {
    if !prerequisite(have_program("etcd"), "etcd (Debian package etcd-server)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let _etcd = start_etcd(tmp.path(), client_port, peer_port);
    let (_cams, urls) = sim_camera(tmp.path(), 3, &["--bitrate-kbps", "200"]);
    let endpoint = format!("http://127.0.0.1:{client_port}");
    let config = |name: &str| {
        let first_two = [("cam-1", urls[0].as_str()), ("cam-2", urls[1].as_str())];
        recorder_config(&tmp.path().join(name), &first_two) + &pool_table(client_port, name, 4)
    };
    let a = nvr(tmp.path(), "a", &config("a"));
    let b = nvr(tmp.path(), "b", &config("b"));
    for n in [&a, &b] {
        wait_for(Duration::from_secs(20), "registered in the pool", || {
            pool(&n.base).is_some_and(|p| p["status"]["registered"] == true)
        });
    }

    // The site's file: three cameras; b also gets an idle channel 4.
    let mut file = String::new();
    for (i, u) in urls.iter().enumerate() {
        file += &format!(
            "[[network_camera]]\nname = \"cam-{n}\"\nurl = \"{u}\"\n[[channel]]\nnumber = {n}\ncamera = \"cam-{n}\"\n",
            n = i + 1
        );
    }
    file += "[[override]]\nnvr = \"b\"\n[[override.channel]]\nnumber = 4\n";
    let path = tmp.path().join("site.toml");
    std::fs::write(&path, &file).unwrap();
    let push = |path: &std::path::Path| {
        std::process::Command::new(common::tandem())
            .args(["config", "push"])
            .arg(path)
            .args(["--pool", "--etcd", &endpoint, "--prefix", "/t/"])
            .output()
            .unwrap()
    };
    let out = push(&path);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "push failed");
    for m in ["a", "b"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(m) && l.len() > 2 && l.as_bytes()[1] == b' ')
            .unwrap_or_else(|| panic!("no row for {m}: {stdout}"));
        assert!(line.contains("applied (version"), "{line}");
    }
    let count = |base: &str| -> usize {
        let v: serde_json::Value = http_get(&format!("{base}/api/v1/channels")).unwrap().json().unwrap();
        v.as_array().or_else(|| v["channels"].as_array()).map_or(0, Vec::len)
    };
    assert_eq!(count(&a.base), 3, "a: the file's three channels");
    assert_eq!(count(&b.base), 4, "b: with its override's channel 4");
    // The new camera is placed and recorded; each member kept its [pool].
    wait_for(Duration::from_secs(20), "cam-3 recorded by its owner", || {
        pool(&a.base).is_some_and(|p| {
            let owners = assignment(&p);
            owners.len() == 3 && owners.iter().all(|(c, m)| records(&p, m, c))
        })
    });
    let p = pool(&b.base).unwrap();
    assert_eq!(p["member"], "b");
    assert!(
        p["view"]["applied"]["a"]["ok"] == true && p["view"]["applied"]["b"]["ok"] == true,
        "{p}"
    );

    // A change made here by another route (SIGHUP re-reads a's own file,
    // which has two cameras): the pool's file is laid over it again.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(a.proc.child.id() as i32, libc::SIGHUP) };
    let origins = |base: &str| -> Vec<String> {
        let v: serde_json::Value = http_get(&format!("{base}/api/v1/config/versions"))
            .unwrap()
            .json()
            .unwrap();
        v["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["origin"].as_str().map(str::to_string))
            .collect()
    };
    wait_for(
        Duration::from_secs(20),
        "the pool's file applied again after SIGHUP",
        || {
            // Newest first: the pool's apply above the SIGHUP's.
            let o = origins(&a.base);
            o.len() >= 2 && o[0] == "pool" && o[1] == "sighup"
        },
    );
    assert_eq!(count(&a.base), 3, "a: the pool's three channels again");

    // A file carrying [pool] is refused; nothing is stored.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, format!("{file}[pool]\nname = \"x\"\n")).unwrap();
    let out = push(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml") && err.contains("[pool]"), "{err}");
    let still = pool(&a.base).unwrap();
    assert_eq!(still["view"]["config"]["file"], "site.toml");
}

/// An NVR keeps the last assignment it read in its store: started again
/// while etcd is down, it records the cameras it had instead of nothing.
#[test]
fn a_member_started_while_etcd_is_down_records_what_it_had() {
    if !prerequisite(have_program("etcd"), "etcd (Debian package etcd-server)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let mut etcd = start_etcd(tmp.path(), client_port, peer_port);
    let (_cams, urls) = sim_camera(tmp.path(), 2, &["--bitrate-kbps", "200"]);
    let cams = [("cam-1", urls[0].as_str()), ("cam-2", urls[1].as_str())];
    let data = tmp.path().join("a");
    let config = recorder_config(&data, &cams) + &pool_table(client_port, "a", 4);
    let mut a = nvr(tmp.path(), "a", &config);
    wait_for(Duration::from_secs(30), "both cameras recorded by a", || {
        pool(&a.base).is_some_and(|p| {
            let owners = assignment(&p);
            owners.len() == 2 && owners.iter().all(|(c, m)| m == "a" && records(&p, m, c))
        })
    });
    assert!(
        data.join("pool-assignment.json").exists(),
        "the assignment is kept in the store"
    );
    a.proc.kill();
    etcd.kill();

    let again = nvr(tmp.path(), "a-again", &config);
    let recording = |base: &str| -> usize {
        let Ok(r) = http_get(&format!("{base}/api/v1/channels")) else {
            return 0;
        };
        let v: serde_json::Value = r.json().unwrap_or_default();
        v.as_array()
            .or_else(|| v["channels"].as_array())
            .into_iter()
            .flatten()
            .filter(|c| c["recording"]["state"] == "recording")
            .count()
    };
    wait_for(
        Duration::from_secs(20),
        "both channels recording with etcd down",
        || recording(&again.base) == 2,
    );
    let p = pool(&again.base).unwrap();
    assert_eq!(p["status"]["registered"], false, "etcd is down: {p}");
}

/// One timeline across the pool: a camera moved from member a to member b
/// (b joined; the rebalance moved it) shows, in b's `recordings`, what a
/// recorded before the move, `held_by` a — found through a's member record,
/// nothing configured on b — and b's `clip.mp4` over that stretch plays,
/// streamed from a.
#[test]
fn any_member_shows_and_serves_the_footage_another_holds() {
    if !prerequisite(have_program("etcd"), "etcd (Debian package etcd-server)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let _etcd = start_etcd(tmp.path(), client_port, peer_port);
    let (_cams, urls) = sim_camera(tmp.path(), 2, &["--bitrate-kbps", "200", "--gop", "10"]);
    let cams = [("cam-1", urls[0].as_str()), ("cam-2", urls[1].as_str())];
    let config = |name: &str| {
        recorder_config(&tmp.path().join(name), &cams)
            + "[failover]\npeer_token = \"pool-peer-token-0123456789\"\n"
            + &pool_table(client_port, name, 4)
    };
    let a = nvr(tmp.path(), "a", &config("a"));
    wait_for(Duration::from_secs(30), "both cameras recorded by a", || {
        pool(&a.base).is_some_and(|p| {
            let owners = assignment(&p);
            owners.len() == 2 && owners.iter().all(|(c, m)| m == "a" && records(&p, m, c))
        })
    });
    let start = common::rfc3339_offset(-1.0);
    std::thread::sleep(Duration::from_secs(3));
    let b = nvr(tmp.path(), "b", &config("b"));
    let mut moved = String::new();
    wait_for(
        Duration::from_secs(30),
        "a camera moved to b and recorded there",
        || {
            pool(&a.base).is_some_and(|p| {
                let owners = assignment(&p);
                match owners.iter().find(|(_, m)| *m == "b") {
                    Some((c, _)) if records(&p, "b", c) => {
                        moved = c.clone();
                        true
                    }
                    _ => false,
                }
            })
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let ch = if moved == "cam-1" { 1 } else { 2 };
    let end = common::rfc3339_offset(0.0);
    let q = format!("start={}&end={}", common::enc(&start), common::enc(&end));
    let a_name = a.base.trim_start_matches("http://").to_string();
    let v: serde_json::Value = http_get(&format!("{}/api/v1/channels/{ch}/recordings?{q}", b.base))
        .unwrap()
        .json()
        .unwrap();
    let runs = v["recordings"].as_array().cloned().unwrap_or_default();
    let held: Vec<&serde_json::Value> = runs.iter().filter(|r| r["held_by"] == a_name.as_str()).collect();
    let own: Vec<&serde_json::Value> = runs.iter().filter(|r| r["held_by"].is_null()).collect();
    assert!(!held.is_empty(), "b shows what a holds of {moved}: {v}");
    assert!(!own.is_empty(), "and what it recorded itself: {v}");
    let first_own = own.iter().filter_map(|r| r["start"].as_str()).min().unwrap();
    let first_held = held.iter().filter_map(|r| r["start"].as_str()).min().unwrap();
    assert!(first_held < first_own, "a's footage comes before the move: {v}");
    // b serves a clip of the stretch only a holds.
    let held_end = held[0]["end"].as_str().unwrap();
    let clip = http_get(&format!(
        "{}/api/v1/channels/{ch}/clip.mp4?start={}&end={}",
        b.base,
        common::enc(first_held),
        common::enc(held_end)
    ))
    .unwrap();
    assert_eq!(clip.status, 200, "{}", String::from_utf8_lossy(&clip.body));
    assert!(
        clip.body.len() > 10_000,
        "a clip of a's footage: {} bytes",
        clip.body.len()
    );
    assert_eq!(&clip.body[4..8], b"ftyp");
}
