//! Applying an OCI layer (an uncompressed tar) onto a directory.
//!
//! Every entry is placed inside the root: names are cleaned so `..` and
//! absolute paths stay inside, parent directories are opened with
//! symlinks resolved as if the root were `/` (see [`crate::path`]), and the
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
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{io_at, Error, Result};
use crate::path::{clean, io_err, list_dir, remove_all_at, Root};
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
    /// Resolve without openat2, to test the fallback walk.
    #[cfg(test)]
    pub(crate) force_walk: bool,
}

impl std::fmt::Debug for UnpackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnpackOptions")
            .field("special_files", &self.special_files)
            .field("same_owner", &self.same_owner)
            .field("xattrs", &self.xattrs)
            .field("id_map", &self.id_map.is_some())
            .field("whiteouts", &self.whiteouts)
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
            #[cfg(test)]
            force_walk: false,
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
    #[allow(unused_mut)]
    let mut root = Root::open(dest)?;
    #[cfg(test)]
    if opts.force_walk {
        root = root.without_openat2();
    }
    let mut u = Unpacker { root, opts, stats: UnpackStats::default(), seen: HashSet::new(), dirs: Vec::new() };
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
    root: Root,
    opts: &'a UnpackOptions,
    stats: UnpackStats,
    /// Cleaned paths this layer wrote, which opaque markers keep.
    seen: HashSet<PathBuf>,
    /// Directories whose mtime is set after their contents.
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
        // Ancestors count as written too: an opaque marker higher up must
        // not remove the directories this entry lives in.
        for i in 1..=comps.len() {
            self.seen.insert(crate::path::join(&comps[..i]));
        }
        let pfd = self.root.open_dir(parent, true)?;
        self.create(entry, &meta, &pfd, &comps, &raw)
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        meta: &EntryMeta,
        pfd: &OwnedFd,
        comps: &[OsString],
        raw: &[u8],
    ) -> Result<()> {
        let name = comps.last().map(|c| c.as_os_str()).unwrap_or_default();
        let at = || self.root.display(comps);
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block | EntryType::Fifo) && !self.opts.special_files {
            self.stats.skipped_special += 1;
            return Ok(());
        }
        let is_dir = kind == EntryType::Directory;
        self.replace_existing(pfd, name, is_dir).map_err(|e| io_err(at(), e))?;
        match kind {
            EntryType::Directory => {
                match rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err(at(), e)),
                }
                self.stats.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => self.write_file(entry, pfd, name, raw, at())?,
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::entry(raw, "symlink without a target"))?;
                rfs::symlinkat(OsStr::from_bytes(&target), pfd, name).map_err(|e| io_err(at(), e))?;
                self.stats.symlinks += 1;
            }
            EntryType::Link => return self.hardlink(entry, pfd, name, raw),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                meta::mknod(pfd, name, kind, entry.header()).map_err(|e| io_err(at(), e))?;
                self.stats.special += 1;
            }
            _ => return Err(Error::entry(raw, "unsupported entry type")),
        }
        self.apply_meta(meta, pfd, name, kind, comps)
    }

    /// Removes whatever is at `name` unless both it and the new entry are
    /// directories (which merge).
    fn replace_existing(&self, pfd: &OwnedFd, name: &OsStr, is_dir: bool) -> std::result::Result<(), Errno> {
        match rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir && rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => Ok(()),
            Ok(_) => remove_all_at(pfd.as_fd(), name),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pfd: &OwnedFd,
        name: &OsStr,
        raw: &[u8],
        at: PathBuf,
    ) -> Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(pfd, name, flags, Mode::from_raw_mode(0o600)).map_err(|e| io_err(at.clone(), e))?;
        let mut file = File::from(fd);
        let want = entry.size();
        let n = io::copy(entry, &mut file).map_err(io_at(&at))?;
        if n != want {
            return Err(Error::entry(raw, "file content is shorter than its header says"));
        }
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    fn hardlink<R: Read>(&mut self, entry: &tar::Entry<'_, R>, pfd: &OwnedFd, name: &OsStr, raw: &[u8]) -> Result<()> {
        let target = entry.link_name_bytes().ok_or_else(|| Error::entry(raw, "hard link without a target"))?;
        let tcomps = clean(&target);
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(Error::entry(raw, "hard link to the root"));
        };
        let tfd = match self.root.open_dir(tparent, false) {
            Ok(fd) => fd,
            Err(_) => return Err(Error::entry(raw, "hard link target is not in the layer's root")),
        };
        match rfs::statat(&tfd, tname.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::Directory => {}
            Ok(_) => return Err(Error::entry(raw, "hard link to a directory")),
            Err(_) => return Err(Error::entry(raw, "hard link target is not in the layer's root")),
        }
        rfs::linkat(&tfd, tname.as_os_str(), pfd, name, AtFlags::empty())
            .map_err(|e| io_err(self.root.path().join(OsStr::from_bytes(raw)), e))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn apply_meta(
        &mut self,
        meta: &EntryMeta,
        pfd: &OwnedFd,
        name: &OsStr,
        kind: EntryType,
        comps: &[OsString],
    ) -> Result<()> {
        let at = || self.root.display(comps);
        if self.opts.same_owner {
            let (uid, gid) = match &self.opts.id_map {
                Some(map) => map(meta.uid, meta.gid),
                None => (meta.uid, meta.gid),
            };
            meta::chown(pfd, name, uid, gid).map_err(|e| io_err(at(), e))?;
        }
        if kind != EntryType::Symlink {
            rfs::chmodat(pfd, name, Mode::from_raw_mode(meta.mode & 0o7777), AtFlags::empty())
                .map_err(|e| io_err(at(), e))?;
        }
        if self.opts.xattrs {
            meta.set_xattrs(pfd, name).map_err(|e| io_err(at(), e))?;
        }
        if kind == EntryType::Directory {
            self.dirs.push((comps.to_vec(), meta.mtime));
            return Ok(());
        }
        meta::set_mtime(pfd, name, meta.mtime).map_err(|e| io_err(at(), e))
    }

    fn whiteout(&mut self, parent: &[OsString], target: &OsStr) -> Result<()> {
        let at = |r: &Root| r.display(parent).join(target);
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                let pfd = match self.root.open_dir(parent, false) {
                    Ok(fd) => fd,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                remove_all_at(pfd.as_fd(), target).map_err(|e| io_err(at(&self.root), e))
            }
            WhiteoutMode::Overlay => {
                let pfd = self.root.open_dir(parent, true)?;
                remove_all_at(pfd.as_fd(), target).map_err(|e| io_err(at(&self.root), e))?;
                meta::overlay_whiteout(&pfd, target).map_err(|e| io_err(at(&self.root), e))
            }
        }
    }

    fn opaque(&mut self, dir: &[OsString]) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                let fd = match self.root.open_dir(dir, false) {
                    Ok(fd) => fd,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let base = crate::path::join(dir);
                self.remove_unseen(&fd, &base).map_err(|e| io_err(self.root.display(dir), e))
            }
            WhiteoutMode::Overlay => {
                let fd = self.root.open_dir(dir, true)?;
                meta::set_overlay_opaque(&fd).map_err(|e| io_err(self.root.display(dir), e))
            }
        }
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
            let Ok(pfd) = self.root.open_dir(parent, false) else { continue };
            match meta::set_mtime(&pfd, name, *mtime) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err(self.root.display(comps), e)),
            }
        }
        Ok(())
    }
}

fn is_missing(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if matches!(source.raw_os_error(), Some(c) if c == Errno::NOENT.raw_os_error() || c == Errno::NOTDIR.raw_os_error()))
}
