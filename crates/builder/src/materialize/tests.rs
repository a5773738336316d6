//! Tests of trees on disk: roots, upper directories, diffs, stubs.

use super::*;

fn file(data: &str, mtime: i64) -> Node {
    Node::new(Kind::File(Content::bytes(data.as_bytes())), 0o644, 0, 0, mtime)
}

fn tree(entries: &[(&str, Node)]) -> MemFs {
    let mut fs = MemFs::new();
    for (p, n) in entries {
        fs.insert(p.to_string(), n.clone());
    }
    fs
}

#[test]
fn diff_finds_additions_changes_and_topmost_deletions() {
    let d = Node::dir(0o755, 0, 0, 1);
    let before = tree(&[
        ("a", d.clone()),
        ("a/keep", file("k", 1)),
        ("a/edit", file("1", 1)),
        ("gone", d.clone()),
        ("gone/x", file("x", 1)),
        ("b", d.clone()),
        ("b/rm", file("r", 1)),
    ]);
    let after = tree(&[
        ("a", d.clone()),
        ("a/keep", file("k", 1)),
        ("a/edit", file("2", 1)),
        ("a/new", file("n", 5)),
        ("b", Node::dir(0o755, 0, 0, 9)),
    ]);
    let c = diff(&before, &after);
    let changed: Vec<&String> = c.changed.iter().map(|(k, _)| k).collect();
    assert_eq!(changed, ["a/edit", "a/new", "b"]);
    assert_eq!(c.deleted, ["b/rm", "gone"]);
    let entries = layer_entries(&c, &after, 0);
    let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, [".wh.gone", "a", "a/edit", "a/new", "b", "b/.wh.rm"]);
}

#[test]
fn a_link_to_a_lower_file_brings_its_target_into_the_layer() {
    let d = Node::dir(0o755, 0, 0, 1);
    let bb = file("busybox", 1);
    let before = tree(&[("bin", d.clone()), ("bin/busybox", bb.clone()), ("etc", d.clone())]);
    // `ln /bin/busybox /hard`: one inode, two paths; the target unchanged.
    let g = Some(crate::fs::new_link_group());
    let linked = Node { link: g, ..bb.clone() };
    let after = tree(&[("bin", d.clone()), ("bin/busybox", linked.clone()), ("etc", d.clone()), ("hard", linked)]);
    let c = diff(&before, &after);
    let changed: Vec<&String> = c.changed.iter().map(|(k, _)| k).collect();
    assert_eq!(changed, ["bin/busybox", "hard"], "the whole link group");
    let entries = layer_entries(&c, &after, 0);
    let tar = crate::layer::tar_entries(entries.iter().map(|(p, n)| (p.as_str(), n))).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let kinds: Vec<(String, tar::EntryType)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type())
        })
        .collect();
    assert!(kinds.contains(&("hard".to_string(), tar::EntryType::Link)), "{kinds:?}");
    assert!(kinds.contains(&("bin/busybox".to_string(), tar::EntryType::Regular)), "{kinds:?}");
    // A group none of whose paths changed stays out.
    let c = diff(&after, &after);
    assert!(c.is_empty());
}

#[test]
fn stale_temp_dirs_are_those_of_dead_owners() {
    let d = tempfile::tempdir().unwrap();
    let mine = temp_in(d.path()).unwrap();
    let dead = d.path().join("pa-999999999-1-0");
    let other = d.path().join("cache");
    for p in [&dead, &other] {
        std::fs::create_dir_all(p.join("upper")).unwrap();
    }
    assert_eq!(cleanup_stale(d.path()), std::slice::from_ref(&dead));
    assert!(mine.path().exists() && other.exists() && !dead.exists());
}

#[test]
fn applying_the_layer_gives_the_new_tree() {
    let d = Node::dir(0o755, 0, 0, 1);
    let before = tree(&[("bin", d.clone()), ("bin/ls", file("ls", 1)), ("bin/sh", file("sh", 1))]);
    let after = tree(&[("bin", Node::dir(0o755, 0, 0, 3)), ("bin/sh", file("sh", 1)), ("hi", file("hi\n", 3))]);
    let c = diff(&before, &after);
    let entries = layer_entries(&c, &after, 0);
    let tar = crate::layer::tar_entries(entries.iter().map(|(p, n)| (p.as_str(), n))).unwrap();
    let mut got = before.clone();
    got.apply_layer(&tar[..]).unwrap();
    let a: Vec<(&String, &Node)> = got.iter().collect();
    let b: Vec<(&String, &Node)> = after.iter().collect();
    assert_eq!(a, b);
}

#[test]
fn stubs_are_removed_and_parent_times_restored() {
    let before = tree(&[("etc", Node::dir(0o755, 0, 0, 1)), ("etc/passwd", file("root", 1))]);
    let mut after = tree(&[
        ("etc", Node::dir(0o755, 0, 0, 7)),
        ("etc/passwd", file("root", 1)),
        ("etc/hosts", file("", 7)),
        ("run", Node::dir(0o755, 0, 0, 7)),
        ("run/secrets", Node::dir(0o755, 0, 0, 7)),
        ("run/secrets/tok", file("", 7)),
        ("proc", Node::dir(0o755, 0, 0, 7)),
        ("proc/x", file("not a stub", 7)),
    ]);
    remove_stubs(&before, &mut after, &["etc/hosts".into(), "run/secrets/tok".into(), "proc".into()]);
    let mut gone = before.clone();
    gone.insert("etc".into(), Node::dir(0o755, 0, 0, 9));
    remove_stubs(&before, &mut gone, &["etc/resolv.conf".into()]);
    assert_eq!(gone.get("etc").unwrap().mtime, 1, "a stub removed by the runtime still restores the time");
    let paths: Vec<&String> = after.iter().map(|(k, _)| k).collect();
    assert_eq!(paths, ["etc", "etc/passwd", "proc", "proc/x"]);
    assert_eq!(after.get("etc").unwrap().mtime, 1);
}

#[test]
fn read_tree_keeps_owners_and_links() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("x")).unwrap();
    std::fs::write(d.path().join("x/f"), b"data").unwrap();
    std::os::unix::fs::symlink("x/f", d.path().join("l")).unwrap();
    let fs = read_tree(d.path()).unwrap();
    assert_eq!(fs.read("l").unwrap().as_slice(), b"data");
    let me = std::fs::metadata(d.path().join("x/f")).unwrap();
    assert_eq!(fs.get("x/f").unwrap().uid, u64::from(me.uid()));
    assert_eq!(fs.get("l").unwrap().kind, Kind::Symlink("x/f".into()));
}

#[test]
fn subtrees_are_rerooted() {
    let mut fs = MemFs::new();
    fs.insert("a".into(), Node::dir(0o755, 0, 0, 0));
    fs.insert("a/b".into(), crate::copy::file_node(b"x", 0o644, 0));
    fs.insert("ab".into(), crate::copy::file_node(b"y", 0o644, 0));
    let s = subtree(&fs, "a");
    let paths: Vec<&String> = s.iter().map(|(k, _)| k).collect();
    assert_eq!(paths, ["b"]);
    assert_eq!(subtree(&fs, "").len(), 3);
}

/// Stores `tree` as a layer and applies it to `below`.
fn stack_layer(store: &Store, tree: &MemFs, below: &mut MemFs) -> Layer {
    let tar = crate::layer::tar_entries(tree.iter().map(|(p, n)| (p.as_str(), n))).unwrap();
    below.apply_layer(&tar[..]).unwrap();
    crate::layer::store_layer(store, &tar, crate::Compression::Gzip).unwrap()
}

/// What a directory holds, for comparing unpacked layers.
fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let what = if md.is_dir() {
                todo.push(e.path());
                "dir".to_string()
            } else if md.file_type().is_char_device() {
                format!("char {}", md.rdev())
            } else if md.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(e.path()).unwrap().display())
            } else {
                format!("file {:?}", std::fs::read(e.path()).unwrap())
            };
            out.push(format!("{rel} {what} {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid()));
        }
    }
    out.sort();
    out
}

/// The upper directory installed as a layer's unpacked form holds what
/// unpacking the layer's blob gives: stubs and unchanged copies gone,
/// whiteouts kept.
#[test]
fn an_installed_upper_is_the_unpacked_layer() {
    if !crate::fs::is_root() {
        assert!(std::env::var("CI").is_err(), "needs root under CI");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path().join("store")).unwrap();
    let dir = Node::dir(0o755, 0, 0, 1);
    let base = tree(&[("a", dir.clone()), ("a/x", file("x", 1)), ("a/y", file("y", 1)), ("etc", dir.clone())]);
    let mut before = MemFs::new();
    let l1 = stack_layer(&store, &base, &mut before);
    let exec = polyarch_exec::RuncExecutorBuilder::new(d.path().join("exec")).build().unwrap();
    let root =
        Root::overlay(&store, std::slice::from_ref(&l1), &d.path().join("run"), exec.mount_point().unwrap()).unwrap();
    let p = root.path();
    std::fs::remove_file(p.join("a/x")).unwrap();
    std::fs::write(p.join("a/new"), "n").unwrap();
    std::fs::create_dir_all(p.join("proc")).unwrap();
    std::fs::create_dir_all(p.join("kept/sub")).unwrap();
    std::fs::write(p.join("etc/hosts"), "").unwrap();
    std::fs::hard_link(p.join("a/new"), p.join("twin")).unwrap();
    let (mut after, upper) = root.finish_keeping_upper(&before).unwrap();
    remove_stubs(&before, &mut after, &["proc".to_string(), "etc/hosts".to_string()]);
    let changes = diff(&before, &after);
    let entries = layer_entries(&changes, &after, 0);
    let tar = crate::layer::tar_entries(entries.iter().map(|(p, n)| (p.as_str(), n))).unwrap();
    let l2 = crate::layer::store_layer(&store, &tar, crate::Compression::Gzip).unwrap();
    assert!(upper.install(&store, &[l1.clone(), l2.clone()], &entries));
    let installed = listing(&unpacked_dir(&store, &[l1.clone(), l2.clone()]).unwrap());
    let fresh = d.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let opts = UnpackOptions::new().with_whiteouts(polyarch_snapshot::WhiteoutMode::Overlay);
    polyarch_snapshot::unpack_compressed(store.open(&l2.desc).unwrap(), &fresh, &opts).unwrap();
    let unpacked = listing(&fresh);
    let names = |l: &[String]| l.iter().map(|x| x.split(' ').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&installed), ["a", "a/new", "a/x", "kept", "kept/sub", "twin"], "{installed:?}");
    assert_eq!(names(&installed), names(&unpacked));
    for (i, u) in installed.iter().zip(&unpacked) {
        if !i.starts_with("a ") {
            assert_eq!(i, u);
        }
    }
    assert_eq!(std::fs::read_dir(d.path().join("run")).unwrap().count(), 0, "temporary directories removed");
}

/// An overlay of two stored layers: deleting a file, replacing a
/// directory (opaque) and adding files read back as the same tree as
/// doing it in memory; the naive root agrees.
#[test]
fn overlay_and_naive_roots_read_back_the_same_changes() {
    if !crate::fs::is_root() {
        assert!(std::env::var("CI").is_err(), "needs root under CI");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path().join("store")).unwrap();
    let dir = Node::dir(0o755, 0, 0, 1);
    let l1 = tree(&[("a", dir.clone()), ("a/x", file("x", 1)), ("a/y", file("y", 1)), ("b", dir.clone())]);
    let l2 = tree(&[("b", dir.clone()), ("b/z", file("z", 1))]);
    let mut layers = Vec::new();
    let mut before = MemFs::new();
    for l in [&l1, &l2] {
        layers.push(stack_layer(&store, l, &mut before));
    }
    let exec = polyarch_exec::RuncExecutorBuilder::new(d.path().join("exec")).build().unwrap();
    let tmp = d.path().join("run");
    let mut results = Vec::new();
    for overlay in [true, false] {
        let root = if overlay {
            Root::overlay(&store, &layers, &tmp, exec.mount_point().unwrap()).unwrap()
        } else {
            Root::naive(&before, &tmp).unwrap()
        };
        let p = root.path();
        assert_eq!(std::fs::read_to_string(p.join("b/z")).unwrap(), "z");
        std::fs::remove_file(p.join("a/x")).unwrap();
        std::fs::remove_dir_all(p.join("b")).unwrap();
        std::fs::create_dir(p.join("b")).unwrap();
        std::fs::write(p.join("b/new"), "n").unwrap();
        std::fs::write(p.join("top"), "t").unwrap();
        let (after, _kept) = root.finish_keeping_upper(&before).unwrap();
        let paths: Vec<String> = after.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(paths, ["a", "a/y", "b", "b/new", "top"], "overlay: {overlay}");
        let c = diff(&before, &after);
        assert_eq!(c.deleted, ["a/x", "b/z"], "overlay: {overlay}");
        let kind = |k: &Kind| match k {
            Kind::File(c) => format!("file {:?}", c.read_all().unwrap()),
            k => format!("{k:?}"),
        };
        results.push(after.iter().map(|(k, n)| (k.clone(), kind(&n.kind), n.mode)).collect::<Vec<_>>());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "temporary directories removed");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(d.path().to_str().unwrap()), "nothing left mounted");
}
