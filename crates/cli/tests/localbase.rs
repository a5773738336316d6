//! Builds that name images of the local store (`FROM`, `COPY --from`,
//! `RUN --mount=from`), as `docker build` uses the engine's images: a
//! stored image with the platform is used with no registry asked, each
//! platform takes its own child, `--pull` asks the registry, and a name
//! neither place has fails with one error that says both. These need root,
//! runc and the registry fixture; the multi-platform one also an aarch64
//! binfmt_misc handler.

use crate::foreign::{aarch64_handler, run};
use crate::util::{build_ok, context, mirrored_for_run, s, Env};

/// A registry address nothing listens on: any request to it fails.
const NOWHERE: &str = "127.0.0.1:1";

/// `polyarch build --progress plain ARGS`, asserting failure; returns stderr.
fn build_fails(env: &Env, args: &[&str]) -> String {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    env.fails(&full)
}

/// `polyarch run --pull never IMAGE cat PATH`, asserting success.
fn cat(env: &Env, args: &[&str], path: &str) -> String {
    let mut all = vec!["--pull", "never"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["cat", path]);
    let (code, out, err) = run(env, &all);
    assert_eq!(code, 0, "run {args:?} cat {path}: {err}");
    out
}

#[test]
fn from_copy_from_and_mount_from_a_stored_image() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let base = format!("{NOWHERE}/local/base:1");
    let ctx = context(&env, "base", &[("Dockerfile", "FROM busybox\nRUN echo stored > /base.txt\n")]);
    build_ok(&env, &["-t", &base, "-t", "mybase", s(&ctx)]);
    // A short name is normalised as the build's -t stored it.
    let short = context(&env, "short", &[("Dockerfile", "FROM mybase\nRUN cp /base.txt /short.txt\n")]);
    build_ok(&env, &["-t", "short:1", s(&short)]);
    assert_eq!(cat(&env, &["short:1"], "/short.txt"), "stored\n");
    let df = format!(
        "FROM {base}\nCOPY --from={base} /base.txt /copied.txt\n\
         RUN --mount=from={base},target=/m cat /m/base.txt > /mounted.txt\n"
    );
    let ctx = context(&env, "child", &[("Dockerfile", &df)]);
    let (_, stderr) = build_ok(&env, &["-t", "child:1", s(&ctx)]);
    assert!(stderr.contains(&format!("load metadata for {base}")), "{stderr}");
    for f in ["/base.txt", "/copied.txt", "/mounted.txt"] {
        assert_eq!(cat(&env, &["child:1"], f), "stored\n", "{f}");
    }
    // --pull asks the registry, which is not there.
    let err = build_fails(&env, &["--pull", "-t", "child:2", s(&ctx)]);
    assert!(err.contains(&format!("failed to resolve source metadata for {base}")), "{err}");
    assert!(!err.contains("local store"), "--pull does not look in the store: {err}");
    crate::util::assert_clean_root(&env.root());
}

#[test]
fn each_platform_takes_its_own_child_of_a_stored_index() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    let base = format!("{NOWHERE}/local/multi:1");
    let ctx = context(&env, "base", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch\n")]);
    build_ok(&env, &["--platform", "linux/amd64,linux/arm64", "-t", &base, s(&ctx)]);
    let df =
        format!("FROM busybox\nCOPY --from={base} /arch /from-base\nFROM {base}\nCOPY --from=0 /from-base /copied\n");
    let ctx = context(&env, "child", &[("Dockerfile", &df)]);
    build_ok(&env, &["--platform", "linux/amd64,linux/arm64", "-t", "child:1", s(&ctx)]);
    for (platform, machine) in [("linux/amd64", "x86_64\n"), ("linux/arm64", "aarch64\n")] {
        assert_eq!(cat(&env, &["--platform", platform, "child:1"], "/arch"), machine, "{platform}");
        assert_eq!(cat(&env, &["--platform", platform, "child:1"], "/copied"), machine, "{platform}");
    }
    // A platform the stored index lacks: the registry is asked, and the
    // one error says what each place answered.
    let err = build_fails(&env, &["--platform", "linux/s390x", "-t", "child:2", s(&ctx)]);
    assert!(err.contains(&format!("{base} for linux/s390x is not in the local store")), "{err}");
    assert!(err.contains("it is stored for linux/amd64, linux/arm64"), "{err}");
    assert!(err.contains("the registry answered") && err.contains(NOWHERE), "{err}");
    crate::util::assert_clean_root(&env.root());
}

#[test]
fn pull_prefers_the_registry_and_unknown_names_fail_with_both_answers() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    // The store has its own image under the registry's busybox name.
    let name = format!("{}/library/busybox:latest", reg.host);
    let ctx = context(&env, "shadow", &[("Dockerfile", &format!("FROM {name}\nRUN echo local > /which\n"))]);
    build_ok(&env, &["-t", &name, s(&ctx)]);
    let df = format!("FROM {name}\nRUN (test -e /which && cat /which || echo registry) > /seen\n");
    let ctx = context(&env, "child", &[("Dockerfile", &df)]);
    build_ok(&env, &["-t", "child:local", s(&ctx)]);
    assert_eq!(cat(&env, &["child:local"], "/seen"), "local\n");
    // `--pull` takes no separate value: the context after it stays the context.
    build_ok(&env, &["-t", "child:pulled", "--pull", s(&ctx)]);
    assert_eq!(cat(&env, &["child:pulled"], "/seen"), "registry\n");
    build_ok(&env, &["--pull=false", "-t", "child:again", s(&ctx)]);
    assert_eq!(cat(&env, &["child:again"], "/seen"), "local\n");

    let missing = format!("{}/library/nosuch:1", reg.host);
    let ctx = context(&env, "missing", &[("Dockerfile", &format!("FROM scratch\nCOPY --from={missing} /x /x\n"))]);
    let err = build_fails(&env, &[s(&ctx)]);
    let host = polyarch_oci::Platform::host().format();
    let wanted = format!("{missing} for {host} is not in the local store (no image of that name)");
    assert!(err.contains(&wanted), "{err}");
    assert!(err.contains("the registry answered") && err.contains("manifest unknown"), "{err}");
    assert!(err.contains("Dockerfile:2"), "the error names the line: {err}");
    crate::util::assert_clean_root(&env.root());
}
