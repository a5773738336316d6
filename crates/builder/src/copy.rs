//! COPY and ADD path rules, as BuildKit's file backend and fsutil's copier
//! apply them:
//!
//! - a source directory's contents are copied, not the directory itself;
//! - a destination ending in `/`, or an existing directory, receives a
//!   source file under its base name; otherwise the file is written at the
//!   destination path;
//! - missing parents are created `0755`, owned by the `--chown` user;
//! - `--chmod` applies to every copied file and directory;
//! - the last component of a source is followed when it is a symlink;
//! - wildcards (`*`, `?`, `[...]`) match per path component; a wildcard
//!   matching nothing copies nothing;
//! - `--exclude` patterns match paths relative to the source;
//! - `--parents` keeps the source's path (below a `/./` pivot if any);
//! - ADD unpacks local tar archives (plain, gzip, bzip2, xz, zstd) into
//!   the destination directory, which is the archive's `/`: each entry goes
//!   where its path resolves with symlinks followed inside that directory,
//!   as BuildKit's unpacking (a chrooted untar) puts it;
//! - copied entries go where their path resolves in the target, symlinks
//!   of the lower layers followed inside the root (a directory onto a
//!   symlink to a directory merges into the directory), so nothing is ever
//!   written below a symlink.
//!
//! The result is the set of entries that change, applied to `target`.

use std::sync::Arc;

use polyarch_dockerfile::ignore::PatternMatcher;

use crate::fs::{base, clean, join, parent, Backing, Content, Kind, MemFs, Node, Spill, TarApply};

/// What to copy where, with names already expanded.
#[derive(Debug, Clone, Default)]
pub struct CopySpec {
    /// Source paths, relative to the source root.
    pub sources: Vec<String>,
    /// The absolute destination; a trailing `/` marks a directory.
    pub dest: String,
    /// `--chown`, resolved to ids.
    pub chown: Option<(u64, u64)>,
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--parents`.
    pub parents: bool,
    /// ADD: unpack local archives.
    pub unpack: bool,
    /// Keep source owners when there is no `--chown` (copies from a stage
    /// or image); context files are owned by root.
    pub keep_owner: bool,
    /// The time given to directories this copy creates.
    pub now: i64,
    /// Where the entries of unpacked archives go (the system's temporary
    /// directory when unset).
    pub spill: Option<Arc<Spill>>,
}

/// Why a copy could not be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// A source (or wildcard) matched nothing; the path as BuildKit shows it.
    NotFound(String),
    /// More than one source needs a directory destination.
    NeedsDirectory,
    /// An `--exclude` pattern is malformed.
    BadPattern(String),
    /// A destination path goes through a file.
    NotADirectory(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::NotFound(p) => write!(f, "{}: not found", polyarch_dockerfile::go_quote(p)),
            CopyError::NeedsDirectory => f.write_str(
                "When using COPY with more than one source file, the destination must be a directory and end with a /",
            ),
            CopyError::BadPattern(p) => write!(f, "invalid exclude pattern {}", polyarch_dockerfile::go_quote(p)),
            CopyError::NotADirectory(p) => {
                write!(f, "cannot copy to {}: a parent is not a directory", polyarch_dockerfile::go_quote(p))
            }
        }
    }
}

/// Whether a path has glob characters.
pub fn has_wildcards(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The changed entries, in path order, once applied to `target`.
pub struct Planned {
    /// Entries written by the copy (including created directories).
    pub changes: MemFs,
    /// The target with the changes applied.
    pub merged: MemFs,
}

struct Copier<'a> {
    src: &'a MemFs,
    merged: MemFs,
    changes: MemFs,
    spec: &'a CopySpec,
    excludes: Option<PatternMatcher>,
    /// Source hard-link groups mapped to this copy's own groups: files
    /// linked in the source stay linked with each other, not with copies
    /// made by other instructions.
    groups: std::collections::HashMap<u64, u64>,
}

/// Plans the copy of `spec` from `src` onto `target`.
pub fn plan(src: &MemFs, target: &MemFs, spec: &CopySpec) -> Result<Planned, CopyError> {
    if spec.sources.len() > 1 && !spec.dest.ends_with('/') {
        return Err(CopyError::NeedsDirectory);
    }
    let excludes = if spec.excludes.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&spec.excludes).map_err(|_| CopyError::BadPattern(spec.excludes.join(",")))?)
    };
    let mut c =
        Copier { src, merged: target.clone(), changes: MemFs::new(), spec, excludes, groups: Default::default() };
    for s in &spec.sources {
        c.copy_source(s)?;
    }
    Ok(Planned { changes: c.changes, merged: c.merged })
}

impl Copier<'_> {
    fn excluded(&self, rel: &str) -> bool {
        self.excludes.as_ref().is_some_and(|m| m.matches_or_parent_matches(rel))
    }

    fn copy_source(&mut self, source: &str) -> Result<(), CopyError> {
        // `--parents` keeps the path below a `/./` pivot, or the whole path.
        let (pivot, rest) = match source.split_once("/./") {
            Some((a, b)) if self.spec.parents => (clean(a), b.to_string()),
            _ => (String::new(), source.to_string()),
        };
        let full = clean(&join(&pivot, &clean(&rest)));
        let matches: Vec<String> = if has_wildcards(&full) {
            let m = PatternMatcher::new(&[full.as_str()]).map_err(|_| CopyError::NotFound(format!("/{full}")))?;
            // A plain wildcard matches one path segment per pattern segment
            // (Go's filepath.Match, BuildKit's ResolveWildcards). With
            // `--parents` the pattern is an include pattern of the copy, as
            // BuildKit's: `**` spans any number of directories, none too,
            // and a matched directory brings all it holds.
            let depth = full.split('/').count();
            let mut found: Vec<String> = Vec::new();
            for k in self.src.iter().map(|(k, _)| k) {
                let fits = self.spec.parents || k.split('/').count() == depth;
                if !fits || !m.matches_exact(k) || self.excluded(k) {
                    continue;
                }
                let inside_found =
                    found.last().is_some_and(|d| k.starts_with(d.as_str()) && k[d.len()..].starts_with('/'));
                if !inside_found {
                    found.push(k.clone());
                }
            }
            // BuildKit allows empty wildcards: nothing is copied.
            found
        } else {
            vec![full.clone()]
        };
        for m in matches {
            let resolved = if m.is_empty() {
                Some(String::new())
            } else {
                self.src.resolve(&m, true).filter(|p| p.is_empty() || self.src.get(p).is_some())
            };
            let Some(resolved) = resolved else {
                return Err(CopyError::NotFound(format!("/{m}")));
            };
            let dest = if self.spec.parents {
                let keep = m.strip_prefix(&pivot).unwrap_or(&m).trim_start_matches('/').to_string();
                let d = clean(&self.spec.dest);
                let is_dir = resolved.is_empty() || self.src.get(&resolved).is_some_and(Node::is_dir);
                if is_dir {
                    format!("/{}/", join(&d, &keep))
                } else {
                    format!("/{}/", join(&d, parent(&keep)))
                }
            } else {
                self.spec.dest.clone()
            };
            self.copy_one(&m, &resolved, &dest)?;
        }
        Ok(())
    }

    fn copy_one(&mut self, name: &str, resolved: &str, dest: &str) -> Result<(), CopyError> {
        let dir_syntax = dest.ends_with('/');
        let d = clean(dest);
        let is_dir_src = resolved.is_empty() || self.src.get(resolved).is_some_and(Node::is_dir);
        let target = self.merged.resolve(&d, true).unwrap_or_else(|| d.clone());
        let target_is_dir = target.is_empty() || self.merged.get(&target).is_some_and(Node::is_dir);
        if is_dir_src {
            self.mkdir_all(&d);
            let target = self.merged.resolve(&d, true).unwrap_or(d);
            let below: Vec<(String, Node)> = self.src.children(resolved).map(|(k, n)| (k.clone(), n.clone())).collect();
            let prefix_len = if resolved.is_empty() { 0 } else { resolved.len() + 1 };
            for (k, n) in below {
                let rel = &k[prefix_len..];
                if self.excluded(rel) {
                    continue;
                }
                self.put(join(&target, rel), n)?;
            }
            return Ok(());
        }
        let Some(node) = self.src.get(resolved).cloned() else { return Ok(()) };
        if self.spec.unpack && self.unpack(&node, &d) {
            return Ok(());
        }
        let dst = if dir_syntax || target_is_dir {
            self.mkdir_all(&d);
            let t = self.merged.resolve(&d, true).unwrap_or(d);
            join(&t, base(name))
        } else {
            self.mkdir_all(parent(&d));
            let p = self.merged.resolve(parent(&d), true).unwrap_or_else(|| parent(&d).to_string());
            join(&p, base(&d))
        };
        self.put(dst, node)
    }

    /// ADD: unpacks `node` into directory `d` if it is a tar archive, each
    /// entry at its path resolved inside `d`. An archive that turns out
    /// unreadable is copied as a file, as BuildKit does.
    fn unpack(&mut self, node: &Node, d: &str) -> bool {
        let Kind::File(c) = &node.kind else { return false };
        if !c.open().is_ok_and(crate::compress::is_tar) {
            return false;
        }
        let temp;
        let spill = match &self.spec.spill {
            Some(s) => s.as_ref(),
            None => {
                temp = Spill::temp();
                &temp
            }
        };
        let mut merged = self.merged.clone();
        let mut changes = self.changes.clone();
        let owner = self.spec.chown.unwrap_or((0, 0));
        mkdir_all(&mut merged, &mut changes, d, owner, self.spec.now);
        let t = merged.resolve(d, true).unwrap_or_else(|| d.to_string());
        let opts = TarApply { backing: Backing::Spill(spill), root: t, whiteouts: false };
        let Ok(written) = c.open().and_then(|r| merged.apply_tar(r, &opts)) else { return false };
        for p in written {
            let Some(n) = merged.get(&p) else { continue };
            let mut n = n.clone();
            if let Some((u, g)) = self.spec.chown {
                n.uid = u;
                n.gid = g;
                merged.insert(p.clone(), n.clone());
            }
            changes.insert(p, n);
        }
        self.merged = merged;
        self.changes = changes;
        true
    }

    /// Where a copied entry at `path` goes in the target: its parents'
    /// symlinks followed inside the root; a directory onto a symlink to a
    /// directory goes into that directory.
    fn place(&self, path: &str, node: &Node) -> Result<String, CopyError> {
        let Some(p) = self.merged.resolve_entry("", path) else {
            return Err(CopyError::NotADirectory(format!("/{path}")));
        };
        if node.is_dir() {
            if let Some(t) = self.merged.resolve(&p, true).filter(|t| self.merged.get(t).is_some_and(Node::is_dir)) {
                return Ok(t);
            }
        }
        Ok(p)
    }

    /// Adds one copied entry with the owner and mode rules applied.
    fn put(&mut self, path: String, mut node: Node) -> Result<(), CopyError> {
        let path = self.place(&path, &node)?;
        match self.spec.chown {
            Some((u, g)) => {
                node.uid = u;
                node.gid = g;
            }
            None if !self.spec.keep_owner => {
                node.uid = 0;
                node.gid = 0;
            }
            None => {}
        }
        if let Some(m) = self.spec.chmod {
            if !matches!(node.kind, Kind::Symlink(_)) {
                node.mode = m;
            }
        }
        self.insert(path, node);
        Ok(())
    }

    fn insert(&mut self, path: String, mut node: Node) {
        if path.is_empty() {
            return;
        }
        if let Some(g) = node.link {
            node.link = Some(*self.groups.entry(g).or_insert_with(crate::fs::new_link_group));
        }
        // A directory over an existing directory keeps what is inside.
        self.merged.insert(path.clone(), node.clone());
        self.changes.insert(path, node);
    }

    /// Creates the missing directories of `path` (following symlinks).
    fn mkdir_all(&mut self, path: &str) {
        let owner = self.spec.chown.unwrap_or((0, 0));
        mkdir_all(&mut self.merged, &mut self.changes, path, owner, self.spec.now);
    }
}

/// Creates the missing directories of `path` in `merged` (following
/// symlinks), `0755` with `owner`, recording them in `changes`.
pub fn mkdir_all(merged: &mut MemFs, changes: &mut MemFs, path: &str, owner: (u64, u64), now: i64) {
    {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let next = join(&cur, part);
            let resolved = merged.resolve(&next, true).unwrap_or(next);
            if merged.get(&resolved).is_none() {
                let node = Node::dir(0o755, owner.0, owner.1, now);
                merged.insert(resolved.clone(), node.clone());
                changes.insert(resolved.clone(), node);
            }
            cur = resolved;
        }
    }
}

/// The entries a layer must hold for `changes` on top of the tree `merged`
/// (the target after the copy): the changes plus every parent directory
/// with its current metadata, as a file-system diff would show them.
pub fn layer_entries(changes: &MemFs, merged: &MemFs) -> Vec<(String, Node)> {
    let mut out: std::collections::BTreeMap<String, Node> = std::collections::BTreeMap::new();
    for (p, n) in changes.iter() {
        out.insert(p.clone(), n.clone());
        let mut q = parent(p);
        while !q.is_empty() && !out.contains_key(q) {
            let node = merged.get(q).cloned().unwrap_or_else(|| Node::dir(0o755, 0, 0, 0));
            out.insert(q.to_string(), node);
            q = parent(q);
        }
    }
    out.into_iter().collect()
}

/// A file with `data`, for tests and inline content.
pub fn file_node(data: &[u8], mode: u32, mtime: i64) -> Node {
    Node::new(Kind::File(Content::bytes(data)), mode, 0, 0, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MemFs {
        let mut fs = MemFs::new();
        fs.insert("a.txt".into(), file_node(b"a", 0o644, 1));
        fs.insert("b.txt".into(), file_node(b"b", 0o600, 1));
        fs.insert("dir".into(), Node::dir(0o700, 0, 0, 1));
        fs.insert("dir/x".into(), file_node(b"x", 0o755, 1));
        fs.insert("dir/sub".into(), Node::dir(0o755, 0, 0, 1));
        fs.insert("dir/sub/y.txt".into(), file_node(b"y", 0o644, 1));
        fs.insert("link".into(), Node::new(Kind::Symlink("a.txt".into()), 0o777, 0, 0, 1));
        fs
    }

    fn target() -> MemFs {
        let mut fs = MemFs::new();
        fs.insert("etc".into(), Node::dir(0o755, 0, 0, 0));
        fs.insert("existing".into(), Node::dir(0o750, 5, 5, 0));
        fs
    }

    fn run(sources: &[&str], dest: &str) -> Result<Vec<String>, CopyError> {
        run_spec(CopySpec {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.into(),
            now: 9,
            ..Default::default()
        })
    }

    fn run_spec(spec: CopySpec) -> Result<Vec<String>, CopyError> {
        let p = plan(&ctx(), &target(), &spec)?;
        Ok(p.changes.iter().map(|(k, _)| k.clone()).collect())
    }

    #[test]
    fn file_to_path_dir_and_existing_dir() {
        assert_eq!(run(&["a.txt"], "/new").unwrap(), ["new"]);
        assert_eq!(run(&["a.txt"], "/new/").unwrap(), ["new", "new/a.txt"]);
        assert_eq!(run(&["a.txt"], "/existing").unwrap(), ["existing/a.txt"]);
        assert_eq!(run(&["a.txt"], "/deep/er/f").unwrap(), ["deep", "deep/er", "deep/er/f"]);
    }

    #[test]
    fn directory_contents_are_copied() {
        assert_eq!(run(&["dir"], "/app").unwrap(), ["app", "app/sub", "app/sub/y.txt", "app/x"]);
        assert_eq!(run(&["."], "/").unwrap().len(), 7);
        let p = plan(
            &ctx(),
            &target(),
            &CopySpec { sources: vec!["dir".into()], dest: "/app".into(), now: 9, ..Default::default() },
        )
        .unwrap();
        let app = p.changes.get("app").unwrap();
        assert_eq!((app.mode, app.mtime), (0o755, 9), "created with MkdirAll, not the source's mode");
        assert_eq!(p.changes.get("app/sub").unwrap().mode, 0o755);
    }

    #[test]
    fn several_sources_need_a_directory() {
        assert_eq!(run(&["a.txt", "b.txt"], "/x"), Err(CopyError::NeedsDirectory));
        assert_eq!(run(&["a.txt", "b.txt"], "/x/").unwrap(), ["x", "x/a.txt", "x/b.txt"]);
    }

    #[test]
    fn missing_sources_and_wildcards() {
        assert_eq!(run(&["nope"], "/x").unwrap_err().to_string(), "\"/nope\": not found");
        assert_eq!(run(&["*.md"], "/x/").unwrap(), Vec::<String>::new(), "an empty wildcard copies nothing");
        assert_eq!(run(&["*.txt"], "/x/").unwrap(), ["x", "x/a.txt", "x/b.txt"]);
        assert_eq!(run(&["d?r"], "/x/").unwrap(), ["x", "x/sub", "x/sub/y.txt", "x/x"]);
    }

    #[test]
    fn symlink_source_is_followed() {
        let p = plan(
            &ctx(),
            &target(),
            &CopySpec { sources: vec!["link".into()], dest: "/l".into(), ..Default::default() },
        )
        .unwrap();
        assert!(matches!(p.changes.get("l").unwrap().kind, Kind::File(_)));
    }

    #[test]
    fn chown_chmod_exclude_parents() {
        let spec = CopySpec {
            sources: vec!["dir".into()],
            dest: "/o/".into(),
            chown: Some((10, 20)),
            chmod: Some(0o640),
            excludes: vec!["*.txt".into(), "sub/*.txt".into()],
            ..Default::default()
        };
        let p = plan(&ctx(), &target(), &spec).unwrap();
        let paths: Vec<&String> = p.changes.iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["o", "o/sub", "o/x"]);
        let o = p.changes.get("o").unwrap();
        assert_eq!((o.uid, o.gid, o.mode), (10, 20, 0o755));
        let x = p.changes.get("o/x").unwrap();
        assert_eq!((x.uid, x.gid, x.mode), (10, 20, 0o640));
        let parents =
            CopySpec { sources: vec!["dir/sub/y.txt".into()], dest: "/p/".into(), parents: true, ..Default::default() };
        assert_eq!(run_spec(parents).unwrap(), ["p", "p/dir", "p/dir/sub", "p/dir/sub/y.txt"]);
        let pivot = CopySpec {
            sources: vec!["dir/./sub/y.txt".into()],
            dest: "/p/".into(),
            parents: true,
            ..Default::default()
        };
        assert_eq!(run_spec(pivot).unwrap(), ["p", "p/sub", "p/sub/y.txt"]);
    }

    #[test]
    fn double_star_spans_directories_with_parents_only() {
        let mut src = ctx();
        src.insert("dir/top.txt".into(), file_node(b"t", 0o644, 1));
        let run = |sources: &[&str], parents: bool| {
            let spec = CopySpec {
                sources: sources.iter().map(|s| s.to_string()).collect(),
                dest: "/p/".into(),
                parents,
                ..Default::default()
            };
            let p = plan(&src, &target(), &spec).unwrap();
            p.changes.iter().map(|(k, _)| k.clone()).collect::<Vec<String>>()
        };
        // An include pattern, as BuildKit's --parents: `**` is zero or more directories.
        assert_eq!(run(&["dir/**/*.txt"], true), ["p", "p/dir", "p/dir/sub", "p/dir/sub/y.txt", "p/dir/top.txt"]);
        assert_eq!(run(&["dir/./**/*.txt"], true), ["p", "p/sub", "p/sub/y.txt", "p/top.txt"]);
        // A matched directory brings what it holds, once.
        assert_eq!(run(&["d*"], true), ["p", "p/dir", "p/dir/sub", "p/dir/sub/y.txt", "p/dir/top.txt", "p/dir/x"]);
        // Without --parents a pattern segment is one path segment.
        assert_eq!(run(&["dir/**/*.txt"], false), ["p", "p/y.txt"]);
    }

    #[test]
    fn layer_entries_include_parents_with_current_metadata() {
        let spec = CopySpec { sources: vec!["a.txt".into()], dest: "/existing/".into(), ..Default::default() };
        let p = plan(&ctx(), &target(), &spec).unwrap();
        let e = layer_entries(&p.changes, &target());
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].0.as_str(), e[0].1.mode, e[0].1.uid), ("existing", 0o750, 5));
    }

    #[test]
    fn hard_links_stay_linked_within_one_copy() {
        let mut src = ctx();
        let g = crate::fs::new_link_group();
        let linked = Node { link: Some(g), ..file_node(b"same", 0o644, 1) };
        src.insert("h1".into(), linked.clone());
        src.insert("h2".into(), linked);
        let spec = CopySpec { sources: vec!["h1".into(), "h2".into()], dest: "/d/".into(), ..Default::default() };
        let p = plan(&src, &target(), &spec).unwrap();
        let (a, b) = (p.changes.get("d/h1").unwrap(), p.changes.get("d/h2").unwrap());
        assert!(a.same_inode(b), "both copies share one group");
        assert_ne!(a.link, Some(g), "a copy's group is its own");
        let tar = crate::layer::tar_entries(p.changes.iter().map(|(k, n)| (k.as_str(), n))).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let kinds: Vec<(String, tar::EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("d/".to_string(), tar::EntryType::Directory),
                ("d/h1".to_string(), tar::EntryType::Regular),
                ("d/h2".to_string(), tar::EntryType::Link)
            ]
        );
        let one = CopySpec { sources: vec!["h2".into()], dest: "/e/".into(), ..Default::default() };
        let q = plan(&src, &p.merged, &one).unwrap();
        assert_ne!(q.changes.get("e/h2").unwrap().link, a.link, "another copy is another inode");
    }

    #[test]
    fn add_unpacks_archives() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("pkg/f").unwrap();
        h.set_size(1);
        h.set_mode(0o600);
        h.set_uid(7);
        h.set_cksum();
        b.append(&h, &b"z"[..]).unwrap();
        let raw = b.into_inner().unwrap();
        let gz = crate::layer::compress(&raw, crate::layer::Compression::Gzip).unwrap();
        let mut src = MemFs::new();
        src.insert("a.tar.gz".into(), file_node(&gz, 0o644, 0));
        let spec =
            CopySpec { sources: vec!["a.tar.gz".into()], dest: "/opt".into(), unpack: true, ..Default::default() };
        let p = plan(&src, &target(), &spec).unwrap();
        let paths: Vec<&String> = p.changes.iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["opt", "opt/pkg", "opt/pkg/f"]);
        assert_eq!(p.changes.get("opt/pkg/f").unwrap().uid, 7);
        let spec = CopySpec { unpack: false, ..spec };
        let p = plan(&src, &target(), &spec).unwrap();
        assert!(matches!(p.changes.get("opt").unwrap().kind, Kind::File(_)));
    }

    fn below_no_symlink(changes: &MemFs, merged: &MemFs) {
        for (p, _) in layer_entries(changes, merged) {
            let mut q = parent(&p);
            while !q.is_empty() {
                assert!(merged.get(q).is_some_and(Node::is_dir), "{p} is below {q}, not a directory");
                q = parent(q);
            }
        }
    }

    #[test]
    fn add_of_a_hostile_archive_stays_in_the_destination() {
        let tar =
            crate::fs::tests::tar_of(&[("link", "->/etc"), ("link/file", "1"), ("up", "->../.."), ("up/f2", "2")]);
        let mut src = MemFs::new();
        src.insert("evil.tar".into(), file_node(&tar, 0o644, 0));
        let spec =
            CopySpec { sources: vec!["evil.tar".into()], dest: "/x/".into(), unpack: true, ..Default::default() };
        let p = plan(&src, &target(), &spec).unwrap();
        let paths: Vec<&String> = p.changes.iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["x", "x/etc", "x/etc/file", "x/f2", "x/link", "x/up"]);
        assert!(p.merged.get("etc/file").is_none(), "the lower /etc is not written");
        below_no_symlink(&p.changes, &p.merged);
        let entries = layer_entries(&p.changes, &p.merged);
        crate::layer::tar_entries(entries.iter().map(|(k, n)| (k.as_str(), n))).unwrap();
    }

    #[test]
    fn copies_follow_symlinks_of_the_target() {
        let mut t = target();
        t.insert("usr".into(), Node::dir(0o755, 0, 0, 0));
        t.insert("usr/bin".into(), Node::dir(0o755, 0, 0, 0));
        t.insert("bin".into(), Node::new(Kind::Symlink("usr/bin".into()), 0o777, 0, 0, 0));
        t.insert("out".into(), Node::new(Kind::Symlink("/etc".into()), 0o777, 0, 0, 0));
        let mut src = MemFs::new();
        src.insert("root".into(), Node::dir(0o755, 0, 0, 0));
        src.insert("root/bin".into(), Node::dir(0o700, 0, 0, 0));
        src.insert("root/bin/tool".into(), file_node(b"t", 0o755, 0));
        src.insert("root/out".into(), Node::dir(0o755, 0, 0, 0));
        src.insert("root/out/sub".into(), Node::dir(0o755, 0, 0, 0));
        src.insert("root/out/sub/f".into(), file_node(b"f", 0o644, 0));
        let spec = CopySpec { sources: vec!["root".into()], dest: "/".into(), ..Default::default() };
        let p = plan(&src, &t, &spec).unwrap();
        let paths: Vec<&String> = p.changes.iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["etc", "etc/sub", "etc/sub/f", "usr/bin", "usr/bin/tool"]);
        assert_eq!(p.merged.get("bin").unwrap().kind, Kind::Symlink("usr/bin".into()), "the link stays");
        below_no_symlink(&p.changes, &p.merged);
        let spec = CopySpec { sources: vec!["root/bin/tool".into()], dest: "/out/deep/".into(), ..Default::default() };
        let p = plan(&src, &t, &spec).unwrap();
        let paths: Vec<&String> = p.changes.iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["etc/deep", "etc/deep/tool"]);
    }
}
