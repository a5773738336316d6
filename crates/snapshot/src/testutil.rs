//! Helpers for this crate's tests: tree fingerprints and mounting specs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::fsmeta::{is_overlay_xattr, xattrs};
use crate::mount::{Mount, MountGuard};

/// One file as the trees are compared: kind, mode, owner, content or link
/// target, xattrs, and mtime for non-directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub owner: (u32, u32),
    pub data: Vec<u8>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub mtime: Option<i64>,
}

/// Every path under `root` (relative), with what matters about it.
pub(crate) fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(dir: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let r = rel.join(&n);
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let (kind, data) = if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_file() {
            ("file", fs::read(&p).unwrap())
        } else if ft.is_symlink() {
            ("symlink", fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes())
        } else {
            ("special", md.rdev().to_le_bytes().to_vec())
        };
        let mut x = xattrs(&p).unwrap();
        x.retain(|k, _| !is_overlay_xattr(k));
        let mtime = (!ft.is_dir()).then_some(md.mtime());
        out.insert(
            r.clone(),
            Node { kind, mode: md.mode() & 0o7777, owner: (md.uid(), md.gid()), data, xattrs: x, mtime },
        );
        if ft.is_dir() {
            walk(&p, &r, out);
        }
    }
}

/// A mount made for a test, with the temp dir it is on. Dropping it
/// unmounts before the directory goes.
pub(crate) struct Mounted {
    guard: Option<MountGuard>,
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        drop(self.guard.take());
    }
}

/// The tree behind `m`: a bind's source as it is, anything else mounted
/// on a temp dir.
pub(crate) fn mounted(m: &Mount) -> Mounted {
    if let Some(src) = m.bind_source() {
        return Mounted { guard: None, path: src.to_path_buf(), _dir: None };
    }
    let dir = tempfile::tempdir().unwrap();
    let guard = m.mount(dir.path()).unwrap();
    Mounted { guard: Some(guard), path: dir.path().to_path_buf(), _dir: Some(dir) }
}

/// Mount points under `prefix` listed in /proc/self/mounts.
pub(crate) fn mounts_under(prefix: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap();
    let p = prefix.to_string_lossy().into_owned();
    text.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&p)).map(str::to_string).collect()
}
