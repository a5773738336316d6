//! RUN steps in `polyarch build` against the real registry (busybox
//! through a docker.io mirror): files, whiteouts, environment, users,
//! here-documents, networks, secrets, cache and bind mounts, failures,
//! the cache, foreign platforms through binfmt, and a differential build
//! with buildah. Every test checks that no mount and no container is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::image::{buildah_build, buildah_prerequisites, skopeo_config, tree, tree_diffs, umoci_unpack};
use crate::util::*;

fn build(env: &Env, args: &[&str]) -> String {
    let (_, stderr) = build_ok(env, args);
    assert_clean_root(&env.root());
    stderr
}

/// Builds `ctx` into a new local directory and returns it with stderr.
fn build_local(env: &Env, ctx: &Path, extra: &[&str]) -> (PathBuf, String) {
    let dest = tempfile::Builder::new().prefix("out-").tempdir_in(env.dir.path()).unwrap().keep();
    let spec = format!("type=local,dest={}", dest.display());
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(extra);
    args.push(s(ctx));
    let err = build(env, &args);
    (dest, err)
}

fn read(dir: &Path, p: &str) -> String {
    std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => panic!("unexpected host {other}"),
    }
}

#[test]
fn run_writes_files_and_whiteouts() {
    let mut entries = Vec::new();
    for snapshotter in ["overlay", "naive"] {
        let Some((env, _)) = mirrored_for_run() else { return };
        entries.push(files_and_whiteouts(&env, snapshotter));
        let unpacked = env.root().join("snapshots/overlay/metadata");
        assert_eq!(unpacked.exists(), snapshotter == "overlay", "{snapshotter}: layers unpacked for overlay only");
    }
    assert_eq!(entries[0], entries[1], "both snapshotters give the same layer entries");
}

#[test]
fn run_steps_get_dockers_seccomp_restrictions() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN unshare -U true 2>/err; echo \"rc=$?\" > /unshare; cat /err >> /unshare; \
              (echo threads; sleep 0 & wait) > /ok\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let (out, _) = build_local(&env, &ctx, &[]);
    let got = read(&out, "unshare");
    assert!(got.starts_with("rc=1\n") && got.contains("Operation not permitted"), "{got}");
    assert_eq!(read(&out, "ok"), "threads\n");
}

#[test]
fn prune_removes_unpacked_layers_and_run_snapshots_no_image_uses() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN echo a > /a\nRUN echo b > /b\n")]);
    build(&env, &["-t", "prune/me:1", s(&ctx)]);
    // The committed snapshots: the one cache of unpacked layers, which
    // builds and `polyarch run` share.
    let layers = || -> Vec<String> {
        let mut v: Vec<String> = ["overlay", "naive"]
            .iter()
            .flat_map(|k| files(&env.root().join("snapshots").join(k).join("metadata")))
            .filter_map(|f| serde_json::from_slice::<serde_json::Value>(&std::fs::read(f).ok()?).ok())
            .filter(|v| v["kind"] == "committed")
            .filter_map(|v| v["key"].as_str().map(String::from))
            .collect();
        v.sort();
        v
    };
    let built = layers();
    assert!(built.len() >= 2, "the base layer and the first RUN layer are unpacked: {built:?}");
    assert_eq!(env.ok(&["run", "--rm", "prune/me:1", "cat", "/a", "/b"]), "a\nb\n");
    let before = layers();
    assert_eq!(before.len(), 3, "polyarch run used the build's layers and unpacked the last one: {before:?}");
    assert!(built.iter().all(|l| before.contains(l)), "{built:?} {before:?}");
    let du: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--format", "json"])).unwrap();
    assert_eq!(du["UnpackedLayers"], 3, "{du}");
    assert_eq!(du["UnpackedReclaimableBytes"], 0, "{du}");
    let out = env.ok(&["prune"]);
    assert_eq!(layers(), before, "a tagged image keeps its unpacked layers: {out}");
    env.ok(&["rmi", "prune/me:1"]);
    let du: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--format", "json"])).unwrap();
    assert_eq!(du["UnpackedBytes"], du["UnpackedReclaimableBytes"], "{du}");
    let out = env.ok(&["prune"]);
    assert!(out.contains("Deleted unpacked layers: 3"), "{out}");
    assert!(layers().is_empty(), "{:?}", layers());
    let du: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--format", "json"])).unwrap();
    assert_eq!((du["UnpackedLayers"].as_u64(), du["UnpackedBytes"].as_u64()), (Some(0), Some(0)), "{du}");
}

#[test]
fn hard_links_made_by_run_stay_hard_links() {
    for snapshotter in ["overlay", "naive"] {
        let Some((env, _)) = mirrored_for_run() else { return };
        let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN echo hi > /a && ln /a /b\n")]);
        let oci = env.dir.path().join("img.tar");
        build(&env, &["--snapshotter", snapshotter, "-o", &format!("type=oci,dest={}", oci.display()), s(&ctx)]);
        let last = layer_blobs(&oci).pop().unwrap();
        let f = env.dir.path().join("layer.tar");
        std::fs::write(&f, last).unwrap();
        let listing = sh(Command::new("tar").arg("-tvf").arg(&f));
        let lines: Vec<&str> = listing.lines().collect();
        assert!(lines.iter().any(|l| l.starts_with('-') && l.ends_with(" a")), "{snapshotter}: {listing}");
        assert!(lines.iter().any(|l| l.starts_with('h') && l.ends_with(" b link to a")), "{snapshotter}: {listing}");
    }
}

/// Builds with `snapshotter`; returns the entry names of the RUN layers.
fn files_and_whiteouts(env: &Env, snapshotter: &str) -> Vec<Vec<String>> {
    let df = "FROM busybox\nRUN echo hi > /hi && uname -m > /arch && mkdir -p /gone/sub && echo z > /gone/sub/z\nRUN rm /bin/ls && mkdir -p /d/e && echo x > /d/e/f && rm -r /gone\n";
    let ctx = context(env, "ctx", &[("Dockerfile", df)]);
    let (out, err) = build_local(env, &ctx, &["--snapshotter", snapshotter]);
    assert_eq!(read(&out, "hi"), "hi\n");
    assert_eq!(read(&out, "arch").trim(), host_arch());
    assert_eq!(read(&out, "d/e/f"), "x\n");
    assert!(!out.join("bin/ls").exists(), "ls removed");
    assert!(!out.join("gone").exists(), "gone removed");
    assert!(out.join("bin/sh").exists());
    assert_eq!(counts(&err).0, 2, "{err}");

    // The second layer holds whiteouts for bin/ls and gone, not its content.
    let oci = env.dir.path().join("img.tar");
    build(env, &["--snapshotter", snapshotter, "-o", &format!("type=oci,dest={}", oci.display()), s(&ctx)]);
    let layers = layer_entries(&oci);
    let run_layers = layers[layers.len() - 2..].to_vec();
    assert!(run_layers[1].contains(&"bin/.wh.ls".to_string()), "{run_layers:?}");
    assert!(run_layers[1].contains(&".wh.gone".to_string()), "{run_layers:?}");
    assert!(!run_layers[1].iter().any(|p| p.starts_with("gone/")), "{run_layers:?}");
    assert!(run_layers[0].contains(&"hi".to_string()) && run_layers[0].contains(&"arch".to_string()));
    let stubs =
        |p: &String| p.starts_with("proc") || p.starts_with("sys") || p.starts_with("dev") || p.starts_with("etc");
    assert!(!run_layers.iter().flatten().any(stubs), "{run_layers:?}");
    run_layers
}

/// The entry names of every layer of the image in an OCI archive.
fn layer_entries(archive: &Path) -> Vec<Vec<String>> {
    layer_blobs(archive)
        .iter()
        .map(|tar| {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("layer.tar");
            std::fs::write(&f, tar).unwrap();
            sh(Command::new("tar").arg("-tf").arg(&f)).lines().map(|l| l.trim_end_matches('/').to_string()).collect()
        })
        .collect()
}

/// The uncompressed layer tars of the image in an OCI archive.
fn layer_blobs(archive: &Path) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    sh(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir.path()));
    let path = |d: &str| dir.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let json = |d: &str| serde_json::from_slice::<serde_json::Value>(&std::fs::read(path(d)).unwrap()).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let manifest = json(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let out = Command::new("gzip").arg("-dc").arg(path(l["digest"].as_str().unwrap())).output().unwrap();
            assert!(out.status.success());
            out.stdout
        })
        .collect()
}

#[test]
fn environment_user_workdir_and_heredocs() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = r#"FROM busybox
ARG A=from-arg
ARG SHADOWED=arg
ENV E=from-env SHADOWED=env
RUN echo "$A $E $SHADOWED" > /vars
WORKDIR /work/dir
RUN pwd > here
USER nobody
RUN id -u > /tmp/uid && id -g > /tmp/gid
USER root
RUN echo app:x:1000:1000::/tmp:/bin/sh >> /etc/passwd && echo extra:x:2000:app >> /etc/group
USER app
RUN id -G > /tmp/groups
USER root
RUN <<EOF
echo one > /heredoc
echo two >> /heredoc
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /script
EOF
RUN ["/bin/sh", "-c", "echo exec > /exec"]
RUN cat <<EOF > /catted
a $E
EOF
SHELL ["/bin/sh", "-xc"]
RUN echo shell > /shell
"#;
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let (out, err) = build_local(&env, &ctx, &["--build-arg", "A=cli"]);
    assert_eq!(read(&out, "vars"), "cli from-env env\n");
    assert_eq!(read(&out, "work/dir/here"), "/work/dir\n");
    assert_eq!(read(&out, "tmp/uid"), "65534\n");
    assert_eq!(read(&out, "tmp/gid"), "65534\n");
    assert_eq!(read(&out, "tmp/groups"), "1000 2000\n", "supplementary groups from /etc/group");
    assert_eq!(read(&out, "heredoc"), "one\ntwo\n");
    assert_eq!(read(&out, "script"), "script /dev/pipes/EOF\n");
    assert_eq!(read(&out, "exec"), "exec\n");
    assert_eq!(read(&out, "catted"), "a from-env\n", "a here-document the shell reads");
    assert_eq!(read(&out, "shell"), "shell\n");
    // `sh -x` traces to stderr, which streams as step output.
    assert!(err.lines().any(|l| l.starts_with('#') && l.ends_with("+ echo shell")), "{err}");
}

#[test]
fn network_none_has_only_loopback() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df =
        "FROM busybox\nRUN --network=none cat /proc/net/dev > /none\nRUN --network=host cat /proc/net/dev > /host\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let (out, _) = build_local(&env, &ctx, &[]);
    let ifaces = |t: &str| -> Vec<String> {
        t.lines().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_string()).collect()
    };
    assert_eq!(ifaces(&read(&out, "none")), ["lo"]);
    assert!(ifaces(&read(&out, "host")).len() > 1, "host network sees the host's interfaces");

    // --network none on the command line applies to every RUN.
    let ctx2 = context(&env, "ctx2", &[("Dockerfile", "FROM busybox\nRUN cat /proc/net/dev > /d\n")]);
    let (out, _) = build_local(&env, &ctx2, &["--network", "none"]);
    assert_eq!(ifaces(&read(&out, "d")), ["lo"]);
}

#[test]
fn secrets_are_readable_but_never_stored() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let value = "s3cr3t-value-4711";
    let file = env.dir.path().join("secret.txt");
    std::fs::write(&file, value).unwrap();
    let df = "FROM busybox\nRUN --mount=type=secret,id=tok tr a-z A-Z < /run/secrets/tok > /upper && wc -c < /run/secrets/tok > /len\nRUN --mount=type=secret,id=envtok,env=TOKEN,required=true sh -c 'test \"$TOKEN\" = from-env && echo ok > /env-ok'\nRUN --mount=type=secret,id=tok,target=/etc/app.key stat -c %a /etc/app.key > /mode\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let secret = format!("id=tok,src={}", file.display());
    let oci = env.dir.path().join("img.tar");
    let local = env.dir.path().join("local");
    let mut cmd = env.cmd(&[
        "build",
        "--progress",
        "plain",
        "--secret",
        &secret,
        "--secret",
        "id=envtok,env=POLYARCH_TEST_TOKEN",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=local,dest={}", local.display()),
        s(&ctx),
    ]);
    cmd.env("POLYARCH_TEST_TOKEN", "from-env");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_clean_root(&env.root());
    for tar in layer_blobs(&oci) {
        assert!(!tar.windows(value.len()).any(|w| w == value.as_bytes()), "the secret is in a layer");
        assert!(!tar.windows(8).any(|w| w == b"from-env"), "the env secret is in a layer");
    }
    let names: Vec<String> = layer_entries(&oci).into_iter().flatten().collect();
    let get = |n: &str| read(&local, n);
    assert_eq!(get("len").trim(), value.len().to_string());
    assert_eq!(get("upper"), value.to_uppercase(), "the process could read it");
    assert_eq!(get("env-ok"), "ok\n");
    assert_eq!(get("mode"), "400\n");
    assert!(!names.iter().any(|p| p.starts_with("run/secrets") || p == "etc/app.key"), "no mount stub: {names:?}");
}

#[test]
fn cache_mounts_persist_and_bind_mounts_read_the_context() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN --mount=type=cache,target=/cache echo $RANDOM-$$ >> /cache/log && cat /cache/log > /seen\nRUN --mount=type=bind,source=data,target=/src cat /src/a > /from-bind && (touch /src/x 2>/dev/null && echo rw || echo ro) > /bind-mode\nRUN --mount=type=bind,source=data,target=/src,rw touch /src/x && echo done > /rw\nRUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df), ("data/a", "from context\n")]);
    let (out, _) = build_local(&env, &ctx, &[]);
    assert_eq!(read(&out, "seen").lines().count(), 1);
    assert_eq!(read(&out, "from-bind"), "from context\n");
    assert_eq!(read(&out, "bind-mode"), "ro\n");
    assert_eq!(read(&out, "rw"), "done\n");
    assert!(!out.join("src").exists() && !out.join("cache").exists() && !out.join("scratch").exists(), "no stubs");
    assert!(!ctx.join("data/x").exists(), "rw bind writes are discarded");
    // Without the cache, the cache mount keeps what the first build wrote.
    let (out, _) = build_local(&env, &ctx, &["--no-cache"]);
    assert_eq!(read(&out, "seen").lines().count(), 2);
    // BUILDKIT_CACHE_MOUNT_NS gives builds of another namespace a cache
    // of their own (and runs the step again: the mount's id is keyed).
    let ns = ["--build-arg", "BUILDKIT_CACHE_MOUNT_NS=other"];
    let (out, _) = build_local(&env, &ctx, &ns);
    assert_eq!(read(&out, "seen").lines().count(), 1, "a new cache");
    let (out, _) = build_local(&env, &ctx, &[&["--no-cache"][..], &ns[..]].concat());
    assert_eq!(read(&out, "seen").lines().count(), 2, "its own cache kept");
    let (out, _) = build_local(&env, &ctx, &["--no-cache"]);
    assert_eq!(read(&out, "seen").lines().count(), 3, "the first namespace's untouched");
    // A bind mount from another stage.
    let staged = "FROM busybox AS gen\nRUN echo generated > /g\nFROM busybox\nRUN --mount=type=bind,from=gen,source=/g,target=/in/g cat /in/g > /copied\n";
    let ctx2 = context(&env, "ctx2", &[("Dockerfile", staged)]);
    let (out2, _) = build_local(&env, &ctx2, &[]);
    assert_eq!(read(&out2, "copied"), "generated\n");
    assert!(!out2.join("in").exists() && !out2.join("g").exists());
    // Changing the bind source re-runs the step that reads it.
    std::fs::write(ctx.join("data/a"), "changed\n").unwrap();
    let (out, err) = build_local(&env, &ctx, &[]);
    assert_eq!(read(&out, "from-bind"), "changed\n");
    assert_eq!(counts(&err), (3, 1), "{err}");
}

#[test]
fn failing_run_reports_command_and_exit_code() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let ctx =
        context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN echo before\nRUN echo some output && exit 3\n")]);
    let out = env.run(&["build", "--progress", "plain", s(&ctx)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(r#"process "/bin/sh -c echo some output && exit 3" did not complete successfully: exit code: 3"#),
        "{err}"
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("[3/3] RUN echo some output && exit 3"), "{err}");
    assert!(err.contains(&format!("linux/{}", if host_arch() == "x86_64" { "amd64" } else { "arm64" })), "{err}");
    assert!(err.contains("  some output"), "last output lines: {err}");
    // Output streams as BuildKit's plain progress shows it.
    assert!(err.lines().any(|l| l.starts_with("#") && l.split(' ').nth(2) == Some("before")), "{err}");
    // An unknown runtime is named.
    let err = env.fails(&["build", "--progress", "plain", "--runtime", "no-such-runtime-x", s(&ctx)]);
    assert!(err.contains("no-such-runtime-x"), "{err}");
    assert_clean_root(&env.root());
}

#[test]
fn cache_skips_unchanged_runs_and_reruns_after_a_change() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN echo a > /a\nCOPY f /f\nRUN cat /f > /g\nRUN echo done > /done\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df), ("f", "1\n")]);
    let (_, err) = build_local(&env, &ctx, &[]);
    assert_eq!(counts(&err), (4, 0), "{err}");
    let (out, err) = build_local(&env, &ctx, &[]);
    assert_eq!(counts(&err), (0, 4), "{err}");
    assert_eq!(read(&out, "g"), "1\n");
    std::fs::write(ctx.join("f"), "2\n").unwrap();
    let (out, err) = build_local(&env, &ctx, &[]);
    assert_eq!(counts(&err), (3, 1), "{err}");
    assert_eq!(read(&out, "g"), "2\n");
    // --no-cache-filter re-runs every step of that stage, as buildx does.
    let (_, err) = build_local(&env, &ctx, &["--no-cache-filter", "stage-0"]);
    assert_eq!(counts(&err), (4, 0), "{err}");
    // Another stage's name leaves this one cached.
    let (_, err) = build_local(&env, &ctx, &["--no-cache-filter", "other"]);
    assert_eq!(counts(&err), (0, 4), "{err}");
}

#[test]
fn foreign_platform_runs_under_emulation() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let handler = if host_arch() == "x86_64" { "qemu-aarch64" } else { "qemu-x86_64" };
    let registered = std::fs::read_to_string(format!("/proc/sys/fs/binfmt_misc/{handler}"))
        .is_ok_and(|t| t.contains("enabled") && t.lines().any(|l| l.starts_with("flags:") && l.contains('F')));
    if !require(registered, &format!("binfmt handler {handler} with the F flag")) {
        return;
    }
    let (platform, want) = if host_arch() == "x86_64" { ("linux/arm64", "aarch64") } else { ("linux/amd64", "x86_64") };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch && uname -m\n")]);
    let (out, err) = build_local(&env, &ctx, &["--platform", platform]);
    assert_eq!(read(&out, "arch").trim(), want);
    assert!(err.lines().any(|l| l.starts_with('#') && l.ends_with(&format!(" {want}"))), "{err}");
}

/// The same Dockerfile with RUN steps built by buildah and by polyarch:
/// the same file trees and config fields.
#[test]
fn differential_against_buildah_with_run() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    if !buildah_prerequisites() {
        return;
    }
    let df = format!(
        "FROM {}/library/busybox:latest\nENV A=1\nARG B=2\nWORKDIR /app\nCOPY one.txt ./\nRUN echo \"$A$B\" > ab && mkdir -p /opt/x && echo y > /opt/x/y && chmod 640 /opt/x/y\nRUN rm /bin/ls /bin/vi && ln -s /app/ab /ab-link\nRUN echo app:x:1234:1234::/tmp:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group && chown app:app /opt/x/y\nUSER app\nRUN echo mine > /tmp/mine\nUSER root\nRUN rm -rf /opt/x && mkdir /opt/x && echo new > /opt/x/z\nCMD [\"sh\"]\n",
        reg.host
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &df), ("one.txt", "1\n")]);
    let oci = env.dir.path().join("ours.tar");
    build(&env, &["-o", &format!("type=oci,dest={}", oci.display()), "-t", "diff:1", s(&ctx)]);
    let ours = umoci_unpack(&oci, "1", &env.dir.path().join("ours"));

    let flags = ["--layers", "--isolation=oci", "--runtime", "runc"];
    let (theirs_archive, theirs) = buildah_build(env.dir.path(), &ctx, &flags, "diff:1");

    let (a, b) = (tree(&ours), tree(&theirs));
    let diffs = tree_diffs(&a, &b, |k| {
        // buildah leaves empty mount points for the files it binds
        // (/etc/hosts...); BuildKit removes its stubs, and so do we.
        let empty = "f sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let stub = ["etc/hostname", "etc/hosts", "etc/resolv.conf"].contains(&k.as_str());
        if stub && !a.contains_key(k) && b.get(k).is_some_and(|d| d.starts_with(empty)) {
            return true;
        }
        // ... and the empty /run it mounts its secrets directory in.
        let run_stub =
            k == "run" && b.get(k).is_some_and(|d| d.starts_with("d ")) && !b.keys().any(|x| x.starts_with("run/"));
        run_stub && !a.contains_key(k)
    });
    assert!(diffs.is_empty(), "file trees differ:\n{}", diffs.join("\n"));
    assert_eq!(std::fs::read_to_string(ours.join("app/ab")).unwrap(), "12\n");

    let (ours_cfg, theirs_cfg) = (skopeo_config(&oci), skopeo_config(&theirs_archive));
    for field in ["User", "WorkingDir", "Cmd", "Env"] {
        assert_eq!(ours_cfg["config"][field], theirs_cfg["config"][field], "config field {field}");
    }
    // History as BuildKit writes it: ARGs in scope, then the command.
    let runs: Vec<&str> = ours_cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .filter(|c| c.starts_with("RUN "))
        .collect();
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert!(
        runs[0].starts_with("RUN |1 B=2 /bin/sh -c echo \"$A$B\" > ab") && runs[0].ends_with(" # buildkit"),
        "{runs:?}"
    );
}

#[test]
fn a_cache_mount_from_a_stage_starts_as_its_directory_and_keeps_what_steps_add() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox AS seed\nRUN mkdir -p /s/sub && echo seeded > /s/sub/file && chmod 750 /s\n\
              FROM busybox\n\
              RUN --mount=type=cache,target=/c,from=seed,source=/s cat /c/sub/file > /first && \
                  stat -c %a /c > /mode && echo more > /c/extra\n\
              RUN --mount=type=cache,target=/c,from=seed,source=/s ls /c | tr '\\n' ' ' > /second\n\
              RUN --mount=type=cache,target=/c ls /c | wc -l > /plain\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let (out, _) = build_local(&env, &ctx, &[]);
    assert_eq!(read(&out, "first"), "seeded\n");
    assert_eq!(read(&out, "mode").trim(), "750", "the cache's top directory is the source directory");
    assert_eq!(read(&out, "second"), "extra sub ", "the same cache, kept between steps");
    assert_eq!(read(&out, "plain").trim(), "0", "without from= the same id with no base is another cache");
    // A source that is not a directory is an error naming it.
    let bad = "FROM busybox AS seed\nRUN echo x > /f\nFROM busybox\nRUN --mount=type=cache,target=/c,from=seed,source=/f true\n";
    let ctx = context(&env, "bad", &[("Dockerfile", bad)]);
    let err = env.fails(&["build", "--progress", "plain", s(&ctx)]);
    assert!(err.contains("cache mount source \"f\" of \"seed\" is not a directory"), "{err}");
}

/// Two polyarch processes building at once on one store (one build per
/// platform, as BuildKit users start them) run a step they share once: the
/// second waits for the first's record, as one BuildKit daemon merges
/// equal vertices of concurrent builds. The step counts its runs in a
/// cache mount both builds share.
#[test]
fn two_processes_on_one_store_run_a_shared_step_once() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
              RUN --mount=type=cache,target=/c,sharing=shared echo ran >> /c/count && sleep 3 && echo made > /made\n\
              FROM busybox\nCOPY --from=build /made /made\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let start = |platform: &str| {
        env.cmd(&[
            "build",
            "--progress",
            "plain",
            "--platform",
            platform,
            "-t",
            &format!("two:{}", &platform[6..]),
            s(&ctx),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let first = start("linux/amd64");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let second = start("linux/386");
    let (a, b) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    let (ea, eb) = (String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    assert!(a.status.success() && b.status.success(), "{ea}\n{eb}");
    assert_eq!(counts(&ea).0 + counts(&eb).0, 1 + 2, "the shared RUN once, each final COPY: {ea}\n{eb}");
    // What the cache mount saw: one run.
    let check = context(
        &env,
        "check",
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=cache,target=/c,sharing=shared cat /c/count > /count\n")],
    );
    let (out, _) = build_local(&env, &check, &["--no-cache"]);
    assert_eq!(read(&out, "count"), "ran\n");
    let locks = env.root().join("build-cache/locks");
    assert!(std::fs::read_dir(&locks).map_or(0, |d| d.count()) == 0, "no lock file is left");
}
