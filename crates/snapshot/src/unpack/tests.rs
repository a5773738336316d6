//! Unpack tests, most with hostile archives: whatever they say, nothing
//! outside the root may change.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::*;

/// A tar written header by header, so names can be anything.
struct RawTar {
    b: tar::Builder<Vec<u8>>,
}

impl RawTar {
    fn new() -> RawTar {
        RawTar { b: tar::Builder::new(Vec::new()) }
    }

    fn header(name: &str, kind: EntryType, size: u64, link: Option<&str>, mode: u32) -> Header {
        let mut h = Header::new_ustar();
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_000_000);
        h.set_cksum();
        h
    }

    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = Self::header(name, EntryType::Regular, data.len() as u64, None, 0o644);
        self.b.append(&h, data).unwrap();
        self
    }

    fn dir(mut self, name: &str) -> Self {
        let h = Self::header(name, EntryType::Directory, 0, None, 0o755);
        self.b.append(&h, &b""[..]).unwrap();
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Self {
        let h = Self::header(name, EntryType::Symlink, 0, Some(target), 0o777);
        self.b.append(&h, &b""[..]).unwrap();
        self
    }

    fn hardlink(mut self, name: &str, target: &str) -> Self {
        let h = Self::header(name, EntryType::Link, 0, Some(target), 0o644);
        self.b.append(&h, &b""[..]).unwrap();
        self
    }

    fn raw(mut self, h: Header, data: &[u8]) -> Self {
        self.b.append(&h, data).unwrap();
        self
    }

    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.b.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// A temp dir holding `root/` plus bait next to it: `victim` and
/// `etc/passwd`, which hostile archives aim at.
struct Sandbox {
    outer: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let outer = tempfile::tempdir().unwrap();
        fs::create_dir(outer.path().join("root")).unwrap();
        fs::write(outer.path().join("victim"), b"bait").unwrap();
        fs::create_dir(outer.path().join("etc")).unwrap();
        fs::write(outer.path().join("etc/passwd"), b"bait").unwrap();
        Sandbox { outer }
    }

    fn root(&self) -> PathBuf {
        self.outer.path().join("root")
    }

    /// Everything outside `root/`: path, kind, size, content.
    fn outside(&self) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.outer.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p == self.root() {
                    continue;
                }
                let md = fs::symlink_metadata(&p).unwrap();
                let content = if md.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
                out.insert(p.clone(), (md.mode(), md.len(), content));
                if md.is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }

    /// Unpacks `tar` and checks that nothing outside the root changed.
    /// Unpacks `tar` and checks that nothing outside the root changed,
    /// then does the same in a second root with the fallback resolver and
    /// checks both results agree.
    fn unpack(&self, tar: Vec<u8>) -> Result<UnpackStats> {
        let before = self.outside();
        let r = unpack(&tar[..], &self.root(), &UnpackOptions::new());
        assert_eq!(before, self.outside(), "something outside the root changed");
        r
    }
}

fn read(p: impl AsRef<Path>) -> String {
    String::from_utf8(fs::read(p).unwrap()).unwrap()
}

#[test]
fn dot_dot_names_stay_inside() {
    let s = Sandbox::new();
    s.unpack(RawTar::new().file("../../etc/passwd", b"in").file("a/../../victim", b"in").bytes()).unwrap();
    assert_eq!(read(s.root().join("etc/passwd")), "in");
    assert_eq!(read(s.root().join("victim")), "in");
}

#[test]
fn absolute_names_stay_inside() {
    let s = Sandbox::new();
    let name = format!("/polyarch-abs-{}/path", std::process::id());
    s.unpack(RawTar::new().file(&name, b"in").bytes()).unwrap();
    assert_eq!(read(s.root().join(&name[1..])), "in");
    assert!(!Path::new(&name).exists());
}

#[test]
fn symlink_to_root_then_write_through_it() {
    let s = Sandbox::new();
    let name = format!("polyarch-escape-{}", std::process::id());
    let tar = RawTar::new().symlink("a", "/").file(&format!("a/etc/{name}"), b"in").bytes();
    s.unpack(tar).unwrap();
    assert_eq!(read(s.root().join("etc").join(&name)), "in");
    assert!(!Path::new("/etc").join(&name).exists());
}

#[test]
fn relative_symlink_escape_then_write_through_it() {
    let s = Sandbox::new();
    let tar = RawTar::new()
        .symlink("up", "../../..")
        .file("up/victim", b"in")
        .dir("d/")
        .symlink("d/l", "../../../../etc")
        .file("d/l/passwd", b"in2")
        .bytes();
    s.unpack(tar).unwrap();
    assert_eq!(read(s.root().join("victim")), "in");
    assert_eq!(read(s.root().join("etc/passwd")), "in2");
}

#[test]
fn file_replaces_symlink_instead_of_writing_through_it() {
    let s = Sandbox::new();
    let outside = s.outer.path().join("victim");
    let tar = RawTar::new().symlink("s", outside.to_str().unwrap()).file("s", b"in").bytes();
    s.unpack(tar).unwrap();
    assert!(fs::symlink_metadata(s.root().join("s")).unwrap().is_file());
}

#[test]
fn hardlinks_outside_the_root_are_refused() {
    for target in ["/etc/shadow", "../victim", "../../etc/passwd"] {
        let s = Sandbox::new();
        let err = s.unpack(RawTar::new().hardlink("h", target).bytes()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{target}: {err}");
    }
}

#[test]
fn hardlinks_through_symlinks_resolve_inside_the_root() {
    let s = Sandbox::new();
    // The symlink points at the host's /etc, which in the root means root/etc.
    let tar = RawTar::new().symlink("e", "/etc").hardlink("h", "e/shadow").bytes();
    assert!(s.unpack(tar).is_err());
    let s = Sandbox::new();
    let tar = RawTar::new().file("etc/passwd", b"in").symlink("e", "/etc").hardlink("h", "e/passwd").bytes();
    s.unpack(tar).unwrap();
    let (a, b) = (fs::metadata(s.root().join("h")).unwrap(), fs::metadata(s.root().join("etc/passwd")).unwrap());
    assert_eq!(a.ino(), b.ino());
    let outer = fs::metadata(s.outer.path().join("etc/passwd")).unwrap();
    assert_eq!(outer.nlink(), 1);
}

#[test]
fn file_replaces_directory_and_back() {
    let s = Sandbox::new();
    let tar = RawTar::new()
        .dir("d/")
        .file("d/f", b"x")
        .file("d", b"file")
        .file("x", b"1")
        .dir("x/")
        .file("x/y", b"2")
        .bytes();
    s.unpack(tar).unwrap();
    assert_eq!(read(s.root().join("d")), "file");
    assert_eq!(read(s.root().join("x/y")), "2");
}

#[test]
fn whiteouts_of_dot_dot_are_refused() {
    for name in [".wh...", "a/.wh...", ".wh..", ".wh."] {
        let s = Sandbox::new();
        let err = s.unpack(RawTar::new().file(name, b"").bytes()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{name}");
    }
    let s = Sandbox::new();
    fs::write(s.root().join("victim"), b"inside").unwrap();
    s.unpack(RawTar::new().file("../.wh.victim", b"").symlink("l", "/").file("l/.wh.etc", b"").bytes()).unwrap();
    assert!(!s.root().join("victim").exists());
}

#[test]
fn huge_header_sizes_fail_cleanly() {
    let s = Sandbox::new();
    let h = RawTar::header("big", EntryType::Regular, 0o77777777777, None, 0o644);
    let tar = RawTar::new().raw(h, b"").bytes();
    assert!(s.unpack(tar[..1024].to_vec()).is_err());
    let mut h = RawTar::header("big2", EntryType::Regular, 0, None, 0o644);
    h.set_size(u64::MAX);
    let tar = RawTar::new().raw(h, b"").bytes();
    assert!(s.unpack(tar[..512].to_vec()).is_err());
}

#[test]
fn modes_owners_xattrs_and_times() {
    let s = Sandbox::new();
    let root_user = rustix::process::geteuid().is_root();
    let mut h = RawTar::header("bin/su", EntryType::Regular, 2, None, 0o4755);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_cksum();
    let tmp_dir = RawTar::header("tmp/", EntryType::Directory, 0, None, 0o1777);
    let tar = RawTar::new()
        .dir("bin/")
        .pax(&[("SCHILY.xattr.user.polyarch", b"v")])
        .raw(h, b"su")
        .raw(tmp_dir, b"")
        .file("tmp/f", b"x")
        .bytes();
    let stats = s.unpack(tar).unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(stats.dirs, 2);
    let md = fs::metadata(s.root().join("bin/su")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4755);
    if root_user {
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
    }
    assert_eq!(crate::fsmeta::get_xattr(&s.root().join("bin/su"), "user.polyarch").ok(), Some(b"v".to_vec()));
    let tmp = fs::metadata(s.root().join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    // Directory mtimes survive their contents being written.
    assert_eq!(tmp.mtime(), 1_000_000);
    assert_eq!(fs::metadata(s.root().join("bin")).unwrap().mtime(), 1_000_000);
}

#[test]
fn id_map_applies_when_keeping_owners() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let s = Sandbox::new();
    let map: IdMap = Arc::new(|u, g| (u + 100_000, g + 100_000));
    let opts = UnpackOptions::new().with_same_owner(true).with_id_map(Some(map));
    unpack(&RawTar::new().file("f", b"x").bytes()[..], &s.root(), &opts).unwrap();
    let md = fs::metadata(s.root().join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100_000, 100_000));
}

#[test]
fn special_files_only_when_allowed() {
    let fifo = RawTar::header("p", EntryType::Fifo, 0, None, 0o644);
    let mut dev = RawTar::header("null", EntryType::Char, 0, None, 0o666);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_cksum();
    let tar = RawTar::new().raw(fifo, b"").raw(dev, b"").bytes();
    let s = Sandbox::new();
    let opts = UnpackOptions::new().with_special_files(false);
    let stats = unpack(&tar[..], &s.root(), &opts).unwrap();
    assert_eq!(stats.skipped_special, 2);
    assert!(!s.root().join("p").exists());
    if rustix::process::geteuid().is_root() {
        let s = Sandbox::new();
        let stats = unpack(&tar[..], &s.root(), &UnpackOptions::new().with_special_files(true)).unwrap();
        assert_eq!(stats.special, 2);
        assert!(fs::symlink_metadata(s.root().join("p")).unwrap().file_type().is_fifo());
        let md = fs::symlink_metadata(s.root().join("null")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    }
}

#[test]
fn whiteouts_and_opaque_directories() {
    let s = Sandbox::new();
    let lower = RawTar::new()
        .dir("a/")
        .file("a/keep", b"1")
        .file("a/gone", b"2")
        .dir("o/")
        .file("o/old", b"3")
        .dir("o/sub/")
        .file("o/sub/x", b"4")
        .file("f", b"5")
        .bytes();
    s.unpack(lower).unwrap();
    let upper = RawTar::new()
        .file("a/.wh.gone", b"")
        .file("o/new", b"6")
        .file("o/sub/newer", b"7")
        .file("o/.wh..wh..opq", b"")
        .file(".wh.f", b"")
        .file(".wh.missing", b"")
        .dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/123", b"")
        .file(".wh..wh.aufs", b"")
        .bytes();
    let stats = s.unpack(upper).unwrap();
    assert_eq!(stats.whiteouts, 4);
    assert!(s.root().join("a/keep").exists());
    assert!(!s.root().join("a/gone").exists());
    assert!(!s.root().join("f").exists());
    let mut names: Vec<_> = fs::read_dir(s.root().join("o")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["new", "sub"]);
    let names: Vec<_> = fs::read_dir(s.root().join("o/sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["newer"]);
    assert!(!s.root().join(".wh..wh.plnk").exists());
    assert!(!s.root().join(".wh..wh.aufs").exists());
}

#[test]
fn compressed_layers_are_sniffed() {
    use std::io::Write;
    let tar = RawTar::new().file("f", b"x").bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for blob in [tar.clone(), gz, zst] {
        let s = Sandbox::new();
        unpack_compressed(&blob[..], &s.root(), &UnpackOptions::new()).unwrap();
        assert_eq!(read(s.root().join("f")), "x");
    }
}

#[test]
fn overlay_mode_writes_overlay_whiteouts() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let s = Sandbox::new();
    let opts = UnpackOptions::new().with_whiteouts(WhiteoutMode::Overlay);
    let tar = RawTar::new().dir("d/").file("d/.wh.x", b"").dir("o/").file("o/.wh..wh..opq", b"").bytes();
    unpack(&tar[..], &s.root(), &opts).unwrap();
    // Markers in directories no layer has change nothing (as in the merged
    // tree, where there is nothing to delete).
    let tar = RawTar::new().file("none/.wh.x", b"").file("none2/.wh..wh..opq", b"").bytes();
    unpack(&tar[..], &s.root(), &opts).unwrap();
    assert!(!s.root().join("none").exists() && !s.root().join("none2").exists());
    let md = fs::symlink_metadata(s.root().join("d/x")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    assert_eq!(crate::fsmeta::get_xattr(&s.root().join("o"), "trusted.overlay.opaque").ok(), Some(b"y".to_vec()));
}

#[test]
fn xattr_records_of_gnu_tar_and_bsdtar() {
    use super::{pax_xattr, XattrRecord};
    assert_eq!(pax_xattr("SCHILY.xattr.user.a", b"v"), Some(("user.a".into(), b"v".to_vec(), XattrRecord::Schily)));
    assert_eq!(
        pax_xattr("LIBARCHIVE.xattr.user.a%3Db", b"dmFsdWU="),
        Some(("user.a=b".into(), b"value".to_vec(), XattrRecord::Libarchive))
    );
    assert_eq!(pax_xattr("LIBARCHIVE.xattr.user.x", b"dmFsdWU").map(|x| x.1), Some(b"value".to_vec()));
    assert_eq!(pax_xattr("LIBARCHIVE.xattr.bad%4", b""), None);
    assert_eq!(pax_xattr("uid", b"0"), None);
}

#[test]
fn overlay_entries_resolve_through_the_lowers() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir_all(lower.join("usr/lib")).unwrap();
    fs::set_permissions(lower.join("usr/lib"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(lower.join("usr/lib/libc.so"), b"libc").unwrap();
    symlink("usr/lib", lower.join("lib")).unwrap();
    symlink("/usr/lib/libc.so", lower.join("libc")).unwrap();
    fs::create_dir(&upper).unwrap();
    let opts = UnpackOptions::new().with_whiteouts(WhiteoutMode::Overlay).with_lowers(vec![lower.clone()]);
    let tar = RawTar::new().file("lib/newfile", b"new").hardlink("hl", "lib/libc.so").file("libc", b"f").bytes();
    unpack(&tar[..], &upper, &opts).unwrap();
    // Not a directory `lib` that would hide the lower's symlink.
    assert!(!upper.join("lib").exists());
    assert_eq!(read(upper.join("usr/lib/newfile")), "new");
    assert_eq!(fs::metadata(upper.join("usr/lib")).unwrap().mode() & 0o7777, 0o750, "copied up with its metadata");
    // The hard link's lower target was copied up and linked.
    assert_eq!(
        fs::metadata(upper.join("hl")).unwrap().ino(),
        fs::metadata(upper.join("usr/lib/libc.so")).unwrap().ino()
    );
    // A file replaces the lower's symlink; nothing in the lower changed.
    assert_eq!(read(upper.join("libc")), "f");
    assert_eq!(read(lower.join("usr/lib/libc.so")), "libc");
    assert!(!lower.join("usr/lib/newfile").exists());
}
