//! Copying entries and trees between directories by descriptor, never
//! following a link: the naive snapshotter's copies and overlay copy-ups.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::{dup_dir, list_dir, open_sub, proc_path, Root};

/// Extended attributes of the file `path` names (following it: a
/// `/proc/self/fd` path), without overlayfs's own.
fn xattrs_of(path: &Path) -> Result<Vec<(String, Vec<u8>)>, Errno> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rfs::listxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        if crate::fsmeta::is_overlay_xattr(name) {
            continue;
        }
        let mut v = vec![0u8; 256];
        loop {
            match rfs::getxattr(path, name, &mut v[..]) {
                Ok(n) => {
                    v.truncate(n);
                    out.push((name.to_string(), v));
                    break;
                }
                Err(Errno::RANGE) if v.len() < 1 << 20 => v.resize(v.len() * 4, 0),
                Err(Errno::NODATA) | Err(Errno::NOTSUP) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// Sets owner, mode, xattrs and times of `name` in `dir` from `st`, in
/// the order that keeps setuid bits and file capabilities (chown clears
/// both). Nothing follows `name` if it is a symlink.
fn set_meta(dir: BorrowedFd<'_>, name: &OsStr, st: &Stat, xattrs: &[(String, Vec<u8>)]) -> Result<(), Errno> {
    let (u, g) = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
    match rfs::chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => {}
        // Unprivileged copies keep the copier's ids.
        Err(Errno::PERM) if !rustix::process::geteuid().is_root() => {}
        Err(e) => return Err(e),
    }
    let is_link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
    if !is_link {
        rfs::chmodat(dir, name, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty())?;
    }
    let path = proc_path(dir, Some(name));
    for (k, v) in xattrs {
        match rfs::lsetxattr(&path, k.as_str(), v, rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
            Err(e) => return Err(e),
        }
    }
    let times = Timestamps {
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
    };
    rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
}

/// Gives `name` in `dir` the metadata of the directory `from` (an
/// `O_PATH` descriptor), as overlayfs does when it copies a directory up.
pub(crate) fn copy_meta_from(from: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let st = rfs::fstat(from)?;
    let x = xattrs_of(&proc_path(from, None))?;
    set_meta(dir, name, &st, &x)
}

/// Copies the non-directory `name` of `src` to `dst_name` in `dst` (which
/// must not hold it) with its metadata: a file's content, a symlink's
/// target, a device's numbers. `EISDIR` for a directory.
pub(crate) fn copy_node(src: BorrowedFd<'_>, name: &OsStr, dst: BorrowedFd<'_>, dst_name: &OsStr) -> Result<(), Errno> {
    let st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
    make_node(src, name, &st, dst, dst_name)?;
    // A symlink's own xattrs have no followed path to be read by (and
    // following it could read outside the tree).
    let x = match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => Vec::new(),
        _ => xattrs_of(&proc_path(src, Some(name)))?,
    };
    set_meta(dst, dst_name, &st, &x)
}

fn make_node(src: BorrowedFd<'_>, name: &OsStr, st: &Stat, dst: BorrowedFd<'_>, dst_name: &OsStr) -> Result<(), Errno> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Err(Errno::ISDIR),
        FileType::RegularFile => {
            let from = rfs::openat(src, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let to = rfs::openat(dst, dst_name, flags, Mode::from_raw_mode(0o600))?;
            let (mut from, mut to) = (File::from(from), File::from(to));
            io::copy(&mut from, &mut to).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            Ok(())
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(src, name, Vec::new())?;
            rfs::symlinkat(target.as_c_str(), dst, dst_name)
        }
        FileType::Socket => Err(Errno::OPNOTSUPP),
        kind => rfs::mknodat(dst, dst_name, kind, Mode::from_raw_mode(0o600), st.st_rdev),
    }
}

/// Copies the tree at `src` to `dst` (which must not exist) with owners,
/// modes, times, xattrs, symlinks, special files and the hard links
/// inside the tree, as `cp -a` does; every write is made inside `dst`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let from = rfs::open(src, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    std::fs::create_dir(dst)?;
    let root = Root::open(dst).map_err(|e| io::Error::other(e.to_string()))?;
    let mut c = TreeCopy { root: &root, links: HashMap::new() };
    let to = dup_dir(root.fd())?;
    c.dir(from.as_fd(), to.as_fd(), &mut Vec::new())?;
    let st = rfs::fstat(&from)?;
    let parent = rfs::open(dst.parent().unwrap_or(Path::new("/")), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    let base = dst.file_name().unwrap_or_default();
    set_meta(parent.as_fd(), base, &st, &xattrs_of(&proc_path(from.as_fd(), None))?)?;
    Ok(())
}

struct TreeCopy<'a> {
    root: &'a Root,
    /// The first copy of each hard-linked inode, by its path in `root`.
    links: HashMap<(u64, u64), Vec<OsString>>,
}

impl TreeCopy<'_> {
    fn dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &mut Vec<OsString>) -> Result<(), Errno> {
        for name in list_dir(src)? {
            rel.push(name.clone());
            let st = rfs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                rfs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))?;
                let (s, d) = (open_sub(src, &name)?, open_sub(dst, &name)?);
                self.dir(s.as_fd(), d.as_fd(), rel)?;
                set_meta(dst, &name, &st, &xattrs_of(&proc_path(s.as_fd(), None))?)?;
            } else if !self.link(&st, dst, &name, rel)? {
                copy_node(src, &name, dst, &name)?;
            }
            rel.pop();
        }
        Ok(())
    }

    /// Links `name` to the first copy of its inode if there is one;
    /// otherwise remembers this copy as the first.
    fn link(&mut self, st: &Stat, dst: BorrowedFd<'_>, name: &OsStr, rel: &[OsString]) -> Result<bool, Errno> {
        if st.st_nlink < 2 || FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        let Some(first) = self.links.get(&key) else {
            self.links.insert(key, rel.to_vec());
            return Ok(false);
        };
        let Some((fname, fparent)) = first.split_last() else { return Ok(false) };
        let fdir = self.root.dir_at(fparent, false)?;
        rfs::linkat(&fdir, fname.as_os_str(), dst, name, AtFlags::empty())?;
        Ok(true)
    }
}
