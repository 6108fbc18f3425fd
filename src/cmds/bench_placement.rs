//! `tandem bench placement`: the pool scheduler's placement (issue 13)
//! simulated, no processes: M members and C cameras with random capacities,
//! bitrates and priorities from a fixed seed, placed from nothing, then a
//! sequence of random failures of one or three members (members return when
//! more than `--max-dead` are down), then a rebalance. Per failure: the
//! decision time and the moves against the cameras the failed members held;
//! after every decision an independent count of members over capacity and
//! of cameras left out. Prints a table and writes JSON.
//!
//! Must never judge its own results by timing in tests: the smoke test
//! checks the counts only.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tandem::failover::capacity::Priority;
use tandem::pool::{self, Assignment, Camera, Capacity, Member, Placement};

use super::bench_index::Ms;

#[derive(clap::Args)]
pub struct PlacementArgs {
    #[arg(long, default_value_t = 1000)]
    members: usize,
    #[arg(long, default_value_t = 50_000)]
    cameras: usize,
    /// Failures of one member.
    #[arg(long, default_value_t = 100)]
    single: usize,
    /// Failures of three members at once.
    #[arg(long, default_value_t = 20)]
    triple: usize,
    /// Members down at most; beyond, the longest down returns.
    #[arg(long, default_value_t = 10)]
    max_dead: usize,
    /// Moves the final rebalance may make.
    #[arg(long, default_value_t = 2000)]
    rebalance_moves: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "bench-placement.json")]
    json: PathBuf,
}

/// One kind of failure (members failing at once), over the run.
#[derive(serde::Serialize, Default)]
struct Failures {
    members_per_failure: usize,
    decision_ms: Ms,
    moves_total: usize,
    moves_max: usize,
    /// Cameras the failed members held, summed over the failures.
    failed_cameras_total: usize,
    failed_cameras_max: usize,
    /// Failures whose moves exceeded the cameras the failed members held
    /// (target 0).
    failures_with_more_moves_than_failed_cameras: usize,
    /// Moves of a camera that was not on a failed member.
    moves_of_other_cameras: usize,
}

#[derive(serde::Serialize)]
struct Results {
    benchmark: &'static str,
    members: usize,
    cameras: usize,
    seed: u64,
    capacity_channels_total: u64,
    capacity_mbps_total: f64,
    demand_mbps_total: f64,
    initial_placement_ms: f64,
    single: Failures,
    triple: Failures,
    /// Every failure decision, single and triple.
    failure_decision_ms: Ms,
    return_decision_ms: Ms,
    /// Cameras moved when a member returned (target 0: no move-back).
    moves_on_return: usize,
    /// Members over capacity (channels or kbit/s) plus cameras on members
    /// not alive, summed over every decision (target 0).
    over_capacity: usize,
    /// Cameras left out after a decision, the most seen.
    unassigned_max: usize,
    rebalance_ms: f64,
    rebalance_moves: usize,
    /// Highest − lowest load (fraction of capacity) of the alive members.
    load_spread_before_rebalance: f64,
    load_spread_after_rebalance: f64,
}

/// `members` NVRs and `cameras` cameras: 1–8 Mbit/s each; priority 10 %
/// high, 60 % medium, 25 % low, 5 % never; members with 1.1–1.5× the mean
/// cameras per member in channels and 1.4–2× their mean bitrate.
fn generate(members: usize, cameras: usize, seed: u64) -> (Vec<Member>, Vec<Camera>) {
    let mut r = StdRng::seed_from_u64(seed);
    let cams: Vec<Camera> = (0..cameras)
        .map(|i| {
            let p = r.gen_range(0..100);
            let priority = match p {
                0..10 => Priority::High,
                10..70 => Priority::Medium,
                70..95 => Priority::Low,
                _ => Priority::Never,
            };
            Camera {
                id: format!("cam-{i:06}"),
                kbps: r.gen_range(1000..=8000),
                priority,
            }
        })
        .collect();
    let per_member = cameras as f64 / members.max(1) as f64;
    let mean_kbps = cams.iter().map(|c| c.kbps).sum::<u64>() as f64 / cameras.max(1) as f64;
    let ms = (0..members)
        .map(|i| Member {
            name: format!("nvr-{i:04}"),
            capacity: Capacity {
                channels: (per_member * r.gen_range(1.1..1.5)).ceil() as u32,
                kbps: (per_member * mean_kbps * r.gen_range(1.4..2.0)) as u64,
            },
            alive: true,
        })
        .collect();
    (ms, cams)
}

/// Independent of the placement's own bookkeeping: members over capacity,
/// plus cameras assigned to members that are not alive or unknown.
fn over_capacity(members: &[Member], cameras: &[Camera], a: &Assignment) -> usize {
    let by_name: HashMap<&str, &Member> = members.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut used: HashMap<&str, (u32, u64)> = HashMap::new();
    let mut bad = 0;
    for c in cameras {
        if let Some(m) = a.get(&c.id) {
            match by_name.get(m.as_str()) {
                Some(mem) if mem.alive => {
                    let u = used.entry(mem.name.as_str()).or_default();
                    u.0 += 1;
                    u.1 += c.kbps;
                }
                _ => bad += 1,
            }
        }
    }
    bad + used
        .iter()
        .filter(|(m, u)| {
            let cap = by_name[*m].capacity;
            u.0 > cap.channels || u.1 > cap.kbps
        })
        .count()
}

fn spread(members: &[Member], cameras: &[Camera], a: &Assignment) -> f64 {
    let mut used: HashMap<&str, (u32, u64)> = HashMap::new();
    for c in cameras {
        if let Some(m) = a.get(&c.id) {
            let u = used.entry(m.as_str()).or_default();
            u.0 += 1;
            u.1 += c.kbps;
        }
    }
    let loads: Vec<u64> = members
        .iter()
        .filter(|m| m.alive && m.capacity.channels > 0)
        .map(|m| {
            let u = used.get(m.name.as_str()).copied().unwrap_or_default();
            pool::load(m.capacity, u.0, u.1)
        })
        .collect();
    let (hi, lo) = (loads.iter().max(), loads.iter().min());
    hi.zip(lo).map_or(0.0, |(h, l)| (h - l) as f64 / 1e6)
}

fn timed(f: impl FnOnce() -> Result<Placement, pool::PlacementError>) -> Result<(Placement, Duration)> {
    let t = Instant::now();
    let p = f()?;
    Ok((p, t.elapsed()))
}

pub fn run(a: PlacementArgs) -> Result<ExitCode> {
    let (mut members, cameras) = generate(a.members, a.cameras, a.seed);
    eprintln!("placing {} cameras on {} members from nothing…", a.cameras, a.members);
    let (p, initial) = timed(|| pool::place(&members, &cameras, &Assignment::new()))?;
    let mut over = over_capacity(&members, &cameras, &p.assignment);
    let mut unassigned_max = p.unassigned.len();
    let mut assignment = p.assignment;

    let mut rng = StdRng::seed_from_u64(a.seed ^ 0xfa11);
    let mut events: Vec<usize> = std::iter::repeat_n(1, a.single)
        .chain(std::iter::repeat_n(3, a.triple))
        .collect();
    events.shuffle(&mut rng);
    let mut single = Failures {
        members_per_failure: 1,
        ..Default::default()
    };
    let mut triple = Failures {
        members_per_failure: 3,
        ..Default::default()
    };
    let (mut single_ms, mut triple_ms, mut return_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut moves_on_return = 0;
    let mut dead: VecDeque<usize> = VecDeque::new();
    eprintln!("{} failures…", events.len());
    for k in events {
        let alive: Vec<usize> = (0..members.len()).filter(|&i| members[i].alive).collect();
        let failed: Vec<usize> = alive.choose_multiple(&mut rng, k).copied().collect();
        let names: HashSet<&str> = failed.iter().map(|&i| members[i].name.as_str()).collect();
        let held: HashSet<String> = assignment
            .iter()
            .filter(|(_, m)| names.contains(m.as_str()))
            .map(|(c, _)| c.clone())
            .collect();
        for &i in &failed {
            members[i].alive = false;
            dead.push_back(i);
        }
        let (p, took) = timed(|| pool::place(&members, &cameras, &assignment))?;
        over += over_capacity(&members, &cameras, &p.assignment);
        unassigned_max = unassigned_max.max(p.unassigned.len());
        let f = if k == 1 { &mut single } else { &mut triple };
        if k == 1 { &mut single_ms } else { &mut triple_ms }.push(took);
        f.moves_total += p.moves.len();
        f.moves_max = f.moves_max.max(p.moves.len());
        f.failed_cameras_total += held.len();
        f.failed_cameras_max = f.failed_cameras_max.max(held.len());
        f.failures_with_more_moves_than_failed_cameras += usize::from(p.moves.len() > held.len());
        f.moves_of_other_cameras += p.moves.iter().filter(|m| !held.contains(&m.camera)).count();
        assignment = p.assignment;
        while dead.len() > a.max_dead {
            let Some(i) = dead.pop_front() else { break };
            members[i].alive = true;
            let (p, took) = timed(|| pool::place(&members, &cameras, &assignment))?;
            over += over_capacity(&members, &cameras, &p.assignment);
            unassigned_max = unassigned_max.max(p.unassigned.len());
            return_ms.push(took);
            moves_on_return += p.moves.iter().filter(|m| m.from.is_some()).count();
            assignment = p.assignment;
        }
    }
    for i in dead.drain(..) {
        members[i].alive = true;
    }
    let p = pool::place(&members, &cameras, &assignment)?;
    over += over_capacity(&members, &cameras, &p.assignment);
    moves_on_return += p.moves.iter().filter(|m| m.from.is_some()).count();
    assignment = p.assignment;
    let spread_before = spread(&members, &cameras, &assignment);
    eprintln!("rebalancing (at most {} moves)…", a.rebalance_moves);
    let limits = pool::RebalanceLimits {
        max_moves: a.rebalance_moves,
        tolerance: 0.05,
    };
    let (p, rebalance) = timed(|| pool::rebalance(&members, &cameras, &assignment, limits))?;
    over += over_capacity(&members, &cameras, &p.assignment);

    let all: Vec<Duration> = single_ms.iter().chain(&triple_ms).copied().collect();
    single.decision_ms = Ms::of(single_ms);
    triple.decision_ms = Ms::of(triple_ms);
    let r = Results {
        benchmark: "placement",
        members: a.members,
        cameras: a.cameras,
        seed: a.seed,
        capacity_channels_total: members.iter().map(|m| u64::from(m.capacity.channels)).sum(),
        capacity_mbps_total: members.iter().map(|m| m.capacity.kbps as f64).sum::<f64>() / 1e3,
        demand_mbps_total: cameras.iter().map(|c| c.kbps as f64).sum::<f64>() / 1e3,
        initial_placement_ms: initial.as_secs_f64() * 1e3,
        single,
        triple,
        failure_decision_ms: Ms::of(all),
        return_decision_ms: Ms::of(return_ms),
        moves_on_return,
        over_capacity: over,
        unassigned_max,
        rebalance_ms: rebalance.as_secs_f64() * 1e3,
        rebalance_moves: p.moves.len(),
        load_spread_before_rebalance: spread_before,
        load_spread_after_rebalance: spread(&members, &cameras, &p.assignment),
    };
    report(&a, &r)?;
    Ok(ExitCode::SUCCESS)
}

fn report(a: &PlacementArgs, r: &Results) -> Result<()> {
    println!();
    println!(
        "placement benchmark: {} members, {} cameras (seed {}); capacity {} channels / {:.0} Mbit/s for {:.0} Mbit/s",
        r.members, r.cameras, r.seed, r.capacity_channels_total, r.capacity_mbps_total, r.demand_mbps_total
    );
    println!("{:<46} {:>22} {:>10}", "what", "measured", "target");
    let row = |w: &str, m: String, t: &str| println!("{w:<46} {m:>22} {t:>10}");
    let ms = |m: &Ms| format!("{:.2} / {:.2} / {:.2}", m.p50, m.p99, m.max);
    row("initial placement ms", format!("{:.1}", r.initial_placement_ms), "-");
    for f in [&r.single, &r.triple] {
        let n = f.decision_ms.n.max(1) as f64;
        let label = format!("{}-member failures", f.members_per_failure);
        row(&label, format!("{}", f.decision_ms.n), "-");
        row("  decision p50 / p99 / max ms", ms(&f.decision_ms), "≤ 50");
        row(
            "  moves per failure: mean / max",
            format!("{:.1} / {}", f.moves_total as f64 / n, f.moves_max),
            "-",
        );
        row(
            "  cameras on the failed: mean / max",
            format!("{:.1} / {}", f.failed_cameras_total as f64 / n, f.failed_cameras_max),
            "-",
        );
        row(
            "  failures with moves > those cameras",
            f.failures_with_more_moves_than_failed_cameras.to_string(),
            "0",
        );
        row("  moves of other cameras", f.moves_of_other_cameras.to_string(), "0");
    }
    row(
        "all failures: decision p50 / p99 / max ms",
        ms(&r.failure_decision_ms),
        "≤ 50",
    );
    row(
        &format!("returns ({}): decision p50 / p99 / max ms", r.return_decision_ms.n),
        ms(&r.return_decision_ms),
        "-",
    );
    row("moves on return (move-back)", r.moves_on_return.to_string(), "0");
    row("over capacity (all decisions)", r.over_capacity.to_string(), "0");
    row("unassigned (most after a decision)", r.unassigned_max.to_string(), "-");
    row(
        "rebalance: moves / ms",
        format!("{} / {:.1}", r.rebalance_moves, r.rebalance_ms),
        "-",
    );
    row(
        "  load spread before → after",
        format!(
            "{:.3} → {:.3}",
            r.load_spread_before_rebalance, r.load_spread_after_rebalance
        ),
        "-",
    );
    std::fs::write(&a.json, serde_json::to_string_pretty(r)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(())
}
