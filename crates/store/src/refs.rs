//! Named references, kept in `index.json` as an OCI index whose entries
//! carry the name in `org.opencontainers.image.ref.name` and
//! `io.containerd.image.name` (as BuildKit's `type=oci` output does).
//!
//! Readers read `index.json` without locking: it is only ever replaced by a
//! rename. Writers hold `locks/index.lock` across read-modify-write.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;

use polyarch_oci::{media_type as mt, Descriptor, IndexManifest};

use crate::error::{io_at, Error, Result};
use crate::layout::{write_atomic, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::Store;

/// An exclusive lock on a file under `locks/`, released on drop.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn exclusive(path: PathBuf) -> Result<FileLock> {
        let file = open_lock_file(&path)?;
        fs4::FileExt::lock(&file).map_err(io_at(&path))?;
        Ok(FileLock { _file: file })
    }

    /// The lock if nobody holds it now, else `None`.
    pub(crate) fn try_exclusive(path: PathBuf) -> Result<Option<FileLock>> {
        let file = open_lock_file(&path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(_) => Ok(None),
        }
    }

    pub(crate) fn shared(path: PathBuf) -> Result<FileLock> {
        let file = open_lock_file(&path)?;
        fs4::FileExt::lock_shared(&file).map_err(io_at(&path))?;
        Ok(FileLock { _file: file })
    }
}

fn open_lock_file(path: &std::path::Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io_at(path))
}

/// The name an index entry carries: containerd's full name if present,
/// else the OCI ref name.
pub fn entry_name(desc: &Descriptor) -> Option<&str> {
    desc.annotation(ANNOTATION_IMAGE_NAME).or_else(|| desc.annotation(ANNOTATION_REF_NAME))
}

/// Checks a reference name: non-empty, no whitespace or control
/// characters, no longer than 4096 bytes.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| Err(Error::InvalidName { name: name.to_string(), reason });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > 4096 {
        return invalid("longer than 4096 bytes");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("contains whitespace or control characters");
    }
    Ok(())
}

impl Store {
    fn index_path(&self) -> PathBuf {
        self.root().join("index.json")
    }

    /// Reads `index.json`; a missing file is an empty index.
    pub fn read_index(&self) -> Result<IndexManifest> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::CorruptLayout { path, reason: format!("not an OCI index: {e}") }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexManifest::new(mt::OCI_INDEX)),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// Takes the index lock.
    pub(crate) fn lock_index(&self) -> Result<FileLock> {
        FileLock::exclusive(self.root().join("locks").join("index.lock"))
    }

    /// Read-modify-write of `index.json` under the index lock.
    pub(crate) fn update_index<T>(&self, f: impl FnOnce(&mut IndexManifest) -> Result<T>) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        sort_entries(&mut index.manifests);
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| Error::CorruptLayout { path: self.index_path(), reason: format!("cannot serialise: {e}") })?;
        write_atomic(self.root(), &self.index_path(), &bytes)?;
        Ok(out)
    }

    /// Points `name` at `desc` (a manifest or index that must be present;
    /// it is read and verified), replacing what it pointed at before, which
    /// is returned.
    pub fn tag(&self, name: &str, desc: &Descriptor) -> Result<Option<Descriptor>> {
        validate_name(name)?;
        let mut entry = desc.clone();
        if !crate::is_manifest_type(&desc.media_type) {
            return Err(Error::NotAManifest { digest: desc.digest.clone(), media_type: desc.media_type.clone() });
        }
        let m = self.get_manifest(desc).map_err(|e| match e {
            Error::Manifest { digest, .. } => {
                Error::NotAManifest { digest, media_type: "blob that does not parse".into() }
            }
            e => e,
        })?;
        if entry.media_type.is_empty() {
            entry.media_type = m.media_type().to_string();
        }
        let ann = entry.annotations.get_or_insert_with(Default::default);
        ann.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        ann.insert(ANNOTATION_IMAGE_NAME.to_string(), name.to_string());
        self.update_index(|index| {
            let old = take_named(&mut index.manifests, name);
            index.manifests.push(entry);
            Ok(old)
        })
    }

    /// The descriptor `name` points at, as stored (with its annotations).
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self.read_index()?.manifests.into_iter().find(|d| entry_name(d) == Some(name)))
    }

    /// Every named reference, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let mut out: Vec<_> = self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| entry_name(&d).map(str::to_string).map(|n| (n, d)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes `name` and returns what it pointed at. Blobs stay until
    /// [`Store::prune`].
    pub fn untag(&self, name: &str) -> Result<Descriptor> {
        self.update_index(|index| {
            take_named(&mut index.manifests, name).ok_or_else(|| Error::RefNotFound { name: name.to_string() })
        })
    }
}

fn take_named(entries: &mut Vec<Descriptor>, name: &str) -> Option<Descriptor> {
    let mut old = None;
    entries.retain(|d| {
        if entry_name(d) == Some(name) {
            old = Some(d.clone());
            false
        } else {
            true
        }
    });
    old
}

/// Named entries first, by name; unnamed ones (written by other tools)
/// after, in their order.
fn sort_entries(entries: &mut [Descriptor]) {
    entries.sort_by(|a, b| match (entry_name(a), entry_name(b)) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::random_image;
    use crate::ErrorKind;

    fn store() -> (tempfile::TempDir, Store) {
        crate::testsuite::temp_store()
    }

    #[test]
    fn tag_resolve_list_untag() {
        let (_d, s) = store();
        let a = random_image(&s, 1, 1).unwrap();
        let b = random_image(&s, 1, 2).unwrap();
        assert!(s.tag("docker.io/library/busybox:latest", &a).unwrap().is_none());
        s.tag("docker.io/library/alpine:3", &b).unwrap();
        let got = s.resolve("docker.io/library/busybox:latest").unwrap().unwrap();
        assert_eq!(got.digest, a.digest);
        assert_eq!(got.annotation(ANNOTATION_REF_NAME), Some("docker.io/library/busybox:latest"));
        assert_eq!(got.annotation(ANNOTATION_IMAGE_NAME), Some("docker.io/library/busybox:latest"));
        let names: Vec<_> = s.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["docker.io/library/alpine:3", "docker.io/library/busybox:latest"]);
        // The file itself is sorted too.
        let raw = s.read_index().unwrap();
        assert_eq!(entry_name(&raw.manifests[0]), Some("docker.io/library/alpine:3"));
        assert_eq!(raw.media_type.as_deref(), Some(mt::OCI_INDEX));
        // Retag replaces.
        let old = s.tag("docker.io/library/busybox:latest", &b).unwrap().unwrap();
        assert_eq!(old.digest, a.digest);
        assert_eq!(s.list().unwrap().len(), 2);
        assert_eq!(s.untag("docker.io/library/busybox:latest").unwrap().digest, b.digest);
        assert_eq!(s.untag("docker.io/library/busybox:latest").unwrap_err().kind(), ErrorKind::NotFound);
        assert!(s.resolve("docker.io/library/busybox:latest").unwrap().is_none());
    }

    #[test]
    fn tag_refuses_bad_names_and_missing_blobs() {
        let (_d, s) = store();
        let a = random_image(&s, 0, 1).unwrap();
        for bad in ["", "a b", "x\n"] {
            assert_eq!(s.tag(bad, &a).unwrap_err().kind(), ErrorKind::Invalid, "{bad:?}");
        }
        let mut missing = a.clone();
        missing.digest = polyarch_oci::Digest::sha256(b"missing");
        assert_eq!(s.tag("x", &missing).unwrap_err().kind(), ErrorKind::NotFound);
        let layer = s.put_bytes(mt::OCI_LAYER_TAR, b"layer").unwrap();
        assert!(matches!(s.tag("x", &layer), Err(Error::NotAManifest { .. })));
        let mut untyped = s.put_bytes("", b"{}").unwrap();
        assert!(matches!(s.tag("x", &untyped), Err(Error::NotAManifest { .. })));
        // An empty media type is filled in from the manifest.
        untyped = a.clone();
        untyped.media_type.clear();
        s.tag("y", &untyped).unwrap();
        assert_eq!(s.resolve("y").unwrap().unwrap().media_type, mt::OCI_MANIFEST);
    }

    #[test]
    fn keeps_foreign_entries() {
        let (_d, s) = store();
        let a = random_image(&s, 0, 1).unwrap();
        let mut foreign = a.clone();
        foreign.annotations = None;
        let mut idx = IndexManifest::new(mt::OCI_INDEX);
        idx.manifests.push(foreign);
        fs::write(s.root().join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
        s.tag("b", &a).unwrap();
        let idx = s.read_index().unwrap();
        assert_eq!(idx.manifests.len(), 2);
        assert_eq!(entry_name(&idx.manifests[0]), Some("b"));
        assert_eq!(entry_name(&idx.manifests[1]), None);
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn corrupt_index_is_reported_not_overwritten() {
        let (_d, s) = store();
        let a = random_image(&s, 0, 1).unwrap();
        fs::write(s.root().join("index.json"), b"{garbage").unwrap();
        assert_eq!(s.tag("a", &a).unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(fs::read(s.root().join("index.json")).unwrap(), b"{garbage");
    }

    #[test]
    fn many_threads_many_handles_lose_nothing() {
        let (_d, s) = store();
        let img = random_image(&s, 0, 1).unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (s, img) = (Store::open(s.root()).unwrap(), img.clone());
                scope.spawn(move || {
                    for i in 0..25 {
                        s.tag(&format!("example.com/t{t}:{i}"), &img).unwrap();
                    }
                });
            }
        });
        assert_eq!(s.list().unwrap().len(), 200);
    }
}
