//! `tandem check`: loads a configuration exactly as `run` would and reports
//! every problem with file, line and field — errors (exit 2) and warnings
//! (settings that work but an operator must know about; exit 0). Must never
//! start recording or contact a camera.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The TOML configuration file.
    #[arg(long)]
    config: PathBuf,
}

pub fn run(a: Args) -> Result<ExitCode> {
    match tandem::config::load_checked(&a.config) {
        Ok((c, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} network cameras, {} channels, storage {}{})",
                a.config.display(),
                c.cameras.len(),
                c.channels.len(),
                c.storage.dir.display(),
                match warnings.len() {
                    0 => String::new(),
                    n => format!(", {n} warning(s)"),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} problem(s) found", e.0.len());
            Ok(ExitCode::from(2))
        }
    }
}
