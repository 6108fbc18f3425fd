//! `tandem verify`: checks an evidence archive (`FILE.zip [--key K]`), a
//! store's segment files against the hashes written with them (`--data`), or
//! a store's audit log chain (`--audit --data`). Prints each check with its
//! reason; exits 0 only if all hold.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use tandem::store::integrity::{self, Pacer, Scope};
use tandem::time::Time90k;

#[derive(clap::Args)]
pub struct Args {
    /// An evidence archive from `tandem export --evidence` or `evidence.zip`.
    #[arg(conflicts_with_all = ["data", "config"])]
    file: Option<PathBuf>,
    /// The public key you trust (hex or base64, from `tandem key show` or
    /// `GET /api/v1/key`). Without it the key inside the manifest is used,
    /// which proves only that the archive is unchanged since it was signed.
    #[arg(long, requires = "file")]
    key: Option<String>,
    /// Check the segment files of this store against their stored hashes.
    #[arg(long, conflicts_with = "config")]
    data: Option<PathBuf>,
    /// Like --data, the store of this configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// With --data: check the audit log's hash chain instead of the segments.
    #[arg(long, conflicts_with_all = ["file", "channel", "start", "end"])]
    audit: bool,
    /// With --data: only this channel.
    #[arg(long)]
    channel: Option<u32>,
    /// With --data: only segments overlapping from this time (RFC 3339).
    #[arg(long)]
    start: Option<String>,
    /// With --data: only segments overlapping until this time (RFC 3339).
    #[arg(long)]
    end: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if let Some(f) = &a.file {
        return verify_archive(f, a.key.as_deref());
    }
    if a.data.is_none() && a.config.is_none() {
        bail!("give an evidence archive, or --data DIR (or --config FILE) to check stored segments");
    }
    let store = super::store_of(a.data.as_deref(), a.config.as_deref())?;
    if a.audit {
        return verify_audit(&store.dir);
    }
    let t = |name: &str, v: &Option<String>, default: i64| match v {
        Some(s) => Time90k::parse_rfc3339(s).map_err(|e| anyhow::anyhow!("--{name}: {e}")),
        None => Ok(Time90k(default)),
    };
    let scope = Scope {
        channel: a.channel,
        start: t("start", &a.start, i64::MIN)?,
        end: t("end", &a.end, i64::MAX)?,
    };
    let mut on_mismatch = |m: &integrity::Mismatch| {
        println!(
            "CHANGED  {} (channel {}, segment {}): {}",
            m.file.display(),
            m.channel,
            m.segment,
            m.why
        );
    };
    let r = integrity::check(
        &store.dir,
        scope,
        &mut Pacer::new(None),
        &mut |_| true,
        &mut on_mismatch,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    for d in &r.known_damage {
        println!("DAMAGED  {d} (found by the start-up check)");
    }
    println!(
        "checked {} segments ({} MiB read): {} intact, {} changed, {} damaged, {} unhashed (finished before segment hashes or rebuilt by repair; not checked)",
        r.checked,
        r.bytes_read >> 20,
        r.intact,
        r.mismatches.len(),
        r.known_damage.len(),
        r.unhashed
    );
    if r.mismatches.is_empty() && r.known_damage.is_empty() {
        println!("verdict: every hashed segment file is as it was written");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verdict: FAILED: segment files differ from what was written");
        Ok(ExitCode::FAILURE)
    }
}

fn verify_audit(dir: &std::path::Path) -> Result<ExitCode> {
    let index = dir.join("index.db");
    if !index.is_file() {
        bail!("{} is not a Tandem store (no index.db)", dir.display());
    }
    let conn = tandem::store::db::open_readonly(&index)?;
    let v = tandem::auth::audit_log::verify(&conn)?;
    for p in &v.problems {
        println!("BROKEN  {p}");
    }
    if v.problems.is_empty() {
        println!("verdict: the audit log's {} entries chain intact", v.entries);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "verdict: FAILED: the audit log ({} entries) was changed: {} breaks",
            v.entries,
            v.problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn verify_archive(path: &std::path::Path, key: Option<&str>) -> Result<ExitCode> {
    let trusted = match key {
        Some(k) => Some(tandem::evidence::parse_public_key(k).map_err(|e| anyhow::anyhow!("--key: {e}"))?),
        None => None,
    };
    let v = tandem::evidence::archive::verify(path, trusted.as_ref());
    println!("{}", path.display());
    for c in &v.checks {
        println!("  {:4}  {}: {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
    }
    if let Some(m) = &v.manifest {
        println!(
            "  nvr {}, channel {}{}, requested {} to {}, {} gaps, codec {} {}x{}",
            m.nvr_id,
            m.channel,
            m.camera
                .as_deref()
                .map(|c| format!(" (camera {c})"))
                .unwrap_or_default(),
            m.requested.start,
            m.requested.end,
            m.gaps.len(),
            m.codec,
            m.width,
            m.height
        );
    }
    if v.key_from_manifest {
        println!(
            "  note: checked with the public key inside the manifest, which proves the archive is unchanged since it was signed, not who signed it; pass --key with the NVR's key (tandem key show) to check that"
        );
    }
    if v.ok() {
        let frames = v.manifest.as_ref().map_or(0, |m| m.frames);
        println!("verdict: VALID ({frames} frames)");
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&str> = v.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        println!("verdict: NOT VALID ({} failed)", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
