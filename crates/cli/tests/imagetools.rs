//! `polyarch imagetools ...` against the real registry.

use crate::util::*;

fn index_of(raw: &[u8]) -> serde_json::Value {
    serde_json::from_slice(raw).expect("index JSON")
}

fn archs(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn inspect_human_raw_and_json() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let src = format!("{}/library/busybox:latest", reg.host);
    let raw = env.run(&["imagetools", "inspect", "--raw", &src]);
    assert!(raw.status.success());
    assert_eq!(raw.stdout, skopeo_raw(&src), "--raw is byte for byte what the registry serves");

    let human = env.ok(&["imagetools", "inspect", &src]);
    assert!(human.starts_with(&format!("Name:      {src}\nMediaType: application/vnd.oci.image.index.v1+json\nDigest:    sha256:")), "{human}");
    assert!(human.contains("\nManifests:\n  Name:      "), "{human}");
    assert!(human.contains("  Platform:  linux/arm/v7\n"), "{human}");
    assert_eq!(human.matches("Platform:").count(), 9, "{human}");

    let json: serde_json::Value = serde_json::from_str(&env.ok(&["imagetools", "inspect", "--format", "json", &src])).unwrap();
    assert_eq!(json["manifest"]["digest"].as_str().unwrap(), sha256_hex(&raw.stdout));
    assert_eq!(json["manifest"]["manifests"].as_array().unwrap().len(), 9);

    let err = env.fails(&["imagetools", "inspect", &format!("{}/library/busybox:missing", reg.host)]);
    assert!(err.contains("library/busybox:missing"), "{err}");
}

#[test]
fn create_across_repositories_with_two_tags_and_append() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let r = &reg.host;
    // Per-arch images from one repository, written to another under two tags.
    let t1 = format!("{r}/test/tools-a:v1");
    let t2 = format!("{r}/test/tools-b:v1");
    let digest = env
        .ok(&[
            "imagetools", "create", "-t", &t1, "-t", &t2,
            &format!("{r}/library/busybox:latest-amd64"),
            &format!("{r}/library/busybox:latest-arm64"),
        ])
        .trim()
        .to_string();
    let a = skopeo_raw(&t1);
    let b = skopeo_raw(&t2);
    assert_eq!(a, b, "every tag has the same bytes");
    assert_eq!(sha256_hex(&a), digest);
    assert_eq!(archs(&index_of(&a)), ["amd64", "arm64"]);
    for m in index_of(&a)["manifests"].as_array().unwrap() {
        skopeo_raw(&format!("{r}/test/tools-b@{}", m["digest"].as_str().unwrap()));
    }

    // --append adds to what the first tag holds; a later source wins per platform.
    let out = env.run(&[
        "imagetools", "create", "--append", "-t", &t1,
        &format!("{r}/library/busybox:latest-s390x"),
        &format!("{r}/library/busybox:latest-amd64"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let appended = index_of(&skopeo_raw(&t1));
    assert_eq!(archs(&appended), ["amd64", "arm64", "s390x"]);

    // --dry-run writes nothing.
    let t3 = format!("{r}/test/tools-c:v1");
    let dry = env.ok(&["imagetools", "create", "--dry-run", "-t", &t3, &format!("{r}/library/busybox:latest-386")]);
    assert!(dry.contains("\"architecture\": \"386\""), "{dry}");
    env.fails(&["imagetools", "inspect", &t3]);

    // Annotations go on the index.
    env.ok(&[
        "imagetools", "create", "-t", &t3, "--annotation", "index:org.opencontainers.image.title=tools",
        &format!("{r}/library/busybox:latest-386"),
    ]);
    assert_eq!(index_of(&skopeo_raw(&t3))["annotations"]["org.opencontainers.image.title"], "tools");
}

#[test]
fn copying_one_index_keeps_its_digest() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let r = &reg.host;
    let src = format!("{r}/library/busybox:latest");
    let dst = format!("{r}/test/copy:v1");
    let digest = env.ok(&["imagetools", "create", "-t", &dst, &src]).trim().to_string();
    assert_eq!(digest, sha256_hex(&skopeo_raw(&src)));
    assert_eq!(skopeo_raw(&dst), skopeo_raw(&src));
    // The same with --format docker changes the media type, so the digest.
    let dst2 = format!("{r}/test/copy:docker");
    env.ok(&["imagetools", "create", "--format", "docker", "-t", &dst2, &src]);
    let idx = index_of(&skopeo_raw(&dst2));
    assert_eq!(idx["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json");
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 9);
}
