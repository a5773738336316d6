//! Mount stubs: the runtime creates an empty file or directory in the
//! rootfs for every mount target that is missing (`/etc/resolv.conf` in an
//! image without one, a cache mount's directory). They are not part of
//! what the process wrote, so they are removed after the run when still
//! empty, and their parent's times restored, as BuildKit's
//! `executor.MountStubsCleaner` does; a layer diffed from the rootfs then
//! holds only the process's own changes.

use std::fs::{self, File, FileTimes};
use std::path::{Path, PathBuf};

use crate::rootfs;

/// Targets that did not exist before a run, deepest first.
#[derive(Debug, Default)]
pub struct Stubs {
    paths: Vec<PathBuf>,
}

impl Stubs {
    /// Records which of `destinations` (and their parents) are missing in
    /// the rootfs at `root`.
    pub fn record<'a>(root: &Path, destinations: impl IntoIterator<Item = &'a Path>) -> Stubs {
        let mut paths = Vec::new();
        for dest in destinations {
            let Ok(mut p) = rootfs::resolve(root, &dest.to_string_lossy()) else { continue };
            while p != root && p.starts_with(root) && fs::symlink_metadata(&p).is_err() {
                paths.push(p.clone());
                if !p.pop() {
                    break;
                }
            }
        }
        Stubs { paths }
    }

    /// The recorded paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Removes each recorded path that is now an empty file or an empty
    /// directory, keeping its parent's access and modification times.
    pub fn clean(&mut self) {
        for p in std::mem::take(&mut self.paths) {
            let Ok(meta) = fs::symlink_metadata(&p) else { continue };
            let empty = if meta.is_dir() {
                fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none())
            } else {
                meta.is_file() && meta.len() == 0
            };
            if !empty {
                continue;
            }
            let parent = p.parent().map(Path::to_path_buf);
            let times = parent.as_deref().and_then(|d| fs::metadata(d).ok());
            let removed = if meta.is_dir() { fs::remove_dir(&p) } else { fs::remove_file(&p) };
            if let (Ok(()), Some(dir), Some(t)) = (removed, parent, times) {
                if let (Ok(a), Ok(m), Ok(f)) = (t.accessed(), t.modified(), File::open(&dir)) {
                    let _ = f.set_times(FileTimes::new().set_accessed(a).set_modified(m));
                }
            }
        }
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        self.clean();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn empty_stubs_go_and_written_ones_stay() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/hosts"), b"existing").unwrap();
        let dests = ["/etc/resolv.conf", "/etc/hosts", "/cache/apk", "/data/keep"].map(Path::new);
        let mut stubs = Stubs::record(r, dests);
        assert_eq!(
            stubs.paths(),
            [r.join("etc/resolv.conf"), r.join("cache/apk"), r.join("cache"), r.join("data/keep"), r.join("data")]
        );
        // What the runtime and the process did meanwhile.
        fs::write(r.join("etc/resolv.conf"), b"").unwrap();
        fs::create_dir_all(r.join("cache/apk")).unwrap();
        fs::create_dir_all(r.join("data/keep")).unwrap();
        fs::write(r.join("data/keep/file"), b"written by the run").unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        File::open(r.join("etc")).unwrap().set_times(FileTimes::new().set_modified(old)).unwrap();
        stubs.clean();
        assert!(!r.join("etc/resolv.conf").exists());
        assert!(!r.join("cache").exists());
        assert!(r.join("data/keep/file").exists());
        assert_eq!(fs::read(r.join("etc/hosts")).unwrap(), b"existing");
        assert_eq!(
            fs::metadata(r.join("etc")).unwrap().modified().unwrap(),
            old,
            "removing the stub keeps the parent's times"
        );
    }

    #[test]
    fn a_stub_the_process_filled_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("etc")).unwrap();
        {
            let _stubs = Stubs::record(r, [Path::new("/etc/resolv.conf")]);
            fs::write(r.join("etc/resolv.conf"), b"nameserver 1.1.1.1\n").unwrap();
        }
        assert!(r.join("etc/resolv.conf").exists());
    }
}
