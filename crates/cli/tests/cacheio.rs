//! `--cache-to` / `--cache-from` between two machines (two fresh stores and
//! config dirs) through the registry fixture and OCI layout directories:
//! a fresh machine with the cache executes no RUN step and makes the same
//! image digests; one changed file re-runs only what depends on it;
//! `mode=min` vs `mode=max`; the exported cache as skopeo and
//! `imagetools inspect` read it; unusable caches and deleted blobs are
//! warnings and a colder build.

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::*;

const THREE: &str = "linux/amd64,linux/arm64,linux/riscv64";

/// An intermediate stage whose RUN reads a.txt, a final stage that copies
/// b.txt and the intermediate's output, then RUNs.
const DOCKERFILE: &str = "FROM busybox AS build
COPY a.txt /a.txt
RUN echo built-$(uname -m) > /out && cat /a.txt >> /out
FROM busybox
COPY b.txt /b.txt
COPY --from=build /out /out
RUN cat /out /b.txt > /final
";

/// The QEMU handlers the foreign platforms of [`THREE`] need.
fn handlers() -> bool {
    ["aarch64", "riscv64"].iter().all(|a| {
        let p = format!("/proc/sys/fs/binfmt_misc/qemu-{a}");
        let ok = std::fs::read_to_string(&p).is_ok_and(|s| s.starts_with("enabled"));
        require(ok, &format!("{p} (apt-get install qemu-user-static)"))
    })
}

/// A fresh machine: its own store and config, docker.io mirrored to `reg`.
fn machine(reg: &Registry) -> Env {
    let env = Env::new();
    std::fs::write(env.config_file(), format!("[registry.\"docker.io\"]\nmirrors = [\"{}\"]\n", reg.host)).unwrap();
    env
}

fn project(env: &Env, b: &str) -> std::path::PathBuf {
    context(env, "ctx", &[("Dockerfile", DOCKERFILE), ("a.txt", "A\n"), ("b.txt", b)])
}

/// `build --progress plain` with SOURCE_DATE_EPOCH; returns stderr.
fn build(env: &Env, args: &[&str]) -> String {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    let out = env.cmd(&full).env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "polyarch {full:?} failed:\n{stderr}");
    stderr
}

/// The RUN steps of a plain progress log that executed (their vertex never
/// said CACHED), as `[platform stage i/n] RUN ...` names.
fn runs_executed(stderr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut cached = BTreeSet::new();
    for l in stderr.lines() {
        let Some((id, rest)) = l.strip_prefix('#').and_then(|l| l.split_once(' ')) else { continue };
        if rest == "CACHED" {
            cached.insert(id.to_string());
        } else if rest.starts_with('[') && rest.contains("] RUN ") {
            names.push((id.to_string(), rest.to_string()));
        }
    }
    names.sort();
    names.dedup();
    names.into_iter().filter(|(id, _)| !cached.contains(id)).map(|(_, n)| n).collect()
}

/// `containerimage.digest` and each platform's digest from a metadata file.
fn digests(path: &Path) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::json!({ "index": m["containerimage.digest"], "platforms": m["polyarch.platforms"] })
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("WARNING: ")).collect()
}

#[test]
fn a_fresh_machine_with_a_registry_cache_runs_nothing_and_makes_the_same_images() {
    let Some(reg) = shared_registry() else { return };
    if !runc_prerequisites() || !handlers() {
        return;
    }
    let a = machine(reg);
    let cache = format!("{}/cacheio/app:cache", reg.host);
    let ctx = project(&a, "B\n");
    let meta_a = a.dir.path().join("meta.json");
    let err = build(
        &a,
        &[
            "--platform",
            THREE,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "-o",
            &format!("type=image,name={}/cacheio/app:a,push=true", reg.host),
            "--metadata-file",
            s(&meta_a),
            s(&ctx),
        ],
    );
    assert_eq!(runs_executed(&err).len(), 6, "A runs every RUN of three platforms:\n{err}");
    assert!(err.contains("exporting cache to registry"), "{err}");

    let b = machine(reg);
    let ctx = project(&b, "B\n");
    let meta_b = b.dir.path().join("meta.json");
    let err = build(
        &b,
        &[
            "--platform",
            THREE,
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "-o",
            &format!("type=image,name={}/cacheio/app:b,push=true", reg.host),
            "--metadata-file",
            s(&meta_b),
            s(&ctx),
        ],
    );
    assert_eq!(runs_executed(&err), Vec::<String>::new(), "B executes no RUN step:\n{err}");
    assert_eq!(counts(&err), (0, 15), "{err}");
    assert!(err.contains(&format!("importing cache manifest from {cache}")), "{err}");
    assert!(warnings(&err).is_empty(), "{err}");
    assert_eq!(digests(&meta_a), digests(&meta_b), "the same image digests on both machines");
    assert_eq!(
        api::digest(reg, "cacheio/app", "a"),
        api::digest(reg, "cacheio/app", "b"),
        "the registry holds one index under both tags"
    );

    // A changed b.txt: the intermediate stage stays cached, the final
    // stage's steps from COPY b.txt on run again.
    let c = machine(reg);
    let ctx = project(&c, "changed\n");
    let err = build(&c, &["--platform", THREE, "--cache-from", &cache, s(&ctx)]);
    let ran = runs_executed(&err);
    assert_eq!(ran.len(), 3, "{err}");
    assert!(ran.iter().all(|r| r.contains("stage-1 4/4] RUN cat /out /b.txt")), "{ran:?}");
    assert_eq!(counts(&err), (9, 6), "{err}");
}

#[test]
fn a_local_cache_directory_serves_a_fresh_machine() {
    let Some(reg) = shared_registry() else { return };
    if !runc_prerequisites() || !handlers() {
        return;
    }
    let a = machine(reg);
    let ctx = project(&a, "B\n");
    let dir = a.dir.path().join("cache");
    let meta_a = a.dir.path().join("meta.json");
    let to = format!("type=local,dest={},mode=max", dir.display());
    let err = build(&a, &["--platform", THREE, "--cache-to", &to, "--metadata-file", s(&meta_a), s(&ctx)]);
    assert!(err.contains("exporting cache to client directory"), "{err}");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "latest");
    assert!(dir.join("oci-layout").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(a.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cache"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let b = machine(reg);
    let ctx = project(&b, "B\n");
    let meta_b = b.dir.path().join("meta.json");
    let from = format!("type=local,src={}", dir.display());
    let err = build(&b, &["--platform", THREE, "--cache-from", &from, "--metadata-file", s(&meta_b), s(&ctx)]);
    assert_eq!(runs_executed(&err), Vec::<String>::new(), "{err}");
    assert_eq!(counts(&err), (0, 15), "{err}");
    assert_eq!(digests(&meta_a), digests(&meta_b));
    // Exporting again replaces the directory as a whole.
    build(&b, &["--platform", THREE, "--cache-from", &from, "--cache-to", &to, s(&ctx)]);
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(again["manifests"].as_array().unwrap().len(), 1);
}

#[test]
fn mode_min_leaves_the_intermediate_stage_out_and_max_keeps_it() {
    let Some(reg) = shared_registry() else { return };
    if !runc_prerequisites() || !handlers() {
        return;
    }
    let two = "linux/amd64,linux/arm64";
    let a = machine(reg);
    let ctx = project(&a, "B\n");
    let min = format!("{}/cacheio/modes:min", reg.host);
    let max = format!("{}/cacheio/modes:max", reg.host);
    let to_min = format!("type=registry,ref={min}");
    let to_max = format!("type=registry,ref={max},mode=max");
    build(&a, &["--platform", two, "--cache-to", &to_min, "--cache-to", &to_max, s(&ctx)]);

    let b = machine(reg);
    let ctx = project(&b, "B\n");
    let err = build(&b, &["--platform", two, "--cache-from", &min, s(&ctx)]);
    let ran = runs_executed(&err);
    assert_eq!(ran.len(), 2, "with min the intermediate RUN runs again on both platforms: {err}");
    assert!(ran.iter().all(|r| r.contains("build 3/3] RUN echo built")), "{ran:?}");

    let c = machine(reg);
    let ctx = project(&c, "B\n");
    let err = build(&c, &["--platform", two, "--cache-from", &max, s(&ctx)]);
    assert_eq!(runs_executed(&err), Vec::<String>::new(), "with max nothing runs: {err}");
}

#[test]
fn the_exported_cache_reads_with_skopeo_and_imagetools() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY a.txt /a\nCOPY b.txt /b\n"), ("a.txt", "a"), ("b.txt", "b")],
    );
    let index_ref = format!("{}/cacheio/inspect:index", reg.host);
    let image_ref = format!("{}/cacheio/inspect:image", reg.host);
    let to_index = format!("type=registry,ref={index_ref}");
    let to_image = format!("type=registry,ref={image_ref},image-manifest=true");
    build(&env, &["--cache-to", &to_index, "--cache-to", &to_image, s(&ctx)]);

    let raw = skopeo_raw(&index_ref);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "two layers and the config: {index}");
    assert_eq!(entries[2]["mediaType"], "application/vnd.buildkit.cacheconfig.v0");
    let shown = env.ok(&["imagetools", "inspect", "--insecure", &index_ref]);
    assert!(shown.contains("application/vnd.buildkit.cacheconfig.v0"), "{shown}");
    assert!(shown.contains(&sha256_hex(&raw)), "{shown}");
    let again = env.ok(&["imagetools", "inspect", "--insecure", "--raw", &index_ref]);
    assert_eq!(again.trim_end().as_bytes(), &raw[..]);

    let raw = skopeo_raw(&image_ref);
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["config"]["mediaType"], "application/vnd.buildkit.cacheconfig.v0");
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
    let (status, config) =
        api::get(reg, "GET", &format!("cacheio/inspect/blobs/{}", m["config"]["digest"].as_str().unwrap()));
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["polyarch.cache.v1"]["records"].as_array().unwrap().len(), 2, "{config}");
    // The layers are the image's: the cache config names them by digest.
    let shown = env.ok(&["imagetools", "inspect", "--insecure", &image_ref]);
    assert!(shown.contains(&sha256_hex(&raw)), "{shown}");
}

#[test]
fn a_deleted_cache_blob_is_a_warning_and_the_step_is_built() {
    if !require(have("docker-registry"), "docker-registry") {
        return;
    }
    let Some(reg) = Registry::start(&["--delete"]) else { return };
    let a = Env::new();
    let files = [("Dockerfile", "FROM scratch\nCOPY a.txt /a\nCOPY b.txt /b\n"), ("a.txt", "a"), ("b.txt", "b")];
    let ctx = context(&a, "ctx", &files);
    let cache = format!("{}/cacheio/gone:cache", reg.host);
    build(&a, &["--cache-to", &format!("type=registry,ref={cache}"), s(&ctx)]);
    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(&cache)).unwrap();
    let first = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let (status, _) = api::get(&reg, "DELETE", &format!("cacheio/gone/blobs/{first}"));
    assert_eq!(status, 202, "the registry deletes the blob");

    let b = Env::new();
    let ctx = context(&b, "ctx", &files);
    let err = build(&b, &["--cache-from", &cache, s(&ctx)]);
    let w = warnings(&err);
    assert_eq!(w.len(), 1, "{err}");
    assert!(w[0].contains(&first) && w[0].contains(&cache) && w[0].contains("the step is built"), "{}", w[0]);
    assert_eq!(counts(&err), (1, 1), "the step whose blob is gone is built, the next one is cached: {err}");
}

#[test]
fn unusable_caches_are_warnings_and_a_cold_build() {
    let Some((env, reg)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY a.txt /a\n"), ("a.txt", "a")]);
    // A layout whose config is BuildKit's own format, one of a later
    // version, one that is no layout at all.
    let layout = |name: &str, config: &[u8]| -> String {
        let dir = env.dir.path().join(name);
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let hex = |b: &[u8]| sha256_hex(b).trim_start_matches("sha256:").to_string();
        std::fs::write(blobs.join(hex(config)), config).unwrap();
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": sha256_hex(config), "size": config.len()}]});
        let index = serde_json::to_vec(&index).unwrap();
        std::fs::write(blobs.join(hex(&index)), &index).unwrap();
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha256_hex(&index), "size": index.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        format!("type=local,src={}", dir.display())
    };
    let buildkit = layout(
        "bk",
        br#"{"layers":[{"blob":"sha256:aa","parent":-1}],"records":[{"digest":"sha256:bb","layers":[{"layer":0}]}]}"#,
    );
    let later = layout("v9", br#"{"polyarch.cache.v9":{}}"#);
    let missing = format!("{}/cacheio/never:pushed", reg.host);
    let nowhere = format!("type=local,src={}", env.dir.path().join("nowhere").display());
    let plain_image = busybox(reg);
    let err = build(
        &env,
        &[
            "--cache-from",
            &buildkit,
            "--cache-from",
            &later,
            "--cache-from",
            &missing,
            "--cache-from",
            &nowhere,
            "--cache-from",
            &plain_image,
            s(&ctx),
        ],
    );
    let w = warnings(&err);
    assert_eq!(w.len(), 5, "{err}");
    assert!(w[0].contains("another tool") && w[0].contains("bk"), "{}", w[0]);
    assert!(w[1].contains("polyarch.cache.v9"), "{}", w[1]);
    assert!(w[2].contains(&missing) && w[2].contains("MANIFEST_UNKNOWN"), "{}", w[2]);
    assert!(w[3].contains("nowhere/index.json"), "{}", w[3]);
    assert!(w[4].contains("neither a cache nor an image with an inline cache"), "{}", w[4]);
    assert_eq!(counts(&err), (1, 0), "a cold build: {err}");
}

#[test]
fn an_inline_cache_travels_in_the_image_config() {
    let Some(reg) = shared_registry() else { return };
    if !runc_prerequisites() {
        return;
    }
    let a = machine(reg);
    let ctx = project(&a, "B\n");
    let image = format!("{}/cacheio/inline:1", reg.host);
    build(&a, &["--cache-to", "type=inline", "-t", &image, "--push", s(&ctx)]);
    let m: serde_json::Value = serde_json::from_slice(&skopeo_raw(&image)).unwrap();
    let (_, config) =
        api::get(reg, "GET", &format!("cacheio/inline/blobs/{}", m["config"]["digest"].as_str().unwrap()));
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert!(config["moby.buildkit.cache.v0"].is_string(), "{config}");

    let b = machine(reg);
    let ctx = project(&b, "B\n");
    let err = build(&b, &["--cache-from", &image, s(&ctx)]);
    // Inline is min: the intermediate stage runs, the final stage is cached.
    let ran = runs_executed(&err);
    assert_eq!(ran.len(), 1, "{err}");
    assert!(ran[0].contains("build 3/3] RUN echo built"), "{ran:?}");
    assert_eq!(counts(&err), (2, 3), "{err}");

    // BUILDKIT_INLINE_CACHE=1 is BuildKit's spelling of the same export.
    let c = machine(reg);
    let ctx = project(&c, "B\n");
    let image = format!("{}/cacheio/inline-arg:1", reg.host);
    build(&c, &["--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", &image, "--push", s(&ctx)]);
    let m: serde_json::Value = serde_json::from_slice(&skopeo_raw(&image)).unwrap();
    let (_, config) =
        api::get(reg, "GET", &format!("cacheio/inline-arg/blobs/{}", m["config"]["digest"].as_str().unwrap()));
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert!(config["moby.buildkit.cache.v0"].is_string(), "{config}");
}

#[test]
fn bad_cache_specs_fail_before_anything_is_built() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY a.txt /a\n"), ("a.txt", "a")]);
    let err = env.fails(&["build", "--cache-to", "type=registry,ref=localhost:5000/a:c,mode=medium", s(&ctx)]);
    assert!(err.contains("invalid --cache-to") && err.contains("\"medium\"") && err.contains("mode"), "{err}");
    let err = env.fails(&["build", "--cache-from", "type=local,dest=/x", s(&ctx)]);
    assert!(err.contains("invalid --cache-from") && err.contains("unknown key \"dest\""), "{err}");
    let err = env.fails(&["build", "--cache-to", "type=s3,bucket=b", s(&ctx)]);
    assert!(err.contains("\"s3\" is not supported"), "{err}");
    assert!(!env.root().join("build-cache").exists(), "nothing was built");
}

#[test]
fn a_failed_export_fails_the_build_unless_ignore_error() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY a.txt /a\n"), ("a.txt", "a")]);
    let nowhere = format!("127.0.0.1:{}/cacheio/nowhere:c", free_port());
    let err = env.fails(&["build", "--cache-to", &format!("type=registry,ref={nowhere}"), s(&ctx)]);
    assert!(err.contains(&format!("exporting cache to {nowhere}")), "{err}");
    let to = format!("type=registry,ref={nowhere},ignore-error=true");
    let err = build(&env, &["--cache-to", &to, s(&ctx)]);
    let w = warnings(&err);
    assert_eq!(w.len(), 1, "{err}");
    assert!(w[0].starts_with(&format!("WARNING: failed to export cache to {nowhere}")), "{}", w[0]);
    let dir = env.dir.path().join("readonly");
    std::fs::write(&dir, "a file, not a directory").unwrap();
    let err = env.fails(&["build", "--cache-to", &format!("type=local,dest={}/cache", dir.display()), s(&ctx)]);
    assert!(err.contains("exporting cache to") && err.contains("readonly"), "{err}");
}
