//! Mount specs (as containerd's `mount.Mount`) and the syscalls that
//! apply them, with a guard that unmounts on drop.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use rustix::mount::{self as rm, MountFlags, UnmountFlags};

use crate::error::{Error, Result};

/// How to mount a snapshot: `mount -t <kind> -o <options> <source> <target>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `bind` or `overlay`.
    pub kind: String,
    /// The directory bound, or `overlay`.
    pub source: PathBuf,
    /// Mount options: `rbind`, `ro`, `rw`, `lowerdir=...`, ...
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount of `dir`, read-only when `ro`.
    pub fn bind(dir: &Path, ro: bool) -> Mount {
        let access = if ro { "ro" } else { "rw" };
        Mount { kind: "bind".into(), source: dir.to_path_buf(), options: vec!["rbind".into(), access.into()] }
    }

    /// Whether the mount is read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// The directory holding the tree, when the mount is a plain bind (no
    /// mount needed to read or write it).
    pub fn bind_source(&self) -> Option<&Path> {
        (self.kind == "bind").then_some(self.source.as_path())
    }

    /// Mounts onto `target`; the guard unmounts when dropped.
    pub fn mount(&self, target: &Path) -> Result<MountGuard> {
        let fail = |e: rustix::io::Errno| Error::Io { path: target.to_path_buf(), source: e.into() };
        match self.kind.as_str() {
            "bind" => {
                rm::mount_bind_recursive(&self.source, target).map_err(fail)?;
                let guard = MountGuard { target: Some(target.to_path_buf()) };
                if self.is_read_only() {
                    rm::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"").map_err(fail)?;
                }
                Ok(guard)
            }
            "overlay" => {
                let mut flags = MountFlags::empty();
                let data: Vec<&str> = self
                    .options
                    .iter()
                    .map(String::as_str)
                    .filter(|o| match *o {
                        "ro" => {
                            flags |= MountFlags::RDONLY;
                            false
                        }
                        "rw" => false,
                        _ => true,
                    })
                    .collect();
                let data = CString::new(data.join(","))
                    .map_err(|_| Error::entry(self.source.as_os_str().as_encoded_bytes(), "NUL in mount options"))?;
                rm::mount("overlay", target, "overlay", flags, data.as_c_str()).map_err(fail)?;
                Ok(MountGuard { target: Some(target.to_path_buf()) })
            }
            _ => Err(Error::Unsupported {
                feature: "this mount type",
                source: std::io::Error::from(std::io::ErrorKind::Unsupported),
            }),
        }
    }
}

/// A mount that is undone when dropped (lazily, if it is busy).
#[derive(Debug)]
#[must_use = "the mount is undone when the guard is dropped"]
pub struct MountGuard {
    target: Option<PathBuf>,
}

impl MountGuard {
    /// Where it is mounted.
    pub fn target(&self) -> Option<&Path> {
        self.target.as_deref()
    }

    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> Result<()> {
        match self.target.take() {
            Some(t) => unmount(&t),
            None => Ok(()),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            if rm::unmount(&t, UnmountFlags::empty()).is_err() {
                let _ = rm::unmount(&t, UnmountFlags::DETACH);
            }
        }
    }
}

/// Unmounts `target`.
pub fn unmount(target: &Path) -> Result<()> {
    rm::unmount(target, UnmountFlags::empty()).map_err(|e| Error::Io { path: target.to_path_buf(), source: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::mounts_under;

    #[test]
    fn guard_unmounts_even_when_the_test_panics() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        let m = Mount::bind(&src, true);
        let r = std::panic::catch_unwind(|| {
            let _g = m.mount(&dst).unwrap();
            assert!(dst.join("f").exists());
            assert!(std::fs::write(dst.join("g"), b"y").is_err(), "a read-only bind refuses writes");
            panic!("boom");
        });
        assert!(r.is_err());
        assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());
        assert!(!dst.join("f").exists());
    }

    #[test]
    fn unknown_kinds_are_unsupported() {
        let m = Mount { kind: "nfs".into(), source: "x".into(), options: vec![] };
        assert_eq!(m.mount(Path::new("/nonexistent")).unwrap_err().kind(), crate::ErrorKind::Unsupported);
    }
}
