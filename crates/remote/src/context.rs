//! The build context on the wire: which files a build reads, their
//! metadata as [`Entry`]s, and the tree rebuilt on the node from entries and
//! contents it holds by digest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polyarch_builder::copy::{file_node, has_wildcards};
use polyarch_builder::fs::{clean, parent, Kind, MemFs, Node};
use polyarch_dockerfile::ignore::PatternMatcher;
use polyarch_dockerfile::instructions::{self, Instruction};
use polyarch_oci::Digest;
use polyarch_store::{BlobSource, Store};

use crate::error::{Error, Result};
use crate::wire::Entry;

/// The context paths the Dockerfile's COPY, ADD and `RUN --mount=type=bind`
/// read, as patterns; `None` when that cannot be known before the build
/// (a source with a variable, a bind mount of the whole context).
fn sources(dockerfile: &[u8]) -> Option<Vec<String>> {
    let ast = polyarch_dockerfile::parse(dockerfile).ok()?;
    let df = instructions::parse(&ast).ok()?;
    let mut out = Vec::new();
    for stage in &df.stages {
        for c in &stage.commands {
            match &c.instruction {
                Instruction::Copy(cp) | Instruction::Add(cp) if cp.from.is_none() => {
                    for s in &cp.sources {
                        if s.contains("://") || s.starts_with("git@") {
                            continue;
                        }
                        out.push(s.clone());
                    }
                }
                Instruction::Run(run) => {
                    for m in run.mounts.iter().filter(|m| m.r#type == "bind" && m.from.is_none()) {
                        out.push(m.source.clone().unwrap_or_else(|| ".".into()));
                    }
                }
                _ => {}
            }
        }
    }
    if out.iter().any(|s| s.contains('$')) {
        return None;
    }
    Some(out)
}

/// The paths of `ctx` a build of `dockerfile` can read: every match of a
/// COPY/ADD source with what is below it and the directories above it.
/// When the sources cannot be known in advance (variables in them), or a
/// matched path is a symbolic link, the whole context is needed.
pub fn needed(dockerfile: &[u8], ctx: &MemFs) -> BTreeSet<String> {
    let all = || ctx.iter().map(|(p, _)| p.clone()).collect::<BTreeSet<_>>();
    let Some(sources) = sources(dockerfile) else {
        return all();
    };
    let mut roots: BTreeSet<String> = BTreeSet::new();
    for s in &sources {
        // `--parents` pivots (`a/./b`) name the same files.
        let full = clean(&s.replace("/./", "/"));
        if full.is_empty() || full == "." {
            return all();
        }
        if has_wildcards(&full) {
            let Ok(m) = PatternMatcher::new(&[full.as_str()]) else {
                return all();
            };
            // Every depth: `**` of a `--parents` COPY spans directories.
            roots.extend(ctx.iter().map(|(p, _)| p).filter(|p| m.matches_exact(p)).cloned());
        } else {
            roots.insert(full);
        }
    }
    let mut out = BTreeSet::new();
    for r in &roots {
        let mut p = r.as_str();
        while !p.is_empty() {
            if matches!(ctx.get(p).map(|n| &n.kind), Some(Kind::Symlink(_))) {
                return all();
            }
            out.insert(p.to_string());
            p = parent(p);
        }
        let prefix = format!("{r}/");
        for (p, n) in ctx.iter().filter(|(p, _)| p.starts_with(&prefix)) {
            if matches!(n.kind, Kind::Symlink(_)) {
                return all();
            }
            out.insert(p.clone());
        }
    }
    out.retain(|p| ctx.get(p).is_some());
    out
}

/// A content by digest.
pub type Content = (Digest, polyarch_builder::fs::Content);

/// The entries of `paths` in `ctx`, and each distinct file content once,
/// by digest (hashed by streaming).
pub fn entries(ctx: &MemFs, paths: &BTreeSet<String>) -> Result<(Vec<Entry>, Vec<Content>)> {
    let mut entries = Vec::with_capacity(paths.len());
    let mut contents: Vec<Content> = Vec::new();
    let mut seen = BTreeSet::new();
    for p in paths {
        let Some(n) = ctx.get(p) else { continue };
        let mut e = Entry {
            path: p.clone(),
            kind: String::new(),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            digest: None,
            size: 0,
            target: None,
            xattrs: n.xattrs.clone(),
            link: n.link,
        };
        match &n.kind {
            Kind::File(data) => {
                let d = data.digest().map_err(|e| Error::Context(Box::new(e)))?;
                e.kind = "file".into();
                e.size = data.len();
                if seen.insert(d.clone()) {
                    contents.push((d.clone(), data.clone()));
                }
                e.digest = Some(d);
            }
            Kind::Dir => e.kind = "dir".into(),
            Kind::Symlink(t) => {
                e.kind = "symlink".into();
                e.target = Some(t.clone());
            }
            #[allow(unreachable_patterns)]
            _ => continue,
        }
        entries.push(e);
    }
    Ok((entries, contents))
}

/// What of the build's file trees a node receives: the entries of the
/// context the Dockerfile reads; every entry of each named context that
/// is a file tree (`--build-context NAME=DIR`, a Git checkout, a download)
/// or an OCI layout directory, by name; and the OCI layout directories of
/// `--cache-from type=local`.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The build context's entries.
    pub entries: Vec<Entry>,
    /// Named file trees.
    pub named: BTreeMap<String, Vec<Entry>>,
    /// Local cache directories.
    pub caches: Vec<Vec<Entry>>,
}

/// The [`Context`] of `opts` with the local cache directories `caches`,
/// and each distinct file content once.
pub fn of(opts: &polyarch_builder::BuildOptions, caches: &[PathBuf]) -> Result<(Context, Vec<Content>)> {
    use polyarch_builder::named::NamedContext;
    let (main, mut contents) = entries(&opts.context, &needed(&opts.dockerfile, &opts.context))?;
    let mut seen: BTreeSet<Digest> = contents.iter().map(|(d, _)| d.clone()).collect();
    let mut all = |fs: &MemFs, contents: &mut Vec<Content>| -> Result<Vec<Entry>> {
        let (e, more) = entries(fs, &fs.iter().map(|(p, _)| p.clone()).collect())?;
        contents.extend(more.into_iter().filter(|(d, _)| seen.insert(d.clone())));
        Ok(e)
    };
    let mut named = BTreeMap::new();
    for (name, c) in opts.named_contexts.iter() {
        let tree = match c {
            NamedContext::Files(fs) => all(fs, &mut contents)?,
            NamedContext::Layout(l) => all(&layout_tree(&l.dir)?, &mut contents)?,
            NamedContext::Image(_) => continue,
        };
        named.insert(name.clone(), tree);
    }
    let mut dirs = Vec::new();
    for dir in caches {
        dirs.push(all(&layout_tree(dir)?, &mut contents)?);
    }
    Ok((Context { entries: main, named, caches: dirs }, contents))
}

/// An OCI layout directory as a file tree.
fn layout_tree(dir: &Path) -> Result<MemFs> {
    MemFs::from_dir(dir, &|_, _| (true, true)).map_err(|e| Error::Context(Box::new(e)))
}

/// The media type context contents are stored under on a node.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// Rebuilds a context on the node from entries whose contents are in
/// `store`.
pub fn rebuild(entries: &[Entry], store: &Store) -> Result<MemFs> {
    let mut fs = MemFs::new();
    let mut groups: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for e in entries {
        let path = clean(&e.path);
        if path.is_empty() || path.starts_with("..") || path != e.path {
            return Err(Error::Session { message: format!("bad context path {:?}", e.path) });
        }
        let mut node: Node = match e.kind.as_str() {
            "dir" => Node::dir(e.mode, e.uid, e.gid, e.mtime),
            "file" => {
                let d = e.digest.clone().ok_or_else(|| Error::Session { message: format!("{}: no digest", e.path) })?;
                if store.stat(&d)?.size != e.size {
                    return Err(Error::Session { message: format!("{}: content {d} is not {} bytes", e.path, e.size) });
                }
                let mut n = file_node(b"", e.mode, e.mtime);
                n.kind = Kind::File(polyarch_builder::fs::Content::file(&store.blob_path(&d), e.size));
                n
            }
            "symlink" => {
                let mut n = file_node(b"", e.mode, e.mtime);
                n.kind = Kind::Symlink(e.target.clone().unwrap_or_default());
                n
            }
            k => return Err(Error::Session { message: format!("{}: unknown entry kind {k:?}", e.path) }),
        };
        node.mode = e.mode;
        node.uid = e.uid;
        node.gid = e.gid;
        node.mtime = e.mtime;
        node.xattrs = e.xattrs.clone();
        node.link = e.link.map(|g| *groups.entry(g).or_insert_with(polyarch_builder::fs::new_link_group));
        fs.insert(path, node);
    }
    Ok(fs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MemFs {
        let mut fs = MemFs::new();
        for d in ["src", "src/lib", "docs", "assets"] {
            fs.insert(d.into(), Node::dir(0o755, 0, 0, 1));
        }
        for (p, data) in [
            ("src/main.c", "int main"),
            ("src/lib/a.c", "a"),
            ("docs/big.pdf", "pdf"),
            ("assets/x.png", "same"),
            ("assets/y.png", "same"),
            ("go.mod", "module"),
            ("go.sum", "sum"),
        ] {
            fs.insert(p.into(), file_node(data.as_bytes(), 0o644, 1));
        }
        fs
    }

    fn names(s: &BTreeSet<String>) -> Vec<&str> {
        s.iter().map(String::as_str).collect()
    }

    #[test]
    fn only_what_copy_and_add_read() {
        let df =
            b"FROM busybox\nCOPY src /src\nCOPY go.* /\nADD https://example.com/x /x\nCOPY --from=busybox /bin /b\n";
        assert_eq!(names(&needed(df, &ctx())), ["go.mod", "go.sum", "src", "src/lib", "src/lib/a.c", "src/main.c"]);
        let df = b"FROM busybox\nRUN --mount=type=bind,source=assets,target=/a true\nCOPY ./src/lib/a.c /\n";
        assert_eq!(
            names(&needed(df, &ctx())),
            ["assets", "assets/x.png", "assets/y.png", "src", "src/lib", "src/lib/a.c"]
        );
        assert!(needed(b"FROM busybox\nRUN true\n", &ctx()).is_empty());
    }

    #[test]
    fn everything_when_it_cannot_be_known() {
        let total = ctx().len();
        assert_eq!(needed(b"FROM busybox\nCOPY . /app\n", &ctx()).len(), total);
        assert_eq!(needed(b"FROM busybox\nARG D=src\nCOPY $D /app\n", &ctx()).len(), total);
        assert_eq!(needed(b"FROM busybox\nRUN --mount=type=bind,target=/c true\n", &ctx()).len(), total);
        let mut with_link = ctx();
        with_link.insert("l".into(), {
            let mut n = file_node(b"", 0o777, 1);
            n.kind = Kind::Symlink("docs".into());
            n
        });
        assert_eq!(needed(b"FROM busybox\nCOPY l /l\n", &with_link).len(), total + 1);
    }

    #[test]
    fn contents_travel_once_and_rebuild_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = ctx();
        let paths = needed(b"FROM scratch\nCOPY assets /a\n", &c);
        let (entries, contents) = entries(&c, &paths).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(contents.len(), 1, "two files with the same content travel once");
        for (_, data) in &contents {
            store.put_bytes(CONTENT_TYPE, &data.read_all().unwrap()).unwrap();
        }
        let fs = rebuild(&entries, &store).unwrap();
        assert_eq!(fs.read("assets/y.png").unwrap().as_slice(), b"same");
        assert_eq!(fs.get("assets").unwrap().mode, 0o755);
        let mut linked = c.clone();
        let group = polyarch_builder::fs::new_link_group();
        for p in ["assets/x.png", "assets/y.png"] {
            let mut n = linked.get(p).unwrap().clone();
            n.link = Some(group);
            n.xattrs.insert("user.k".into(), b"v".to_vec());
            linked.insert(p.into(), n);
        }
        let (entries2, _) = super::entries(&linked, &paths).unwrap();
        let fs = rebuild(&entries2, &store).unwrap();
        let (x, y) = (fs.get("assets/x.png").unwrap(), fs.get("assets/y.png").unwrap());
        assert!(x.link.is_some() && x.link == y.link, "hard links stay linked");
        assert_eq!(x.xattrs.get("user.k").map(Vec::as_slice), Some(&b"v"[..]));
        let mut bad = entries.clone();
        bad[0].path = "../etc".into();
        assert!(rebuild(&bad, &store).is_err());
    }
}
