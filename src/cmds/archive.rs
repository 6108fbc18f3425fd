//! `tandem archive ls|export`: an S3 archive read from the bucket alone (the
//! NVR that wrote it may be stopped or gone). The bucket is named by
//! `--config FILE` (its `[archive]` table) or by `--url` and friends;
//! credentials come from the environment or `--credentials`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tandem::archive::{offline, Location};
use tandem::time::Time90k;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Bucket {
    /// Take the bucket from this configuration's `[archive]` table.
    #[arg(long, conflicts_with = "url")]
    config: Option<PathBuf>,
    /// s3://bucket/prefix
    #[arg(long, required_unless_present = "config")]
    url: Option<String>,
    /// An S3-compatible server, e.g. http://127.0.0.1:9000 (path-style requests).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// An AWS-style credentials file; default: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// The NVR whose archive to read (its id); default: the only one.
    #[arg(long)]
    nvr: Option<String>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// The archived days of each channel (with --day, that day's segments).
    Ls {
        #[command(flatten)]
        bucket: Bucket,
        #[arg(long)]
        channel: Option<u32>,
        /// YYYY-MM-DD (needs --channel): list the day's segments.
        #[arg(long, requires = "channel")]
        day: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// An .mp4 of a channel's archived footage from start to end.
    Export {
        #[command(flatten)]
        bucket: Bucket,
        #[command(flatten)]
        range: super::export::ClipRange,
    },
}

fn location(b: &Bucket) -> Result<Location> {
    if let Some(c) = &b.config {
        let config = tandem::config::load(c).map_err(|e| anyhow::anyhow!("{e}"))?;
        let a = config
            .archive
            .with_context(|| format!("{} has no [archive] table", c.display()))?;
        return Ok(Location::of(&a));
    }
    let url = b.url.as_deref().context("give --url or --config")?;
    let (bucket, prefix) = tandem::config::archive::parse_url(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Location {
        bucket,
        prefix,
        endpoint: b.endpoint.clone(),
        region: b.region.clone(),
        virtual_hosted: false,
        credentials: b.credentials.clone(),
    })
}

async fn nvr_of(loc: &Location, b: &Bucket) -> Result<String> {
    if let Some(n) = &b.nvr {
        return Ok(n.clone());
    }
    let all = offline::nvrs(loc).await?;
    match all.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no archive under s3://{}/{}", loc.bucket, loc.prefix),
        _ => bail!("several NVRs archived here ({}): give --nvr", all.join(", ")),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match args.cmd {
            Cmd::Ls {
                bucket,
                channel,
                day,
                json,
            } => ls(&bucket, channel, day, json).await,
            Cmd::Export { bucket, range } => export(&bucket, &range).await,
        }
    })
}

async fn ls(b: &Bucket, channel: Option<u32>, day: Option<String>, json: bool) -> Result<ExitCode> {
    let loc = location(b)?;
    let nvr = nvr_of(&loc, b).await?;
    let mut out = std::io::stdout().lock();
    if let (Some(ch), Some(d)) = (channel, day) {
        let Some(idx) = offline::day(&loc, &nvr, ch, &d).await? else {
            bail!("nothing archived for channel {ch} on {d}");
        };
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&idx.segments.values().collect::<Vec<_>>())?
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(
            out,
            "{:>16}  {:<27} {:<27} {:>7} {:>12}",
            "segment", "start", "end", "frames", "bytes"
        )?;
        for e in idx.segments.values() {
            writeln!(
                out,
                "{:>16}  {:<27} {:<27} {:>7} {:>12}",
                e.id,
                Time90k(e.start_90k).to_rfc3339(),
                Time90k(e.end_90k).to_rfc3339(),
                e.frames,
                e.bytes
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let days = offline::days(&loc, &nvr, channel).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&days)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "nvr {nvr}")?;
    writeln!(
        out,
        "{:>7}  {:<10} {:>8} {:>9} {:>14}  first .. last",
        "channel", "day", "segments", "frames", "bytes"
    )?;
    for d in &days {
        writeln!(
            out,
            "{:>7}  {:<10} {:>8} {:>9} {:>14}  {} .. {}",
            d.channel, d.day, d.segments, d.frames, d.bytes, d.start, d.end
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(b: &Bucket, range: &super::export::ClipRange) -> Result<ExitCode> {
    let (channel, output) = (range.channel, range.output.as_path());
    let (start, end) = range.times()?;
    let loc = location(b)?;
    let nvr = nvr_of(&loc, b).await?;
    let cache = std::env::temp_dir().join(format!("tandem-archive-export-{}", std::process::id()));
    let r = async {
        let footage = offline::footage(&loc, &nvr, channel, start, end, &cache).await?;
        if footage.segments.is_empty() {
            bail!("no archived footage of channel {channel} in that range");
        }
        let clip = tandem::mp4::clip::build(&footage.segments, &footage.damaged, start, end)?;
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?,
        );
        tandem::export::write_clip(&clip, &mut f, |_| {})?;
        f.flush()?;
        let frames: usize = footage.segments.iter().map(|s| s.frames.len()).sum();
        eprintln!(
            "wrote {} ({} bytes; {} segments, {frames} frames fetched; {} gaps)",
            output.display(),
            clip.len,
            footage.segments.len(),
            clip.gaps.len()
        );
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&cache);
    r.map(|()| ExitCode::SUCCESS)
}
