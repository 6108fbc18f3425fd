//! NAL-unit plumbing shared by the simulated camera, the store and `audit`:
//! Annex B splitting, 4-byte length-prefixed iteration, emulation prevention,
//! and the frame stamp that the simulated camera puts in every frame.
//!
//! Must never allocate per NAL on the ingest path (iteration borrows), and never
//! panic on malformed input: every parser here returns `None`/skips instead.

/// Splits an Annex B byte stream (00 00 01 / 00 00 00 01 start codes) into NAL units.
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut e = if k + 1 < starts.len() {
            starts[k + 1] - 3
        } else {
            data.len()
        };
        // A 4-byte start code leaves its leading zero at the end of the previous unit.
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        if e > s {
            out.push(&data[s..e]);
        }
    }
    out
}

/// Iterates over the NAL units of a frame in 4-byte length-prefixed (MP4) form.
/// Stops at the first length that runs past the end.
pub fn iter_length_prefixed(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() - 4 < len {
            return None;
        }
        let nal = &rest[4..4 + len];
        rest = &rest[4 + len..];
        Some(nal)
    })
}

/// Inserts emulation-prevention bytes so the payload cannot contain a start code.
pub fn escape_rbsp(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Removes emulation-prevention bytes.
pub fn unescape_rbsp(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// Identifies Tandem's stamp among SEI user_data_unregistered messages.
pub const STAMP_UUID: [u8; 16] = *b"TandemFrameStamp";

/// What the simulated camera writes into every frame: who sent it, its place in
/// the camera's sequence, and when it was captured. `audit` counts loss from it.
///
/// `boot_id` is random per start of the camera's clock: sequence numbers
/// restart at 0 when a camera process restarts, and the boot id tells those
/// runs apart. Stamps written before it existed (36-byte payloads) still read,
/// with `boot_id` 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FrameStamp {
    pub camera_id: u32,
    pub seq: u64,
    pub capture_unix_micros: i64,
    pub boot_id: u64,
}

/// UUID, camera id, sequence number, capture time, boot id.
const STAMP_PAYLOAD_LEN: usize = 16 + 4 + 8 + 8 + 8;
/// The stamp before boot ids: UUID, camera id, sequence number, capture time.
const STAMP_PAYLOAD_LEN_V1: usize = 16 + 4 + 8 + 8;

impl FrameStamp {
    /// Encodes the stamp as a complete H.264 SEI NAL unit (header byte included).
    pub fn to_h264_sei(&self) -> Vec<u8> {
        let mut rbsp = Vec::with_capacity(2 + STAMP_PAYLOAD_LEN + 1);
        rbsp.push(5); // payloadType: user_data_unregistered
        rbsp.push(STAMP_PAYLOAD_LEN as u8);
        rbsp.extend_from_slice(&STAMP_UUID);
        rbsp.extend_from_slice(&self.camera_id.to_be_bytes());
        rbsp.extend_from_slice(&self.seq.to_be_bytes());
        rbsp.extend_from_slice(&self.capture_unix_micros.to_be_bytes());
        rbsp.extend_from_slice(&self.boot_id.to_be_bytes());
        rbsp.push(0x80); // rbsp_trailing_bits
        let mut nal = Vec::with_capacity(rbsp.len() + 8);
        nal.push(0x06); // nal_ref_idc 0, nal_unit_type 6 (SEI)
        escape_rbsp(&rbsp, &mut nal);
        nal
    }

    /// Finds a stamp in one NAL unit, if it is an H.264 SEI carrying one.
    pub fn from_h264_nal(nal: &[u8]) -> Option<FrameStamp> {
        if nal.is_empty() || nal[0] & 0x1f != 6 {
            return None;
        }
        let rbsp = unescape_rbsp(&nal[1..]);
        let mut p = &rbsp[..];
        // Walk the SEI messages; each is (type, size, payload) with 0xff-extended fields.
        while p.len() > 2 {
            let read_var = |p: &mut &[u8]| -> Option<usize> {
                let mut v = 0usize;
                loop {
                    let (&b, rest) = p.split_first()?;
                    *p = rest;
                    v += b as usize;
                    if b != 0xff {
                        return Some(v);
                    }
                }
            };
            let ty = read_var(&mut p)?;
            let size = read_var(&mut p)?;
            if p.len() < size {
                return None;
            }
            let (payload, rest) = p.split_at(size);
            if ty == 5 && (size == STAMP_PAYLOAD_LEN || size == STAMP_PAYLOAD_LEN_V1) && payload[..16] == STAMP_UUID {
                let camera_id = u32::from_be_bytes(payload[16..20].try_into().ok()?);
                let seq = u64::from_be_bytes(payload[20..28].try_into().ok()?);
                let capture_unix_micros = i64::from_be_bytes(payload[28..36].try_into().ok()?);
                let boot_id = match payload.get(36..44) {
                    Some(b) => u64::from_be_bytes(b.try_into().ok()?),
                    None => 0,
                };
                return Some(FrameStamp {
                    camera_id,
                    seq,
                    capture_unix_micros,
                    boot_id,
                });
            }
            p = rest;
        }
        None
    }

    /// Finds the stamp in a length-prefixed frame.
    pub fn from_frame(frame: &[u8]) -> Option<FrameStamp> {
        iter_length_prefixed(frame).find_map(FrameStamp::from_h264_nal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_escaping() {
        // Zeros in every field force emulation-prevention bytes.
        for s in [
            FrameStamp {
                camera_id: 0,
                seq: 0,
                capture_unix_micros: 0,
                boot_id: 0,
            },
            FrameStamp {
                camera_id: 1,
                seq: 0x0000_0300_0001_0000,
                capture_unix_micros: 3,
                boot_id: 0x0000_0001_0000_0300,
            },
            FrameStamp {
                camera_id: u32::MAX,
                seq: u64::MAX,
                capture_unix_micros: -1,
                boot_id: u64::MAX,
            },
        ] {
            let nal = s.to_h264_sei();
            assert!(!nal.windows(3).any(|w| w == [0, 0, 1] || w == [0, 0, 0]));
            assert_eq!(FrameStamp::from_h264_nal(&nal), Some(s));
            let mut frame = (nal.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&nal);
            assert_eq!(FrameStamp::from_frame(&frame), Some(s));
        }
    }

    #[test]
    fn stamps_without_a_boot_id_still_read() {
        // The 36-byte payload written before boot ids existed.
        let mut rbsp = vec![5, STAMP_PAYLOAD_LEN_V1 as u8];
        rbsp.extend_from_slice(&STAMP_UUID);
        rbsp.extend_from_slice(&7u32.to_be_bytes());
        rbsp.extend_from_slice(&42u64.to_be_bytes());
        rbsp.extend_from_slice(&1_000i64.to_be_bytes());
        rbsp.push(0x80);
        let mut nal = vec![0x06];
        escape_rbsp(&rbsp, &mut nal);
        assert_eq!(
            FrameStamp::from_h264_nal(&nal),
            Some(FrameStamp {
                camera_id: 7,
                seq: 42,
                capture_unix_micros: 1_000,
                boot_id: 0,
            })
        );
    }

    #[test]
    fn foreign_sei_and_garbage_are_ignored() {
        assert_eq!(FrameStamp::from_h264_nal(&[0x06, 5, 2, 1, 2, 0x80]), None);
        assert_eq!(FrameStamp::from_h264_nal(&[0x65, 1, 2, 3]), None);
        assert_eq!(FrameStamp::from_h264_nal(&[0x06, 0xff, 0xff]), None);
        assert_eq!(FrameStamp::from_frame(&[0, 0, 0, 99, 6]), None);
    }

    #[test]
    fn annex_b_split() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4];
        let nals = split_annex_b(&data);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]);
    }
}
