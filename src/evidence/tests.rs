use std::io::Cursor;
use std::sync::Arc;

use ed25519_dalek::SigningKey;

use super::export::{self, Meta};
use super::*;
use crate::mp4::clip::{self, Clip};
use crate::store::db::SampleEntryRow;
use crate::store::reader::SegmentFrames;
use crate::store::FrameRef;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn meta() -> Meta {
    Meta {
        nvr_id: "nvr-a".into(),
        channel: 3,
        channel_name: Some("door".into()),
        camera: Some("cam-door".into()),
        requested: (Time90k(0), Time90k(20 * 3600)),
        exported_by: "alice".into(),
        exported_at: Time90k(90_000 * 1_700_000_000),
        audit_entry: Some(42),
    }
}

/// A clip of `n` frames planned over a segment file of random bytes.
fn planned(dir: &std::path::Path, n: usize) -> Clip {
    let content: Vec<u8> = (0..n * 100 + 100).map(|_| rand::random::<u8>()).collect();
    planned_over(dir, n, &content)
}

fn planned_over(dir: &std::path::Path, n: usize, content: &[u8]) -> Clip {
    let p = dir.join("seg");
    std::fs::write(&p, content).unwrap();
    let mut data = vec![0u8; 40];
    data[4..8].copy_from_slice(b"avc1");
    let entry = Arc::new(SampleEntryRow {
        id: 1,
        data,
        codec: "h264".into(),
        width: 64,
        height: 48,
    });
    let frames = (0..n)
        .map(|i| FrameRef {
            time: Time90k(i as i64 * 3600),
            duration: 3600,
            offset: 100 + i as u64 * 100,
            size: 100,
            key: i % 5 == 0,
        })
        .collect();
    let seg = SegmentFrames {
        id: 1,
        path: p,
        entry,
        frames,
    };
    clip::build(&[seg], &[], Time90k(0), Time90k(n as i64 * 3600)).unwrap()
}

fn archive_bytes(dir: &std::path::Path, n: usize, k: &SigningKey) -> (Vec<u8>, Manifest) {
    let clip = planned(dir, n);
    let (out, m) = export::write(Cursor::new(Vec::new()), &clip, &meta(), k).unwrap();
    (out.into_inner(), m)
}

fn verify_bytes(dir: &std::path::Path, bytes: &[u8], trusted: Option<&ed25519_dalek::VerifyingKey>) -> Verdict {
    let p = dir.join("case.zip");
    std::fs::write(&p, bytes).unwrap();
    archive::verify(&p, trusted)
}

fn failed(v: &Verdict) -> Vec<&'static str> {
    v.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

#[test]
fn an_untouched_export_verifies_and_counts_its_frames() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let (z, m) = archive_bytes(d.path(), 10, &k);
    assert_eq!(m.frames, 10);
    assert_eq!(m.audit_entry, Some(42));
    assert_eq!(m.exported_by, "alice");
    assert_eq!(m.public_key, hex(k.verifying_key().as_bytes()));
    let v = verify_bytes(d.path(), &z, None);
    assert!(v.ok(), "{:?}", v.checks);
    assert!(v.key_from_manifest);
    let names: Vec<_> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["archive", "signature", "manifest fields", "clip hash", "frame count"]
    );
    assert_eq!(v.checks[4].detail, "10 frames");
    // With the right key given, the same; with another key, refused.
    let v = verify_bytes(d.path(), &z, Some(&k.verifying_key()));
    assert!(v.ok() && !v.key_from_manifest);
    let v = verify_bytes(d.path(), &z, Some(&key(2).verifying_key()));
    assert_eq!(failed(&v), ["signature"]);
    assert!(v
        .checks
        .iter()
        .any(|c| c.detail.contains("not the key given with --key")));
    // The same contents make the same archive: the layout is reproducible.
    assert_eq!(archive_bytes(d.path(), 10, &k).0.len(), z.len());
}

/// The archive's bytes for fixed contents, key and time. `verify` rebuilds
/// archives with this crate's zip writer: if a dependency upgrade changed
/// the layout, archives exported before it would stop verifying. This
/// catches that before release.
#[test]
fn the_layout_of_an_archive_does_not_drift() {
    use sha2::{Digest, Sha256};
    let d = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..1100u32).map(|i| (i * 31 % 253) as u8).collect();
    let clip = planned_over(d.path(), 10, &content);
    let (out, _) = export::write(Cursor::new(Vec::new()), &clip, &meta(), &key(1)).unwrap();
    let z = out.into_inner();
    assert_eq!(hex(&Sha256::digest(&z)), GOLDEN, "{} bytes", z.len());
}

const GOLDEN: &str = "d78d367c9ac84872dc2c6988c15942af4ea66a0af573843b29ea87a680882064";

#[test]
fn every_single_byte_flip_is_refused_and_the_region_named() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let (z, m) = archive_bytes(d.path(), 6, &k);
    let mut by_check = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..z.len() {
        let mut bad = z.clone();
        bad[i] ^= 0x01;
        let v = verify_bytes(d.path(), &bad, None);
        assert!(!v.ok(), "flipping byte {i} of {} went unnoticed", z.len());
        let why = &v.checks.iter().find(|c| !c.ok).unwrap().detail;
        let region = [
            "clip.mp4",
            "manifest.json",
            "manifest.sig",
            "differs from the archive",
            "not a readable zip",
        ]
        .into_iter()
        .find(|r| why.contains(r))
        .unwrap_or("other");
        *by_check.entry(region).or_default() += 1;
    }
    // The clip's data, the manifest, the signature, the headers and the
    // central directory were all hit, and each refusal names what it found.
    assert!(by_check["clip.mp4"] >= m.clip.bytes as usize - 200, "{by_check:?}");
    for r in [
        "manifest.json",
        "manifest.sig",
        "differs from the archive",
        "not a readable zip",
    ] {
        assert!(by_check.contains_key(r), "{r}: {by_check:?}");
    }
}

#[test]
fn flipping_clip_manifest_or_signature_names_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let (z, m) = archive_bytes(d.path(), 8, &k);
    let find = |needle: &[u8]| z.windows(needle.len()).position(|w| w == needle).unwrap();
    // A byte in the middle of the clip's media: CRC (archive) fails first.
    let mut bad = z.clone();
    let clip_mid = 30 + CLIP_NAME.len() + (m.clip.bytes as usize) - 50;
    bad[clip_mid] ^= 0x80;
    let v = verify_bytes(d.path(), &bad, None);
    assert!(!v.ok());
    assert!(
        v.checks.iter().any(|c| !c.ok && c.detail.contains("clip.mp4")),
        "{:?}",
        v.checks
    );
    // A byte of the manifest text: the signature no longer holds.
    let mut bad = z.clone();
    bad[find(b"\"exported_by\"") + 3] ^= 0x01;
    let v = verify_bytes(d.path(), &bad, None);
    assert!(
        failed(&v).contains(&"signature") || failed(&v).contains(&"archive"),
        "{:?}",
        v.checks
    );
    // The signature's last byte.
    let sig_end = z.len() - 22 - 3 * 46 - 3 * 12 - CLIP_NAME.len() - MANIFEST_NAME.len() - SIGNATURE_NAME.len();
    let mut bad = z.clone();
    bad[sig_end - 1] ^= 0x01;
    let v = verify_bytes(d.path(), &bad, None);
    assert!(!v.ok());
    // A zip with an extra entry, or one missing.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for name in [CLIP_NAME, MANIFEST_NAME, SIGNATURE_NAME, "extra.txt"] {
        w.start_file(name, o).unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
    }
    let v = verify_bytes(d.path(), &w.finish().unwrap().into_inner(), None);
    assert!(v.checks[0].detail.contains("extra.txt"), "{:?}", v.checks);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file(CLIP_NAME, o).unwrap();
    let v = verify_bytes(d.path(), &w.finish().unwrap().into_inner(), None);
    assert!(v.checks[0].detail.contains("manifest.json"), "{:?}", v.checks);
    // Not a zip at all.
    let v = verify_bytes(d.path(), b"hello", None);
    assert_eq!(failed(&v), ["archive"]);
}

#[test]
fn a_streamed_archive_is_the_written_one_and_a_change_between_passes_fails() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let clip = planned(d.path(), 12);
    let (written, _) = export::write(Cursor::new(Vec::new()), &clip, &meta(), &k).unwrap();
    let written = written.into_inner();
    for chunk in [1, 7, 4096, 1 << 20] {
        let (plan, sources) = export::plan_stream(&clip, &meta(), &k).unwrap();
        assert_eq!(plan.len, written.len() as u64);
        let mut got = Vec::new();
        archive::stream(&plan, &clip, sources, &k, chunk, |b| {
            assert!(b.len() <= chunk);
            got.extend(b);
            true
        })
        .unwrap();
        assert!(
            got == written,
            "chunk {chunk}: the stream differs from the written archive"
        );
    }
    // A frame changed between the passes: the stream fails (and the caller
    // aborts the connection) instead of sending an archive that lies.
    let (plan, sources) = export::plan_stream(&clip, &meta(), &k).unwrap();
    let seg = d.path().join("seg");
    let mut b = std::fs::read(&seg).unwrap();
    b[150] ^= 1;
    std::fs::write(&seg, &b).unwrap();
    let e = archive::stream(&plan, &clip, sources, &k, 4096, |_| true).unwrap_err();
    assert!(e.to_string().contains("changed while"), "{e}");
    // The client leaves: the stream stops with an error.
    let (plan, sources) = export::plan_stream(&clip, &meta(), &k).unwrap();
    assert!(archive::stream(&plan, &clip, sources, &k, 4096, |_| false).is_err());
}

#[test]
fn manifest_core_checks_fields_and_signature() {
    let k = key(9);
    let m = Manifest {
        format: FORMAT.into(),
        nvr_id: "n".into(),
        channel: 1,
        channel_name: None,
        camera: None,
        requested: Range {
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T00:01:00Z".into(),
        },
        actual: Range {
            start: "2026-01-01T00:00:10Z".into(),
            end: "2026-01-01T00:00:50Z".into(),
        },
        frames: 3,
        gaps: vec![],
        frames_omitted: 0,
        damaged: vec![],
        codec: "h264".into(),
        width: 1,
        height: 1,
        clip: ClipFile {
            name: CLIP_NAME.into(),
            bytes: 5,
            sha256: hex(&[1; 32]),
        },
        exported_by: "cli:bob".into(),
        exported_at: "2026-01-02T00:00:00Z".into(),
        audit_entry: None,
        public_key: hex(k.verifying_key().as_bytes()),
    };
    let b = m.to_bytes();
    let sig = sign(&k, &b);
    let (c, got) = check_manifest(&b, &sig, None);
    assert!(c.iter().all(|c| c.ok), "{c:?}");
    assert_eq!(got.as_ref(), Some(&m));
    // The clip checks: hash, size, frame count each named.
    assert!(check_clip(&m, &[1; 32], 5, Ok(3)).iter().all(|c| c.ok));
    let c = check_clip(&m, &[2; 32], 5, Ok(3));
    assert!(!c[0].ok && c[0].detail.contains("SHA-256"));
    let c = check_clip(&m, &[1; 32], 6, Ok(3));
    assert!(!c[0].ok && c[0].detail.contains("6 bytes"));
    let c = check_clip(&m, &[1; 32], 5, Ok(4));
    assert!(!c[1].ok && c[1].detail.contains("4 frames"));
    let c = check_clip(&m, &[1; 32], 5, Err("no moov box".into()));
    assert!(!c[1].ok && c[1].detail.contains("no moov"));
    // Any byte of the manifest or the signature changed: refused.
    for i in 0..b.len() {
        let mut bad = b.clone();
        bad[i] ^= 0x20;
        let (c, got) = check_manifest(&bad, &sig, None);
        assert!(got.is_none() && c.iter().any(|c| !c.ok), "byte {i}");
    }
    for i in 0..64 {
        let mut bad = sig;
        bad[i] ^= 0x01;
        assert!(check_manifest(&b, &bad, None).1.is_none(), "sig byte {i}");
    }
    assert!(check_manifest(&b, &sig[..63], None).0[0].detail.contains("63 bytes"));
    // A signed manifest whose fields do not hold is still refused, by name.
    let mut odd = m.clone();
    odd.actual.end = "2026-01-01T00:02:00Z".into();
    odd.format = "other/9".into();
    let ob = odd.to_bytes();
    let (c, _) = check_manifest(&ob, &sign(&k, &ob), None);
    let f = c.iter().find(|c| c.name == "manifest fields").unwrap();
    assert!(
        !f.ok && f.detail.contains("inside the requested") && f.detail.contains("other/9"),
        "{f:?}"
    );
    // A manifest signed by a key other than the one it names.
    let (c, _) = check_manifest(&b, &sign(&key(8), &b), None);
    assert!(!c[0].ok);
}

#[test]
fn public_keys_parse_from_hex_or_base64() {
    use base64::Engine;
    let k = key(3).verifying_key();
    assert_eq!(parse_public_key(&hex(k.as_bytes())).unwrap(), k);
    let b64 = base64::engine::general_purpose::STANDARD.encode(k.as_bytes());
    assert_eq!(parse_public_key(&b64).unwrap(), k);
    assert!(parse_public_key("abcd").unwrap_err().contains("32 bytes"));
    assert!(parse_public_key("not a key!").is_err());
    assert_eq!(fingerprint(&k).len(), 32);
}

/// Measurement (docs/clips.md): export and verify of a 244-MB clip, and the
/// archive kept at `$TANDEM_KEEP_ZIP` for a peak-memory run of `tandem verify`.
#[test]
#[ignore]
fn measure_export_and_verify_of_a_244_mb_clip() {
    let d = tempfile::tempdir().unwrap();
    let n = 2560usize;
    let p = d.path().join("seg");
    let fsz = 100_000usize;
    let content: Vec<u8> = (0..n * fsz + 100).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&p, &content).unwrap();
    // What the writer's per-segment hash costs: SHA-256 over memory.
    let t = std::time::Instant::now();
    let h = <sha2::Sha256 as sha2::Digest>::digest(&content);
    let mbs = content.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
    assert_eq!(h.len(), 32);
    eprintln!("SHA-256: {mbs:.0} MB/s");
    drop(content);
    let mut data = vec![0u8; 40];
    data[4..8].copy_from_slice(b"avc1");
    let entry = Arc::new(SampleEntryRow {
        id: 1,
        data,
        codec: "h264".into(),
        width: 64,
        height: 48,
    });
    let frames = (0..n)
        .map(|i| FrameRef {
            time: Time90k(i as i64 * 3600),
            duration: 3600,
            offset: 100 + (i * fsz) as u64,
            size: fsz as u32,
            key: i % 25 == 0,
        })
        .collect();
    let seg = SegmentFrames {
        id: 1,
        path: p,
        entry,
        frames,
    };
    let clip = clip::build(&[seg], &[], Time90k(0), Time90k(n as i64 * 3600)).unwrap();
    let out = d.path().join("big.zip");
    let t = std::time::Instant::now();
    let f = std::fs::File::create(&out).unwrap();
    let mut m = meta();
    m.requested = (Time90k(0), Time90k(n as i64 * 3600));
    export::write(std::io::BufWriter::with_capacity(1 << 20, f), &clip, &m, &key(1)).unwrap();
    let te = t.elapsed();
    let t = std::time::Instant::now();
    let v = archive::verify(&out, None);
    let tv = t.elapsed();
    assert!(v.ok(), "{:?}", v.checks);
    // The HTTP path: two passes over the clip, nothing spooled.
    let t = std::time::Instant::now();
    let (plan, sources) = export::plan_stream(&clip, &m, &key(1)).unwrap();
    let tp = t.elapsed();
    let mut n = 0u64;
    archive::stream(&plan, &clip, sources, &key(1), 256 << 10, |b| {
        n += b.len() as u64;
        true
    })
    .unwrap();
    assert_eq!(n, plan.len);
    let ts = t.elapsed();
    eprintln!(
        "clip {} MB: export {te:?}, verify {tv:?}; streamed: first byte after {tp:?}, all after {ts:?}",
        clip.len >> 20
    );
    if let Ok(keep) = std::env::var("TANDEM_KEEP_ZIP") {
        std::fs::copy(&out, keep).unwrap();
    }
}
