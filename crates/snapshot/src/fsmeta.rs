//! Reading files' metadata into layer entries, and disk usage.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs as rfs;
use rustix::io::Errno;

use crate::layer::{EntryKind, Meta, TarEntry};

/// Extended attributes of `path` (not following a final symlink). File
/// systems without xattr support have none.
pub(crate) fn xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match list_xattrs(path) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        match get_xattr(path, name) {
            Ok(v) => {
                out.insert(name.to_string(), v);
            }
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn list_xattrs(path: &Path) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match rfs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// One xattr's value.
pub(crate) fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match rfs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// Whether an xattr belongs to overlayfs's bookkeeping and stays out of
/// layers.
pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// The layer entry for the file at `path` with metadata `md`, named `rel`.
pub(crate) fn entry_for(path: &Path, rel: Vec<u8>, md: &Metadata) -> io::Result<TarEntry> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File { size: md.len() }
    } else if ft.is_symlink() {
        EntryKind::Symlink { target: fs::read_link(path)?.into_os_string().into_encoded_bytes() }
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = (rfs::major(md.rdev()), rfs::minor(md.rdev()));
        if ft.is_char_device() {
            EntryKind::Char { major, minor }
        } else {
            EntryKind::Block { major, minor }
        }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "sockets cannot be put in a layer"));
    };
    let mut x = xattrs(path)?;
    x.retain(|k, _| !is_overlay_xattr(k));
    let meta = Meta { mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), mtime: md.mtime(), xattrs: x };
    Ok(TarEntry { path: rel, kind, meta })
}

/// Bytes and inodes used by the tree at `path`, hard links counted once.
pub(crate) fn disk_usage(path: &Path) -> io::Result<(u64, u64)> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    let (mut size, mut inodes) = (0u64, 0u64);
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p)?;
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        inodes += 1;
        size += md.blocks() * 512;
        if md.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok((size, inodes))
}

/// The path as bytes.
pub(crate) fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooted::copy_tree;
    use std::path::PathBuf;

    #[test]
    fn copy_keeps_metadata_links_and_hardlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"data").unwrap();
        fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
        fs::set_permissions(src.join("d/f"), std::os::unix::fs::PermissionsExt::from_mode(0o4751)).unwrap();
        let dst = tmp.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let (a, b) = (fs::symlink_metadata(src.join("d/f")).unwrap(), fs::symlink_metadata(dst.join("d/f")).unwrap());
        assert_eq!(a.mode(), b.mode());
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), PathBuf::from("d/f"));
        assert_eq!(fs::metadata(dst.join("h")).unwrap().ino(), b.ino());
        assert_eq!(fs::metadata(dst.join("d")).unwrap().mtime(), fs::metadata(src.join("d")).unwrap().mtime());
    }
}
