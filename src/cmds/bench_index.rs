//! `tandem bench index`: the store's index at a year's size. Generates a
//! synthetic index of N channels × D days of 1-minute segments with their
//! per-frame entries (25 fps, 1-s GOP, 4 Mbit/s sizes that vary) straight into
//! SQLite through `store::db`, with the rows the writer makes, then measures
//! what an operator waits for: the index's size on disk, `recordings` for a
//! day and for the whole range (from day summaries, folded first as the
//! `store-runs` thread would, and segment by segment for comparison),
//! the `moov` of a one-hour clip, start-up (open and repair, then the
//! background check of finished segments and listing of every file) and a
//! retention pass deleting the oldest day of every channel.
//!
//! Segment files: a year of 1-minute segments is more files than the disk
//! has inodes, so each segment's file is a hard link to a sparse file of its
//! exact length (one per distinct length, generated lengths being rounded to
//! 4 KiB): the start-up check stats every file and finds the size its row
//! lists, costing no disk. The segments of the hours a clip is built from
//! get files of their own with their real header, which the reader checks.
//!
//! Works only in a fresh `--dir`, removed afterwards unless `--keep`. Must
//! never run SQL of its own: rows, queries and deletions are the store's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem::mp4::clip;
use tandem::store::index::{FrameEntry, IndexEncoder};
use tandem::store::segment_file::{SegmentHeader, RECORD_HEADER_LEN};
use tandem::store::{db, header_len, orphans, repair, retention, retention_run, run_days, segment_path, Reader};
use tandem::time::Time90k;

const MINUTE: i64 = 60 * 90_000;
const DAY: i64 = 1440 * MINUTE;
/// The site: 64 channels for a year.
const FULL_CHANNELS: u32 = 64;
const FULL_DAYS: u32 = 365;
/// Generated segment lengths are rounded up to this, so that few sparse
/// files serve as every segment's file.
const FILE_GRAIN: u64 = 4096;
/// ext4 allows 65 000 links to one inode; stay below it.
const LINKS_PER_FILE: u32 = 60_000;

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Channels. Default: 64, or as many as fit in `--budget-gib` for `--days`.
    #[arg(long)]
    channels: Option<u32>,
    #[arg(long, default_value_t = FULL_DAYS)]
    days: u32,
    /// Disk the index may take when `--channels` is not given (GiB).
    #[arg(long, default_value_t = 40.0)]
    budget_gib: f64,
    /// Random days (and hours) measured for `recordings` (and clips).
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Generate no segment files (start-up's check of them is then skipped).
    #[arg(long)]
    no_files: bool,
    /// Seed of the generated frame sizes and the sampled days.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the store is generated (must not exist; removed afterwards).
    #[arg(long, default_value = "bench-index-data")]
    dir: PathBuf,
    /// Keep the generated store in `--dir`.
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value = "bench-index.json")]
    json: PathBuf,
}

/// xorshift64*: fast, deterministic, good enough for frame sizes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// `mean` varied uniformly by ± `pct` percent.
    fn around(&mut self, mean: u32, pct: u32) -> u32 {
        let spread = u64::from(mean) * u64::from(pct) / 100;
        (u64::from(mean) - spread + self.below(2 * spread + 1)) as u32
    }
}

/// One minute of a 1080p25, 1-s GOP, 4 Mbit/s camera as the writer indexes
/// it: a key frame of ~86 kB (± 10 %) then 24 frames of ~17 kB (± 30 %), 3600
/// ticks apart except one frame in 20 that arrives up to half a millisecond
/// off; the segment's file length (header, records) is rounded up to
/// `FILE_GRAIN` by growing its last frame. Returns the frames and the length.
fn minute_of_frames(rng: &mut Rng, entry_len: usize) -> (Vec<FrameEntry>, u64) {
    let mut frames = Vec::with_capacity(1500);
    let mut len = header_len(entry_len);
    for i in 0..1500u32 {
        let key = i % 25 == 0;
        let size = if key {
            rng.around(86_000, 10)
        } else {
            rng.around(17_200, 30)
        };
        let duration = if rng.below(20) == 0 { rng.around(3600, 1) } else { 3600 };
        len += RECORD_HEADER_LEN + u64::from(size);
        frames.push(FrameEntry { duration, size, key });
    }
    let pad = len.next_multiple_of(FILE_GRAIN) - len;
    if let Some(last) = frames.last_mut() {
        last.size += pad as u32;
    }
    (frames, len + pad)
}

/// An `avc1` sample entry as a 1080p camera's session yields (~110 bytes).
fn sample_entry() -> Result<tandem::store::SampleEntry> {
    let sps = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];
    let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    tandem::motion::avc1_entry(&sps, &pps, 1920, 1080).context("building the sample entry")
}

/// The sparse files segment files are linked to, one per length in use.
struct FilePool {
    dir: PathBuf,
    /// length → (file, links made to it so far)
    files: HashMap<u64, (PathBuf, u32)>,
    made: u32,
}

impl FilePool {
    fn link(&mut self, len: u64, to: &Path) -> Result<()> {
        let full = self.files.get(&len).is_none_or(|(_, n)| *n >= LINKS_PER_FILE);
        if full {
            self.made += 1;
            let p = self.dir.join(format!("{len}-{}", self.made));
            std::fs::File::create(&p)?.set_len(len)?;
            self.files.insert(len, (p, 0));
        }
        let (p, n) = self.files.get_mut(&len).context("pool file")?;
        *n += 1;
        std::fs::hard_link(&*p, to).with_context(|| format!("linking {}", to.display()))
    }
}

/// Creates a segment file of `len` bytes whose blocks are allocated, not
/// written: the generator needs what an unlink frees, not the bytes.
fn allocate(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: fallocate on a descriptor we own; mode 0 also sets the length.
    let r = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, len as libc::off_t) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("allocating {}", path.display()));
    }
    Ok(())
}

/// What generation made.
pub(super) struct Generated {
    start: Time90k,
    end: Time90k,
    pub(super) segments: u64,
    entry: tandem::store::SampleEntry,
    seconds: f64,
}

/// What stands for each generated segment's file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Files {
    /// No files: the index alone.
    None,
    /// Hard links to sparse files of the row's length: a year fits any disk,
    /// but an unlink frees no blocks.
    SparseLinks,
    /// A file of its own per segment, its blocks allocated (`fallocate`):
    /// an unlink frees real blocks, as a full disk's retention does.
    Allocated,
}

/// Generates `channels` × `minutes` of minute segments into the store at
/// `dir`, ending at `end`, committing an hour of all channels at a time.
pub(super) fn generate(
    dir: &Path,
    channels: u32,
    minutes: u64,
    files: Files,
    seed: u64,
    end: Time90k,
) -> Result<Generated> {
    let t0 = Instant::now();
    let conn = db::open_dir(dir).map_err(anyhow::Error::msg)?;
    db::bulk_load_mode(&conn)?;
    let entry = sample_entry()?;
    let entry_id = db::upsert_sample_entry(&conn, &entry.data, entry.codec, entry.width, entry.height)?;
    let start = end + -(minutes as i64 * MINUTE);
    let days = minutes.div_ceil(1440);
    let mut rng = Rng::new(seed);
    // Each camera's minute boundaries fall somewhere in the first second.
    let mut next: Vec<Time90k> = (0..channels).map(|_| start + rng.below(90_000) as i64).collect();
    let mut pool = FilePool {
        dir: dir.join("pool"),
        files: HashMap::new(),
        made: 0,
    };
    if files != Files::None {
        std::fs::create_dir_all(&pool.dir)?;
        for ch in 1..=channels {
            std::fs::create_dir_all(dir.join("video").join(format!("ch{ch}")))?;
        }
    }
    let mut enc;
    let mut segments = 0u64;
    for m in 0..minutes {
        if m % 60 == 0 {
            conn.execute_batch("BEGIN")?;
        }
        for ch in 1..=channels {
            let (frames, len) = minute_of_frames(&mut rng, entry.data.len());
            enc = IndexEncoder::default();
            let mut media = 0u64;
            let mut ticks = 0i64;
            for f in &frames {
                enc.push(*f);
                media += u64::from(f.size);
                ticks += i64::from(f.duration);
            }
            let s = next[(ch - 1) as usize];
            let p = db::Progress {
                end: s + ticks,
                frames: frames.len() as u32,
                key_frames: frames.iter().filter(|f| f.key).count() as u32,
                bytes: len,
                media_bytes: media,
            };
            let mut hash = [0u8; 32];
            for c in hash.chunks_mut(8) {
                c.copy_from_slice(&rng.next().to_le_bytes());
            }
            let id = db::insert_finished_segment(&conn, ch, s, entry_id, &p, enc.blob(), Some(&hash))?;
            match files {
                Files::None => {}
                Files::SparseLinks => pool.link(len, &segment_path(dir, ch, id))?,
                Files::Allocated => allocate(&segment_path(dir, ch, id), len)?,
            }
            next[(ch - 1) as usize] = p.end;
            segments += 1;
        }
        if m % 60 == 59 || m + 1 == minutes {
            conn.execute_batch("COMMIT")?;
        }
        if m % 1440 == 1439 {
            let day = m / 1440 + 1;
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "  day {day}/{days}: {segments} segments, {:.1} GiB, {:.0} segments/s, {:.0} s left",
                db_bytes(dir) as f64 / GIB,
                segments as f64 / secs,
                secs / day as f64 * days.saturating_sub(day) as f64
            );
        }
    }
    drop(conn);
    // The bulk load wrote without fsyncs: flush it now, so that the first
    // fsync measured (start-up's) is not the generator's gigabytes.
    let f = std::fs::File::open(dir.join("index.db"))?;
    f.sync_all()?;
    // SAFETY: syncfs on a descriptor we own; it flushes the links' directories.
    unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    Ok(Generated {
        start,
        end,
        segments,
        entry,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

const GIB: f64 = (1u64 << 30) as f64;

/// The index's bytes on disk (database, WAL, shared memory).
fn db_bytes(dir: &Path) -> u64 {
    ["index.db", "index.db-wal", "index.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Index bytes per channel-day, from one channel's day generated apart.
fn probe_bytes_per_channel_day(dir: &Path, seed: u64) -> Result<f64> {
    let p = dir.join("probe");
    generate(&p, 1, 1440, Files::None, seed, Time90k(400 * DAY))?;
    let b = db_bytes(&p);
    std::fs::remove_dir_all(&p)?;
    Ok(b as f64)
}

/// Percentiles of durations, in milliseconds (also `bench placement`'s).
#[derive(serde::Serialize, Clone, Copy, Default)]
pub(super) struct Ms {
    pub(super) n: usize,
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) max: f64,
}

impl Ms {
    pub(super) fn of(mut d: Vec<Duration>) -> Ms {
        d.sort();
        let q = |f: f64| {
            d.get(((d.len() as f64 - 1.0) * f).round() as usize)
                .map_or(f64::NAN, ms)
        };
        Ms {
            n: d.len(),
            p50: q(0.5),
            p99: q(0.99),
            max: q(1.0),
        }
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Gives the segments of `channel` overlapping [a, b) files of their own with
/// their real header (the reader checks it before a clip is built).
fn own_files(dir: &Path, entry: &[u8], channel: u32, a: Time90k, b: Time90k) -> Result<()> {
    let conn = db::open(&dir.join("index.db"))?;
    for s in db::segments_overlapping(&conn, channel, a, b)? {
        let p = segment_path(dir, channel, s.id);
        let _ = std::fs::remove_file(&p);
        let header = SegmentHeader {
            channel,
            segment_id: s.id,
            start: s.start,
            sample_entry: entry.to_vec(),
        }
        .encode();
        std::fs::write(&p, header)?;
        std::fs::OpenOptions::new().write(true).open(&p)?.set_len(s.bytes)?;
    }
    Ok(())
}

#[derive(serde::Serialize, Default)]
struct Results {
    channels: u32,
    days: u32,
    segments: u64,
    generate_seconds: f64,
    index_bytes: u64,
    bytes_per_segment: f64,
    bytes_per_channel_day: f64,
    bytes_per_channel_year: f64,
    /// 64 channels × 365 days at the bytes per segment measured.
    full_size_index_bytes_extrapolated: f64,
    recordings_day_ms: Ms,
    recordings_whole_range_ms: Ms,
    /// This thread's CPU time for them: the wall time less waiting for
    /// the disk or for a core (the machine's cores are shared).
    recordings_whole_range_cpu_ms: Ms,
    recordings_whole_range_segments: u64,
    /// The same ranges folded segment by segment (no day summary): what
    /// `recordings` cost before schema 12. Both lists are compared equal.
    recordings_whole_range_one_by_one_ms: Ms,
    /// The `store-runs` thread's first pass over the generated store (what an
    /// upgraded store's costs once, in the background): days summarized.
    runs_summarize_ms: f64,
    runs_summarized_days: usize,
    /// `Reader::footage` (rows, frame indexes, file checks) for one hour.
    clip_footage_ms: Ms,
    /// `clip::build` (the `moov`) from that footage.
    clip_build_ms: Ms,
    /// Both: a clip's header ready to send.
    clip_moov_ms: Ms,
    clip_moov_bytes: usize,
    /// Opening the index and `repair` (recording waits for this): rows
    /// being written or deleted, and files above the last committed id.
    startup_open_repair_ms: f64,
    /// The background listing of every segment file for ones without a row
    /// (`orphans::adopt_unindexed`, on the check's thread): its time, and
    /// the files it listed.
    background_listing_ms: f64,
    background_listing_files: usize,
    /// The check of every finished segment's file (on its own thread).
    startup_check_ms: Option<f64>,
    /// Of the check: reading the list of finished segments.
    startup_check_rows_ms: Option<f64>,
    startup_checked: usize,
    startup_damaged: usize,
    /// The passes that deleted the oldest day of every channel.
    retention_passes: Vec<retention_run::PassReport>,
    retention_day_segments: usize,
    retention_day_total_ms: f64,
    retention_longest_pass_ms: f64,
    /// A pass with nothing to delete (the writer runs one every 5 s).
    retention_idle_pass_ms: f64,
}

pub fn run(a: IndexArgs) -> Result<ExitCode> {
    if a.dir.exists() {
        bail!("{} exists; give an empty --dir", a.dir.display());
    }
    std::fs::create_dir_all(&a.dir)?;
    let dir = std::path::absolute(&a.dir)?;
    let r = measure(&a, &dir);
    if !a.keep {
        eprintln!("removing {}…", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

fn measure(a: &IndexArgs, dir: &Path) -> Result<ExitCode> {
    let per_channel_day = probe_bytes_per_channel_day(dir, a.seed)?;
    let fit = (a.budget_gib * GIB / (per_channel_day * f64::from(a.days))) as u32;
    let channels = a.channels.unwrap_or(fit.clamp(1, FULL_CHANNELS));
    let estimate = per_channel_day * f64::from(channels) * f64::from(a.days);
    let free = tandem::store::free_bytes(dir)? as f64;
    eprintln!(
        "index: {:.1} MiB per channel-day measured; {channels} channels × {} days ≈ {:.1} GiB ({:.1} GiB free)",
        per_channel_day / 1048576.0,
        a.days,
        estimate / GIB,
        free / GIB
    );
    if estimate > free - 5.0 * GIB {
        bail!("the index would not fit with 5 GiB to spare; give fewer --channels or --days");
    }
    let store = dir.join("store");
    let end = Time90k::from_system(std::time::SystemTime::now());
    eprintln!("generating {channels} channels × {} days of minute segments…", a.days);
    let files = if a.no_files { Files::None } else { Files::SparseLinks };
    let g = generate(&store, channels, u64::from(a.days) * 1440, files, a.seed, end)?;
    let mut res = Results {
        channels,
        days: a.days,
        segments: g.segments,
        generate_seconds: g.seconds,
        index_bytes: db_bytes(&store),
        ..Default::default()
    };
    res.bytes_per_segment = res.index_bytes as f64 / g.segments as f64;
    res.bytes_per_channel_day = res.bytes_per_segment * 1440.0;
    res.bytes_per_channel_year = res.bytes_per_channel_day * 365.0;
    res.full_size_index_bytes_extrapolated = res.bytes_per_channel_year * f64::from(FULL_CHANNELS);

    eprintln!("folding the day summaries of recording runs (the store-runs thread's first pass)…");
    let t = Instant::now();
    let pass = run_days::summarize(&db::open(&store.join("index.db"))?, run_days::today(end), || false)?;
    res.runs_summarize_ms = ms(&t.elapsed());
    res.runs_summarized_days = pass.stored;

    let mut rng = Rng::new(a.seed ^ 0x5eed);
    let reader = Reader::new(store.clone());
    eprintln!("recordings for {} random days…", a.samples);
    let mut times = Vec::new();
    for _ in 0..a.samples {
        let ch = 1 + rng.below(u64::from(channels)) as u32;
        let day = g.start + rng.below(u64::from(a.days)) as i64 * DAY;
        let t = Instant::now();
        let runs = reader.recordings(ch, day, day + DAY)?;
        times.push(t.elapsed());
        if runs.len() != 1 {
            bail!("channel {ch}: {} runs in a day of contiguous footage", runs.len());
        }
    }
    res.recordings_day_ms = Ms::of(times);
    eprintln!("recordings for the whole range…");
    let (mut times, mut cpu, mut old) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.samples.clamp(1, 5) {
        let ch = 1 + rng.below(u64::from(channels)) as u32;
        let (t, c) = (Instant::now(), thread_cpu());
        let runs = reader.recordings(ch, g.start, g.end)?;
        times.push(t.elapsed());
        cpu.push(thread_cpu().saturating_sub(c));
        res.recordings_whole_range_segments = runs.iter().map(|r| u64::from(r.segments)).sum();
        let t = Instant::now();
        let one_by_one = reader.recordings_segment_by_segment(ch, g.start, g.end)?;
        old.push(t.elapsed());
        if one_by_one != runs {
            bail!("channel {ch}: the runs from day summaries differ from the runs of the segments");
        }
    }
    res.recordings_whole_range_ms = Ms::of(times);
    res.recordings_whole_range_cpu_ms = Ms::of(cpu);
    res.recordings_whole_range_one_by_one_ms = Ms::of(old);

    if !a.no_files {
        clips(a, &store, &g, channels, &mut rng, &mut res)?;
    }
    startup(&store, !a.no_files, &mut res)?;
    retention_day(&store, &g, channels, &mut res)?;
    report(a, &res)?;
    Ok(ExitCode::SUCCESS)
}

/// One-hour clips of random channels and hours: footage, then the `moov`.
fn clips(a: &IndexArgs, store: &Path, g: &Generated, channels: u32, rng: &mut Rng, res: &mut Results) -> Result<()> {
    let n = a.samples.clamp(1, 20);
    eprintln!("{n} one-hour clips…");
    let hours = u64::from(a.days) * 24 - 1;
    let picks: Vec<(u32, Time90k)> = (0..n)
        .map(|_| {
            let ch = 1 + rng.below(u64::from(channels)) as u32;
            (ch, g.start + (rng.below(hours) as i64) * 60 * MINUTE + 30 * 90_000)
        })
        .collect();
    for &(ch, h) in &picks {
        own_files(store, &g.entry.data, ch, h, h + 60 * MINUTE)?;
    }
    let reader = Reader::new(store.to_path_buf());
    let (mut foot, mut build, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for &(ch, h) in &picks {
        let t = Instant::now();
        let f = reader.footage(ch, h, h + 60 * MINUTE)?;
        let t1 = Instant::now();
        let c = clip::build(&f.segments, &f.damaged, h, h + 60 * MINUTE)?;
        let t2 = Instant::now();
        if !f.damaged.is_empty() || !c.gaps.is_empty() {
            bail!(
                "channel {ch}: the clip has damage or gaps: {:?} {:?}",
                f.damaged,
                c.gaps
            );
        }
        res.clip_moov_bytes = c.head.len();
        foot.push(t1 - t);
        build.push(t2 - t1);
        both.push(t2 - t);
    }
    res.clip_footage_ms = Ms::of(foot);
    res.clip_build_ms = Ms::of(build);
    res.clip_moov_ms = Ms::of(both);
    Ok(())
}

/// What `Store::open` does before recording starts (open, migrate, repair),
/// then the check of finished segments it starts on its own thread.
fn startup(store: &Path, files: bool, res: &mut Results) -> Result<()> {
    eprintln!("start-up: open and repair…");
    let t = Instant::now();
    let mut conn = db::open(&store.join("index.db"))?;
    db::migrate(&mut conn).map_err(anyhow::Error::msg)?;
    let mut report = repair::repair(&conn, store)?;
    res.startup_open_repair_ms = ms(&t.elapsed());
    if files {
        eprintln!("start-up: the check of every finished segment's file…");
        // Its list of rows, apart, then the whole check (list and a stat each).
        let t = Instant::now();
        db::complete_segment_sizes(&conn)?;
        res.startup_check_rows_ms = Some(ms(&t.elapsed()));
        let t = Instant::now();
        repair::check_finished(&conn, store, &mut report)?;
        res.startup_check_ms = Some(ms(&t.elapsed()));
        res.startup_checked = report.segments_checked;
        res.startup_damaged = report.segments_damaged;
        eprintln!("start-up: the background listing of every segment file…");
        let t = Instant::now();
        let listing = orphans::adopt_unindexed(&conn, store, &mut report)?;
        res.background_listing_ms = ms(&t.elapsed());
        res.background_listing_files = listing.files;
        if listing.orphans > 0 {
            bail!(
                "the listing found {} files without a row in a generated store",
                listing.orphans
            );
        }
    }
    Ok(())
}

/// Retention deleting the oldest day of every channel: the writer's own
/// passes, each timed (recording waits while one runs), then an idle pass.
fn retention_day(store: &Path, g: &Generated, channels: u32, res: &mut Results) -> Result<()> {
    eprintln!("retention: deleting the oldest day of every channel…");
    let conn = db::open(&store.join("index.db"))?;
    // Footage older than a day past the first expires: the first day's segments.
    let policy = retention::RetentionPolicy {
        max_age: Some(g.end - (g.start + DAY)),
        ..Default::default()
    };
    let policies: HashMap<u32, _> = (1..=channels).map(|c| (c, policy)).collect();
    loop {
        let r = retention_run::run(&conn, store, g.end, &policies, 0)?;
        if r.segments == 0 {
            res.retention_idle_pass_ms = ms(&r.total());
            break;
        }
        res.retention_day_segments += r.segments;
        res.retention_passes.push(r);
        if res.retention_passes.len() > 100 {
            bail!("retention did not finish the day in 100 passes");
        }
    }
    let totals = res.retention_passes.iter().map(|p| p.total());
    res.retention_day_total_ms = totals.clone().map(|d| ms(&d)).sum();
    res.retention_longest_pass_ms = totals.map(|d| ms(&d)).fold(0.0, f64::max);
    Ok(())
}

fn report(a: &IndexArgs, r: &Results) -> Result<()> {
    let full = r.channels == FULL_CHANNELS && r.days == FULL_DAYS;
    // Whole-table work grows with the rows; this scales it to the full site.
    let scale = f64::from(FULL_CHANNELS * FULL_DAYS) / f64::from(r.channels * r.days);
    let channel_scale = f64::from(FULL_CHANNELS) / f64::from(r.channels);
    println!();
    println!(
        "index benchmark: {} channels × {} days of 1-minute segments ({} segments, 25 fps, per-frame index), generated in {:.0} s",
        r.channels, r.days, r.segments, r.generate_seconds
    );
    println!("{:<44} {:>16} {:>12}", "what", "measured", "target");
    let row = |w: &str, m: String, t: &str| println!("{w:<44} {m:>16} {t:>12}");
    row(
        "index size on disk",
        format!("{:.2} GiB", r.index_bytes as f64 / GIB),
        "-",
    );
    row("  bytes per segment", format!("{:.0}", r.bytes_per_segment), "-");
    row(
        "  per channel-day / channel-year",
        format!(
            "{:.1} MiB / {:.2} GiB",
            r.bytes_per_channel_day / 1048576.0,
            r.bytes_per_channel_year / GIB
        ),
        "-",
    );
    let d = &r.recordings_day_ms;
    row(
        "recordings, one day: p50 / p99 ms",
        format!("{:.1} / {:.1}", d.p50, d.p99),
        "p99 ≤ 20",
    );
    let y = &r.recordings_whole_range_ms;
    row(
        &format!("recordings, all {} days: p50 / max ms", r.days),
        format!("{:.0} / {:.0}", y.p50, y.max),
        "≤ 200",
    );
    row(
        "  of which CPU (p50 ms)",
        format!("{:.0}", r.recordings_whole_range_cpu_ms.p50),
        "-",
    );
    row(
        "  segment by segment, as before (p50 ms)",
        format!("{:.0}", r.recordings_whole_range_one_by_one_ms.p50),
        "-",
    );
    row(
        "  day summaries folded once (background) ms",
        format!("{:.0} ({} days)", r.runs_summarize_ms, r.runs_summarized_days),
        "-",
    );
    if a.no_files {
        row("clip moov, 1 hour", "skipped".into(), "≤ 50");
    } else {
        let c = &r.clip_moov_ms;
        row(
            "clip moov, 1 hour: p50 / max ms",
            format!("{:.1} / {:.1}", c.p50, c.max),
            "≤ 50",
        );
        row(
            "  footage read / moov built, p50 ms",
            format!("{:.1} / {:.1}", r.clip_footage_ms.p50, r.clip_build_ms.p50),
            "-",
        );
    }
    row(
        "start-up: open + repair ms",
        format!("{:.0}", r.startup_open_repair_ms),
        "≤ 2000",
    );
    if !a.no_files {
        row(
            "start-up: listing of every file ms",
            format!("{:.0} ({} files)", r.background_listing_ms, r.background_listing_files),
            "(own thread)",
        );
    }
    match r.startup_check_ms {
        Some(c) => row(
            "start-up: check of finished segments ms",
            format!("{c:.0} ({} damaged)", r.startup_damaged),
            "(own thread)",
        ),
        None => row("start-up: check of finished segments", "skipped".into(), "-"),
    }
    if let Some(rows) = r.startup_check_rows_ms {
        row("  of which: reading the rows ms", format!("{rows:.0}"), "-");
    }
    row(
        &format!("retention: oldest day of {} channels ms", r.channels),
        format!("{:.0} in {} passes", r.retention_day_total_ms, r.retention_passes.len()),
        "-",
    );
    row(
        "  longest pass (writer waits) ms",
        format!("{:.0}", r.retention_longest_pass_ms),
        "-",
    );
    row(
        "  idle pass (every 5 s) ms",
        format!("{:.0}", r.retention_idle_pass_ms),
        "-",
    );
    if !full {
        println!();
        println!(
            "EXTRAPOLATED to {FULL_CHANNELS} channels × {FULL_DAYS} days (×{scale:.2} the segments; not measured):"
        );
        row(
            "  index size on disk",
            format!("{:.0} GiB", r.full_size_index_bytes_extrapolated / GIB),
            "-",
        );
        // Open and repair no longer read the whole store: not scaled (the
        // docs compare two sizes to show it).
        if let Some(c) = r.startup_check_ms {
            row("  start-up: check ms (linear)", format!("{:.0}", c * scale), "-");
        }
        row(
            "  start-up: listing of every file ms (linear)",
            format!("{:.0}", r.background_listing_ms * scale),
            "-",
        );
        row(
            "  day summaries folded once ms (linear)",
            format!("{:.0}", r.runs_summarize_ms * scale),
            "-",
        );
        row(
            "  recordings, all 365 days ms (per channel)",
            format!(
                "{:.0}",
                r.recordings_whole_range_ms.p50 * f64::from(FULL_DAYS) / f64::from(r.days)
            ),
            "≤ 200",
        );
        // Both passes read up to PASS_LIMIT segments of every channel.
        row(
            "  retention idle pass ms (per channel)",
            format!("{:.0}", r.retention_idle_pass_ms * channel_scale),
            "-",
        );
        row(
            "  retention longest pass ms (per channel)",
            format!("{:.0}", r.retention_longest_pass_ms * channel_scale),
            "-",
        );
    }
    let mut json = serde_json::to_value(r)?;
    json["benchmark"] = "index".into();
    json["extrapolated_to_full_size"] = serde_json::json!({
        "channels": FULL_CHANNELS, "days": FULL_DAYS, "measured": full, "scale": scale,
        "index_bytes": r.full_size_index_bytes_extrapolated,
        "startup_check_ms": r.startup_check_ms.map(|c| c * scale),
        "background_listing_ms": r.background_listing_ms * scale,
        "runs_summarize_ms": r.runs_summarize_ms * scale,
        "retention_idle_pass_ms": r.retention_idle_pass_ms * channel_scale,
        "retention_longest_pass_ms": r.retention_longest_pass_ms * channel_scale,
        "recordings_whole_year_ms": r.recordings_whole_range_ms.p50 * f64::from(FULL_DAYS) / f64::from(r.days),
    });
    std::fs::write(&a.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_minute_is_a_camera_minute_in_file_grains() {
        let mut rng = Rng::new(7);
        for _ in 0..20 {
            let (frames, len) = minute_of_frames(&mut rng, 110);
            assert_eq!(frames.len(), 1500);
            assert_eq!(frames.iter().filter(|f| f.key).count(), 60);
            let media: u64 = frames.iter().map(|f| u64::from(f.size)).sum();
            assert_eq!(len, header_len(110) + 1500 * RECORD_HEADER_LEN + media);
            assert_eq!(len % FILE_GRAIN, 0);
            // About 4 Mbit/s over about 60 s.
            let ticks: i64 = frames.iter().map(|f| i64::from(f.duration)).sum();
            assert!((ticks - MINUTE).abs() < 9_000, "{ticks}");
            let mbit = media as f64 * 8.0 / 60.0 / 1e6;
            assert!((3.8..4.2).contains(&mbit), "{mbit}");
            // The store's encoding round-trips it.
            let blob = tandem::store::index::encode(&frames);
            assert_eq!(tandem::store::index::decode(&blob).unwrap(), frames);
        }
    }
}
