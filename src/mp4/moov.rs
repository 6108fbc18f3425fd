//! The parts of an `ftyp` + `moov` header that every file Tandem builds
//! shares: the movie and track headers and the media boxes around a sample
//! table. The clip builder fills the sample table with its frames; the live
//! stream's init segment leaves it empty and adds `mvex`, so its frames come
//! in fragments.
//!
//! Pure: bytes in, bytes out. Must never know where the samples come from.

use super::{write_box, write_full_box};

/// Every duration and time in Tandem's files is in 90 kHz units, as stored.
pub const TIMESCALE: u32 = 90_000;

/// The one video track's header values.
pub struct TrackHeader {
    pub width: u32,
    pub height: u32,
    /// Presentation duration (after the edit list), 0 when unknown (live).
    pub duration: u64,
    /// Duration of the media in the sample table, 0 for a fragmented file.
    pub media_duration: u64,
    /// An edit list entry: (presentation duration, media time it starts at).
    pub edit: Option<(u64, u64)>,
    /// The frames come in `moof` fragments (`mvex` present).
    pub fragmented: bool,
}

/// `ftyp` with `major` as major brand and `compatible` as the rest.
pub fn write_ftyp(out: &mut Vec<u8>, major: &[u8; 4], compatible: &[&[u8; 4]]) {
    write_box(out, b"ftyp", |o| {
        o.extend_from_slice(major);
        o.extend_from_slice(&0x200u32.to_be_bytes());
        for b in compatible {
            o.extend_from_slice(*b);
        }
    });
}

/// `moov` with one video track; `stbl` writes the sample table's boxes.
pub fn write_moov(out: &mut Vec<u8>, h: &TrackHeader, stbl: impl FnOnce(&mut Vec<u8>)) {
    write_box(out, b"moov", |o| {
        write_full_box(o, b"mvhd", 1, 0, |o| {
            o.extend_from_slice(&[0; 16]); // creation, modification times
            o.extend_from_slice(&TIMESCALE.to_be_bytes());
            o.extend_from_slice(&h.duration.to_be_bytes());
            o.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
            o.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            unity_matrix(o);
            o.extend_from_slice(&[0; 24]);
            o.extend_from_slice(&2u32.to_be_bytes()); // next track id
        });
        write_box(o, b"trak", |o| {
            write_full_box(o, b"tkhd", 1, 3, |o| {
                o.extend_from_slice(&[0; 16]);
                o.extend_from_slice(&1u32.to_be_bytes()); // track id
                o.extend_from_slice(&[0; 4]);
                o.extend_from_slice(&h.duration.to_be_bytes());
                o.extend_from_slice(&[0; 8]);
                o.extend_from_slice(&[0; 4]); // layer, alternate group
                o.extend_from_slice(&[0; 4]); // volume, reserved
                unity_matrix(o);
                o.extend_from_slice(&(h.width << 16).to_be_bytes());
                o.extend_from_slice(&(h.height << 16).to_be_bytes());
            });
            if let Some((duration, media_time)) = h.edit {
                write_box(o, b"edts", |o| {
                    write_full_box(o, b"elst", 1, 0, |o| {
                        o.extend_from_slice(&1u32.to_be_bytes());
                        o.extend_from_slice(&duration.to_be_bytes());
                        o.extend_from_slice(&media_time.to_be_bytes());
                        o.extend_from_slice(&0x0001_0000u32.to_be_bytes());
                    });
                });
            }
            write_box(o, b"mdia", |o| {
                write_full_box(o, b"mdhd", 1, 0, |o| {
                    o.extend_from_slice(&[0; 16]);
                    o.extend_from_slice(&TIMESCALE.to_be_bytes());
                    o.extend_from_slice(&h.media_duration.to_be_bytes());
                    o.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
                    o.extend_from_slice(&[0; 2]);
                });
                write_full_box(o, b"hdlr", 0, 0, |o| {
                    o.extend_from_slice(&[0; 4]);
                    o.extend_from_slice(b"vide");
                    o.extend_from_slice(&[0; 12]);
                    o.extend_from_slice(b"Tandem video\0");
                });
                write_box(o, b"minf", |o| {
                    write_full_box(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                    write_box(o, b"dinf", |o| {
                        write_full_box(o, b"dref", 0, 0, |o| {
                            o.extend_from_slice(&1u32.to_be_bytes());
                            write_full_box(o, b"url ", 0, 1, |_| {});
                        });
                    });
                    write_box(o, b"stbl", stbl);
                });
            });
        });
        if h.fragmented {
            write_box(o, b"mvex", |o| {
                write_full_box(o, b"trex", 0, 0, |o| {
                    o.extend_from_slice(&1u32.to_be_bytes()); // track id
                    o.extend_from_slice(&1u32.to_be_bytes()); // sample description index
                    o.extend_from_slice(&[0; 12]); // default duration, size, flags
                });
            });
        }
    });
}

/// `stsd` holding the given sample entry boxes, as stored.
pub fn write_stsd<'a>(o: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = &'a [u8]>) {
    write_full_box(o, b"stsd", 0, 0, |o| {
        o.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for e in entries {
            o.extend_from_slice(e);
        }
    });
}

fn unity_matrix(o: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        o.extend_from_slice(&v.to_be_bytes());
    }
}
