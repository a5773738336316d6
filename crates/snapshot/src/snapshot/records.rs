//! Snapshot metadata shared by both snapshotters: one JSON file per key
//! in `metadata/` (named by the key's sha256, so any key is a valid file
//! name), and one directory per snapshot in `snapshots/<id>/`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use polyarch_oci::Digest;
use serde::{Deserialize, Serialize};

use super::{Info, Kind};
use crate::error::{io_at, Error, Result};

/// One snapshot's metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) parent: Option<String>,
}

impl Record {
    pub(crate) fn info(&self) -> Info {
        Info { key: self.key.clone(), kind: self.kind, parent: self.parent.clone() }
    }
}

/// A suffix no other call in any process returns.
pub(crate) fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The metadata of one snapshotter root. Changes are serialised within a
/// process by a mutex.
#[derive(Debug)]
pub(crate) struct Records {
    root: PathBuf,
    lock: Mutex<()>,
}

impl Records {
    pub(crate) fn open(root: &Path) -> Result<Records> {
        for d in ["metadata", "snapshots"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        Ok(Records { root: root.to_path_buf(), lock: Mutex::new(()) })
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("metadata").join(format!("{}.json", Digest::sha256(key.as_bytes()).hex()))
    }

    /// The directory of the snapshot with `id`.
    pub(crate) fn dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }

    pub(crate) fn get(&self, key: &str) -> Result<Record> {
        let path = self.meta_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound { key: key.to_string() }),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        let rec: Record = serde_json::from_slice(&bytes)
            .map_err(|e| Error::CorruptMetadata { path: path.clone(), reason: e.to_string() })?;
        if rec.key != key {
            return Err(Error::CorruptMetadata { path, reason: format!("names key {:?}", rec.key) });
        }
        Ok(rec)
    }

    pub(crate) fn list(&self) -> Result<Vec<Record>> {
        let dir = self.root.join("metadata");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = e.map_err(io_at(&dir))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io_at(&path))?;
            let rec: Record =
                serde_json::from_slice(&bytes).map_err(|e| Error::CorruptMetadata { path, reason: e.to_string() })?;
            out.push(rec);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Writes `rec`'s file atomically. A new one never replaces a record
    /// another process wrote meanwhile (the in-process lock does not see
    /// other processes): that is [`Error::AlreadyExists`].
    fn write(&self, rec: &Record) -> Result<()> {
        let dir = self.root.join("metadata");
        let path = self.meta_path(&rec.key);
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_at(&dir))?;
        let json = serde_json::to_vec(rec)
            .map_err(|e| Error::CorruptMetadata { path: path.clone(), reason: e.to_string() })?;
        tmp.write_all(&json).map_err(io_at(tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_at(tmp.path()))?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists { key: rec.key.clone() })
            }
            Err(e) => Err(Error::Io { path, source: e.error }),
        }
    }

    /// Records a new snapshot `key` on `parent` and makes its directory.
    pub(crate) fn create(&self, key: &str, kind: Kind, parent: Option<&str>) -> Result<Record> {
        let _g = self.guard();
        self.add(key, kind, parent, |_| Ok(()), |_| {})
    }

    /// Checks that `key` is new and `parent` committed, makes the
    /// snapshot's directory, lets `fill` put its content there, and writes
    /// the record; when writing it fails, `unfill` takes back what `fill`
    /// put there, and on any failure the directory goes. Call under the
    /// lock.
    fn add(
        &self,
        key: &str,
        kind: Kind,
        parent: Option<&str>,
        fill: impl FnOnce(&Path) -> Result<()>,
        unfill: impl FnOnce(&Path),
    ) -> Result<Record> {
        if key.is_empty() || key.contains('\0') {
            return Err(Error::InvalidKey { key: key.to_string(), reason: "empty or holding NUL" });
        }
        match self.get(key) {
            Ok(_) => return Err(Error::AlreadyExists { key: key.to_string() }),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = parent {
            if self.get(p)?.kind != Kind::Committed {
                return Err(Error::FailedPrecondition { key: p.to_string(), reason: "a parent must be committed" });
            }
        }
        let snaps = self.root.join("snapshots");
        let dir = tempfile::Builder::new().prefix("s").tempdir_in(&snaps).map_err(io_at(&snaps))?.keep();
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rec = Record { key: key.to_string(), id, kind, parent: parent.map(str::to_string) };
        let done = fill(&dir).and_then(|()| self.write(&rec).inspect_err(|_| unfill(&dir)));
        if let Err(e) = done {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(rec)
    }

    /// Renames the active `key` to the committed `name`.
    pub(crate) fn commit(&self, name: &str, key: &str) -> Result<Record> {
        let _g = self.guard();
        let rec = self.get(key)?;
        if rec.kind != Kind::Active {
            return Err(Error::FailedPrecondition {
                key: key.to_string(),
                reason: "only active snapshots can be committed",
            });
        }
        match self.get(name) {
            Ok(_) => return Err(Error::AlreadyExists { key: name.to_string() }),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let committed = Record { key: name.to_string(), kind: Kind::Committed, ..rec };
        self.write(&committed)?;
        let old = self.meta_path(key);
        fs::remove_file(&old).map_err(io_at(old))?;
        Ok(committed)
    }

    /// Records the directory `tree` (on the same file system) as the
    /// committed `name` on `parent`: it is moved to the new snapshot's
    /// `sub` directory. When `name` exists already (another process may
    /// have made it meanwhile), nothing is recorded and `tree` stays.
    pub(crate) fn adopt(&self, name: &str, parent: Option<&str>, tree: &Path, sub: &str) -> Result<Record> {
        let _g = self.guard();
        let fill = |dir: &Path| fs::rename(tree, dir.join(sub)).map_err(io_at(tree));
        // Back where it was, so the caller still owns it.
        let unfill = |dir: &Path| drop(fs::rename(dir.join(sub), tree));
        self.add(name, Kind::Committed, parent, fill, unfill)
    }

    /// Forgets `key` and deletes its directory; refused while a snapshot
    /// names it as parent.
    pub(crate) fn remove(&self, key: &str) -> Result<Record> {
        let _g = self.guard();
        let rec = self.get(key)?;
        if self.list()?.iter().any(|r| r.parent.as_deref() == Some(key)) {
            return Err(Error::FailedPrecondition { key: key.to_string(), reason: "other snapshots sit on it" });
        }
        let meta = self.meta_path(key);
        fs::remove_file(&meta).map_err(io_at(meta))?;
        let dir = self.dir(&rec.id);
        fs::remove_dir_all(&dir).map_err(io_at(dir))?;
        Ok(rec)
    }

    /// `rec`'s ancestors, nearest first.
    pub(crate) fn ancestors(&self, rec: &Record) -> Result<Vec<Record>> {
        let mut out: Vec<Record> = Vec::new();
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            let r = self.get(&p)?;
            next = r.parent.clone();
            out.push(r);
            if out.len() > 4096 {
                return Err(Error::CorruptMetadata { path: self.meta_path(&p), reason: "parent chain loops".into() });
            }
        }
        Ok(out)
    }
}
