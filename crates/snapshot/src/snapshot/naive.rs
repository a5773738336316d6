//! The naive snapshotter (as containerd's `plugins/snapshots/native`):
//! every snapshot is a full copy of its parent's tree, so it works on any
//! file system and needs no mounts; diffs compare the two trees.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::records::{Record, Records};
use super::{Info, Kind, Snapshotter, Usage};
use crate::diff::diff_dirs;
use crate::error::{io_at, Error, Result};
use crate::fsmeta::disk_usage;
use crate::layer::{LayerInfo, LayerOptions};
use crate::mount::Mount;
use crate::rooted::copy_tree;
use crate::unpack::{unpack, UnpackOptions, UnpackStats, WhiteoutMode};

/// Snapshots as full copies under a root directory.
#[derive(Debug)]
pub struct NaiveSnapshotter {
    records: Records,
}

impl NaiveSnapshotter {
    /// Opens (creating) a snapshotter rooted at `root`.
    pub fn new(root: impl AsRef<Path>) -> Result<NaiveSnapshotter> {
        Ok(NaiveSnapshotter { records: Records::open(root.as_ref())? })
    }

    /// The directory holding the tree of snapshot `key`.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.fs_dir(&self.records.get(key)?))
    }

    fn fs_dir(&self, rec: &Record) -> PathBuf {
        self.records.dir(&rec.id).join("fs")
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Mount> {
        let rec = self.records.create(key, kind, parent)?;
        let dst = self.fs_dir(&rec);
        let made = match parent {
            Some(p) => {
                let src = self.fs_dir(&self.records.get(p)?);
                copy_tree(&src, &dst).map_err(io_at(&dst))
            }
            None => fs::create_dir(&dst).map_err(io_at(&dst)),
        };
        if let Err(e) = made {
            let _ = self.records.remove(key);
            return Err(e);
        }
        Ok(Mount::bind(&dst, kind != Kind::Active))
    }
}

impl Snapshotter for NaiveSnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mount> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Mount> {
        self.create(key, parent, Kind::View)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.records.commit(name, key).map(|_| ())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.records.remove(key).map(|_| ())
    }

    fn mounts(&self, key: &str) -> Result<Mount> {
        let rec = self.records.get(key)?;
        Ok(Mount::bind(&self.fs_dir(&rec), rec.kind != Kind::Active))
    }

    fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.records.get(key)?.info())
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let dir = self.fs_dir(&self.records.get(key)?);
        let (size, inodes) = disk_usage(&dir).map_err(io_at(&dir))?;
        Ok(Usage { size, inodes })
    }

    fn list(&self) -> Result<Vec<Info>> {
        Ok(self.records.list()?.iter().map(Record::info).collect())
    }

    fn diff(&self, key: &str, out: &mut dyn Write, opts: &LayerOptions) -> Result<LayerInfo> {
        let rec = self.records.get(key)?;
        let lower = rec.parent.as_deref().map(|p| self.records.get(p)).transpose()?.map(|r| self.fs_dir(&r));
        diff_dirs(lower.as_deref(), &self.fs_dir(&rec), out, opts).map(|(_, info)| info)
    }

    fn apply(&self, key: &str, layer: &mut dyn Read, opts: &UnpackOptions) -> Result<UnpackStats> {
        let rec = self.records.get(key)?;
        if rec.kind != Kind::Active {
            return Err(Error::FailedPrecondition {
                key: key.to_string(),
                reason: "layers apply to active snapshots only",
            });
        }
        let opts = opts.clone().with_whiteouts(WhiteoutMode::Apply);
        unpack(layer, &self.fs_dir(&rec), &opts)
    }
}
