//! `powercut-lab --tandem PATH [--cuts N] [--json FILE] [--seed S] [--work DIR]`:
//! the power-cut lab at scale (see `lazyfs::lab`). Prints a line per cut and
//! the summary; writes the whole report as JSON when asked. With
//! `--boundaries` it cuts at every durability boundary of one segment's life
//! instead (the list, then a line per boundary). Exits 1 when a
//! store was inconsistent or a cut lost more than the promise, 2 on bad
//! arguments or when the lab could not run. Needs root (FUSE).

use std::path::PathBuf;
use std::process::ExitCode;

use lazyfs::lab::{self, LabConfig};

const USAGE: &str = "usage: powercut-lab --tandem PATH [--cuts N] [--json FILE] [--seed S] [--work DIR] [--boundaries]";

fn parse(args: &[String]) -> Result<(LabConfig, Option<PathBuf>, bool), String> {
    let mut boundaries = false;
    let mut tandem = None;
    let mut cuts = 100u32;
    let mut json = None;
    let mut seed = None;
    let mut work = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--tandem" => tandem = Some(PathBuf::from(value("--tandem")?)),
            "--cuts" => {
                cuts = value("--cuts")?
                    .parse()
                    .map_err(|_| "--cuts: expected a whole number".to_string())?
            }
            "--json" => json = Some(PathBuf::from(value("--json")?)),
            "--seed" => {
                seed = Some(
                    value("--seed")?
                        .parse()
                        .map_err(|_| "--seed: expected a whole number".to_string())?,
                )
            }
            "--work" => work = Some(PathBuf::from(value("--work")?)),
            "--boundaries" => boundaries = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let tandem = tandem.ok_or(format!("--tandem is required\n{USAGE}"))?;
    let mut cfg = LabConfig::new(tandem, cuts);
    if let Some(s) = seed {
        cfg.seed = s;
    }
    cfg.work_dir = work;
    cfg.progress = true;
    Ok((cfg, json, boundaries))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, json, boundaries) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if boundaries {
        return match run_boundaries(&cfg, json.as_deref()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("powercut-lab: {e}");
                ExitCode::from(2)
            }
        };
    }
    eprintln!(
        "power-cut lab: {} cuts, seed {}, flush interval {} s, promise {:.2} s",
        cfg.cuts,
        cfg.seed,
        cfg.flush_interval_s,
        cfg.promise_s()
    );
    eprintln!("{}", lab::TABLE_HEADER);
    let report = match lab::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("powercut-lab: {e}");
            return ExitCode::from(2);
        }
    };
    let s = &report.summary;
    println!(
        "{} cuts in {:.0} s: {} inconsistent, {} over the promise; lost_s max {:.3}, mean {:.3} \
         (flush interval {} s); cuts in rollovers {}, retention deletions {}, imports {}; {}",
        s.cuts,
        s.seconds,
        s.inconsistent,
        s.over_promise,
        s.max_lost_s,
        s.mean_lost_s,
        s.flush_interval_s,
        s.in_rollover,
        s.in_retention,
        s.in_import,
        s.gap_fill_merges
    );
    if let Some(w) = &s.stopped_early {
        println!("stopped early: {w}");
    }
    if let Some(k) = &s.kept {
        println!("logs kept in {k}");
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("powercut-lab: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if s.inconsistent > 0 || s.over_promise > 0 || s.stopped_early.is_some() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Cuts at each boundary of segment 2's life; whether all were consistent,
/// within the promise and landed where aimed.
fn run_boundaries(cfg: &LabConfig, json: Option<&std::path::Path>) -> Result<bool, lab::LabError> {
    let mut setup = lab::BoundarySetup::start(&cfg.tandem, cfg.work_dir.as_deref())?;
    setup.progress = true;
    let reference = setup.reference()?;
    let list = lab::segment_life(&reference).map_err(lab::LabError::Nvr)?;
    eprintln!("the durability boundaries of segment 2's life (from the reference trace):");
    for (i, b) in list.iter().enumerate() {
        if let Some((m, nth)) = b.trigger(&reference) {
            eprintln!(
                "{:>3}. {:<48} {:?} {} #{nth} {:?}",
                i + 1,
                b.label,
                m.op,
                m.path_contains,
                b.when
            );
        }
    }
    let mut runs = Vec::new();
    for b in &list {
        runs.push(setup.run(b, &reference)?);
    }
    let ok = runs
        .iter()
        .all(|r| r.hit && r.consistent && r.lost_s <= cfg.promise_s());
    for r in &runs {
        println!(
            "{:<48} hit={} tries={} consistent={} lost_s={:.3} repair: {}",
            r.label, r.hit, r.tries, r.consistent, r.lost_s, r.repair_summary
        );
    }
    if let Some(path) = json {
        let text =
            serde_json::to_string_pretty(&serde_json::json!({ "boundaries": list, "runs": runs })).unwrap_or_default();
        std::fs::write(path, text).map_err(|e| lab::LabError::Io(format!("writing {}", path.display()), e))?;
    }
    Ok(ok)
}
