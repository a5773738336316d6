//! A local image store that needs no daemon, kept on disk as an OCI image
//! layout: `oci-layout`, `index.json` naming the references, content in
//! `blobs/<alg>/<hex>`, plus `ingest/` for blobs being written, `locks/`, and
//! `sources/` (which registry repositories hold a blob, for mounts).
//!
//! Several polyarch processes may use one root at once: blobs are written
//! to temp files and renamed into place, and `index.json` is rewritten under
//! an exclusive file lock, through a synced temp file and a rename.

#![warn(missing_docs)]

pub mod archive;
pub mod atomic;
pub mod compression;
pub mod content;
mod docker;
pub mod error;
pub mod gc;
pub mod layout;
pub mod refs;
pub mod retention;
mod sources;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod verify;
mod writer;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use polyarch_oci::{media_type as mt, Algorithm, Descriptor, Digest, RawManifest, MAX_MANIFEST_SIZE};

pub use atomic::AtomicFile;
pub use content::{copy_blob, transfer, BlobInfo, BlobSink, BlobSource, BlobWriter, Ingest, VerifiedReader};
pub use error::{Error, ErrorKind, Result};
pub use gc::{DiskUsage, GcGuard, Lease, PruneOptions, PruneReport};
pub use layout::{default_root, private_dir, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ROOT_MODE};

use error::io_at;
use layout::blob_path;
use writer::LocalWriter;

/// A handle on a store root. Cheap to clone; handles in several threads or
/// processes may use the same root at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating whatever is missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        layout::init(&root)?;
        Ok(Store { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, digest)
    }

    /// Stores `bytes` as a sha256-addressed blob and describes it.
    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let desc = Descriptor::new(media_type, Digest::sha256(bytes), bytes.len() as u64);
        self.put_with_digest(&desc, bytes)?;
        Ok(desc)
    }

    fn put_with_digest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<()> {
        copy_blob(self, desc, &mut &bytes[..])
    }

    /// Reads a whole blob, refusing blobs over `limit` bytes, and verifies
    /// its size and digest against `desc`.
    pub fn read_bytes(&self, desc: &Descriptor, limit: u64) -> Result<Bytes> {
        if desc.size > limit {
            return Err(Error::TooLarge { digest: desc.digest.clone(), size: desc.size, limit });
        }
        let path = self.blob_path(&desc.digest);
        let file = open_blob(&path, &desc.digest)?;
        let mut buf = Vec::with_capacity(desc.size as usize);
        file.take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(io_at(&path))?;
        let actual = desc.digest.of_same_kind(&buf);
        if actual != desc.digest {
            return Err(Error::CorruptBlob { digest: desc.digest.clone(), path, actual });
        }
        if buf.len() as u64 != desc.size {
            return Err(Error::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: buf.len() as u64,
            });
        }
        Ok(Bytes::from(buf))
    }

    /// Reads, verifies and parses the manifest or index `desc` points at.
    pub fn get_manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        let bytes = self.read_bytes(desc, MAX_MANIFEST_SIZE)?;
        let media_type = Some(desc.media_type.as_str()).filter(|m| !m.is_empty());
        RawManifest::from_bytes(bytes, media_type)
            .map_err(|source| Error::Manifest { digest: desc.digest.clone(), source })
    }

    /// Stores a manifest's exact bytes and returns its descriptor.
    pub fn put_manifest(&self, m: &RawManifest) -> Result<Descriptor> {
        let desc = m.descriptor();
        self.put_with_digest(&desc, m.bytes())?;
        Ok(desc)
    }

    /// Every blob present, with its size, in digest order.
    pub fn blobs(&self) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        let blobs = self.root.join("blobs");
        for alg in read_dir_names(&blobs)? {
            for hex in read_dir_names(&blobs.join(&alg))? {
                let Ok(digest) = format!("{alg}:{hex}").parse::<Digest>() else { continue };
                let path = self.blob_path(&digest);
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_file() => out.push(BlobInfo { digest, size: m.len() }),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Io { path, source: e }),
                }
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Marks blobs as used now (their file's modification time, which a
    /// prune reads as their last use), so that a prune that keeps what was
    /// used lately keeps them. Missing blobs
    /// and failures are ignored: this is a hint, never a reason to fail.
    pub fn touch(&self, digests: &[&Digest]) {
        let now = std::time::SystemTime::now();
        for d in digests {
            if let Ok(f) = fs::File::options().write(true).open(self.blob_path(d)) {
                let _ = f.set_modified(now);
            }
        }
    }

    /// Removes one blob; kind `NotFound` when it is not there. References
    /// to it are not checked: see [`Store::prune`] for the safe way.
    pub fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        self.forget_sources(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound { digest: digest.clone() }),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// A writer for content whose digest is not known up front.
    pub(crate) fn ingest_unknown(&self) -> Result<LocalWriter> {
        LocalWriter::create(self.root.clone(), Algorithm::Sha256, "unknown")
    }
}

fn open_blob(path: &Path, digest: &Digest) -> Result<File> {
    File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::BlobNotFound { digest: digest.clone() },
        _ => Error::Io { path: path.to_path_buf(), source: e },
    })
}

/// Names in a directory; a missing directory has none.
fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { path: dir.to_path_buf(), source: e }),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_at(dir))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

impl BlobSource for Store {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        let file = open_blob(&self.blob_path(&desc.digest), &desc.digest)?;
        Ok(Box::new(file))
    }

    fn exists(&self, digest: &Digest) -> Result<bool> {
        match self.stat(digest) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn stat(&self, digest: &Digest) -> Result<BlobInfo> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(BlobInfo { digest: digest.clone(), size: m.len() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound { digest: digest.clone() }),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }
}

impl BlobSink for Store {
    fn writer(&self, desc: &Descriptor) -> Result<BlobWriter> {
        if self.exists(&desc.digest)? {
            return Err(Error::AlreadyExists { digest: desc.digest.clone() });
        }
        let w = LocalWriter::create(self.root.clone(), desc.digest.algorithm(), desc.digest.hex())?;
        Ok(BlobWriter::new(Box::new(w)))
    }
}

/// Whether a descriptor points at something the walker should open as a
/// manifest or index.
pub(crate) fn is_manifest_type(media_type: &str) -> bool {
    media_type.is_empty() || mt::is_index(media_type) || mt::is_image_manifest(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_oci::media_type as mt;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("root")).unwrap();
        (dir, s)
    }

    #[test]
    fn put_and_read_bytes() {
        let (_d, s) = store();
        let desc = s.put_bytes(mt::OCI_CONFIG, b"{}").unwrap();
        assert_eq!(desc.size, 2);
        assert_eq!(s.read_bytes(&desc, 10).unwrap().as_ref(), b"{}");
        assert!(matches!(s.read_bytes(&desc, 1), Err(Error::TooLarge { .. })));
        // Again: idempotent.
        assert_eq!(s.put_bytes(mt::OCI_CONFIG, b"{}").unwrap(), desc);
        assert_eq!(s.blobs().unwrap(), vec![BlobInfo { digest: desc.digest.clone(), size: 2 }]);
        let mode = fs::metadata(s.blob_path(&desc.digest)).unwrap().permissions();
        assert!(mode.readonly());
    }

    #[test]
    fn read_detects_corruption_and_wrong_size() {
        let (_d, s) = store();
        let desc = s.put_bytes(mt::OCI_CONFIG, b"{\"a\":1}").unwrap();
        let mut wrong = desc.clone();
        wrong.size = 3;
        assert!(matches!(s.read_bytes(&wrong, 100), Err(Error::SizeMismatch { .. })));
        let p = s.blob_path(&desc.digest);
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"{\"a\":2}").unwrap();
        let err = s.read_bytes(&desc, 100).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        let missing = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(b"nope"), 4);
        assert_eq!(s.read_bytes(&missing, 100).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn manifests_round_trip() {
        let (_d, s) = store();
        let raw = RawManifest::from_bytes(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec(),
            None,
        )
        .unwrap();
        let desc = s.put_manifest(&raw).unwrap();
        assert_eq!(&desc.digest, raw.digest());
        let back = s.get_manifest(&desc).unwrap();
        assert_eq!(back.bytes(), raw.bytes());
        let junk = s.put_bytes(mt::OCI_MANIFEST, b"not json").unwrap();
        assert_eq!(s.get_manifest(&junk).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    /// The store sits just above the model: it must not pull in the
    /// registry, the builder or the CLI (as ggcr's depcheck_test.go guards).
    #[test]
    fn depends_only_on_the_model() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
        let ours: Vec<&str> =
            deps.lines().filter(|l| l.starts_with("polyarch-")).map(|l| l.split(['.', ' ']).next().unwrap()).collect();
        assert_eq!(ours, ["polyarch-oci"]);
    }

    #[test]
    fn delete_blob() {
        let (_d, s) = store();
        let desc = s.put_bytes(mt::OCI_CONFIG, b"x").unwrap();
        s.delete_blob(&desc.digest).unwrap();
        assert!(!s.exists(&desc.digest).unwrap());
        assert_eq!(s.delete_blob(&desc.digest).unwrap_err().kind(), ErrorKind::NotFound);
    }
}
