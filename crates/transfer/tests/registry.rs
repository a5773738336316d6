//! Pull and push through the library against a real registry (Debian's
//! docker-registry, started by the shared fixture script) holding the
//! multi-arch busybox fixture.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use polyarch_oci::{Platform, Reference};
use polyarch_registry::{Client, ClientBuilder, DockerConfig};
use polyarch_store::{BlobSource, Store};
use polyarch_transfer::{pull, push, ErrorKind, Event, PlatformSelection, PushOptions};

fn fixtures() -> PathBuf {
    match std::env::var("POLYARCH_FIXTURES") {
        Ok(p) => PathBuf::from(p),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A registry with busybox, stopped on drop.
struct Registry {
    host: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Registry> {
        let have =
            Command::new("sh").args(["-c", "command -v docker-registry"]).output().is_ok_and(|o| o.status.success());
        if !have || !fixtures().join("registry.sh").exists() {
            assert!(!in_ci(), "prerequisite missing under CI=true: docker-registry and the shared fixtures");
            eprintln!("skipping: docker-registry or the shared fixtures are missing");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = Command::new(fixtures().join("registry.sh"))
            .args(["start", "--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "registry.sh: {}", String::from_utf8_lossy(&out.stderr));
        let reg = Registry { host: format!("127.0.0.1:{port}"), port, dir };
        let out = Command::new("python3").arg(fixtures().join("base-images.py")).arg(&reg.host).output().unwrap();
        assert!(out.status.success(), "base-images.py: {}", String::from_utf8_lossy(&out.stderr));
        Some(reg)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(fixtures().join("registry.sh"))
            .args(["stop", "--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

fn client() -> Client {
    ClientBuilder::new().with_docker_config(DockerConfig::empty()).build().unwrap()
}

fn position(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(f).expect("event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_push_through_the_library() {
    let Some(reg) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let client = client();
    let src: Reference = format!("{}/library/busybox", reg.host).parse().unwrap();
    let events = Mutex::new(Vec::new());
    let sink = |e: Event| events.lock().unwrap().push(e);

    // One platform: the index plus that image only, children first.
    let arm = PlatformSelection::One(Platform::parse("linux/arm/v7").unwrap());
    let pulled = pull(&client, &store, &src, &arm, &sink).await.unwrap();
    assert_eq!(pulled.name, format!("{}/library/busybox:latest", reg.host));
    assert_eq!(pulled.images.len(), 1);
    assert_eq!(pulled.images[0].platform.as_ref().unwrap().format(), "linux/arm/v7");
    assert_eq!((pulled.fetched_blobs, pulled.existing_blobs), (2, 0));
    let index = store.get_manifest(&pulled.descriptor).unwrap();
    let children = index.as_index().unwrap().manifests.clone();
    let present: Vec<bool> = children.iter().map(|c| store.exists(&c.digest).unwrap()).collect();
    assert_eq!(present.iter().filter(|p| **p).count(), 1);
    assert_eq!(store.resolve(&pulled.name).unwrap().unwrap().digest, pulled.descriptor.digest);
    {
        let ev = events.lock().unwrap();
        let child = &pulled.images[0].descriptor.digest;
        let last_blob = ev.iter().rposition(|e| matches!(e, Event::BlobDone { .. })).unwrap();
        let child_at = position(&ev, |e| matches!(e, Event::Manifest { digest, .. } if digest == child));
        let index_at =
            position(&ev, |e| matches!(e, Event::Manifest { digest, .. } if *digest == pulled.descriptor.digest));
        assert!(last_blob < child_at && child_at < index_at, "{ev:?}");
        assert!(matches!(ev[0], Event::Resolved { .. }));
    }

    // Again: nothing to fetch.
    let again = pull(&client, &store, &src, &arm, &polyarch_transfer::event::ignore).await.unwrap();
    assert!(again.up_to_date(), "{again:?}");

    // All platforms: the rest is fetched, what is there is skipped.
    let all = pull(&client, &store, &src, &PlatformSelection::All, &polyarch_transfer::event::ignore).await.unwrap();
    assert_eq!(all.images.len(), children.len());
    assert_eq!(all.existing_blobs, 2);
    assert_eq!(all.fetched_blobs, 2 * children.len() - 2);
    assert!(children.iter().all(|c| store.exists(&c.digest).unwrap()));

    // Manifests the store holds are not asked of the registry again: a
    // resolve or a pull asks for the tag alone.
    let child_gets = || {
        let log = std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap();
        log.lines().filter(|l| l.contains("\"GET /v2/library/busybox/manifests/sha256:")).count()
    };
    let before = child_gets();
    assert!(before >= children.len(), "the registry's log names the manifest requests");
    let s390x = Platform::parse("linux/s390x").unwrap();
    let (desc, _, top) =
        polyarch_transfer::resolve_platform(&client, &store, &src, &s390x, &polyarch_transfer::event::ignore)
            .await
            .unwrap();
    assert_eq!(top, pulled.descriptor.digest);
    assert_eq!(desc.platform.as_ref().map(|p| p.format()).as_deref(), Some("linux/s390x"));
    let all = pull(&client, &store, &src, &PlatformSelection::All, &polyarch_transfer::event::ignore).await.unwrap();
    assert!(all.up_to_date(), "{all:?}");
    assert_eq!(child_gets(), before, "no manifest by digest was asked for");

    // A platform the index lacks.
    let sparc = PlatformSelection::One(Platform::parse("linux/sparc64").unwrap());
    let err = pull(&client, &store, &src, &sparc, &polyarch_transfer::event::ignore).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("linux/sparc64"), "{err}");

    // Push the whole index elsewhere: same digest; a second push uploads nothing.
    let dst: Reference = format!("{}/lib/copy:v1", reg.host).parse().unwrap();
    let opts = PushOptions { all_platforms: true, platform: None };
    let pushed = push(&client, &store, &pulled.name, &dst, &opts, &polyarch_transfer::event::ignore).await.unwrap();
    assert_eq!(pushed.descriptor.digest, pulled.descriptor.digest);
    assert_eq!(pushed.platforms.len(), children.len());
    assert_eq!(pushed.mounted_blobs + pushed.uploaded_blobs, 2 * children.len());
    let again = push(&client, &store, &pulled.name, &dst, &opts, &polyarch_transfer::event::ignore).await.unwrap();
    assert_eq!((again.uploaded_blobs, again.mounted_blobs), (0, 0));
    let got = client.get_manifest(&dst).await.unwrap();
    assert_eq!(got.digest(), &pulled.descriptor.digest);

    // One platform by choice: that image manifest alone under the tag.
    let one = PushOptions { all_platforms: false, platform: Some(Platform::parse("linux/s390x").unwrap()) };
    let dst2: Reference = format!("{}/lib/copy:s390x", reg.host).parse().unwrap();
    let pushed = push(&client, &store, &pulled.name, &dst2, &one, &polyarch_transfer::event::ignore).await.unwrap();
    let got = client.get_manifest(&dst2).await.unwrap();
    assert!(got.as_image().is_some());
    assert_eq!(got.digest(), &pushed.descriptor.digest);
    assert_eq!(pushed.platforms.iter().map(|p| p.format()).collect::<Vec<_>>(), ["linux/s390x"]);

    // An image the store does not have.
    let err = push(&client, &store, "nothing:here", &dst2, &one, &polyarch_transfer::event::ignore).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
