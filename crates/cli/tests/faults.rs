//! Pull, push, `build --push` and `imagetools create` through a proxy that
//! injects faults in front of a real registry (plain, `--auth`, `--tls`):
//! transient faults are retried and the command succeeds; permanent ones
//! fail with an error naming what failed, and the registry (asked
//! directly) holds no tag whose children are missing.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::util::api;
use crate::util::proxy::{Fault, FaultProxy, Rule};
use crate::util::*;

/// The timeout the commands run with, so hangs cost seconds.
const TIMEOUT: &str = "2";

fn run(env: &Env, args: &[&str]) -> Output {
    env.cmd(args).env("POLYARCH_REGISTRY_TIMEOUT", TIMEOUT).output().expect("running polyarch")
}

fn ok(env: &Env, proxy: &FaultProxy, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        out.status.success(),
        "polyarch {args:?} failed:\n{}\nproxy:\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(env: &Env, proxy: &FaultProxy, args: &[&str]) -> String {
    let out = run(env, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "polyarch {args:?} should fail:\n{err}\nproxy:\n{}", proxy.log());
    eprintln!("polyarch {}: {err}", args[0]);
    err
}

/// Every rule fired as often as it was meant to (a fault that never
/// happened proves nothing).
fn assert_fired(proxy: &FaultProxy, want: &[usize]) {
    let got: Vec<usize> = (0..want.len()).map(|i| proxy.fired(i)).collect();
    assert_eq!(got, want, "faults fired; proxy log:\n{}", proxy.log());
}

fn have_curl() -> bool {
    require(have("curl"), "curl")
}

#[test]
fn pull_retries_transient_faults() {
    let Some(src) = shared_registry() else { return };
    if !have_curl() {
        return;
    }
    let proxy = FaultProxy::http(
        &src.host,
        vec![
            Rule::on(Some("GET"), "/manifests/", Fault::Status(503, None)),
            Rule::on(Some("GET"), "/blobs/", Fault::Status(429, Some(1))),
            Rule::on(Some("GET"), "/blobs/", Fault::Reset),
            Rule::on(Some("GET"), "/blobs/", Fault::Truncate(100)),
            Rule::on(Some("GET"), "/blobs/", Fault::Status(502, None)),
            Rule::on(Some("GET"), "/manifests/latest", Fault::Truncate(50)),
            Rule::on(Some("GET"), "/manifests/sha256:", Fault::Truncate(50)),
        ],
    );
    let env = Env::new();
    let image = format!("{}/library/busybox:latest", proxy.host());
    ok(&env, &proxy, &["pull", "-q", "--platform", "linux/arm64", &image]);
    assert_fired(&proxy, &[1, 1, 1, 1, 1, 1, 1]);
    // What was stored is whole: the same digests the registry serves.
    let inspect = env.ok(&["inspect", "--platform", "linux/arm64", &image]);
    assert!(inspect.contains("arm64"), "{inspect}");
    assert!(env.ok(&["images"]).contains("library/busybox"));
}

#[test]
fn pull_of_a_blob_with_a_wrong_digest_fails_and_stores_nothing() {
    let Some(src) = shared_registry() else { return };
    let proxy = FaultProxy::http(&src.host, vec![Rule::on(Some("GET"), "/blobs/", Fault::Corrupt).always()]);
    let env = Env::new();
    let image = format!("{}/library/busybox:latest", proxy.host());
    let err = fails(&env, &proxy, &["pull", "-q", "--platform", "linux/arm64", &image]);
    assert!(err.contains("sha256:") && err.to_lowercase().contains("digest"), "{err}");
    assert!(proxy.fired(0) >= 1);
    let images = env.ok(&["images"]);
    assert!(!images.contains("library/busybox"), "nothing is named after a failed pull: {images}");
}

#[test]
fn a_hang_is_retried_after_the_timeout() {
    let Some(src) = shared_registry() else { return };
    let proxy = FaultProxy::http(
        &src.host,
        vec![Rule::on(Some("GET"), "/manifests/", Fault::Hang), Rule::on(Some("GET"), "/blobs/", Fault::Hang)],
    );
    let env = Env::new();
    let t = Instant::now();
    ok(&env, &proxy, &["pull", "-q", "--platform", "linux/amd64", &format!("{}/library/busybox:latest", proxy.host())]);
    let took = t.elapsed();
    assert_fired(&proxy, &[1, 1]);
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(40), "two hangs of 2 s: {took:?}");
}

/// Pulls busybox for two platforms from the shared registry into `env`.
fn stored_busybox(env: &Env, src: &Registry) -> String {
    let image = busybox(src);
    env.ok(&["pull", "-q", "--all-platforms", &image]);
    image
}

#[test]
fn push_retries_transient_faults() {
    let Some(src) = shared_registry() else { return };
    let Some(dst) = Registry::start(&[]) else { return };
    if !have_curl() {
        return;
    }
    let proxy = FaultProxy::http(
        &dst.host,
        vec![
            Rule::on(Some("HEAD"), "/blobs/", Fault::Status(503, None)),
            Rule::on(Some("POST"), "/blobs/uploads/", Fault::Status(500, None)),
            Rule::on(Some("PUT"), "/blobs/uploads/", Fault::Reset),
            Rule::on(Some("PUT"), "/blobs/uploads/", Fault::Hang),
            Rule::on(Some("PUT"), "/manifests/sha256:", Fault::Status(429, Some(1))),
            Rule::on(Some("PUT"), "/manifests/v1", Fault::Reset),
        ],
    );
    let env = Env::new();
    let image = stored_busybox(&env, src);
    let target = format!("{}/test/pushed:v1", proxy.host());
    env.ok(&["tag", &image, &target]);
    let out = ok(&env, &proxy, &["push", "--all-platforms", &target]);
    assert_fired(&proxy, &[1, 1, 1, 1, 1, 1]);
    let digest = api::digest(&dst, "test/pushed", "v1");
    assert!(out.contains(&digest), "{out}");
    assert_eq!(digest, api::digest(src, "library/busybox", "latest"), "the index is pushed byte for byte");
    assert!(api::complete_or_absent(&dst, "test/pushed", "v1"));
}

#[test]
fn imagetools_create_retries_and_a_permanent_fault_publishes_nothing() {
    let Some(src) = shared_registry() else { return };
    let Some(dst) = Registry::start(&[]) else { return };
    if !have_curl() {
        return;
    }
    let env = Env::new();
    let sources =
        [format!("{}/library/busybox:latest-amd64", src.host), format!("{}/library/busybox:latest-arm64", src.host)];
    // Transient: every kind once, and the index is complete.
    let proxy = FaultProxy::http(
        &dst.host,
        vec![
            Rule::on(Some("PUT"), "/manifests/", Fault::Status(503, None)),
            Rule::on(None, "/blobs/uploads/", Fault::Reset),
            Rule::on(Some("PUT"), "/manifests/v1", Fault::Status(429, Some(1))),
            Rule::on(Some("HEAD"), "/manifests/", Fault::Hang),
        ],
    );
    let target = format!("{}/test/merged:v1", proxy.host());
    let digest = ok(&env, &proxy, &["imagetools", "create", "-t", &target, &sources[0], &sources[1]]);
    assert_fired(&proxy, &[1, 1, 1, 1]);
    assert_eq!(digest.trim(), api::digest(&dst, "test/merged", "v1"));
    assert!(api::complete_or_absent(&dst, "test/merged", "v1"));

    // Permanent: a child manifest is refused every time; no index appears.
    let proxy = FaultProxy::http(
        &dst.host,
        vec![Rule::on(Some("PUT"), "/manifests/sha256:", Fault::Status(500, None)).always()],
    );
    let target = format!("{}/test/refused:v1", proxy.host());
    let err = fails(&env, &proxy, &["imagetools", "create", "-t", &target, &sources[0], &sources[1]]);
    assert!(err.contains(&proxy.host()) && err.contains("500"), "{err}");
    assert!(proxy.fired(0) > 1, "retried before giving up: {}", proxy.log());
    assert!(!api::complete_or_absent(&dst, "test/refused", "v1"), "no tag after a failed create");

    // Permanent: the index itself cannot be written.
    let proxy = FaultProxy::http(&dst.host, vec![Rule::on(Some("PUT"), "/manifests/v2", Fault::Reset).always()]);
    let target = format!("{}/test/refused:v2", proxy.host());
    let err = fails(&env, &proxy, &["imagetools", "create", "-t", &target, &sources[0], &sources[1]]);
    assert!(err.contains("test/refused:v2"), "{err}");
    assert!(!api::complete_or_absent(&dst, "test/refused", "v2"));
}

#[test]
fn build_push_retries_and_a_permanent_fault_publishes_no_index() {
    let Some(src) = shared_registry() else { return };
    let Some(dst) = Registry::start(&[]) else { return };
    if !have_curl() {
        return;
    }
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", &format!("FROM {}\nCOPY hello /hello\n", busybox(src))), ("hello", "hi\n")],
    );
    let proxy = FaultProxy::http(
        &dst.host,
        vec![
            Rule::on(Some("POST"), "/blobs/uploads/", Fault::Status(502, None)),
            Rule::on(Some("PUT"), "/blobs/uploads/", Fault::Reset),
            Rule::on(Some("PUT"), "/manifests/", Fault::Status(503, None)),
            Rule::on(Some("PUT"), "/manifests/v1", Fault::Hang),
        ],
    );
    let target = format!("{}/test/built:v1", proxy.host());
    let args =
        ["build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", &target, "--push", s(&ctx)];
    ok(&env, &proxy, &args);
    assert_fired(&proxy, &[1, 1, 1, 1]);
    assert!(api::complete_or_absent(&dst, "test/built", "v1"));

    // The second platform's manifest is refused for good: no index.
    let proxy = FaultProxy::http(
        &dst.host,
        vec![Rule::on(Some("PUT"), "/manifests/sha256:", Fault::Status(400, None)).times(1)],
    );
    let target = format!("{}/test/built:v2", proxy.host());
    let args =
        ["build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", &target, "--push", s(&ctx)];
    let err = fails(&env, &proxy, &args);
    assert!(err.contains(&proxy.host()) && err.contains("400"), "{err}");
    assert!(!api::complete_or_absent(&dst, "test/built", "v2"), "no index whose children are missing");
}

#[test]
fn auth_registry_through_faults() {
    if !require(have("htpasswd"), "htpasswd (apache2-utils)") || !have_curl() {
        return;
    }
    let Some(src) = shared_registry() else { return };
    let Some(dst) = Registry::start(&["--auth"]) else { return };
    let proxy = FaultProxy::http(
        &dst.host,
        vec![
            Rule::on(Some("GET"), "/v2/", Fault::Status(503, None)),
            Rule::on(Some("HEAD"), "/blobs/", Fault::Reset),
            Rule::on(Some("PUT"), "/manifests/", Fault::Status(429, Some(1))),
            Rule::on(Some("GET"), "/blobs/", Fault::Truncate(200)),
        ],
    );
    let env = Env::new();
    let mut login = env
        .cmd(&["login", "-u", dst.user.as_deref().unwrap(), "--password-stdin", &proxy.host()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    login.stdin.take().unwrap().write_all(dst.password.as_deref().unwrap().as_bytes()).unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), proxy.log());

    let target = format!("{}/test/authed:v1", proxy.host());
    let digest = ok(&env, &proxy, &["imagetools", "create", "-t", &target, &busybox(src)]);
    assert_eq!(digest.trim(), api::digest(&dst, "test/authed", "v1"));
    assert!(api::complete_or_absent(&dst, "test/authed", "v1"));
    ok(&env, &proxy, &["pull", "-q", "--platform", "linux/arm64", &target]);
    assert_fired(&proxy, &[1, 1, 1, 1]);
}

#[test]
fn tls_registry_through_byte_level_faults() {
    if !require(have("openssl"), "openssl") || !have_curl() {
        return;
    }
    let Some(src) = shared_registry() else { return };
    let Some(dst) = Registry::start(&["--tls"]) else { return };
    let env = Env::new();
    let ca = dst.ca.clone().expect("CA");
    // Seed the TLS registry directly, then read and write it through the proxy.
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [\"{}\"]\n", dst.host, ca.display())).unwrap();
    env.ok(&["imagetools", "create", "-t", &format!("{}/library/busybox:latest", dst.host), &busybox(src)]);

    let proxy = FaultProxy::tcp(
        &dst.host,
        vec![
            Rule::conn(Fault::Reset),
            Rule::conn(Fault::Hang),
            Rule::conn(Fault::Truncate(100)),
            Rule::conn(Fault::Truncate(300_000)),
        ],
    );
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [\"{}\"]\n", proxy.host(), ca.display()))
        .unwrap();
    let image = format!("{}/library/busybox:latest", proxy.host());
    ok(&env, &proxy, &["pull", "-q", "--platform", "linux/arm64", &image]);
    assert_fired(&proxy, &[1, 1, 1, 1]);
    let target = format!("{}/test/tls:v1", proxy.host());
    env.ok(&["tag", &image, &target]);
    ok(&env, &proxy, &["push", &target]);
    assert!(api::complete_or_absent(&dst, "test/tls", "v1"));

    // Three connections cut after 6000 bytes, wherever that falls (a
    // handshake, a manifest, a blob): still a complete copy.
    let proxy = FaultProxy::tcp(&dst.host, vec![Rule::conn(Fault::Truncate(6000)).times(3)]);
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [\"{}\"]\n", proxy.host(), ca.display()))
        .unwrap();
    let target = format!("{}/test/tls:v2", proxy.host());
    ok(&env, &proxy, &["imagetools", "create", "-t", &target, &busybox(src)]);
    assert!(proxy.fired(0) == 3 && api::complete_or_absent(&dst, "test/tls", "v2"), "{}", proxy.log());

    // Every connection reset: a clear failure, and nothing published.
    let proxy = FaultProxy::tcp(&dst.host, vec![Rule::conn(Fault::Reset).always()]);
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [\"{}\"]\n", proxy.host(), ca.display()))
        .unwrap();
    let target = format!("{}/test/tls:v3", proxy.host());
    let err = fails(&env, &proxy, &["imagetools", "create", "-t", &target, &busybox(src)]);
    assert!(err.contains(&proxy.host()), "{err}");
    assert!(!api::complete_or_absent(&dst, "test/tls", "v3"));
}

#[test]
fn a_bad_timeout_value_is_named() {
    let env = Env::new();
    for bad in ["soon", "0", "-3"] {
        let out = env
            .cmd(&["imagetools", "inspect", "127.0.0.1:1/x/y:z"])
            .env("POLYARCH_REGISTRY_TIMEOUT", bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("POLYARCH_REGISTRY_TIMEOUT") && err.contains(bad), "{err}");
    }
}
