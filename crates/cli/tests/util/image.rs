//! Image contents compared with other tools: unpacking with umoci, file
//! trees, skopeo's view of a config and builds with buildah.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{have, require, sh};

/// buildah and umoci, for the differential builds; checked with
/// [`require`].
pub fn buildah_prerequisites() -> bool {
    require(have("buildah"), "buildah (apt-get install buildah)") && require(have("umoci"), "umoci")
}

/// Unpacks an OCI archive with umoci and returns the rootfs directory.
pub fn umoci_unpack(archive: &Path, tag: &str, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&layout));
    let bundle = work.join("bundle");
    sh(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:{tag}", layout.display())).arg(&bundle));
    bundle.join("rootfs")
}

/// `skopeo inspect --config` of an OCI archive.
pub fn skopeo_config(archive: &Path) -> serde_json::Value {
    let out = sh(Command::new("skopeo").args(["inspect", "--config", &format!("oci-archive:{}", archive.display())]));
    serde_json::from_str(&out).unwrap()
}

/// A comparable description of a file tree: path → (type, mode, uid, gid, content or link).
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let desc = if md.file_type().is_symlink() {
            format!("l {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            "d".to_string()
        } else {
            format!("f {}", polyarch_oci::Digest::sha256(&std::fs::read(&p).unwrap()))
        };
        let mode = if md.file_type().is_symlink() { 0 } else { md.permissions().mode() & 0o7777 };
        out.insert(rel, format!("{desc} {mode:o} {}:{}", md.uid(), md.gid()));
        if md.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// The paths where two trees differ, one line each, leaving out those
/// `allowed` accepts.
pub fn tree_diffs(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    allowed: impl Fn(&String) -> bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        if allowed(k) {
            continue;
        }
        if a.get(k) != b.get(k) {
            diffs.push(format!("{k}: ours {:?} buildah {:?}", a.get(k), b.get(k)));
        }
    }
    diffs
}

/// Builds `ctx` with buildah (vfs storage under `work/buildah`, the extra
/// `flags` after `--tls-verify=false`), tags it `tag`, writes it to the OCI
/// archive `work/theirs.tar` and unpacks it with umoci; returns the archive
/// and the rootfs.
pub fn buildah_build(work: &Path, ctx: &Path, flags: &[&str], tag: &str) -> (PathBuf, PathBuf) {
    let storage = work.join("buildah");
    let archive = work.join("theirs.tar");
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.arg("--root").arg(storage.join("root")).arg("--runroot").arg(storage.join("run")).arg("--storage-driver=vfs");
        c.args(args);
        sh(&mut c)
    };
    let dockerfile = ctx.join("Dockerfile");
    let mut args = vec!["build", "--format", "oci", "--tls-verify=false"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-f", super::s(&dockerfile), "-t", tag, super::s(ctx)]);
    buildah(&args);
    buildah(&["push", tag, &format!("oci-archive:{}:{tag}", archive.display())]);
    let rootfs = umoci_unpack(&archive, tag, &work.join("theirs"));
    (archive, rootfs)
}

/// The manifest and the config blob of the (only) image in an OCI
/// archive, as stored.
fn manifest_and_config(archive: &Path) -> (serde_json::Value, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    sh(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir.path()));
    let blob = |d: &str| {
        let bytes = std::fs::read(dir.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// The config blob of the (only) image in an OCI archive, as stored.
pub fn raw_config(archive: &Path) -> serde_json::Value {
    manifest_and_config(archive).1
}

/// The manifest of the (only) image in an OCI archive.
pub fn manifest_of(archive: &Path) -> serde_json::Value {
    manifest_and_config(archive).0
}
