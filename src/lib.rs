//! Tandem, a network video recorder that does not lose footage.
//!
//! The crate is laid out by what each module owns (see `docs/architecture.md`):
//! `sim` (simulated cameras), `ingest` (RTSP clients), `media` (what a
//! recorded frame is), `store` (segments on disk and their SQLite index),
//! `mp4` (clip muxing and reading), `web` (HTTP API, plain or TLS), `httpc`
//! (the small client for peers, with their TLS trust),
//! `config` (the typed configuration, its validation and rendering),
//! `parfile` (the parameter file: export, import, diff, overrides, apply),
//! `reconcile` (what a live apply restarts), `audit` (counting
//! loss from frame stamps), `failover` (rules, probes, arbitration,
//! transfers), `archive` (the S3 archive tier: upload, verify, serve, expire), `pool` (the recorder pool: the scheduler's placement of
//! cameras on NVRs by capacity, and membership through etcd), `replay` (ONVIF replay of a camera's edge storage), `gapfill`
//! (holes in the timeline fetched from the cameras' edge storage), `events` and `motion` (event sources, actions and their durable
//! outbox), `alerts` (message templates and the SMS, mail and webhook
//! transports), `recording`
//! (schedules and the event gate), `lab` (the failover lab and the load
//! harness), `excerpt` and `log_limiter` (bounded quoting and logging of what
//! comes from outside), `webdriver` (headless Chromium for the web client's
//! tests and the glass-to-glass benchmark).

pub mod alerts;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod config;
pub mod events;
pub mod evidence;
pub mod excerpt;
pub mod export;
pub mod failover;
pub mod gapfill;
pub mod httpc;
pub mod ingest;
pub mod lab;
pub mod live;
pub mod log_limiter;
pub mod media;
pub mod metrics;
pub mod motion;
pub mod mp4;
pub mod nal;
pub mod nvr;
pub mod parfile;
pub mod pool;
pub mod reconcile;
pub mod recording;
pub mod replay;
pub mod sim;
pub mod snapshot;
pub mod store;
pub mod time;
pub mod web;
pub mod webdriver;
