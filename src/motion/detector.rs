//! Motion detection on a decoded picture's luma plane.
//!
//! Pure: each call takes one picture's luma and its time and returns at most
//! one motion start or end. The picture is reduced to a grid of cell means
//! (averaging makes sensor noise vanish: a 20×20-pixel cell divides pixel
//! noise by 20), compared with a running background, and corrected for a
//! global brightness shift so that lights switching on or a cloud passing are
//! not motion. A cell counts as changed when it differs from the background
//! by more than a threshold set by the sensitivity; motion is present when the
//! changed cells inside the zones and outside the masks reach the minimum
//! area in two consecutive pictures, and ends `hold` after the last such
//! picture — also when no picture comes at all: the caller reports frames
//! that gave none (`no_picture`), so motion cannot outlive a stream that
//! stopped decoding. Must never allocate per picture after the first.

use crate::config::events::Polygon;
use crate::config::MotionConfig;
use crate::time::Time90k;

pub const GRID_W: usize = 32;
pub const GRID_H: usize = 18;
const CELLS: usize = GRID_W * GRID_H;

/// A picture's region that moved, as fractions of the picture.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MotionEvent {
    Start { time: Time90k, region: Region, area: f32 },
    End { time: Time90k, region: Region },
}

pub struct Detector {
    cfg: MotionConfig,
    /// Cells the detector watches (inside a zone, outside every mask).
    watched: [bool; CELLS],
    watched_count: usize,
    bg: Option<[f32; CELLS]>,
    cur: [f32; CELLS],
    /// The grid column of every sampled pixel column, for the picture width
    /// last seen (recomputed only when the width changes).
    col_cell: Vec<usize>,
    col_width: usize,
    threshold: f32,
    /// Consecutive pictures with motion (start needs two).
    streak: u32,
    first_motion: Option<Time90k>,
    active: bool,
    last_motion: Time90k,
    /// Bounding box (in cells) of everything that moved during the event.
    bbox: Option<(usize, usize, usize, usize)>,
    pub pictures: u64,
    pub lighting_changes: u64,
}

fn inside(poly: &Polygon, x: f32, y: f32) -> bool {
    // Even-odd rule.
    let mut c = false;
    let n = poly.len();
    for i in 0..n {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[(i + n - 1) % n];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
    }
    c
}

impl Detector {
    pub fn new(cfg: MotionConfig) -> Detector {
        let mut watched = [false; CELLS];
        for (i, w) in watched.iter_mut().enumerate() {
            let x = ((i % GRID_W) as f32 + 0.5) / GRID_W as f32;
            let y = ((i / GRID_W) as f32 + 0.5) / GRID_H as f32;
            let in_zone = cfg.zones.is_empty() || cfg.zones.iter().any(|z| inside(z, x, y));
            *w = in_zone && !cfg.masks.iter().any(|m| inside(m, x, y));
        }
        // Sensitivity 1 → 40 luma levels, 100 → 4.
        let threshold = 4.0 + (100.0 - f32::from(cfg.sensitivity)) * 36.0 / 99.0;
        Detector {
            watched_count: watched.iter().filter(|w| **w).count(),
            watched,
            bg: None,
            cur: [0.0; CELLS],
            col_cell: Vec::new(),
            col_width: 0,
            threshold,
            streak: 0,
            first_motion: None,
            active: false,
            last_motion: Time90k(0),
            bbox: None,
            pictures: 0,
            lighting_changes: 0,
            cfg,
        }
    }

    pub fn active(&self) -> bool {
        self.active
    }

    /// Reduces the luma plane to cell means, sampling every other pixel of
    /// every other row (enough for means; a quarter of the reads).
    fn cells(&mut self, luma: &[u8], width: usize, height: usize, stride: usize) {
        let mut sum = [0u32; CELLS];
        let mut count = [0u32; CELLS];
        if self.col_width != width {
            self.col_cell = (0..width).step_by(2).map(|x| x * GRID_W / width).collect();
            self.col_width = width;
        }
        for y in (0..height).step_by(2) {
            let row = &luma[y * stride..y * stride + width];
            let base = (y * GRID_H / height) * GRID_W;
            for (k, x) in (0..width).step_by(2).enumerate() {
                let c = base + self.col_cell[k];
                sum[c] += u32::from(row[x]);
                count[c] += 1;
            }
        }
        for i in 0..CELLS {
            self.cur[i] = if count[i] > 0 {
                sum[i] as f32 / count[i] as f32
            } else {
                0.0
            };
        }
    }

    /// Feeds one picture. `luma` is the Y plane with the given stride.
    pub fn picture(
        &mut self,
        time: Time90k,
        luma: &[u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Option<MotionEvent> {
        if width < GRID_W || height < GRID_H || luma.len() < stride * (height - 1) + width {
            return self.no_picture(time);
        }
        self.pictures += 1;
        self.cells(luma, width, height, stride);
        let Some(bg) = self.bg.as_mut() else {
            self.bg = Some(self.cur);
            return None;
        };
        // The global shift: the median difference over all cells. Lighting
        // moves every cell; an object moves a few.
        let mut diffs = [0f32; CELLS];
        for (i, d) in diffs.iter_mut().enumerate() {
            *d = self.cur[i] - bg[i];
        }
        let mut sorted = diffs;
        let shift = *sorted.select_nth_unstable_by(CELLS / 2, f32::total_cmp).1;
        let mut changed = 0usize;
        let mut bbox: Option<(usize, usize, usize, usize)> = None;
        for (i, d) in diffs.iter_mut().enumerate() {
            *d -= shift;
            if self.watched[i] && d.abs() > self.threshold {
                changed += 1;
                let (x, y) = (i % GRID_W, i / GRID_W);
                bbox = Some(match bbox {
                    None => (x, y, x, y),
                    Some((a, b, c, e)) => (a.min(x), b.min(y), c.max(x), e.max(y)),
                });
            }
        }
        let area = changed as f32 / self.watched_count.max(1) as f32;
        // More than half the picture changing after the shift correction is a
        // lighting change (an IR cut filter switching, a door opening the
        // light): take it into the background at once, never as motion.
        let lighting = area > 0.5;
        if lighting {
            self.lighting_changes += 1;
            *bg = self.cur;
        } else {
            // Slow background update, slower where something moves so that an
            // object that stays put fades into the background over ~10 s, not 1.
            for i in 0..CELLS {
                let moving = diffs[i].abs() > self.threshold;
                let a = if moving { 0.01 } else { 0.1 };
                bg[i] += a * (self.cur[i] - bg[i]);
            }
        }
        let motion = !lighting && changed > 0 && area >= self.cfg.min_area;
        if motion {
            self.streak += 1;
            self.first_motion.get_or_insert(time);
            self.last_motion = time;
            self.bbox = match (self.bbox, bbox) {
                (Some((a, b, c, e)), Some((x0, y0, x1, y1))) => Some((a.min(x0), b.min(y0), c.max(x1), e.max(y1))),
                (None, b) | (b, None) => b,
            };
        } else {
            self.streak = 0;
            if !self.active {
                self.first_motion = None;
                self.bbox = None;
            }
        }
        let hold = crate::time::ticks_of(self.cfg.hold);
        if !self.active && self.streak >= 2 {
            self.active = true;
            return Some(MotionEvent::Start {
                time: self.first_motion.unwrap_or(time),
                region: self.region(),
                area,
            });
        }
        if !motion && time - self.last_motion >= hold {
            return self.end_motion();
        }
        None
    }

    /// Time `time` passed without a usable picture (a frame that did not
    /// decode, or was skipped waiting for a key frame). Motion cannot be seen,
    /// so it ends `hold` after it was last seen, dated then, as with pictures
    /// that show none; two pictures with motion must again be consecutive.
    pub fn no_picture(&mut self, time: Time90k) -> Option<MotionEvent> {
        self.streak = 0;
        let hold = crate::time::ticks_of(self.cfg.hold);
        if time - self.last_motion < hold {
            return None;
        }
        self.end_motion()
    }

    /// The stream stopped: ends motion in progress where it was last seen,
    /// and forgets the background (the picture may differ when it returns).
    pub fn stop(&mut self) -> Option<MotionEvent> {
        self.bg = None;
        self.streak = 0;
        self.end_motion()
    }

    /// Ends motion in progress (if any) where it was last seen.
    fn end_motion(&mut self) -> Option<MotionEvent> {
        if !self.active {
            return None;
        }
        self.active = false;
        let region = self.region();
        self.bbox = None;
        self.first_motion = None;
        Some(MotionEvent::End {
            time: self.last_motion,
            region,
        })
    }

    fn region(&self) -> Region {
        let (x0, y0, x1, y1) = self.bbox.unwrap_or((0, 0, GRID_W - 1, GRID_H - 1));
        Region {
            x: x0 as f32 / GRID_W as f32,
            y: y0 as f32 / GRID_H as f32,
            w: (x1 + 1 - x0) as f32 / GRID_W as f32,
            h: (y1 + 1 - y0) as f32 / GRID_H as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 320;
    const H: usize = 180;
    const FPS: i64 = 10;

    /// A textured background with per-pixel noise, an optional bright square
    /// at `obj` (top-left pixel), and a global brightness offset.
    fn picture(n: u64, obj: Option<(usize, usize)>, offset: i32) -> Vec<u8> {
        let mut rng = 0x1234_5678u32 ^ (n as u32).wrapping_mul(0x9E37_79B9);
        let mut p = vec![0u8; W * H];
        for y in 0..H {
            for x in 0..W {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                let base = 60 + ((x * 7 + y * 3) % 90) as i32;
                let noise = (rng % 17) as i32 - 8;
                p[y * W + x] = (base + noise + offset).clamp(0, 255) as u8;
            }
        }
        if let Some((ox, oy)) = obj {
            for y in oy..(oy + 36).min(H) {
                for x in ox..(ox + 36).min(W) {
                    p[y * W + x] = 240;
                }
            }
        }
        p
    }

    fn t(n: i64) -> Time90k {
        Time90k(n * 90_000 / FPS)
    }

    fn run(cfg: MotionConfig, frames: i64, scene: impl Fn(i64) -> (Option<(usize, usize)>, i32)) -> Vec<MotionEvent> {
        let mut d = Detector::new(cfg);
        (0..frames)
            .filter_map(|n| {
                let (obj, off) = scene(n);
                d.picture(t(n), &picture(n as u64, obj, off), W, H, W)
            })
            .collect()
    }

    /// An object crossing left to right between frames 50 and 100.
    fn crossing(n: i64) -> Option<(usize, usize)> {
        (50..100).contains(&n).then(|| (((n - 50) * 5) as usize, 70))
    }

    #[test]
    fn an_object_crossing_starts_and_ends_motion_on_time() {
        let ev = run(MotionConfig::default(), 200, |n| (crossing(n), 0));
        assert_eq!(ev.len(), 2, "{ev:?}");
        let MotionEvent::Start { time, region, .. } = &ev[0] else {
            panic!()
        };
        assert_eq!(*time, t(50));
        assert!(region.y > 0.3 && region.y < 0.5, "{region:?}");
        let MotionEvent::End { time, region } = &ev[1] else {
            panic!()
        };
        // The last picture with the object, or the one after (it leaves a
        // ghost in the background for a moment).
        assert!(*time >= t(99) && *time <= t(101), "{time:?}");
        assert!(region.w > 0.6, "the region spans the crossing: {region:?}");
    }

    #[test]
    fn noise_alone_is_never_motion() {
        assert!(run(MotionConfig::default(), 1500, |_| (None, 0)).is_empty());
        let sensitive = MotionConfig {
            sensitivity: 100,
            ..Default::default()
        };
        assert!(run(sensitive, 1000, |_| (None, 0)).is_empty());
    }

    #[test]
    fn lights_switching_on_is_not_motion() {
        // +50 luma at frame 100, back at 200, and a slow dusk ramp.
        let ev = run(MotionConfig::default(), 300, |n| {
            (None, if (100..200).contains(&n) { 50 } else { -(n as i32) / 10 })
        });
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn masks_hide_and_zones_limit() {
        // The object crosses at y ≈ 0.39–0.59.
        let masked = MotionConfig {
            masks: vec![vec![(0.0, 0.3), (1.0, 0.3), (1.0, 0.7), (0.0, 0.7)]],
            ..Default::default()
        };
        assert!(run(masked, 200, |n| (crossing(n), 0)).is_empty());
        let zone_elsewhere = MotionConfig {
            zones: vec![vec![(0.0, 0.0), (1.0, 0.0), (1.0, 0.2), (0.0, 0.2)]],
            ..Default::default()
        };
        assert!(run(zone_elsewhere, 200, |n| (crossing(n), 0)).is_empty());
        // A zone on the right half sees the object only there.
        let right = MotionConfig {
            zones: vec![vec![(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]],
            ..Default::default()
        };
        let ev = run(right, 200, |n| (crossing(n), 0));
        let MotionEvent::Start { time, .. } = &ev[0] else {
            panic!()
        };
        assert!(*time >= t(74) && *time < t(85), "{time:?}");
    }

    #[test]
    fn min_area_filters_small_things() {
        let big_only = MotionConfig {
            min_area: 0.2,
            ..Default::default()
        };
        assert!(run(big_only, 200, |n| (crossing(n), 0)).is_empty());
    }

    #[test]
    fn pictures_stopping_mid_motion_end_it_after_hold() {
        // Motion from frame 50; from frame 60 no frame decodes, though frames
        // keep arriving. The event ends `hold` (2 s = 20 frames) after the last
        // picture with motion, dated at that picture — not when pictures return.
        let mut d = Detector::new(MotionConfig::default());
        let mut events = Vec::new();
        for n in 0..300 {
            let ev = if (60..250).contains(&n) {
                d.no_picture(t(n))
            } else {
                d.picture(t(n), &picture(n as u64, crossing(n), 0), W, H, W)
            };
            events.extend(ev.map(|e| (n, e)));
        }
        assert!(matches!(events[0], (51, MotionEvent::Start { .. })), "{events:?}");
        let (at, MotionEvent::End { time, .. }) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(*time, t(59), "dated at the last picture with motion");
        assert_eq!(*at, 79, "ended once `hold` passed without pictures");
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(!d.active());
    }

    #[test]
    fn no_picture_before_hold_or_without_motion_changes_nothing() {
        let mut d = Detector::new(MotionConfig::default());
        assert_eq!(d.no_picture(t(0)), None);
        for n in 0..60 {
            d.picture(t(n), &picture(n as u64, crossing(n), 0), W, H, W);
        }
        assert!(d.active());
        // 1.9 s without pictures: still within `hold`.
        assert_eq!(d.no_picture(t(59 + 19)), None);
        assert!(d.active());
        // Pictures with motion return: the event goes on.
        assert_eq!(d.picture(t(79), &picture(79, crossing(79), 0), W, H, W), None);
        assert!(d.active());
        // A picture too small to use counts as no picture.
        assert!(matches!(
            d.picture(t(200), &[0u8; 16], 4, 4, 4),
            Some(MotionEvent::End { .. })
        ));
    }

    #[test]
    fn polygon_test() {
        let tri = vec![(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)];
        assert!(inside(&tri, 0.2, 0.2));
        assert!(!inside(&tri, 0.8, 0.8));
    }
}
