//! The store's root is an OCI image layout that other tools read: skopeo
//! and umoci must see the images polyarch writes.
//!
//! Under `CI=true` a missing tool fails the test; elsewhere it is skipped
//! with a printed reason.

use std::path::Path;
use std::process::Command;

use polyarch_store::testsuite::{random_image, random_index};
use polyarch_store::Store;

fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is required under CI=true but was not found on PATH");
        }
        println!("skipping: {name} not found on PATH");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fixture() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("root")).unwrap();
    let img = random_image(&s, 2, 42).unwrap();
    s.tag("docker.io/library/busybox:latest", &img).unwrap();
    s.tag("app", &img).unwrap();
    let idx = random_index(&s, 2, 1, 7).unwrap();
    s.tag("example.com/multi:v1", &idx).unwrap();
    (dir, s)
}

fn oci(root: &Path, name: &str) -> String {
    format!("oci:{}:{name}", root.display())
}

#[test]
fn skopeo_reads_images() {
    if !tool("skopeo") {
        return;
    }
    let (_d, s) = fixture();
    let img = s.resolve("docker.io/library/busybox:latest").unwrap().unwrap();
    let out = run(Command::new("skopeo").args(["inspect", &oci(s.root(), "docker.io/library/busybox:latest")]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], img.digest.to_string());
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", &oci(s.root(), "example.com/multi:v1")]));
    assert!(raw.contains("application/vnd.oci.image.index.v1+json"), "{raw}");
    // A full copy reads and verifies every blob.
    let dest = tempfile::tempdir().unwrap();
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        &oci(s.root(), "example.com/multi:v1"),
        &format!("oci:{}:copied", dest.path().display()),
    ]));
}

#[test]
fn umoci_reads_images() {
    if !tool("umoci") {
        return;
    }
    let (_d, s) = fixture();
    let root = s.root().display().to_string();
    let tags = run(Command::new("umoci").args(["ls", "--layout", &root]));
    assert!(tags.lines().any(|l| l == "app"), "{tags}");
    assert!(tags.lines().any(|l| l == "docker.io/library/busybox:latest"), "{tags}");
    // Full names with a registry and a tag work as umoci image names too.
    run(Command::new("umoci").args(["stat", "--json", "--image", &format!("{root}:docker.io/library/busybox:latest")]));
    let stat = run(Command::new("umoci").args(["stat", "--json", "--image", &format!("{root}:app")]));
    let v: serde_json::Value = serde_json::from_str(&stat).unwrap();
    assert!(v["history"].is_array() || v.is_object(), "{stat}");
    let bundle = tempfile::tempdir().unwrap();
    let dest = bundle.path().join("b");
    run(Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{root}:app"),
        &dest.display().to_string(),
    ]));
    assert!(dest.join("rootfs").is_dir());
}

#[test]
fn archives_interoperate_with_skopeo() {
    if !tool("skopeo") {
        return;
    }
    let (_d, s) = fixture();
    let img = s.resolve("docker.io/library/busybox:latest").unwrap().unwrap();
    let work = tempfile::tempdir().unwrap();

    // Our OCI archive and docker archive read by skopeo.
    let oci_tar = work.path().join("oci.tar");
    s.export_oci_archive(&["docker.io/library/busybox:latest"], std::fs::File::create(&oci_tar).unwrap()).unwrap();
    let out = run(Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}:docker.io/library/busybox:latest", oci_tar.display())]));
    assert!(out.contains(&img.digest.to_string()), "{out}");
    let docker_tar = work.path().join("docker.tar");
    let entries = vec![("docker.io/library/busybox:latest".to_string(), img.clone())];
    s.export_docker_archive(&entries, std::fs::File::create(&docker_tar).unwrap()).unwrap();
    // Selecting by tag goes through manifest.json's RepoTags.
    let out = run(Command::new("skopeo")
        .args(["inspect", &format!("docker-archive:{}:docker.io/library/busybox:latest", docker_tar.display())]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ours = s.get_manifest(&img).unwrap();
    let layers: Vec<String> = ours.as_image().unwrap().layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(v["Layers"], serde_json::json!(layers), "{out}");

    // skopeo's archives (legacy docker-save layout; OCI) loaded by us.
    let theirs = work.path().join("theirs-docker.tar");
    run(Command::new("skopeo").args([
        "copy",
        &oci(s.root(), "app"),
        &format!("docker-archive:{}:example.com/loaded:1", theirs.display()),
    ]));
    let dst = Store::open(work.path().join("dst")).unwrap();
    let loaded = dst.import_archive(std::fs::File::open(&theirs).unwrap()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].0, "example.com/loaded:1");
    let m = dst.get_manifest(&loaded[0].1).unwrap();
    assert_eq!(m.as_image().unwrap().layers.len(), 2);
    let theirs_oci = work.path().join("theirs-oci.tar");
    run(Command::new("skopeo").args([
        "copy",
        &oci(s.root(), "app"),
        &format!("oci-archive:{}:named", theirs_oci.display()),
    ]));
    let loaded = dst.import_archive(std::fs::File::open(&theirs_oci).unwrap()).unwrap();
    assert_eq!(loaded[0].0, "named");
    // skopeo compresses the layers on the way; the config stays.
    let a = dst.get_manifest(&loaded[0].1).unwrap();
    let b = s.get_manifest(&img).unwrap();
    let (a, b) = (a.as_image().unwrap(), b.as_image().unwrap());
    assert_eq!(a.config.digest, b.config.digest);
    assert_eq!(a.layers.len(), b.layers.len());
    assert!(dst.get_manifest(&loaded[0].1).is_ok());
    assert_eq!(dst.du().unwrap().reclaimable_bytes(), 0);
}
