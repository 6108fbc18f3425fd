use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use tandem::store::Reader;
use tandem::time::Time90k;

#[derive(clap::Args)]
pub struct Args {
    /// An .mp4 file to audit (from Tandem or any other recorder).
    file: Option<PathBuf>,
    /// Audit a Tandem store directly instead of a file.
    #[arg(long, conflicts_with = "file", requires = "channel")]
    data: Option<PathBuf>,
    #[arg(long)]
    channel: Option<u32>,
    #[arg(long)]
    start: Option<String>,
    #[arg(long)]
    end: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut damaged = Vec::new();
    let report = match (&a.file, &a.data, a.channel) {
        (Some(f), None, _) => tandem::audit::audit_mp4(f)?,
        (None, Some(d), Some(ch)) => {
            let t = |name: &str, v: &Option<String>, default: i64| match v {
                Some(s) => Time90k::parse_rfc3339(s).map_err(|e| anyhow::anyhow!("--{name}: {e}")),
                None => Ok(Time90k(default)),
            };
            let start = t("start", &a.start, 0)?;
            let end = t("end", &a.end, i64::MAX)?;
            let (report, d) = tandem::audit::audit_store_checked(&Reader::new(d.clone()), ch, start, end)?;
            damaged = d;
            report
        }
        _ => bail!("give an .mp4 file, or --data DIR --channel N"),
    };
    // Damaged files are named, not fatal: the audit covers everything readable.
    for d in &damaged {
        eprintln!("warning: damaged segment: {d}");
    }
    let mut out = serde_json::to_value(&report)?;
    if let Some(o) = out.as_object_mut() {
        o.insert("damaged_files".into(), serde_json::json!(damaged));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
