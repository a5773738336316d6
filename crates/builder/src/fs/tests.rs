//! Tests of the tree: paths, layers in and out, links, attributes.

use super::*;

fn file(data: &str) -> Node {
    Node::new(Kind::File(Content::bytes(data.as_bytes())), 0o644, 0, 0, 0)
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
    b.append_pax_extensions([("SCHILY.xattr.user.x", &b"1"[..]), ("SCHILY.xattr.security.capability", cap)]).unwrap();
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
    let b = Node { kind: Kind::File(Content::bytes(&b"new"[..])), ..a.clone() };
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

/// A tar of `(path, kind)` entries: `"dir"`, `"->target"` (a symlink),
/// `"c1:3"` (a character device), `"fifo"`, or file content.
pub(crate) fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, what) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        let mut data: &[u8] = &[];
        if *what == "dir" {
            h.set_entry_type(tar::EntryType::Directory);
        } else if let Some(t) = what.strip_prefix("->") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_link_name(t).unwrap();
        } else if let Some(dev) = what.strip_prefix('c') {
            let (maj, min) = dev.split_once(':').unwrap();
            h.set_entry_type(tar::EntryType::Char);
            h.set_device_major(maj.parse().unwrap()).unwrap();
            h.set_device_minor(min.parse().unwrap()).unwrap();
        } else if *what == "fifo" {
            h.set_entry_type(tar::EntryType::Fifo);
        } else {
            data = what.as_bytes();
            h.set_size(data.len() as u64);
        }
        // Paths set raw, as a hostile archive may hold them.
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn no_entry_below_a_symlink(fs: &MemFs) {
    for (p, _) in fs.iter() {
        let mut q = parent(p);
        while !q.is_empty() {
            assert!(fs.get(q).is_some_and(Node::is_dir), "{p} is below {q}, which is not a directory");
            q = parent(q);
        }
    }
}

#[test]
fn entries_below_symlinks_land_at_their_resolved_path() {
    let tar = tar_of(&[
        ("etc", "dir"),
        ("link", "->/etc"),
        ("link/file", "one"),
        ("up", "->../.."),
        ("up/top", "two"),
        ("rel", "->etc/sub"),
        ("rel/deep/f", "three"),
    ]);
    let fs = MemFs::from_tar(&tar[..]).unwrap();
    no_entry_below_a_symlink(&fs);
    assert_eq!(fs.read("etc/file").unwrap(), b"one");
    assert_eq!(fs.read("top").unwrap(), b"two");
    assert_eq!(fs.read("etc/sub/deep/f").unwrap(), b"three");
    assert_eq!(fs.get("link").unwrap().kind, Kind::Symlink("/etc".into()));
    // Unpacked into a directory (ADD), that directory is the archive's `/`.
    let mut t = MemFs::new();
    t.insert("etc".into(), Node::dir(0o755, 0, 0, 0));
    t.insert("x".into(), Node::dir(0o755, 0, 0, 0));
    let spill = Spill::temp();
    let opts = TarApply { backing: Backing::Spill(&spill), root: "x".into(), whiteouts: false };
    let written = t.apply_tar(&tar[..], &opts).unwrap();
    no_entry_below_a_symlink(&t);
    assert!(written.iter().all(|p| p.starts_with("x/")), "{written:?}");
    assert_eq!(t.read("x/etc/file").unwrap(), b"one");
    assert_eq!(t.read("x/top").unwrap(), b"two");
    assert!(t.get("etc/file").is_none() && t.get("top").is_none(), "nothing outside the destination");
    // A parent that is a file is an error naming the entry.
    let bad = tar_of(&[("f", "data"), ("f/g", "x")]);
    let e = MemFs::from_tar(&bad[..]).unwrap_err().to_string();
    assert!(e.contains("f/g"), "{e}");
}

#[test]
fn devices_and_fifos_survive_tar_in_and_out() {
    let tar = tar_of(&[("dev", "dir"), ("dev/null", "c1:3"), ("run", "dir"), ("run/pipe", "fifo"), ("l", "->x")]);
    let fs = MemFs::from_tar(&tar[..]).unwrap();
    assert_eq!(fs.get("dev/null").unwrap().kind, Kind::Device { block: false, major: 1, minor: 3 });
    assert_eq!(fs.get("run/pipe").unwrap().kind, Kind::Fifo);
    let out = crate::layer::tar_entries(fs.iter().map(|(k, n)| (k.as_str(), n))).unwrap();
    let back = MemFs::from_tar(&out[..]).unwrap();
    let kinds = |f: &MemFs| f.iter().map(|(k, n)| (k.clone(), n.kind.clone())).collect::<Vec<_>>();
    assert_eq!(kinds(&back), kinds(&fs));
    if !is_root() {
        assert!(std::env::var("CI").is_err(), "needs root under CI");
        return;
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let d = tempfile::tempdir().unwrap();
    fs.write_to_dir(d.path()).unwrap();
    let md = std::fs::symlink_metadata(d.path().join("dev/null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!((rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())), (1, 3));
    assert!(std::fs::symlink_metadata(d.path().join("run/pipe")).unwrap().file_type().is_fifo());
    let read = crate::materialize::read_tree(d.path()).unwrap();
    assert_eq!(kinds(&read), kinds(&fs));
}

#[test]
fn contents_are_references_not_bytes() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("big"), vec![1u8; 1 << 20]).unwrap();
    let fs = MemFs::from_dir(d.path(), &|_, _| (true, true)).unwrap();
    let Kind::File(c) = &fs.get("big").unwrap().kind else { panic!() };
    assert_eq!(c.len(), 1 << 20);
    let before = crate::content::inline_bytes();
    let tar = crate::layer::tar_entries(fs.iter().map(|(k, n)| (k.as_str(), n))).unwrap();
    let spill = Spill::new(d.path().join("spill"));
    let back = MemFs::from_tar_in(&tar[..], &spill).unwrap();
    assert!(crate::content::inline_bytes() < before + (1 << 20), "a big entry is spilled, not kept");
    assert!(back.content("big").unwrap().same(c));
}
