//! Writing trees under a root directory without ever leaving it: the one
//! place every writer of image or archive data onto disk goes through
//! (layer unpacking, snapshot copies, a build's tree for RUN, `-o
//! type=local`).
//!
//! Names are cleaned lexically first (`..` cannot climb above the root,
//! absolute names are taken relative to it, as containerd's
//! `archive/tar.go` does with `filepath.Join("/", name)`). Parent
//! directories are then resolved by [`view::View`], which reads symlinks
//! itself and follows them as if the root were `/` (absolute targets
//! restart at the root, `..` stops there), as cyphar/filepath-securejoin
//! does. The resolved path holds no symlink, and is opened one component
//! at a time with `O_NOFOLLOW`, so a link swapped in meanwhile fails the
//! write instead of redirecting it. The last component is only ever
//! touched through `*at` calls that do not follow it: a symlink inside the
//! tree stays a symlink, whose target is only text.

mod copy;
mod slot;
#[cfg(test)]
mod tests;
pub(crate) mod view;

pub(crate) use copy::{copy_node, copy_tree};
pub use slot::Slot;

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{errno_at, io_at, Error, Result};

/// Symlinks followed in one resolution before giving up, as Linux does.
pub(crate) const MAX_SYMLINKS: usize = 40;

/// Splits `name` into its components, dropping `.` and empty ones and
/// applying `..` lexically without climbing above the root.
pub(crate) fn clean(name: &[u8]) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for comp in name.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    out
}

/// Joins components with `/` into a relative path.
pub(crate) fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect()
}

/// An open root directory that paths are resolved and written in.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the existing directory `path` as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno_at(path))?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    /// Makes `path` (and its parents: a path the caller chose, not one from
    /// image data) and opens it as a root.
    pub fn create(path: &Path) -> Result<Root> {
        std::fs::create_dir_all(path).map_err(io_at(path))?;
        Root::open(path)
    }

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `comps` under the root, for messages.
    pub(crate) fn display(&self, comps: &[OsString]) -> PathBuf {
        self.path.join(join(comps))
    }

    /// Where the entry named `name` (an archive-style path) goes: its
    /// parent directories resolved inside the root and made (mode 0755)
    /// when missing. The root itself is named by `""`, `/` or `.`.
    pub fn slot(&self, name: &[u8]) -> Result<Slot> {
        let comps = clean(name);
        let Some((last, parent)) = comps.split_last() else {
            let dir = dup_dir(self.fd()).map_err(errno_at(&self.path))?;
            return Ok(Slot::new(dir, OsString::from("."), self.path.clone(), Vec::new()));
        };
        let view = view::View::new(&[self.fd()], false).map_err(errno_at(&self.path))?;
        let resolved = view.resolve(parent).map_err(errno_at(self.display(&comps)))?;
        let dir = resolved.open_in(self, true).map_err(errno_at(self.display(&comps)))?;
        let mut rel = resolved.comps();
        rel.push(last.clone());
        Ok(Slot::new(dir, last.clone(), self.display(&rel), rel))
    }

    /// Opens the directory `comps`, a path that [`view::View`] resolved
    /// (so holding no symlink), one component at a time without following
    /// any link. With `create`, missing directories are made (mode 0755).
    pub(crate) fn dir_at(&self, comps: &[OsString], create: bool) -> std::result::Result<OwnedFd, Errno> {
        let mut cur = dup_dir(self.fd())?;
        for c in comps {
            cur = match open_sub(cur.as_fd(), c) {
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    open_sub(cur.as_fd(), c)?
                }
                r => r?,
            };
        }
        Ok(cur)
    }
}

/// An `O_PATH` descriptor of the directory `dir` itself.
pub(crate) fn dup_dir(dir: BorrowedFd<'_>) -> std::result::Result<OwnedFd, Errno> {
    rfs::openat(dir, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

/// Opens the directory `name` in `dir`, refusing a symlink (`ENOTDIR`).
pub(crate) fn open_sub(dir: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rfs::openat(dir, name, flags, Mode::empty()) {
        Err(Errno::LOOP) => Err(Errno::NOTDIR),
        r => r,
    }
}

/// A path naming `name` in the directory `dir` through `/proc/self/fd`,
/// for the xattr calls that have no `*at` form. The last component is
/// never followed by the `l*xattr` calls.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if let Some(n) = name {
        p.push(n);
    }
    p
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// without following symlinks. A missing `name` is not an error.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<(), Errno> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty());
    }
    let sub =
        rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    for child in list_dir(sub.as_fd())? {
        remove_all_at(sub.as_fd(), &child)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Err(Errno::NOENT) => Ok(()),
        r => r,
    }
}

/// The names in the directory `dir` (not `.` or `..`), sorted.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> std::result::Result<Vec<OsString>, Errno> {
    let fd = rfs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rfs::Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Maps an errno to this crate's error at `path`.
pub(crate) fn io_err(path: PathBuf, e: Errno) -> Error {
    Error::Io { path, source: e.into() }
}
