//! One entry's place in a rooted tree and the writes made there, all by
//! `*at` calls on the open parent that never follow the entry's name.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::{join, proc_path, remove_all_at};
use crate::error::{io_at, Error, Result};

/// Where one entry of a tree goes: its parent directory (open, resolved
/// inside the root) and its name there. Made by [`super::Root::slot`].
#[derive(Debug)]
pub struct Slot {
    dir: OwnedFd,
    name: OsString,
    path: PathBuf,
    rel: Vec<OsString>,
}

impl Slot {
    pub(crate) fn new(dir: OwnedFd, name: OsString, path: PathBuf, rel: Vec<OsString>) -> Slot {
        Slot { dir, name, path, rel }
    }

    /// The entry's path on disk, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry's path relative to the root, its parents resolved.
    pub fn resolved(&self) -> PathBuf {
        join(&self.rel)
    }

    pub(crate) fn rel(&self) -> &[OsString] {
        &self.rel
    }

    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }

    /// Whether this is the root itself.
    pub fn is_root(&self) -> bool {
        self.rel.is_empty()
    }

    fn err(&self) -> impl FnOnce(Errno) -> Error + '_ {
        move |e| Error::Io { path: self.path.clone(), source: e.into() }
    }

    /// The type of what is there now (a symlink is not followed).
    pub(crate) fn kind(&self) -> Result<Option<FileType>> {
        match rfs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Removes what is there, a directory with everything below it.
    pub fn remove(&self) -> Result<()> {
        if self.is_root() {
            return Err(self.err()(Errno::BUSY));
        }
        remove_all_at(self.dir(), &self.name).map_err(self.err())
    }

    /// Removes what is there unless both it and the new entry are
    /// directories (which merge). Returns the type that was there.
    pub(crate) fn clear_for(&self, dir: bool) -> Result<Option<FileType>> {
        let kind = self.kind()?;
        match kind {
            Some(FileType::Directory) if dir => {}
            Some(_) => self.remove()?,
            None => {}
        }
        Ok(kind)
    }

    /// Makes a directory (mode 0700 until [`Slot::set_mode`]), keeping one
    /// that is there and replacing anything else.
    pub fn make_dir(&self) -> Result<()> {
        self.clear_for(true)?;
        match rfs::mkdirat(&self.dir, &self.name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Writes a regular file (mode 0600 until [`Slot::set_mode`]) in place
    /// of what is there; returns the bytes written.
    pub fn write_file(&self, data: &mut dyn Read) -> Result<u64> {
        self.clear_for(false)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.dir, &self.name, flags, Mode::from_raw_mode(0o600)).map_err(self.err())?;
        io::copy(data, &mut File::from(fd)).map_err(io_at(&self.path))
    }

    /// Makes a symlink to `target` (kept as text) in place of what is there.
    pub fn symlink(&self, target: &[u8]) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        self.clear_for(false)?;
        rfs::symlinkat(OsStr::from_bytes(target), &self.dir, &self.name).map_err(self.err())
    }

    /// Makes a device node or FIFO (mode 0600 until [`Slot::set_mode`]).
    pub fn make_node(&self, kind: FileType, dev: u64) -> Result<()> {
        self.clear_for(false)?;
        rfs::mknodat(&self.dir, &self.name, kind, Mode::from_raw_mode(0o600), dev).map_err(self.err())
    }

    /// Makes this a hard link to the entry at `target` (which is not
    /// followed if it is a symlink, and may not be a directory).
    pub fn hard_link(&self, target: &Slot) -> Result<()> {
        if target.kind()? == Some(FileType::Directory) {
            return Err(target.err()(Errno::PERM));
        }
        self.clear_for(false)?;
        rfs::linkat(target.dir(), target.name(), &self.dir, &self.name, AtFlags::empty()).map_err(self.err())
    }

    /// Sets the owner (of a symlink itself, not its target).
    pub fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
        rfs::chownat(&self.dir, &self.name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW).map_err(self.err())
    }

    /// Sets the permission bits; a symlink has none and is left alone.
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.dir, &self.name, flags, Mode::empty()).map_err(self.err())?;
        if FileType::from_raw_mode(rfs::fstat(&fd).map_err(self.err())?.st_mode) == FileType::Symlink {
            return Ok(());
        }
        // The descriptor's /proc path names the inode opened, never a link.
        rfs::chmod(proc_path(fd.as_fd(), None), Mode::from_raw_mode(mode & 0o7777)).map_err(self.err())
    }

    /// Sets access and modification times to `mtime` (seconds).
    pub fn set_mtime(&self, mtime: i64) -> Result<()> {
        let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
        let times = Timestamps { last_access: t, last_modification: t };
        rfs::utimensat(&self.dir, &self.name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(self.err())
    }

    /// Sets an extended attribute (of a symlink itself). File systems that
    /// take none are not an error.
    pub fn set_xattr(&self, name: &str, value: &[u8]) -> Result<()> {
        let path = proc_path(self.dir(), Some(&self.name));
        match rfs::lsetxattr(&path, name, value, rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }
}
