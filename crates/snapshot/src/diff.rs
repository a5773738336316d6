//! Layers from file system changes: comparing two trees (the naive way,
//! as containerd's `fs.Changes` double walk does) or reading an overlayfs
//! upper directory, where whiteouts are character devices 0/0 and opaque
//! directories carry `trusted.overlay.opaque=y` (as containerd's
//! `fs/diff_linux.go` and BuildKit's overlay differ do).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{io_at, Result};
use crate::fsmeta::{bytes, entry_for, get_xattr, is_overlay_xattr, xattrs};
use crate::layer::{EntryKind, LayerInfo, LayerOptions, TarEntry, TarStream};
use crate::unpack::{WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// One change between a lower and an upper tree, by relative path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Change {
    /// The path was added or modified; its content is in the upper tree.
    Add(PathBuf),
    /// The path (and anything below it) was deleted.
    Delete(PathBuf),
    /// The directory replaces, rather than merges with, the lower one.
    Opaque(PathBuf),
}

/// Writes the layer of changes from `lower` (or nothing) to `upper`.
pub fn diff_dirs<W: Write>(lower: Option<&Path>, upper: &Path, out: W, opts: &LayerOptions) -> Result<(W, LayerInfo)> {
    let changes = changes_dirs(lower, upper)?;
    write_changes(upper, &changes, out, opts)
}

/// Writes the layer an overlayfs upper directory holds.
pub fn diff_overlay_upper<W: Write>(upper: &Path, out: W, opts: &LayerOptions) -> Result<(W, LayerInfo)> {
    let changes = changes_overlay_upper(upper)?;
    write_changes(upper, &changes, out, opts)
}

/// The changes from `lower` (or an empty tree) to `upper`, in path order.
pub fn changes_dirs(lower: Option<&Path>, upper: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    compare_dir(lower, upper, Path::new(""), &mut out).map_err(io_at(upper))?;
    Ok(out)
}

fn sorted_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

fn compare_dir(lower: Option<&Path>, upper: &Path, rel: &Path, out: &mut Vec<Change>) -> io::Result<()> {
    let mut names: BTreeMap<std::ffi::OsString, (bool, bool)> = BTreeMap::new();
    for n in sorted_names(upper)? {
        names.entry(n).or_default().1 = true;
    }
    if let Some(l) = lower {
        for n in sorted_names(l)? {
            names.entry(n).or_default().0 = true;
        }
    }
    for (name, (in_lower, in_upper)) in names {
        let r = rel.join(&name);
        let u = upper.join(&name);
        if !in_upper {
            out.push(Change::Delete(r));
            continue;
        }
        let um = fs::symlink_metadata(&u)?;
        let lower_path = lower.filter(|_| in_lower).map(|l| l.join(&name));
        let lm = lower_path.as_deref().map(fs::symlink_metadata).transpose()?;
        match (lm, lower_path) {
            (Some(lm), Some(lp)) if lm.file_type() == um.file_type() => {
                if changed(&lp, &lm, &u, &um)? {
                    out.push(Change::Add(r.clone()));
                }
                if um.is_dir() {
                    compare_dir(Some(&lp), &u, &r, out)?;
                }
            }
            _ => {
                out.push(Change::Add(r.clone()));
                if um.is_dir() {
                    compare_dir(None, &u, &r, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Whether `u` differs from `l` of the same type. Directories compare by
/// owner, mode and xattrs; others also by size, mtime and link target,
/// and by content when mtimes carry no nanoseconds (a copy may have lost
/// them, as containerd's `fs/diff_unix.go` notes).
fn changed(l: &Path, lm: &Metadata, u: &Path, um: &Metadata) -> io::Result<bool> {
    if lm.mode() != um.mode() || lm.uid() != um.uid() || lm.gid() != um.gid() || lm.rdev() != um.rdev() {
        return Ok(true);
    }
    if xattrs(l)? != xattrs(u)? {
        return Ok(true);
    }
    if um.is_dir() {
        return Ok(false);
    }
    if lm.size() != um.size() || lm.mtime() != um.mtime() || lm.mtime_nsec() != um.mtime_nsec() {
        return Ok(true);
    }
    if um.file_type().is_symlink() {
        return Ok(fs::read_link(l)? != fs::read_link(u)?);
    }
    if um.is_file() && (lm.ino() != um.ino() || lm.dev() != um.dev()) && um.mtime_nsec() == 0 {
        return Ok(!same_content(l, u)?);
    }
    Ok(false)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The changes an overlayfs upper directory holds, in path order.
pub fn changes_overlay_upper(upper: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_upper(upper, Path::new(""), &mut out).map_err(io_at(upper))?;
    Ok(out)
}

fn walk_upper(dir: &Path, rel: &Path, out: &mut Vec<Change>) -> io::Result<()> {
    for name in sorted_names(dir)? {
        let p = dir.join(&name);
        let r = rel.join(&name);
        let md = fs::symlink_metadata(&p)?;
        if md.file_type().is_char_device() && md.rdev() == 0 {
            out.push(Change::Delete(r));
            continue;
        }
        out.push(Change::Add(r.clone()));
        if md.is_dir() {
            if is_opaque(&p) {
                out.push(Change::Opaque(r.clone()));
            }
            walk_upper(&p, &r, out)?;
        }
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|k| get_xattr(dir, k).is_ok_and(|v| v == b"y"))
}

/// What one sorted layer entry is made from.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Disk,
    Whiteout,
}

/// Sort key: components, so parents come first and `a/b` before `a.b`.
fn key(p: &Path) -> Vec<Vec<u8>> {
    p.iter().map(|c| bytes(Path::new(c)).to_vec()).collect()
}

/// Writes `changes` as a layer, reading added paths from `upper`. Every
/// change's parent directories are included, as containerd's change
/// writer does, so they keep their owner and mode.
pub fn write_changes<W: Write>(
    upper: &Path,
    changes: &[Change],
    out: W,
    opts: &LayerOptions,
) -> Result<(W, LayerInfo)> {
    let mut items: BTreeMap<Vec<Vec<u8>>, Item> = BTreeMap::new();
    for c in changes {
        let (k, item) = match c {
            Change::Add(p) => (key(p), Item::Disk),
            Change::Delete(p) => (marker(p, None), Item::Whiteout),
            Change::Opaque(p) => (marker(p, Some(WHITEOUT_OPAQUE)), Item::Whiteout),
        };
        for i in 1..k.len() {
            items.entry(k[..i].to_vec()).or_insert(Item::Disk);
        }
        items.insert(k, item);
    }
    let mut tar = TarStream::new(out, opts).map_err(io_at(upper))?;
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for (k, item) in &items {
        let rel = k.join(&b'/');
        let path = upper.join(std::ffi::OsStr::from_bytes(&rel));
        match item {
            Item::Whiteout => tar.append(&TarEntry::whiteout(rel), None).map_err(io_at(&path))?,
            Item::Disk => append_disk(&mut tar, &path, rel, &mut links).map_err(io_at(&path))?,
        }
    }
    tar.finish().map_err(io_at(upper))
}

/// The components of `dir/.wh.name`, or of `dir/<name>` for a marker name.
fn marker(p: &Path, name: Option<&str>) -> Vec<Vec<u8>> {
    let mut k = key(p);
    match name {
        Some(n) => k.push(n.as_bytes().to_vec()),
        None => {
            let last = k.pop().unwrap_or_default();
            let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh.extend_from_slice(&last);
            k.push(wh);
        }
    }
    k
}

fn append_disk<W: Write>(
    tar: &mut TarStream<W>,
    path: &Path,
    rel: Vec<u8>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    let mut entry = entry_for(path, rel, &md)?;
    if md.is_file() && md.nlink() > 1 {
        let id = (md.dev(), md.ino());
        if let Some(first) = links.get(&id) {
            entry.kind = EntryKind::Hardlink { target: first.clone() };
            return tar.append(&entry, None);
        }
        links.insert(id, entry.path.clone());
    }
    if md.is_file() {
        let mut f =
            fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)?;
        return tar.append(&entry, Some(&mut f));
    }
    debug_assert!(!entry.meta.xattrs.keys().any(|k| is_overlay_xattr(k)));
    tar.append(&entry, None)
}

#[cfg(test)]
mod tests;
