//! An in-memory file tree: what a stage's root filesystem, a build context
//! or an unpacked layer holds, with numeric owners, modes and times.
//!
//! Layers are applied with OCI whiteout rules; hard links are resolved to
//! the content they point at, so every regular file carries its bytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
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
}

impl Node {
    /// A directory with `mode`, owned by `uid:gid`.
    pub fn dir(mode: u32, uid: u64, gid: u64, mtime: i64) -> Node {
        Node { kind: Kind::Dir, mode, uid, gid, mtime }
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
                    match self.nodes.get(&t) {
                        Some(n) => n.kind.clone(),
                        None => return Err(Error::Layer(format!("hard link {path} to missing {t}"))),
                    }
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
            self.insert(path, Node { kind, mode, uid, gid, mtime });
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
        fs.read_dir_into(root, "", keep)?;
        Ok(fs)
    }

    fn read_dir_into(&mut self, root: &Path, rel: &str, keep: &dyn Fn(&str, bool) -> (bool, bool)) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = root.join(rel);
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut names: Vec<String> = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            let path = join(rel, &name);
            let full = root.join(&path);
            let md = std::fs::symlink_metadata(&full).map_err(|e| Error::io(&full, e))?;
            let is_dir = md.is_dir();
            let (include, descend) = keep(&path, is_dir);
            let kind = if is_dir {
                Kind::Dir
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(&full).map_err(|e| Error::io(&full, e))?;
                Kind::Symlink(t.to_string_lossy().into_owned())
            } else if md.is_file() {
                if !include {
                    continue;
                }
                Kind::File(Arc::new(std::fs::read(&full).map_err(|e| Error::io(&full, e))?))
            } else {
                continue;
            };
            let node = Node { kind, mode: md.mode() & 0o7777, uid: 0, gid: 0, mtime: md.mtime() };
            if include {
                self.ensure_parents(&path, 0);
                self.nodes.insert(path.clone(), node);
            }
            if is_dir && descend {
                self.read_dir_into(root, &path, keep)?;
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

    /// Writes the tree below `dest`. Owners are set when running as root;
    /// file and directory times are set.
    pub fn write_to_dir(&self, dest: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
        let root = is_root();
        for (path, node) in &self.nodes {
            let full = dest.join(path);
            match &node.kind {
                Kind::Dir => match std::fs::create_dir(&full) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&full, e)),
                },
                Kind::File(data) => std::fs::write(&full, data.as_slice()).map_err(|e| Error::io(&full, e))?,
                Kind::Symlink(t) => std::os::unix::fs::symlink(t, &full).map_err(|e| Error::io(&full, e))?,
            }
            if root {
                let _ = std::os::unix::fs::lchown(&full, Some(node.uid as u32), Some(node.gid as u32));
            }
            if !matches!(node.kind, Kind::Symlink(_)) {
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(node.mode))
                    .map_err(|e| Error::io(&full, e))?;
            }
        }
        // Times last, deepest first, so that writing children does not
        // change a directory's time again.
        for (path, node) in self.nodes.iter().rev() {
            if matches!(node.kind, Kind::Symlink(_)) {
                continue;
            }
            let full = dest.join(path);
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(node.mtime.max(0) as u64);
            if let Ok(f) = std::fs::File::open(&full) {
                let _ = f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t));
            }
        }
        Ok(())
    }
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
        Node { kind: Kind::File(Arc::new(data.as_bytes().to_vec())), mode: 0o644, uid: 0, gid: 0, mtime: 0 }
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
}
