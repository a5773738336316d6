//! Faults a real registry cannot show, against an in-process fake server.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use polyarch_oci::{media_type, Descriptor, Digest, RawManifest, Reference};
use polyarch_registry::{ClientBuilder, DockerConfig, Error, ErrorKind, Event, RegistryConfig, RetryPolicy};
use support::fake::{serve, Reply, Req};
use support::{builder, client, reference};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

fn ping(req: &Req) -> Option<Reply> {
    (req.route() == "/v2/").then(|| Reply::status(200, "{}"))
}

fn blob_desc(data: &[u8]) -> Descriptor {
    Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(data), data.len() as u64)
}

#[tokio::test]
async fn blob_not_matching_its_digest_fails_at_the_end() {
    let fake = serve(|req| ping(req).unwrap_or_else(|| Reply::status(200, "tampered!"))).await;
    let c = client(RegistryConfig::default());
    let r = reference(&fake.host(), "x/y", None);
    let desc = blob_desc(b"original!");
    let items: Vec<_> = c.get_blob(&r, &desc).await.unwrap().collect().await;
    assert!(items[0].is_ok());
    match items.last() {
        Some(Err(Error::DigestMismatch { expected, actual, .. })) => {
            assert_eq!(expected, &desc.digest);
            assert_eq!(actual, &Digest::sha256(b"tampered!"));
        }
        other => panic!("{other:?}"),
    }
    // More bytes than the descriptor says: an error as soon as they arrive.
    let e = c.get_blob_bytes(&r, &blob_desc(b"short"), 100).await.unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { more: true, .. }), "{e}");
}

#[tokio::test]
async fn manifest_over_4_mib_is_refused() {
    let big = vec![b' '; 4 * 1024 * 1024 + 10];
    let big2 = big.clone();
    let fake = serve(move |req| {
        ping(req).unwrap_or_else(|| match req.route() {
            "/v2/x/manifests/announced" => Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], big.clone()),
            _ => Reply::UntilClose { status: 200, headers: vec![], body: big2.clone() },
        })
    })
    .await;
    let c = client(RegistryConfig::default());
    for tag in ["announced", "unannounced"] {
        let e = c.get_manifest(&reference(&fake.host(), "x", Some(tag))).await.unwrap_err();
        assert!(matches!(e, Error::TooLarge { what: "manifest", .. }), "{tag}: {e}");
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
}

#[tokio::test]
async fn manifest_digest_is_checked_and_schema1_refused() {
    let fake = serve(|req| {
        ping(req).unwrap_or_else(|| match req.route() {
            "/v2/x/manifests/v1" => Reply::with(
                200,
                &[
                    ("Content-Type", media_type::OCI_MANIFEST),
                    ("Docker-Content-Digest", &Digest::sha256(b"x").to_string()),
                ],
                MANIFEST,
            ),
            "/v2/x/manifests/old" => Reply::with(
                200,
                &[("Content-Type", media_type::DOCKER_SCHEMA1_SIGNED)],
                r#"{"schemaVersion":1,"name":"x","tag":"old","fsLayers":[]}"#,
            ),
            _ => Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], MANIFEST),
        })
    })
    .await;
    let c = client(RegistryConfig::default());
    let e = c.get_manifest(&reference(&fake.host(), "x", Some("v1"))).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let e = c.get_manifest(&reference(&fake.host(), "x", Some("old"))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("schema 1"), "{e}");
    let by_digest = Reference { digest: Some(Digest::sha256(b"other")), ..reference(&fake.host(), "x", None) };
    let e = c.get_manifest(&by_digest).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let good = Reference { digest: Some(Digest::sha256(MANIFEST.as_bytes())), ..by_digest };
    c.get_manifest(&good).await.unwrap();
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_retried() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let fake = serve(move |req| {
        ping(req).unwrap_or_else(|| {
            if n2.fetch_add(1, Ordering::SeqCst) == 0 {
                let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
                Reply::with(429, &[("Retry-After", "1")], body)
            } else {
                Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], MANIFEST)
            }
        })
    })
    .await;
    let policy = RetryPolicy { max_backoff: Duration::from_secs(2), ..RetryPolicy::fast() };
    let c = builder(RegistryConfig::default()).with_retry_policy(policy).build().unwrap();
    let start = Instant::now();
    c.get_manifest(&reference(&fake.host(), "x", Some("v1"))).await.unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert!(start.elapsed() >= Duration::from_millis(950), "{:?}", start.elapsed());
}

#[tokio::test]
async fn unavailable_forever_gives_up_within_the_bound() {
    let fake = serve(|req| ping(req).unwrap_or_else(|| Reply::status(503, "busy"))).await;
    let c = client(RegistryConfig::default());
    let e = c.get_manifest(&reference(&fake.host(), "x", Some("v1"))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary);
    assert!(matches!(e, Error::GaveUp { attempts: 5, .. }), "{e:?}");
    assert!(e.to_string().contains("gave up after 5 attempts"), "{e}");
    // The last failure is in the message once, not repeated as a cause.
    assert!(std::error::Error::source(&e).is_none(), "{e:?}");
    assert_eq!(e.to_string().matches("503").count(), 1, "{e}");
    assert_eq!(fake.requests_to("/v2/x/manifests/v1").len(), 5);
}

#[tokio::test]
async fn dropped_connection_mid_body_is_resumed_with_range() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d2 = data.clone();
    let fake = serve(move |req| {
        ping(req).unwrap_or_else(|| match req.header("Range") {
            None => Reply::Cut { status: 200, headers: vec![], len: d2.len(), body: d2[..40_000].to_vec() },
            // The second attempt ignores Range on one route and honours it on the other.
            Some(_) if req.route().contains("norange") => Reply::status(200, d2.clone()),
            Some(range) => {
                let from: usize = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
                let cr = format!("bytes {from}-{}/{}", d2.len() - 1, d2.len());
                Reply::with(206, &[("Content-Range", &cr)], d2[from..].to_vec())
            }
        })
    })
    .await;
    let events = Arc::new(Mutex::new(0usize));
    let ev = events.clone();
    let c = builder(RegistryConfig::default())
        .with_progress(move |e| {
            if let Event::Bytes { .. } = e {
                *ev.lock().unwrap() += 1;
            }
        })
        .build()
        .unwrap();
    let desc = blob_desc(&data);
    for repo in ["x/range", "x/norange"] {
        let got = c.get_blob(&reference(&fake.host(), repo, None), &desc).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), &data[..], "{repo}");
    }
    assert!(fake.requests_to(&format!("/v2/x/range/blobs/{}", desc.digest)).len() == 2);
    assert!(*events.lock().unwrap() > 0);
}

#[tokio::test]
async fn connection_dropped_every_time_is_a_temporary_error() {
    let fake = serve(|req| {
        ping(req).unwrap_or_else(|| Reply::Cut { status: 200, headers: vec![], len: 1000, body: vec![1; 10] })
    })
    .await;
    let c = client(RegistryConfig::default());
    let items: Vec<_> =
        c.get_blob(&reference(&fake.host(), "x", None), &blob_desc(&[1; 1000])).await.unwrap().collect().await;
    let e = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
}

#[tokio::test]
async fn manifest_and_tag_list_cut_short_are_fetched_again() {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let fake = serve(move |req| {
        ping(req).unwrap_or_else(|| {
            let first = seen.fetch_add(1, Ordering::SeqCst) & 1 == 0;
            let (ct, body): (&str, Vec<u8>) = match req.route() {
                "/v2/x/tags/list" => ("application/json", br#"{"name":"x","tags":["a","b"]}"#.to_vec()),
                _ => (media_type::OCI_MANIFEST, MANIFEST.as_bytes().to_vec()),
            };
            let headers = vec![("Content-Type".to_string(), ct.to_string())];
            if first {
                // Every other answer stops a few bytes in.
                Reply::Cut { status: 200, headers, len: body.len(), body: body[..20].to_vec() }
            } else {
                Reply::Full { status: 200, headers, body }
            }
        })
    })
    .await;
    let c = client(RegistryConfig::default());
    let m = c.get_manifest(&reference(&fake.host(), "x", Some("v1"))).await.unwrap();
    assert_eq!(m.bytes().as_ref(), MANIFEST.as_bytes());
    assert_eq!(fake.requests_to("/v2/x/manifests/v1").len(), 2);
    assert_eq!(c.tags(&reference(&fake.host(), "x", None)).await.unwrap(), ["a", "b"]);
    assert_eq!(fake.requests_to("/v2/x/tags/list").len(), 2);
}

#[tokio::test]
async fn redirect_to_storage_drops_authorization() {
    let storage = serve(|_| Reply::status(200, "layer-bytes")).await;
    let storage_host = format!("localhost:{}", storage.port);
    let fake = serve(move |req| match (req.route(), req.header("Authorization")) {
        (_, None) => Reply::with(401, &[("WWW-Authenticate", r#"Basic realm="fake""#)], ""),
        ("/v2/", Some(_)) => Reply::status(200, "{}"),
        (_, Some(_)) => Reply::with(307, &[("Location", &format!("http://{storage_host}/blob?sig=1"))], ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let creds = support::docker_config(dir.path(), &fake.host(), "u", "p");
    let c = builder(RegistryConfig::default()).with_docker_config(creds).build().unwrap();
    let got = c.get_blob_bytes(&reference(&fake.host(), "x", None), &blob_desc(b"layer-bytes"), 100).await.unwrap();
    assert_eq!(got.as_ref(), b"layer-bytes");
    let at_storage = storage.requests_to("/blob");
    assert_eq!(at_storage.len(), 1);
    assert!(at_storage[0].header("Authorization").is_none());
}

/// A token server: `t1` is refused after its first use, `t2` works.
#[tokio::test]
async fn bearer_tokens_are_cached_scoped_and_refreshed_on_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let used_t1 = Arc::new(AtomicUsize::new(0));
    let (i2, u2) = (issued.clone(), used_t1.clone());
    let fake = Arc::new(Mutex::new(String::new()));
    let host = fake.clone();
    let server = serve(move |req| {
        let challenge = format!(r#"Bearer realm="http://{}/token",service="fake registry""#, host.lock().unwrap());
        let deny = || {
            Reply::with(
                401,
                &[("WWW-Authenticate", challenge.as_str())],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
        };
        match req.route() {
            "/token" => {
                assert!(
                    req.path.contains("service=fake+registry") || req.path.contains("service=fake%20registry"),
                    "{}",
                    req.path
                );
                assert!(req.path.contains("scope=repository%3Ax%3Apull"), "{}", req.path);
                let n = i2.fetch_add(1, Ordering::SeqCst) + 1;
                Reply::status(200, format!(r#"{{"token":"t{n}","expires_in":300}}"#))
            }
            _ => match req.header("Authorization") {
                Some("Bearer t1") if u2.fetch_add(1, Ordering::SeqCst) == 0 => {
                    Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], MANIFEST)
                }
                Some("Bearer t2") => Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], MANIFEST),
                _ => deny(),
            },
        }
    })
    .await;
    *fake.lock().unwrap() = server.host();
    let c = client(RegistryConfig::default());
    let r = reference(&server.host(), "x", Some("v1"));
    c.get_manifest(&r).await.unwrap();
    c.get_manifest(&r).await.unwrap();
    c.get_manifest(&r).await.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one token, then one refresh after the 401");
}

#[tokio::test]
async fn identity_token_uses_oauth2_post() {
    let fake = Arc::new(Mutex::new(String::new()));
    let host = fake.clone();
    let server = serve(move |req| {
        let challenge = format!(r#"Bearer realm="http://{}/token",service="svc""#, host.lock().unwrap());
        match (req.method.as_str(), req.route()) {
            ("POST", "/token") => {
                let body = String::from_utf8_lossy(&req.body).to_string();
                assert!(
                    body.contains("grant_type=refresh_token") && body.contains("refresh_token=my-refresh"),
                    "{body}"
                );
                Reply::status(200, r#"{"access_token":"ok","expires_in":60}"#)
            }
            (_, _) if req.header("Authorization") == Some("Bearer ok") => {
                Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], MANIFEST)
            }
            _ => Reply::with(401, &[("WWW-Authenticate", challenge.as_str())], ""),
        }
    })
    .await;
    *fake.lock().unwrap() = server.host();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, format!(r#"{{"auths":{{"{}":{{"identitytoken":"my-refresh"}}}}}}"#, server.host())).unwrap();
    let c = ClientBuilder::new()
        .with_docker_config(DockerConfig::load_from(&path).unwrap())
        .with_retry_policy(RetryPolicy::fast())
        .build()
        .unwrap();
    c.get_manifest(&reference(&server.host(), "x", Some("v1"))).await.unwrap();
    c.check_login(&server.host()).await.unwrap();
}

#[tokio::test]
async fn token_answer_cut_short_is_asked_for_again() {
    let fake = Arc::new(Mutex::new(String::new()));
    let host = fake.clone();
    let tokens = Arc::new(AtomicUsize::new(0));
    let t2 = tokens.clone();
    let server = serve(move |req| {
        let challenge = format!(r#"Bearer realm="http://{}/token",service="svc""#, host.lock().unwrap());
        match req.route() {
            "/token" => {
                let body = br#"{"token":"ok","expires_in":60}"#.to_vec();
                if t2.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::Cut { status: 200, headers: vec![], len: body.len(), body: body[..5].to_vec() }
                } else {
                    Reply::status(200, body)
                }
            }
            _ if req.header("Authorization") == Some("Bearer ok") => {
                Reply::with(200, &[("Content-Type", media_type::OCI_MANIFEST)], MANIFEST)
            }
            _ => Reply::with(401, &[("WWW-Authenticate", challenge.as_str())], ""),
        }
    })
    .await;
    *fake.lock().unwrap() = server.host();
    let c = client(RegistryConfig::default());
    c.get_manifest(&reference(&server.host(), "x", Some("v1"))).await.unwrap();
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failed_chunk_restarts_the_upload_from_post() {
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let desc = blob_desc(&data);
    let patches = Arc::new(AtomicUsize::new(0));
    let p2 = patches.clone();
    let received = Arc::new(Mutex::new(Vec::<u8>::new()));
    let rcv = received.clone();
    let fake = serve(move |req| {
        ping(req).unwrap_or_else(|| match req.method.as_str() {
            "HEAD" => Reply::status(404, ""),
            "POST" => {
                rcv.lock().unwrap().clear();
                Reply::with(202, &[("Location", "/v2/x/blobs/uploads/u1?_state=abc")], "")
            }
            "PATCH" => {
                assert!(req.path.contains("_state=abc"));
                // The second chunk fails once.
                if p2.fetch_add(1, Ordering::SeqCst) == 1 {
                    return Reply::status(503, "");
                }
                let start = rcv.lock().unwrap().len();
                let range = req.header("Content-Range").unwrap();
                assert_eq!(range, format!("{}-{}", start, start + req.body.len() - 1));
                rcv.lock().unwrap().extend_from_slice(&req.body);
                Reply::with(202, &[("Location", "/v2/x/blobs/uploads/u1?_state=abc")], "")
            }
            "PUT" => {
                assert!(req.path.contains("?_state=abc&digest=sha256%3A"), "{}", req.path);
                Reply::status(201, "")
            }
            "DELETE" => Reply::status(204, ""),
            m => panic!("unexpected {m}"),
        })
    })
    .await;
    let c = builder(RegistryConfig::default()).with_chunk_threshold(1000).with_chunk_size(1024).build().unwrap();
    let r = reference(&fake.host(), "x", None);
    c.push_blob(&r, &desc, &bytes::Bytes::from(data.clone())).await.unwrap();
    assert_eq!(fake.log.lock().unwrap().iter().filter(|r| r.method == "POST").count(), 2);
    assert_eq!(received.lock().unwrap().as_slice(), &data[..]);
}

#[tokio::test]
async fn push_manifest_checks_returned_digest() {
    let fake = serve(|req| {
        ping(req)
            .unwrap_or_else(|| Reply::with(201, &[("Docker-Content-Digest", &Digest::sha256(b"nope").to_string())], ""))
    })
    .await;
    let c = client(RegistryConfig::default());
    let m = RawManifest::from_bytes(MANIFEST.as_bytes().to_vec(), None).unwrap();
    let e = c.put_manifest(&reference(&fake.host(), "x", Some("v1")), &m).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let put = &fake.requests_to("/v2/x/manifests/v1")[0];
    assert_eq!(put.header("Content-Type"), Some(media_type::OCI_MANIFEST));
    assert_eq!(put.body, MANIFEST.as_bytes());
}
