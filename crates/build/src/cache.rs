//! The build cache: a step's key is the digest of its parent's key, the
//! normalised instruction, the arguments and environment that reach it,
//! the platform and the content of the files it reads. Records map keys to
//! the layer the step produced and live beside the store's content, so a
//! record whose blob was pruned is a miss.

use std::path::PathBuf;

use polyarch_oci::{Digest, Platform};
use polyarch_store::{BlobSource, Store};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::fs::{Kind, MemFs};
use crate::layer::Layer;

/// Bumped whenever what a step produces for the same key changes.
const VERSION: &str = "polyarch.build.cache.v1";

/// Builds a cache key from parts; each part is length-prefixed so that
/// `("ab","c")` and `("a","bc")` differ.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    hash: Sha256,
}

impl KeyBuilder {
    /// Starts a key below `parent` for `platform`.
    pub fn new(parent: &str, platform: &Platform) -> KeyBuilder {
        let mut k = KeyBuilder { hash: Sha256::new() };
        k.part(VERSION).part(parent).part(&platform.format());
        k
    }

    /// Adds one part.
    pub fn part(&mut self, s: &str) -> &mut KeyBuilder {
        self.bytes(s.as_bytes())
    }

    /// Adds one binary part.
    pub fn bytes(&mut self, b: &[u8]) -> &mut KeyBuilder {
        self.hash.update((b.len() as u64).to_le_bytes());
        self.hash.update(b);
        self
    }

    /// The key.
    pub fn finish(&self) -> String {
        format!("sha256:{}", hex::encode(self.hash.clone().finalize()))
    }
}

/// The digest of a tree's content: paths, types, modes, owners, link
/// targets and file bytes; times are left out, as BuildKit's content
/// checksums do.
pub fn content_digest(fs: &MemFs) -> String {
    let mut h = Sha256::new();
    for (p, n) in fs.iter() {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(format!("{:o}:{}:{}", n.mode, n.uid, n.gid).as_bytes());
        match &n.kind {
            Kind::Dir => h.update(b"d"),
            Kind::Symlink(t) => {
                h.update(b"l");
                h.update(t.as_bytes());
            }
            Kind::File(d) => {
                h.update(b"f");
                h.update(Sha256::digest(d.as_slice()));
            }
        }
        h.update([0]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The layer, or `None` when the step changed nothing.
    pub layer: Option<Layer>,
    /// When the step ran (seconds since the epoch); a cached step keeps
    /// it, so a fully cached rebuild gives the same image.
    #[serde(default)]
    pub created: Option<i64>,
}

/// Cache records under `<store root>/build-cache`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    store: Store,
}

impl Cache {
    /// The cache of `store`.
    pub fn new(store: &Store) -> Cache {
        Cache { dir: store.root().join("build-cache"), store: store.clone() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key.trim_start_matches("sha256:"))
    }

    /// The record for `key`, if it and its blob are present.
    pub fn get(&self, key: &str) -> Option<Record> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let rec: Record = serde_json::from_slice(&bytes).ok()?;
        match &rec.layer {
            Some(l) if !self.store.exists(&l.desc.digest).unwrap_or(false) => None,
            _ => Some(rec),
        }
    }

    /// Stores the record for `key` (atomically).
    pub fn put(&self, key: &str, rec: &Record) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let bytes = serde_json::to_vec(rec).map_err(|source| Error::Json { what: "cache record", source })?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.path(key);
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }
}

/// A digest as a cache-key part.
pub fn digest_part(d: &Digest) -> String {
    d.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::file_node;

    #[test]
    fn keys_depend_on_every_part() {
        let p = Platform::new("linux", "amd64", None);
        let a = KeyBuilder::new("root", &p).part("COPY a b").finish();
        assert_eq!(a, KeyBuilder::new("root", &p).part("COPY a b").finish());
        assert_ne!(a, KeyBuilder::new("root2", &p).part("COPY a b").finish());
        assert_ne!(a, KeyBuilder::new("root", &Platform::new("linux", "arm64", None)).part("COPY a b").finish());
        assert_ne!(
            KeyBuilder::new("r", &p).part("ab").part("c").finish(),
            KeyBuilder::new("r", &p).part("a").part("bc").finish()
        );
    }

    #[test]
    fn content_digest_ignores_times_only() {
        let mut a = MemFs::new();
        a.insert("f".into(), file_node(b"x", 0o644, 1));
        let mut b = MemFs::new();
        b.insert("f".into(), file_node(b"x", 0o644, 2));
        assert_eq!(content_digest(&a), content_digest(&b));
        b.insert("f".into(), file_node(b"y", 0o644, 2));
        assert_ne!(content_digest(&a), content_digest(&b));
        b.insert("f".into(), file_node(b"x", 0o600, 2));
        assert_ne!(content_digest(&a), content_digest(&b));
    }

    #[test]
    fn records_need_their_blob() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let cache = Cache::new(&store);
        assert!(cache.get("sha256:00").is_none());
        cache.put("sha256:00", &Record { layer: None, created: None }).unwrap();
        assert_eq!(cache.get("sha256:00"), Some(Record { layer: None, created: None }));
        let desc = store.put_bytes(polyarch_oci::media_type::OCI_LAYER_GZIP, b"blob").unwrap();
        let layer = Layer { desc: desc.clone(), diff_id: Digest::sha256(b"x") };
        cache.put("sha256:01", &Record { layer: Some(layer), created: Some(1) }).unwrap();
        assert!(cache.get("sha256:01").is_some());
        store.delete_blob(&desc.digest).unwrap();
        assert!(cache.get("sha256:01").is_none());
    }
}
