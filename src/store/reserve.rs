//! Disk space reserved ahead of a segment being written: `fallocate` with
//! `FALLOC_FL_KEEP_SIZE` in steps of `STEP` ahead of the bytes written, and
//! given back (`ftruncate` to the length) when the segment is sealed.
//!
//! Why: with ext4's delayed allocation every `writev` into a growing file
//! does per-block reservation and extent bookkeeping, and many channels
//! growing side by side interleave their blocks on disk. Writing into blocks
//! already allocated (as unwritten extents) skips both: a model of the writer
//! (64 files, 100-KB writes, an fdatasync every five) cost 0.38 ms of CPU
//! per MB with 4-MiB steps instead of 0.47–0.52, and the whole machine,
//! kernel threads included, 1,050–1,130 ms instead of 1,240–1,470 per
//! 2.1 GB (`docs/performance.md`, *Space reserved ahead*).
//!
//! Never part of correctness: a filesystem that cannot reserve (tmpfs,
//! FUSE, a full disk) answers with an error, and the segment is then simply
//! written as before. The reservation lies past the file's size, so no
//! reader, repair or power cut ever sees it as data; what a crash leaves
//! reserved is given back when repair finishes the segment, or freed with
//! the file. Must never change a file's size or bytes.

use std::fs::File;
use std::os::fd::AsRawFd;

/// How far ahead space is reserved: about 8 s of a 4-Mbit/s camera. At
/// most this much per segment being written is held beyond its data, and
/// a channel whose disk another process fills goes on recording into it
/// for that long before it pauses. In the model, 2-MiB steps saved 17 %,
/// 4-MiB 23 %, 8-MiB 20 %, a whole segment's at once 24 %.
pub const STEP: u64 = 4 << 20;

/// What is reserved for one segment file.
#[derive(Debug, Default)]
pub struct Reserve {
    /// Bytes from the start of the file that are allocated.
    to: u64,
    /// The filesystem refused once: stop asking for this file.
    refused: bool,
}

impl Reserve {
    /// The end of the next reservation, if one is due before writing up to
    /// `end`: whole steps past `end`. Pure, for the tests.
    pub fn due(&self, end: u64) -> Option<u64> {
        (!self.refused && end > self.to).then(|| (end / STEP + 1) * STEP)
    }

    /// Reserves ahead of a write that will end at `end`, if due.
    pub fn before_write(&mut self, file: &File, end: u64) {
        let Some(to) = self.due(end) else { return };
        let from = self.to;
        // SAFETY: a valid descriptor; fallocate reads no memory of ours.
        let r = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                from as libc::off_t,
                (to - from) as libc::off_t,
            )
        };
        if r == 0 {
            self.to = to;
        } else {
            self.refused = true;
        }
    }

    /// Gives back what lies past `len` (the file's size): truncating a
    /// file to its own size frees the blocks reserved beyond it.
    pub fn release(&mut self, file: &File, len: u64) {
        if self.to > len {
            let _ = self.cut(file, len);
        }
    }

    /// Cuts the file to `len` (its owner undoing a failed write or fsync),
    /// which also frees what was reserved beyond it.
    pub fn cut(&mut self, file: &File, len: u64) -> std::io::Result<()> {
        self.to = self.to.min(len);
        file.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn reservations_come_in_whole_steps_past_the_end() {
        let r = Reserve::default();
        assert_eq!(r.due(1), Some(STEP));
        assert_eq!(
            r.due(STEP),
            Some(2 * STEP),
            "a write ending on a step reserves the next"
        );
        let r = Reserve {
            to: STEP,
            refused: false,
        };
        assert_eq!(r.due(STEP - 1), None);
        assert_eq!(r.due(STEP), None);
        assert_eq!(r.due(STEP + 1), Some(2 * STEP));
        assert_eq!(
            r.due(5 * STEP + 7),
            Some(6 * STEP),
            "a large write reserves past itself at once"
        );
        let r = Reserve { to: 0, refused: true };
        assert_eq!(r.due(1), None, "never asks again once refused");
    }

    #[test]
    fn space_is_reserved_ahead_and_given_back_without_changing_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut f = File::create(&path).unwrap();
        let mut r = Reserve::default();
        r.before_write(&f, 100_000);
        f.write_all(&vec![7u8; 100_000]).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 100_000, "the size is the data's");
        if r.refused {
            eprintln!("this filesystem does not reserve (fallocate refused): only the size is checked");
            return;
        }
        assert!(
            m.blocks() * 512 >= STEP,
            "a step is allocated: {} bytes",
            m.blocks() * 512
        );
        r.release(&f, 100_000);
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 100_000);
        assert!(m.blocks() * 512 < STEP / 2, "given back: {} bytes", m.blocks() * 512);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            vec![7u8; 100_000],
            "the bytes are untouched"
        );
    }
}
