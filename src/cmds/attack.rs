//! `tandem attack`: the hardening load harness against a running NVR — a
//! trigger flood, slow connections and a large import at once — printing how
//! the NVR answered. Point it only at an NVR you run (loopback in tests).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tandem::lab::attack::{self, Plan};

#[derive(clap::Args)]
pub struct Args {
    /// The NVR's HTTP address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    target: SocketAddr,
    /// Channels whose event trigger is flooded (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    channels: Vec<u32>,
    /// Trigger requests per second, all clients together (0: none).
    #[arg(long, default_value_t = 1000)]
    trigger_rate: u32,
    #[arg(long, default_value_t = 16)]
    trigger_clients: u32,
    /// Idle, half-sent connections held open.
    #[arg(long, default_value_t = 1000)]
    slow: u32,
    /// Megabytes uploaded as one import (needs --peer-token).
    #[arg(long, default_value_t = 0)]
    import_mb: u64,
    #[arg(long, default_value_t = 1)]
    import_channel: u32,
    #[arg(long, env = "TANDEM_PEER_TOKEN")]
    peer_token: Option<String>,
    /// API token for the trigger requests, if the NVR requires one.
    #[arg(long, env = "TANDEM_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let plan = Plan {
        target: a.target,
        channels: a.channels,
        trigger_rate: a.trigger_rate,
        trigger_clients: a.trigger_clients,
        duration: Duration::from_secs(a.seconds),
        slow_connections: a.slow,
        import_bytes: a.import_mb << 20,
        import_channel: a.import_channel,
        peer_token: a.peer_token,
        bearer: a.token,
    };
    eprintln!(
        "attacking {} for {} s: {} triggers/s from {} clients, {} slow connections, {} MB import",
        plan.target, a.seconds, plan.trigger_rate, plan.trigger_clients, plan.slow_connections, a.import_mb
    );
    let r = attack::run(&plan);
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(ExitCode::SUCCESS)
}
