//! The content conformance suite, run on every [`BlobSource`] +
//! [`BlobSink`] implementation (as containerd's content/testsuite does),
//! and fakes: random images with real tar layers (as ggcr's `random`).
//!
//! Compiled for this crate's tests and with the `testsuite` feature.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use polyarch_oci::{media_type as mt, Descriptor, Digest, ImageManifest, IndexManifest, Platform, RawManifest};

use crate::error::{Error, Result};
use crate::{BlobSink, BlobSource, ErrorKind, Store};

/// A store in a new temporary directory (kept as long as the guard).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path()).expect("opening the store");
    (dir, store)
}

/// A small deterministic generator, so fakes are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// An uncompressed layer tar with one random file.
pub fn random_layer(rng: &mut Rng) -> Result<Vec<u8>> {
    let len = 512 + (rng.next_u64() % 2048) as usize;
    let data = rng.bytes(len);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    let name = format!("file-{:016x}", rng.next_u64());
    let io = |e| Error::Io { path: name.clone().into(), source: e };
    b.append_data(&mut h, &name, &data[..]).map_err(io)?;
    b.into_inner().map_err(io)
}

/// Writes a random single-platform image (`linux/amd64`) with `layers`
/// uncompressed layers and returns its manifest descriptor (with platform).
pub fn random_image(store: &Store, layers: usize, seed: u64) -> Result<Descriptor> {
    random_image_for(store, layers, seed, &Platform::new("linux", "amd64", None))
}

/// Like [`random_image`], for a given platform.
pub fn random_image_for(store: &Store, layers: usize, seed: u64, platform: &Platform) -> Result<Descriptor> {
    let mut rng = Rng::new(seed);
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for _ in 0..layers {
        let tar = random_layer(&mut rng)?;
        let d = store.put_bytes(mt::OCI_LAYER_TAR, &tar)?;
        diff_ids.push(d.digest.to_string());
        layer_descs.push(d);
    }
    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"seed": seed.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| json_err("config", e))?;
    let config = store.put_bytes(mt::OCI_CONFIG, &config_bytes)?;
    let manifest = ImageManifest::new(mt::OCI_MANIFEST, config, layer_descs);
    let raw =
        RawManifest::from_image(&manifest).map_err(|source| Error::Manifest { digest: Digest::sha256(b""), source })?;
    Ok(store.put_manifest(&raw)?.with_platform(Some(platform.clone())))
}

/// Writes an index over `platforms` random images (amd64, arm64, ...).
pub fn random_index(store: &Store, platforms: usize, layers: usize, seed: u64) -> Result<Descriptor> {
    let arches = ["amd64", "arm64", "riscv64", "s390x", "ppc64le", "386"];
    let mut index = IndexManifest::new(mt::OCI_INDEX);
    for (i, arch) in arches.iter().cycle().take(platforms).enumerate() {
        let p = Platform::new("linux", arch, None);
        index.manifests.push(random_image_for(store, layers, seed.wrapping_add(i as u64 * 1000), &p)?);
    }
    let raw =
        RawManifest::from_index(&index).map_err(|source| Error::Manifest { digest: Digest::sha256(b""), source })?;
    store.put_manifest(&raw)
}

fn json_err(what: &str, e: serde_json::Error) -> Error {
    Error::Archive { entry: what.to_string(), reason: e.to_string() }
}

fn blob(content: &[u8]) -> Descriptor {
    Descriptor::new(mt::OCI_LAYER_TAR, Digest::sha256(content), content.len() as u64)
}

fn read_all<S: BlobSource>(s: &S, desc: &Descriptor) -> Vec<u8> {
    let mut out = Vec::new();
    s.open(desc).expect("open").read_to_end(&mut out).expect("read");
    out
}

/// Write in pieces, commit, read back; stat and exists agree.
pub fn check_write_commit<S: BlobSource + BlobSink>(s: &S) {
    let content = Rng::new(1).bytes(300_000);
    let desc = blob(&content);
    assert!(!s.exists(&desc.digest).expect("exists"));
    assert_eq!(s.stat(&desc.digest).expect_err("stat of missing").kind(), ErrorKind::NotFound);
    let mut w = s.writer(&desc).expect("writer");
    for chunk in content.chunks(7919) {
        w.write_all(chunk).expect("write");
    }
    assert_eq!(w.written(), content.len() as u64);
    w.commit(desc.size, &desc.digest).expect("commit");
    assert!(s.exists(&desc.digest).expect("exists"));
    assert_eq!(s.stat(&desc.digest).expect("stat").size, desc.size);
    assert_eq!(read_all(s, &desc), content);
}

/// Committing with the wrong size fails and leaves nothing behind.
pub fn check_size_mismatch<S: BlobSource + BlobSink>(s: &S) {
    let desc = blob(b"size mismatch");
    let mut w = s.writer(&desc).expect("writer");
    w.write_all(b"size mismatch").expect("write");
    match w.commit(desc.size + 1, &desc.digest) {
        Err(Error::SizeMismatch { expected, actual, .. }) => assert_eq!((expected, actual), (desc.size + 1, desc.size)),
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    assert!(!s.exists(&desc.digest).expect("exists"));
}

/// Committing content that hashes to something else fails.
pub fn check_digest_mismatch<S: BlobSource + BlobSink>(s: &S) {
    let desc = blob(b"expected content");
    let mut w = s.writer(&desc).expect("writer");
    w.write_all(b"tampered content").expect("write");
    match w.commit(desc.size, &desc.digest) {
        Err(Error::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, desc.digest);
            assert_eq!(actual, Digest::sha256(b"tampered content"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(!s.exists(&desc.digest).expect("exists"));
}

/// A second writer for present content gets `AlreadyExists`; two writers
/// opened before either commits both succeed.
pub fn check_idempotent_commit<S: BlobSource + BlobSink>(s: &S) {
    let desc = blob(b"twice");
    let mut a = s.writer(&desc).expect("writer a");
    let mut b = s.writer(&desc).expect("writer b");
    a.write_all(b"twice").expect("write");
    b.write_all(b"twice").expect("write");
    a.commit(5, &desc.digest).expect("commit a");
    b.commit(5, &desc.digest).expect("commit b (already exists is success)");
    assert_eq!(s.writer(&desc).expect_err("writer for present blob").kind(), ErrorKind::AlreadyExists);
    crate::copy_blob(s as &dyn BlobSink, &desc, &mut &b"twice"[..]).expect("copy of present blob");
    assert_eq!(read_all(s, &desc), b"twice");
}

/// Dropping a writer without committing publishes nothing.
pub fn check_drop_discards<S: BlobSource + BlobSink>(s: &S) {
    let desc = blob(b"dropped");
    let mut w = s.writer(&desc).expect("writer");
    w.write_all(b"dropped").expect("write");
    drop(w);
    assert!(!s.exists(&desc.digest).expect("exists"));
}

/// Many threads write the same blob at once; all succeed, one copy results.
pub fn check_concurrent_same_blob<S: BlobSource + BlobSink + Sync>(s: &S) {
    let content = Rng::new(7).bytes(1 << 20);
    let desc = blob(&content);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| crate::copy_blob(s as &dyn BlobSink, &desc, &mut &content[..]).expect("concurrent copy"));
        }
    });
    assert_eq!(read_all(s, &desc), content);
}

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: BlobSource + BlobSink + Sync>(make: impl Fn() -> S) {
    check_write_commit(&make());
    check_size_mismatch(&make());
    check_digest_mismatch(&make());
    check_idempotent_commit(&make());
    check_drop_discards(&make());
    check_concurrent_same_blob(&make());
}

/// Names of files under a directory, for leak checks.
pub fn dir_entries(dir: &std::path::Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_conforms() {
        let dirs = std::sync::Mutex::new(Vec::new());
        run_all(|| {
            let d = tempfile::tempdir().expect("tempdir");
            let s = Store::open(d.path()).expect("open");
            dirs.lock().expect("lock").push(d);
            s
        });
        // Nothing is left in ingest/ by any check.
        for d in dirs.lock().expect("lock").iter() {
            assert!(dir_entries(&d.path().join("ingest")).is_empty(), "ingest leaked in {:?}", d.path());
        }
    }

    #[test]
    fn drop_removes_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut w = s.writer(&blob(b"x")).unwrap();
        w.write_all(b"x").unwrap();
        w.flush().unwrap();
        assert_eq!(dir_entries(&d.path().join("ingest")).len(), 1);
        drop(w);
        assert!(dir_entries(&d.path().join("ingest")).is_empty());
    }

    #[test]
    fn random_images_are_valid() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = random_image(&s, 2, 5).unwrap();
        assert_eq!(a, random_image(&s, 2, 5).unwrap());
        let m = s.get_manifest(&a).unwrap();
        let img = m.as_image().unwrap();
        assert_eq!(img.layers.len(), 2);
        let cfg = s.read_bytes(&img.config, 1 << 20).unwrap();
        let cfg: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"][1], img.layers[1].digest.to_string());
    }
}
