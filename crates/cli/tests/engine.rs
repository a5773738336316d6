//! Docker engines as a destination and a source: `--load` and `-o
//! type=docker` into a real dockerd the test starts (unix socket, tcp, a
//! docker context), one platform of a multi-platform build for an engine
//! without the containerd image store, the local store when no engine
//! answers, `push`/`pull docker-daemon:`, and an archive the engine refuses.

use std::path::Path;

use crate::util::dockerd::Dockerd;
use crate::util::*;

/// The host's architecture as Docker names it, and another one.
fn host_and_foreign() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "aarch64" => ("arm64", "amd64"),
        _ => ("amd64", "arm64"),
    }
}

/// `polyarch build --progress plain ARGS` against `docker_host`; returns
/// (success, stderr).
fn build(env: &Env, docker_host: &str, args: &[&str]) -> (bool, String) {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    let out = env.cmd(&full).env("DOCKER_HOST", docker_host).output().expect("polyarch");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn built(env: &Env, docker_host: &str, args: &[&str]) -> String {
    let (ok, err) = build(env, docker_host, args);
    assert!(ok, "polyarch build {args:?} failed:\n{err}");
    err
}

fn simple_context(env: &Env) -> std::path::PathBuf {
    context(
        env,
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nARG TARGETARCH\nCOPY hello /hello-$TARGETARCH\nLABEL made=polyarch\n"),
            ("hello", "hi\n"),
        ],
    )
}

fn qemu_aarch64() -> bool {
    std::env::consts::ARCH == "aarch64" || Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
}

#[test]
fn load_arm64_then_docker_run_prints_aarch64() {
    let Some((env, _)) = mirrored() else { return };
    if !require(qemu_aarch64(), "a binfmt_misc handler for aarch64") {
        return;
    }
    let Some(d) = Dockerd::start() else { return };
    let ctx = simple_context(&env);
    let err = built(&env, &d.host(), &["--platform", "linux/arm64", "--load", "-t", "engine/arm:1", s(&ctx)]);
    assert!(err.contains(&format!("loading into the Docker engine at {}", d.host())), "{err}");
    let out = d.ok(&["run", "--rm", "--network", "none", "engine/arm:1", "uname", "-m"]);
    assert_eq!(out.trim(), "aarch64");
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", "engine/arm:1", "cat", "/hello-arm64"]).trim(), "hi");
    // Loaded into the engine, not the local store.
    assert!(!env.ok(&["images"]).contains("engine/arm"), "{}", env.ok(&["images"]));
}

#[test]
fn docker_output_without_dest_loads_over_tcp() {
    let Some((env, reg)) = mirrored() else { return };
    let Some(d) = Dockerd::start_tcp() else { return };
    let tcp = d.tcp.clone().unwrap();
    let ctx = simple_context(&env);
    let iid = env.dir.path().join("iid");
    let meta = env.dir.path().join("meta.json");
    let err = built(
        &env,
        &tcp,
        &["-o", "type=docker", "-t", "engine/tcp:1", "--iidfile", s(&iid), "--metadata-file", s(&meta), s(&ctx)],
    );
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["image.name"], "docker.io/engine/tcp:1", "{meta}");
    assert!(err.contains(&format!("loading into the Docker engine at {tcp}")), "{err}");
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "engine/tcp:1"]);
    assert_eq!(id.trim(), std::fs::read_to_string(&iid).unwrap().trim(), "the engine's image ID is the config digest");
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{index .Config.Labels \"made\"}}", "engine/tcp:1"]).trim(),
        "polyarch"
    );
    // --push and --load at once: the registry and the engine both have it.
    let pushed = format!("{}/engine/both:1", reg.host);
    built(&env, &tcp, &["--push", "--load", "-t", &pushed, s(&ctx)]);
    assert!(d.run(&["image", "inspect", &pushed]).0, "not loaded: {pushed}");
    env.ok(&["imagetools", "inspect", &pushed]);
    // With dest, still a file and nothing loaded.
    let file = env.dir.path().join("out.tar");
    let spec = format!("type=docker,dest={}", s(&file));
    let err = built(&env, &tcp, &["-o", &spec, "-t", "engine/file:1", s(&ctx)]);
    assert!(file.exists() && !err.contains("loading into"), "{err}");
    assert!(!d.run(&["image", "inspect", "engine/file:1"]).0);
}

/// The engine comes from the current docker context when DOCKER_HOST is
/// unset; an engine without the containerd image store takes the host's
/// platform of a two-platform `--load`, and the build names the other.
#[test]
fn multi_platform_load_takes_one_platform_through_the_context() {
    let Some((env, _)) = mirrored() else { return };
    let Some(d) = Dockerd::start() else { return };
    let cfg = env.docker_config();
    let id = sha256_hex(b"engine-test");
    let meta = cfg.join("contexts/meta").join(id.trim_start_matches("sha256:"));
    std::fs::create_dir_all(&meta).unwrap();
    let meta_json = serde_json::json!({"Name": "engine-test", "Metadata": {}, "Endpoints": {"docker": {"Host": d.host(), "SkipTLSVerify": false}}});
    std::fs::write(meta.join("meta.json"), meta_json.to_string()).unwrap();
    std::fs::write(cfg.join("config.json"), r#"{"currentContext":"engine-test"}"#).unwrap();
    let (host, foreign) = host_and_foreign();
    let ctx = simple_context(&env);
    let platforms = format!("linux/{host},linux/{foreign}");
    let out = env
        .cmd(&["build", "--progress", "plain", "--platform", &platforms, "--load", "-t", "engine/multi:1", s(&ctx)])
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("loading into the Docker engine at {}", d.host())), "{err}");
    assert!(err.contains("no containerd image store"), "{err}");
    assert!(err.contains(&format!("loading linux/{host} only; not loaded: linux/{foreign}")), "{err}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", "engine/multi:1"]).trim(), host);
    let files = d.ok(&["run", "--rm", "--network", "none", "engine/multi:1", "ls", "/"]);
    assert!(files.contains(&format!("hello-{host}")), "{files}");
}

#[test]
fn no_engine_reachable_loads_into_the_store() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = simple_context(&env);
    let none = format!("unix://{}", env.dir.path().join("nothing.sock").display());
    let err = built(&env, &none, &["--load", "-t", "engine/store:1", s(&ctx)]);
    assert!(
        err.contains(&format!("no Docker engine reachable (cannot connect to the Docker engine at {none}")),
        "{err}"
    );
    assert!(err.contains("loading into polyarch's local store instead"), "{err}");
    assert!(env.ok(&["images"]).contains("engine/store"));
    let err = built(&env, &none, &["-o", "type=docker", "-t", "engine/store:2", s(&ctx)]);
    assert!(err.contains("local store"), "{err}");
    assert!(env.ok(&["images"]).contains("engine/store"));
    // An ssh host that does not answer is unreachable, in ssh's words (on
    // loopback: a name to resolve would send a query off this machine).
    let (ok, err) = build(&env, "ssh://root@127.0.0.1:1", &["--load", "-t", "engine/store:3", s(&ctx)]);
    assert!(ok && err.contains("at ssh://root@127.0.0.1:1: `ssh ") && err.contains("Connection refused"), "{err}");
    assert!(err.contains("loading into polyarch's local store instead"), "{err}");
    // An endpoint polyarch cannot use is an error naming it, not a fallback.
    let (ok, err) = build(&env, "npipe:////./pipe/docker_engine", &["--load", "-t", "engine/store:4", s(&ctx)]);
    assert!(!ok && err.contains("npipe:////./pipe/docker_engine") && err.contains("not supported"), "{err}");
}

#[test]
fn push_and_pull_through_docker_daemon() {
    let Some((env, _)) = mirrored() else { return };
    let Some(d) = Dockerd::start() else { return };
    let ctx = simple_context(&env);
    let (_, foreign) = host_and_foreign();
    built(&env, &d.host(), &["--platform", "linux/amd64,linux/arm64", "-t", "engine/src:1", s(&ctx)]);
    let with_engine = |args: &[&str]| {
        let out = env.cmd(args).env("DOCKER_HOST", d.host()).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let plat = format!("linux/{foreign}");
    let (ok, out, err) = with_engine(&["push", "--platform", &plat, "engine/src:1", "docker-daemon:engine/copy:2"]);
    assert!(ok, "{err}");
    assert!(out.contains("Loaded image: engine/copy:2"), "{out}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", "engine/copy:2"]).trim(), foreign);
    // And back: a new name in the store, the same image.
    d.ok(&["tag", "engine/copy:2", "engine/back:3"]);
    let (ok, out, err) = with_engine(&["pull", "docker-daemon:engine/back:3"]);
    assert!(ok, "{err}");
    assert!(out.contains("docker.io/engine/back:3"), "{out}");
    let arch = env.ok(&["inspect", "-f", "{{.Architecture}}", "engine/back:3"]);
    assert_eq!(arch.trim(), foreign);
    let label = env.ok(&["inspect", "-f", "{{.Config.config.Labels.made}}", "engine/back:3"]);
    assert_eq!(label.trim(), "polyarch");
    // Missing on either side: a clear error naming the image.
    let (ok, _, err) = with_engine(&["pull", "docker-daemon:engine/absent:1"]);
    assert!(!ok && err.contains("engine/absent"), "{err}");
    let (ok, _, err) = with_engine(&["push", "engine/absent:1", "docker-daemon:x:1"]);
    assert!(!ok && err.contains("engine/absent"), "{err}");
    let (ok, _, err) = with_engine(&["push", "engine/src:1", "registry.example/x:1"]);
    assert!(!ok && err.contains("docker-daemon:"), "{err}");
}

/// The engine refuses an image of an OS it cannot run: the build fails
/// with the engine's reason and the endpoint, and the engine has no image.
#[test]
fn an_archive_the_engine_refuses_is_a_clear_error() {
    let Some((env, _)) = mirrored() else { return };
    let Some(d) = Dockerd::start() else { return };
    let ctx = context(&env, "ctx-win", &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let (ok, err) = build(&env, &d.host(), &["--platform", "windows/amd64", "--load", "-t", "engine/win:1", s(&ctx)]);
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("loading into the Docker engine at {}", d.host())), "{err}");
    assert!(err.contains("failed POST /images/load: ") && err.contains("windows"), "{err}");
    assert!(!d.run(&["image", "inspect", "engine/win:1"]).0);
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
}

/// An engine with the containerd image store takes the whole index as an
/// OCI archive. Debian's dockerd (20.10) has no such store, so a minimal
/// engine on a unix socket answers `/_ping` and `/info` as Docker 24+
/// does with it, and keeps the body of `/images/load`, which must be an
/// archive `polyarch load` reads back with every platform.
#[test]
fn an_engine_with_the_containerd_store_takes_the_index() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::os::unix::net::UnixListener;
    let Some((env, _)) = mirrored() else { return };
    let sock = env.dir.path().join("ctrd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let body_file = env.dir.path().join("loaded.tar");
    let keep = body_file.clone();
    let server = std::thread::spawn(move || {
        for conn in listener.incoming() {
            let conn = conn.unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let (body, done) = if head.starts_with("GET /_ping") {
                ("OK".to_string(), false)
            } else if head.starts_with("GET /info") {
                let info = r#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]],"OSType":"linux","Architecture":"x86_64"}"#;
                (info.to_string(), false)
            } else {
                assert!(head.starts_with("POST /images/load"), "{head}");
                let mut out = std::fs::File::create(&keep).unwrap();
                loop {
                    let mut size = String::new();
                    r.read_line(&mut size).unwrap();
                    let n = usize::from_str_radix(size.trim(), 16).unwrap();
                    let mut chunk = vec![0u8; n + 2];
                    r.read_exact(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.write_all(&chunk[..n]).unwrap();
                }
                ("{\"stream\":\"Loaded image: engine/ctrd:1\\n\"}\n".to_string(), true)
            };
            let mut w = conn;
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
            if done {
                return;
            }
        }
    });
    let ctx = simple_context(&env);
    let host = format!("unix://{}", sock.display());
    let err = built(&env, &host, &["--platform", "linux/amd64,linux/arm64", "--load", "-t", "engine/ctrd:1", s(&ctx)]);
    server.join().unwrap();
    assert!(err.contains(&format!("loading into the Docker engine at {host}")), "{err}");
    assert!(err.contains("Loaded image: engine/ctrd:1") && !err.contains("not loaded"), "{err}");
    let other = Env::new();
    other.ok(&["load", "-i", s(&body_file)]);
    let images = other.ok(&["images"]);
    let line = images.lines().find(|l| l.contains("engine/ctrd")).unwrap_or_else(|| panic!("{images}"));
    assert!(line.contains("linux/amd64") && line.contains("linux/arm64"), "{line}");
}
