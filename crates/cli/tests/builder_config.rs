//! A builder's `--config` (buildkitd.toml's registry tables) on its local
//! node: its docker.io mirror is where `FROM busybox` comes from, its
//! keypair is the client certificate a registry that verifies them gets
//! (distribution with `http.tls.clientcas`), over the user's own config;
//! keys polyarch does not map are named once at `builder create`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::certs::Ca;
use crate::util::*;

fn busybox_context(env: &Env, from: &str) -> PathBuf {
    context(env, "ctx", &[("Dockerfile", &format!("FROM {from}\nCOPY hello /hello\n")), ("hello", "hi\n")])
}

#[test]
fn the_local_node_pulls_through_the_builders_mirror() {
    let Some(reg) = shared_registry() else { return };
    // No mirror in the user's own config.
    let env = Env::new();
    let file = env.dir.path().join("buildkitd.toml");
    std::fs::write(&file, format!("[registry.\"docker.io\"]\nmirrors = [\"{}\"]\n", reg.host)).unwrap();
    let out = env.cmd(&["builder", "create", "--name", "mirrored", "--config", s(&file), "local"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"), "{}", String::from_utf8_lossy(&out.stderr));
    let ctx = busybox_context(&env, "busybox");
    let err = build_ok(&env, &["--builder", "mirrored", "-t", "cfg/mirror:1", s(&ctx)]).1;
    assert!(err.contains("DONE"), "{err}");
    assert!(env.ok(&["images"]).contains("cfg/mirror"));
    // The same through POLYARCH_BUILDER and through `use`.
    let out = env.cmd(&["build", "-t", "cfg/mirror:2", s(&ctx)]).env("POLYARCH_BUILDER", "mirrored").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.ok(&["builder", "use", "mirrored"]);
    env.ok(&["build", "-t", "cfg/mirror:3", s(&ctx)]);
}

#[test]
fn unknown_buildkitd_keys_are_named_once_at_create() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let file = env.dir.path().join("buildkitd.toml");
    std::fs::write(
        &file,
        format!(
            "debug = true\n[grpc]\naddress = [\"tcp://0.0.0.0:1234\"]\n[worker.oci]\ngc = true\n\
             [registry.\"docker.io\"]\nmirrors = [\"{}\"]\n",
            reg.host
        ),
    )
    .unwrap();
    let out = env.cmd(&["builder", "create", "--name", "noisy", "--config", s(&file), "local"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let warning = format!("WARNING: polyarch ignores debug, grpc.address, worker.oci.gc in {}", file.display());
    assert_eq!(err.matches("WARNING").count(), 1, "{err}");
    assert!(err.contains(&warning), "{err}");
    // Builds on it say nothing more about them, and use the mirror.
    let ctx = busybox_context(&env, "busybox");
    let (_, err) = build_ok(&env, &["--builder", "noisy", "-t", "cfg/noisy:1", s(&ctx)]);
    assert!(!err.contains("ignores"), "{err}");
    // A file polyarch cannot read is an error naming it, and no builder.
    std::fs::write(&file, "[registry.\"x\"]\nhttp = \"yes\"\n").unwrap();
    let out = env.cmd(&["builder", "create", "--name", "bad", "--config", s(&file), "local"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(s(&file)), "{err}");
    assert!(!env.ok(&["builder", "ls"]).contains("bad"));
}

/// A distribution registry on 127.0.0.1 over TLS that wants a client
/// certificate of `ca` (`http.tls.clientcas`), serving a copy of `data`.
struct MtlsRegistry {
    child: Child,
    host: String,
}

/// Copies the storage of a registry that other tests push to as they
/// run: its uploads in progress (`_uploads`) are left out, and a file or
/// directory that disappears while being copied is skipped (`cp -a` fails
/// on those).
fn copy_live_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let Ok(entries) = std::fs::read_dir(src) else { return };
    for e in entries.flatten() {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if e.file_name() != "_uploads" {
                copy_live_tree(&from, &to);
            }
        } else if kind.is_symlink() {
            if let Ok(target) = std::fs::read_link(&from) {
                let _ = std::os::unix::fs::symlink(target, &to);
            }
        } else if let Err(err) = std::fs::copy(&from, &to) {
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "copying {}: {err}", from.display());
        }
    }
}

impl MtlsRegistry {
    fn start(dir: &Path, ca: &Ca, data: &Path) -> MtlsRegistry {
        let (cert, key) = ca.issue("registry", true);
        copy_live_tree(data, &dir.join("data"));
        let port = free_port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  \
                 addr: 127.0.0.1:{port}\n  secret: not-a-secret\n  tls:\n    certificate: {}\n    key: {}\n    \
                 clientcas: [{}]\n",
                dir.join("data").display(),
                cert.display(),
                key.display(),
                ca.cert().display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("starting docker-registry");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        MtlsRegistry { child, host: format!("127.0.0.1:{port}") }
    }
}

impl Drop for MtlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_keypair_reaches_a_registry_that_verifies_client_certificates() {
    let Some(shared) = shared_registry() else { return };
    let env = Env::new();
    let Some(ca) = Ca::new(&env.dir.path().join("ca"), "registry-ca") else { return };
    let reg_dir = env.dir.path().join("mtls");
    std::fs::create_dir_all(&reg_dir).unwrap();
    let reg = MtlsRegistry::start(&reg_dir, &ca, &shared.dir.path().join("data"));
    // The user's config trusts the registry's CA; the builder's adds the
    // client certificate (a key the user's config does not set).
    std::fs::write(env.config_file(), format!("[registry.\"{}\"]\nca = [{:?}]\n", reg.host, s(&ca.cert()))).unwrap();
    let (cert, key) = ca.issue("client", false);
    let file = env.dir.path().join("buildkitd.toml");
    std::fs::write(
        &file,
        format!("[[registry.\"{}\".keypair]]\nkey = {:?}\ncert = {:?}\n", reg.host, s(&key), s(&cert)),
    )
    .unwrap();
    env.ok(&["builder", "create", "--name", "mtls", "--config", s(&file), "local"]);
    let ctx = busybox_context(&env, &format!("{}/library/busybox:latest", reg.host));

    // Without the builder there is no client certificate: refused by name.
    // (The refusal is a TLS alert after the handshake: when the server's
    // reset overtakes it, the request sees a closed connection only.)
    let out = env.cmd(&["build", "--progress", "plain", "-t", "cfg/mtls:0", s(&ctx)]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&reg.host), "{err}");
    assert!(err.contains("BadCertificate") || err.contains("closed"), "{err}");
    let (_, err) = build_ok(&env, &["--builder", "mtls", "-t", "cfg/mtls:1", s(&ctx)]);
    assert!(err.contains("DONE"), "{err}");
    assert!(env.ok(&["images"]).contains("cfg/mtls"));

    // A keypair whose files are missing is an error naming the file.
    std::fs::write(
        &file,
        format!("[[registry.\"{}\".keypair]]\nkey = \"/nonexistent/k.pem\"\ncert = {:?}\n", reg.host, s(&cert)),
    )
    .unwrap();
    env.ok(&["builder", "create", "--name", "broken", "--config", s(&file), "local"]);
    let out = env.cmd(&["build", "--builder", "broken", "-t", "cfg/mtls:2", s(&ctx)]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent/k.pem"), "{err}");
}
