//! The snapshotter conformance suite, run on every implementation (as
//! containerd's `core/snapshots/testsuite` is). The overlay runs need
//! overlayfs: skipped where it is missing, except under `CI=true`, where a
//! missing overlayfs fails them.

use std::fs;
use std::io::Read;
use std::path::Path;

use polyarch_oci::Digest;

use super::*;
use crate::compress::Compression;
use crate::layer::{FileSource, LayerBuilder, Meta};
use crate::testutil::{mounted, mounts_under, tree};
use crate::unpack::unpack;
use crate::ErrorKind;

type Factory = fn(&Path) -> Option<Box<dyn Snapshotter>>;

fn naive(root: &Path) -> Option<Box<dyn Snapshotter>> {
    Some(Box::new(NaiveSnapshotter::new(root).unwrap()))
}

pub(super) fn overlay(root: &Path) -> Option<Box<dyn Snapshotter>> {
    match OverlaySnapshotter::check(root) {
        Ok(()) => Some(Box::new(OverlaySnapshotter::new(root).unwrap())),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("overlayfs is required under CI=true: {e}"),
        Err(_) => None,
    }
}

/// Runs `case` on a fresh snapshotter from `make`, then checks that no
/// mount is left under its root.
fn run(make: Factory, case: fn(&dyn Snapshotter, &Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("snapshots");
    let Some(s) = make(&root) else { return };
    case(s.as_ref(), tmp.path());
    drop(s);
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new(), "mounts left behind");
}

fn opts() -> LayerOptions {
    LayerOptions::new().with_compression(Compression::Uncompressed)
}

fn diff_bytes(s: &dyn Snapshotter, key: &str) -> (Vec<u8>, LayerInfo) {
    let mut out = Vec::new();
    let info = s.diff(key, &mut out, &opts()).unwrap();
    (out, info)
}

fn write_base(s: &dyn Snapshotter) {
    let m = s.prepare("a", None).unwrap();
    assert!(!m.is_read_only());
    let t = mounted(&m);
    let p = t.path();
    for d in ["etc", "d", "dir2", "gone"] {
        fs::create_dir(p.join(d)).unwrap();
    }
    for (f, c) in [
        ("etc/passwd", "root"),
        ("d/x", "x"),
        ("d/y", "y"),
        ("keep", "k"),
        ("del", "d"),
        ("dir2/p", "p"),
        ("dir2/q", "q"),
        ("gone/g", "g"),
    ] {
        fs::write(p.join(f), c).unwrap();
    }
    drop(t);
    s.commit("base", "a").unwrap();
}

fn modify(p: &Path) {
    fs::write(p.join("etc/passwd"), "root\nuser").unwrap();
    fs::remove_file(p.join("del")).unwrap();
    fs::remove_dir_all(p.join("d")).unwrap();
    fs::create_dir(p.join("d")).unwrap();
    fs::write(p.join("d/z"), "z").unwrap();
    fs::remove_file(p.join("dir2/p")).unwrap();
    fs::remove_dir_all(p.join("gone")).unwrap();
    fs::create_dir_all(p.join("new/deep")).unwrap();
    fs::write(p.join("new/deep/file"), "n").unwrap();
    std::os::unix::fs::symlink("../etc/passwd", p.join("new/link")).unwrap();
    fs::hard_link(p.join("new/deep/file"), p.join("new/hard")).unwrap();
}

fn stack_diff_round_trip(s: &dyn Snapshotter, tmp: &Path) {
    write_base(s);
    assert_eq!(s.stat("base").unwrap(), Info { key: "base".into(), kind: Kind::Committed, parent: None });
    let (base_tar, _) = diff_bytes(s, "base");
    let m = s.prepare("b", Some("base")).unwrap();
    let t = mounted(&m);
    assert_eq!(fs::read_to_string(t.path().join("etc/passwd")).unwrap(), "root");
    modify(t.path());
    let (tar, info) = diff_bytes(s, "b");
    assert_eq!(info.uncompressed_size, tar.len() as u64);
    let copy = tmp.join("copy");
    fs::create_dir(&copy).unwrap();
    unpack(&base_tar[..], &copy, &UnpackOptions::new()).unwrap();
    unpack(&tar[..], &copy, &UnpackOptions::new()).unwrap();
    assert_eq!(tree(&copy), tree(t.path()));
    drop(t);
    s.commit("b1", "b").unwrap();
    assert_eq!(s.stat("b1").unwrap().parent.as_deref(), Some("base"));
    assert_eq!(s.stat("b").unwrap_err().kind(), ErrorKind::NotFound);
    // A committed snapshot diffs the same as it did while active.
    assert_eq!(diff_bytes(s, "b1").0, tar);
    let v = s.view("v", Some("b1")).unwrap();
    assert!(v.is_read_only());
    assert_eq!(tree(mounted(&v).path()), tree(&copy));
}

fn lifecycle_errors(s: &dyn Snapshotter, _tmp: &Path) {
    write_base(s);
    assert_eq!(s.prepare("base", None).unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(s.prepare("x", Some("nope")).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.stat("nope").unwrap_err().kind(), ErrorKind::NotFound);
    s.prepare("act", Some("base")).unwrap();
    assert_eq!(s.prepare("y", Some("act")).unwrap_err().kind(), ErrorKind::FailedPrecondition);
    assert_eq!(s.commit("base", "act").unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(s.remove("base").unwrap_err().kind(), ErrorKind::FailedPrecondition);
    s.view("v", Some("base")).unwrap();
    assert_eq!(s.commit("vv", "v").unwrap_err().kind(), ErrorKind::FailedPrecondition);
    assert_eq!(s.commit("c", "base").unwrap_err().kind(), ErrorKind::FailedPrecondition);
    assert_eq!(s.prepare("", None).unwrap_err().kind(), ErrorKind::Invalid);
    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["act", "base", "v"]);
    s.remove("act").unwrap();
    s.remove("v").unwrap();
    s.remove("base").unwrap();
    assert!(s.list().unwrap().is_empty());
}

fn layer(files: &[(&str, &str)], whiteouts: &[&str]) -> Vec<u8> {
    let mut b = LayerBuilder::new();
    for (p, c) in files {
        b.add_file(p, FileSource::Bytes(c.as_bytes().to_vec()), Meta::file()).unwrap();
    }
    for w in whiteouts {
        b.add_whiteout(w).unwrap();
    }
    b.write(Vec::new(), &opts()).unwrap().0
}

/// A reader that must not be read.
struct Untouchable;

impl Read for Untouchable {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("a shared layer was read again")
    }
}

fn apply_layers_shares_and_verifies(s: &dyn Snapshotter, _tmp: &Path) {
    let l1 = layer(&[("etc/os-release", "polyarch"), ("bin/sh", "sh")], &[]);
    let l2 = layer(&[("app/main", "main")], &["bin/sh"]);
    let (d1, d2) = (Digest::sha256(&l1), Digest::sha256(&l2));
    let uo = UnpackOptions::new();
    let c1 = apply_layer(s, None, &d1, &mut &l1[..], &uo).unwrap();
    assert_eq!(c1, d1.to_string());
    assert_eq!(apply_layer(s, None, &d1, &mut Untouchable, &uo).unwrap(), c1);
    let c2 = apply_layer(s, Some(&c1), &d2, &mut &l2[..], &uo).unwrap();
    assert_eq!(c2, chain_id(Some(&c1), &d2));
    let v = s.view("check", Some(&c2)).unwrap();
    let t = mounted(&v);
    assert_eq!(fs::read_to_string(t.path().join("app/main")).unwrap(), "main");
    assert!(!t.path().join("bin/sh").exists());
    assert!(t.path().join("bin").is_dir());
    drop(t);
    let wrong = Digest::sha256(b"not this layer");
    let err = apply_layer(s, Some(&c2), &wrong, &mut &l1[..], &uo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys.len(), 3, "a failed apply left {keys:?}");
    assert!(s.usage(&c1).unwrap().inodes >= 4);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod naive_suite {
            $(#[test] fn $case() { super::run(super::naive, super::$case) })*
        }
        mod overlay_suite {
            $(#[test] fn $case() { super::run(super::overlay, super::$case) })*
        }
    };
}

suite!(stack_diff_round_trip, lifecycle_errors, apply_layers_shares_and_verifies);

/// The overlay snapshotter's own calls for mounts made elsewhere: the
/// lower directories of a chain, and a directory adopted as a layer.
#[test]
fn overlay_layer_dirs_and_adopt() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("snapshots");
    if overlay(&root).is_none() {
        return;
    }
    let s = OverlaySnapshotter::new(&root).unwrap();
    let l1 = layer(&[("etc/os-release", "polyarch")], &[]);
    let d1 = Digest::sha256(&l1);
    let c1 = apply_layer(&s, None, &d1, &mut &l1[..], &UnpackOptions::new()).unwrap();
    let dirs = s.layer_dirs(&c1).unwrap();
    assert_eq!(dirs.len(), 1);
    assert_eq!(fs::read_to_string(dirs[0].join("etc/os-release")).unwrap(), "polyarch");

    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("app")).unwrap();
    fs::write(upper.join("app/main"), "main").unwrap();
    s.adopt("top", Some(&c1), &upper).unwrap();
    assert!(!upper.exists(), "the directory moved in");
    let dirs = s.layer_dirs("top").unwrap();
    assert_eq!(dirs.len(), 2);
    assert_eq!(fs::read_to_string(dirs[0].join("app/main")).unwrap(), "main");
    assert_eq!(dirs[1], s.layer_dirs(&c1).unwrap()[0]);
    assert_eq!(s.stat("top").unwrap().kind, Kind::Committed);
    let v = s.view("check", Some("top")).unwrap();
    let t = mounted(&v);
    assert_eq!(fs::read_to_string(t.path().join("app/main")).unwrap(), "main");
    assert_eq!(fs::read_to_string(t.path().join("etc/os-release")).unwrap(), "polyarch");
    drop(t);
    s.remove("check").unwrap();

    // A second adopt of the name (another process got there first) keeps
    // the first and leaves the caller's directory in place.
    let again = tmp.path().join("again");
    fs::create_dir(&again).unwrap();
    let err = s.adopt("top", Some(&c1), &again).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(again.is_dir());
    // Another instance on the same root (as another process) cannot
    // replace a committed record either.
    let other = OverlaySnapshotter::new(&root).unwrap();
    assert_eq!(other.adopt("top", Some(&c1), &again).unwrap_err().kind(), ErrorKind::AlreadyExists);
    // Only committed snapshots have layer directories.
    s.prepare("active", Some("top")).unwrap();
    assert_eq!(s.layer_dirs("active").unwrap_err().kind(), ErrorKind::FailedPrecondition);
    assert_eq!(s.layer_dirs("missing").unwrap_err().kind(), ErrorKind::NotFound);
    let unknown_parent = s.adopt("x", Some("missing"), &again).unwrap_err();
    assert_eq!(unknown_parent.kind(), ErrorKind::NotFound);
    assert!(again.is_dir());
}
