//! `tandem alert test ACTION`: sends a test message through one alert action
//! and says exactly what happened — through a running NVR (`--server URL
//! --token T`, `POST /api/v1/actions/{name}/test`) or straight from a
//! configuration file (`--config FILE`, this process sends it). Exit 0 when
//! delivered, 1 when not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tandem::alerts::Delivery;
use tandem::config::ActionTarget;
use tandem::time::Clock;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Send a test message through ACTION now (not queued, not retried).
    Test {
        /// The action's `name` in `[[action]]`.
        action: String,
        /// A running Tandem's URL (`http://nvr:8080`); needs an admin's `--token`.
        #[arg(long, conflicts_with = "config")]
        server: Option<String>,
        /// An admin's API token for `--server`.
        #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true, requires = "server")]
        token: Option<String>,
        /// For an `https://` server: trust the CA certificates in this PEM file.
        #[arg(long, requires = "server")]
        cacert: Option<PathBuf>,
        /// Send from this process with the action as this configuration file has it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(a: Args) -> Result<ExitCode> {
    let Cmd::Test {
        action,
        server,
        token,
        cacert,
        config,
    } = a.cmd;
    let outcome = match (server, config) {
        (Some(s), None) => via_server(&s, token.as_deref(), cacert, &action)?,
        (None, Some(c)) => from_config(&c, &action)?,
        _ => bail!("give --server URL --token T, or --config FILE"),
    };
    Ok(report(&action, &outcome))
}

fn report(action: &str, outcome: &Delivery) -> ExitCode {
    match outcome {
        Delivery::Delivered => {
            println!("{action}: delivered");
            ExitCode::SUCCESS
        }
        Delivery::Retry(e) => {
            eprintln!("{action}: not delivered (a transient error; the outbox would retry): {e}");
            ExitCode::FAILURE
        }
        Delivery::Fail(e) => {
            eprintln!("{action}: not delivered (will not work as configured): {e}");
            ExitCode::FAILURE
        }
    }
}

fn via_server(base: &str, token: Option<&str>, cacert: Option<PathBuf>, action: &str) -> Result<Delivery> {
    use tandem::httpc::{PeerTls, PeerTrust};
    let tls = match cacert {
        Some(p) => Some(
            PeerTls::new(&PeerTrust::Ca {
                roots: tandem::web::tls::load_certs(&p).map_err(|e| anyhow::anyhow!("--cacert: {e}"))?,
                path: p,
            })
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    if base.starts_with("https://") && tls.is_none() {
        bail!("an https:// server needs --cacert to check its certificate");
    }
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let name: String = url::form_urlencoded::byte_serialize(action.as_bytes()).collect();
    let url = format!(
        "{}/api/v1/actions/{}/test",
        base.trim_end_matches('/'),
        name.replace('+', "%20")
    );
    // The server waits up to the attempt timeout (30 s) for the transport.
    let r = tandem::httpc::request_via("POST", &url, &headers, b"{}", Duration::from_secs(45), tls.as_ref())
        .with_context(|| format!("POST {url}"))?;
    let body = r.json().unwrap_or_default();
    let error = || {
        body.get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string())
    };
    match r.status {
        200 if body["delivered"] == true => Ok(Delivery::Delivered),
        502 if body["retryable"] == true => Ok(Delivery::Retry(error())),
        502 => Ok(Delivery::Fail(error())),
        s => bail!("{base} answered {s}: {}", error()),
    }
}

fn from_config(path: &std::path::Path, action: &str) -> Result<Delivery> {
    let config = tandem::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(a) = config.actions.iter().find(|a| a.name == action) else {
        let names: Vec<&str> = config.actions.iter().map(|a| a.name.as_str()).collect();
        bail!(
            "{} has no action named `{action}` (it has: {})",
            path.display(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    if a.target == ActionTarget::Mqtt {
        bail!("an MQTT action publishes through the running NVR's broker connection: test it with --server");
    }
    // The store's NVR id names the NVR when `[nvr] name` does not; read
    // only: a store not created yet has none and is not created here.
    let index = config.storage.dir.join("index.db");
    let nvr_id = tandem::store::db::open_readonly(&index)
        .ok()
        .and_then(|c| tandem::store::db::nvr_id(&c).ok())
        .unwrap_or_else(|| "tandem".into());
    let site = tandem::events::actions::Site::of(&config, &nvr_id);
    let now = tandem::time::SystemClock.now();
    let rt = super::runtime()?;
    Ok(rt.block_on(tandem::events::actions::send_test(a, &site, None, now)))
}
