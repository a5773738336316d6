//! Failures: each gives a clear error naming what failed, exits 1, and
//! leaves no index pointing at missing content.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::net::fake_registry;
use crate::util::proxy::{Fault, FaultProxy, Rule};
use crate::util::*;

#[test]
fn registry_down_mid_push_pushes_no_index() {
    let Some(src) = shared_registry() else { return };
    let Some(dst) = Registry::start(&[]) else { return };
    let env = Env::new();
    let proxy = FaultProxy::tcp(&dst.host, vec![Rule::conn(Fault::DieAfter(400_000)).always()]);
    let target = format!("127.0.0.1:{}/test/dying:v1", proxy.port);
    env.ok(&[
        "manifest",
        "create",
        &target,
        &format!("{}/library/busybox:latest-amd64", src.host),
        &format!("{}/library/busybox:latest-arm64", src.host),
    ]);
    let err = env.fails(&["manifest", "push", &target]);
    assert!(err.contains(&format!("127.0.0.1:{}", proxy.port)), "the error names the registry: {err}");
    assert!(proxy.down(), "the proxy died: {}", proxy.log());
    // Straight to the real registry: no tag was written.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/test/dying:v1", dst.host)])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the index must not exist: {}", String::from_utf8_lossy(&out.stdout));
    // The local list is still there to push again once the registry is back.
    env.ok(&["manifest", "inspect", &target]);
}

#[test]
fn missing_image_names_the_reference() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let missing = format!("{}/library/busybox:no-such-tag", reg.host);
    let err = env.fails(&["manifest", "create", &format!("{}/test/missing:v1", reg.host), &missing]);
    assert!(err.contains("library/busybox:no-such-tag"), "{err}");
    assert!(err.to_lowercase().contains("not found") || err.contains("unknown"), "{err}");
    let err = env.fails(&["imagetools", "create", "-t", &format!("{}/test/missing:v1", reg.host), &missing]);
    assert!(err.contains("no-such-tag"), "{err}");
    // Nothing was written.
    env.fails(&["imagetools", "inspect", &format!("{}/test/missing:v1", reg.host)]);
    // A registry nobody listens on.
    let err = env.fails(&["imagetools", "inspect", &format!("127.0.0.1:{}/x/y:z", free_port())]);
    assert!(err.contains("127.0.0.1:"), "{err}");
}

#[test]
fn digest_mismatch_and_oversized_manifest_are_refused() {
    let env = Env::new();
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec();
    let port = fake_registry(body, "application/vnd.oci.image.index.v1+json");
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let err = env.fails(&["imagetools", "inspect", &format!("127.0.0.1:{port}/x/y@{wrong}")]);
    assert!(err.contains(wrong) && err.to_lowercase().contains("digest"), "{err}");

    let mut big =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 5 * 1024 * 1024));
    big.extend_from_slice(b"\"}");
    let port = fake_registry(big, "application/vnd.oci.image.index.v1+json");
    let err = env.fails(&["imagetools", "inspect", &format!("127.0.0.1:{port}/x/y:big")]);
    assert!(err.contains("limit") || err.contains("too large"), "{err}");
}

fn login(env: &Env, reg: &Registry, user: &str, password: &str) -> std::process::Output {
    let mut child = env
        .cmd(&["login", "-u", user, "--password-stdin", &reg.host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_with_password_flag_warns_as_docker() {
    if !require(have("htpasswd"), "htpasswd (apache2-utils)") {
        return;
    }
    let Some(reg) = Registry::start(&["--auth"]) else { return };
    let env = Env::new();
    let password = reg.password.clone().expect("a password");
    let out = env.run(&["login", "-u", "testuser", "-p", &password, &reg.host]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let config = std::fs::read_to_string(env.docker_config().join("config.json")).unwrap();
    assert!(config.contains(&reg.host), "{config}");

    let out = env.run(&["login", "-u", "testuser", "--password", "wrong-one-abc", &reg.host]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&reg.host) && !err.contains("wrong-one-abc"), "{err}");
    let err = env.fails(&["login", "-u", "testuser", "-p", "x", "--password-stdin", &reg.host]);
    assert!(err.contains("--password and --password-stdin are mutually exclusive"), "{err}");
}

#[test]
fn wrong_password_and_auth_over_tls() {
    if !require(have("htpasswd"), "htpasswd (apache2-utils)") {
        return;
    }
    let Some(src) = shared_registry() else { return };
    let Some(reg) = Registry::start(&["--auth", "--tls"]) else { return };
    let env = Env::new();
    let ca = reg.ca.clone().expect("CA");
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [\"{}\"]\n", reg.host, ca.display())).unwrap();

    let secret = "not-the-password-xyz";
    let out = login(&env, &reg, "testuser", secret);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&reg.host), "{err}");
    assert!(!err.contains(secret), "the password must never be printed: {err}");

    let out = login(&env, &reg, "testuser", reg.password.as_deref().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(env.docker_config().join("config.json")).unwrap();
    assert!(config.contains(&reg.host));

    // Copy busybox from the plain registry into the TLS one, across registries.
    let dst = format!("{}/test/secure:v1", reg.host);
    let digest = env.ok(&["imagetools", "create", "-t", &dst, &format!("{}/library/busybox:latest", src.host)]);
    let human = env.ok(&["imagetools", "inspect", &dst]);
    assert!(human.contains(digest.trim()), "{human}");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(ca.parent().unwrap())
        .args(["--creds", &format!("testuser:{}", reg.password.as_deref().unwrap()), &format!("docker://{dst}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256_hex(&out.stdout), digest.trim());

    // Without the CA the server is not trusted, and the error says so.
    std::fs::remove_file(env.config_file()).unwrap();
    let err = env.fails(&["imagetools", "inspect", &dst]);
    assert!(err.contains(&reg.host), "{err}");

    // Logged out: unauthorized, naming the registry.
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [\"{}\"]\n", reg.host, ca.display())).unwrap();
    env.ok(&["logout", &reg.host]);
    let err = env.fails(&["imagetools", "inspect", &dst]);
    assert!(err.contains(&reg.host) && err.to_lowercase().contains("auth"), "{err}");
}

/// Each line of an error says a cause once: a library message that ends
/// with its cause's text is not followed by that text again.
fn assert_said_once(err: &str, part: &str) {
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {err}"));
    assert_eq!(line.matches(part).count(), 1, "{part:?} once: {err}");
}

#[test]
fn bad_names_files_and_secrets_fail_up_front_with_one_clear_message() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\n")]);
    // An upper-case repository, as docker: one "invalid reference".
    for args in
        [&["build", "-t", "Foo:1", s(&ctx)][..], &["tag", "busybox", "Bar:1"], &["pull", "Foo"], &["run", "Foo"]]
    {
        let out = env.run(args);
        // `run` fails as `docker run` does when the container cannot start.
        assert_eq!(out.status.code(), Some(if args[0] == "run" { 125 } else { 1 }), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must be lowercase"), "{args:?}: {err}");
        assert_said_once(&err, "invalid reference \"");
        assert!(!err.contains("Unable to find image"), "nothing is looked for: {err}");
    }
    // An archive where no file can be made: the target named, not a temporary file.
    let err = env.fails(&["build", "-o", "type=oci,dest=/proc/polyarch-test.tar", s(&ctx)]);
    assert!(err.contains("/proc/polyarch-test.tar: "), "{err}");
    assert!(!err.contains("at path") && !err.contains(".polyarch-test.tar."), "{err}");
    assert_said_once(&err, "No such file or directory");
    // A registry nobody listens on: the cause once.
    let err = env.fails(&["build", "--push", "-t", &format!("127.0.0.1:{}/x/y:1", free_port()), s(&ctx)]);
    assert_said_once(&err, "connection refused");
    // Secrets as buildx: a file source must exist and be at most 500 KiB,
    // checked before anything is built.
    let err = env.fails(&["build", "--secret", "id=k,src=/nonexistent/key", s(&ctx)]);
    assert!(err.contains("--secret id=k,src=/nonexistent/key: failed to stat /nonexistent/key"), "{err}");
    let big = env.dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 500 * 1024 + 1]).unwrap();
    let err = env.fails(&["build", "--secret", &format!("id=big,src={}", s(&big)), s(&ctx)]);
    assert!(err.contains("secret big too big. max size 500KB"), "{err}");
}

#[test]
fn archives_of_a_build_are_readable_as_files_the_user_made() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\n")]);
    let out = env.dir.path().join("out");
    for (kind, name) in [("oci", "o.tar"), ("docker", "d.tar"), ("tar", "t.tar")] {
        let dest = out.join(name);
        build_ok(&env, &["-o", &format!("type={kind},dest={}", s(&dest)), s(&ctx)]);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dest).unwrap().permissions());
        // The tests run with the umask the harness has; 0666 less it, as creat(2).
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap().trim();
        assert_eq!(mode & 0o777, 0o666 & !u32::from_str_radix(umask, 8).unwrap(), "{kind}: {mode:o}");
    }
    let saved = out.join("saved.tar");
    env.ok(&["pull", "busybox"]);
    env.ok(&["save", "-o", s(&saved), "busybox"]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4, "no temporary file is left");
}

#[test]
fn a_reader_that_leaves_ends_the_output_quietly() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN true\nFROM busybox\nCOPY --from=b /bin /x\n",
        )],
    );
    let closed = |args: &[&str]| {
        // Standard output is a pipe whose reading end is already closed.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env.cmd(args).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for args in [
        &["debug", "plan", "--platform", "linux/amd64,linux/arm64,linux/s390x", s(&ctx)][..],
        &["debug", "platform", "linux/arm/v7"],
        &["images"],
        &["build", "-q", s(&ctx)],
        &["build", "--progress", "plain", "-o", "-", s(&ctx)],
    ] {
        let (code, err) = closed(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(!err.contains("error") && !err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
    // Any other failure to write is an error that says where.
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    let out = env.cmd(&["debug", "platform", "linux/arm/v7"]).stdout(full).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writing to standard output: No space left"));
}

/// A context that is neither a directory, `-` nor a URL is named, as
/// buildx names it, before anything is read.
#[test]
fn a_missing_context_is_named_as_buildx_names_it() {
    let env = Env::new();
    let missing = env.dir.path().join("no-such-dir");
    let err = env.fails(&["build", missing.to_str().unwrap()]);
    assert!(
        err.contains(&format!("unable to prepare context: path {:?} not found", missing.to_str().unwrap())),
        "{err}"
    );
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "FROM scratch\n").unwrap();
    let err = env.fails(&["build", file.to_str().unwrap()]);
    assert!(err.contains("unable to prepare context: path"), "{err}");
    // A directory without a Dockerfile says which file it looked for.
    let empty = env.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = env.fails(&["build", empty.to_str().unwrap()]);
    assert!(err.contains("Dockerfile") && err.contains("No such file"), "{err}");
}
