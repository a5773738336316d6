//! An in-memory file tree: what a stage's root filesystem, a build context
//! or an unpacked layer holds, with numeric owners, modes and times.
//!
//! Only metadata lives in memory: a regular file's bytes are a
//! [`Content`], a reference to where they are (an unpacked layer, the
//! context, a spill file). Layers are applied with OCI whiteout rules, each
//! entry at its path resolved inside the root ([`apply`]), so no entry is
//! ever below a symlink; hard links are resolved to the content they point
//! at, and the members of a hard-link group share a [`Node::link`] id so
//! that a layer holding two of them writes the second as a tar hard link.
//! Extended attributes travel with each entry (PAX `SCHILY.xattr.*`).
//! Device nodes and FIFOs are kept; sockets are skipped, as tar does.

mod apply;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::content::{Content, Spill};
use crate::error::{Error, Result};
pub use apply::{Backing, TarApply};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with its content.
    File(Content),
    /// A directory.
    Dir,
    /// A symbolic link and its target, as written.
    Symlink(String),
    /// A character (`block == false`) or block device.
    Device {
        /// Block rather than character device.
        block: bool,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
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
            (Kind::File(a), Kind::File(b)) => a.same(b),
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
        self.walk("", path, follow_last, false)
    }

    /// Where an entry `path` of an archive unpacked at `root` goes: its
    /// parents' symlinks followed with `root` as `/` (absolute targets and
    /// `..` never leave it), missing parents taken as directories to make,
    /// the last component not followed. `None` when a parent is a file or
    /// the links loop. The result is never below a symlink.
    pub fn resolve_entry(&self, root: &str, path: &str) -> Option<String> {
        self.walk(root, path, false, true)
    }

    fn walk(&self, root: &str, path: &str, follow_last: bool, create: bool) -> Option<String> {
        let mut todo: Vec<String> = clean(path).split('/').filter(|s| !s.is_empty()).map(String::from).rev().collect();
        let mut cur = root.to_string();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                if cur != root {
                    cur = parent(&cur).to_string();
                }
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
                        cur = root.to_string();
                    }
                    for p in target.split('/').filter(|s| !s.is_empty() && *s != ".").rev() {
                        todo.push(p.to_string());
                    }
                }
                Some(Kind::Dir) => cur = next,
                Some(_) if last => cur = next,
                Some(_) if create => return None,
                Some(_) => cur = next,
                None if last || create => cur = next,
                None => return None,
            }
        }
        Some(cur)
    }

    /// Reads a regular file whole, following symlinks (for small files:
    /// `/etc/passwd`, a Dockerfile); `None` when missing or unreadable.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.content(path)?.read_all().ok()
    }

    /// The content of a regular file, following symlinks.
    pub fn content(&self, path: &str) -> Option<&Content> {
        let p = self.resolve(path, true)?;
        match &self.nodes.get(&p)?.kind {
            Kind::File(c) => Some(c),
            _ => None,
        }
    }

    /// Applies layer entries (sorted, as [`crate::layer::write_tar`] writes
    /// them, without whiteouts) as unpacking their layer would: each at its
    /// path resolved inside the root.
    pub fn apply_entries(&mut self, entries: &[(String, Node)]) {
        for (p, n) in entries {
            let path = self.resolve_entry("", p).unwrap_or_else(|| p.clone());
            self.ensure_parents(&path, 0);
            self.insert(path, n.clone());
        }
    }

    /// Applies one layer (a tar stream, compressed or not) with whiteouts;
    /// file contents go to a spill file in the temporary directory.
    pub fn apply_layer(&mut self, reader: impl Read) -> Result<()> {
        let spill = Spill::temp();
        self.apply_tar(reader, &TarApply::layer(Backing::Spill(&spill))).map(|_| ())
    }

    /// Creates missing parents of `path` as `0755` root-owned directories.
    /// Returns the directories made, topmost first.
    fn ensure_parents(&mut self, path: &str, mtime: i64) -> Vec<String> {
        let mut p = parent(path);
        let mut missing = Vec::new();
        while !p.is_empty() && !self.nodes.contains_key(p) {
            missing.push(p.to_string());
            p = parent(p);
        }
        missing.reverse();
        for m in &missing {
            self.nodes.insert(m.clone(), Node::dir(0o755, 0, 0, mtime));
        }
        missing
    }

    /// Reads a directory from disk. Entries for which `keep` answers false
    /// are left out (directories are still walked when `descend` says so).
    pub fn from_dir(root: &Path, keep: &dyn Fn(&str, bool) -> (bool, bool)) -> Result<MemFs> {
        let mut fs = MemFs::new();
        let mut inodes = Inodes::new(Arc::new(root.to_path_buf()));
        fs.read_dir_into(root, "", keep, &mut inodes)?;
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
                let (data, group) = inodes.file(&path, &md);
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
        MemFs::from_tar_in(reader, &Spill::temp())
    }

    /// As [`MemFs::from_tar`], file contents spilled to `spill`.
    pub fn from_tar_in(reader: impl Read, spill: &Spill) -> Result<MemFs> {
        let mut fs = MemFs::new();
        fs.apply_tar(reader, &TarApply::layer(Backing::Spill(spill)))?;
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

/// Contents of files read from a directory, as references below its root,
/// and their hard-link groups, keyed by device and inode (the first
/// member's content is shared by the others).
#[derive(Debug)]
pub(crate) struct Inodes {
    root: Arc<PathBuf>,
    seen: HashMap<DevIno, (u64, Content)>,
}

/// A file's device and inode numbers.
type DevIno = (u64, u64);

impl Inodes {
    /// Contents below `root`.
    pub(crate) fn new(root: Arc<PathBuf>) -> Inodes {
        Inodes { root, seen: HashMap::new() }
    }

    /// The content of the regular file `rel` (below the root) and, when it
    /// has more than one link, its group.
    pub(crate) fn file(&mut self, rel: &str, md: &std::fs::Metadata) -> (Content, Option<u64>) {
        use std::os::unix::fs::MetadataExt;
        let content = || Content::rooted(self.root.clone(), rel, md.len());
        if md.nlink() < 2 {
            return (content(), None);
        }
        if let Some((g, c)) = self.seen.get(&(md.dev(), md.ino())) {
            return (c.clone(), Some(*g));
        }
        let (g, c) = (new_link_group(), content());
        self.seen.insert((md.dev(), md.ino()), (g, c.clone()));
        (c, Some(g))
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

/// Whether the process runs as root (owners can be set).
pub fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status carries the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod tests;
