//! Walking what the references reach, disk usage, and pruning what they do
//! not reach.
//!
//! Blobs written but not yet tagged look unreferenced; a process that writes
//! an image holds a [`Lease`] until it has tagged it, and `prune` waits for
//! all leases to end (a small stand-in for containerd's leases).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

use polyarch_oci::{media_type as mt, Descriptor, Digest};

use crate::error::{io_at, Error, Result};
use crate::refs::FileLock;
use crate::{is_manifest_type, read_dir_names, BlobSource, Store};

/// Keeps `prune` from running while held; see the module docs.
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

/// What [`Store::prune_with`] may remove.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unlocked temp files in `ingest/` younger than this are kept: they
    /// may belong to a writer that has not locked them yet.
    pub ingest_grace: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { ingest_grace: Duration::from_secs(60) }
    }
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Digests of removed blobs, in digest order.
    pub removed: Vec<Digest>,
    /// Bytes freed, blobs and temp files together.
    pub bytes: u64,
    /// Stale temp files removed from `ingest/`.
    pub ingest_removed: usize,
}

/// What [`Store::du`] measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Blobs present.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Present blobs reachable from a reference.
    pub referenced_blobs: usize,
    /// Their total size.
    pub referenced_bytes: u64,
    /// Temp files in `ingest/`.
    pub ingest_files: usize,
    /// Their total size.
    pub ingest_bytes: u64,
    /// Everything under the root (on its file system) as `du -sb` counts
    /// it, whatever made it: blobs, temp files, unpacked trees, state.
    pub total_bytes: u64,
}

impl DiskUsage {
    /// Bytes `prune` would free from `blobs/`.
    pub fn reclaimable_bytes(&self) -> u64 {
        self.bytes - self.referenced_bytes
    }
}

/// How the walker treats a missing blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Keep going (GC: a partial pull is still an image).
    Tolerate,
    /// Fail, except for non-distributable layers and the children of an
    /// index (a store may hold only some platforms).
    Fail,
}

impl Store {
    /// Takes a lease: `prune` waits until it is dropped. Hold one from the
    /// first blob written until the image is tagged. Do not call `prune`
    /// while holding a lease: it would wait for itself.
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease { _lock: FileLock::shared(self.root().join("locks").join("gc.lock"))? })
    }

    /// Every descriptor reachable from `roots` (index → children →
    /// config and layers), each once, in walk order. Missing blobs are
    /// included only with [`Missing::Tolerate`].
    pub(crate) fn walk(&self, roots: &[Descriptor], missing: Missing) -> Result<Vec<Descriptor>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut stack: Vec<(Descriptor, bool)> = roots.iter().rev().map(|d| (d.clone(), false)).collect();
        while let Some((desc, optional)) = stack.pop() {
            if !seen.insert(desc.digest.clone()) {
                continue;
            }
            if !self.exists(&desc.digest)? {
                let tolerated = missing == Missing::Tolerate || optional || mt::is_non_distributable(&desc.media_type);
                if !tolerated {
                    return Err(Error::BlobNotFound { digest: desc.digest });
                }
                if missing == Missing::Tolerate {
                    out.push(desc);
                }
                continue;
            }
            if is_manifest_type(&desc.media_type) {
                let m = self.get_manifest(&desc)?;
                if let Some(index) = m.as_index() {
                    stack.extend(index.manifests.iter().rev().map(|d| (d.clone(), true)));
                } else if let Some(image) = m.as_image() {
                    stack.extend(image.layers.iter().rev().map(|d| (d.clone(), false)));
                    stack.push((image.config.clone(), false));
                }
            }
            out.push(desc);
        }
        Ok(out)
    }

    /// Digests of every blob reachable from `index.json`, present or not.
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let roots = self.read_index()?.manifests;
        Ok(self.walk(&roots, Missing::Tolerate)?.into_iter().map(|d| d.digest).collect())
    }

    /// Removes unreferenced blobs and stale temp files, with default options.
    pub fn prune(&self) -> Result<PruneReport> {
        self.prune_with(&PruneOptions::default())
    }

    /// Removes blobs no reference reaches and temp files in `ingest/` that
    /// no live writer holds. Waits for leases, then holds the index lock.
    pub fn prune_with(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let _gc = FileLock::exclusive(self.root().join("locks").join("gc.lock"))?;
        let _index = self.lock_index()?;
        let keep = self.referenced_blobs()?;
        let mut report = PruneReport::default();
        for blob in self.blobs()? {
            if keep.contains(&blob.digest) {
                continue;
            }
            let path = self.blob_path(&blob.digest);
            self.forget_sources(&blob.digest);
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.bytes += blob.size;
                    report.removed.push(blob.digest);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path, source: e }),
            }
        }
        self.prune_ingest(opts, &mut report)?;
        self.prune_index_temps()?;
        Ok(report)
    }

    fn prune_ingest(&self, opts: &PruneOptions, report: &mut PruneReport) -> Result<()> {
        let (files, bytes) = self.reclaim_ingest(opts.ingest_grace)?;
        report.ingest_removed += files;
        report.bytes += bytes;
        Ok(())
    }

    /// Removes the temp files in `ingest/` that no live writer holds (a
    /// writer's lock ends with its process, killed or not) and that are
    /// older than `grace`. A writer whose new file goes before it locked it
    /// makes another, so no grace is needed for safety. Returns how many
    /// went and their bytes.
    pub fn reclaim_ingest(&self, grace: Duration) -> Result<(usize, u64)> {
        let dir = self.root().join("ingest");
        let now = SystemTime::now();
        let (mut files, mut bytes) = (0, 0);
        for name in read_dir_names(&dir)? {
            let path = dir.join(&name);
            let Ok(file) = fs::File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
            if !meta.is_file() || age < grace {
                continue;
            }
            // A live writer holds an exclusive lock on its temp file.
            if fs4::FileExt::try_lock(&file).is_err() {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    files += 1;
                    bytes += meta.len();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path, source: e }),
            }
        }
        Ok((files, bytes))
    }

    /// Removes the temp files of `index.json` a killed process left, under
    /// the index lock (every live writer makes its own under it); when
    /// another process holds the lock, a later call does it.
    pub fn reclaim_index_temps(&self) -> Result<()> {
        match FileLock::try_exclusive(self.root().join("locks").join("index.lock"))? {
            Some(_index) => self.prune_index_temps(),
            None => Ok(()),
        }
    }

    /// Temp files of `index.json` left by a killed process. Only called
    /// with the index lock held, so none of them is being written.
    fn prune_index_temps(&self) -> Result<()> {
        for name in read_dir_names(self.root())? {
            if name.starts_with(".index.json.") {
                let path = self.root().join(&name);
                fs::remove_file(&path).or_else(ignore_not_found).map_err(io_at(&path))?;
            }
        }
        Ok(())
    }

    /// Measures blobs, referenced blobs and temp files.
    pub fn du(&self) -> Result<DiskUsage> {
        let keep = self.referenced_blobs()?;
        let mut du = DiskUsage::default();
        for blob in self.blobs()? {
            du.blobs += 1;
            du.bytes += blob.size;
            if keep.contains(&blob.digest) {
                du.referenced_blobs += 1;
                du.referenced_bytes += blob.size;
            }
        }
        let dir = self.root().join("ingest");
        for name in read_dir_names(&dir)? {
            if let Ok(m) = fs::metadata(dir.join(name)) {
                du.ingest_files += 1;
                du.ingest_bytes += m.len();
            }
        }
        du.total_bytes = tree_bytes(self.root());
        Ok(du)
    }
}

/// The bytes below `dir` as `du -sb` counts them: the apparent size of
/// every inode (files, directories, symlinks, `dir` itself), hard links
/// once, without following symlinks or crossing into other file systems
/// (mounts of running containers).
pub fn tree_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(dir) else { return 0 };
    let mut seen = std::collections::HashSet::new();
    let mut total = top.len();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != top.dev() || (m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino())) {
                continue;
            }
            total += m.len();
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::{random_image, random_index};
    use crate::BlobSink;
    use std::io::Write;

    fn store() -> (tempfile::TempDir, Store) {
        crate::testsuite::temp_store()
    }

    #[test]
    fn prune_keeps_referenced_and_removes_the_rest() {
        let (_d, s) = store();
        let idx = random_index(&s, 2, 2, 10).unwrap();
        s.tag("example.com/a:1", &idx).unwrap();
        let loose = random_image(&s, 2, 20).unwrap();
        let referenced = s.referenced_blobs().unwrap();
        // index + 2 × (manifest + config + 2 layers)
        assert_eq!(referenced.len(), 1 + 2 * 4);
        let before = s.du().unwrap();
        assert_eq!(before.blobs, 9 + 4);
        let report = s.prune().unwrap();
        assert_eq!(report.removed.len(), 4);
        assert!(report.removed.contains(&loose.digest));
        assert_eq!(report.bytes, before.reclaimable_bytes());
        let after = s.du().unwrap();
        assert_eq!(after.blobs, 9);
        assert_eq!(after.reclaimable_bytes(), 0);
        assert!(s.get_manifest(&idx).is_ok());
        // Untag, prune: nothing left.
        s.untag("example.com/a:1").unwrap();
        assert_eq!(s.prune().unwrap().removed.len(), 9);
        assert!(s.blobs().unwrap().is_empty());
    }

    #[test]
    fn tolerates_missing_layers_and_children() {
        let (_d, s) = store();
        let idx = random_index(&s, 2, 1, 30).unwrap();
        s.tag("a", &idx).unwrap();
        let all = s.referenced_blobs().unwrap();
        // Drop one whole platform and one layer of the other.
        let index = s.get_manifest(&idx).unwrap();
        let child = index.as_index().unwrap().manifests[0].clone();
        s.delete_blob(&child.digest).unwrap();
        let other = s.get_manifest(&index.as_index().unwrap().manifests[1]).unwrap();
        s.delete_blob(&other.as_image().unwrap().layers[0].digest).unwrap();
        let now = s.referenced_blobs().unwrap();
        // The missing child's config and layers are no longer known.
        assert_eq!(now.len(), all.len() - 2);
        assert!(now.contains(&child.digest));
        assert_eq!(s.prune().unwrap().removed.len(), 2);
        assert!(s.walk(std::slice::from_ref(&idx), Missing::Fail).is_err());
    }

    #[test]
    fn prune_removes_stale_ingest_only() {
        let (_d, s) = store();
        let desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(b"live"), 4);
        let mut live = s.writer(&desc).unwrap();
        live.write_all(b"li").unwrap();
        live.flush().unwrap();
        let stale = s.root().join("ingest").join("dead.tmp");
        fs::write(&stale, b"12345").unwrap();
        let young = s.root().join("ingest").join("young.tmp");
        fs::write(&young, b"1").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for p in fs::read_dir(s.root().join("ingest")).unwrap() {
            let p = p.unwrap().path();
            if p != young {
                fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
            }
        }
        fs::write(s.root().join(".index.json.abc"), b"{").unwrap();
        let report = s.prune().unwrap();
        assert_eq!(report.ingest_removed, 1);
        assert_eq!(report.bytes, 5);
        assert!(!stale.exists() && young.exists());
        assert!(!s.root().join(".index.json.abc").exists());
        // The live writer still commits.
        live.write_all(b"ve").unwrap();
        live.commit(4, &desc.digest).unwrap();
        assert_eq!(s.du().unwrap().ingest_files, 1);
    }

    #[test]
    fn reclaim_takes_unheld_temp_files_at_once_and_leaves_live_writers() {
        let (_d, s) = store();
        let desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(b"live"), 4);
        let mut live = s.writer(&desc).unwrap();
        live.write_all(b"li").unwrap();
        live.flush().unwrap();
        let dead = s.root().join("ingest").join("dead.tmp");
        fs::write(&dead, b"123").unwrap();
        assert_eq!(s.reclaim_ingest(Duration::ZERO).unwrap(), (1, 3));
        assert!(!dead.exists());
        live.write_all(b"ve").unwrap();
        live.commit(4, &desc.digest).unwrap();
        assert!(s.exists(&desc.digest).unwrap());
    }

    #[test]
    fn du_counts_everything_under_the_root() {
        let (_d, s) = store();
        let img = random_image(&s, 2, 5).unwrap();
        s.tag("a", &img).unwrap();
        let before = s.du().unwrap();
        assert!(before.total_bytes >= before.bytes, "{before:?}");
        let stray = s.root().join("snapshots/x/deep");
        fs::create_dir_all(&stray).unwrap();
        fs::write(stray.join("f"), vec![0u8; 10_000]).unwrap();
        fs::hard_link(stray.join("f"), stray.join("g")).unwrap();
        std::os::unix::fs::symlink("f", stray.join("l")).unwrap();
        let dirs: u64 = ["snapshots", "snapshots/x", "snapshots/x/deep"]
            .iter()
            .map(|d| fs::metadata(s.root().join(d)).unwrap().len())
            .sum();
        assert_eq!(s.du().unwrap().total_bytes, before.total_bytes + dirs + 10_000 + 1);
    }

    #[test]
    fn prune_waits_for_leases() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let loose = s.put_bytes(mt::OCI_CONFIG, b"{}").unwrap();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.prune().unwrap());
        std::thread::sleep(Duration::from_millis(200));
        assert!(s.exists(&loose.digest).unwrap(), "prune ran during a lease");
        drop(lease);
        assert_eq!(t.join().unwrap().removed, vec![loose.digest]);
    }
}
