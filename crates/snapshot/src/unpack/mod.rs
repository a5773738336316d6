//! Applying an OCI layer (an uncompressed tar) onto a directory.
//!
//! Every entry is placed inside the root: names are cleaned so `..` and
//! absolute paths stay inside, parent directories are opened with
//! symlinks resolved as if the root were `/` (see [`crate::rooted`]), and the
//! last component is always created with `O_NOFOLLOW`/`*at` calls on the
//! parent's descriptor. Whiteouts follow the image-spec's layer.md:
//! `.wh.NAME` deletes `NAME`, `.wh..wh..opq` removes what lower layers put
//! in the directory; other `.wh..wh.` names (AUFS's `plnk`, `aufs`) are
//! ignored, as containerd's `archive/tar.go` does.

pub(crate) mod meta;

pub use meta::{pax_xattr, XattrRecord};
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{errno_at, io_at, Error, Result};
use crate::rooted::view::{self, Found, Resolved, View};
use crate::rooted::{clean, copy_node, io_err, join, list_dir, remove_all_at, Root, Slot};
use meta::EntryMeta;

/// The prefix of a whiteout name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The prefix of whiteout meta names (AUFS's `plnk`, `aufs`, and opaque).
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The name that marks its directory opaque.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// Maps a layer's uid and gid to the ones to write on disk (for user
/// namespaces).
pub type IdMap = Arc<dyn Fn(u32, u32) -> (u32, u32) + Send + Sync>;

/// How whiteout entries are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhiteoutMode {
    /// Delete what they name: the target holds the merged tree.
    #[default]
    Apply,
    /// Write overlayfs whiteouts (char device 0/0, `trusted.overlay.opaque`)
    /// into an overlay upper directory that holds only this layer.
    Overlay,
}

/// Options for [`unpack`].
#[derive(Clone)]
pub struct UnpackOptions {
    special_files: bool,
    same_owner: bool,
    xattrs: bool,
    id_map: Option<IdMap>,
    whiteouts: WhiteoutMode,
    lowers: Vec<PathBuf>,
}

impl std::fmt::Debug for UnpackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnpackOptions")
            .field("special_files", &self.special_files)
            .field("same_owner", &self.same_owner)
            .field("xattrs", &self.xattrs)
            .field("id_map", &self.id_map.is_some())
            .field("whiteouts", &self.whiteouts)
            .field("lowers", &self.lowers)
            .finish()
    }
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions::new()
    }
}

impl UnpackOptions {
    /// Defaults for the current user: as root, device nodes and FIFOs are
    /// created and owners kept; otherwise both are skipped.
    pub fn new() -> UnpackOptions {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            special_files: root,
            same_owner: root,
            xattrs: true,
            id_map: None,
            whiteouts: WhiteoutMode::Apply,
            lowers: Vec::new(),
        }
    }

    /// Whether to create device nodes and FIFOs (skipped and counted when off).
    pub fn with_special_files(mut self, on: bool) -> Self {
        self.special_files = on;
        self
    }

    /// Whether to set owners from the archive.
    pub fn with_same_owner(mut self, on: bool) -> Self {
        self.same_owner = on;
        self
    }

    /// Whether to set extended attributes from PAX `SCHILY.xattr.*` records.
    pub fn with_xattrs(mut self, on: bool) -> Self {
        self.xattrs = on;
        self
    }

    /// Maps archive ids before they are set.
    pub fn with_id_map(mut self, map: Option<IdMap>) -> Self {
        self.id_map = map;
        self
    }

    /// How whiteouts are applied.
    pub fn with_whiteouts(mut self, mode: WhiteoutMode) -> Self {
        self.whiteouts = mode;
        self
    }

    /// The lower layers (nearest first) the target is an overlay upper
    /// directory over, with [`WhiteoutMode::Overlay`]: each entry's parent
    /// directories resolve through the merged view of them and the layer's
    /// own earlier entries, so the entry lands where applying the layer onto
    /// the merged tree would put it (a lower `lib -> usr/lib` makes `lib/x`
    /// land in `usr/lib/x`); directories it needs are copied up with the
    /// lowers' metadata, as overlayfs does.
    pub fn with_lowers(mut self, lowers: Vec<PathBuf>) -> Self {
        self.lowers = lowers;
        self
    }
}

/// What [`unpack`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// Entries read from the archive.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Device nodes and FIFOs created.
    pub special: u64,
    /// Device nodes and FIFOs skipped because the options forbid them.
    pub skipped_special: u64,
    /// Whiteouts applied (opaque markers included).
    pub whiteouts: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Applies the uncompressed layer tar `reader` onto `dest`.
pub fn unpack<R: Read>(reader: R, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let root = Root::open(dest)?;
    let overlay = opts.whiteouts == WhiteoutMode::Overlay;
    let lowers =
        if overlay { opts.lowers.iter().map(|p| Root::open(p)).collect::<Result<Vec<_>>>()? } else { Vec::new() };
    let mut fds = vec![root.fd()];
    fds.extend(lowers.iter().map(Root::fd));
    let view = View::new(&fds, overlay).map_err(errno_at(dest))?;
    let mut u = Unpacker {
        root: &root,
        view,
        overlay,
        opts,
        stats: UnpackStats::default(),
        seen: HashSet::new(),
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(io_at(dest))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(dest, e))?;
        u.stats.entries += 1;
        u.entry(&mut entry)?;
    }
    u.restore_dir_times()?;
    Ok(u.stats)
}

/// Like [`unpack`] for a layer that may be gzip- or zstd-compressed.
pub fn unpack_compressed<R: Read>(reader: R, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let r = crate::compress::decompress(reader).map_err(io_at(dest))?;
    unpack(r, dest, opts)
}

fn archive_err(dest: &Path, e: io::Error) -> Error {
    Error::Io { path: dest.to_path_buf(), source: e }
}

struct Unpacker<'a> {
    root: &'a Root,
    /// The target (layer 0) over its lowers, where parents resolve.
    view: View,
    overlay: bool,
    opts: &'a UnpackOptions,
    stats: UnpackStats,
    /// Resolved paths this layer wrote, which opaque markers keep.
    seen: HashSet<PathBuf>,
    /// Directories (resolved) whose mtime is set after their contents.
    dirs: Vec<(Vec<OsString>, i64)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let comps = clean(&raw);
        let Some((name, parent)) = comps.split_last() else {
            // The root itself: its metadata belongs to whoever made it.
            return Ok(());
        };
        if comps.iter().any(|c| c.as_bytes().starts_with(WHITEOUT_META_PREFIX.as_bytes()) && c != name) {
            return Ok(());
        }
        let bytes = name.as_bytes();
        if bytes == WHITEOUT_OPAQUE.as_bytes() {
            self.stats.whiteouts += 1;
            return self.opaque(parent);
        }
        if bytes.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            return Ok(());
        }
        if let Some(target) = bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if target.is_empty() || target == b"." || target == b".." {
                return Err(Error::entry(&raw, "whiteout of an invalid name"));
            }
            self.stats.whiteouts += 1;
            return self.whiteout(parent, OsStr::from_bytes(target));
        }
        let meta = EntryMeta::read(entry, &raw)?;
        let at = self.root.display(&comps);
        let parent = self.view.resolve(parent).map_err(|e| io_err(at.clone(), e))?;
        let pfd = parent.open_in(self.root, true).map_err(|e| io_err(at, e))?;
        let mut rel = parent.comps();
        rel.push(name.clone());
        // Ancestors count as written too: an opaque marker higher up must
        // not remove the directories this entry lives in.
        for i in 1..=rel.len() {
            self.seen.insert(join(&rel[..i]));
        }
        let slot = Slot::new(pfd, name.clone(), self.root.display(&rel), rel);
        self.create(entry, &meta, &slot, &parent, &raw)
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        meta: &EntryMeta,
        slot: &Slot,
        parent: &Resolved,
        raw: &[u8],
    ) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block | EntryType::Fifo) && !self.opts.special_files {
            self.stats.skipped_special += 1;
            return Ok(());
        }
        match kind {
            EntryType::Directory => {
                let before = slot.kind()?;
                slot.make_dir()?;
                if self.overlay && before.is_some_and(|k| k != rfs::FileType::Directory) {
                    self.hide_lower_dir(slot, parent)?;
                }
                self.stats.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                let want = entry.size();
                let n = slot.write_file(entry)?;
                if n != want {
                    return Err(Error::entry(raw, "file content is shorter than its header says"));
                }
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::entry(raw, "symlink without a target"))?;
                slot.symlink(&target)?;
                self.stats.symlinks += 1;
            }
            EntryType::Link => return self.hardlink(entry, slot, raw),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                slot.make_node(meta::node_type(kind), meta::device(entry.header()))?;
                self.stats.special += 1;
            }
            _ => return Err(Error::entry(raw, "unsupported entry type")),
        }
        self.apply_meta(meta, slot, kind)
    }

    /// A directory made where this layer had put something else (or a
    /// whiteout) hides what the lowers have there: the entry it replaced
    /// had replaced theirs, so it is opaque.
    fn hide_lower_dir(&self, slot: &Slot, parent: &Resolved) -> Result<()> {
        let dirs = parent.dirs();
        let lowers = if dirs.first().is_some_and(|(i, _)| *i == 0) { &dirs[1..] } else { dirs };
        let err = |e| io_err(slot.path().to_path_buf(), e);
        if let Found::Dir(_) = self.view.lookup(lowers, slot.name()).map_err(err)? {
            let fd = crate::rooted::open_sub(slot.dir(), slot.name()).map_err(err)?;
            view::set_opaque(fd.as_fd()).map_err(err)?;
        }
        Ok(())
    }

    fn hardlink<R: Read>(&mut self, entry: &tar::Entry<'_, R>, slot: &Slot, raw: &[u8]) -> Result<()> {
        let outside = || Error::entry(raw, "hard link target is not in the layer's root");
        let target = entry.link_name_bytes().ok_or_else(|| Error::entry(raw, "hard link without a target"))?;
        let tcomps = clean(&target);
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(Error::entry(raw, "hard link to the root"));
        };
        let tres = self.view.resolve(tparent).map_err(|_| outside())?;
        let err = |e| io_err(self.root.display(&tcomps), e);
        let layer = match self.view.lookup(tres.dirs(), tname).map_err(err)? {
            Found::Missing { .. } => return Err(outside()),
            Found::Dir(_) => return Err(Error::entry(raw, "hard link to a directory")),
            Found::Symlink(i) | Found::Other(i) => i,
        };
        let tdir = tres.open_in(self.root, layer != 0).map_err(err)?;
        if layer != 0 {
            // A lower layer's file: copied up first, as overlayfs does.
            let lower = tres.dirs().iter().find(|(i, _)| *i == layer).map(|(_, fd)| fd.as_fd()).ok_or_else(outside)?;
            copy_node(lower, tname, tdir.as_fd(), tname).map_err(err)?;
        }
        let mut trel = tres.comps();
        trel.push(tname.clone());
        let tslot = Slot::new(tdir, tname.clone(), self.root.display(&trel), trel);
        slot.hard_link(&tslot)?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn apply_meta(&mut self, meta: &EntryMeta, slot: &Slot, kind: EntryType) -> Result<()> {
        if self.opts.same_owner {
            let (uid, gid) = match &self.opts.id_map {
                Some(map) => map(meta.uid, meta.gid),
                None => (meta.uid, meta.gid),
            };
            slot.set_owner(uid, gid)?;
        }
        if kind != EntryType::Symlink {
            slot.set_mode(meta.mode)?;
        }
        if self.opts.xattrs {
            for (k, v) in &meta.xattrs {
                slot.set_xattr(k, v)?;
            }
        }
        if kind == EntryType::Directory {
            self.dirs.push((slot.rel().to_vec(), meta.mtime));
            return Ok(());
        }
        slot.set_mtime(meta.mtime)
    }

    /// The directory `dir` resolved, or `None` when it is in no layer (so
    /// a whiteout or opaque marker in it has nothing to act on).
    fn existing(&self, dir: &[OsString]) -> Result<Option<(Resolved, OwnedFd)>> {
        let at = || self.root.display(dir);
        let r = match self.view.resolve(dir) {
            Ok(r) if r.exists() => r,
            Ok(_) | Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(io_err(at(), e)),
        };
        let fd = r.open_in(self.root, self.overlay).map_err(|e| io_err(at(), e))?;
        Ok(Some((r, fd)))
    }

    fn whiteout(&mut self, parent: &[OsString], target: &OsStr) -> Result<()> {
        let Some((r, pfd)) = self.existing(parent)? else { return Ok(()) };
        let at = self.root.display(&r.comps()).join(target);
        remove_all_at(pfd.as_fd(), target).map_err(|e| io_err(at.clone(), e))?;
        if self.overlay {
            meta::overlay_whiteout(&pfd, target).map_err(|e| io_err(at, e))?;
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &[OsString]) -> Result<()> {
        let Some((r, fd)) = self.existing(dir)? else { return Ok(()) };
        let at = || self.root.display(&r.comps());
        if self.overlay {
            view::set_opaque(fd.as_fd()).map_err(|e| io_err(at(), e))?;
        }
        // In an upper directory too: what the layer did not write there
        // (copied-up files, earlier whiteouts) goes, as it would from the
        // merged tree.
        self.remove_unseen(&fd, &join(&r.comps())).map_err(|e| io_err(at(), e))
    }

    /// Removes everything below `fd` that this layer did not write.
    fn remove_unseen(&self, fd: &OwnedFd, base: &Path) -> std::result::Result<(), Errno> {
        for name in list_dir(fd.as_fd())? {
            let path = base.join(&name);
            if !self.seen.contains(&path) {
                remove_all_at(fd.as_fd(), &name)?;
                continue;
            }
            let st = rfs::statat(fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let sub = rfs::openat(fd, name.as_os_str(), flags, Mode::empty())?;
                self.remove_unseen(&sub, &path)?;
            }
        }
        Ok(())
    }

    fn restore_dir_times(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, mtime) in dirs.iter().rev() {
            let Some((name, parent)) = comps.split_last() else { continue };
            let Ok(pfd) = self.root.dir_at(parent, false) else { continue };
            match meta::set_mtime(&pfd, name, *mtime) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err(self.root.display(comps), e)),
            }
        }
        Ok(())
    }
}
