//! Rooted writes with hostile names and links: whatever they say, nothing
//! outside the root changes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

fn comps(s: &str) -> Vec<OsString> {
    clean(s.as_bytes())
}

/// A temp dir holding `root/` and, beside it, `host/` with a file that
/// links aim at.
struct Sandbox {
    outer: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let outer = tempfile::tempdir().unwrap();
        fs::create_dir(outer.path().join("root")).unwrap();
        fs::create_dir(outer.path().join("host")).unwrap();
        fs::write(outer.path().join("host/file"), b"host").unwrap();
        fs::set_permissions(outer.path().join("host/file"), fs::Permissions::from_mode(0o644)).unwrap();
        Sandbox { outer }
    }

    fn root(&self) -> PathBuf {
        self.outer.path().join("root")
    }

    fn host(&self) -> PathBuf {
        self.outer.path().join("host")
    }

    fn open(&self) -> Root {
        Root::open(&self.root()).unwrap()
    }

    /// Everything outside `root/`: path → (mode, nlink, mtime, content).
    fn outside(&self) -> BTreeMap<PathBuf, (u32, u64, i64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.outer.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p == self.root() {
                    continue;
                }
                let md = fs::symlink_metadata(&p).unwrap();
                let data = if md.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
                out.insert(p.clone(), (md.mode(), md.nlink(), md.mtime(), data));
                if md.is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }

    /// Writes `data` at `name` through a slot, with mode, owner and time,
    /// checking that nothing outside changed.
    fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let before = self.outside();
        let r = (|| {
            let slot = self.open().slot(name.as_bytes())?;
            slot.write_file(&mut &data[..])?;
            slot.set_mode(0o600)?;
            slot.set_owner(rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())?;
            slot.set_mtime(1)?;
            Ok(slot.resolved())
        })();
        assert_eq!(before, self.outside(), "something outside the root changed writing {name}");
        r
    }
}

fn read(p: impl AsRef<Path>) -> String {
    String::from_utf8(fs::read(p).unwrap()).unwrap()
}

#[test]
fn clean_clamps_at_root() {
    assert_eq!(join(&comps("../../etc/passwd")), PathBuf::from("etc/passwd"));
    assert_eq!(join(&comps("/abs/./path/")), PathBuf::from("abs/path"));
    assert_eq!(join(&comps("a/../../b")), PathBuf::from("b"));
    assert!(comps("./..//.").is_empty());
}

#[test]
fn dot_dot_names_stay_inside() {
    let s = Sandbox::new();
    assert_eq!(s.write("a/../../x", b"in").unwrap(), PathBuf::from("x"));
    assert_eq!(read(s.root().join("x")), "in");
    s.write("../host/file", b"in").unwrap();
    assert_eq!(read(s.root().join("host/file")), "in");
    assert_eq!(read(s.host().join("file")), "host");
}

#[test]
fn absolute_symlink_is_followed_inside_the_root() {
    let s = Sandbox::new();
    symlink(s.host(), s.root().join("esc")).unwrap();
    let rel = s.write("esc/pwned", b"in").unwrap();
    assert_eq!(rel, s.host().strip_prefix("/").unwrap().join("pwned"));
    assert_eq!(read(s.root().join(&rel)), "in");
    assert!(!s.host().join("pwned").exists());
    // The link itself stays as it was.
    assert_eq!(fs::read_link(s.root().join("esc")).unwrap(), s.host());
}

#[test]
fn dot_dot_symlink_stops_at_the_root() {
    let s = Sandbox::new();
    fs::create_dir(s.root().join("d")).unwrap();
    symlink("../../..", s.root().join("d/up")).unwrap();
    symlink("../host", s.root().join("h")).unwrap();
    assert_eq!(s.write("d/up/victim", b"in").unwrap(), PathBuf::from("victim"));
    assert_eq!(s.write("h/file", b"in").unwrap(), PathBuf::from("host/file"));
    assert_eq!(read(s.root().join("host/file")), "in");
    assert_eq!(read(s.host().join("file")), "host");
}

#[test]
fn symlink_chains_resolve_inside_and_loops_fail() {
    let s = Sandbox::new();
    fs::create_dir_all(s.root().join("real/sub")).unwrap();
    symlink("b", s.root().join("a")).unwrap();
    symlink("/c/../../real", s.root().join("b")).unwrap();
    symlink(format!("{}/../..", s.host().display()), s.root().join("real/sub/out")).unwrap();
    assert_eq!(s.write("a/sub/f", b"in").unwrap(), PathBuf::from("real/sub/f"));
    let rel = s.write("a/sub/out/g", b"in").unwrap();
    let up = s.outer.path().parent().unwrap();
    assert_eq!(rel, up.strip_prefix("/").unwrap().join("g"));
    assert!(!up.join("g").exists());
    symlink("loop", s.root().join("loop")).unwrap();
    let err = s.write("loop/x", b"in").unwrap_err();
    assert!(err.to_string().contains("loop"), "{err}");
}

#[test]
fn symlink_to_a_file_is_replaced_not_written_through() {
    let s = Sandbox::new();
    symlink(s.host().join("file"), s.root().join("f")).unwrap();
    // Metadata calls on the link leave its target alone.
    let before = s.outside();
    let slot = s.open().slot(b"f").unwrap();
    slot.set_mode(0o777).unwrap();
    slot.set_mtime(5).unwrap();
    slot.set_owner(rustix::process::geteuid().as_raw(), 0).unwrap();
    assert_eq!(before, s.outside());
    s.write("f", b"in").unwrap();
    assert!(fs::symlink_metadata(s.root().join("f")).unwrap().is_file());
    // A link to a file as a parent: the target's path inside the root is
    // made a directory.
    symlink(s.host().join("file"), s.root().join("g")).unwrap();
    let rel = s.write("g/x", b"in").unwrap();
    assert_eq!(rel, s.host().strip_prefix("/").unwrap().join("file/x"));
    assert_eq!(read(s.host().join("file")), "host");
}

#[test]
fn hard_links_resolve_their_target_inside_the_root() {
    let s = Sandbox::new();
    let root = s.open();
    let before = s.outside();
    for target in ["../host/file", "/etc/passwd"] {
        let t = root.slot(target.as_bytes()).unwrap();
        assert!(root.slot(b"h").unwrap().hard_link(&t).is_err(), "{target}");
    }
    symlink(s.host(), s.root().join("l")).unwrap();
    let t = root.slot(b"l/file").unwrap();
    assert!(root.slot(b"h").unwrap().hard_link(&t).is_err());
    assert_eq!(before, s.outside());
    assert_eq!(fs::metadata(s.host().join("file")).unwrap().nlink(), 1);
    // A link to an in-root symlink links the symlink, not what it names.
    symlink(s.host().join("file"), s.root().join("sl")).unwrap();
    root.slot(b"h").unwrap().hard_link(&root.slot(b"sl").unwrap()).unwrap();
    assert!(fs::symlink_metadata(s.root().join("h")).unwrap().file_type().is_symlink());
    assert_eq!(fs::metadata(s.host().join("file")).unwrap().nlink(), 1);
    s.write("in", b"x").unwrap();
    root.slot(b"d/h2").unwrap().hard_link(&root.slot(b"in").unwrap()).unwrap();
    assert_eq!(fs::metadata(s.root().join("d/h2")).unwrap().ino(), fs::metadata(s.root().join("in")).unwrap().ino());
}

#[test]
fn directories_merge_and_replace_other_entries() {
    let s = Sandbox::new();
    let root = s.open();
    s.write("d/f", b"x").unwrap();
    root.slot(b"d").unwrap().make_dir().unwrap();
    assert_eq!(read(s.root().join("d/f")), "x");
    symlink(s.host(), s.root().join("l")).unwrap();
    root.slot(b"l").unwrap().make_dir().unwrap();
    assert!(fs::symlink_metadata(s.root().join("l")).unwrap().is_dir());
    assert!(root.slot(b"").unwrap().is_root());
    assert!(root.slot(b"/").unwrap().remove().is_err());
    assert!(s.host().join("file").exists());
}

#[test]
fn remove_all_does_not_follow_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("keep")).unwrap();
    fs::write(tmp.path().join("keep/f"), b"x").unwrap();
    fs::create_dir_all(tmp.path().join("gone/d")).unwrap();
    symlink(tmp.path().join("keep"), tmp.path().join("gone/d/link")).unwrap();
    let dir = rfs::open(tmp.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    remove_all_at(dir.as_fd(), OsStr::new("gone")).unwrap();
    remove_all_at(dir.as_fd(), OsStr::new("gone")).unwrap();
    assert!(tmp.path().join("keep/f").exists());
    assert!(!tmp.path().join("gone").exists());
}

#[test]
fn tree_copies_keep_links_inside() {
    let s = Sandbox::new();
    let src = s.root().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"data").unwrap();
    fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
    symlink(s.host(), src.join("esc")).unwrap();
    symlink("../../host", src.join("d/up")).unwrap();
    let before = s.outside();
    let dst = s.root().join("dst");
    copy_tree(&src, &dst).unwrap();
    assert_eq!(before, s.outside());
    assert_eq!(fs::read_link(dst.join("esc")).unwrap(), s.host());
    assert_eq!(fs::read_link(dst.join("d/up")).unwrap(), PathBuf::from("../../host"));
    assert_eq!(fs::metadata(dst.join("h")).unwrap().ino(), fs::metadata(dst.join("d/f")).unwrap().ino());
}
