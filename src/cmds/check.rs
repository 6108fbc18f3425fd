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
    match tandem::config::load(&a.config) {
        Ok(c) => {
            println!(
                "{}: ok ({} network cameras, {} channels, storage {})",
                a.config.display(),
                c.cameras.len(),
                c.channels.len(),
                c.storage.dir.display()
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
