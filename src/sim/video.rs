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

#[derive(Debug)]
pub struct EncodedLoop {
    pub spec: VideoSpec,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub frames: Vec<EncodedFrame>,
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
fn draw(spec: &VideoSpec, n: u32, texture: &[u8], buf: &mut [u8]) {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let (y_plane, uv) = buf.split_at_mut(w * h);
    let shift = (n as usize * 2) % w;
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
    // A square that crosses the frame once per loop.
    let side = (h / 5).max(8);
    let loop_len = (spec.gop * 2).max(2) as usize;
    let x0 = (n as usize % loop_len) * (w.saturating_sub(side)) / loop_len;
    let y0 = h / 2 - side / 2;
    for y in y0..y0 + side {
        for x in x0..x0 + side {
            y_plane[y * w + x] = 235;
        }
    }
    let (u_plane, v_plane) = uv.split_at_mut(w * h / 4);
    for (i, (u, v)) in u_plane.iter_mut().zip(v_plane.iter_mut()).enumerate() {
        let x = i % (w / 2);
        *u = 96 + ((x + shift / 2) % 64) as u8;
        *v = 160 - ((i / (w / 2)) % 64) as u8;
    }
}

/// Encodes the scene loop. Takes a few hundred milliseconds at 1080p.
pub fn encode_loop(spec: &VideoSpec) -> Result<EncodedLoop> {
    spec.validate()?;
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(spec.bitrate_kbps * 1000))
        .max_frame_rate(FrameRate::from_hz(spec.fps as f32))
        .rate_control_mode(RateControlMode::Bitrate)
        .skip_frames(false)
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
    let loop_len = (spec.gop * 2).max(2);
    let mut raw = vec![0u8; w * h * 3 / 2];
    let mut sps = None;
    let mut pps = None;
    let mut frames = Vec::with_capacity(loop_len as usize);
    for n in 0..loop_len {
        draw(spec, n, &texture, &mut raw);
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
    })
}
