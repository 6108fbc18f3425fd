//! The simulated camera's picture: a synthetic scene encoded once with openh264
//! into a loop of access units that the server replays forever.
//!
//! Owns scene generation and encoding. Must never run per client or per frame
//! sent: encoding happens once at start-up so that one process can serve many
//! cameras at low CPU.

use anyhow::{bail, Context, Result};
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode};
use openh264::formats::YUVBuffer;
use openh264::OpenH264API;

#[derive(Clone, Debug, PartialEq)]
pub struct VideoSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames per GOP; every GOP starts with an IDR.
    pub gop: u32,
    pub bitrate_kbps: u32,
}

impl VideoSpec {
    pub fn validate(&self) -> Result<()> {
        if self.width < 16 || self.height < 16 || self.width % 2 != 0 || self.height % 2 != 0 {
            bail!(
                "--width and --height must be even and at least 16 (got {}x{})",
                self.width,
                self.height
            );
        }
        if self.width > 4096 || self.height > 2304 {
            bail!("--width/--height above 4096x2304 are not supported by the encoder");
        }
        if !(1..=120).contains(&self.fps) {
            bail!("--fps must be between 1 and 120 (got {})", self.fps);
        }
        if self.gop == 0 || self.gop > 600 {
            bail!("--gop must be between 1 and 600 frames (got {})", self.gop);
        }
        if self.bitrate_kbps < 10 {
            bail!("--bitrate-kbps must be at least 10 (got {})", self.bitrate_kbps);
        }
        Ok(())
    }
}

/// One encoded access unit: its NAL units without start codes.
#[derive(Debug)]
pub struct EncodedFrame {
    pub nals: Vec<Vec<u8>>,
    pub key: bool,
}

impl EncodedFrame {
    /// RTP payloads of this frame with `sei` (a frame stamp) inserted after
    /// any SPS/PPS and before the first slice.
    pub fn payloads_with_sei(&self, sei: &[u8]) -> Vec<Vec<u8>> {
        let split = self.nals.iter().position(|n| matches!(n[0] & 0x1f, 1 | 5)).unwrap_or(0);
        let mut nals: Vec<&[u8]> = self.nals[..split].iter().map(|v| v.as_slice()).collect();
        nals.push(sei);
        nals.extend(self.nals[split..].iter().map(|v| v.as_slice()));
        let mut payloads = Vec::new();
        super::rtsp::packetize_h264(&nals, &mut payloads);
        payloads
    }
}

#[derive(Debug)]
pub struct EncodedLoop {
    pub spec: VideoSpec,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub frames: Vec<EncodedFrame>,
    /// Scripted scenes: `frames[..still]` is a still scene (static background,
    /// sensor noise) looped between crossings, `frames[still..]` an object
    /// crossing it. `None`: the whole loop is the moving scene.
    pub still: Option<usize>,
}

impl EncodedLoop {
    /// `profile-level-id` for the SDP: the three bytes after the SPS header.
    pub fn profile_level_id(&self) -> String {
        self.sps
            .get(1..4)
            .map(|b| format!("{:02X}{:02X}{:02X}", b[0], b[1], b[2]))
            .unwrap_or_default()
    }

    pub fn mean_bitrate_kbps(&self) -> f64 {
        let bytes: usize = self
            .frames
            .iter()
            .flat_map(|f| f.nals.iter())
            .map(|n| n.len() + 4)
            .sum();
        bytes as f64 * 8.0 / 1000.0 / (self.frames.len() as f64 / self.spec.fps as f64)
    }
}

/// Draws frame `n` of the scene into a planar 4:2:0 buffer: a slowly scrolling
/// textured background, a bright square crossing it, and fresh fine-grained
/// noise so that P frames cost bits as they would from a real sensor.
/// Where the bright square is: following the loop (the moving scene), at a
/// given left edge, or absent.
#[derive(Clone, Copy)]
enum Object {
    Looping,
    At(usize),
    None,
}

fn draw(spec: &VideoSpec, n: u32, texture: &[u8], buf: &mut [u8], object: Object) {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let (y_plane, uv) = buf.split_at_mut(w * h);
    // Only the moving scene scrolls; scripted scenes hold still between crossings.
    let shift = if matches!(object, Object::Looping) {
        (n as usize * 2) % w
    } else {
        0
    };
    let mut rng = 0x9E37_79B9u32 ^ n.wrapping_mul(0x85EB_CA6B);
    for y in 0..h {
        let row = &texture[(y % 256) * 512..(y % 256) * 512 + 512];
        for x in 0..w {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let noise = (rng & 7) as u8;
            y_plane[y * w + x] = row[(x + shift) % 512].wrapping_add(noise);
        }
    }
    // A square that crosses the frame once per loop, or where the script puts it.
    let side = object_side(spec);
    let loop_len = (spec.gop * 2).max(2) as usize;
    let x0 = match object {
        Object::Looping => Some((n as usize % loop_len) * (w.saturating_sub(side)) / loop_len),
        Object::At(x) => Some(x.min(w - side)),
        Object::None => None,
    };
    let y0 = h / 2 - side / 2;
    if let Some(x0) = x0 {
        for y in y0..y0 + side {
            for x in x0..x0 + side {
                y_plane[y * w + x] = 235;
            }
        }
    }
    let (u_plane, v_plane) = uv.split_at_mut(w * h / 4);
    for (i, (u, v)) in u_plane.iter_mut().zip(v_plane.iter_mut()).enumerate() {
        let x = i % (w / 2);
        *u = 96 + ((x + shift / 2) % 64) as u8;
        *v = 160 - ((i / (w / 2)) % 64) as u8;
    }
}

fn object_side(spec: &VideoSpec) -> usize {
    (spec.height as usize / 5).max(8)
}

/// Encodes the moving scene loop. Takes a few hundred milliseconds at 1080p.
pub fn encode_loop(spec: &VideoSpec) -> Result<EncodedLoop> {
    let loop_len = (spec.gop * 2).max(2);
    encode(spec, loop_len, None, |_| Object::Looping)
}

/// Encodes a scripted scene: `still` of still scene (looped between
/// crossings; fresh sensor noise in every frame of it), then an object
/// entering at the left edge and leaving at the right over `crossing`. Both
/// are rounded up to whole GOPs and encoded in one pass, so they share SPS and
/// PPS and the server can switch between them at any GOP start.
pub fn encode_scripted(
    spec: &VideoSpec,
    still: std::time::Duration,
    crossing: std::time::Duration,
) -> Result<EncodedLoop> {
    spec.validate()?;
    let still_frames = (still.as_secs_f64() * f64::from(spec.fps)).ceil().max(1.0) as u32;
    let still = still_frames.div_ceil(spec.gop) * spec.gop;
    let frames = (crossing.as_secs_f64() * f64::from(spec.fps)).ceil().max(1.0) as u32;
    let crossing_len = frames.div_ceil(spec.gop) * spec.gop;
    let travel = (spec.width as usize).saturating_sub(object_side(spec));
    encode(spec, still + crossing_len, Some(still as usize), |n| {
        if n < still {
            Object::None
        } else {
            let k = (n - still) as usize;
            Object::At(k * travel / (crossing_len as usize - 1).max(1))
        }
    })
}

fn encode(
    spec: &VideoSpec,
    loop_len: u32,
    still: Option<usize>,
    object: impl Fn(u32) -> Object,
) -> Result<EncodedLoop> {
    spec.validate()?;
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(spec.bitrate_kbps * 1000))
        .max_frame_rate(FrameRate::from_hz(spec.fps as f32))
        .rate_control_mode(RateControlMode::Bitrate)
        .skip_frames(false)
        // Key frames exactly where `--gop` puts them: openh264's scene change
        // detection otherwise adds IDRs the scrolling scene triggers (every
        // 17 frames at 320×240), and the loss a camera's GOP causes could not
        // be measured.
        .scene_change_detect(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(spec.gop));
    let mut encoder =
        Encoder::with_api_config(OpenH264API::from_source(), config).context("creating the H.264 encoder")?;
    let mut texture = vec![0u8; 256 * 512];
    let mut rng = 12345u32;
    for (i, t) in texture.iter_mut().enumerate() {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let grad = ((i % 512) / 4 + (i / 512) / 2) as u32;
        *t = (40 + (grad % 120) + ((rng >> 16) & 31)) as u8;
    }
    let (w, h) = (spec.width as usize, spec.height as usize);
    let mut raw = vec![0u8; w * h * 3 / 2];
    let mut sps = None;
    let mut pps = None;
    let mut frames = Vec::with_capacity(loop_len as usize);
    for n in 0..loop_len {
        draw(spec, n, &texture, &mut raw, object(n));
        let yuv = YUVBuffer::from_vec(raw.clone(), w, h);
        if n % spec.gop == 0 {
            encoder.force_intra_frame();
        }
        let bs = encoder.encode(&yuv).context("encoding a frame")?;
        let key = matches!(bs.frame_type(), FrameType::IDR);
        let annex_b = bs.to_vec();
        let mut nals = Vec::new();
        for nal in crate::nal::split_annex_b(&annex_b) {
            match nal[0] & 0x1f {
                7 => sps = Some(nal.to_vec()),
                8 => pps = Some(nal.to_vec()),
                _ => {}
            }
            nals.push(nal.to_vec());
        }
        if n % spec.gop == 0 && !key {
            bail!("encoder did not produce an IDR at GOP start (frame {n})");
        }
        frames.push(EncodedFrame { nals, key });
    }
    Ok(EncodedLoop {
        spec: spec.clone(),
        sps: sps.context("encoder produced no SPS")?,
        pps: pps.context("encoder produced no PPS")?,
        frames,
        still,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frames_are_exactly_the_gop_starts() {
        let spec = VideoSpec {
            width: 320,
            height: 240,
            fps: 25,
            gop: 10,
            bitrate_kbps: 300,
        };
        let l = encode_loop(&spec).unwrap();
        let keys: Vec<usize> = l
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.key)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(keys, vec![0, 10]);
    }
}
