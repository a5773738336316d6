//! Layer stacks that overlay and naive snapshotters must turn into the
//! same tree, entry by entry (type, mode, owner, content, link target,
//! xattrs, times of non-directories, hard links): symlinked parent
//! directories, links escaping the root, directories replaced by files and
//! back, whiteouts of and through links, opaque directories, hard links
//! across layers. Each case also checks what the tree must hold, so the
//! two cannot agree on a wrong answer. The overlay side needs root and
//! overlayfs: skipped without, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use polyarch_oci::Digest;
use tar::{EntryType, Header};

use super::testsuite::overlay;
use super::*;
use crate::testutil::{mounted, mounts_under, tree, Node};

/// One tar entry.
enum E<'a> {
    /// A directory with mode and owner.
    D(&'a str, u32, u32),
    /// A file and its content.
    F(&'a str, &'a str),
    /// A symlink and its target.
    L(&'a str, &'a str),
    /// A hard link and its target.
    H(&'a str, &'a str),
}
use E::*;

fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, data, link, mode, id) = match e {
            D(n, m, id) => (*n, EntryType::Directory, "", None, *m, *id),
            F(n, d) => (*n, EntryType::Regular, *d, None, 0o644, 0),
            L(n, t) => (*n, EntryType::Symlink, "", Some(*t), 0o777, 0),
            H(n, t) => (*n, EntryType::Link, "", Some(*t), 0o644, 0),
        };
        let mut h = Header::new_ustar();
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(id.into());
        h.set_gid(id.into());
        h.set_mtime(1_000_000);
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The tree of the stack `layers` applied with `s`, with the inode groups
/// of its multiply-linked files (by path).
fn apply_stack(s: &dyn Snapshotter, layers: &[Vec<u8>]) -> (BTreeMap<PathBuf, Node>, Vec<Vec<PathBuf>>) {
    let mut parent: Option<String> = None;
    for l in layers {
        let d = Digest::sha256(l);
        parent = Some(apply_layer(s, parent.as_deref(), &d, &mut &l[..], &UnpackOptions::new()).unwrap());
    }
    let v = s.view("check", parent.as_deref()).unwrap();
    let t = mounted(&v);
    let groups = link_groups(t.path());
    let tree = tree(t.path());
    drop(t);
    s.remove("check").unwrap();
    (tree, groups)
}

fn link_groups(root: &Path) -> Vec<Vec<PathBuf>> {
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else if md.nlink() > 1 {
                by_ino.entry(md.ino()).or_default().push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = by_ino
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

/// Applies `layers` with both snapshotters, compares the trees entry by
/// entry and returns the naive one for the case's own checks.
fn same_tree(layers: &[Vec<u8>]) -> BTreeMap<PathBuf, Node> {
    let tmp = tempfile::tempdir().unwrap();
    let naive = NaiveSnapshotter::new(tmp.path().join("naive")).unwrap();
    let (want, want_links) = apply_stack(&naive, layers);
    if let Some(o) = overlay(&tmp.path().join("overlay")) {
        let (got, got_links) = apply_stack(o.as_ref(), layers);
        let paths: std::collections::BTreeSet<&PathBuf> = want.keys().chain(got.keys()).collect();
        for p in paths {
            assert_eq!(want.get(p), got.get(p), "{}: naive and overlay differ", p.display());
        }
        assert_eq!(want_links, got_links, "hard links differ");
        drop(o);
    }
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new(), "mounts left behind");
    want
}

fn kind(t: &BTreeMap<PathBuf, Node>, p: &str) -> Option<&'static str> {
    t.get(Path::new(p)).map(|n| n.kind)
}

fn data(t: &BTreeMap<PathBuf, Node>, p: &str) -> String {
    String::from_utf8(t[Path::new(p)].data.clone()).unwrap()
}

fn names(t: &BTreeMap<PathBuf, Node>, dir: &str) -> Vec<String> {
    let d = Path::new(dir);
    t.keys().filter(|k| k.parent() == Some(d)).map(|k| k.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn entries_under_a_symlinked_parent_land_in_its_target() {
    let base = tar(&[D("usr/", 0o755, 0), D("usr/lib/", 0o755, 0), F("usr/lib/libc.so", "libc"), L("lib", "usr/lib")]);
    let t = same_tree(&[base.clone(), tar(&[F("lib/newfile", "new")])]);
    assert_eq!(kind(&t, "lib"), Some("symlink"));
    assert_eq!(names(&t, "usr/lib"), ["libc.so", "newfile"]);
    // Absolute targets, missing directories below them, and a chain.
    let abs = tar(&[D("usr/", 0o755, 0), D("usr/lib/", 0o750, 7), F("usr/lib/libc.so", "libc"), L("lib", "/usr/lib")]);
    let chain = tar(&[L("a", "b"), L("b", "/c/../lib"), F("a/sub/deep", "d")]);
    let t = same_tree(&[abs, tar(&[F("lib/x", "x"), F("lib/sub/y", "y")]), chain]);
    assert_eq!(names(&t, "usr/lib"), ["libc.so", "sub", "x"]);
    assert_eq!(names(&t, "usr/lib/sub"), ["deep", "y"]);
    // The copied-up parent keeps the lower's mode and owner.
    assert_eq!((t[Path::new("usr/lib")].mode, t[Path::new("usr/lib")].owner), (0o750, (7, 7)));
}

#[test]
fn links_escaping_the_root_stay_inside() {
    let base = tar(&[D("d/", 0o755, 0), L("d/up", "../../../.."), L("top", "/.."), L("host", "/etc")]);
    let t = same_tree(&[
        base,
        tar(&[F("d/up/x", "x"), F("top/y", "y"), F("host/passwd", "p"), L("dangling", "no/dir")]),
        tar(&[F("dangling/f", "f")]),
    ]);
    assert_eq!(data(&t, "x"), "x");
    assert_eq!(data(&t, "y"), "y");
    assert_eq!(data(&t, "etc/passwd"), "p");
    assert_eq!(data(&t, "no/dir/f"), "f");
    assert_eq!(kind(&t, "host"), Some("symlink"));
}

#[test]
fn directories_replaced_by_files_and_back() {
    let base = tar(&[
        D("d/", 0o755, 0),
        F("d/a", "a"),
        F("d/b", "b"),
        D("e/", 0o755, 0),
        F("e/a", "a"),
        D("w/", 0o755, 0),
        F("w/a", "a"),
    ]);
    let t = same_tree(&[base.clone(), tar(&[F("d", "file")]), tar(&[D("d/", 0o755, 0), F("d/c", "c")])]);
    assert_eq!(names(&t, "d"), ["c"]);
    // In one layer: a file then a directory again, a whiteout then a directory.
    let t = same_tree(&[
        base,
        tar(&[F("e", "file"), D("e/", 0o700, 0), F("e/c", "c"), F(".wh.w", ""), D("w/", 0o755, 0), F("w/c", "c")]),
    ]);
    assert_eq!(names(&t, "e"), ["c"]);
    assert_eq!(names(&t, "w"), ["c"]);
    assert_eq!(t[Path::new("e")].mode, 0o700);
}

#[test]
fn whiteouts_of_links_and_through_links() {
    let base = tar(&[
        D("usr/", 0o755, 0),
        D("usr/lib/", 0o755, 0),
        F("usr/lib/x", "x"),
        F("usr/lib/y", "y"),
        L("lib", "usr/lib"),
    ]);
    let t = same_tree(&[base.clone(), tar(&[F(".wh.lib", "")])]);
    assert_eq!(kind(&t, "lib"), None);
    assert_eq!(names(&t, "usr/lib"), ["x", "y"]);
    let t = same_tree(&[base.clone(), tar(&[F("lib/.wh.x", "")])]);
    assert_eq!(kind(&t, "lib"), Some("symlink"));
    assert_eq!(names(&t, "usr/lib"), ["y"]);
    // A whiteout of a link, then a directory in its place.
    let t = same_tree(&[base, tar(&[F(".wh.lib", ""), D("lib/", 0o755, 0), F("lib/z", "z")])]);
    assert_eq!(kind(&t, "lib"), Some("dir"));
    assert_eq!(names(&t, "lib"), ["z"]);
    assert_eq!(names(&t, "usr/lib"), ["x", "y"]);
}

#[test]
fn opaque_directories_direct_and_through_links() {
    let base = tar(&[
        D("etc/", 0o755, 0),
        F("etc/a", "a"),
        F("etc/b", "b"),
        D("usr/", 0o755, 0),
        D("usr/lib/", 0o755, 0),
        F("usr/lib/x", "x"),
        L("lib", "usr/lib"),
    ]);
    let t = same_tree(&[base.clone(), tar(&[D("etc/", 0o755, 0), F("etc/.wh..wh..opq", ""), F("etc/c", "c")])]);
    assert_eq!(names(&t, "etc"), ["c"]);
    let t = same_tree(&[base.clone(), tar(&[F("lib/z", "z"), F("lib/.wh..wh..opq", "")])]);
    assert_eq!(names(&t, "usr/lib"), ["z"]);
    assert_eq!(kind(&t, "lib"), Some("symlink"));
    // Opaque above a directory only copied up, and markers in missing dirs.
    let t = same_tree(&[
        base,
        tar(&[F("lib/w", "w"), F("usr/.wh..wh..opq", ""), F("none/.wh.x", ""), F("none2/.wh..wh..opq", "")]),
    ]);
    assert_eq!(names(&t, "usr"), ["lib"]);
    assert_eq!(names(&t, "usr/lib"), ["w"]);
    assert_eq!(kind(&t, "none"), None);
}

#[test]
fn hard_links_across_layers() {
    let base = tar(&[
        D("bin/", 0o755, 0),
        F("bin/busybox", "bb"),
        D("usr/", 0o755, 0),
        D("usr/lib/", 0o755, 0),
        F("usr/lib/libc", "c"),
        L("lib", "usr/lib"),
        D("o/", 0o755, 0),
        F("o/t", "t"),
    ]);
    let top = tar(&[
        H("bin/sh", "bin/busybox"),
        H("h", "lib/libc"),
        D("o/", 0o755, 0),
        H("o2", "o/t"),
        F("o/.wh..wh..opq", ""),
    ]);
    let t = same_tree(&[base.clone(), top]);
    assert_eq!(data(&t, "bin/sh"), "bb");
    assert_eq!(data(&t, "h"), "c");
    assert_eq!(data(&t, "o2"), "t");
    assert_eq!(names(&t, "o"), Vec::<String>::new());
    // Links to what is not in the tree fail with both.
    for bad in ["../../etc/passwd", "lib/missing"] {
        let tmp = tempfile::tempdir().unwrap();
        let s = NaiveSnapshotter::new(tmp.path()).unwrap();
        let l = tar(&[H("x", bad)]);
        let c = apply_layer(&s, None, &Digest::sha256(&base), &mut &base[..], &UnpackOptions::new()).unwrap();
        let err = apply_layer(&s, Some(&c), &Digest::sha256(&l), &mut &l[..], &UnpackOptions::new()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{bad}: {err}");
    }
}
