//! The overlayfs snapshotter (as containerd's `plugins/snapshots/overlay`):
//! a snapshot's `fs/` holds only its own changes; an active snapshot
//! mounts its parents' `fs/` directories as `lowerdir` (nearest first)
//! under its own `fs/` as `upperdir`. Diffs read the upper directory.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::records::{Record, Records};
use super::{Info, Kind, Snapshotter, Usage};
use crate::diff::diff_overlay_upper;
use crate::error::{io_at, Error, Result};
use crate::fsmeta::disk_usage;
use crate::layer::{LayerInfo, LayerOptions};
use crate::mount::Mount;
use crate::unpack::{unpack, UnpackOptions, UnpackStats, WhiteoutMode};

/// Snapshots as overlayfs layers under a root directory.
#[derive(Debug)]
pub struct OverlaySnapshotter {
    records: Records,
}

impl OverlaySnapshotter {
    /// Opens (creating) a snapshotter rooted at `root`. Use
    /// [`OverlaySnapshotter::supported`] first to know it will work.
    pub fn new(root: impl AsRef<Path>) -> Result<OverlaySnapshotter> {
        Ok(OverlaySnapshotter { records: Records::open(root.as_ref())? })
    }

    /// Whether overlayfs works under `root` (created if missing), found by
    /// mounting and unmounting a tiny overlay there.
    pub fn supported(root: &Path) -> bool {
        Self::check(root).is_ok()
    }

    /// Like [`OverlaySnapshotter::supported`], with the kernel's reason.
    pub fn check(root: &Path) -> Result<()> {
        fs::create_dir_all(root).map_err(io_at(root))?;
        let tmp = tempfile::Builder::new().prefix("overlay-check").tempdir_in(root).map_err(io_at(root))?;
        let d = |n: &str| -> Result<PathBuf> {
            let p = tmp.path().join(n);
            fs::create_dir(&p).map_err(io_at(&p))?;
            Ok(p)
        };
        let (lower, upper, work, merged) = (d("lower")?, d("upper")?, d("work")?, d("merged")?);
        let m = overlay_mount(vec![lower], &upper, &work);
        let guard = m.mount(&merged).map_err(|e| match e {
            Error::Io { source, .. } => Error::Unsupported { feature: "overlayfs", source },
            other => other,
        })?;
        guard.unmount()
    }

    /// The directories of the committed `key` and of its ancestors, nearest
    /// first, as an overlay's `lowerdir` lists them: for mounts made
    /// elsewhere (a build step's root), and for reading a layer's files
    /// where it is unpacked.
    pub fn layer_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        let rec = self.records.get(key)?;
        if rec.kind != Kind::Committed {
            return Err(Error::FailedPrecondition {
                key: key.to_string(),
                reason: "only committed snapshots are layers",
            });
        }
        let mut out = vec![self.fs_dir(&rec)];
        out.extend(self.records.ancestors(&rec)?.iter().map(|r| self.fs_dir(r)));
        Ok(out)
    }

    /// Commits the directory `upper` (on this root's file system, laid out
    /// as an overlay upper directory over `parent`'s layers, with overlay
    /// whiteouts) as `name` on `parent`, moving it in, as Docker's overlay2
    /// driver turns a container's upper directory into an image layer
    /// instead of unpacking the layer again. [`Error::AlreadyExists`] when
    /// `name` is committed already; `upper` is then left where it was.
    pub fn adopt(&self, name: &str, parent: Option<&str>, upper: &Path) -> Result<()> {
        self.records.adopt(name, parent, upper, "fs").map(|_| ())
    }

    fn fs_dir(&self, rec: &Record) -> PathBuf {
        self.records.dir(&rec.id).join("fs")
    }

    fn mount_for(&self, rec: &Record) -> Result<Mount> {
        let lowers: Vec<PathBuf> = self.records.ancestors(rec)?.iter().map(|r| self.fs_dir(r)).collect();
        let dir = self.records.dir(&rec.id);
        Ok(match (rec.kind, lowers.len()) {
            (Kind::Active, 0) => Mount::bind(&dir.join("fs"), false),
            (Kind::Active, _) => overlay_mount(lowers, &dir.join("fs"), &dir.join("work")),
            (_, 0) => Mount::bind(&dir.join("fs"), true),
            (Kind::View, 1) => Mount::bind(&lowers[0], true),
            (Kind::View, _) => read_only_overlay(lowers),
            (Kind::Committed, _) => {
                let mut all = vec![dir.join("fs")];
                all.extend(lowers);
                read_only_overlay(all)
            }
        })
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Mount> {
        let rec = self.records.create(key, kind, parent)?;
        let dir = self.records.dir(&rec.id);
        for sub in ["fs", "work"] {
            if let Err(e) = fs::create_dir(dir.join(sub)).map_err(io_at(dir.join(sub))) {
                let _ = self.records.remove(key);
                return Err(e);
            }
        }
        self.mount_for(&rec)
    }
}

fn overlay_mount(lowers: Vec<PathBuf>, upper: &Path, work: &Path) -> Mount {
    let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    let mut options = vec![
        format!("workdir={}", work.display()),
        format!("upperdir={}", upper.display()),
        format!("lowerdir={lower}"),
    ];
    options.extend(disabled_features());
    Mount { kind: "overlay".into(), source: PathBuf::from("overlay"), options }
}

/// Options turning off overlayfs features a kernel enables by default
/// that would break diffing the upper directory: `redirect_dir` (renamed
/// directories become xattrs), `metacopy` (copied-up files without data)
/// and `index` (upper directories tied to one set of lowers), as
/// containerd's overlay snapshotter and BuildKit's differ avoid them.
fn disabled_features() -> Vec<String> {
    let on = |name: &str| {
        fs::read_to_string(format!("/sys/module/overlay/parameters/{name}")).is_ok_and(|v| v.trim() == "Y")
    };
    ["index", "redirect_dir", "metacopy"].iter().filter(|n| on(n)).map(|n| format!("{n}=off")).collect()
}

/// An overlay of lower directories only, which the kernel mounts
/// read-only; it needs at least two lowers.
fn read_only_overlay(lowers: Vec<PathBuf>) -> Mount {
    let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    Mount {
        kind: "overlay".into(),
        source: PathBuf::from("overlay"),
        options: vec!["ro".into(), format!("lowerdir={lower}")],
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mount> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Mount> {
        self.create(key, parent, Kind::View)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let rec = self.records.commit(name, key)?;
        // The work directory only serves mounts of the active snapshot.
        let work = self.records.dir(&rec.id).join("work");
        let _ = fs::remove_dir_all(work);
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.records.remove(key).map(|_| ())
    }

    fn mounts(&self, key: &str) -> Result<Mount> {
        self.mount_for(&self.records.get(key)?)
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
        diff_overlay_upper(&self.fs_dir(&rec), out, opts).map(|(_, info)| info)
    }

    fn apply(&self, key: &str, layer: &mut dyn Read, opts: &UnpackOptions) -> Result<UnpackStats> {
        let rec = self.records.get(key)?;
        if rec.kind != Kind::Active {
            return Err(Error::FailedPrecondition {
                key: key.to_string(),
                reason: "layers apply to active snapshots only",
            });
        }
        // Whiteouts only mean something over lower layers; with none, the
        // upper directory is the whole tree.
        let mode = if rec.parent.is_some() { WhiteoutMode::Overlay } else { WhiteoutMode::Apply };
        // Entries resolve through the parents' merged view, so the upper
        // directory makes the same tree the naive snapshotter's copy does.
        let lowers: Vec<PathBuf> = self.records.ancestors(&rec)?.iter().map(|r| self.fs_dir(r)).collect();
        unpack(layer, &self.fs_dir(&rec), &opts.clone().with_whiteouts(mode).with_lowers(lowers))
    }
}
