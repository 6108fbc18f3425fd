//! ISO BMFF (.mp4): building clips from stored frames without re-encoding
//! (`clip`), fragmented MP4 for live view (`fmp4`), the header boxes both
//! share (`moov`), and reading the sample table of any .mp4 back (`reader`),
//! which `audit` uses on files from Tandem or from other recorders.

pub mod clip;
pub mod fmp4;
pub mod moov;
pub mod reader;

/// Appends a box: a zero 32-bit size, the type and the body, then writes the real size.
pub(crate) fn write_box(out: &mut Vec<u8>, fourcc: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(fourcc);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and flags after the type).
pub(crate) fn write_full_box(
    out: &mut Vec<u8>,
    fourcc: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, fourcc, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    })
}
