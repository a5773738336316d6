//! The store on real images: the busybox layout the shared fixture script
//! builds from Debian packages (gzip layers, an index over platforms, names
//! written by another tool).
//!
//! Needs root (the script installs with apt). Under `CI=true` a missing
//! prerequisite fails the test; elsewhere it is skipped with a reason.

use std::path::PathBuf;
use std::process::Command;

use polyarch_store::Store;

fn prerequisite(ok: bool, what: &str) -> bool {
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true");
        }
        println!("skipping: {what} is missing");
    }
    ok
}

fn script() -> PathBuf {
    match std::env::var_os("POLYARCH_FIXTURES") {
        Some(p) => PathBuf::from(p).join("base-images.py"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/base-images.py"),
    }
}

#[test]
fn real_busybox_layout() {
    if !prerequisite(script().exists(), "shared/fixtures/base-images.py")
        || !prerequisite(rustix::process::geteuid().is_root(), "root (for apt-get in the fixture script)")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(script())
        .args(["--oci-layout", &work.path().display().to_string(), "--platforms", "linux/amd64,linux/arm64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "fixture script failed: {}", String::from_utf8_lossy(&out.stderr));

    // A layout written by another tool opens as a store as it is.
    let s = Store::open(work.path().join("busybox")).unwrap();
    let names: Vec<String> = s.list().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["latest", "latest-amd64", "latest-arm64"]);
    assert_eq!(s.referenced_blobs().unwrap().len(), 1 + 2 * 3);
    assert_eq!(s.du().unwrap().reclaimable_bytes(), 0);
    assert!(s.prune().unwrap().removed.is_empty());
    let index = s.resolve("latest").unwrap().unwrap();
    s.tag("docker.io/library/busybox:latest", &index).unwrap();

    // OCI archive round trip into a fresh store.
    let mut tar_bytes = Vec::new();
    s.export_oci_archive(&["docker.io/library/busybox:latest"], &mut tar_bytes).unwrap();
    let dst = Store::open(work.path().join("dst")).unwrap();
    let loaded = dst.import_archive(&tar_bytes[..]).unwrap();
    assert_eq!(loaded[0].0, "docker.io/library/busybox:latest");
    assert_eq!(loaded[0].1.digest, index.digest);
    assert_eq!(dst.referenced_blobs().unwrap().len(), 7);

    // One platform as a docker archive, read back by skopeo and by us.
    let arm = s.resolve("latest-arm64").unwrap().unwrap();
    let docker_tar = work.path().join("arm64.tar");
    let entries = vec![("docker.io/library/busybox:arm64".to_string(), arm.clone())];
    s.export_docker_archive(&entries, std::fs::File::create(&docker_tar).unwrap()).unwrap();
    let loaded = dst.import_archive(std::fs::File::open(&docker_tar).unwrap()).unwrap();
    assert_eq!(loaded[0].1.digest, arm.digest);
    if which("skopeo") {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("docker-archive:{}", docker_tar.display())])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Architecture"], "arm64");
    }
    // The other tool's names still work for it.
    if which("skopeo") {
        let target = format!("oci:{}:latest-amd64", s.root().display());
        let out = Command::new("skopeo").args(["inspect", &target]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn which(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}
