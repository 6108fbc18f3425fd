//! The day index: one small JSON object per channel and UTC day
//! (`prefix/nvr/ch<N>/YYYY-MM-DD/index.json`) listing the day's archived
//! segments with everything a clip needs — times, the sample entry, the
//! frame index — so the bucket alone is readable (`tandem archive`), with
//! ranged reads of just the frames wanted. The segment objects are the
//! segment files byte for byte (self-describing too: a lost index could be
//! rebuilt by scanning them, though no command does that yet).
//!
//! Pure merging and parsing here plus two small I/O helpers. Must never
//! list a segment whose object was not verified (the archiver writes the
//! index only after verification), and never drop an entry it was not told
//! to.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::ArchiveError;
use crate::store::db::{SampleEntryRow, SegmentRow};
use crate::time::Time90k;

pub const FORMAT: u32 = 1;

/// One archived segment as the day index lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub id: i64,
    /// The object's name beside the index (`<id>.seg`).
    pub object: String,
    pub start_90k: i64,
    pub end_90k: i64,
    pub frames: u32,
    pub bytes: u64,
    /// Hex SHA-256 of the object.
    pub sha256: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Base64 of the mp4 sample entry box.
    pub sample_entry: String,
    /// Base64 of the frame index (`store::index`'s varints).
    pub frame_index: String,
}

/// A channel's day of archived segments.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayIndex {
    pub format: u32,
    pub nvr: String,
    pub channel: u32,
    pub day: String,
    /// By segment id.
    pub segments: BTreeMap<i64, Entry>,
}

impl Entry {
    pub fn new(row: &SegmentRow, entry: &SampleEntryRow, sha256: &[u8; 32]) -> Entry {
        let b64 = base64::engine::general_purpose::STANDARD;
        Entry {
            id: row.id,
            object: format!("{:016}.seg", row.id),
            start_90k: row.start.0,
            end_90k: row.end.0,
            frames: row.frames,
            bytes: row.bytes,
            sha256: hex(sha256),
            codec: entry.codec.clone(),
            width: entry.width,
            height: entry.height,
            sample_entry: b64.encode(&entry.data),
            frame_index: b64.encode(row.frame_index.as_deref().unwrap_or_default()),
        }
    }

    /// The row and sample entry this entry describes, to place its frames
    /// with `store::reader::place_frames` exactly as the NVR would.
    pub fn to_row(&self, channel: u32) -> Result<(SegmentRow, SampleEntryRow), String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let data = b64
            .decode(&self.sample_entry)
            .map_err(|e| format!("sample entry: {e}"))?;
        let fi = b64.decode(&self.frame_index).map_err(|e| format!("frame index: {e}"))?;
        let row = SegmentRow {
            id: self.id,
            channel,
            state: crate::store::db::ARCHIVED,
            start: Time90k(self.start_90k),
            end: Time90k(self.end_90k),
            frames: self.frames,
            key_frames: 0,
            bytes: self.bytes,
            media_bytes: 0,
            sample_entry_id: 0,
            frame_index: Some(fi),
            damage: None,
            readable_bytes: None,
            holes: Vec::new(),
        };
        let entry = SampleEntryRow {
            id: 0,
            data,
            codec: self.codec.clone(),
            width: self.width,
            height: self.height,
        };
        Ok((row, entry))
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl DayIndex {
    pub fn empty(nvr: &str, channel: u32, day: &str) -> DayIndex {
        DayIndex {
            format: FORMAT,
            nvr: nvr.to_string(),
            channel,
            day: day.to_string(),
            segments: BTreeMap::new(),
        }
    }

    /// Adds (or replaces: a retried upload) entries. Pure.
    pub fn add(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            self.segments.insert(e.id, e);
        }
    }

    /// Removes the entries that ended at or before `cutoff` and returns them. Pure.
    pub fn expire(&mut self, cutoff: Time90k) -> Vec<Entry> {
        let gone: Vec<i64> = self
            .segments
            .values()
            .filter(|e| e.end_90k <= cutoff.0)
            .map(|e| e.id)
            .collect();
        gone.iter().filter_map(|id| self.segments.remove(id)).collect()
    }

    pub fn parse(bytes: &[u8]) -> Result<DayIndex, String> {
        let d: DayIndex = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if d.format != FORMAT {
            return Err(format!("format {} (this Tandem reads {FORMAT})", d.format));
        }
        Ok(d)
    }
}

/// The day's index as stored, or an empty one when there is none yet.
pub async fn load(
    store: &Arc<AmazonS3>,
    key: &ObjectPath,
    nvr: &str,
    channel: u32,
    day: &str,
) -> Result<DayIndex, ArchiveError> {
    match store.get(key).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            DayIndex::parse(&bytes).map_err(|why| ArchiveError::DayIndex {
                key: key.to_string(),
                why,
            })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(DayIndex::empty(nvr, channel, day)),
        Err(e) => Err(e.into()),
    }
}

/// Writes the day's index (one PUT replaces it whole), or deletes it when
/// the day has no segment left.
pub async fn save(store: &Arc<AmazonS3>, key: &ObjectPath, d: &DayIndex) -> Result<(), ArchiveError> {
    if d.segments.is_empty() {
        return match store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let json = serde_json::to_vec(d).map_err(|e| ArchiveError::DayIndex {
        key: key.to_string(),
        why: e.to_string(),
    })?;
    store.put(key, PutPayload::from(json)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, end: i64) -> Entry {
        Entry {
            id,
            object: format!("{id:016}.seg"),
            start_90k: end - 10,
            end_90k: end,
            frames: 1,
            bytes: 1,
            sha256: String::new(),
            codec: "h264".into(),
            width: 1,
            height: 1,
            sample_entry: String::new(),
            frame_index: String::new(),
        }
    }

    #[test]
    fn retried_uploads_replace_and_expiry_removes_by_end() {
        let mut d = DayIndex::empty("n", 1, "2026-01-01");
        d.add([entry(1, 100), entry(2, 200), entry(3, 300)]);
        d.add([Entry {
            bytes: 9,
            ..entry(2, 200)
        }]);
        assert_eq!(d.segments.len(), 3);
        assert_eq!(d.segments[&2].bytes, 9);
        let gone: Vec<i64> = d.expire(Time90k(200)).iter().map(|e| e.id).collect();
        assert_eq!(gone, [1, 2]);
        assert_eq!(d.segments.keys().copied().collect::<Vec<_>>(), [3]);
        let back = DayIndex::parse(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert!(DayIndex::parse(br#"{"format":2,"nvr":"n","channel":1,"day":"d","segments":{}}"#).is_err());
    }

    #[test]
    fn an_entry_gives_back_its_row() {
        let row = SegmentRow {
            id: 7,
            channel: 2,
            state: 1,
            start: Time90k(1000),
            end: Time90k(2000),
            frames: 3,
            key_frames: 1,
            bytes: 500,
            media_bytes: 400,
            sample_entry_id: 4,
            frame_index: Some(vec![1, 2, 3, 4]),
            damage: None,
            readable_bytes: None,
            holes: Vec::new(),
        };
        let se = SampleEntryRow {
            id: 4,
            data: b"0000avc1".to_vec(),
            codec: "h264".into(),
            width: 640,
            height: 480,
        };
        let e = Entry::new(&row, &se, &[0xab; 32]);
        assert_eq!(e.sha256.len(), 64);
        let (r, s) = e.to_row(2).unwrap();
        assert_eq!(
            (r.id, r.start, r.end, r.bytes, r.frame_index),
            (7, row.start, row.end, 500, row.frame_index)
        );
        assert_eq!((s.data, s.width), (se.data, 640));
    }
}
