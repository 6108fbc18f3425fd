//! The `tandem` binary: parses the command line and hands each subcommand to
//! its module under `cmds/`. `anyhow` lives only at this edge.

mod cmds;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Tandem: a network video recorder that does not lose footage"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record built-in simulated cameras with no configuration and serve the API.
    Demo(cmds::demo::Args),
    /// Run the NVR from a TOML configuration.
    Serve(cmds::serve::Args),
    /// Serve N simulated RTSP cameras whose frames carry loss-counting stamps.
    SimCamera(cmds::sim_camera::Args),
    /// Serve an RTSP camera that misbehaves (endless headers, frames that never
    /// end, timestamp steps, parameter-set storms), one way per path.
    HostileCamera(cmds::hostile_camera::Args),
    /// Export a stretch of a channel's footage as an .mp4.
    Export(cmds::export::Args),
    /// Check an evidence archive (signature, clip hash, frame count), or a
    /// store's segment files against the hashes written with them (--data).
    Verify(cmds::verify::Args),
    /// The NVR's evidence signing key.
    Key(cmds::key::Args),
    /// Count frames found, lost and duplicated in stored or exported footage.
    Audit(cmds::audit::Args),
    /// Validate a configuration file; lists every problem found.
    Check(cmds::check::Args),
    /// The paper's failover test bed in network namespaces (root): Table 1.
    FailoverLab(cmds::lab::Args),
    /// The recorder pool's lab (root, etcd): kill, partition, etcd restart, add.
    PoolLab(cmds::pool_lab::Args),
    /// Benchmarks that print a table and write JSON (ingest: Tandem vs ffmpeg -c copy).
    Bench(cmds::bench::Args),
    /// Load harness: flood a running NVR's triggers, hold slow connections, upload a large import.
    Attack(cmds::attack::Args),
    /// TLS: print the served certificate's SHA-256 fingerprint (for a peer's `peer_fingerprint`).
    Tls(cmds::tls::Args),
    /// Manage the users (and their API tokens) of a store.
    User(cmds::user::Args),
    /// Alert actions: send a test message through one (`tandem alert test ACTION`).
    Alert(cmds::alert::Args),
    /// The whole configuration as a parameter file: export, import (live),
    /// versions, rollback, push to several NVRs.
    Config(cmds::config::Args),
    /// The S3 archive read from the bucket alone: `ls` its days, `export` an .mp4.
    Archive(cmds::archive::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let r = match cli.cmd {
        Cmd::Demo(a) => cmds::demo::run(a),
        Cmd::User(a) => cmds::user::run(a),
        Cmd::Serve(a) => cmds::serve::run(a),
        Cmd::SimCamera(a) => cmds::sim_camera::run(a),
        Cmd::HostileCamera(a) => cmds::hostile_camera::run(a),
        Cmd::Export(a) => cmds::export::run(a),
        Cmd::Verify(a) => cmds::verify::run(a),
        Cmd::Key(a) => cmds::key::run(a),
        Cmd::Audit(a) => cmds::audit::run(a),
        Cmd::Check(a) => cmds::check::run(a),
        Cmd::Bench(a) => cmds::bench::run(a),
        Cmd::FailoverLab(a) => cmds::lab::run(a),
        Cmd::PoolLab(a) => cmds::pool_lab::run(a),
        Cmd::Attack(a) => cmds::attack::run(a),
        Cmd::Tls(a) => cmds::tls::run(a),
        Cmd::Archive(a) => cmds::archive::run(a),
        Cmd::Config(a) => cmds::config::run(a),
        Cmd::Alert(a) => cmds::alert::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
