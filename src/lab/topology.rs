//! The lab's sites: namespaces on one bridge holding simulated cameras and
//! NVRs (the real `tandem` binary), their configuration files, tokens and
//! processes, and the questions the scenarios ask them over HTTP (recording?
//! transfers and gap fill idle?).
//!
//! Must never outlive a scenario: a `Site` kills its NVRs and cameras and
//! removes its namespaces when dropped, on every exit path.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::netns::Net;
use super::{get, wait_until, LabOptions, Procs, EDGE_SECONDS, TOKENS};

pub const TOKEN: &str = "failover-lab-peer-token";

/// Where the lab's controller sits: its HTTP requests leave from here.
const CONTROLLER: &str = "192.168.9.9/16";

/// A `[[network_camera]]` entry as an NVR of the lab sees it.
#[derive(Clone, Debug)]
pub struct NetCam {
    pub name: String,
    pub url: String,
    /// The network camera's channel (for rules naming several cameras at one address).
    pub channel: Option<u32>,
    /// `high` / `medium` / `low` / `never` (N+M), or the default.
    pub priority: Option<&'static str>,
}

/// What one NVR of a site is: its namespace, address, store and the rest of
/// its configuration.
#[derive(Clone, Debug)]
pub struct NvrSpec {
    /// Namespace and file names (`NAME.toml`, `NAME.log`, `NAME-data/`).
    pub name: String,
    pub addr: String,
    pub cameras: Vec<NetCam>,
    /// Channel number → network camera name it records (None: idle until a rule binds it).
    pub channels: Vec<(u32, Option<String>)>,
    /// The failover rules' JSON, for a standby.
    pub rules: Option<String>,
    /// `TANDEM_CLOCK_OFFSET_MS`: this NVR's clock shifted (lab-clock builds only).
    pub clock_offset_ms: i64,
}

/// The simulated cameras of one namespace.
#[derive(Clone, Debug)]
pub struct CamSpec {
    pub host: String,
    pub addr: String,
    pub count: u32,
    pub first_id: u32,
    pub width: u32,
    pub height: u32,
    pub kbps: u32,
}

impl CamSpec {
    /// The paper's cameras: 640x360, 1 Mbit/s, 25 fps, a key frame every second.
    pub fn paper(host: &str, addr: &str, id: u32) -> CamSpec {
        CamSpec {
            host: host.into(),
            addr: addr.into(),
            count: 1,
            first_id: id,
            width: 640,
            height: 360,
            kbps: 1000,
        }
    }
}

struct Nvr {
    spec: NvrSpec,
    data: PathBuf,
    child: Option<Child>,
}

/// One scenario's site. Field order matters: processes go before the namespaces.
pub struct Site {
    nvrs: Vec<Nvr>,
    cams: Procs,
    pub net: Net,
    pub work: PathBuf,
    binary: PathBuf,
    paper: bool,
    edge: bool,
    ignore_key_frame_requests: bool,
}

impl Drop for Site {
    fn drop(&mut self) {
        for n in &mut self.nvrs {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Site {
    /// A fresh bridge with the controller on it; this thread's sockets then
    /// live in the controller's namespace.
    pub fn new(opts: &LabOptions, tag: &str) -> Result<Site> {
        let prefix = format!("tdmlab{}-", std::process::id() % 10000);
        let mut net = Net::new(&prefix)?;
        net.add_host("ctl", CONTROLLER)?;
        net.enter("ctl")?;
        let work = opts.workdir.join(tag);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        Ok(Site {
            nvrs: Vec::new(),
            cams: Procs(Vec::new()),
            net,
            work,
            binary: opts.binary.clone(),
            paper: opts.paper,
            edge: opts.edge_storage,
            ignore_key_frame_requests: opts.ignore_key_frame_requests,
        })
    }

    fn log(&self, name: &str) -> Result<Stdio> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join(format!("{name}.log")))?;
        Ok(f.into())
    }

    /// Starts one `sim-camera` process serving `count` cameras (`/cam1`…)
    /// in its own namespace. With edge storage each keeps `EDGE_SECONDS` on
    /// its card, recording while its link is down too.
    pub fn add_cameras(&mut self, c: &CamSpec) -> Result<()> {
        self.net.add_host(&c.host, &format!("{}/16", c.addr))?;
        let delay = if self.paper { "5000" } else { "0" };
        let mut cmd = self.net.command(&c.host, &self.binary);
        cmd.args(["sim-camera", "--listen", &format!("{}:554", c.addr)])
            .args(["--count", &c.count.to_string(), "--first-id", &c.first_id.to_string()])
            .args(["--width", &c.width.to_string(), "--height", &c.height.to_string()])
            .args(["--bitrate-kbps", &c.kbps.to_string(), "--fps", "25", "--gop", "25"])
            .args(["--setup-delay-ms", delay]);
        if self.edge {
            cmd.args(["--edge-storage", &EDGE_SECONDS.to_string()]);
        }
        if self.ignore_key_frame_requests {
            cmd.arg("--ignore-key-frame-requests");
        }
        let child = cmd.stdout(Stdio::null()).stderr(self.log(&c.host)?).spawn()?;
        self.cams.0.push(child);
        Ok(())
    }

    /// Adds an NVR's namespace, configuration and token; `start_nvr` runs it.
    pub fn add_nvr(&mut self, spec: NvrSpec) -> Result<usize> {
        self.add_nvr_with(spec, "")
    }

    /// `add_nvr` with more configuration (whole TOML sections) after the rest.
    pub fn add_nvr_with(&mut self, spec: NvrSpec, extra: &str) -> Result<usize> {
        self.net.add_host(&spec.name, &format!("{}/16", spec.addr))?;
        let data = self.work.join(format!("{}-data", spec.name));
        let rules = match &spec.rules {
            Some(r) => {
                let p = self.work.join(format!("{}-rules.json", spec.name));
                std::fs::write(&p, r)?;
                Some(p)
            }
            None => None,
        };
        std::fs::write(
            self.work.join(format!("{}.toml", spec.name)),
            nvr_config(&data, &spec, rules.as_deref(), self.edge) + extra,
        )?;
        TOKENS.remember(
            &format!("http://{}:8080", spec.addr),
            &crate::auth::client::mint_admin_token(&data, "lab")?,
        );
        self.nvrs.push(Nvr {
            spec,
            data,
            child: None,
        });
        Ok(self.nvrs.len() - 1)
    }

    pub fn start_nvr(&mut self, i: usize) -> Result<()> {
        let n = &self.nvrs[i];
        let mut cmd = self.net.command(&n.spec.name, &self.binary);
        cmd.args(["serve", "--config"])
            .arg(self.work.join(format!("{}.toml", n.spec.name)))
            .env("TANDEM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(self.log(&n.spec.name)?);
        if n.spec.clock_offset_ms != 0 {
            cmd.env("TANDEM_CLOCK_OFFSET_MS", n.spec.clock_offset_ms.to_string());
        }
        let child = cmd.spawn()?;
        self.nvrs[i].child = Some(child);
        Ok(())
    }

    /// SIGKILL: the NVR gets no chance to flush or close anything.
    pub fn kill_nvr(&mut self, i: usize) {
        if let Some(mut c) = self.nvrs[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to one NVR (a graceful stop), then waits for it to exit.
    pub fn stop_nvr(&mut self, i: usize) {
        if let Some(mut c) = self.nvrs[i].child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// SIGTERM to every NVR, then waits, so every segment is closed before the audit.
    pub fn stop_nvrs(&mut self) {
        for n in &self.nvrs {
            if let Some(c) = &n.child {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            }
        }
        for n in &mut self.nvrs {
            if let Some(mut c) = n.child.take() {
                let _ = c.wait();
            }
        }
    }

    pub fn base(&self, i: usize) -> String {
        format!("http://{}:8080", self.nvrs[i].spec.addr)
    }

    pub fn host(&self, i: usize) -> &str {
        &self.nvrs[i].spec.name
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.nvrs[i].spec.addr
    }

    /// Every NVR's store with its channels: what the site's merged timeline is made of.
    pub fn stores(&self) -> Vec<(PathBuf, Vec<u32>)> {
        self.nvrs
            .iter()
            .map(|n| (n.data.clone(), n.spec.channels.iter().map(|c| c.0).collect()))
            .collect()
    }

    /// Whether every channel of NVR `i` records now.
    pub fn recording(&self, i: usize) -> Result<bool> {
        let v = get(&format!("{}/api/v1/channels", self.base(i)))?;
        Ok(v.as_array()
            .is_some_and(|a| a.iter().all(|c| c["recording"]["state"] == "recording")))
    }

    pub fn wait_recording(&self, i: usize, timeout: Duration) -> Result<()> {
        let what = format!("{} to record every channel", self.nvrs[i].spec.name);
        wait_until(&what, timeout, || self.recording(i))
    }

    pub fn wait_api(&self, i: usize) -> Result<()> {
        let what = format!("{}'s API", self.nvrs[i].spec.name);
        wait_until(&what, Duration::from_secs(30), || {
            Ok(get(&format!("{}/api/v1/rules", self.base(i))).is_ok())
        })
    }

    /// Whether NVR `i` owes nothing: every failback transfer done and no gap
    /// fill job pending or running. An NVR that does not answer is not idle.
    pub fn idle(&self, i: usize) -> Result<bool> {
        let t = get(&format!("{}/api/v1/transfers", self.base(i)))?;
        let transfers_done = t["transfers"]
            .as_array()
            .is_some_and(|a| a.iter().all(|j| j["state"] == "done"));
        Ok(transfers_done && gapfill_idle(&self.base(i))?)
    }

    /// The standby's first rule (the pair's only one).
    pub fn rule_state(&self, i: usize, rule: usize) -> Result<Value> {
        let v = get(&format!("{}/api/v1/rules", self.base(i)))?;
        Ok(v["rules"][rule]["machine"].clone())
    }
}

/// No job of `GET /api/v1/gapfill` is still to do. Jobs that ended — filled,
/// or reported lost because the camera no longer had the footage — count as idle.
fn gapfill_idle(base: &str) -> Result<bool> {
    let url = format!("{base}/api/v1/gapfill");
    let auth = TOKENS.header_for(&url).unwrap_or_default();
    let r = crate::httpc::request_with_timeout("GET", &url, &[("Authorization", &auth)], b"", Duration::from_secs(5))?;
    if r.status == 404 {
        // A build without gap fill has nothing to wait for.
        return Ok(true);
    }
    if r.status != 200 {
        bail!("{url}: HTTP {}", r.status);
    }
    let v = r.json()?;
    let jobs = v
        .as_array()
        .or_else(|| v["jobs"].as_array())
        .cloned()
        .unwrap_or_default();
    Ok(jobs
        .iter()
        .all(|j| matches!(j["state"].as_str(), Some("done" | "lost" | "failed" | "cancelled"))))
}

/// An NVR's configuration file.
pub fn nvr_config(data: &Path, spec: &NvrSpec, rules: Option<&Path>, edge: bool) -> String {
    let mut s = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"100 MB\"\nsegment_duration = \"10s\"\n[http]\nlisten = \"{}:8080\"\n\
         [failover]\npeer_token = \"{TOKEN}\"\ntransfer_rate = \"2.5 MB\"\n",
        data.display(),
        spec.addr
    );
    if let Some(r) = rules {
        s.push_str(&format!("rules = \"{}\"\n", r.display()));
    }
    for cam in &spec.cameras {
        s.push_str(&format!(
            "[[network_camera]]\nname = \"{}\"\nurl = \"{}\"\n",
            cam.name, cam.url
        ));
        if let Some(ch) = cam.channel {
            s.push_str(&format!("channel = {ch}\n"));
        }
        if edge {
            s.push_str("edge_storage = true\n");
        }
        if let Some(p) = cam.priority {
            s.push_str(&format!("priority = \"{p}\"\n"));
        }
    }
    for (n, cam) in &spec.channels {
        s.push_str(&format!("[[channel]]\nnumber = {n}\n"));
        if let Some(c) = cam {
            s.push_str(&format!("camera = \"{c}\"\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NvrSpec {
        NvrSpec {
            name: "stb".into(),
            addr: "192.168.1.2".into(),
            cameras: vec![
                NetCam {
                    name: "cam1".into(),
                    url: "rtsp://192.168.2.1:554/cam1".into(),
                    channel: Some(1),
                    priority: Some("high"),
                },
                NetCam {
                    name: "cam2".into(),
                    url: "rtsp://192.168.2.1:554/cam2".into(),
                    channel: Some(2),
                    priority: None,
                },
            ],
            channels: vec![(1, Some("cam1".into())), (2, None)],
            rules: None,
            clock_offset_ms: 0,
        }
    }

    #[test]
    fn configs_parse_and_carry_edge_storage_and_priorities() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.json");
        let text = nvr_config(&dir.path().join("data"), &spec(), Some(&rules), true);
        let v: toml::Value = toml::from_str(&text).unwrap();
        let cams = v["network_camera"].as_array().unwrap();
        assert_eq!(cams.len(), 2);
        assert!(cams.iter().all(|c| c["edge_storage"].as_bool() == Some(true)));
        assert_eq!(cams[0]["priority"].as_str(), Some("high"));
        assert!(cams[1].get("priority").is_none());
        assert_eq!(cams[1]["channel"].as_integer(), Some(2));
        let chans = v["channel"].as_array().unwrap();
        assert_eq!(chans[0]["camera"].as_str(), Some("cam1"));
        assert!(chans[1].get("camera").is_none());
        assert_eq!(v["failover"]["rules"].as_str(), Some(rules.to_str().unwrap()));
        assert_eq!(v["http"]["listen"].as_str(), Some("192.168.1.2:8080"));
        let plain = nvr_config(&dir.path().join("data"), &spec(), None, false);
        assert!(!plain.contains("edge_storage") && !plain.contains("rules ="), "{plain}");
    }
}
