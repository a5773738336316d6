//! `polyarch build` against the real registry (busybox through a docker.io
//! mirror), checked with skopeo, umoci, the file trees of `type=local` and
//! a differential build with buildah.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::build_ok as build;
use crate::util::image::{
    buildah_build, buildah_prerequisites, raw_config, skopeo_config, tree, tree_diffs, umoci_unpack,
};
use crate::util::*;

fn build_fails(env: &Env, args: &[&str]) -> String {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    env.fails(&full)
}

const APP_DOCKERFILE: &str = r#"ARG BASE=busybox
FROM ${BASE} AS base
LABEL stage=base

FROM base
ARG VERSION=1.0
ENV APP=/app VERSION=${VERSION}
WORKDIR $APP
COPY --chown=nobody:nobody hello.txt ./
COPY conf/ conf/
COPY --chmod=600 secret.txt /etc/secret.txt
COPY *.md /docs/
USER nobody
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=3 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $VERSION"]
"#;

fn app_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Dockerfile", APP_DOCKERFILE),
        ("hello.txt", "hello\n"),
        ("conf/a.conf", "a=1\n"),
        ("conf/sub/b.conf", "b=2\n"),
        ("secret.txt", "s3cret\n"),
        ("README.md", "# readme\n"),
        ("NOTES.md", "notes\n"),
        ("ignored.log", "noise\n"),
        (".dockerignore", "*.log\n"),
    ]
}

#[test]
fn busybox_image_into_store_and_oci_archive() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") || !require(have("umoci"), "umoci") {
        return;
    }
    let ctx = context(&env, "ctx", &app_files());
    let oci = env.dir.path().join("out/app.tar");
    let meta = env.dir.path().join("meta.json");
    let iid = env.dir.path().join("iid");
    let dest = format!("type=oci,dest={}", oci.display());
    let (_, err) = build(
        &env,
        &[
            "-t",
            "app:1",
            "--label",
            "extra=yes",
            "--metadata-file",
            s(&meta),
            "--iidfile",
            s(&iid),
            "-o",
            "type=image",
            "-o",
            &dest,
            s(&ctx),
        ],
    );
    assert!(err.contains("[internal] load metadata for docker.io/library/busybox:latest"), "{err}");
    assert!(err.contains("#4 [stage-1 2/6] WORKDIR /app") || err.contains("WORKDIR /app"), "{err}");

    // The store has the name; the metadata file and iidfile agree with it.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.root().join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["io.containerd.image.name"] == "docker.io/library/app:1")
        .expect("tagged in the store");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], entry["digest"]);
    assert_eq!(meta["image.name"], "docker.io/library/app:1");
    // buildx's image ID is the config digest of a one-platform image.
    assert!(meta["containerimage.config.digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), meta["containerimage.config.digest"].as_str().unwrap());
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "app:1"])).unwrap();
    assert_eq!(inspect[0]["Id"], entry["digest"]);
    assert_eq!(inspect[0]["Config"]["config"]["WorkingDir"], "/app");
    assert_eq!(inspect[0]["Config"]["config"]["User"], "nobody");

    // Config fields as BuildKit writes them.
    let cfg = skopeo_config(&oci);
    let c = &cfg["config"];
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo $VERSION"]));
    assert_eq!(c["ExposedPorts"], serde_json::json!({"53/udp": {}, "8080/tcp": {}}));
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Labels"], serde_json::json!({"extra": "yes", "stage": "base"}));
    let raw = raw_config(&oci);
    assert_eq!(
        raw["config"]["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 3})
    );
    let env_list: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env_list.contains(&"APP=/app") && env_list.contains(&"VERSION=1.0"), "{env_list:?}");
    assert!(env_list.iter().any(|e| e.starts_with("PATH=")), "{env_list:?}");
    let history: Vec<&serde_json::Value> = cfg["history"].as_array().unwrap().iter().collect();
    let ours: Vec<(&str, bool)> = history
        .iter()
        .filter(|h| h["comment"] == "buildkit.dockerfile.v0")
        .map(|h| (h["created_by"].as_str().unwrap(), h["empty_layer"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(
        ours,
        [
            ("LABEL stage=base", true),
            ("ARG VERSION=1.0", true),
            ("ENV APP=/app VERSION=1.0", true),
            ("WORKDIR /app", false),
            ("COPY --chown=nobody:nobody hello.txt ./ # buildkit", false),
            ("COPY conf/ conf/ # buildkit", false),
            ("COPY --chmod=600 secret.txt /etc/secret.txt # buildkit", false),
            ("COPY *.md /docs/ # buildkit", false),
            ("USER nobody", true),
            ("EXPOSE map[53/udp:{} 8080/tcp:{}]", true),
            ("VOLUME [/data]", true),
            ("STOPSIGNAL SIGTERM", true),
            (r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x03'}"#, true),
            ("ENTRYPOINT [\"/bin/sh\" \"-c\"]", true),
            ("CMD [\"echo $VERSION\"]", true),
        ]
    );
    let layers = history.iter().filter(|h| !h["empty_layer"].as_bool().unwrap_or(false)).count();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), layers);

    // The file tree, unpacked by umoci.
    let work = env.dir.path().join("umoci");
    let rootfs = umoci_unpack(&oci, "1", &work);
    let t = tree(&rootfs);
    assert_eq!(t["app/hello.txt"].split(' ').skip(2).collect::<Vec<_>>(), ["644", "65534:65534"]);
    assert!(t["app/conf/sub/b.conf"].ends_with("644 0:0"), "{}", t["app/conf/sub/b.conf"]);
    assert!(t["etc/secret.txt"].ends_with("600 0:0"), "{}", t["etc/secret.txt"]);
    assert!(t.contains_key("docs/README.md") && t.contains_key("docs/NOTES.md"));
    assert!(!t.keys().any(|k| k.ends_with(".log")), "ignored by .dockerignore");
    assert!(t["bin/sh"].starts_with("l busybox"), "{}", t["bin/sh"]);
    assert_eq!(std::fs::read_to_string(rootfs.join("app/conf/a.conf")).unwrap(), "a=1\n");
}

#[test]
fn scratch_image_local_and_tar_outputs() {
    let Some((env, _reg)) = mirrored() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY bin/ /usr/bin/\nCOPY --chown=1000:2000 data /data\nADD pkg.tar /opt/\nWORKDIR /srv\n"),
            ("bin/tool", "#!/bin/true\n"),
            ("data/x", "x"),
        ],
    );
    std::fs::set_permissions(ctx.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    make_tar(&ctx.join("pkg.tar"), &[("pkg/readme", "inside\n")], "");
    let local = env.dir.path().join("local");
    let tarout = env.dir.path().join("rootfs.tar");
    build(
        &env,
        &[
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=tar,dest={}", tarout.display()),
            s(&ctx),
        ],
    );
    let t = tree(&local);
    let keys: Vec<&String> = t.keys().collect();
    assert_eq!(keys, ["data", "data/x", "opt", "opt/pkg", "opt/pkg/readme", "srv", "usr", "usr/bin", "usr/bin/tool"]);
    assert!(t["usr/bin/tool"].contains(" 755 "), "{}", t["usr/bin/tool"]);
    if is_root() {
        assert!(t["data/x"].ends_with("1000:2000"), "{}", t["data/x"]);
        assert!(t["data"].ends_with("1000:2000"), "created dest dir takes the --chown owner: {}", t["data"]);
    }
    let listing = sh(Command::new("tar").arg("-tvf").arg(&tarout));
    assert!(listing.contains("opt/pkg/readme") && listing.contains("1000/2000"), "{listing}");
}

/// Owners and history texts as BuildKit's file ops and dockerfile2llb make
/// them: `--chown=NAME` takes the group of NAME's passwd entry (not its
/// uid), a WORKDIR under `USER NAME` too; a RUN's history lists each ARG
/// once, where first declared, with the value in scope; HEALTHCHECK's text
/// is Go's `%q` of its config.
#[test]
fn owners_and_history_texts_as_buildkit() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let df = "FROM busybox\nCOPY passwd group /etc/\nCOPY --chown=www a.txt /w1\n\
              COPY --chown=www:staff a.txt /w2\nCOPY --chown=33 a.txt /w3\nUSER www\nWORKDIR /wd\nUSER root\n\
              ARG V=1\nARG W\nARG V=2\nRUN true\n\
              HEALTHCHECK --interval=5s --retries=4 CMD true\n";
    let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
    let files = [("Dockerfile", df), ("passwd", passwd), ("group", "root:x:0:\nstaff:x:50:\n"), ("a.txt", "a\n")];
    let ctx = context(&env, "ctx", &files);
    let oci = env.dir.path().join("out.tar");
    let local = env.dir.path().join("local");
    let outs = [format!("type=oci,dest={}", oci.display()), format!("type=local,dest={}", local.display())];
    build(&env, &["-o", &outs[0], "-o", &outs[1], s(&ctx)]);
    let ids = |p: &str| {
        let md = std::fs::symlink_metadata(local.join(p)).unwrap();
        (md.uid(), md.gid())
    };
    if is_root() {
        assert_eq!(ids("w1"), (33, 34), "a name alone takes its passwd group");
        assert_eq!(ids("w2"), (33, 50));
        assert_eq!(ids("w3"), (33, 33), "a number alone is also the group");
        assert_eq!(ids("wd"), (33, 34), "WORKDIR under USER www");
    }
    let cfg = skopeo_config(&oci);
    let texts: Vec<&str> = cfg["history"].as_array().unwrap().iter().filter_map(|h| h["created_by"].as_str()).collect();
    assert!(texts.contains(&"RUN |2 V=2 W= /bin/sh -c true # buildkit"), "{texts:?}");
    assert!(texts.contains(&r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x04'}"#), "{texts:?}");
}

/// Writes a tar archive with `files`, compressed with `compress` (a program
/// name such as gzip, or "" for none).
fn make_tar(path: &Path, files: &[(&str, &str)], compress: &str) {
    let src = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let f = src.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, c).unwrap();
    }
    let names: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    let mut tar = Command::new("tar");
    tar.arg("-cf").arg("-").arg("-C").arg(src.path()).arg("--owner=0").arg("--group=0").args(&names);
    let raw = tar.output().unwrap().stdout;
    let data = if compress.is_empty() {
        raw
    } else {
        let mut child = Command::new(compress).arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&raw).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    std::fs::write(path, data).unwrap();
}

#[test]
fn add_extracts_every_compression_and_downloads_with_checksum() {
    let Some((env, _reg)) = mirrored() else { return };
    let formats =
        [("plain.tar", ""), ("g.tar.gz", "gzip"), ("b.tar.bz2", "bzip2"), ("x.tar.xz", "xz"), ("z.tar.zst", "zstd")];
    for (_, prog) in &formats {
        if !prog.is_empty() && !require(have(prog), prog) {
            return;
        }
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", "")]);
    let mut df = String::from("FROM scratch\n");
    for (name, prog) in &formats {
        make_tar(&ctx.join(name), &[(&format!("{name}.d/file"), name)], prog);
        df.push_str(&format!("ADD {name} /x/\n"));
    }
    // A file served over HTTP, checked against its digest.
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("remote.txt"), "remote content\n").unwrap();
    let port = free_port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
        .current_dir(served.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/remote.txt");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sum = sha256_hex(b"remote content\n");
    df.push_str(&format!("ADD --checksum={sum} {url} /dl/\n"));
    std::fs::write(ctx.join("Dockerfile"), &df).unwrap();
    let local = env.dir.path().join("local");
    build(&env, &["-o", &format!("type=local,dest={}", local.display()), s(&ctx)]);
    for (name, _) in &formats {
        assert_eq!(std::fs::read_to_string(local.join(format!("x/{name}.d/file"))).unwrap(), *name);
    }
    assert_eq!(std::fs::read_to_string(local.join("dl/remote.txt")).unwrap(), "remote content\n");

    // A wrong checksum fails, naming the line.
    let bad = format!("FROM scratch\nADD --checksum=sha256:{} {url} /dl/\n", "0".repeat(64));
    std::fs::write(ctx.join("Dockerfile"), bad).unwrap();
    let err = build_fails(&env, &[s(&ctx)]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(err.contains("Dockerfile:2") && err.contains("digest mismatch"), "{err}");
}

#[test]
fn reproducible_with_source_date_epoch() {
    let Some((env, _reg)) = mirrored() else { return };
    let files = [("Dockerfile", "FROM busybox\nCOPY . /src/\nWORKDIR /w\nENV A=b\n"), ("f.txt", "same\n")];
    let digest = |env: &Env, ctx: &Path, extra: &[&str]| {
        let iid = env.dir.path().join("iid");
        let mut args = vec!["--build-arg", "SOURCE_DATE_EPOCH=1700000000", "--iidfile", s(&iid)];
        args.extend_from_slice(extra);
        args.push(s(ctx));
        build(env, &args);
        std::fs::read_to_string(&iid).unwrap()
    };
    let ctx1 = context(&env, "ctx1", &files);
    let first = digest(&env, &ctx1, &["--no-cache"]);
    // Another store, another context directory with the same content.
    let (env2, _) = mirrored().unwrap();
    let ctx2 = context(&env2, "ctx2", &files);
    for f in ["Dockerfile", "f.txt"] {
        let t = std::fs::metadata(ctx1.join(f)).unwrap().modified().unwrap();
        std::fs::File::options().write(true).open(ctx2.join(f)).unwrap().set_modified(t).unwrap();
    }
    assert_eq!(first, digest(&env2, &ctx2, &[]));
    // With rewrite-timestamp, file times are clamped, so even the context's
    // times do not matter.
    let oci = env.dir.path().join("r.tar");
    let out = format!("type=oci,dest={},rewrite-timestamp=true", oci.display());
    let a = digest(&env, &ctx1, &["-o", &out]);
    let b = digest(&env2, &ctx2, &["-o", &out, "--no-cache"]);
    assert_eq!(a, b);
    let cfg = skopeo_config(&oci);
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    let local = env.dir.path().join("local");
    build(
        &env,
        &[
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
            "-o",
            &format!("type=local,dest={},rewrite-timestamp=true", local.display()),
            s(&ctx1),
        ],
    );
    assert_eq!(std::fs::metadata(local.join("src/f.txt")).unwrap().mtime(), 1_700_000_000);
    assert_eq!(std::fs::metadata(local.join("w")).unwrap().mtime(), 1_700_000_000);
}

#[test]
fn cache_counts_executed_steps() {
    let Some((env, _reg)) = mirrored() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\nENV X=1\nCOPY b.txt /b.txt\nWORKDIR /w\n"),
            ("a.txt", "a"),
            ("b.txt", "b"),
        ],
    );
    let (_, err) = build(&env, &["-t", "c:1", s(&ctx)]);
    assert_eq!(counts(&err), (3, 0), "{err}");
    let blobs = |env: &Env| std::fs::read_dir(env.root().join("blobs/sha256")).unwrap().count();
    let before = blobs(&env);
    let (_, err) = build(&env, &["-t", "c:1", s(&ctx)]);
    assert_eq!(counts(&err), (0, 3), "{err}");
    assert!(err.contains("CACHED"), "{err}");
    assert_eq!(blobs(&env), before, "a cached rebuild writes nothing new");
    // Changing the file the second COPY reads redoes that step and the next.
    std::fs::write(ctx.join("b.txt"), "changed").unwrap();
    let (_, err) = build(&env, &["-t", "c:1", s(&ctx)]);
    assert_eq!(counts(&err), (2, 1), "{err}");
    // A file no step reads changes nothing.
    std::fs::write(ctx.join("unused.txt"), "x").unwrap();
    let (_, err) = build(&env, &["-t", "c:1", s(&ctx)]);
    assert_eq!(counts(&err), (0, 3), "{err}");
    // --no-cache runs everything.
    let (_, err) = build(&env, &["--no-cache", s(&ctx)]);
    assert_eq!(counts(&err), (3, 0), "{err}");
}

#[test]
fn stages_copy_from_and_target() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM busybox AS build\nCOPY src /out/\n\nFROM scratch AS unused\nRUN false\n\nFROM scratch\nCOPY --from=build /out/ /app/\nCOPY --from=busybox /etc/passwd /etc/passwd\nCOPY --from=build /bin/sh /sh\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df), ("src/main.c", "int main;\n")]);
    let local = env.dir.path().join("local");
    let (_, err) = build(&env, &["-o", &format!("type=local,dest={}", local.display()), s(&ctx)]);
    assert!(!err.contains("unused"), "stages the target does not need are not built: {err}");
    assert_eq!(std::fs::read_to_string(local.join("app/main.c")).unwrap(), "int main;\n");
    assert!(std::fs::read_to_string(local.join("etc/passwd")).unwrap().contains("nobody"));
    assert!(std::fs::metadata(local.join("sh")).unwrap().len() > 100_000, "symlink source followed to busybox");
    // --target picks the first stage.
    let local2 = env.dir.path().join("local2");
    build(&env, &["--target", "build", "-o", &format!("type=local,dest={}", local2.display()), s(&ctx)]);
    assert!(local2.join("bin/busybox").exists() && local2.join("out/main.c").exists());
    // Building the unused stage runs its RUN, which has no shell on scratch.
    let err = build_fails(&env, &["--target", "unused", s(&ctx)]);
    assert!(err.contains("[unused 1/1] RUN false") && err.contains("/bin/sh") && err.contains("Dockerfile:5"), "{err}");
}

#[test]
fn context_from_stdin_tar() {
    let Some((env, _reg)) = mirrored() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /c/\n"),
            ("keep.txt", "k"),
            ("skip.txt", "s"),
            (".dockerignore", "skip.txt\n"),
        ],
    );
    let tar = sh(Command::new("tar").arg("-cf").arg(env.dir.path().join("ctx.tar")).arg("-C").arg(&ctx).arg("."));
    assert!(tar.is_empty());
    let local = env.dir.path().join("local");
    let out = env
        .cmd(&["build", "--progress", "quiet", "-o", &format!("type=local,dest={}", local.display()), "-"])
        .stdin(std::fs::File::open(env.dir.path().join("ctx.tar")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).trim().starts_with("sha256:"), "quiet prints the digest");
    assert!(local.join("c/keep.txt").exists());
    assert!(!local.join("c/skip.txt").exists());
}

#[test]
fn onbuild_triggers_run_in_the_child_and_push_works() {
    let Some((env, reg)) = mirrored() else { return };
    let parent = format!("{}/test/onbuild:1", reg.host);
    let ctx = context(
        &env,
        "p",
        &[("Dockerfile", "FROM busybox\nONBUILD COPY marker.txt /marker.txt\nONBUILD ENV CHILD=1\n")],
    );
    build(&env, &["-t", &parent, "--push", s(&ctx)]);
    let raw = skopeo_raw(&parent);
    assert!(String::from_utf8_lossy(&raw).contains("application/vnd.oci.image.manifest.v1+json"));
    let child = context(&env, "c", &[("Dockerfile", &format!("FROM {parent}\n")), ("marker.txt", "m\n")]);
    let oci = env.dir.path().join("child.tar");
    build(&env, &["-o", &format!("type=oci,dest={}", oci.display()), "-t", "child:1", s(&child)]);
    let cfg = skopeo_config(&oci);
    assert!(cfg["config"]["OnBuild"].is_null(), "triggers do not carry over: {}", cfg["config"]);
    let env_list = cfg["config"]["Env"].to_string();
    assert!(env_list.contains("CHILD=1"), "{env_list}");
    let work = env.dir.path().join("u");
    let rootfs = umoci_unpack(&oci, "1", &work);
    assert_eq!(std::fs::read_to_string(rootfs.join("marker.txt")).unwrap(), "m\n");
}

#[test]
fn errors_name_file_line_and_column() {
    let Some((env, _reg)) = mirrored() else { return };
    let case = |df: &str, extra: &[&str]| {
        let ctx = context(&env, "e", &[("Dockerfile", df), ("ok.txt", "")]);
        let mut args: Vec<&str> = extra.to_vec();
        args.push(s(&ctx));
        build_fails(&env, &args)
    };
    let err = case("FROM scratch\nFORM busybox\n", &[]);
    assert!(err.contains("Dockerfile:2:1: unknown instruction: FORM") && err.contains("   2 | FORM busybox"), "{err}");
    let err = case("FROM scratch\nCOPY --chwon=1 ok.txt /\n", &[]);
    assert!(err.contains("Dockerfile:2:6: unknown flag: chwon"), "{err}");
    let err = case("FROM scratch\n\nCOPY ok.txt /nope /dst/\n", &[]);
    assert!(
        err.contains("\"/nope\": not found")
            && err.contains("Dockerfile:3:")
            && err.contains("COPY ok.txt /nope /dst/"),
        "{err}"
    );
    let err = case("FROM scratch AS a\n", &["--target", "zzz"]);
    assert!(err.contains("target stage \"zzz\" could not be found"), "{err}");
    let err = case("FROM scratch AS a\nCOPY --from=b / /\nFROM scratch AS b\nCOPY --from=a / /\n", &[]);
    assert!(err.contains("circular dependency"), "{err}");
    let err = case("FROM scratch\nCOPY --chown=nosuchuser ok.txt /\n", &[]);
    assert!(err.contains("unable to find user nosuchuser") && err.contains("Dockerfile:2"), "{err}");
    let err = case("FROM scratch\nCOPY ok.txt ok.txt /dir\n", &[]);
    assert!(err.contains("must be a directory and end with a /"), "{err}");
}

/// Builds the same Dockerfile with buildah and polyarch and compares the
/// file trees and the config fields. Known difference kept out of the
/// Dockerfile: buildah gives a WORKDIR directory to the `--chown` user of a
/// later COPY into it, while BuildKit creates it at WORKDIR, as root.
#[test]
fn differential_against_buildah() {
    let Some((env, reg)) = mirrored() else { return };
    if !buildah_prerequisites() {
        return;
    }
    let df = format!(
        "FROM {}/library/busybox:latest\nENV A=1\nWORKDIR /app\nCOPY one.txt ./\nCOPY --chown=nobody:nobody files/ /etc/files/\nCOPY --chmod=640 one.txt /opt/one\nCOPY one.txt two.txt /multi/\nCOPY link /link-followed\nUSER nobody\nEXPOSE 80\nLABEL a=b\nENTRYPOINT [\"/bin/sh\"]\nCMD [\"-c\", \"true\"]\n",
        reg.host
    );
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", &df), ("files/a", "a\n"), ("files/d/b", "b\n"), ("one.txt", "1\n"), ("two.txt", "2\n")],
    );
    std::os::unix::fs::symlink("one.txt", ctx.join("link")).unwrap();
    std::fs::set_permissions(ctx.join("files/d/b"), std::fs::Permissions::from_mode(0o700)).unwrap();

    let oci = env.dir.path().join("ours.tar");
    build(&env, &["-o", &format!("type=oci,dest={}", oci.display()), "-t", "diff:1", s(&ctx)]);
    let ours = umoci_unpack(&oci, "1", &env.dir.path().join("ours"));

    let (theirs_archive, theirs) = buildah_build(env.dir.path(), &ctx, &["--layers"], "diff:1");

    let (a, b) = (tree(&ours), tree(&theirs));
    let diffs = tree_diffs(&a, &b, |_| false);
    assert!(diffs.is_empty(), "file trees differ:\n{}", diffs.join("\n"));

    let ours_cfg = skopeo_config(&oci);
    let theirs_cfg = skopeo_config(&theirs_archive);
    for field in ["User", "WorkingDir", "Entrypoint", "Cmd", "ExposedPorts", "Env"] {
        assert_eq!(ours_cfg["config"][field], theirs_cfg["config"][field], "config field {field}");
    }
    assert_eq!(ours_cfg["config"]["Labels"]["a"], theirs_cfg["config"]["Labels"]["a"]);
    assert_eq!(ours_cfg["architecture"], theirs_cfg["architecture"]);
}

#[test]
fn arg_scoping_env_precedence_and_platform() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = r#"ARG G=global
ARG OVER=default
ARG IMG=busybox
FROM --platform=$TARGETPLATFORM ${IMG}
LABEL before=${G:-unset}
ARG G
ARG OVER
ARG LOCAL=l-${G}
ENV E=env-value
ARG E=arg-value
ENV FROMARG=${E}
ARG TARGETARCH
ENV ARCH=$TARGETARCH
LABEL g=$G over=$OVER local=$LOCAL
"#;
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let oci = env.dir.path().join("a.tar");
    build(
        &env,
        &[
            "--platform",
            "linux/arm64",
            "--build-arg",
            "OVER=cli",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            s(&ctx),
        ],
    );
    let cfg = raw_config(&oci);
    assert_eq!(cfg["architecture"], "arm64");
    assert_eq!(cfg["variant"], "v8");
    let labels = &cfg["config"]["Labels"];
    assert_eq!(labels["before"], "unset", "a global ARG is not visible before it is declared in the stage");
    assert_eq!(labels["g"], "global");
    assert_eq!(labels["over"], "cli");
    assert_eq!(labels["local"], "l-global");
    let envs: Vec<&str> = cfg["config"]["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(envs.contains(&"FROMARG=env-value"), "ENV wins over ARG: {envs:?}");
    assert!(envs.contains(&"ARCH=arm64"), "{envs:?}");
    assert!(!envs.iter().any(|e| e.starts_with("G=") || e.starts_with("OVER=")), "ARGs are not kept in Env: {envs:?}");
    let history = cfg["history"].to_string();
    assert!(history.contains("ARG OVER=cli") && history.contains("ARG G=global"), "{history}");
}

#[test]
fn docker_archive_oci_directory_and_zstd() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "f\n")]);
    let docker = env.dir.path().join("d.tar");
    let ocidir = env.dir.path().join("layout");
    build(
        &env,
        &[
            "-t",
            "out:2",
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            "-o",
            &format!("type=oci,dest={},tar=false,compression=zstd", ocidir.display()),
            s(&ctx),
        ],
    );
    let d: serde_json::Value = serde_json::from_str(&sh(
        Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", docker.display())])
    ))
    .unwrap();
    let listing = sh(Command::new("tar").arg("-xOf").arg(&docker).arg("manifest.json"));
    let mj: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(mj[0]["RepoTags"], serde_json::json!(["out:2"]), "{mj}");
    assert_eq!(d["Layers"].as_array().unwrap().len(), 2);
    let raw = sh(Command::new("skopeo").args(["inspect", "--raw", &format!("oci:{}:2", ocidir.display())]));
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let ours = m["layers"].as_array().unwrap().last().unwrap()["mediaType"].as_str().unwrap().to_string();
    assert_eq!(ours, "application/vnd.oci.image.layer.v1.tar+zstd");
}

/// `force-compression=true` compresses the base image's layers as the
/// build's own (`compression=`), in every output, as BuildKit converts
/// them; without it they keep theirs. The layers' contents (the config's
/// `diff_ids`) are the same either way.
#[test]
fn force_compression_recompresses_the_base_layers() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\nRUN true\n"), ("f", "f\n")]);
    let types = |raw: &[u8]| -> Vec<String> {
        let m: serde_json::Value = serde_json::from_slice(raw).unwrap();
        m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_string()).collect()
    };
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    let layout = |name: &str, attrs: &str| {
        let dir = env.dir.path().join(name);
        build(&env, &["-o", &format!("type=oci,dest={},tar=false,{attrs}", dir.display()), s(&ctx)]);
        let raw = sh(Command::new("skopeo").args(["inspect", "--raw", &format!("oci:{}", dir.display())]));
        let config = sh(Command::new("skopeo").args(["inspect", "--config", &format!("oci:{}", dir.display())]));
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        (types(raw.as_bytes()), config["rootfs"]["diff_ids"].clone())
    };
    let (kept, diff_ids) = layout("kept", "compression=zstd");
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_ne!(kept[0], zstd, "the base keeps its compression: {kept:?}");
    assert_eq!(kept[1..], [zstd, zstd]);
    let (forced, forced_ids) = layout("forced", "compression=zstd,force-compression=true");
    assert_eq!(forced, [zstd, zstd, zstd], "every layer is zstd");
    assert_eq!(forced_ids, diff_ids, "the same contents");
    // Pushed: the registry holds the zstd base.
    let name = format!("{}/build/forced:1", reg.host);
    build(&env, &["-o", &format!("type=image,name={name},push=true,compression=zstd,force-compression=true"), s(&ctx)]);
    assert_eq!(types(&skopeo_raw(&name)), [zstd, zstd, zstd]);
    // Plain tars: each blob is its own diff id, and the image runs.
    let tar = "application/vnd.oci.image.layer.v1.tar";
    let (plain, plain_ids) = layout("plain", "compression=uncompressed,force-compression=true");
    assert_eq!((plain, plain_ids), (vec![tar.to_string(); 3], diff_ids.clone()));
    let plain = format!("{}/build/plain:1", reg.host);
    let out = format!("type=image,name={plain},push=true,compression=uncompressed,force-compression=true");
    build(&env, &["-o", &out, s(&ctx)]);
    let m: serde_json::Value = serde_json::from_slice(&skopeo_raw(&plain)).unwrap();
    let digests: Vec<&serde_json::Value> = m["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
    assert_eq!(digests, diff_ids.as_array().unwrap().iter().collect::<Vec<_>>(), "{m}");
    let docker = format!("{}/build/plain:docker", reg.host);
    let out = format!("type=image,name={docker},push=true,compression=uncompressed,oci-mediatypes=false");
    build(&env, &["-o", &out, s(&ctx)]);
    assert_eq!(types(&skopeo_raw(&docker))[1..], ["application/vnd.docker.image.rootfs.diff.tar"; 2]);
    let fresh = Env::new();
    assert_eq!(fresh.ok(&["run", "--rm", &plain, "cat", "/f"]), "f\n");
    let err = env.fails(&["build", "-o", "type=oci,dest=x.tar,force-compression=maybe", s(&ctx)]);
    assert!(err.contains("invalid value \"maybe\" for force-compression"), "{err}");
}

#[test]
fn compression_level_sets_the_level_of_new_and_converted_layers() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let text = "a line of text that compresses well\n".repeat(8192);
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY t /t\n"), ("t", &text)]);
    // (media type, size) of each layer, and the diff ids.
    let layout = |name: &str, attrs: &str| {
        let dir = env.dir.path().join(name);
        build(&env, &["--no-cache", "-o", &format!("type=oci,dest={},tar=false{attrs}", dir.display()), s(&ctx)]);
        let raw = sh(Command::new("skopeo").args(["inspect", "--raw", &format!("oci:{}", dir.display())]));
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let layers: Vec<(String, u64)> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["mediaType"].as_str().unwrap().to_string(), l["size"].as_u64().unwrap()))
            .collect();
        let config = sh(Command::new("skopeo").args(["inspect", "--config", &format!("oci:{}", dir.display())]));
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        (layers, config["rootfs"]["diff_ids"].clone())
    };
    let (default, ids) = layout("default", "");
    let (stored, stored_ids) = layout("stored", ",compression-level=0");
    assert_eq!(stored_ids, ids, "the same contents");
    assert!(stored[1].1 > text.len() as u64, "gzip level 0 stores the file: {stored:?}");
    assert!(default[1].1 < text.len() as u64 / 20, "{default:?}");
    assert_eq!(stored[0], default[0], "the base layer is kept as it is");
    // With force-compression the base layer is converted at the level too.
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    let (fast, fast_ids) = layout("fast", ",compression=zstd,compression-level=1,force-compression=true");
    let (best, best_ids) = layout("best", ",compression=zstd,compression-level=19,force-compression=true");
    assert_eq!((&fast_ids, &best_ids), (&ids, &ids));
    assert!(fast.iter().chain(&best).all(|(t, _)| t == zstd), "{fast:?} {best:?}");
    assert!(best[0].1 < fast[0].1, "level 19 is smaller than level 1: {best:?} {fast:?}");
    for (bad, why) in [
        ("compression-level=fast", "non-int value \"fast\" specified for compression-level"),
        ("compression-level=12", "compression-level=12 is out of range for gzip"),
    ] {
        let dest = env.dir.path().join("bad.tar");
        let err = env.fails(&["build", "-o", &format!("type=oci,dest={},{bad}", dest.display()), s(&ctx)]);
        assert!(err.contains(why), "{bad}: {err}");
        assert!(!dest.exists(), "{bad}: nothing written");
    }
}

#[test]
fn copy_exclude_parents_link_and_build_arg_from_env() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM busybox\nARG FROMENV\nCOPY --exclude=*.tmp --exclude=skip src/ /ex/\nCOPY --parents a/b/c.txt a/d.txt /par/\nCOPY --link --chmod=0751 src/keep.txt /etc/linked\nLABEL fromenv=$FROMENV\n";
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", df),
            ("src/keep.txt", "k"),
            ("src/x.tmp", "t"),
            ("src/skip/y", "y"),
            ("a/b/c.txt", "c"),
            ("a/d.txt", "d"),
        ],
    );
    let local = env.dir.path().join("local");
    let oci = env.dir.path().join("o.tar");
    let out = env
        .cmd(&[
            "build",
            "--progress",
            "plain",
            "--build-arg",
            "FROMENV",
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            s(&ctx),
        ])
        .env("FROMENV", "from-the-environment")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = tree(&local);
    assert!(t.contains_key("ex/keep.txt") && !t.contains_key("ex/x.tmp") && !t.contains_key("ex/skip"), "{t:?}");
    assert!(t.contains_key("par/a/b/c.txt") && t.contains_key("par/a/d.txt"), "{t:?}");
    assert!(t["etc/linked"].contains(" 751 "), "{}", t["etc/linked"]);
    assert!(t["etc/passwd"].starts_with("f "), "the linked layer keeps what is below it");
    assert_eq!(raw_config(&oci)["config"]["Labels"]["fromenv"], "from-the-environment");
}

/// A second differential build: stages, `COPY --from`, ADD of a local
/// archive, wildcards, symlinks and empty directories inside copied trees,
/// copies into existing directories.
#[test]
fn differential_against_buildah_multistage() {
    let Some((env, reg)) = mirrored() else { return };
    if !buildah_prerequisites() {
        return;
    }
    let df = format!(
        "FROM {r}/library/busybox:latest AS tools\nCOPY tree /opt/tree\nCOPY *.cfg /etc/\n\nFROM {r}/library/busybox:latest\nCOPY --from=tools /opt/tree /srv/tree\nCOPY --from=tools /etc/a.cfg /etc/b.cfg /etc/\nADD pkg.tar.gz /usr/local/\nCOPY tree/nested/ /bin/\nENV PATH=/srv/tree:$PATH\nCMD sh\n",
        r = reg.host
    );
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", &df),
            ("tree/top.txt", "t\n"),
            ("tree/nested/deep.txt", "d\n"),
            ("a.cfg", "a\n"),
            ("b.cfg", "b\n"),
        ],
    );
    std::fs::create_dir_all(ctx.join("tree/empty")).unwrap();
    std::os::unix::fs::symlink("nested/deep.txt", ctx.join("tree/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("tree/abs-link")).unwrap();
    std::fs::set_permissions(ctx.join("tree/nested"), std::fs::Permissions::from_mode(0o750)).unwrap();
    make_tar(&ctx.join("pkg.tar.gz"), &[("share/pkg/data", "payload\n"), ("bin/pkgtool", "#!/bin/sh\n")], "gzip");

    let oci = env.dir.path().join("ours.tar");
    build(&env, &["-o", &format!("type=oci,dest={}", oci.display()), "-t", "multi:1", s(&ctx)]);
    let ours = umoci_unpack(&oci, "1", &env.dir.path().join("ours"));

    let (theirs_archive, theirs) = buildah_build(env.dir.path(), &ctx, &[], "multi:1");

    let (a, b) = (tree(&ours), tree(&theirs));
    let diffs = tree_diffs(&a, &b, |_| false);
    assert!(diffs.is_empty(), "file trees differ:\n{}", diffs.join("\n"));
    let (oc, tc) = (skopeo_config(&oci), skopeo_config(&theirs_archive));
    for field in ["Env", "Cmd", "Entrypoint", "WorkingDir", "User"] {
        assert_eq!(oc["config"][field], tc["config"][field], "config field {field}");
    }
}

#[test]
fn copy_here_documents() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM scratch\nARG NAME=world\nCOPY <<EOF /greet.txt\nhello $NAME \"quoted\"\nEOF\nCOPY <<'RAW' /raw.txt\nkeep $NAME\nRAW\nCOPY --chmod=755 <<A <<B /multi/\nfirst\nA\nsecond\nB\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let local = env.dir.path().join("local");
    let oci = env.dir.path().join("h.tar");
    build(
        &env,
        &[
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            s(&ctx),
        ],
    );
    assert_eq!(std::fs::read_to_string(local.join("greet.txt")).unwrap(), "hello world \"quoted\"\n");
    assert_eq!(std::fs::read_to_string(local.join("raw.txt")).unwrap(), "keep $NAME\n");
    assert_eq!(std::fs::read_to_string(local.join("multi/A")).unwrap(), "first\n");
    assert_eq!(std::fs::read_to_string(local.join("multi/B")).unwrap(), "second\n");
    let t = tree(&local);
    assert!(t["greet.txt"].contains(" 644 ") && t["multi/B"].contains(" 755 "), "{t:?}");
    let history = raw_config(&oci)["history"].to_string();
    assert!(history.contains("COPY <<EOF /greet.txt # buildkit"), "{history}");
}

#[test]
fn progress_modes() {
    let Some((env, _reg)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nARG D=/dst\nCOPY f.txt $D\n"), ("f.txt", "f")]);
    let (_, plain) = build(&env, &[s(&ctx)]);
    assert!(plain.contains("#1 [internal] load build definition from Dockerfile\n#1 DONE"), "{plain}");
    // As BuildKit: FROM scratch is no step, and a build of one stage names
    // its steps without the stage.
    assert!(!plain.contains("FROM scratch"), "{plain}");
    let id = |out: &str| {
        let line = out.lines().find(|l| l.ends_with(" [1/1] COPY f.txt /dst")).unwrap_or_else(|| panic!("{out}"));
        line.split(' ').next().unwrap().to_string()
    };
    let n = id(&plain);
    assert!(
        plain.contains(&format!("{n} [1/1] COPY f.txt /dst\n{n} DONE ")),
        "step names show expanded words: {plain}"
    );
    let (_, again) = build(&env, &[s(&ctx)]);
    let n = id(&again);
    assert!(again.contains(&format!("{n} [1/1] COPY f.txt /dst\n{n} CACHED")), "{again}");
    let out = env.run(&["build", "--progress", "rawjson", s(&ctx)]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let copy = |v: &serde_json::Value| v["name"] == "[1/1] COPY f.txt /dst";
    let cached = lines.iter().flat_map(|l| l["vertexes"].as_array().cloned().unwrap_or_default());
    assert!(cached.filter(copy).any(|v| v["cached"] == true && v["completed"].is_string()), "{lines:?}");
    let out = env.run(&["build", "--progress", "tty", s(&ctx)]);
    let tty = String::from_utf8_lossy(&out.stderr);
    assert!(tty.contains(" => CACHED [1/1] COPY f.txt /dst") && tty.contains("FINISHED"), "{tty}");
}

/// The entries of a layer blob as `(name, type, link, xattrs)`, read with
/// Python's tarfile (type `0` regular, `1` hard link, `5` directory).
fn layer_entries(blob: &Path) -> Vec<(String, String, String, BTreeMap<String, String>)> {
    let script = r#"
import json, sys, tarfile
out = []
with tarfile.open(sys.argv[1], "r:*") as t:
    for m in t.getmembers():
        x = {k[len("SCHILY.xattr."):]: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        out.append([m.name, m.type.decode(), m.linkname, x])
print(json.dumps(out))
"#;
    let json = sh(Command::new("python3").arg("-c").arg(script).arg(blob));
    serde_json::from_str(&json).unwrap()
}

/// The blob of the last layer of the only image in an OCI layout directory.
fn last_layer(layout: &Path) -> PathBuf {
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let read = |p: PathBuf| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap();
    let index = read(layout.join("index.json"));
    let manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    blob(manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap())
}

#[test]
fn copy_keeps_hard_links_and_xattrs() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(have("python3"), "python3") {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", "FROM scratch\nCOPY a b c /dst/\n"), ("a", "same inode\n"), ("c", "other\n")],
    );
    std::fs::hard_link(ctx.join("a"), ctx.join("b")).unwrap();
    let set = Command::new("python3")
        .args(["-c", "import os, sys; os.setxattr(sys.argv[1], 'user.polyarch', b'kept')"])
        .arg(ctx.join("c"))
        .output()
        .unwrap();
    let why = format!("user xattrs in {}: {}", ctx.display(), String::from_utf8_lossy(&set.stderr));
    if !require(set.status.success(), &why) {
        return;
    }
    let layout = env.dir.path().join("layout");
    build(&env, &["-o", &format!("type=oci,tar=false,dest={}", layout.display()), s(&ctx)]);
    let entries = layer_entries(&last_layer(&layout));
    let names: Vec<(&str, &str, &str)> =
        entries.iter().map(|(n, t, l, _)| (n.as_str(), t.as_str(), l.as_str())).collect();
    assert_eq!(
        names,
        [("dst", "5", ""), ("dst/a", "0", ""), ("dst/b", "1", "dst/a"), ("dst/c", "0", "")],
        "b is a hard link to a in the layer"
    );
    let c = &entries[3].3;
    assert_eq!(c.get("user.polyarch").map(String::as_str), Some("kept"), "{entries:?}");
    assert!(entries[1].3.is_empty(), "{entries:?}");
    // The same layer again: deterministic bytes, so the step is cached.
    let (_, again) = build(&env, &["-o", &format!("type=oci,tar=false,dest={}", layout.display()), s(&ctx)]);
    assert!(again.contains("CACHED"), "{again}");
}

/// The pieces of a tty rendering: bars redraw after `\r` and cursor
/// moves, and lines are padded to the terminal's width, so all of these
/// end a piece here.
fn screen_lines(tty: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = tty.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            while chars.next().is_some_and(|c| c.is_ascii_digit()) {}
            plain.push('\n');
        } else {
            plain.push(c);
        }
    }
    plain.split(['\n', '\r']).flat_map(|l| l.split("   ")).map(String::from).collect()
}

#[test]
fn tty_progress_draws_bars_for_pulls_and_pushes() {
    let Some((env, reg)) = mirrored() else { return };
    let target = format!("{}/test/tty-progress:1", reg.host);
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "fresh layer\n")]);
    let out = env.run(&["build", "--progress", "tty", "-t", &target, "--push", s(&ctx)]);
    let tty = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{tty}");
    let raw = skopeo_raw(&target);
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let layers: Vec<String> =
        m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    let short = |d: &str| d.chars().take("sha256:".len() + 12).collect::<String>();
    let lines = screen_lines(&tty);
    let drawn = |digest: &str, word: &str| {
        let d = short(digest);
        lines.iter().any(|l| l.contains(&d) && l.contains(word) && l.contains(" / "))
    };
    assert!(tty.contains("\x1b["), "bars are drawn with cursor control: {tty:?}");
    let base = &layers[0];
    assert!(drawn(base, "pulling"), "a bar while the base layer {base} is pulled: {tty:?}");
    let done = |digest: &str| {
        lines.iter().any(|l| l.starts_with(&format!(" => => {} ", short(digest))) && l.ends_with(" done"))
    };
    assert!(done(base), "a line once the base layer is in: {tty:?}");
    let ours = layers.last().unwrap();
    assert!(drawn(ours, "pushing"), "a bar while the new layer {ours} is pushed: {tty:?}");
    assert!(done(ours), "{tty:?}");
    assert!(lines.iter().any(|l| *l == " => [2/2] COPY f /f"), "finished steps stay as lines: {tty:?}");
    assert!(tty.contains("[+] Building ") && tty.contains(" FINISHED"), "{tty:?}");
    // Plain output has no bars.
    let (_, plain) = build(&env, &["-t", &target, s(&ctx)]);
    assert!(!plain.contains("\x1b[") && !plain.contains("pulling"), "{plain}");
}
