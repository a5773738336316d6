//! The local store's blob writer: a temp file in `ingest/`, hashed while
//! written, verified, synced and renamed into `blobs/` on commit (as in
//! containerd's plugins/content/local/writer.go).

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use polyarch_oci::{Algorithm, Digest, Digester};
use tempfile::NamedTempFile;

use crate::content::Ingest;
use crate::error::{io_at, Error, Result};
use crate::layout::{blob_path, sync_dir};

/// A blob being written to `ingest/`. The temp file carries an exclusive
/// `flock` for as long as the writer lives, which tells `prune` it is in use.
pub(crate) struct LocalWriter {
    file: BufWriter<NamedTempFile>,
    hasher: Digester,
    algorithm: Algorithm,
    written: u64,
    root: PathBuf,
}

impl LocalWriter {
    /// Starts a temp file under `root/ingest`, hashing with `algorithm`.
    pub(crate) fn create(root: PathBuf, algorithm: Algorithm, hint: &str) -> Result<LocalWriter> {
        let ingest = root.join("ingest");
        let tmp = loop {
            let tmp =
                tempfile::Builder::new().prefix(&format!("{hint}.")).tempfile_in(&ingest).map_err(io_at(&ingest))?;
            fs4::FileExt::try_lock(tmp.as_file())
                .map_err(|e| Error::Io { path: tmp.path().to_path_buf(), source: e.into() })?;
            // Before it was locked, the file looked abandoned and may have
            // been removed ([`crate::Store::reclaim_ingest`]): start another.
            if still_named(&tmp) {
                break tmp;
            }
        };
        Ok(LocalWriter {
            file: BufWriter::with_capacity(128 * 1024, tmp),
            hasher: Digester::new(algorithm),
            algorithm,
            written: 0,
            root,
        })
    }

    fn into_temp(self) -> Result<(NamedTempFile, Digester, u64, PathBuf)> {
        let LocalWriter { file, hasher, written, root, .. } = self;
        let tmp = file.into_inner().map_err(|e| {
            let (err, w) = e.into_parts();
            Error::Io { path: w.get_ref().path().to_path_buf(), source: err }
        })?;
        Ok((tmp, hasher, written, root))
    }

    /// Commits under whatever digest the content has; for archive entries
    /// whose digest is not known up front. Returns digest, size and whether
    /// the blob is new here.
    pub(crate) fn commit_computed(self) -> Result<(Digest, u64, bool)> {
        let (tmp, hasher, written, root) = self.into_temp()?;
        let digest = hasher.finish();
        let new = finish(tmp, &root, &digest)?;
        Ok((digest, written, new))
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Ingest for LocalWriter {
    fn written(&self) -> u64 {
        self.written
    }

    fn commit(self: Box<Self>, size: u64, expected: &Digest) -> Result<()> {
        let algorithm = self.algorithm;
        let (tmp, hasher, written, root) = self.into_temp()?;
        if written != size {
            return Err(Error::SizeMismatch { digest: expected.clone(), expected: size, actual: written });
        }
        let actual = if expected.algorithm() == algorithm { hasher.finish() } else { rehash(&tmp, expected)? };
        if &actual != expected {
            return Err(Error::DigestMismatch { expected: expected.clone(), actual });
        }
        finish(tmp, &root, expected).map(drop)
    }
}

/// Whether the temp file's path still names the open file.
fn still_named(tmp: &NamedTempFile) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(tmp.path()), tmp.as_file().metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn rehash(tmp: &NamedTempFile, like: &Digest) -> Result<Digest> {
    let mut f = tmp.reopen().map_err(io_at(tmp.path()))?;
    let mut h = like.digester();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_at(tmp.path()))?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// Syncs the verified temp file and renames it into place, unless the blob
/// is already there (then the temp file is dropped and this succeeds).
/// Returns whether it was put in place.
fn finish(tmp: NamedTempFile, root: &std::path::Path, digest: &Digest) -> Result<bool> {
    let target = blob_path(root, digest);
    if target.exists() {
        return Ok(false);
    }
    let parent = target.parent().map(PathBuf::from).unwrap_or_else(|| root.to_path_buf());
    fs::create_dir_all(&parent).map_err(io_at(&parent))?;
    tmp.as_file().sync_all().map_err(io_at(tmp.path()))?;
    // Blobs are immutable; make that visible in their mode.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o444)).map_err(io_at(tmp.path()))?;
    tmp.persist(&target).map_err(|e| Error::Io { path: target.clone(), source: e.error })?;
    sync_dir(&parent).map(|()| true)
}
