//! An in-memory file tree: what a stage's root filesystem, a build context
//! or an unpacked layer holds, with numeric owners, modes and times.
//!
//! Layers are applied with OCI whiteout rules; hard links are resolved to
//! the content they point at, so every regular file carries its bytes, and
//! the members of a hard-link group share a [`Node::link`] id so that a
//! layer holding two of them writes the second as a tar hard link.
//! Extended attributes travel with each entry (PAX `SCHILY.xattr.*`).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with its content.
    File(Arc<Vec<u8>>),
    /// A directory.
    Dir,
    /// A symbolic link and its target, as written.
    Symlink(String),
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Type and content.
    pub kind: Kind,
    /// Permission bits, with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes by name (`user.x`, `security.capability`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Hard-link group: entries with the same id were one inode where they
    /// were read from (see [`new_link_group`]); `None` for a single link.
    pub link: Option<u64>,
}

/// A process-wide unique hard-link group id. Ids never reach a layer:
/// only which paths share one does, so layers stay deterministic.
pub fn new_link_group() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Node {
    /// An entry without extended attributes or hard links.
    pub fn new(kind: Kind, mode: u32, uid: u64, gid: u64, mtime: i64) -> Node {
        Node { kind, mode, uid, gid, mtime, xattrs: BTreeMap::new(), link: None }
    }

    /// A directory with `mode`, owned by `uid:gid`.
    pub fn dir(mode: u32, uid: u64, gid: u64, mtime: i64) -> Node {
        Node::new(Kind::Dir, mode, uid, gid, mtime)
    }

    /// Whether `other` can be written as a hard link to `self`: same
    /// group, content and metadata.
    pub fn same_inode(&self, other: &Node) -> bool {
        let same_kind = match (&self.kind, &other.kind) {
            (Kind::File(a), Kind::File(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        same_kind
            && self.link.is_some()
            && self.link == other.link
            && (self.mode, self.uid, self.gid, self.mtime) == (other.mode, other.uid, other.gid, other.mtime)
            && self.xattrs == other.xattrs
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }
}

/// A tree keyed by clean relative paths (`etc/passwd`); the root is implicit.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    nodes: BTreeMap<String, Node>,
}

/// `/a//b/./c/` → `a/b/c`; `..` never leaves the root.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The parent of a clean path (`""` for top-level names).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// The last component of a clean path.
pub fn base(path: &str) -> &str {
    path.rsplit_once('/').map(|(_, b)| b).unwrap_or(path)
}

/// `a` joined with `b` (both clean).
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

impl MemFs {
    /// An empty tree.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// The entry at a clean path.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Entries strictly below `dir` (all entries for the root `""`).
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        self.nodes.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(&prefix))
    }

    /// Removes `path` and everything below it.
    pub fn remove_tree(&mut self, path: &str) {
        self.nodes.remove(path);
        let below: Vec<String> = self.children(path).map(|(k, _)| k.clone()).collect();
        for k in below {
            self.nodes.remove(&k);
        }
    }

    /// Inserts or replaces `path`. A directory replacing a directory keeps
    /// its children; anything else replaces the whole subtree.
    pub fn insert(&mut self, path: String, node: Node) {
        if path.is_empty() {
            return;
        }
        let keep_children = node.is_dir() && self.nodes.get(&path).is_some_and(Node::is_dir);
        if !keep_children {
            self.remove_tree(&path);
        }
        self.nodes.insert(path, node);
    }

    /// Follows symlinks in `path` (all components, the last one too when
    /// `follow_last`) inside the tree, as a chroot would. `None` when a
    /// component is missing or the links loop.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        let mut todo: Vec<String> = clean(path).split('/').filter(|s| !s.is_empty()).map(String::from).rev().collect();
        let mut cur = String::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                cur = parent(&cur).to_string();
                continue;
            }
            let next = join(&cur, &part);
            let last = todo.is_empty();
            match self.nodes.get(&next).map(|n| &n.kind) {
                Some(Kind::Symlink(target)) if !last || follow_last => {
                    hops += 1;
                    if hops > 255 {
                        return None;
                    }
                    if target.starts_with('/') {
                        cur = String::new();
                    }
                    for p in target.split('/').filter(|s| !s.is_empty() && *s != ".").rev() {
                        todo.push(p.to_string());
                    }
                }
                Some(_) => cur = next,
                None if last => return Some(next),
                None => return None,
            }
        }
        Some(cur)
    }

    /// Reads a regular file, following symlinks.
    pub fn read(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        let p = self.resolve(path, true)?;
        match &self.nodes.get(&p)?.kind {
            Kind::File(data) => Some(data.clone()),
            _ => None,
        }
    }

    /// Applies one layer (a tar stream, compressed or not) with whiteouts.
    pub fn apply_layer(&mut self, reader: impl Read) -> Result<()> {
        let mut ar = tar::Archive::new(crate::compress::decompress(reader)?);
        let entries = ar.entries().map_err(|e| Error::layer("reading", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::layer("reading", e))?;
            let raw = entry.path_bytes();
            let path = clean(&String::from_utf8_lossy(&raw));
            if path.is_empty() {
                continue;
            }
            let name = base(&path);
            if name == ".wh..wh..opq" {
                let dir = parent(&path).to_string();
                let below: Vec<String> = self.children(&dir).map(|(k, _)| k.clone()).collect();
                for k in below {
                    self.nodes.remove(&k);
                }
                continue;
            }
            if let Some(victim) = name.strip_prefix(".wh.") {
                self.remove_tree(&join(parent(&path), victim));
                continue;
            }
            let xattrs = pax_xattrs(&mut entry)?;
            let h = entry.header();
            let mode = h.mode().unwrap_or(0o644) & 0o7777;
            let uid = h.uid().unwrap_or(0);
            let gid = h.gid().unwrap_or(0);
            let mtime = h.mtime().unwrap_or(0) as i64;
            let kind = match h.entry_type() {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => {
                    let t = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned());
                    Kind::Symlink(t.unwrap_or_default())
                }
                tar::EntryType::Link => {
                    let t = entry.link_name_bytes().map(|b| clean(&String::from_utf8_lossy(&b))).unwrap_or_default();
                    let Some(target) = self.nodes.get_mut(&t) else {
                        return Err(Error::Layer(format!("hard link {path} to missing {t}")));
                    };
                    // A hard link is the target's inode: its content,
                    // metadata and attributes, and now a shared group.
                    if matches!(target.kind, Kind::File(_)) {
                        target.link.get_or_insert_with(new_link_group);
                    }
                    let node = target.clone();
                    self.ensure_parents(&path, 0);
                    self.insert(path, node);
                    continue;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::with_capacity(h.size().unwrap_or(0) as usize);
                    entry.read_to_end(&mut data).map_err(|e| Error::layer("reading", e))?;
                    Kind::File(Arc::new(data))
                }
                // Devices and fifos cannot be represented; they are skipped.
                _ => continue,
            };
            self.ensure_parents(&path, 0);
            self.insert(path, Node { xattrs, ..Node::new(kind, mode, uid, gid, mtime) });
        }
        Ok(())
    }

    /// Creates missing parents of `path` as `0755` root-owned directories.
    fn ensure_parents(&mut self, path: &str, mtime: i64) {
        let mut p = parent(path);
        let mut missing = Vec::new();
        while !p.is_empty() && !self.nodes.contains_key(p) {
            missing.push(p.to_string());
            p = parent(p);
        }
        for m in missing {
            self.nodes.insert(m, Node::dir(0o755, 0, 0, mtime));
        }
    }

    /// Reads a directory from disk. Entries for which `keep` answers false
    /// are left out (directories are still walked when `descend` says so).
    pub fn from_dir(root: &Path, keep: &dyn Fn(&str, bool) -> (bool, bool)) -> Result<MemFs> {
        let mut fs = MemFs::new();
        fs.read_dir_into(root, "", keep, &mut Inodes::default())?;
        Ok(fs)
    }

    fn read_dir_into(
        &mut self,
        root: &Path,
        rel: &str,
        keep: &dyn Fn(&str, bool) -> (bool, bool),
        inodes: &mut Inodes,
    ) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        for name in sorted_names(&root.join(rel))? {
            let path = join(rel, &name);
            let full = root.join(&path);
            let md = std::fs::symlink_metadata(&full).map_err(|e| Error::io(&full, e))?;
            let is_dir = md.is_dir();
            let (include, descend) = keep(&path, is_dir);
            let mut link = None;
            let kind = if is_dir {
                Kind::Dir
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(&full).map_err(|e| Error::io(&full, e))?;
                Kind::Symlink(t.to_string_lossy().into_owned())
            } else if md.is_file() {
                if !include {
                    continue;
                }
                let (data, group) = inodes.file(&full, &md)?;
                link = group;
                Kind::File(data)
            } else {
                continue;
            };
            let node =
                Node { xattrs: read_xattrs(&full), link, ..Node::new(kind, md.mode() & 0o7777, 0, 0, md.mtime()) };
            if include {
                self.ensure_parents(&path, 0);
                self.nodes.insert(path.clone(), node);
            }
            if is_dir && descend {
                self.read_dir_into(root, &path, keep, inodes)?;
            }
        }
        Ok(())
    }

    /// Reads a tar stream (compressed or not) as a tree, without whiteout
    /// processing beyond what [`MemFs::apply_layer`] does.
    pub fn from_tar(reader: impl Read) -> Result<MemFs> {
        let mut fs = MemFs::new();
        fs.apply_layer(reader)?;
        Ok(fs)
    }

    /// Writes the tree below `dest`, never outside it (see
    /// [`crate::export::write_tree`]). Owners are set when running as root;
    /// file and directory times are set.
    pub fn write_to_dir(&self, dest: &Path) -> Result<()> {
        crate::export::write_tree(self, dest)
    }
}

/// The names in a directory, sorted.
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Hard-link groups of files read from disk, keyed by device and inode,
/// with the content read for the first member (shared by the others).
#[derive(Debug, Default)]
pub(crate) struct Inodes(HashMap<DevIno, (u64, Arc<Vec<u8>>)>);

/// A file's device and inode numbers.
type DevIno = (u64, u64);

impl Inodes {
    /// The content of the regular file `full` and, when it has more than
    /// one link, its group; a group's content is read once.
    pub(crate) fn file(&mut self, full: &Path, md: &std::fs::Metadata) -> Result<(Arc<Vec<u8>>, Option<u64>)> {
        use std::os::unix::fs::MetadataExt;
        let read = || std::fs::read(full).map(Arc::new).map_err(|e| Error::io(full, e));
        if md.nlink() < 2 {
            return Ok((read()?, None));
        }
        if let Some((g, data)) = self.0.get(&(md.dev(), md.ino())) {
            return Ok((data.clone(), Some(*g)));
        }
        let (g, data) = (new_link_group(), read()?);
        self.0.insert((md.dev(), md.ino()), (g, data.clone()));
        Ok((data, Some(g)))
    }
}

/// Whether an attribute belongs to the file rather than to the host: not
/// the overlay file system's bookkeeping nor the host's SELinux label.
fn portable_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") || name == "security.selinux")
}

/// The extended attributes of `path` (not following a symlink); empty when
/// the file system has none or does not support them.
pub(crate) fn read_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(n) = rustix::fs::llistxattr_query(path) else { return out };
    if n == 0 {
        return out;
    }
    let mut names = vec![0u8; n];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else { return out };
    for name in names[..n.min(names.len())].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        if !portable_xattr(name) {
            continue;
        }
        let Ok(len) = rustix::fs::lgetxattr_query(path, name) else { continue };
        let mut value = vec![0u8; len];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            value.truncate(len);
            out.insert(name.to_string(), value);
        }
    }
    out
}

/// The extended attributes of a tar entry: PAX `SCHILY.xattr.NAME` records
/// and bsdtar's `LIBARCHIVE.xattr.NAME` ones, read as the unpacker reads
/// them ([`polyarch_snapshot::pax_xattr`]; `SCHILY` wins).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<BTreeMap<String, Vec<u8>>> {
    use polyarch_snapshot::XattrRecord;
    let mut out = BTreeMap::new();
    let mut libarchive = BTreeMap::new();
    let Some(exts) = entry.pax_extensions().map_err(|e| Error::layer("reading", e))? else { return Ok(out) };
    for ext in exts {
        let ext = ext.map_err(|e| Error::layer("reading", e))?;
        let Ok(key) = ext.key() else { continue };
        match polyarch_snapshot::pax_xattr(key, ext.value_bytes()) {
            Some((name, value, XattrRecord::Schily)) => {
                out.insert(name, value);
            }
            Some((name, value, XattrRecord::Libarchive)) => {
                libarchive.insert(name, value);
            }
            None => {}
        }
    }
    for (k, v) in libarchive {
        out.entry(k).or_insert(v);
    }
    Ok(out)
}

/// Whether the process runs as root (owners can be set).
pub fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status carries the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str) -> Node {
        Node::new(Kind::File(Arc::new(data.as_bytes().to_vec())), 0o644, 0, 0, 0)
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a//b/./c/"), "a/b/c");
        assert_eq!(clean("../../x"), "x");
        assert_eq!(clean("/"), "");
        assert_eq!(parent("a/b"), "a");
        assert_eq!(parent("a"), "");
        assert_eq!(base("a/b"), "b");
    }

    #[test]
    fn resolve_follows_links_inside_the_root() {
        let mut fs = MemFs::new();
        fs.insert("usr".into(), Node::dir(0o755, 0, 0, 0));
        fs.insert("usr/bin".into(), Node::dir(0o755, 0, 0, 0));
        fs.insert("bin".into(), Node { kind: Kind::Symlink("/usr/bin".into()), ..file("") });
        fs.insert("usr/bin/sh".into(), file("x"));
        fs.insert("up".into(), Node { kind: Kind::Symlink("../../..".into()), ..file("") });
        assert_eq!(fs.resolve("/bin/sh", true).as_deref(), Some("usr/bin/sh"));
        assert_eq!(fs.resolve("bin", false).as_deref(), Some("bin"));
        assert_eq!(fs.resolve("bin/new", true).as_deref(), Some("usr/bin/new"));
        assert_eq!(fs.resolve("up/bin/sh", true).as_deref(), Some("usr/bin/sh"));
        assert_eq!(fs.resolve("nope/x", true), None);
        assert_eq!(fs.read("bin/sh").unwrap().as_slice(), b"x");
    }

    #[test]
    fn whiteouts_and_replacement() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("a/x", b"1");
        add("a/y", b"2");
        add("b/z", b"3");
        let l1 = b.into_inner().unwrap();
        let mut fs = MemFs::from_tar(&l1[..]).unwrap();
        assert_eq!(fs.get("a").unwrap().mode, 0o755, "implicit parents");
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in [("a/.wh..wh..opq", &b""[..]), ("a/n", b"4"), (".wh.b", b"")] {
            let mut h = tar::Header::new_ustar();
            h.set_path(p).unwrap();
            h.set_size(d.len() as u64);
            h.set_cksum();
            b.append(&h, d).unwrap();
        }
        fs.apply_layer(&b.into_inner().unwrap()[..]).unwrap();
        let paths: Vec<&String> = fs.iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["a", "a/n"]);
        fs.insert("a".into(), file("now a file"));
        assert_eq!(fs.len(), 1);
    }

    /// A tar with `a` (xattrs `user.x=1` and a binary capability), `b` a
    /// hard link to it and `c` a plain file, as Go's archive/tar writes them.
    fn linked_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let cap: &[u8] = &[1, 0, 0, 2, 0x20, 0, 0, 0];
        b.append_pax_extensions([("SCHILY.xattr.user.x", &b"1"[..]), ("SCHILY.xattr.security.capability", cap)])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("a").unwrap();
        h.set_size(3);
        h.set_mode(0o755);
        h.set_mtime(5);
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("b").unwrap();
        h.set_entry_type(tar::EntryType::Link);
        h.set_link_name("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("c").unwrap();
        h.set_size(3);
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn libarchive_xattr_records_are_read() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("LIBARCHIVE.xattr.user.from%20bsdtar", &b"dmFsdWU="[..]),
            ("LIBARCHIVE.xattr.user.both", &b"bGli"[..]),
            ("LIBARCHIVE.xattr.user.unpadded", &b"dmFsdWU"[..]),
            ("SCHILY.xattr.user.both", &b"schily"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let fs = MemFs::from_tar(&b.into_inner().unwrap()[..]).unwrap();
        let x = &fs.get("f").unwrap().xattrs;
        assert_eq!(x.get("user.from bsdtar").map(Vec::as_slice), Some(&b"value"[..]));
        assert_eq!(x.get("user.both").map(Vec::as_slice), Some(&b"schily"[..]), "SCHILY wins");
        assert_eq!(x.get("user.unpadded").map(Vec::as_slice), Some(&b"value"[..]));
    }

    #[test]
    fn tar_in_keeps_links_and_xattrs() {
        let fs = MemFs::from_tar(&linked_tar()[..]).unwrap();
        let (a, b, c) = (fs.get("a").unwrap(), fs.get("b").unwrap(), fs.get("c").unwrap());
        assert_eq!(a.xattrs.get("user.x").map(Vec::as_slice), Some(&b"1"[..]));
        assert_eq!(a.xattrs.get("security.capability").map(Vec::len), Some(8));
        assert!(a.link.is_some() && a.same_inode(b), "b is a's inode: {b:?}");
        assert_eq!((b.mode, b.mtime), (0o755, 5), "a link has its target's metadata");
        assert_eq!(c.link, None);
        assert!(!a.same_inode(c));
    }

    #[test]
    fn tar_out_writes_one_hard_link_and_pax_xattrs() {
        let fs = MemFs::from_tar(&linked_tar()[..]).unwrap();
        let out = crate::layer::tar_entries(fs.iter().map(|(k, n)| (k.as_str(), n))).unwrap();
        assert_eq!(out, crate::layer::tar_entries(fs.iter().map(|(k, n)| (k.as_str(), n))).unwrap());
        let mut ar = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut x: Vec<String> = Vec::new();
            if let Some(exts) = e.pax_extensions().unwrap() {
                x = exts.map(|r| r.unwrap().key().unwrap().to_string()).collect();
            }
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            seen.push((e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type(), link, x));
        }
        let xa = vec!["SCHILY.xattr.security.capability".to_string(), "SCHILY.xattr.user.x".to_string()];
        assert_eq!(
            seen,
            [
                ("a".into(), tar::EntryType::Regular, None, xa.clone()),
                ("b".into(), tar::EntryType::Link, Some("a".into()), xa),
                ("c".into(), tar::EntryType::Regular, None, vec![]),
            ]
        );
        let back = MemFs::from_tar(&out[..]).unwrap();
        assert!(back.get("a").unwrap().same_inode(back.get("b").unwrap()));
        assert_eq!(back.get("b").unwrap().xattrs, fs.get("a").unwrap().xattrs);
    }

    #[test]
    fn a_changed_member_is_written_in_full() {
        let fs = MemFs::from_tar(&linked_tar()[..]).unwrap();
        let a = fs.get("a").unwrap().clone();
        let b = Node { kind: Kind::File(Arc::new(b"new".to_vec())), ..a.clone() };
        let out = crate::layer::tar_entries([("a", &a), ("b", &b)]).unwrap();
        let back = MemFs::from_tar(&out[..]).unwrap();
        assert_eq!(back.read("b").unwrap().as_slice(), b"new");
        // Only the second member present: a regular file.
        let out = crate::layer::tar_entries([("b", &a)]).unwrap();
        assert_eq!(MemFs::from_tar(&out[..]).unwrap().read("b").unwrap().as_slice(), b"abc");
    }

    #[test]
    fn from_dir_and_write_to_dir_keep_links_and_xattrs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"x").unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::write(d.path().join("c"), b"x").unwrap();
        let xattrs = rustix::fs::lsetxattr(d.path().join("a"), "user.x", b"1", rustix::fs::XattrFlags::empty());
        if xattrs.is_err() && std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("user xattrs are not supported in {}: {xattrs:?}", d.path().display());
        }
        let fs = MemFs::from_dir(d.path(), &|_, _| (true, true)).unwrap();
        let (a, b, c) = (fs.get("a").unwrap(), fs.get("b").unwrap(), fs.get("c").unwrap());
        assert!(a.same_inode(b));
        assert_eq!(c.link, None);
        if xattrs.is_ok() {
            assert_eq!(b.xattrs.get("user.x").map(Vec::as_slice), Some(&b"1"[..]));
        }
        let out = tempfile::tempdir().unwrap();
        fs.write_to_dir(out.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| std::fs::metadata(out.path().join(p)).unwrap().ino();
        assert_eq!(ino("a"), ino("b"));
        assert_ne!(ino("a"), ino("c"));
        if xattrs.is_ok() {
            assert_eq!(read_xattrs(&out.path().join("b")).get("user.x").map(Vec::as_slice), Some(&b"1"[..]));
        }
    }
}
