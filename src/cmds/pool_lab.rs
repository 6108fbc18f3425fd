//! `tandem pool-lab`: the recorder pool's lab (issue 13) — a real etcd and
//! N NVRs in network namespaces, faults injected, the merged timeline judged.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tandem::lab::pool::{PoolLabOptions, PoolScenario};

#[derive(clap::Args)]
pub struct Args {
    /// NVRs in the pool (the lab: 10).
    #[arg(long, default_value_t = 10)]
    nvrs: u32,
    /// Simulated cameras (320x180, 200 kbit/s) shared by the pool.
    #[arg(long, default_value_t = 100)]
    cameras: u32,
    /// NVRs killed at once in `kill`.
    #[arg(long, default_value_t = 3)]
    kill: u32,
    /// Faults, comma-separated: kill, stop, partition, etcd-restart, add (default: all).
    #[arg(long)]
    scenario: Option<String>,
    /// Seconds a partition or an etcd outage lasts.
    #[arg(long, default_value_t = 8.0)]
    hold: f64,
    #[command(flatten)]
    files: super::lab::LabFiles,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let scenarios = match &a.scenario {
        Some(s) => PoolScenario::parse_list(s)?,
        None => PoolScenario::ALL.to_vec(),
    };
    tandem::lab::require_root()?;
    let report = a.files.run(|workdir| {
        tandem::lab::pool::run(&PoolLabOptions {
            nvrs: a.nvrs,
            cameras: a.cameras,
            kill: a.kill.max(1),
            hold: Duration::from_secs_f64(a.hold.max(1.0)),
            scenarios,
            binary: std::env::current_exe()?,
            workdir: workdir.to_path_buf(),
        })
    })?;
    tandem::lab::pool_report::print_table(&report);
    a.files.write_json(&report)
}
