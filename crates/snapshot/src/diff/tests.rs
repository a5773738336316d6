//! Diff tests: round trips, determinism, whiteouts, and what `tar` sees.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::Command;

use super::*;
use crate::compress::Compression;
use crate::rooted::copy_tree;
use crate::testutil::tree;
use crate::unpack::{unpack, unpack_compressed, UnpackOptions};

fn plain() -> LayerOptions {
    LayerOptions::new().with_compression(Compression::Uncompressed)
}

/// `lower/` with some files, and `upper/` a metadata-preserving copy.
fn lower_and_upper() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::create_dir_all(lower.join("var/lib/dpkg")).unwrap();
    fs::create_dir_all(lower.join("opq/sub")).unwrap();
    fs::write(lower.join("etc/passwd"), "root").unwrap();
    fs::write(lower.join("etc/hosts"), "localhost").unwrap();
    fs::write(lower.join("var/lib/dpkg/status"), "ok").unwrap();
    fs::write(lower.join("opq/old"), "old").unwrap();
    fs::write(lower.join("opq/sub/older"), "older").unwrap();
    let upper = tmp.path().join("upper");
    copy_tree(&lower, &upper).unwrap();
    (tmp, lower, upper)
}

fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, u64)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (String::from_utf8(e.path_bytes().into_owned()).unwrap(), h.entry_type(), h.mtime().unwrap())
        })
        .collect()
}

fn names(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|e| e.0).collect()
}

#[test]
fn unchanged_trees_give_an_empty_layer() {
    let (_t, lower, upper) = lower_and_upper();
    assert!(changes_dirs(Some(&lower), &upper).unwrap().is_empty());
    let (tar, info) = diff_dirs(Some(&lower), &upper, Vec::new(), &plain()).unwrap();
    assert_eq!(tar.len(), 1024);
    assert_eq!(info.diff_id.to_string(), "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
}

#[test]
fn file_and_directory_deletions_become_whiteouts() {
    let (_t, lower, upper) = lower_and_upper();
    fs::remove_file(upper.join("etc/hosts")).unwrap();
    fs::remove_dir_all(upper.join("var/lib")).unwrap();
    let (tar, _) = diff_dirs(Some(&lower), &upper, Vec::new(), &plain()).unwrap();
    assert_eq!(names(&tar), ["etc/", "etc/.wh.hosts", "var/", "var/.wh.lib"]);
    let copy = _t.path().join("copy");
    copy_tree(&lower, &copy).unwrap();
    unpack(&tar[..], &copy, &UnpackOptions::new()).unwrap();
    assert_eq!(tree(&copy), tree(&upper));
}

#[test]
fn round_trip_with_every_kind_of_change() {
    let (t, lower, upper) = lower_and_upper();
    fs::write(upper.join("etc/passwd"), "root\nuser").unwrap();
    fs::remove_dir_all(upper.join("opq")).unwrap();
    fs::create_dir(upper.join("opq")).unwrap();
    fs::write(upper.join("opq/new"), "new").unwrap();
    fs::remove_file(upper.join("etc/hosts")).unwrap();
    fs::create_dir(upper.join("etc/hosts")).unwrap();
    fs::remove_dir_all(upper.join("var/lib/dpkg")).unwrap();
    fs::write(upper.join("var/lib/dpkg"), "now a file").unwrap();
    symlink("/etc/passwd", upper.join("link")).unwrap();
    fs::hard_link(upper.join("opq/new"), upper.join("hard")).unwrap();
    fs::set_permissions(upper.join("etc"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (tar, _) = diff_dirs(Some(&lower), &upper, Vec::new(), &plain()).unwrap();
    let hard = entries(&tar).into_iter().find(|e| e.0 == "opq/new").map(|e| e.1);
    assert_eq!(hard, Some(tar::EntryType::Link), "the second name of a file is a hard link");
    let copy = t.path().join("copy");
    copy_tree(&lower, &copy).unwrap();
    unpack(&tar[..], &copy, &UnpackOptions::new()).unwrap();
    assert_eq!(tree(&copy), tree(&upper));
}

#[test]
fn same_change_gives_identical_blobs() {
    for c in [Compression::gzip(), Compression::zstd(), Compression::Uncompressed] {
        let (_t, lower, upper) = lower_and_upper();
        fs::write(upper.join("etc/new"), "data").unwrap();
        fs::remove_file(upper.join("etc/hosts")).unwrap();
        let opts = LayerOptions::new().with_compression(c);
        let (a, ia) = diff_dirs(Some(&lower), &upper, Vec::new(), &opts).unwrap();
        let (b, ib) = diff_dirs(Some(&lower), &upper, Vec::new(), &opts).unwrap();
        assert_eq!(a, b, "{c:?}");
        assert_eq!(ia, ib);
        assert_eq!(ia.descriptor.digest, Digest::sha256(&a));
        assert_eq!(ia.descriptor.size, a.len() as u64);
        assert_eq!(ia.descriptor.media_type, c.oci_media_type());
        let mut plain_tar = Vec::new();
        crate::decompress(&a[..]).unwrap().read_to_end(&mut plain_tar).unwrap();
        assert_eq!(ia.diff_id, Digest::sha256(&plain_tar));
        assert_eq!(ia.uncompressed_size, plain_tar.len() as u64);
        let copy = _t.path().join("copy");
        copy_tree(&lower, &copy).unwrap();
        unpack_compressed(&a[..], &copy, &UnpackOptions::new()).unwrap();
        assert_eq!(tree(&copy), tree(&upper));
    }
}

use polyarch_oci::Digest;

#[test]
fn timestamps_are_clamped_or_rewritten() {
    let (_t, _lower, upper) = lower_and_upper();
    let now = fs::metadata(upper.join("etc/passwd")).unwrap().mtime();
    let clamp = plain().with_source_date_epoch(Some(100));
    let (tar, _) = diff_dirs(None, &upper, Vec::new(), &clamp).unwrap();
    assert!(entries(&tar).iter().all(|e| e.2 == 100));
    let future = plain().with_source_date_epoch(Some(now + 1000));
    let (tar, _) = diff_dirs(None, &upper, Vec::new(), &future).unwrap();
    assert!(entries(&tar).iter().all(|e| e.2 <= (now + 10) as u64 && e.2 > 100));
    let rewrite = plain().with_source_date_epoch(Some(now + 1000)).with_rewrite_timestamps(true);
    let (tar, _) = diff_dirs(None, &upper, Vec::new(), &rewrite).unwrap();
    assert!(entries(&tar).iter().all(|e| e.2 == (now + 1000) as u64));
    // Touching files then gives the same layer.
    let (a, _) = diff_dirs(None, &upper, Vec::new(), &rewrite).unwrap();
    let later = fs::FileTimes::new().set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5));
    fs::File::options().write(true).open(upper.join("etc/passwd")).unwrap().set_times(later).unwrap();
    let (b, _) = diff_dirs(None, &upper, Vec::new(), &rewrite).unwrap();
    assert_eq!(a, b);
}

#[test]
fn overlay_upper_whiteouts_and_opaque_dirs() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("opq")).unwrap();
    fs::write(upper.join("opq/new"), "n").unwrap();
    fs::write(upper.join("etc/changed"), "c").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("etc/deleted"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    rustix::fs::setxattr(upper.join("opq"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::setxattr(upper.join("etc"), "trusted.overlay.origin", b"x", rustix::fs::XattrFlags::empty()).unwrap();
    let (tar, _) = diff_overlay_upper(&upper, Vec::new(), &plain()).unwrap();
    assert_eq!(names(&tar), ["etc/", "etc/.wh.deleted", "etc/changed", "opq/", "opq/.wh..wh..opq", "opq/new"]);
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                assert!(!r.unwrap().key().unwrap().contains("overlay"), "overlay xattrs stay out of layers");
            }
        }
    }
}

#[test]
fn gnu_tar_lists_sorted_entries_with_numeric_owners() {
    let (t, _lower, upper) = lower_and_upper();
    fs::write(upper.join("a.b"), "x").unwrap();
    fs::create_dir(upper.join("a")).unwrap();
    fs::write(upper.join("a/z"), "z").unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        upper.join("a/z"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(1000)),
        rustix::fs::AtFlags::empty(),
    )
    .ok();
    let long = "l".repeat(150);
    fs::write(upper.join(&long), "long").unwrap();
    rustix::fs::setxattr(upper.join(&long), "user.polyarch", b"v", rustix::fs::XattrFlags::empty()).unwrap();
    let (tar, _) = diff_dirs(None, &upper, Vec::new(), &plain()).unwrap();
    let file = t.path().join("layer.tar");
    fs::write(&file, &tar).unwrap();
    let out = Command::new("tar").arg("-tvf").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = text.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    let want = [
        "a/",
        "a/z",
        "a.b",
        "etc/",
        "etc/hosts",
        "etc/passwd",
        &long,
        "opq/",
        "opq/old",
        "opq/sub/",
        "opq/sub/older",
        "var/",
        "var/lib/",
        "var/lib/dpkg/",
        "var/lib/dpkg/status",
    ];
    assert_eq!(listed, want, "{text}");
    let xattrs = Command::new("tar").args(["--xattrs", "--xattrs-include=*", "-tvvf"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&xattrs.stdout).contains("user.polyarch"), "PAX xattrs are readable by GNU tar");
    for line in text.lines() {
        let owner = line.split_whitespace().nth(1).unwrap();
        let (u, g) = owner.split_once('/').unwrap();
        assert!(u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok(), "owner {owner:?} is not numeric: {line}");
    }
}

#[test]
fn no_lower_means_everything_is_added() {
    let (_t, _lower, upper) = lower_and_upper();
    let changes = changes_dirs(None, &upper).unwrap();
    assert!(changes.iter().all(|c| matches!(c, Change::Add(_))));
    assert_eq!(changes.len(), tree(&upper).len());
    assert!(Path::new(&upper).exists());
}
