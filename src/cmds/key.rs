//! `tandem key show`: the public half of the NVR's evidence signing key,
//! created in the data directory if it has none yet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(clap::Subcommand)]
enum KeyCmd {
    /// Print the public key (hex and base64) and its fingerprint.
    Show {
        /// The store directory.
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        data: Option<PathBuf>,
        /// The configuration whose store to use.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(a: Args) -> Result<ExitCode> {
    use base64::Engine;
    let KeyCmd::Show { data, config } = a.cmd;
    let store = super::store_of(data.as_deref(), config.as_deref())?;
    let (key, created) = tandem::evidence::key::load_or_create(&store.dir)?;
    let k = key.verifying_key();
    if created {
        eprintln!(
            "created a new signing key in {}",
            tandem::evidence::key::path(&store.dir).display()
        );
    }
    println!("algorithm: ed25519");
    println!("public key (hex): {}", tandem::evidence::hex(k.as_bytes()));
    println!(
        "public key (base64): {}",
        base64::engine::general_purpose::STANDARD.encode(k.as_bytes())
    );
    println!(
        "fingerprint (first 16 bytes of the key's SHA-256, hex): {}",
        tandem::evidence::fingerprint(&k)
    );
    Ok(ExitCode::SUCCESS)
}
