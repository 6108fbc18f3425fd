//! The working state of one placement decision (the method and its
//! invariants are in `placement.rs`): which member holds which camera, what
//! each member uses per priority, the members ordered by load, and the queue
//! of cameras still to place. Must never outlive the call it serves (it
//! borrows that call's inputs) nor make a choice that an id or a name does
//! not break when everything else is equal.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use super::placement::{
    load, Assignment, Camera, Capacity, Member, Move, Placement, PlacementError, Priority, Reason, Unassigned,
};

/// `Priority`'s levels, `Never` (0) to `High` (3).
const LEVELS: usize = 4;

fn level(p: Priority) -> usize {
    p as usize
}

/// Channels and kbit/s in use (or needed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Use {
    channels: u32,
    kbps: u64,
}

impl Use {
    fn of(c: &Camera) -> Use {
        Use {
            channels: 1,
            kbps: c.kbps,
        }
    }
    fn plus(self, o: Use) -> Use {
        Use {
            channels: self.channels.saturating_add(o.channels),
            kbps: self.kbps.saturating_add(o.kbps),
        }
    }
    fn minus(self, o: Use) -> Use {
        Use {
            channels: self.channels.saturating_sub(o.channels),
            kbps: self.kbps.saturating_sub(o.kbps),
        }
    }
    fn within(self, cap: Capacity) -> bool {
        self.channels <= cap.channels && self.kbps <= cap.kbps
    }
}

/// Queue order: priority, then bitrate (both highest first), then id.
type QueueKey<'a> = (Priority, u64, Reverse<&'a str>, usize);

pub(super) struct State<'a> {
    /// Sorted by name: a member's index is its rank, the last tie-break.
    members: Vec<&'a Member>,
    cameras: &'a [Camera],
    /// Per member, per priority level: what its cameras use.
    used: Vec<[Use; LEVELS]>,
    /// Per member: its cameras (indexes into `cameras`, in no order).
    on: Vec<Vec<usize>>,
    /// Per camera: its member now.
    at: Vec<Option<usize>>,
    /// Per camera: its member in the current assignment, by name, and as an
    /// index when that name is a member.
    was: Vec<Option<&'a str>>,
    was_at: Vec<Option<usize>>,
    /// Per camera: why it last left its place (or had none).
    reason: Vec<Reason>,
    /// Alive members with channels to give, as (load, index): least loaded
    /// first, ties by name.
    open: BTreeSet<(u64, usize)>,
    /// Per priority level p: (kbit/s free beside the cameras of level p and
    /// above, member) of the open members with a channel free beside them.
    /// Says in O(log members) whether any member could take a camera (at
    /// level 0) or make room for it by preemption, so that a camera that
    /// fits nowhere costs no scan of the members when capacity runs out.
    room: [BTreeSet<(u64, usize)>; LEVELS],
    queue: BinaryHeap<QueueKey<'a>>,
}

impl<'a> State<'a> {
    /// Checks the input, keeps every camera on its alive member, and queues
    /// the rest and what over-capacity members shed.
    pub(super) fn new(
        members: &'a [Member],
        cameras: &'a [Camera],
        current: &'a Assignment,
    ) -> Result<State<'a>, PlacementError> {
        let mut sorted: Vec<&Member> = members.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = sorted.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(PlacementError::DuplicateMember(w[0].name.clone()));
        }
        let mut seen = HashSet::with_capacity(cameras.len());
        // The smallest duplicate is named, whatever the order given.
        let dup = cameras
            .iter()
            .filter(|c| !seen.insert(c.id.as_str()))
            .map(|c| &c.id)
            .min();
        if let Some(d) = dup {
            return Err(PlacementError::DuplicateCamera(d.clone()));
        }
        let index: HashMap<&str, usize> = sorted.iter().enumerate().map(|(i, m)| (m.name.as_str(), i)).collect();
        let n = sorted.len();
        let mut s = State {
            members: sorted,
            cameras,
            used: vec![[Use::default(); LEVELS]; n],
            on: vec![Vec::new(); n],
            at: vec![None; cameras.len()],
            was: Vec::with_capacity(cameras.len()),
            was_at: Vec::with_capacity(cameras.len()),
            reason: vec![Reason::New; cameras.len()],
            open: BTreeSet::new(),
            room: Default::default(),
            queue: BinaryHeap::new(),
        };
        for (i, c) in cameras.iter().enumerate() {
            let was = current.get(&c.id).map(String::as_str);
            let m = was.and_then(|w| index.get(w).copied());
            s.was.push(was);
            s.was_at.push(m);
            match m {
                Some(m) if s.members[m].alive => s.add(i, m),
                _ => {
                    if was.is_some() {
                        s.reason[i] = Reason::Orphaned;
                    }
                    s.enqueue(i);
                }
            }
        }
        for m in 0..n {
            if s.members[m].alive {
                let all = s.on[m].clone();
                // Always Some: without any camera a member is within capacity.
                for i in s.room(m, Use::default(), all).unwrap_or_default() {
                    s.remove(i);
                    s.reason[i] = Reason::Shed;
                    s.enqueue(i);
                }
            }
        }
        s.open = (0..n)
            .filter(|&m| s.members[m].alive && s.members[m].capacity.channels > 0)
            .map(|m| (s.load(m), m))
            .collect();
        for m in s.open.iter().map(|&(_, m)| m) {
            for p in 0..LEVELS {
                if let Some(k) = s.room_key(m, p) {
                    s.room[p].insert(k);
                }
            }
        }
        Ok(s)
    }

    /// Places the queued cameras, highest priority first (module doc, steps
    /// 3 to 5); what fits nowhere stays unassigned.
    pub(super) fn settle(&mut self) {
        while let Some((_, _, _, c)) = self.queue.pop() {
            let need = Use::of(&self.cameras[c]);
            match self.least_loaded_with_room(need, 0) {
                Some(m) => self.add(c, m),
                None => self.preempt(c),
            }
        }
    }

    /// Moves cameras from the most to the least loaded member while their
    /// loads differ by more than `tolerance` (millionths), each camera at
    /// most once, at most `max_moves`. A least-loaded member that can take
    /// nothing from any more loaded one (its bitrate room is smaller than
    /// every camera that would help) is passed over for the rest of the call,
    /// so that it does not stop the balancing of the others; this bounds the
    /// work, and may leave a little balance undone.
    pub(super) fn balance(&mut self, max_moves: usize, tolerance: u64) {
        let mut moved = vec![false; self.cameras.len()];
        let mut stuck = vec![false; self.members.len()];
        let mut moves = 0;
        while moves < max_moves {
            let Some(&(lo_load, lo)) = self.open.iter().find(|&&(_, m)| !stuck[m]) else {
                break;
            };
            if self
                .open
                .last()
                .is_none_or(|&(hi_load, _)| hi_load <= lo_load.saturating_add(tolerance))
            {
                break;
            }
            let mut pick = None;
            for &(hi_load, hi) in self.open.iter().rev() {
                if hi == lo || hi_load <= lo_load.saturating_add(tolerance) {
                    break;
                }
                if let Some(c) = self.best_to_move(hi, hi_load, lo, &moved) {
                    pick = Some((c, hi));
                    break;
                }
            }
            let Some((c, hi)) = pick else {
                stuck[lo] = true;
                continue;
            };
            self.remove(c);
            self.add(c, lo);
            moved[c] = true;
            moves += 1;
            if self.was_at[c] == Some(hi) {
                self.reason[c] = Reason::Rebalance;
            }
        }
    }

    /// Places again the cameras still left out: moving cameras between
    /// members can open room that none had before, and no camera may stay
    /// unassigned while a member has room for it.
    pub(super) fn place_left_out(&mut self) {
        for i in 0..self.cameras.len() {
            if self.at[i].is_none() {
                self.enqueue(i);
            }
        }
        self.settle();
    }

    /// The decision as the caller sees it.
    pub(super) fn finish(self) -> Placement {
        let mut pairs = Vec::with_capacity(self.cameras.len());
        let (mut moves, mut unassigned) = (Vec::new(), Vec::new());
        for (i, c) in self.cameras.iter().enumerate() {
            let from = || self.was[i].map(str::to_owned);
            match self.at[i] {
                Some(m) => {
                    let to = &self.members[m].name;
                    pairs.push((c.id.clone(), to.clone()));
                    if self.was_at[i] != Some(m) {
                        moves.push(Move {
                            camera: c.id.clone(),
                            from: from(),
                            to: to.clone(),
                            reason: self.reason[i],
                        });
                    }
                }
                None => unassigned.push(Unassigned {
                    camera: c.id.clone(),
                    from: from(),
                    reason: self.reason[i],
                }),
            }
        }
        // Sorted, so that the map is built in one pass.
        pairs.sort_unstable();
        moves.sort_by(|a, b| a.camera.cmp(&b.camera));
        unassigned.sort_by(|a, b| a.camera.cmp(&b.camera));
        Placement {
            assignment: pairs.into_iter().collect(),
            moves,
            unassigned,
        }
    }

    fn total(&self, m: usize) -> Use {
        self.at_or_above(m, 0)
    }

    /// What member `m`'s cameras of priority level `lowest` and above use.
    fn at_or_above(&self, m: usize, lowest: usize) -> Use {
        self.used[m][lowest..].iter().fold(Use::default(), |a, &u| a.plus(u))
    }

    fn load(&self, m: usize) -> u64 {
        let t = self.total(m);
        load(self.members[m].capacity, t.channels, t.kbps)
    }

    fn cap(&self, m: usize) -> Capacity {
        self.members[m].capacity
    }

    fn enqueue(&mut self, i: usize) {
        let c = &self.cameras[i];
        self.queue.push((c.priority, c.kbps, Reverse(c.id.as_str()), i));
    }

    /// Shedding order: lowest priority, then largest bitrate, then id.
    fn shed_key(&self, i: usize) -> (Priority, Reverse<u64>, &'a str) {
        let c = &self.cameras[i];
        (c.priority, Reverse(c.kbps), c.id.as_str())
    }

    fn add(&mut self, i: usize, m: usize) {
        self.count(i, m, true);
        self.on[m].push(i);
        self.at[i] = Some(m);
    }

    fn remove(&mut self, i: usize) {
        let Some(m) = self.at[i].take() else {
            return;
        };
        if let Some(pos) = self.on[m].iter().position(|&x| x == i) {
            self.on[m].swap_remove(pos);
        }
        self.count(i, m, false);
    }

    /// Adds camera `i`'s use to member `m` (or takes it away), keeping the
    /// open member's entries in `open` and `room` up to date.
    fn count(&mut self, i: usize, m: usize, add: bool) {
        let c = &self.cameras[i];
        let q = level(c.priority);
        let open = self.open.remove(&(self.load(m), m));
        if open {
            for p in 0..=q {
                if let Some(k) = self.room_key(m, p) {
                    self.room[p].remove(&k);
                }
            }
        }
        let u = &mut self.used[m][q];
        *u = if add { u.plus(Use::of(c)) } else { u.minus(Use::of(c)) };
        if open {
            self.open.insert((self.load(m), m));
            for p in 0..=q {
                if let Some(k) = self.room_key(m, p) {
                    self.room[p].insert(k);
                }
            }
        }
    }

    /// Member `m`'s entry in `room[p]`, if it has a channel free beside its
    /// cameras of level p and above.
    fn room_key(&self, m: usize, p: usize) -> Option<(u64, usize)> {
        let (u, cap) = (self.at_or_above(m, p), self.cap(m));
        (u.channels < cap.channels).then(|| (cap.kbps.saturating_sub(u.kbps), m))
    }

    /// The least-loaded open member where `need` fits beside its cameras of
    /// priority level `lowest` and above (0: beside all of them).
    fn least_loaded_with_room(&self, need: Use, lowest: usize) -> Option<usize> {
        let most_free = self.room[lowest].last().map(|&(free, _)| free);
        if most_free.is_none_or(|free| free < need.kbps) {
            return None;
        }
        self.open
            .iter()
            .map(|&(_, m)| m)
            .find(|&m| self.at_or_above(m, lowest).plus(need).within(self.cap(m)))
    }

    /// Which of `candidates` (cameras on member `m`) to remove so that
    /// `need` fits: lowest priority first (`shed_key`), then, highest first,
    /// those put back that still leave room. `None` if removing them all is
    /// not enough.
    fn room(&self, m: usize, need: Use, mut candidates: Vec<usize>) -> Option<Vec<usize>> {
        let cap = self.cap(m);
        let mut u = self.total(m);
        if u.plus(need).within(cap) {
            return Some(Vec::new());
        }
        candidates.sort_by_key(|&i| self.shed_key(i));
        let mut off = Vec::new();
        for i in candidates {
            if u.plus(need).within(cap) {
                break;
            }
            u = u.minus(Use::of(&self.cameras[i]));
            off.push(i);
        }
        if !u.plus(need).within(cap) {
            return None;
        }
        let mut keep_off = Vec::new();
        for i in off.into_iter().rev() {
            let back = u.plus(Use::of(&self.cameras[i]));
            if back.plus(need).within(cap) {
                u = back;
            } else {
                keep_off.push(i);
            }
        }
        Some(keep_off)
    }

    /// Step 4: camera `c` fits nowhere; on the least-loaded member where its
    /// equals and betters leave room for it, it takes the place of cameras
    /// of lower priority, which are queued again. Else it stays unassigned.
    fn preempt(&mut self, c: usize) {
        let cam = &self.cameras[c];
        let need = Use::of(cam);
        let Some(m) = self.least_loaded_with_room(need, level(cam.priority)) else {
            return;
        };
        let lower: Vec<usize> = self.on[m]
            .iter()
            .copied()
            .filter(|&i| self.cameras[i].priority < cam.priority)
            .collect();
        let Some(off) = self.room(m, need, lower) else {
            return;
        };
        for i in off {
            self.remove(i);
            self.reason[i] = Reason::Preempted;
            self.enqueue(i);
        }
        self.add(c, m);
    }

    /// The camera of member `hi` to move to `lo`: one not moved yet, that
    /// fits there, leaves `lo` less loaded than `hi` was and `hi` no less
    /// loaded than `lo` was; of those, the
    /// one leaving the larger of the two loads smallest, then the lowest
    /// priority, then by id.
    fn best_to_move(&self, hi: usize, hi_load: u64, lo: usize, moved: &[bool]) -> Option<usize> {
        let (hi_use, lo_use) = (self.total(hi), self.total(lo));
        let (hi_cap, lo_cap) = (self.cap(hi), self.cap(lo));
        let lo_before = load(lo_cap, lo_use.channels, lo_use.kbps);
        self.on[hi]
            .iter()
            .copied()
            .filter(|&i| !moved[i])
            .filter_map(|i| {
                let u = Use::of(&self.cameras[i]);
                let lo_after = lo_use.plus(u);
                if !lo_after.within(lo_cap) {
                    return None;
                }
                let lo_load = load(lo_cap, lo_after.channels, lo_after.kbps);
                if lo_load >= hi_load {
                    return None;
                }
                let hi_after = hi_use.minus(u);
                let hi_after = load(hi_cap, hi_after.channels, hi_after.kbps);
                // Never below where `lo` was, the least loaded: the spread
                // between the extremes never grows.
                if hi_after < lo_before {
                    return None;
                }
                let worst = lo_load.max(hi_after);
                let c = &self.cameras[i];
                Some(((worst, c.priority, c.id.as_str()), i))
            })
            .min()
            .map(|(_, i)| i)
    }
}
