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
    let src = busybox(reg);
    let raw = env.run(&["imagetools", "inspect", "--raw", &src]);
    assert!(raw.status.success());
    assert_eq!(raw.stdout, skopeo_raw(&src), "--raw is byte for byte what the registry serves");

    let human = env.ok(&["imagetools", "inspect", &src]);
    assert!(
        human.starts_with(&format!(
            "Name:      {src}\nMediaType: application/vnd.oci.image.index.v1+json\nDigest:    sha256:"
        )),
        "{human}"
    );
    assert!(human.contains("\nManifests:\n  Name:      "), "{human}");
    assert!(human.contains("  Platform:  linux/arm/v7\n"), "{human}");
    assert_eq!(human.matches("Platform:").count(), 9, "{human}");

    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["imagetools", "inspect", "--format", "json", &src])).unwrap();
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
            "imagetools",
            "create",
            "-t",
            &t1,
            "-t",
            &t2,
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
        "imagetools",
        "create",
        "--append",
        "-t",
        &t1,
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
        "imagetools",
        "create",
        "-t",
        &t3,
        "--annotation",
        "index:org.opencontainers.image.title=tools",
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

/// Uploads `body` as a blob of `repo` with curl; returns its digest.
fn curl_blob(host: &str, repo: &str, body: &[u8]) -> String {
    let digest = sha256_hex(body);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", &format!("http://{host}/v2/{repo}/blobs/uploads/")])
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout).to_string();
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .expect("upload location")
        .trim()
        .to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = if location.starts_with("http") { location.clone() } else { format!("http://{host}{location}") };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    sh(std::process::Command::new("curl")
        .args(["-sSf", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary"])
        .arg(format!("@{}", file.path().display()))
        .arg(format!("{url}{sep}digest={digest}")));
    digest
}

fn curl_manifest(host: &str, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    sh(std::process::Command::new("curl")
        .args(["-sSf", "-X", "PUT", "-H", &format!("Content-Type: {media_type}"), "--data-binary"])
        .arg(format!("@{}", file.path().display()))
        .arg(format!("http://{host}/v2/{repo}/manifests/{reference}")));
}

#[test]
fn attestations_are_shown_with_their_image_and_follow_it() {
    let Some(reg) = shared_registry() else { return };
    if !require(have("curl"), "curl") {
        return;
    }
    let env = Env::new();
    let r = &reg.host;
    // The amd64 image in the repository, then an attestation manifest about it.
    env.ok(&[
        "imagetools",
        "create",
        "-t",
        &format!("{r}/test/att:base"),
        &format!("{r}/library/busybox:latest-amd64"),
    ]);
    let image = index_of(&skopeo_raw(&format!("{r}/test/att:base")))["manifests"][0].clone();
    let config = curl_blob(r, "test/att", b"{}");
    let statement = curl_blob(r, "test/att", br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#);
    let att = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.in-toto+json","digest":"{statement}","size":45}}]}}"#
    );
    let att_digest = sha256_hex(att.as_bytes());
    curl_manifest(r, "test/att", &att_digest, "application/vnd.oci.image.manifest.v1+json", att.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            image,
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": att_digest,
                "size": att.len(),
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.digest": image["digest"],
                    "vnd.docker.reference.type": "attestation-manifest"
                }
            }
        ]
    });
    let index = serde_json::to_vec(&index).unwrap();
    curl_manifest(r, "test/att", "att", "application/vnd.oci.image.index.v1+json", &index);

    let human = env.ok(&["imagetools", "inspect", &format!("{r}/test/att:att")]);
    assert_eq!(human.matches("Platform:").count(), 1, "the attestation is not a platform: {human}");
    assert!(human.contains(&format!("Attestation: {r}/test/att@{att_digest} (attestation-manifest)")), "{human}");
    assert!(!human.contains("unknown/unknown"), "{human}");

    // Copied whole, the attestation stays; replaced by a later source, it goes with its image.
    let kept = format!("{r}/test/att-copy:v1");
    env.ok(&["imagetools", "create", "-t", &kept, &format!("{r}/test/att:att")]);
    assert_eq!(skopeo_raw(&kept), index);
    // Another amd64 image: the same config and layer, a manifest annotation more.
    let mut other: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{r}/library/busybox:latest-amd64"))).unwrap();
    other["annotations"] = serde_json::json!({"org.example.rebuilt": "yes"});
    let other = serde_json::to_vec(&other).unwrap();
    let other_digest = sha256_hex(&other);
    curl_manifest(r, "test/att", &other_digest, "application/vnd.oci.image.manifest.v1+json", &other);
    let replaced = format!("{r}/test/att-replaced:v1");
    let out = env.run(&[
        "imagetools",
        "create",
        "-t",
        &replaced,
        &format!("{r}/test/att:att"),
        &format!("{r}/test/att@{other_digest}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux/amd64"), "a warning names the replaced platform");
    let idx = index_of(&skopeo_raw(&replaced));
    let digests: Vec<&str> =
        idx["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(digests, [other_digest.as_str()], "the attestation went with the image it described");
}

/// buildx's other ways to say what goes in: `--platform` keeps only some
/// platforms, `-f FILE` and a digest or JSON descriptor as SOURCE name
/// manifests of the one repository the command names (the descriptor's
/// annotations and platform going into the entry), `--prefer-index=false`
/// copies one image as it is, `--metadata-file` says what was pushed, and
/// `--dry-run` needs no tag.
#[test]
fn create_filters_platforms_and_reads_descriptors_as_buildx() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let r = &reg.host;
    let src = busybox(reg);
    let index = index_of(&skopeo_raw(&src));
    let dry = env.ok(&["imagetools", "create", "--dry-run", "-p", "linux/arm64,linux/arm/v7", &src]);
    assert_eq!(archs(&serde_json::from_str(&dry).unwrap()), ["arm64", "arm"], "{dry}");

    // Only s390x, with the metadata of the push.
    let only = format!("{r}/test/filtered:s390x");
    let meta = env.dir.path().join("meta.json");
    let digest =
        env.ok(&["imagetools", "create", "--platform", "linux/s390x", "--metadata-file", s(&meta), "-t", &only, &src]);
    let pushed = index_of(&skopeo_raw(&only));
    assert_eq!(archs(&pushed), ["s390x"]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.trim());
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest.trim());
    let err = env.fails(&["imagetools", "create", "-p", "linux/sparc64", "-t", &only, &src]);
    assert!(err.contains("no platform left after filtering"), "{err}");

    // A descriptor from a file, in the tags' repository, with annotations.
    let arm64 =
        index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "arm64").unwrap();
    let mut desc = arm64.clone();
    desc["annotations"] = serde_json::json!({"org.example.note": "from a file"});
    let file = env.dir.path().join("desc.json");
    std::fs::write(&file, desc.to_string()).unwrap();
    let repo = src.rsplit_once(':').unwrap().0.to_string();
    let annotated = format!("{repo}:annotated");
    env.ok(&["imagetools", "create", "-t", &annotated, "-f", s(&file)]);
    let got = index_of(&skopeo_raw(&annotated));
    assert_eq!(got["manifests"][0]["digest"], arm64["digest"]);
    assert_eq!(got["manifests"][0]["annotations"]["org.example.note"], "from a file");
    // A bare digest is read the same way; with two repositories it cannot be.
    let by_digest = format!("{repo}:by-digest");
    env.ok(&["imagetools", "create", "-t", &by_digest, arm64["digest"].as_str().unwrap()]);
    assert_eq!(archs(&index_of(&skopeo_raw(&by_digest))), ["arm64"]);
    let err = env.fails(&["imagetools", "create", "-t", &only, arm64["digest"].as_str().unwrap(), &src]);
    assert!(err.contains("multiple repositories specified, cannot infer repository for"), "{err}");

    // One image copied as it is.
    let copy = format!("{r}/test/copied:arm64");
    let at = format!("{repo}@{}", arm64["digest"].as_str().unwrap());
    let d = env.ok(&["imagetools", "create", "--prefer-index=false", "-t", &copy, &at]);
    assert_eq!(d.trim(), arm64["digest"].as_str().unwrap());
    assert_eq!(sha256_hex(&skopeo_raw(&copy)), d.trim(), "the manifest itself, not an index");

    let err = env.fails(&["imagetools", "create", &src]);
    assert!(err.contains("can't push with no tags specified, please set --tag or --dry-run"), "{err}");
}

/// Docker's way of building each platform on its own machine: `push-by-digest`
/// pushes the manifest under its digest and moves no tag, `name-canonical`
/// adds `NAME@DIGEST` to the metadata's names, and `imagetools create`
/// joins the digests the metadata files give.
#[test]
fn push_by_digest_then_join_the_digests() {
    let Some((env, reg)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "f\n")]);
    let repo = format!("{}/test/by-digest", reg.host);
    let mut digests = Vec::new();
    for p in ["linux/amd64", "linux/arm64"] {
        let meta = env.dir.path().join(format!("meta-{}.json", &p[6..]));
        let spec = format!("type=image,name={repo},push-by-digest=true,name-canonical=true,push=true");
        build_ok(&env, &["--platform", p, "--metadata-file", s(&meta), "-o", &spec, s(&ctx)]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        let digest = m["containerimage.digest"].as_str().unwrap().to_string();
        let names = m["image.name"].as_str().unwrap();
        assert!(names.split(',').any(|n| n == format!("{repo}@{digest}")), "the canonical name: {names}");
        assert_eq!(sha256_hex(&skopeo_raw(&format!("{repo}@{digest}"))), digest, "pushed under its digest");
        digests.push(format!("{repo}@{digest}"));
    }
    let err = env.fails(&["imagetools", "inspect", &format!("{repo}:latest")]);
    assert!(err.contains("latest"), "no tag was pushed: {err}");
    let joined = format!("{repo}:1.0");
    let mut args = vec!["imagetools", "create", "-t", joined.as_str()];
    args.extend(digests.iter().map(String::as_str));
    env.ok(&args);
    assert_eq!(archs(&index_of(&skopeo_raw(&joined))), ["amd64", "arm64"]);
}
