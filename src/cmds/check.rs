//! `tandem check`: loads a configuration exactly as `run` would and reports
//! every problem with file, line and field — errors (exit 2) and warnings
//! (settings that work but an operator must know about; exit 0). Must never
//! start recording or contact a camera.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The TOML configuration file (or a parameter file).
    #[arg(long)]
    config: PathBuf,
    /// For a parameter file with sealed secrets: the environment variable
    /// holding its passphrase (its header and checksum are checked too).
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let passphrase = match &a.passphrase_env {
        Some(var) => match std::env::var(var) {
            Ok(p) => Some(p),
            Err(_) => {
                eprintln!("--passphrase-env: the environment variable `{var}` is not set");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let file = a.config.display().to_string();
    let loaded = tandem::config::load_checked_with(&a.config, |text| match passphrase {
        None => Ok(Default::default()),
        Some(passphrase) => {
            let opts = tandem::parfile::ReadOptions {
                passphrase: Some(passphrase),
                accept_edited: false,
            };
            tandem::parfile::read(text, &file, &opts).map(|i| i.secrets)
        }
    });
    match loaded {
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
