//! `polyarch build --platform a,b,...` against the real registry (busybox
//! through a docker.io mirror): one index in the store, pushed, as a Docker
//! manifest list, as an OCI archive, as per-platform directories and Docker
//! archives; shared work runs once; a platform the base lacks is an error.

use std::process::Command;

use polyarch_oci::{media_type as mt, Descriptor, RawManifest};
use polyarch_store::Store;

use crate::util::*;

const SIX: &str = "linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x,linux/386";

/// (platform, TARGETARCH, TARGETVARIANT) for [`SIX`].
const EXPECTED: &[(&str, &str, &str)] = &[
    ("linux/amd64", "amd64", ""),
    ("linux/arm64", "arm64", ""),
    ("linux/arm/v7", "arm", "v7"),
    ("linux/ppc64le", "ppc64le", ""),
    ("linux/s390x", "s390x", ""),
    ("linux/386", "386", ""),
];

const ARCH_DOCKERFILE: &str = "FROM busybox
ARG TARGETARCH
ARG TARGETVARIANT
ARG TARGETPLATFORM
ARG BUILDPLATFORM
COPY <<EOF /platform.txt
arch=$TARGETARCH
variant=$TARGETVARIANT
platform=$TARGETPLATFORM
build=$BUILDPLATFORM
EOF
ENV BUILT_FOR=$TARGETPLATFORM
";

fn build(env: &Env, args: &[&str]) -> String {
    build_ok(env, args).1
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn blob(store: &Store, d: &Descriptor) -> Vec<u8> {
    store.read_bytes(d, u64::MAX).unwrap().to_vec()
}

/// The file at `path` in the image whose manifest is `m`, read from its
/// last (gzip) layer with tar.
fn file_in_last_layer(store: &Store, m: &RawManifest, path: &str) -> String {
    let last = m.as_image().unwrap().layers.last().unwrap();
    sh(Command::new("tar").arg("-xzOf").arg(store.blob_path(&last.digest)).arg(path))
}

/// `os/arch[/variant]` of every entry of an index document.
fn platforms_of(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!("{}/{}", p["os"].as_str().unwrap(), p["architecture"].as_str().unwrap());
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}

/// Checks an index: every platform of [`EXPECTED`] in order, each child's
/// config architecture and variant, and the file written from the args.
fn check_children(store: &Store, index: &RawManifest) {
    let idx = index.as_index().unwrap();
    assert_eq!(platforms_of(&json(index.bytes())), EXPECTED.iter().map(|e| e.0).collect::<Vec<_>>());
    let host = polyarch_oci::Platform::host().normalize().format();
    for (d, (platform, arch, variant)) in idx.manifests.iter().zip(EXPECTED) {
        let m = store.get_manifest(d).unwrap();
        let config = json(&blob(store, &m.as_image().unwrap().config));
        assert_eq!(config["architecture"], *arch, "{platform}");
        // The config keeps the base's spelling (busybox says arm64/v8),
        // which normalises to the platform built.
        let variant_in_config = config["variant"].as_str().filter(|v| !v.is_empty());
        let of_config = polyarch_oci::Platform::new("linux", arch, variant_in_config).normalize();
        assert_eq!(of_config.format(), *platform);
        let env = config["config"]["Env"].to_string();
        assert!(env.contains(&format!("\"BUILT_FOR={platform}\"")), "{platform}: {env}");
        let text = file_in_last_layer(store, &m, "platform.txt");
        assert_eq!(text, format!("arch={arch}\nvariant={variant}\nplatform={platform}\nbuild={host}\n"), "{platform}");
    }
}

#[test]
fn six_platforms_into_the_store() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let meta = env.dir.path().join("meta.json");
    // A comma list and a repeated flag with other spellings of the same
    // platforms, which are normalised and dropped as duplicates.
    let stderr = build(
        &env,
        &[
            "--platform",
            SIX,
            "--platform",
            "linux/aarch64,linux/x86_64,linux/armhf",
            "-t",
            "multi:1",
            "--metadata-file",
            s(&meta),
            s(&ctx),
        ],
    );
    let echoed =
        "building for 6 platforms: linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le, linux/s390x, linux/386";
    assert!(stderr.contains(echoed), "{stderr}");
    for (p, ..) in EXPECTED {
        assert!(stderr.contains(&format!("[{p} 2/2] COPY <<EOF /platform.txt")), "{p}:\n{stderr}");
        assert!(stderr.contains(&format!("[{p} internal] load metadata for docker.io/library/busybox:latest")));
    }
    assert_eq!(counts(&stderr), (6, 0), "{stderr}");

    let listed = env.ok(&["images", "--format", "json", "multi"]);
    let rows: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["Platforms"].as_array().unwrap().len(), 6, "{listed}");

    let store = Store::open(env.root()).unwrap();
    let desc = store.resolve("docker.io/library/multi:1").unwrap().expect("tagged");
    assert_eq!(desc.media_type, mt::OCI_INDEX);
    let index = store.get_manifest(&desc).unwrap();
    check_children(&store, &index);
    for d in &index.as_index().unwrap().manifests {
        assert_eq!(d.media_type, mt::OCI_MANIFEST);
    }

    let m = json(&std::fs::read(&meta).unwrap());
    assert_eq!(m["containerimage.digest"], desc.digest.to_string());
    assert_eq!(m["containerimage.descriptor"]["mediaType"], mt::OCI_INDEX);
    assert_eq!(m["containerimage.descriptor"]["digest"], desc.digest.to_string());
    assert_eq!(m["image.name"], "docker.io/library/multi:1");
    for d in &index.as_index().unwrap().manifests {
        let p = d.platform.as_ref().unwrap().format();
        assert_eq!(m["polyarch.platforms"][&p]["digest"], d.digest.to_string(), "{p}");
    }

    // Built again, everything is cached and the index is the same.
    let again = build(&env, &["--platform", SIX, "-t", "multi:2", s(&ctx)]);
    assert_eq!(counts(&again), (0, 6), "{again}");
    assert_eq!(store.resolve("docker.io/library/multi:2").unwrap().unwrap().digest, desc.digest);
}

#[test]
fn push_writes_children_then_the_index() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let name = format!("{}/multi/push:1", reg.host);
    build(&env, &["--platform", SIX, "-t", &name, "--push", "--insecure", s(&ctx)]);
    let raw = skopeo_raw(&name);
    let index = RawManifest::from_bytes(raw.clone(), None).unwrap();
    assert_eq!(index.media_type(), mt::OCI_INDEX);
    let store = Store::open(env.root()).unwrap();
    check_children(&store, &index);
    assert_eq!(store.resolve(&name).unwrap().unwrap().digest.to_string(), sha256_hex(&raw), "the stored index");
    for d in &index.as_index().unwrap().manifests {
        let at = format!("{}/multi/push@{}", reg.host, d.digest);
        assert_eq!(sha256_hex(&skopeo_raw(&at)), d.digest.to_string());
        let cfg = sh(Command::new("skopeo")
            .args(["inspect", "--config", "--tls-verify=false"])
            .arg(format!("docker://{at}")));
        assert_eq!(json(cfg.as_bytes())["architecture"], d.platform.as_ref().unwrap().architecture);
    }
    if require(have("docker"), "docker (the CLI)") {
        let out = sh(Command::new("docker")
            .args(["manifest", "inspect", "--insecure", &name])
            .env("DOCKER_CONFIG", env.docker_config()));
        assert_eq!(platforms_of(&json(out.as_bytes())), EXPECTED.iter().map(|e| e.0).collect::<Vec<_>>());
    }
}

#[test]
fn docker_media_types_make_a_manifest_list() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let name = format!("{}/multi/docker:1", reg.host);
    let out = format!("type=image,name={name},push=true,oci-mediatypes=false");
    build(&env, &["--platform", "linux/amd64,linux/arm/v7", "-o", &out, "--insecure", s(&ctx)]);
    let list = RawManifest::from_bytes(skopeo_raw(&name), None).unwrap();
    assert_eq!(list.media_type(), mt::DOCKER_MANIFEST_LIST);
    assert_eq!(platforms_of(&json(list.bytes())), ["linux/amd64", "linux/arm/v7"]);
    for d in &list.as_index().unwrap().manifests {
        assert_eq!(d.media_type, mt::DOCKER_MANIFEST);
        let m = RawManifest::from_bytes(skopeo_raw(&format!("{}/multi/docker@{}", reg.host, d.digest)), None).unwrap();
        assert_eq!(m.media_type(), mt::DOCKER_MANIFEST);
        let image = m.as_image().unwrap();
        assert_eq!(image.config.media_type, mt::DOCKER_CONFIG);
        assert!(image.layers.iter().all(|l| l.media_type == mt::DOCKER_LAYER_GZIP));
    }
    let store = Store::open(env.root()).unwrap();
    assert_eq!(store.resolve(&name).unwrap().unwrap().media_type, mt::DOCKER_MANIFEST_LIST);
}

/// One platform with `oci-mediatypes=false`: a Docker schema 2 image
/// (manifest, config and layers), as the older docker clients' `docker
/// manifest create` reads.
#[test]
fn docker_media_types_of_one_platform_make_a_schema2_image() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let name = format!("{}/multi/docker-one:1", reg.host);
    let out = format!("type=registry,name={name},oci-mediatypes=false");
    build(&env, &["--platform", "linux/arm64", "-o", &out, s(&ctx)]);
    let m = RawManifest::from_bytes(skopeo_raw(&name), None).unwrap();
    assert_eq!(m.media_type(), mt::DOCKER_MANIFEST);
    let image = m.as_image().unwrap();
    assert_eq!(image.config.media_type, mt::DOCKER_CONFIG);
    assert!(!image.layers.is_empty() && image.layers.iter().all(|l| l.media_type == mt::DOCKER_LAYER_GZIP));
    let store = Store::open(env.root()).unwrap();
    assert_eq!(store.resolve(&name).unwrap().unwrap().media_type, mt::DOCKER_MANIFEST);
}

/// `BUILDKIT_MULTI_PLATFORM=1`: one platform is built as a multi-platform
/// build is, an index of one image and a directory per platform.
#[test]
fn multi_platform_argument_makes_an_index_of_one_platform() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let name = format!("{}/multi/one-index:1", reg.host);
    let out = env.dir.path().join("out");
    let local = format!("type=local,dest={}", s(&out));
    let arg = ["--build-arg", "BUILDKIT_MULTI_PLATFORM=1", "--platform", "linux/s390x"];
    let stderr = build(&env, &[&arg[..], &["-t", &name, "--push", "-o", &local, s(&ctx)]].concat());
    // Steps are named with their platform, as BuildKit names them when a
    // multi-platform build is asked for; the plan names them alike.
    assert!(stderr.contains("[linux/s390x 2/2] COPY <<EOF /platform.txt"), "{stderr}");
    let plan = env.ok(&[&["debug", "plan"][..], &arg[..], &[s(&ctx)]].concat());
    assert!(plan.contains("[linux/s390x 2/2] COPY <<EOF /platform.txt"), "{plan}");
    let index = RawManifest::from_bytes(skopeo_raw(&name), None).unwrap();
    assert_eq!(index.media_type(), mt::OCI_INDEX);
    assert_eq!(platforms_of(&json(index.bytes())), ["linux/s390x"]);
    let text = std::fs::read_to_string(out.join("linux_s390x/platform.txt")).unwrap();
    assert!(text.starts_with("arch=s390x\n"), "{text}");
    // Without a --platform, the host's; and without the argument, one image.
    build(&env, &["--build-arg", "BUILDKIT_MULTI_PLATFORM=true", "-t", &name, "--push", s(&ctx)]);
    let host = RawManifest::from_bytes(skopeo_raw(&name), None).unwrap();
    assert_eq!(platforms_of(&json(host.bytes())).len(), 1, "{:?}", json(host.bytes()));
    build(
        &env,
        &["--build-arg", "BUILDKIT_MULTI_PLATFORM=0", "--platform", "linux/s390x", "-t", &name, "--push", s(&ctx)],
    );
    let single = RawManifest::from_bytes(skopeo_raw(&name), None).unwrap();
    assert_eq!(single.media_type(), mt::OCI_MANIFEST);
}

#[test]
fn local_output_has_a_directory_per_platform() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let out = env.dir.path().join("out");
    let spec = format!("type=local,dest={}", s(&out));
    let tar = env.dir.path().join("rootfs.tar");
    let tar_spec = format!("type=tar,dest={}", s(&tar));
    build(&env, &["--platform", "linux/arm64,linux/arm/v7,linux/s390x", "-o", &spec, "-o", &tar_spec, s(&ctx)]);
    let listing = sh(Command::new("tar").arg("-tf").arg(&tar));
    for d in ["linux_arm64", "linux_arm_v7", "linux_s390x"] {
        assert!(listing.lines().any(|l| l == format!("{d}/platform.txt")), "{d}:\n{listing}");
        assert!(listing.lines().any(|l| l == format!("{d}/bin/busybox")), "{d}:\n{listing}");
    }
    let v7 = sh(Command::new("tar").arg("-xOf").arg(&tar).arg("linux_arm_v7/platform.txt"));
    assert!(v7.starts_with("arch=arm\nvariant=v7\n"), "{v7}");
    let mut dirs: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    dirs.sort();
    assert_eq!(dirs, ["linux_arm64", "linux_arm_v7", "linux_s390x"]);
    let text = std::fs::read_to_string(out.join("linux_arm_v7/platform.txt")).unwrap();
    assert!(text.starts_with("arch=arm\nvariant=v7\n"), "{text}");
    // busybox itself differs per platform.
    let a = std::fs::read(out.join("linux_arm64/bin/busybox")).unwrap();
    let b = std::fs::read(out.join("linux_s390x/bin/busybox")).unwrap();
    assert_ne!(sha256_hex(&a), sha256_hex(&b));
}

#[test]
fn oci_archive_holds_the_index() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let archive = env.dir.path().join("multi.tar");
    let spec = format!("type=oci,dest={}", s(&archive));
    let dir = env.dir.path().join("oci-dir");
    let dir_spec = format!("type=oci,dest={},tar=false", s(&dir));
    let platforms = "linux/amd64,linux/arm64,linux/arm/v7";
    build(&env, &["--platform", platforms, "-t", "multi:oci", "-o", &spec, "-o", &dir_spec, s(&ctx)]);
    let layout = env.dir.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(top, json(&std::fs::read(dir.join("index.json")).unwrap()), "tar=false writes the same layout");
    // Every blob the index reaches is in the directory layout.
    let blob_at = |d: &str| std::fs::read(dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let index = json(&blob_at(top["manifests"][0]["digest"].as_str().unwrap()));
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    for m in index["manifests"].as_array().unwrap() {
        let image = json(&blob_at(m["digest"].as_str().unwrap()));
        blob_at(image["config"]["digest"].as_str().unwrap());
        for l in image["layers"].as_array().unwrap() {
            assert_eq!(sha256_hex(&blob_at(l["digest"].as_str().unwrap())), l["digest"].as_str().unwrap());
        }
    }
    assert_eq!(top["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(top["manifests"][0]["mediaType"], mt::OCI_INDEX);
    assert_eq!(top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "oci");
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    for (arch, variant, platform) in
        [("amd64", None, "linux/amd64"), ("arm64", None, "linux/arm64"), ("arm", Some("v7"), "linux/arm/v7")]
    {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--override-os", "linux", "--override-arch", arch]);
        if let Some(v) = variant {
            cmd.args(["--override-variant", v]);
        }
        let cfg = json(sh(cmd.args(["inspect", "--config"]).arg(format!("oci-archive:{}", s(&archive)))).as_bytes());
        assert_eq!(cfg["architecture"], arch);
        let env_list = cfg["config"]["Env"].to_string();
        assert!(env_list.contains(&format!("\"BUILT_FOR={platform}\"")), "{env_list}");
    }
}

#[test]
fn cross_compile_stage_runs_once() {
    let Some((env, _)) = mirrored() else { return };
    let dockerfile = "FROM --platform=$BUILDPLATFORM busybox AS build
COPY src /src
ARG TARGETARCH
COPY <<EOF /out/arch
$TARGETARCH
EOF

FROM busybox
COPY --from=build /out /out
COPY --from=build /src /src
";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile), ("src/main.c", "int main() { return 0; }\n")]);
    let out = env.dir.path().join("out");
    let spec = format!("type=local,dest={}", s(&out));
    let stderr =
        build(&env, &["--platform", "linux/amd64,linux/arm64,linux/s390x,linux/ppc64le", "-o", &spec, s(&ctx)]);
    // Every platform shows the shared step, but it has one key for all
    // targets: it executes once and the three others use its result.
    assert_eq!(stderr.lines().filter(|l| l.contains("] COPY src /src")).count(), 4, "{stderr}");
    // Executed: the shared COPY once, then per target the arch file and
    // the two final COPYs (4 × 3).
    assert_eq!(counts(&stderr), (1 + 4 * 3, 3), "{stderr}");
    for (dir, arch) in
        [("linux_amd64", "amd64"), ("linux_arm64", "arm64"), ("linux_s390x", "s390x"), ("linux_ppc64le", "ppc64le")]
    {
        assert_eq!(std::fs::read_to_string(out.join(dir).join("out/arch")).unwrap(), format!("{arch}\n"));
        assert!(out.join(dir).join("src/main.c").exists());
    }
}

#[test]
fn docker_archive_has_an_image_per_platform() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let archive = env.dir.path().join("docker.tar");
    let spec = format!("type=docker,dest={}", s(&archive));
    let stderr = build(&env, &["--platform", "linux/amd64,linux/arm64", "-t", "multi:load", "-o", &spec, s(&ctx)]);
    assert!(stderr.contains("import 2 images"), "{stderr}");
    assert!(stderr.contains("linux/arm64: multi:load-linux-arm64"), "{stderr}");
    let dir = env.dir.path().join("unpacked");
    std::fs::create_dir_all(&dir).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&dir));
    let manifest = json(&std::fs::read(dir.join("manifest.json")).unwrap());
    let tags: Vec<&str> = manifest.as_array().unwrap().iter().map(|e| e["RepoTags"][0].as_str().unwrap()).collect();
    assert_eq!(tags, ["multi:load-linux-amd64", "multi:load-linux-arm64"]);
    if !require(have("podman"), "podman") {
        return;
    }
    let storage = env.dir.path().join("podman");
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root").arg(storage.join("root")).arg("--runroot").arg(storage.join("run")).args(args);
        sh(&mut c)
    };
    let loaded = podman(&["load", "-i", s(&archive)]);
    assert!(loaded.contains("multi:load-linux-amd64") && loaded.contains("multi:load-linux-arm64"), "{loaded}");
    let arch = podman(&["image", "inspect", "--format", "{{.Architecture}}", "localhost/multi:load-linux-arm64"]);
    assert_eq!(arch.trim(), "arm64");
}

#[test]
fn a_platform_the_base_lacks_is_named() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", ARCH_DOCKERFILE)]);
    let err = env.fails(&["build", "--progress", "plain", "--platform", "linux/amd64,linux/sparc64", s(&ctx)]);
    assert!(err.contains("no image for platform linux/sparc64"), "{err}");
    assert!(err.contains("the image offers linux/amd64") && err.contains("linux/s390x"), "{err}");
}

/// RUN steps of foreign platforms pass the emulator check and execute
/// under emulation, each platform in its own image.
#[test]
fn run_steps_execute_per_platform() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let dockerfile = "FROM busybox\nRUN uname -m > /machine\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let out = env.dir.path().join("out");
    let spec = format!("type=local,dest={}", s(&out));
    let stderr = build(&env, &["--platform", "linux/amd64,linux/arm64,linux/s390x", "-o", &spec, s(&ctx)]);
    for (dir, machine) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64"), ("linux_s390x", "s390x")] {
        assert_eq!(std::fs::read_to_string(out.join(dir).join("machine")).unwrap(), format!("{machine}\n"), "{stderr}");
    }
}

/// The whole multi-platform path: RUN steps for six platforms (foreign ones
/// under QEMU), pushed to the registry, each platform's image run with
/// `polyarch run` and with podman, the index checked with skopeo and
/// `docker manifest inspect`.
#[test]
fn six_platforms_with_run_pushed_and_run_everywhere() {
    if !runc_prerequisites() || !require(have("podman"), "podman") || !require(have("docker"), "the docker client") {
        return;
    }
    let Some((env, reg)) = mirrored() else { return };
    let dockerfile = "FROM busybox\nARG TARGETPLATFORM\nRUN echo \"$TARGETPLATFORM $(uname -m)\" > /built\nCMD [\"cat\", \"/built\"]\n";
    let ctx = context(&env, "ctx6", &[("Dockerfile", dockerfile)]);
    let image = format!("{}/test/six-run:v1", reg.host);
    let expected = [
        ("linux/amd64", "x86_64"),
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
        ("linux/ppc64le", "ppc64le"),
        ("linux/s390x", "s390x"),
        // i386 binaries run natively on an x86_64 kernel, which reports x86_64.
        ("linux/386", "x86_64"),
    ];
    let list: Vec<&str> = expected.iter().map(|(p, _)| *p).collect();
    build(&env, &["--platform", &list.join(","), "-t", &image, "--push", s(&ctx)]);

    let index = json(&skopeo_raw(&image));
    let mut got = platforms_of(&index);
    got.sort();
    let mut want: Vec<String> = list.iter().map(|p| p.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "{index}");
    let docker = std::process::Command::new("docker")
        .args(["manifest", "inspect", "--insecure", &image])
        .env("DOCKER_CONFIG", env.docker_config())
        .output()
        .unwrap();
    assert!(docker.status.success(), "{}", String::from_utf8_lossy(&docker.stderr));
    assert_eq!(json(&docker.stdout)["manifests"].as_array().unwrap().len(), 6);

    let podman_root = env.dir.path().join("podman");
    for (platform, machine) in expected {
        let ours = env.ok(&["run", "--rm", "--pull", "always", "--platform", platform, &image]);
        assert_eq!(ours.trim(), format!("{platform} {machine}"), "built file of {platform}");
        let live = env.ok(&["run", "--rm", "--platform", platform, &image, "uname", "-m"]);
        assert_eq!(live.trim(), machine, "polyarch run --platform {platform}");
        let out = podman_run(&podman_root, platform, &image, &["uname", "-m"]);
        assert_eq!(out.trim(), machine, "podman run --platform {platform}");
    }
}

/// `--load` puts the result in the local store even when another output is
/// named; several platforms are stored as one index.
#[test]
fn load_stores_the_index_beside_other_outputs() {
    let Some((env, _)) = mirrored() else { return };
    let ctx_no_run =
        context(&env, "ctx-load2", &[("Dockerfile", "FROM busybox\nARG TARGETARCH\nCOPY Dockerfile /d-$TARGETARCH\n")]);
    let archive = env.dir.path().join("load.tar");
    let spec = format!("type=oci,dest={}", s(&archive));
    build(
        &env,
        &["--platform", "linux/amd64,linux/arm64", "-o", &spec, "--load", "-t", "multi/load:v1", s(&ctx_no_run)],
    );
    assert!(archive.exists());
    let images = env.ok(&["images"]);
    let line = images.lines().find(|l| l.contains("multi/load")).unwrap_or_else(|| panic!("{images}"));
    assert!(line.contains("linux/amd64") && line.contains("linux/arm64"), "{line}");
    // Without --load, the named output alone.
    build(&env, &["--platform", "linux/amd64,linux/arm64", "-o", &spec, "-t", "multi/noload:v1", s(&ctx_no_run)]);
    assert!(!env.ok(&["images"]).contains("multi/noload"));
}

/// The last layer of the stored image `name` for `platform`.
fn last_layer(env: &Env, name: &str, platform: &str) -> String {
    let out = env.ok(&["inspect", "--platform", platform, name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let layers = v[0]["Manifest"]["layers"].as_array().unwrap();
    layers.last().unwrap()["digest"].as_str().unwrap().to_string()
}

#[test]
fn a_link_copy_is_one_layer_for_every_platform_and_every_base() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let three = "linux/amd64,linux/arm64,linux/s390x";
    let files = [("app/main.txt", "main\n"), ("app/lib/a.txt", "a\n")];
    let first =
        context(&env, "first", &[&[("Dockerfile", "FROM busybox\nCOPY --link app /app\n")][..], &files].concat());
    let stderr = build(&env, &["--platform", three, "-t", "linked:1", s(&first)]);
    // The copy onto nothing is the same for every platform: written once,
    // the two other platforms lay the same layer on their own base.
    assert_eq!(counts(&stderr), (1, 2), "{stderr}");
    let layer = last_layer(&env, "linked:1", "linux/amd64");
    for p in ["linux/arm64", "linux/s390x"] {
        assert_eq!(last_layer(&env, "linked:1", p), layer, "{p}");
    }
    // On another base (a RUN before it), the layer is not copied again.
    let df = "FROM busybox\nRUN echo other > /other\nCOPY --link app /app\n";
    let second = context(&env, "second", &[&[("Dockerfile", df)][..], &files].concat());
    let stderr = build(&env, &["--platform", "linux/amd64", "-t", "linked:2", s(&second)]);
    assert_eq!(counts(&stderr), (1, 1), "the RUN runs, the COPY is cached: {stderr}");
    assert_eq!(last_layer(&env, "linked:2", "linux/amd64"), layer);
    let out = env.ok(&["run", "--rm", "linked:2", "cat", "/other", "/app/main.txt", "/app/lib/a.txt"]);
    assert_eq!(out, "other\nmain\na\n");
    // Without the cache, it is written again.
    let stderr = build(&env, &["--no-cache", "--platform", "linux/amd64", "-t", "linked:3", s(&second)]);
    assert_eq!(counts(&stderr), (2, 0), "{stderr}");
}

#[test]
fn a_program_of_the_wrong_architecture_is_named_for_its_image() {
    let Some((env, _)) = mirrored_for_run() else { return };
    // The classic mistake: a binary made on the build platform, copied
    // into every target's image. A RUN of the target's own is fine.
    let dockerfile = "FROM --platform=$BUILDPLATFORM busybox AS build
RUN mkdir /out && cp /bin/busybox /out/app
FROM busybox
COPY --from=build /out/app /usr/local/bin/app
RUN cp /bin/busybox /usr/local/bin/native
";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let stderr = build(&env, &["--platform", "linux/amd64,linux/arm64", s(&ctx)]);
    let warning = "WARNING: the linux/arm64 image holds a program for another architecture";
    assert!(stderr.contains(warning), "{stderr}");
    assert!(stderr.contains(" - /usr/local/bin/app: linux/amd64\n"), "{stderr}");
    assert!(!stderr.contains("/usr/local/bin/native:"), "the arm64 image's own program is not named: {stderr}");
    assert!(!stderr.contains("the linux/amd64 image holds"), "amd64's is right: {stderr}");
    // Every build says it, cached or not; a one-platform build too.
    let stderr = build(&env, &["--platform", "linux/arm64", s(&ctx)]);
    assert!(stderr.contains(warning) && stderr.contains("executed 0 step(s)"), "{stderr}");
}
