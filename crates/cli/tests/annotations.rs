//! `polyarch build --annotation` (and BuildKit's `annotation.*` output
//! attributes) against the real registry: each type lands where buildx
//! puts it (image manifests, the index, its entries, an OCI layout's
//! `index.json`), platform selectors pick their image, and what a build
//! cannot make is refused before anything is written.

use std::process::Command;

use polyarch_store::Store;

use crate::util::*;

const DOCKERFILE: &str = "FROM busybox\nARG TARGETARCH\nCOPY <<EOF /arch\n$TARGETARCH\nEOF\n";

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn entry_for<'a>(index: &'a serde_json::Value, arch: &str) -> &'a serde_json::Value {
    index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == arch).unwrap()
}

#[test]
fn every_annotation_type_of_a_multi_platform_push() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", DOCKERFILE)]);
    let target = format!("{}/annotated/multi:1", reg.host);
    build_ok(
        &env,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &target,
            "--push",
            "--annotation",
            "org.example.all=yes",
            "--annotation",
            "manifest[linux/arm64]:org.example.arch=arm64",
            "--annotation",
            "index:org.opencontainers.image.title=multi",
            "--annotation",
            "manifest-descriptor[linux/amd64]:org.example.entry=amd64",
            "--annotation",
            "index,manifest-descriptor:org.example.both=1",
            s(&ctx),
        ],
    );
    let raw = skopeo_raw(&target);
    assert_eq!(env.ok(&["imagetools", "inspect", "--raw", &target]).trim_end().as_bytes(), raw.trim_ascii_end());
    let index = json(&raw);
    assert_eq!(index["annotations"]["org.opencontainers.image.title"], "multi");
    assert_eq!(index["annotations"]["org.example.both"], "1");
    assert!(index["annotations"].get("org.example.all").is_none(), "{index}");
    let (amd, arm) = (entry_for(&index, "amd64"), entry_for(&index, "arm64"));
    assert_eq!(amd["annotations"]["org.example.entry"], "amd64");
    assert_eq!(amd["annotations"]["org.example.both"], "1");
    assert!(arm["annotations"].get("org.example.entry").is_none(), "{index}");
    for (entry, arch) in [(amd, None), (arm, Some("arm64"))] {
        let at = format!("{}/annotated/multi@{}", reg.host, entry["digest"].as_str().unwrap());
        let m = json(&skopeo_raw(&at));
        assert_eq!(sha256_hex(&skopeo_raw(&at)), entry["digest"].as_str().unwrap());
        assert_eq!(m["annotations"]["org.example.all"], "yes", "{m}");
        assert_eq!(m["annotations"].get("org.example.arch").and_then(|v| v.as_str()), arch, "{m}");
        assert!(m["annotations"].get("org.example.entry").is_none(), "{m}");
    }
    // The store names the same index.
    let store = Store::open(env.root()).unwrap();
    assert_eq!(store.resolve(&target).unwrap().unwrap().digest.to_string(), sha256_hex(&raw));
}

#[test]
fn a_one_platform_oci_archive_and_the_store_carry_annotations() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", DOCKERFILE)]);
    let archive = env.dir.path().join("one.tar");
    let spec = format!("type=oci,dest={},annotation.org.example.output=o", s(&archive));
    let (_, _) = build_ok(
        &env,
        &[
            "-t",
            "one:1",
            "-o",
            &spec,
            "-o",
            "type=image",
            "--annotation",
            "org.opencontainers.image.title=one",
            "--annotation",
            "index-descriptor:org.example.layout=yes",
            s(&ctx),
        ],
    );
    let layout = env.dir.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let entry = &top["manifests"][0];
    assert_eq!(entry["annotations"]["org.example.layout"], "yes", "{top}");
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "1", "{top}");
    let digest = entry["digest"].as_str().unwrap();
    let m = json(&std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap());
    assert_eq!(m["annotations"]["org.opencontainers.image.title"], "one", "{m}");
    assert_eq!(m["annotations"]["org.example.output"], "o", "{m}");
    assert!(m["annotations"].get("org.example.layout").is_none(), "{m}");
    let store = Store::open(env.root()).unwrap();
    assert_eq!(store.resolve("docker.io/library/one:1").unwrap().unwrap().digest.to_string(), digest);
    if require(have("skopeo"), "skopeo") {
        let raw = sh(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci-archive:{}", s(&archive))));
        assert_eq!(sha256_hex(raw.as_bytes()), digest);
    }
}

#[test]
fn annotations_a_build_cannot_make_are_refused() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", DOCKERFILE)]);
    for (flag, why) in [
        ("index:k=v", "a build for one platform makes no index"),
        ("manifest-descriptor:k=v", "a build for one platform makes no index"),
        ("layer:k=v", "unknown annotation type \"layer\""),
        ("index[linux/amd64]:k=v", "index annotations take no platform"),
        ("novalue", "expected KEY=VALUE"),
    ] {
        let err = env.fails(&["build", "--progress", "plain", "-t", "refused:1", "--annotation", flag, s(&ctx)]);
        assert!(err.contains(flag) && err.contains(why), "{flag}: {err}");
    }
    let err = env.fails(&[
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "refused:2",
        "-o",
        "type=image,oci-mediatypes=false",
        "--annotation",
        "k=v",
        s(&ctx),
    ]);
    assert!(err.contains("oci-mediatypes=false"), "{err}");
    let store = Store::open(env.root()).unwrap();
    assert!(store.list().unwrap().iter().all(|(n, _)| !n.contains("refused")), "nothing is named");
}
