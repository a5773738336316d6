//! Resolving archive paths inside a root directory without ever leaving it.
//!
//! Archive names are cleaned lexically first (`..` cannot climb above the
//! root, absolute names are taken relative to it, as containerd's
//! `archive/tar.go` does with `filepath.Join("/", name)`). Directories are
//! then opened with `openat2(RESOLVE_IN_ROOT)`, which resolves symlinks as
//! if the root were `/`. Kernels without `openat2` get the same semantics
//! from a walk one component at a time with `O_NOFOLLOW`, reading each
//! symlink and restarting at the root for absolute targets (as
//! cyphar/filepath-securejoin does).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{errno_at, Error, Result};

/// Symlinks followed in one resolution before giving up, as Linux does.
const MAX_SYMLINKS: usize = 40;

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

/// An open root directory that paths are resolved in.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
    openat2: bool,
}

impl Root {
    /// Opens `path` as a root.
    pub(crate) fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno_at(path))?;
        Ok(Root { fd, path: path.to_path_buf(), openat2: true })
    }

    /// Forces the component-by-component walk (for tests, and after a
    /// kernel turned out to lack `openat2`).
    #[cfg(test)]
    pub(crate) fn without_openat2(mut self) -> Root {
        self.openat2 = false;
        self
    }

    /// The root's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `comps` under the root, for messages.
    pub(crate) fn display(&self, comps: &[OsString]) -> PathBuf {
        self.path.join(join(comps))
    }

    /// Opens the directory `comps` names, resolving symlinks as if the root
    /// were `/`. With `create`, missing directories are made (mode 0755).
    /// Fails with `ENOENT` (as an I/O error) when missing and not created.
    pub(crate) fn open_dir(&mut self, comps: &[OsString], create: bool) -> Result<OwnedFd> {
        self.open_dir_at_depth(comps, create, 0)
    }

    fn open_dir_at_depth(&mut self, comps: &[OsString], create: bool, depth: usize) -> Result<OwnedFd> {
        let err = |r: &Root, e| errno_at(r.display(comps))(e);
        match self.resolve(comps) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) if create && !comps.is_empty() => {
                let (last, parent) = comps.split_last().ok_or(Errno::NOENT).map_err(|e| err(self, e))?;
                let pfd = self.open_dir_at_depth(parent, true, depth)?;
                match rfs::mkdirat(&pfd, last.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) => return self.resolve(comps).map_err(|e| err(self, e)),
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(err(self, e)),
                }
                // Something is there yet does not resolve: a dangling
                // symlink. Make its target, inside the root, as
                // containerd does with the path `RootPath` resolves to.
                let target = rfs::readlinkat(&pfd, last.as_os_str(), Vec::new()).map_err(|e| err(self, e))?;
                if depth >= MAX_SYMLINKS {
                    return Err(err(self, Errno::LOOP));
                }
                let mut joined: Vec<u8> = Vec::new();
                if target.as_bytes().first() != Some(&b'/') {
                    joined.extend_from_slice(join(parent).as_os_str().as_bytes());
                    joined.push(b'/');
                }
                joined.extend_from_slice(target.as_bytes());
                self.open_dir_at_depth(&clean(&joined), true, depth + 1)
            }
            Err(e) => Err(err(self, e)),
        }
    }

    fn resolve(&mut self, comps: &[OsString]) -> std::result::Result<OwnedFd, Errno> {
        if self.openat2 {
            let rel = if comps.is_empty() { PathBuf::from(".") } else { join(comps) };
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(&self.fd, &rel, flags, Mode::empty(), how) {
                Err(Errno::NOSYS) | Err(Errno::PERM) => self.openat2 = false,
                // openat2 may return EAGAIN when a rename raced it.
                Err(Errno::AGAIN) => {}
                r => return r,
            }
        }
        walk(self.fd.as_fd(), comps)
    }
}

/// Resolves `comps` under `root` one component at a time, never following
/// a symlink with the kernel: targets are read and spliced into the
/// remaining components, absolute ones restarting at `root`.
fn walk(root: BorrowedFd<'_>, comps: &[OsString]) -> std::result::Result<OwnedFd, Errno> {
    let dup =
        |fd: BorrowedFd<'_>| rfs::openat(fd, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty());
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut todo: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut links = 0;
    while let Some(comp) = todo.pop_front() {
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        match comp.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let fd = rfs::openat(cur, comp.as_os_str(), OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        let st = rfs::fstat(&fd)?;
        match rfs::FileType::from_raw_mode(st.st_mode) {
            rfs::FileType::Directory => stack.push(fd),
            rfs::FileType::Symlink => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP);
                }
                let target = rfs::readlinkat(cur, comp.as_os_str(), Vec::new())?;
                let bytes = target.as_bytes();
                if bytes.first() == Some(&b'/') {
                    stack.clear();
                }
                for c in bytes.split(|b| *b == b'/').rev() {
                    todo.push_front(OsStr::from_bytes(c).to_os_string());
                }
            }
            _ => return Err(Errno::NOTDIR),
        }
    }
    dup(stack.last().map(|f| f.as_fd()).unwrap_or(root))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn comps(s: &str) -> Vec<OsString> {
        clean(s.as_bytes())
    }

    #[test]
    fn clean_clamps_at_root() {
        assert_eq!(join(&comps("../../etc/passwd")), PathBuf::from("etc/passwd"));
        assert_eq!(join(&comps("/abs/./path/")), PathBuf::from("abs/path"));
        assert_eq!(join(&comps("a/../../b")), PathBuf::from("b"));
        assert!(comps("./..//.").is_empty());
    }

    fn check_resolution(use_openat2: bool) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/", root.join("toroot")).unwrap();
        symlink("../../..", root.join("real/up")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let mut r = Root::open(&root).unwrap();
        if !use_openat2 {
            r = r.without_openat2();
        }
        let same = |fd: &OwnedFd, p: &Path| {
            let a = rfs::fstat(fd).unwrap();
            let b = fs::metadata(p).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(a.st_ino, b.ino(), "{}", p.display());
        };
        same(&r.open_dir(&comps("toroot"), false).unwrap(), &root);
        same(&r.open_dir(&comps("real/up/real/sub"), false).unwrap(), &root.join("real/sub"));
        same(&r.open_dir(&comps("abs/sub"), false).unwrap(), &root.join("real/sub"));
        assert!(r.open_dir(&comps("loop"), false).is_err());
        assert!(r.open_dir(&comps("missing"), false).is_err());
        let made = r.open_dir(&comps("toroot/new/dir"), true).unwrap();
        same(&made, &root.join("new/dir"));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn resolves_symlinks_inside_the_root_with_openat2() {
        check_resolution(true);
    }

    #[test]
    fn resolves_symlinks_inside_the_root_by_walking() {
        check_resolution(false);
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("keep")).unwrap();
        fs::write(tmp.path().join("keep/f"), b"x").unwrap();
        fs::create_dir_all(tmp.path().join("gone/d")).unwrap();
        symlink(tmp.path().join("keep"), tmp.path().join("gone/d/link")).unwrap();
        let dir = rfs::open(tmp.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        remove_all_at(dir.as_fd(), OsStr::new("gone")).unwrap();
        remove_all_at(dir.as_fd(), OsStr::new("gone")).unwrap();
        assert!(tmp.path().join("keep/f").exists());
        assert!(!tmp.path().join("gone").exists());
    }
}
