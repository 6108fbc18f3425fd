use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tandem::lab::Scenario;

#[derive(clap::Args)]
pub struct Args {
    /// Link cuts to perform.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Seconds the primary's link stays cut in each round (the paper held 300).
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// The paper's parameters: its Fig. 6 rule and cameras that take 5 s to connect.
    #[arg(long)]
    paper: bool,
    /// Faults to inject, comma-separated: cut, kill, partition, flapping,
    /// camera-outage, single-crash, mass, n-plus-m, clock-skew (default: all
    /// that apply to the mode; the paper's mode: cut, kill, partition).
    #[arg(long)]
    scenario: Option<String>,
    /// Cameras keep 120 s on their card and the NVRs fill holes from it.
    #[arg(long)]
    edge_storage: bool,
    /// Cameras ignore RTCP key frame requests, so that each takeover waits
    /// for the camera's next key frame (to compare with cameras that answer).
    #[arg(long)]
    ignore_key_frame_requests: bool,
    /// Seconds a camera's link stays down (camera-outage, default 30) and a
    /// single NVR stays dead (single-crash, default 20).
    #[arg(long)]
    outage: Option<f64>,
    #[command(flatten)]
    files: LabFiles,
}

/// Where a lab writes: its JSON report, and its NVRs' logs and stores.
#[derive(clap::Args)]
pub(super) struct LabFiles {
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep NVR logs and stores here (default: a fresh temporary directory, removed after).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

impl LabFiles {
    /// Runs a lab in `--workdir`, or in a fresh temporary directory removed after.
    pub(super) fn run<T>(&self, f: impl FnOnce(&std::path::Path) -> Result<T>) -> Result<T> {
        let dir = self.workdir.clone().unwrap_or_else(tandem::lab::default_workdir);
        let r = f(&dir);
        if self.workdir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }

    /// Writes a lab's report as JSON where `--json` asked.
    pub(super) fn write_json(&self, report: &serde_json::Value) -> Result<ExitCode> {
        if let Some(p) = &self.json {
            std::fs::write(p, serde_json::to_string_pretty(report)?)?;
            println!("wrote {}", p.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let scenarios = match &a.scenario {
        Some(s) => Scenario::parse_list(s)?,
        None => Scenario::defaults(a.paper),
    };
    tandem::lab::require_root()?;
    let report = a.files.run(|workdir| {
        tandem::lab::run(&tandem::lab::LabOptions {
            rounds: a.rounds.max(1),
            hold: Duration::from_secs_f64(a.hold.max(0.5)),
            paper: a.paper,
            edge_storage: a.edge_storage,
            ignore_key_frame_requests: a.ignore_key_frame_requests,
            scenarios,
            outage: a.outage.map(|s| Duration::from_secs_f64(s.max(0.5))),
            binary: std::env::current_exe()?,
            workdir: workdir.to_path_buf(),
        })
    })?;
    tandem::lab::print_table(&report);
    a.files.write_json(&report)
}
