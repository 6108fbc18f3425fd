//! `tandem tls fingerprint [--data DIR | --config FILE]`: prints the SHA-256
//! fingerprint of the certificate the NVR serves, in the form the peer's
//! `failover.peer_fingerprint` takes. Reads files only: must never generate
//! a certificate (a fingerprint of one the server never served pins nothing).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use tandem::web::tls::{self, TlsSource};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Print the SHA-256 fingerprint of the served certificate.
    Fingerprint(Where),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Where {
    /// A data directory holding a self-signed certificate (DIR/tls/cert.pem).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The NVR's configuration: its `[http] tls` certificate.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let Cmd::Fingerprint(w) = a.cmd;
    let cert = match (w.data, w.config) {
        (Some(d), _) => tls::self_signed_paths(&d).0,
        (None, Some(c)) => {
            let config = match tandem::config::load(&c) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            match config.http.tls {
                Some(TlsSource::Files { cert, .. }) => cert,
                Some(TlsSource::SelfSigned) => tls::self_signed_paths(&config.storage.dir).0,
                None => bail!("{}: TLS is off ([http] has no `tls`)", c.display()),
            }
        }
        (None, None) => bail!("give --data DIR or --config FILE"),
    };
    if !cert.exists() {
        bail!(
            "{}: no certificate yet (a self-signed one is generated on the first start with TLS)",
            cert.display()
        );
    }
    println!("{}", tls::file_fingerprint(&cert)?);
    Ok(ExitCode::SUCCESS)
}
