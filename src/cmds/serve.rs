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
    let config = match tandem::config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let scheme = config.http.scheme();
    super::runtime()?.block_on(super::run_nvr(config, Some(a.config.clone()), |addr| {
        tracing::info!("serving the API at {scheme}://{addr}/");
    }))?;
    Ok(ExitCode::SUCCESS)
}
