//! One file per subcommand. Each parses its arguments, builds a runtime if it
//! needs one, and returns an exit code; library code does the work.

pub mod attack;
pub mod audit;
pub mod bench;
pub mod bench_apply;
pub mod bench_attack;
pub mod bench_auth;
pub mod bench_live;
pub mod bench_live_browser;
pub mod bench_motion;
pub mod check;
pub mod demo;
pub mod evidence;
pub mod export;
pub mod hostile_camera;
pub mod key;
pub mod lab;
pub mod serve;
pub mod sim_camera;
pub mod tls;
pub mod user;
pub mod verify;

use std::sync::Arc;

use anyhow::Result;
use tandem::config::Config;
use tandem::nvr::Nvr;
use tandem::time::SystemClock;

/// A store named on the command line: `--data DIR`, or the store of
/// `--config FILE` (whose channel names are then known too).
pub struct StoreRef {
    pub dir: std::path::PathBuf,
    pub config: Option<Config>,
}

pub fn store_of(data: Option<&std::path::Path>, config: Option<&std::path::Path>) -> Result<StoreRef> {
    match (data, config) {
        (Some(d), _) => Ok(StoreRef {
            dir: d.to_path_buf(),
            config: None,
        }),
        (None, Some(c)) => {
            let config = tandem::config::load(c).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(StoreRef {
                dir: config.storage.dir.clone(),
                config: Some(config),
            })
        }
        (None, None) => anyhow::bail!("give --data DIR or --config FILE"),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    cap_malloc_arenas();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tandem-rt")
        // Blocking store reads are bounded by the HTTP layer (`web::server::MAX_IN_FLIGHT`);
        // the pool need not be able to grow to tokio's default of 512 threads.
        .max_blocking_threads(96)
        .build()?)
}

/// glibc gives each thread that contends for malloc an arena of its own, up
/// to 8 per core, each reserving 64 MiB of address space: on a many-core
/// machine that alone exceeds a small appliance's address-space limit
/// (`prlimit --as=512MiB`) although little of it is used. Two arenas serve
/// Tandem's few busy threads; called before the runtime starts its threads.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; M_ARENA_MAX takes any positive value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutdown requested");
}

/// Runs an NVR with `config` until a signal, then shuts down in order.
pub async fn run_nvr(config: Config, ready: impl FnOnce(std::net::SocketAddr)) -> Result<()> {
    let endpoint = tandem::web::endpoint::Endpoint::bind(&config).await?;
    let addr = endpoint.local_addr()?;
    let nvr = Nvr::start(config, Arc::new(SystemClock))?;
    ready(addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tandem::web::serve(endpoint, nvr.clone(), async {
        let _ = stop_rx.await;
    }));
    shutdown_signal().await;
    let _ = stop_tx.send(());
    nvr.shutdown().await;
    let _ = server.await;
    Ok(())
}
