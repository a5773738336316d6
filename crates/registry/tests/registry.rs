//! Against a real registry (CNCF distribution 2.8 from shared/fixtures).

mod support;

use bytes::Bytes;
use futures_util::StreamExt;
use polyarch_oci::{media_type, Descriptor, Digest, RawManifest, Reference};
use polyarch_registry::{CopyOutcome, ErrorKind, PushOutcome, RegistryConfig};
use support::{builder, client, docker_config, reference, registry, Mode};

fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn unique(name: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test/{name}-{n}")
}

fn with_digest(r: &Reference, d: &Digest) -> Reference {
    Reference { tag: None, digest: Some(d.clone()), ..r.clone() }
}

/// A tiny image (config + one layer) pushed to `r`; returns its manifest.
async fn push_small_image(c: &polyarch_registry::Client, r: &Reference, seed: u64) -> RawManifest {
    let config = Bytes::from(format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#));
    let layer = pseudo_random(2000, seed);
    let cd = Descriptor::new(media_type::OCI_CONFIG, Digest::sha256(&config), config.len() as u64);
    let ld = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(&layer), layer.len() as u64);
    c.push_blob(r, &cd, &config).await.expect("push config");
    c.push_blob(r, &ld, &layer).await.expect("push layer");
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": cd, "layers": [ld],
    });
    let m = RawManifest::from_bytes(serde_json::to_vec(&m).unwrap(), Some(media_type::OCI_MANIFEST)).unwrap();
    let d = c.put_manifest(r, &m).await.expect("put manifest");
    assert_eq!(&d, m.digest());
    m
}

#[tokio::test]
async fn pulls_index_children_and_verified_blobs() {
    let Some(reg) = registry(Mode::Plain) else { return };
    let c = client(RegistryConfig::default());
    let r = reg.reference("library/busybox", Some("latest"));
    let index = c.get_manifest(&r).await.expect("index");
    let list = index.as_index().expect("an index");
    assert_eq!(list.manifests.len(), 9);
    let head = c.head_manifest(&r).await.unwrap().expect("head");
    assert_eq!(&head.digest, index.digest());
    assert_eq!(head.media_type, media_type::OCI_INDEX);
    for child in &list.manifests {
        let m = c.get_manifest(&with_digest(&r, &child.digest)).await.expect("child");
        assert_eq!(m.digest(), &child.digest);
        let img = m.as_image().expect("image manifest");
        let config = c.get_blob_bytes(&r, &img.config, 1 << 20).await.expect("config");
        assert_eq!(Digest::sha256(&config), img.config.digest);
        for layer in &img.layers {
            let mut s = c.get_blob(&r, layer).await.expect("layer");
            assert_eq!(s.size(), layer.size);
            let mut n = 0u64;
            while let Some(chunk) = s.next().await {
                n += chunk.expect("verified chunk").len() as u64;
            }
            assert_eq!(n, layer.size);
        }
    }
    let tags = c.tags(&r).await.unwrap();
    assert!(tags.contains(&"latest".to_string()) && tags.contains(&"latest-arm64".to_string()), "{tags:?}");
}

#[tokio::test]
async fn missing_manifest_and_blob() {
    let Some(reg) = registry(Mode::Plain) else { return };
    let c = client(RegistryConfig::default());
    let r = reg.reference("library/busybox", Some("nope"));
    let e = c.get_manifest(&r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), format!("{}/library/busybox:nope: manifest unknown (MANIFEST_UNKNOWN)", reg.host()));
    assert!(c.head_manifest(&r).await.unwrap().is_none());
    assert!(c.blob_exists(&r, &Digest::sha256(b"nothing")).await.unwrap().is_none());
    let missing = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(b"nothing"), 7);
    let e = c.get_blob(&r, &missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn pushes_blobs_monolithic_and_chunked() {
    let Some(reg) = registry(Mode::Plain) else { return };
    let c =
        builder(RegistryConfig::default()).with_chunk_threshold(64 * 1024).with_chunk_size(100_000).build().unwrap();
    let r = reg.reference(&unique("push"), None);
    for (len, seed) in [(0usize, 0u64), (10_000, 1), (350_000, 2)] {
        let data = pseudo_random(len, seed);
        let desc = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(&data), len as u64);
        assert_eq!(c.push_blob(&r, &desc, &data).await.unwrap(), PushOutcome::Uploaded);
        assert_eq!(c.blob_exists(&r, &desc.digest).await.unwrap(), Some(len as u64));
        assert_eq!(c.get_blob(&r, &desc).await.unwrap().bytes().await.unwrap(), data);
        assert_eq!(c.push_blob(&r, &desc, &data).await.unwrap(), PushOutcome::Existed);
    }
    // Content that does not match its descriptor is refused before the registry commits it.
    let data = pseudo_random(1000, 3);
    let wrong = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(b"other"), 1000);
    let e = c.push_blob(&r, &wrong, &data).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(c.blob_exists(&r, &wrong.digest).await.unwrap().is_none());
}

#[tokio::test]
async fn mounts_and_copies_across_repositories() {
    let Some(reg) = registry(Mode::Plain) else { return };
    let c = client(RegistryConfig::default());
    let src = reg.reference("library/busybox", Some("latest-amd64"));
    let m = c.get_manifest(&src).await.unwrap();
    let img = m.as_image().unwrap().clone();
    let layer = &img.layers[0];

    let dst = reg.reference(&unique("mount"), Some("v1"));
    assert!(c.mount_blob(&dst, &src.path, &layer.digest).await.unwrap());
    assert!(c.blob_exists(&dst, &layer.digest).await.unwrap().is_some());
    // A blob the source does not have: the registry declines.
    assert!(!c.mount_blob(&dst, &src.path, &Digest::sha256(b"absent")).await.unwrap());

    let dst2 = reg.reference(&unique("copy"), Some("v1"));
    assert_eq!(c.copy_blob(&src, &dst2, &img.config).await.unwrap(), CopyOutcome::Mounted);
    assert_eq!(c.copy_blob(&src, &dst2, &img.config).await.unwrap(), CopyOutcome::Existed);
    // Another name for the same registry: no mount possible, bytes are streamed.
    let other = reference(&format!("localhost:{}", reg.port), &unique("stream"), Some("v1"));
    assert_eq!(c.copy_blob(&src, &other, layer).await.unwrap(), CopyOutcome::Uploaded);
    assert_eq!(c.copy_blob(&src, &other, &img.config).await.unwrap(), CopyOutcome::Uploaded);
    let d = c.put_manifest(&other, &m).await.unwrap();
    assert_eq!(&d, m.digest());
    assert_eq!(c.get_manifest(&other).await.unwrap().bytes(), m.bytes());
}

#[tokio::test]
async fn puts_manifests_by_tag_and_digest() {
    let Some(reg) = registry(Mode::Plain) else { return };
    let c = client(RegistryConfig::default());
    let r = reg.reference(&unique("manifests"), Some("v1"));
    let m = push_small_image(&c, &r, 11).await;
    let by_tag = c.get_manifest(&r).await.unwrap();
    assert_eq!(by_tag.bytes(), m.bytes());
    let other = push_small_image(&c, &Reference { tag: Some("v2".into()), ..r.clone() }, 12).await;
    let by_digest = with_digest(&r, other.digest());
    assert_eq!(c.put_manifest(&by_digest, &other).await.unwrap(), *other.digest());
    assert_eq!(c.head_manifest(&by_digest).await.unwrap().unwrap().digest, *other.digest());
    // A digest reference that does not match the bytes is refused locally.
    let e = c.put_manifest(&with_digest(&r, m.digest()), &other).await.unwrap_err();
    assert!(matches!(e, polyarch_registry::Error::DigestMismatch { .. }), "{e}");
    // A manifest whose blobs are missing: the registry's error is shown.
    let orphan = serde_json::json!({"schemaVersion":2,"mediaType":media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, Digest::sha256(b"no"), 2), "layers": []});
    let orphan = RawManifest::from_bytes(serde_json::to_vec(&orphan).unwrap(), None).unwrap();
    let e = c.put_manifest(&r, &orphan).await.unwrap_err();
    assert!(e.to_string().contains("MANIFEST_BLOB_UNKNOWN"), "{e}");
}

#[tokio::test]
async fn mirror_for_docker_hub() {
    let Some(reg) = registry(Mode::Plain) else { return };
    let cfg = RegistryConfig::parse(&format!(
        "[registry.\"docker.io\"]\nmirrors = [\"{h}\"]\n[registry.\"{h}\"]\nhttp = true\n",
        h = reg.host()
    ))
    .unwrap();
    let c = client(cfg);
    let r = reference("docker.io", "library/busybox", Some("latest"));
    let index = c.get_manifest(&r).await.expect("through the mirror");
    let child = &index.as_index().unwrap().manifests[0];
    let m = c.get_manifest(&with_digest(&r, &child.digest)).await.unwrap();
    let config = &m.as_image().unwrap().config;
    c.get_blob(&r, config).await.unwrap().bytes().await.unwrap();
    // A mirror with an http:// URL and a path prefix that does not exist falls through to the next.
    let cfg = RegistryConfig::parse(&format!(
        "[registry.\"docker.io\"]\nmirrors = [\"http://{h}/nothing-here\", \"http://{h}\"]\n",
        h = reg.host()
    ))
    .unwrap();
    let c = client(cfg);
    assert_eq!(c.get_manifest(&r).await.unwrap().digest(), index.digest());
}

#[tokio::test]
async fn a_mirrors_answer_is_named_when_the_origin_cannot_be_reached() {
    let Some(reg) = registry(Mode::Plain) else { return };
    // An origin that refuses connections (a port just freed), mirrored by
    // the real registry, which does not hold the tag.
    let origin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let cfg = RegistryConfig::parse(&format!(
        "[registry.\"{origin}\"]\nmirrors = [\"{h}\"]\n[registry.\"{h}\"]\nhttp = true\n",
        h = reg.host()
    ))
    .unwrap();
    let c = client(cfg);
    let r = reference(&origin, "library/busybox", Some("no-such-tag"));
    let start = std::time::Instant::now();
    let e = c.get_manifest(&r).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("cannot reach registry {origin}: connection refused; ")), "{msg}");
    assert!(msg.contains(&format!("mirror {}: ", reg.host())) && msg.contains("MANIFEST_UNKNOWN"), "{msg}");
    // Kind and status stay the origin's.
    assert_eq!((e.kind(), e.status()), (ErrorKind::Io, None), "{e:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    // A tag the mirror has is served by it, the origin never asked.
    let there = reference(&origin, "library/busybox", Some("latest"));
    c.get_manifest(&there).await.expect("through the mirror");
}

#[tokio::test]
async fn registry_down_is_a_clear_connection_error() {
    let Some(reg) = registry(Mode::Disposable) else { return };
    let c = client(RegistryConfig::default());
    c.ping(&reg.host()).await.unwrap();
    reg.stop();
    let c = client(RegistryConfig::default());
    let e = c.get_manifest(&reg.reference("library/busybox", Some("latest"))).await.unwrap_err();
    assert_eq!(e.to_string(), format!("cannot reach registry {}: connection refused", reg.host()));
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[tokio::test]
async fn basic_auth_over_http() {
    let Some(reg) = registry(Mode::Auth) else { return };
    let dir = tempfile::tempdir().unwrap();
    let r = reg.reference(&unique("auth"), Some("v1"));

    let anon = client(RegistryConfig::default());
    let e = anon.get_manifest(&r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    eprintln!("anonymous: {e}");

    let bad = builder(RegistryConfig::default())
        .with_docker_config(docker_config(dir.path(), &reg.host(), "testuser", "wrong-secret-pw"))
        .build()
        .unwrap();
    let e = bad.get_manifest(&r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    let msg = format!("{e} {e:?}");
    eprintln!("wrong password: {e}");
    assert!(msg.contains(&reg.host()) && !msg.contains("wrong-secret-pw"), "{msg}");

    let good_dir = tempfile::tempdir().unwrap();
    let good = builder(RegistryConfig::default())
        .with_docker_config(docker_config(good_dir.path(), &reg.host(), "testuser", "testpassword"))
        .build()
        .unwrap();
    good.check_login(&reg.host()).await.unwrap();
    assert_eq!(bad.check_login(&reg.host()).await.unwrap_err().kind(), ErrorKind::Unauthorized);
    assert_eq!(anon.check_login(&reg.host()).await.unwrap_err().kind(), ErrorKind::Unauthorized);
    let mut probe = polyarch_registry::DockerConfig::empty();
    probe.set_credential(&reg.host(), "testuser", "testpassword");
    builder(RegistryConfig::default())
        .with_docker_config(probe)
        .build()
        .unwrap()
        .check_login(&reg.host())
        .await
        .unwrap();
    let m = push_small_image(&good, &r, 21).await;
    assert_eq!(good.get_manifest(&r).await.unwrap().digest(), m.digest());
}

#[tokio::test]
async fn auth_over_tls_with_configured_ca() {
    let Some(reg) = registry(Mode::AuthTls) else { return };
    let dir = tempfile::tempdir().unwrap();
    let creds = docker_config(dir.path(), &reg.host(), "testuser", "testpassword");
    let r = reg.reference(&unique("tls"), Some("v1"));

    let untrusted = builder(RegistryConfig::default()).with_docker_config(creds.clone()).build().unwrap();
    let e = untrusted.get_manifest(&r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    eprintln!("untrusted: {e}");

    let cfg = RegistryConfig::parse(&format!("[registry.\"{}\"]\nca = [{:?}]\n", reg.host(), reg.ca())).unwrap();
    let c = builder(cfg).with_docker_config(creds.clone()).build().unwrap();
    let m = push_small_image(&c, &r, 31).await;
    assert_eq!(c.get_manifest(&r).await.unwrap().digest(), m.digest());

    let insecure = builder(RegistryConfig::default()).with_docker_config(creds).with_insecure(true).build().unwrap();
    assert_eq!(insecure.get_manifest(&r).await.unwrap().digest(), m.digest());
}
