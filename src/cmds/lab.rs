use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

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
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep NVR logs and stores here (default: a fresh temporary directory, removed after).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    tandem::lab::require_root()?;
    let keep = a.workdir.is_some();
    let workdir = a.workdir.unwrap_or_else(tandem::lab::default_workdir);
    let opts = tandem::lab::LabOptions {
        rounds: a.rounds.max(1),
        hold: Duration::from_secs_f64(a.hold.max(0.5)),
        paper: a.paper,
        binary: std::env::current_exe()?,
        workdir: workdir.clone(),
    };
    let report = tandem::lab::run(&opts);
    if !keep {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    let report = report?;
    tandem::lab::print_table(&report);
    if let Some(p) = a.json {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
