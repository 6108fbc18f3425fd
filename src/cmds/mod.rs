//! One file per subcommand. Each parses its arguments, builds a runtime if it
//! needs one, and returns an exit code; library code does the work.

pub mod alert;
pub mod archive;
pub mod attack;
pub mod audit;
pub mod bench;
pub mod bench_alerts;
pub mod bench_apply;
pub mod bench_archive;
pub mod bench_attack;
pub mod bench_auth;
pub mod bench_figures;
pub mod bench_index;
pub mod bench_intake;
pub mod bench_live;
pub mod bench_live_browser;
mod bench_load;
pub mod bench_motion;
pub mod bench_placement;
pub mod bench_serve;
mod bench_windows;
pub mod check;
pub mod config;
mod config_pool;
pub mod demo;
pub mod evidence;
pub mod export;
pub mod hostile_camera;
pub mod key;
pub mod lab;
pub mod pool_lab;
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

/// Runs an NVR with `config` until a signal, then shuts down in order. With
/// `reload`, SIGHUP re-reads that file and applies it live
/// (`parfile::apply`, origin "sighup").
pub async fn run_nvr(
    config: Config,
    reload: Option<std::path::PathBuf>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    tandem::time::check_clock_offset().map_err(anyhow::Error::msg)?;
    let endpoint = tandem::web::endpoint::Endpoint::bind(&config).await?;
    let addr = endpoint.local_addr()?;
    let nvr = Nvr::start(config, Arc::new(SystemClock))?;
    let source = reload
        .as_ref()
        .map_or("built in".to_string(), |p| p.display().to_string());
    match tandem::parfile::apply::record_start(&nvr, &source).await {
        Ok(Some(v)) => tracing::info!(version = v, "the configuration started with is stored as version {v}"),
        Ok(None) => {}
        Err(e) => tracing::warn!("the configuration started with could not be stored as a version: {e}"),
    }
    ready(addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tandem::web::serve(endpoint, nvr.clone(), async {
        let _ = stop_rx.await;
    }));
    let hup = reload.map(|path| tokio::spawn(reload_on_sighup(nvr.clone(), path)));
    shutdown_signal().await;
    if let Some(h) = hup {
        h.abort();
    }
    let _ = stop_tx.send(());
    nvr.shutdown().await;
    let _ = server.await;
    Ok(())
}

/// Applies `path` each time SIGHUP arrives; a bad file is logged, error by
/// error, and changes nothing.
async fn reload_on_sighup(nvr: Arc<Nvr>, path: std::path::PathBuf) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the configuration will not be re-read");
        return;
    };
    while hup.recv().await.is_some() {
        let file = path.display().to_string();
        tracing::info!(file = %file, "SIGHUP: re-reading the configuration");
        let read = path.clone();
        let text = tokio::task::spawn_blocking(move || {
            tandem::config::source::read_bounded_at_most(&read, tandem::config::source::MAX_CONFIG_FILE)
        })
        .await;
        let text = match text {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!(file = %file, "SIGHUP: cannot read the configuration, nothing changed: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("SIGHUP: {e}");
                continue;
            }
        };
        let req = tandem::parfile::apply::Request {
            source: tandem::parfile::apply::Source::Text {
                text,
                file: file.clone(),
            },
            passphrase: std::env::var("TANDEM_PASSPHRASE").ok(),
            // The file is the operator's own: edited by hand on purpose.
            accept_edited: true,
            dry_run: false,
            actor: "sighup".into(),
            origin: "sighup".into(),
            base: path.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
            expect_version: None,
        };
        match tandem::parfile::apply::apply(&nvr, req).await {
            Ok(o) if o.unchanged => tracing::info!(file = %file, "SIGHUP: the configuration is unchanged"),
            Ok(o) => {
                for n in &o.notes {
                    tracing::info!("SIGHUP: {n}");
                }
                tracing::info!(
                    version = o.version.unwrap_or(0),
                    "SIGHUP: configuration applied:\n{}",
                    o.diff_text.trim_end()
                );
            }
            Err(f) => {
                for e in f.errors() {
                    tracing::warn!("SIGHUP: {e}");
                }
                tracing::warn!(file = %file, "SIGHUP: configuration not applied; nothing changed");
            }
        }
    }
}
