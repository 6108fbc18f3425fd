//! The failover test bed of the paper (§IV), on one machine: a primary NVR, a
//! standby NVR and two simulated cameras, each in its own network namespace
//! on one bridge, with the paper's addresses (192.168.1.1 primary, 192.168.1.2
//! standby, 192.168.2.1 and 192.168.2.2 cameras), so the paper's Fig. 6 rule
//! runs unchanged. Each round cuts the primary's link, holds, restores, and
//! measures takeover time, recording loss per camera on the merged timeline,
//! frames lost, and the failback transfer.
//!
//! Owns the experiment; the NVRs and cameras are the real `tandem` binary.
//! Must never leave namespaces or processes behind: both are owned by guards
//! dropped on every exit path (including Ctrl-C, which is turned into an error).

pub mod attack;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::failover::rule::tests_fixture::PAPER_FIG6;
use crate::time::Time90k;
use netns::Net;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub rounds: u32,
    pub hold: Duration,
    /// The paper's parameters (Fig. 6 rule, cameras taking 5 s to connect)
    /// instead of Tandem's recommended defaults.
    pub paper: bool,
    pub binary: PathBuf,
    pub workdir: PathBuf,
}

const TOKEN: &str = "failover-lab-peer-token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The paper's experiment: the primary's cable pulled.
    Cut,
    /// The primary NVR killed with SIGKILL, then restarted.
    Kill,
    /// The two NVRs cannot reach each other; both still reach the cameras.
    Partition,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Cut => "cut",
            Fault::Kill => "kill",
            Fault::Partition => "partition",
        }
    }
}
const PRIMARY: &str = "192.168.1.1";
const STANDBY: &str = "192.168.1.2";
const CAMS: [&str; 2] = ["192.168.2.1", "192.168.2.2"];

/// Tandem's recommended rule: probe the primary Tandem itself over HTTP every
/// 100 ms; three misses in a row (0.3 s) is a failure — one lost packet is
/// not — and two answers in a row bring it back, so a flapping link does not
/// bounce cameras. Failback waits for the primary to record again.
pub const RECOMMENDED_RULE: &str = r#"{ "name": "tandem-defaults",
  "check": { "address": "192.168.1.1", "type": "http", "port": 8080, "interval": 0.1, "timeout": 0.1,
             "failure_count": 3, "normal_count": 2 },
  "release_delay": 30,
  "states": {
    "normal":  [ { "camera": 1, "address": "n/a" }, { "camera": 2, "address": "n/a" } ],
    "failure": [ { "camera": 1, "address": "192.168.2.1" }, { "camera": 2, "address": "192.168.2.2" } ] },
  "backup": { "address": "192.168.1.1",
              "cameras": [ { "local": 1, "remote": 1 }, { "local": 2, "remote": 2 } ] } }"#;

/// Child processes killed (and reaped) when dropped: nothing outlives a run.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_us() -> i64 {
    Time90k::from_system(std::time::SystemTime::now()).as_unix_micros()
}

/// The lab's tokens for its two NVRs, minted into their stores before they start.
static TOKENS: crate::auth::client::Bearers = crate::auth::client::Bearers::new();

fn get(url: &str) -> Result<Value> {
    let auth = TOKENS.header_for(url).unwrap_or_default();
    let r = crate::httpc::request_with_timeout("GET", url, &[("Authorization", &auth)], b"", Duration::from_secs(5))?;
    Ok(r.json()?)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        check_interrupt()?;
        if f().unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

fn nvr_config(data: &Path, listen: &str, bound: bool, rules: Option<&Path>) -> String {
    let mut s = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"100 MB\"\nsegment_duration = \"10s\"\n[http]\nlisten = \"{listen}:8080\"\n\
         [failover]\npeer_token = \"{TOKEN}\"\ntransfer_rate = \"2.5 MB\"\n",
        data.display()
    );
    if let Some(r) = rules {
        s.push_str(&format!("rules = \"{}\"\n", r.display()));
    }
    for (i, cam) in CAMS.iter().enumerate() {
        s.push_str(&format!(
            "[[network_camera]]\nname = \"cam{}\"\nurl = \"rtsp://{cam}:554/cam1\"\n",
            i + 1
        ));
    }
    for i in 1..=2 {
        s.push_str(&format!("[[channel]]\nnumber = {i}\n"));
        if bound {
            s.push_str(&format!("camera = \"cam{i}\"\n"));
        }
    }
    s
}

fn recording(base: &str) -> Result<bool> {
    let v = get(&format!("{base}/api/v1/channels"))?;
    Ok(v.as_array()
        .is_some_and(|a| a.iter().all(|c| c["recording"]["state"] == "recording")))
}

/// Runs the experiment and returns its JSON report.
pub fn run(opts: &LabOptions) -> Result<Value> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let prefix = format!("tdmlab{}-", std::process::id() % 10000);
    let mut net = Net::new(&prefix)?;
    net.add_host("pri", &format!("{PRIMARY}/16"))?;
    net.add_host("stb", &format!("{STANDBY}/16"))?;
    net.add_host("cam1", &format!("{}/16", CAMS[0]))?;
    net.add_host("cam2", &format!("{}/16", CAMS[1]))?;
    net.add_host("ctl", "192.168.9.9/16")?;
    net.enter("ctl")?;
    std::fs::create_dir_all(&opts.workdir)?;
    let work = &opts.workdir;
    let mut procs = Procs(Vec::new());
    let log = |name: &str| -> Result<Stdio> { Ok(std::fs::File::create(work.join(format!("{name}.log")))?.into()) };
    let delay = if opts.paper { "5000" } else { "0" };
    for (i, cam) in CAMS.iter().enumerate() {
        let c = net
            .command(&format!("cam{}", i + 1), &opts.binary)
            .args([
                "sim-camera",
                "--listen",
                &format!("{cam}:554"),
                "--count",
                "1",
                "--first-id",
                &(i + 1).to_string(),
            ])
            .args([
                "--width",
                "640",
                "--height",
                "360",
                "--bitrate-kbps",
                "1000",
                "--fps",
                "25",
                "--gop",
                "25",
            ])
            .args(["--setup-delay-ms", delay])
            .stdout(Stdio::null())
            .stderr(log(&format!("cam{}", i + 1))?)
            .spawn()?;
        procs.0.push(c);
    }
    let rules = work.join("rules.json");
    std::fs::write(&rules, if opts.paper { PAPER_FIG6 } else { RECOMMENDED_RULE })?;
    let (pdata, sdata) = (work.join("primary-data"), work.join("standby-data"));
    std::fs::write(work.join("primary.toml"), nvr_config(&pdata, PRIMARY, true, None))?;
    std::fs::write(
        work.join("standby.toml"),
        nvr_config(&sdata, STANDBY, false, Some(&rules)),
    )?;
    let spawn_nvr = |host: &str, name: &str| -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join(format!("{name}.log")))?;
        Ok(net
            .command(host, &opts.binary)
            .args(["serve", "--config"])
            .arg(work.join(format!("{name}.toml")))
            .env("TANDEM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    };
    TOKENS.remember(
        &format!("http://{PRIMARY}:8080"),
        &crate::auth::client::mint_admin_token(&pdata, "lab")?,
    );
    TOKENS.remember(
        &format!("http://{STANDBY}:8080"),
        &crate::auth::client::mint_admin_token(&sdata, "lab")?,
    );
    procs.0.push(spawn_nvr("pri", "primary")?);
    procs.0.push(spawn_nvr("stb", "standby")?);
    let (pbase, sbase) = (format!("http://{PRIMARY}:8080"), format!("http://{STANDBY}:8080"));
    wait_until("the primary to record both cameras", Duration::from_secs(60), || {
        recording(&pbase)
    })?;
    wait_until("the standby's API", Duration::from_secs(30), || {
        Ok(get(&format!("{sbase}/api/v1/rules")).is_ok())
    })?;

    // In normal state the standby pulls no video: measure what it receives.
    let (rx0, t0) = (net.rx_bytes("stb")?, Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let standby_rx = (net.rx_bytes("stb")? - rx0) as f64 / t0.elapsed().as_secs_f64();
    eprintln!("standby in normal state receives {standby_rx:.0} B/s (probes only; one camera sends ~125000 B/s)");

    let mut rounds = Vec::new();
    // The paper's experiment (link cuts), then the other faults once each.
    let mut faults = vec![Fault::Cut; opts.rounds as usize];
    faults.extend([Fault::Kill, Fault::Partition]);
    for (round, &fault) in faults.iter().enumerate() {
        check_interrupt()?;
        let transfers_before = get(&format!("{sbase}/api/v1/transfers"))?["transfers"]
            .as_array()
            .map_or(0, |a| a.len());
        let cut = now_us();
        match fault {
            Fault::Cut => net.set_link("pri", false)?,
            Fault::Kill => {
                let _ = procs.0[2].kill();
                let _ = procs.0[2].wait();
            }
            Fault::Partition => net.partition(("pri", PRIMARY), ("stb", STANDBY), true)?,
        }
        wait_until("the standby's rule to enter failure", Duration::from_secs(30), || {
            Ok(get(&format!("{sbase}/api/v1/rules"))?["rules"][0]["machine"]["state"] == "failure")
        })?;
        let rules_v = get(&format!("{sbase}/api/v1/rules"))?;
        let hist = rules_v["rules"][0]["machine"]["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let failed_at = hist
            .last()
            .and_then(|t| t["at"].as_str())
            .and_then(|s| Time90k::parse_rfc3339(s).ok());
        let takeover = failed_at
            .map(|t| (t.as_unix_micros() - cut) as f64 / 1e6)
            .unwrap_or(f64::NAN);
        wait_until("the standby to record", Duration::from_secs(60), || recording(&sbase))?;
        std::thread::sleep(opts.hold);
        let restore = now_us();
        match fault {
            Fault::Cut => net.set_link("pri", true)?,
            Fault::Kill => procs.0[2] = spawn_nvr("pri", "primary")?,
            Fault::Partition => net.partition(("pri", PRIMARY), ("stb", STANDBY), false)?,
        }
        wait_until("failback", Duration::from_secs(120), || {
            let r = get(&format!("{sbase}/api/v1/rules"))?;
            let ch = get(&format!("{sbase}/api/v1/channels"))?;
            Ok(r["rules"][0]["machine"]["state"] == "normal"
                && ch.as_array().is_some_and(|a| a.iter().all(|c| c["binding"].is_null())))
        })?;
        let released = Instant::now();
        let mut transfer_bytes = 0u64;
        wait_until("the failback transfer", Duration::from_secs(180), || {
            let t = get(&format!("{sbase}/api/v1/transfers"))?;
            let new: Vec<Value> = t["transfers"]
                .as_array()
                .map(|a| a[transfers_before..].to_vec())
                .unwrap_or_default();
            transfer_bytes = new.iter().filter_map(|j| j["bytes_sent"].as_u64()).sum();
            Ok(new.len() == 2 && new.iter().all(|j| j["state"] == "done"))
        })?;
        let transfer_s = released.elapsed().as_secs_f64();
        wait_until("the primary to record again", Duration::from_secs(60), || {
            recording(&pbase)
        })?;
        std::thread::sleep(Duration::from_secs(2));
        eprintln!(
            "round {round} ({fault:?}): takeover {takeover:.2} s, transfer {transfer_bytes} B in {transfer_s:.1} s"
        );
        rounds.push((cut, restore, takeover, transfer_bytes, transfer_s));
    }
    // A flapping link: 150-ms drops every half second never make three 100-ms
    // probes in a row fail, so the standby must not take over. (The link is
    // toggled rather than shaped with `tc netem`: this machine's kernel has no
    // netem qdisc.)
    let transitions = |v: Value| v["rules"][0]["machine"]["history"].as_array().map_or(0, |h| h.len());
    let before = transitions(get(&format!("{sbase}/api/v1/rules"))?);
    if !opts.paper {
        for _ in 0..20 {
            check_interrupt()?;
            net.set_link("pri", false)?;
            std::thread::sleep(Duration::from_millis(150));
            net.set_link("pri", true)?;
            std::thread::sleep(Duration::from_millis(350));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let flap_takeovers = transitions(get(&format!("{sbase}/api/v1/rules"))?) - before;
    eprintln!("flapping link: {flap_takeovers} rule transitions");
    // Stop both NVRs cleanly so every segment is closed, then read the merged timeline.
    for c in procs.0.iter().skip(2) {
        // SAFETY: signalling our own children.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    for c in procs.0.iter_mut().skip(2) {
        let _ = c.wait();
    }
    let reader = crate::store::Reader::new(pdata.clone());
    let audits: Vec<crate::audit::AuditReport> = (1..=2)
        .map(|ch| crate::audit::audit_store(&reader, ch, Time90k(0), Time90k(i64::MAX)))
        .collect::<Result<_>>()?;
    let mut out_rounds = Vec::new();
    // Each hole belongs to the last round whose cut came before the hole ended.
    let round_of = |first_after_us: i64| rounds.iter().rposition(|r| r.0 <= first_after_us);
    for (i, &(_, restore, takeover, bytes, tsec)) in rounds.iter().enumerate() {
        let mut loss = serde_json::Map::new();
        let (mut lost, mut failback_lost) = (0u64, 0u64);
        for (c, a) in audits.iter().enumerate() {
            let gaps = a.cameras.first().map(|x| &x.gaps[..]).unwrap_or(&[]);
            let mine: Vec<_> = gaps.iter().filter(|g| round_of(g.first_after_us) == Some(i)).collect();
            // The holes left around the takeover (TCP may deliver the first
            // moments after the cut to the primary late, moving the hole).
            let hole: i64 = mine
                .iter()
                .filter(|g| g.last_before_us <= restore)
                .map(|g| g.first_after_us - g.last_before_us)
                .sum();
            loss.insert(format!("cam{}", c + 1), json!(hole as f64 / 1e6));
            for g in &mine {
                lost += g.frames_missing;
                if g.last_before_us >= restore - 1_000_000 {
                    failback_lost += g.frames_missing;
                }
            }
        }
        out_rounds.push(json!({
            "round": i + 1, "fault": faults[i].name(), "takeover_s": takeover, "loss_s": loss,
            "frames_lost_after_merge": lost, "failback_frames_lost": failback_lost,
            "transfer_bytes": bytes, "transfer_s": tsec,
        }));
    }
    let (cuts, others): (Vec<Value>, Vec<Value>) = out_rounds.into_iter().partition(|r| r["fault"] == "cut");
    let out_rounds = cuts;
    let mean = |f: &dyn Fn(&Value) -> f64| out_rounds.iter().map(f).sum::<f64>() / out_rounds.len().max(1) as f64;
    let loss_mean = mean(&|r: &Value| {
        let l = r["loss_s"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default();
        l.iter().sum::<f64>() / l.len().max(1) as f64
    });
    let summary = json!({
        "takeover_s": mean(&|r: &Value| r["takeover_s"].as_f64().unwrap_or(f64::NAN)),
        "loss_s": loss_mean,
        "frames_lost_after_merge": mean(&|r: &Value| r["frames_lost_after_merge"].as_f64().unwrap_or(0.0)),
        "failback_frames_lost": mean(&|r: &Value| r["failback_frames_lost"].as_f64().unwrap_or(0.0)),
        "transfer_bytes": mean(&|r: &Value| r["transfer_bytes"].as_f64().unwrap_or(0.0)),
        "transfer_s": mean(&|r: &Value| r["transfer_s"].as_f64().unwrap_or(0.0)),
        "standby_normal_rx_bytes_per_s": standby_rx,
    });
    drop(procs);
    drop(net);
    Ok(json!({
        "mode": if opts.paper { "paper" } else { "tandem-defaults" },
        "rounds_requested": opts.rounds, "hold_s": opts.hold.as_secs_f64(),
        "rounds": out_rounds, "summary": summary,
        "scenarios": others,
        "flapping": { "drops": if opts.paper { 0 } else { 20 }, "drop_ms": 150, "rule_transitions": flap_takeovers },
        "duplicates_after_merge": audits.iter().map(|a| a.duplicates).sum::<u64>(),
    }))
}

/// Prints the report in the shape of the paper's Table 1.
pub fn print_table(report: &Value) {
    println!(
        "\nfailover lab ({}), hold {} s",
        report["mode"].as_str().unwrap_or("?"),
        report["hold_s"]
    );
    println!(
        "{:<9} {:>12} {:>10} {:>10} {:>12} {:>10} {:>12} {:>10}",
        "round", "takeover s", "loss cam1", "loss cam2", "lost frames", "failback", "transfer MB", "xfer s"
    );
    let row = |label: &str, r: &Value| {
        println!(
            "{:<9} {:>12.2} {:>10.2} {:>10.2} {:>12.1} {:>10.1} {:>12.2} {:>10.1}",
            label,
            r["takeover_s"].as_f64().unwrap_or(f64::NAN),
            r["loss_s"]["cam1"]
                .as_f64()
                .unwrap_or(r["loss_s"].as_f64().unwrap_or(f64::NAN)),
            r["loss_s"]["cam2"]
                .as_f64()
                .unwrap_or(r["loss_s"].as_f64().unwrap_or(f64::NAN)),
            r["frames_lost_after_merge"].as_f64().unwrap_or(f64::NAN),
            r["failback_frames_lost"].as_f64().unwrap_or(f64::NAN),
            r["transfer_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            r["transfer_s"].as_f64().unwrap_or(f64::NAN),
        );
    };
    for r in report["rounds"].as_array().into_iter().flatten() {
        row(&r["round"].to_string(), r);
    }
    row("mean", &report["summary"]);
    for r in report["scenarios"].as_array().into_iter().flatten() {
        row(r["fault"].as_str().unwrap_or("?"), r);
    }
    println!("paper (Table 1): takeover 3.3–4.2 s, mean 3.9 s; recording loss 8.3–9.3 s, mean 8.9 s");
    println!(
        "standby in normal state receives {:.0} B/s; flapping link: {} rule transitions; duplicates after merge: {}",
        report["summary"]["standby_normal_rx_bytes_per_s"]
            .as_f64()
            .unwrap_or(f64::NAN),
        report["flapping"]["rule_transitions"],
        report["duplicates_after_merge"]
    );
}

/// Where the lab's files go when not told.
pub fn default_workdir() -> PathBuf {
    std::env::temp_dir().join(format!("tandem-failover-lab-{}", std::process::id()))
}

pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the failover lab needs root (network namespaces)");
    }
    which("ip").context("the failover lab needs `ip` (Debian package iproute2)")
}

/// Whether a program is on the PATH.
pub fn have(p: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
}

fn which(p: &str) -> Result<()> {
    if !have(p) {
        bail!("{p} not found");
    }
    Ok(())
}
