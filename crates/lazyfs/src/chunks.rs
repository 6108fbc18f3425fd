//! File data in fixed-size chunks shared by `Arc` (copy on write), and sets
//! of dirty byte ranges.
//!
//! Owns: reading, writing, resizing and range-copying chunked data while
//! keeping bytes past the size zero. Must never know about durability: the
//! model decides which ranges to copy where.

use std::sync::Arc;

/// Bytes per shared chunk of file data.
pub(crate) const CHUNK: usize = 64 * 1024;

/// File bytes in chunks; `None` is a chunk of zeros. Invariant: every byte at
/// or past `size` is zero, so growing a file reveals zeros.
#[derive(Clone, Debug, Default)]
pub(crate) struct Data {
    pub(crate) size: u64,
    pub(crate) chunks: Vec<Option<Arc<Vec<u8>>>>,
}

fn chunk_of(off: u64) -> (usize, usize) {
    ((off / CHUNK as u64) as usize, (off % CHUNK as u64) as usize)
}

impl Data {
    pub(crate) fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let end = self.size.min(off.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(off) as usize);
        let mut pos = off;
        while pos < end {
            let (i, at) = chunk_of(pos);
            let n = (CHUNK - at).min((end - pos) as usize);
            match self.chunks.get(i).and_then(|c| c.as_ref()) {
                Some(c) => out.extend_from_slice(&c[at..at + n]),
                None => out.resize(out.len() + n, 0),
            }
            pos += n as u64;
        }
        out
    }

    pub(crate) fn chunk_mut(&mut self, i: usize) -> &mut Vec<u8> {
        if self.chunks.len() <= i {
            self.chunks.resize(i + 1, None);
        }
        let slot = &mut self.chunks[i];
        Arc::make_mut(slot.get_or_insert_with(|| Arc::new(vec![0; CHUNK])))
    }

    /// Writes `data` at `off`, growing the file if it ends past `size`.
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        let mut pos = off;
        let mut rest = data;
        while !rest.is_empty() {
            let (i, at) = chunk_of(pos);
            let n = (CHUNK - at).min(rest.len());
            self.chunk_mut(i)[at..at + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        self.size = self.size.max(off + data.len() as u64);
    }

    /// Sets the size; bytes past a smaller size are zeroed (the invariant).
    pub(crate) fn set_size(&mut self, size: u64) {
        if size < self.size {
            let (i, at) = chunk_of(size);
            let keep = i + usize::from(at > 0);
            self.chunks.truncate(keep);
            if at > 0 {
                if let Some(Some(c)) = self.chunks.get(i) {
                    if c[at..].iter().any(|&b| b != 0) {
                        self.chunk_mut(i)[at..].fill(0);
                    }
                }
            }
        }
        self.size = size;
    }

    /// Whether chunk `i` is `other` itself (or both are zeros).
    fn shares(&self, i: usize, other: Option<&Arc<Vec<u8>>>) -> bool {
        match (self.chunks.get(i).and_then(|c| c.as_ref()), other) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Copies bytes `[start, end)` from `src` (not the size): whole chunks by
    /// sharing them, partial ones byte by byte.
    pub(crate) fn copy_from(&mut self, src: &Data, start: u64, end: u64) {
        let mut pos = start;
        while pos < end {
            let (i, at) = chunk_of(pos);
            let n = (CHUNK - at).min((end - pos) as usize);
            let from = src.chunks.get(i).cloned().flatten();
            if at == 0 && n == CHUNK {
                if self.chunks.len() <= i {
                    self.chunks.resize(i + 1, None);
                }
                self.chunks[i] = from;
            } else if !self.shares(i, from.as_ref()) {
                let dst = self.chunk_mut(i);
                match &from {
                    Some(c) => dst[at..at + n].copy_from_slice(&c[at..at + n]),
                    None => dst[at..at + n].fill(0),
                }
                // A file synced in unaligned pieces: once its durable chunk
                // holds the same bytes as the live one, share the live one
                // rather than keep two copies for good.
                if let (Some(c), Some(Some(d))) = (&from, self.chunks.get(i)) {
                    if c[..] == d[..] {
                        self.chunks[i] = Some(c.clone());
                    }
                }
            }
            pos += n as u64;
        }
    }
}

/// Byte ranges `[start, end)`, sorted, disjoint and not touching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ranges(pub(crate) Vec<(u64, u64)>);

impl Ranges {
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.0 {
            if b < s {
                out.push((a, b));
            } else if a > e {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.0 = out;
    }

    /// Drops everything at or past `size`.
    pub(crate) fn clip(&mut self, size: u64) {
        self.0.retain(|&(a, _)| a < size);
        if let Some(last) = self.0.last_mut() {
            last.1 = last.1.min(size);
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_cross_chunk_boundaries() {
        let mut d = Data::default();
        let data: Vec<u8> = (0..3 * CHUNK + 10).map(|i| (i % 251) as u8).collect();
        d.write(5, &data);
        assert_eq!(d.size, 5 + data.len() as u64);
        assert_eq!(d.read(0, 5), vec![0; 5]);
        assert_eq!(d.read(5, data.len()), data);
        assert_eq!(d.read(CHUNK as u64 - 3, 6), data[CHUNK - 8..CHUNK - 2]);
        assert!(d.read(d.size, 10).is_empty(), "nothing past the end");
    }

    #[test]
    fn shrinking_zeroes_the_tail_so_growing_reveals_zeros() {
        let mut d = Data::default();
        d.write(0, &vec![9; 2 * CHUNK]);
        d.set_size(CHUNK as u64 + 1);
        assert_eq!(d.chunks.len(), 2);
        d.set_size(2 * CHUNK as u64 + 5);
        let back = d.read(0, 3 * CHUNK);
        assert_eq!(back.len(), 2 * CHUNK + 5);
        assert!(back[..=CHUNK].iter().all(|&b| b == 9));
        assert!(back[CHUNK + 1..].iter().all(|&b| b == 0));
    }

    #[test]
    fn copy_from_shares_whole_chunks_and_copies_partial_ones() {
        let mut src = Data::default();
        src.write(0, &vec![1; 2 * CHUNK]);
        let mut dst = Data::default();
        dst.copy_from(&src, 10, 2 * CHUNK as u64);
        dst.size = 2 * CHUNK as u64;
        assert!(Arc::ptr_eq(
            src.chunks[1].as_ref().unwrap(),
            dst.chunks[1].as_ref().unwrap()
        ));
        assert!(!Arc::ptr_eq(
            src.chunks[0].as_ref().unwrap(),
            dst.chunks[0].as_ref().unwrap()
        ));
        let back = dst.read(0, 20);
        assert_eq!(&back[..10], &[0; 10]);
        assert_eq!(&back[10..], &[1; 10]);
        // Writing to the source afterwards does not change the copy.
        src.write(CHUNK as u64, b"x");
        assert_eq!(dst.read(CHUNK as u64, 1), [1]);
    }

    #[test]
    fn a_chunk_synced_in_pieces_ends_up_shared() {
        let mut live = Data::default();
        let mut durable = Data::default();
        let mut off = 0u64;
        for piece in [1000usize, 30_000, 40_000, 70_000] {
            live.write(off, &vec![3; piece]);
            durable.copy_from(&live, off, off + piece as u64);
            off += piece as u64;
        }
        durable.size = live.size;
        assert_eq!(durable.read(0, off as usize), live.read(0, off as usize));
        // The first chunk is complete in both: one copy, shared.
        assert!(Arc::ptr_eq(
            live.chunks[0].as_ref().unwrap(),
            durable.chunks[0].as_ref().unwrap()
        ));
    }
}
