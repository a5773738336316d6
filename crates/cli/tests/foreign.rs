//! `polyarch run` of images that exist only for foreign platforms (built
//! here for linux/arm64 only, or pulled for it), and of index children by
//! digest, from the store and from the registry. These need root, runc, the
//! registry fixture and an aarch64 binfmt_misc handler; under `CI=true` a
//! missing one fails.

use std::path::Path;

use polyarch_oci::{Descriptor, Platform};
use polyarch_store::Store;

use crate::util::{build_ok, busybox, context, mirrored_for_run, require, s, shared_registry, Env};

/// The aarch64 QEMU handler is registered and enabled.
pub fn aarch64_handler() -> bool {
    let p = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let ok = std::fs::read_to_string(p).is_ok_and(|s| s.starts_with("enabled"));
    require(ok, &format!("{} (apt-get install qemu-user-static)", p.display()))
}

/// `polyarch run ARGS`, returning (exit code, stdout, stderr).
pub fn run(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `stderr` has Docker's warning for an image of `arch` (any variant) run
/// on a host of another platform.
fn warned(stderr: &str, arch: &str) -> bool {
    let tail = format!(
        ") does not match the detected host platform ({}) and no specific platform was requested",
        Platform::host().format()
    );
    stderr.lines().any(|l| {
        l.strip_prefix("WARNING: The requested image's platform (")
            .and_then(|rest| rest.strip_suffix(&tail))
            .is_some_and(|p| p == arch || p.starts_with(&format!("{arch}/")))
    })
}

/// The child of the index `name` in the store for `platform`.
pub fn stored_child(env: &Env, name: &str, platform: &str) -> Descriptor {
    let store = Store::open(env.root()).unwrap();
    let top = store.resolve(name).unwrap().unwrap_or_else(|| panic!("{name} is not stored"));
    let index = store.get_manifest(&top).unwrap();
    let children = index.as_index().unwrap_or_else(|| panic!("{name} is not an index")).manifests.clone();
    let want = Platform::parse(platform).unwrap().only();
    children
        .into_iter()
        .find(|d| !d.is_attestation() && d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .unwrap_or_else(|| panic!("{name} has no {platform} child"))
}

#[test]
fn run_an_image_built_only_for_arm64_without_platform() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN uname -m > /built-on\nCMD [\"cat\", \"/built-on\"]\n")],
    );
    build_ok(&env, &["--platform", "linux/arm64", "-t", "armonly:1", s(&ctx)]);
    let (code, out, err) = run(&env, &["--rm", "armonly:1", "uname", "-m"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "{err}");
    assert!(warned(&err, "linux/arm64"), "{err}");
    assert!(!err.contains("Unable to find image"), "the stored image runs: {err}");
    let (code, out, err) = run(&env, &["armonly:1"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "the image's CMD: {err}");
    // Asked for by platform: no warning; asked for another: not stored,
    // and with --pull never nothing else is tried.
    let (code, out, err) = run(&env, &["--platform", "linux/arm64", "armonly:1", "uname", "-m"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "{err}");
    assert!(!err.contains("WARNING"), "{err}");
    let (code, _, err) = run(&env, &["--pull", "never", "--platform", "linux/s390x", "armonly:1", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such image for linux/s390x: armonly:1"), "{err}");
    crate::util::assert_no_mounts_or_containers(&env.root());
}

#[test]
fn run_a_pulled_arm64_only_image_without_platform() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    let img = busybox(reg);
    env.ok(&["pull", "-q", "--platform", "linux/arm64", &img]);
    let (code, out, err) = run(&env, &["--pull", "never", &img, "uname", "-m"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "{err}");
    assert!(warned(&err, "linux/arm64"), "{err}");
    // The per-platform tag is a single arm64 manifest in the registry:
    // pulled for the host, it is kept and run as it is.
    let single = format!("{}/library/busybox:latest-arm64", reg.host);
    let (code, out, err) = run(&env, &[&single, "uname", "-m"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "{err}");
    assert!(err.contains("Unable to find image") && warned(&err, "linux/arm64"), "{err}");
    crate::util::assert_no_mounts_or_containers(&env.root());
}

#[test]
fn run_an_index_child_by_digest() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    let reg = shared_registry().unwrap();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN echo built > /built\n")]);
    build_ok(&env, &["--platform", "linux/amd64,linux/arm64", "-t", "duo:1", s(&ctx)]);
    let child = stored_child(&env, "docker.io/library/duo:1", "linux/arm64");
    // A child of a stored index, which no name points at: run from the store.
    let by_digest = format!("duo@{}", child.digest);
    let (code, out, err) = run(&env, &["--pull", "never", &by_digest, "sh", "-c", "uname -m; cat /built"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\nbuilt\n"), "{err}");
    assert!(warned(&err, "linux/arm64"), "{err}");
    // A child in the registry only: pulled by digest and run.
    let other = Env::new();
    other.ok(&["pull", "-q", "--platform", "linux/amd64", &busybox(reg)]);
    let remote_child = stored_child(&other, &busybox(reg), "linux/arm64");
    let fresh = Env::new();
    let reference = format!("{}/library/busybox@{}", reg.host, remote_child.digest);
    let (code, out, err) = run(&fresh, &[&reference, "uname", "-m"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "{err}");
    assert!(err.contains("Unable to find image") && err.contains(&remote_child.digest.to_string()), "{err}");
    let (code, out, err) = run(&fresh, &["--pull", "never", &reference, "uname", "-m"]);
    assert_eq!((code, out.as_str()), (0, "aarch64\n"), "the pulled child is stored: {err}");
    // A digest that is the wrong platform's, asked for by platform, fails.
    let (code, _, err) = run(&fresh, &["--platform", "linux/s390x", &reference, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("linux/s390x"), "{err}");
    for e in [&env, &other, &fresh] {
        crate::util::assert_no_mounts_or_containers(&e.root());
    }
}
