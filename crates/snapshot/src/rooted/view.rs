//! Resolving a path through a stack of directories the way a mount of
//! them would: one directory alone (a whole tree), or an overlay upper
//! directory over its lower layers, nearest first. Symlinks are read here
//! and followed as if the root were `/`, so the result names a directory
//! inside the root and holds no symlink.
//!
//! For an overlay the lookup is overlayfs's: the topmost layer holding a
//! name decides what it is; a whiteout (character device 0/0) hides it;
//! directories merge downwards until an opaque one
//! (`trusted.overlay.opaque=y`) or a layer holding something else. Applying
//! a layer onto the upper directory through this view puts each entry
//! where applying it onto the merged tree would (as containerd applies a
//! layer onto the mounted view of its parents), so `lib/x` under a lower
//! `lib -> usr/lib` lands in `usr/lib/x`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use rustix::io::Errno;

use super::{dup_dir, open_sub, proc_path, remove_all_at, Root, MAX_SYMLINKS};

/// The xattr that marks an overlay directory opaque.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Directories holding one path, by layer index (0 is the upper), top first.
pub(crate) type Dirs = Vec<(usize, OwnedFd)>;

/// A stack of layer directories to resolve paths in.
pub(crate) struct View {
    top: Dirs,
    overlay: bool,
}

/// What the view holds at one name.
pub(crate) enum Found {
    /// Nothing; `whiteout` when the upper's own whiteout hides it.
    Missing { whiteout: bool },
    /// A directory, with every layer merged into it.
    Dir(Dirs),
    /// A symlink in the layer at the index.
    Symlink(usize),
    /// Something else in the layer at the index.
    Other(usize),
}

/// One directory of a resolved path.
pub(crate) struct Level {
    pub(crate) name: OsString,
    /// The layers holding it (empty when missing).
    pub(crate) dirs: Dirs,
    /// Missing because the upper's whiteout hides the lowers' entry.
    pub(crate) whiteout: bool,
}

/// A directory path resolved through a [`View`].
pub(crate) struct Resolved {
    pub(crate) levels: Vec<Level>,
    top: Dirs,
}

impl View {
    /// A view of `layers` (the one written to first). With `overlay`,
    /// whiteouts and opaque directories count.
    pub(crate) fn new(layers: &[BorrowedFd<'_>], overlay: bool) -> Result<View, Errno> {
        let top = layers.iter().enumerate().map(|(i, fd)| Ok((i, dup_dir(*fd)?))).collect::<Result<_, Errno>>()?;
        Ok(View { top, overlay })
    }

    /// What the directory held by `dirs` has at `name`.
    pub(crate) fn lookup(&self, dirs: &[(usize, OwnedFd)], name: &OsStr) -> Result<Found, Errno> {
        let mut merged: Dirs = Vec::new();
        for (i, fd) in dirs {
            let st = match rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e),
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let whiteout = self.overlay && ft == FileType::CharacterDevice && st.st_rdev == 0;
            match (ft, merged.is_empty()) {
                (FileType::Directory, _) => {
                    let sub = open_sub(fd.as_fd(), name)?;
                    let opaque = self.overlay && is_opaque(sub.as_fd());
                    merged.push((*i, sub));
                    if opaque {
                        break;
                    }
                }
                (_, false) => break,
                _ if whiteout => return Ok(Found::Missing { whiteout: *i == 0 }),
                (FileType::Symlink, true) => return Ok(Found::Symlink(*i)),
                (_, true) => return Ok(Found::Other(*i)),
            }
        }
        Ok(if merged.is_empty() { Found::Missing { whiteout: false } } else { Found::Dir(merged) })
    }

    /// Resolves the directory `comps`, following symlinks inside the root;
    /// missing directories are kept as missing levels. `ENOTDIR` when a
    /// component is neither a directory nor a symlink, `ELOOP` after too
    /// many links.
    pub(crate) fn resolve(&self, comps: &[OsString]) -> Result<Resolved, Errno> {
        let mut levels: Vec<Level> = Vec::new();
        let mut todo: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut links = 0;
        while let Some(comp) = todo.pop_front() {
            match comp.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    levels.pop();
                    continue;
                }
                _ => {}
            }
            let cur = levels.last().map(|l| &l.dirs[..]).unwrap_or(&self.top);
            match self.lookup(cur, &comp)? {
                Found::Dir(dirs) => levels.push(Level { name: comp, dirs, whiteout: false }),
                Found::Missing { whiteout } => levels.push(Level { name: comp, dirs: Vec::new(), whiteout }),
                Found::Other(_) => return Err(Errno::NOTDIR),
                Found::Symlink(i) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let fd = cur.iter().find(|(j, _)| *j == i).map(|(_, fd)| fd).ok_or(Errno::NOENT)?;
                    let target = rfs::readlinkat(fd, comp.as_os_str(), Vec::new())?;
                    let bytes = target.as_bytes();
                    if bytes.first() == Some(&b'/') {
                        levels.clear();
                    }
                    for c in bytes.split(|b| *b == b'/').rev() {
                        todo.push_front(OsStr::from_bytes(c).to_os_string());
                    }
                }
            }
        }
        let top = self.top.iter().map(|(i, fd)| Ok((*i, dup_dir(fd.as_fd())?))).collect::<Result<_, Errno>>()?;
        Ok(Resolved { levels, top })
    }
}

impl Resolved {
    /// The resolved path's components.
    pub(crate) fn comps(&self) -> Vec<OsString> {
        self.levels.iter().map(|l| l.name.clone()).collect()
    }

    /// Whether every level exists in some layer.
    pub(crate) fn exists(&self) -> bool {
        self.levels.iter().all(|l| !l.dirs.is_empty())
    }

    /// The layers holding the resolved directory.
    pub(crate) fn dirs(&self) -> &[(usize, OwnedFd)] {
        self.levels.last().map(|l| &l.dirs[..]).unwrap_or(&self.top)
    }

    /// Opens the resolved directory in `root` (layer 0), one component at a
    /// time without following links. With `create`, a directory missing
    /// there is made: with the metadata of the lower directory it stands
    /// for (as overlayfs copies a directory up), else mode 0755; one made
    /// in place of the upper's whiteout is opaque, since the lowers' entry
    /// it replaces was deleted.
    pub(crate) fn open_in(&self, root: &Root, create: bool) -> Result<OwnedFd, Errno> {
        let mut cur = dup_dir(root.fd())?;
        for l in &self.levels {
            let in_upper = l.dirs.first().is_some_and(|(i, _)| *i == 0);
            if !in_upper && create {
                make_dir(cur.as_fd(), l)?;
            }
            cur = open_sub(cur.as_fd(), &l.name)?;
        }
        Ok(cur)
    }
}

fn make_dir(parent: BorrowedFd<'_>, l: &Level) -> Result<(), Errno> {
    if l.whiteout {
        remove_all_at(parent, &l.name)?;
    }
    match rfs::mkdirat(parent, l.name.as_os_str(), Mode::from_raw_mode(0o755)) {
        Ok(()) => {}
        // Made by an earlier level's resolution, or a race: opened (without
        // following) by the caller either way.
        Err(Errno::EXIST) => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some((_, lower)) = l.dirs.first() {
        super::copy::copy_meta_from(lower.as_fd(), parent, &l.name)?;
    }
    if l.whiteout {
        let sub = open_sub(parent, &l.name)?;
        set_opaque(sub.as_fd())?;
    }
    Ok(())
}

/// Whether the directory `dir` is an opaque overlay directory.
pub(crate) fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    matches!(rfs::getxattr(proc_path(dir, None), OPAQUE_XATTR, &mut buf[..]), Ok(1) if buf[0] == b'y')
}

/// Marks the directory `dir` opaque for overlayfs.
pub(crate) fn set_opaque(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    rfs::setxattr(proc_path(dir, None), OPAQUE_XATTR, b"y", rfs::XattrFlags::empty())
}
