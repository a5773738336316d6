//! Where stored blobs are known to live in registries, as containerd's
//! `containerd.io/distribution.source.<registry>=<repository>` content
//! labels: a pull notes the repository each blob came from, a push the one
//! it went to, so that a later push to another repository of that
//! registry can mount the blob instead of uploading it. A note is a hint
//! (the registry may have dropped the blob since): a push that cannot
//! mount uploads.
//!
//! Notes live in `sources/<alg>/<hex>`, one `registry repository` a line,
//! rewritten through a temp file and a rename; pruning a blob drops its
//! notes.

use std::fs;
use std::io;
use std::path::PathBuf;

use polyarch_oci::Digest;

use crate::error::{io_at, Result};
use crate::layout::write_atomic;
use crate::Store;

/// At most this many repositories are remembered per blob.
const MAX_SOURCES: usize = 16;

impl Store {
    fn source_path(&self, digest: &Digest) -> PathBuf {
        self.root().join("sources").join(digest.algorithm().name()).join(digest.hex())
    }

    /// Notes that the registry `domain` holds the blob `digest` in its
    /// repository `repo` (newest first; a known pair moves to the front).
    pub fn add_source(&self, digest: &Digest, domain: &str, repo: &str) -> Result<()> {
        let mut known = self.sources(digest)?;
        let pair = (domain.to_string(), repo.to_string());
        if known.first() == Some(&pair) {
            return Ok(());
        }
        known.retain(|p| *p != pair);
        known.insert(0, pair);
        known.truncate(MAX_SOURCES);
        let path = self.source_path(digest);
        let dir = path.parent().unwrap_or(self.root()).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let text: String = known.iter().map(|(d, r)| format!("{d} {r}\n")).collect();
        write_atomic(&dir, &path, text.as_bytes())
    }

    /// The `(registry, repository)` pairs known to hold the blob, newest
    /// first.
    pub fn sources(&self, digest: &Digest) -> Result<Vec<(String, String)>> {
        let path = self.source_path(digest);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(crate::Error::Io { path, source: e }),
        };
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(d, r)| (d.to_string(), r.to_string()))
            .filter(|(d, r)| !d.is_empty() && !r.is_empty())
            .collect())
    }

    /// The repositories of registry `domain` known to hold the blob.
    pub fn sources_on(&self, digest: &Digest, domain: &str) -> Result<Vec<String>> {
        Ok(self.sources(digest)?.into_iter().filter(|(d, _)| d == domain).map(|(_, r)| r).collect())
    }

    /// Drops the notes of a blob that is gone.
    pub(crate) fn forget_sources(&self, digest: &Digest) {
        let _ = fs::remove_file(self.source_path(digest));
    }
}

#[cfg(test)]
mod tests {
    use crate::testsuite::temp_store;
    use polyarch_oci::Digest;

    #[test]
    fn sources_are_kept_newest_first_and_dropped_with_the_blob() {
        let (_d, store) = temp_store();
        let desc = store.put_bytes("application/octet-stream", b"layer").unwrap();
        let d = &desc.digest;
        assert!(store.sources(d).unwrap().is_empty());
        store.add_source(d, "reg:5000", "library/busybox").unwrap();
        store.add_source(d, "reg:5000", "team/app").unwrap();
        store.add_source(d, "other.example", "x/y").unwrap();
        store.add_source(d, "reg:5000", "library/busybox").unwrap();
        assert_eq!(store.sources_on(d, "reg:5000").unwrap(), ["library/busybox", "team/app"]);
        assert_eq!(store.sources_on(d, "other.example").unwrap(), ["x/y"]);
        assert!(store.sources_on(&Digest::sha256(b"none"), "reg:5000").unwrap().is_empty());
        store.delete_blob(d).unwrap();
        assert!(store.sources(d).unwrap().is_empty());
        for i in 0..40 {
            store.add_source(d, "reg:5000", &format!("r{i}")).unwrap();
        }
        let all = store.sources_on(d, "reg:5000").unwrap();
        assert_eq!((all.len(), all[0].as_str()), (super::MAX_SOURCES, "r39"));
    }
}
