//! Docker engines reached over TLS and ssh, as the docker CLI reaches
//! them: a private dockerd on `tcp://127.0.0.1:PORT` with `--tlsverify`
//! (certificates made by openssl) through `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH` or a docker context's TLS material, and the same
//! engine through `ssh://` and `docker system dial-stdio` on a private sshd.

use std::path::Path;

use crate::util::certs::Ca;
use crate::util::dockerd::Dockerd;
use crate::util::ssh::Sshd;
use crate::util::*;

/// The host's architecture as Docker names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn simple_context(env: &Env) -> std::path::PathBuf {
    context(env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY hello /hello\n"), ("hello", "hi\n")])
}

/// `polyarch build --progress plain --load -t TAG CTX` with `vars`;
/// returns (success, stderr).
fn load(env: &Env, ctx: &Path, tag: &str, vars: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = env.cmd(&["build", "--progress", "plain", "--load", "-t", tag, s(ctx)]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("polyarch");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn load_over_tls_with_docker_tls_verify_and_cert_path() {
    let Some((env, _)) = mirrored() else { return };
    let Some(ca) = Ca::new(&env.dir.path().join("ca"), "engine-ca") else { return };
    let Some(d) = Dockerd::start_tls(&ca) else { return };
    let tcp = d.tcp.clone().unwrap();
    let ctx = simple_context(&env);
    let good = ca.docker_dir(&env.dir.path().join("good"), true);
    let vars = |dir: &Path| {
        [("DOCKER_HOST", tcp.clone()), ("DOCKER_TLS_VERIFY", "1".into()), ("DOCKER_CERT_PATH", s(dir).to_string())]
    };
    let with = |dir: &Path, tag: &str| {
        let v = vars(dir);
        load(&env, &ctx, tag, &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
    };
    let (ok, err) = with(&good, "engine/tls:1");
    assert!(ok, "{err}\ndockerd log:\n{}", d.log());
    assert!(err.contains(&format!("loading into the Docker engine at {tcp}")), "{err}");
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", "engine/tls:1", "cat", "/hello"]).trim(), "hi");
    // And back over TLS: the saved archive streams through the session.
    let v = vars(&good);
    let out = env.cmd(&["pull", "docker-daemon:engine/tls:1"]).envs(v.iter().map(|(k, v)| (*k, v))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.ok(&["inspect", "-f", "{{.Architecture}}", "engine/tls:1"]).trim(), host_arch());

    // Without a client certificate: refused, named, and nothing falls back
    // to the local store.
    let nocert = ca.docker_dir(&env.dir.path().join("nocert"), false);
    let (ok, err) = with(&nocert, "engine/tls:2");
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("TLS with the Docker engine at {tcp} failed")), "{err}");
    assert!(err.contains("client certificate") && err.contains(s(&nocert)), "{err}");
    assert!(!err.contains("local store"), "{err}");
    assert!(!env.run(&["inspect", "engine/tls:2"]).status.success(), "engine/tls:2 is in the local store");

    // An engine certificate of another CA is not trusted.
    let Some(other) = Ca::new(&env.dir.path().join("other-ca"), "other-ca") else { return };
    let stranger = other.docker_dir(&env.dir.path().join("stranger"), true);
    let (ok, err) = with(&stranger, "engine/tls:3");
    assert!(!ok && err.contains(&tcp) && err.contains("certificate"), "{err}");

    // DOCKER_TLS without DOCKER_TLS_VERIFY: TLS, the engine not verified
    // (no ca.pem here, and the system's roots do not know the test CA).
    let noca = ca.docker_dir(&env.dir.path().join("noca"), true);
    std::fs::remove_file(noca.join("ca.pem")).unwrap();
    let unverified = [("DOCKER_HOST", tcp.as_str()), ("DOCKER_TLS", "1"), ("DOCKER_CERT_PATH", s(&noca))];
    let (ok, err) = load(&env, &ctx, "engine/tls:6", &unverified);
    assert!(ok && err.contains(&format!("loading into the Docker engine at {tcp}")), "{err}");
    let (ok, err) = with(&noca, "engine/tls:7");
    assert!(!ok && err.contains("UnknownIssuer"), "{err}");

    // A certificate without its key names the missing file.
    std::fs::remove_file(good.join("key.pem")).unwrap();
    let (ok, err) = with(&good, "engine/tls:4");
    assert!(!ok && err.contains(&tcp) && err.contains(s(&good.join("key.pem"))), "{err}");
    let (ok, err) = with(&env.dir.path().join("absent"), "engine/tls:5");
    assert!(!ok && err.contains("DOCKER_CERT_PATH") && err.contains("absent"), "{err}");
}

#[test]
fn load_over_tls_through_a_docker_context() {
    let Some((env, _)) = mirrored() else { return };
    let Some(ca) = Ca::new(&env.dir.path().join("ca"), "engine-ca") else { return };
    let Some(d) = Dockerd::start_tls(&ca) else { return };
    let tcp = d.tcp.clone().unwrap();
    let cfg = env.docker_config();
    let id = sha256_hex(b"secure").trim_start_matches("sha256:").to_string();
    let meta = cfg.join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta).unwrap();
    let meta_json = serde_json::json!({"Name": "secure", "Metadata": {},
        "Endpoints": {"docker": {"Host": tcp, "SkipTLSVerify": false}}});
    std::fs::write(meta.join("meta.json"), meta_json.to_string()).unwrap();
    ca.docker_dir(&cfg.join("contexts/tls").join(&id).join("docker"), true);
    let ctx = simple_context(&env);
    let out = env
        .cmd(&["build", "--progress", "plain", "--load", "-t", "engine/ctx-tls:1", s(&ctx)])
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONTEXT", "secure")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\ndockerd log:\n{}", d.log());
    assert!(err.contains(&format!("loading into the Docker engine at {tcp}")), "{err}");
    assert!(d.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).contains("engine/ctx-tls:1"));
}

/// Processes whose command line has all of `words`.
fn processes_with(words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| cmdline.contains(w)) {
            found.push(format!("{}: {cmdline}", e.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn load_over_ssh_through_docker_dial_stdio() {
    let Some((env, _)) = mirrored() else { return };
    let Some(d) = Dockerd::start() else { return };
    let ssh_dir = env.dir.path().join("ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    // The "remote" docker client finds this engine as DOCKER_HOST.
    let Some(sshd) = Sshd::start_with(&ssh_dir, &format!("SetEnv DOCKER_HOST={}\n", d.host())) else { return };
    let ctx = simple_context(&env);
    let host = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let ssh = sshd.ssh_command();
    let logins = || std::fs::read_to_string(ssh_dir.join("sshd.log")).unwrap().matches("Accepted publickey").count();
    let (ok, err) = load(&env, &ctx, "engine/ssh:1", &[("DOCKER_HOST", &host), ("POLYARCH_SSH", &ssh)]);
    assert!(ok, "{err}\ndockerd log:\n{}", d.log());
    assert!(err.contains(&format!("loading into the Docker engine at {host}")), "{err}");
    // `/_ping`, `/info` and the load share one ssh session.
    assert_eq!(logins(), 1, "{}", std::fs::read_to_string(ssh_dir.join("sshd.log")).unwrap());
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", "engine/ssh:1", "cat", "/hello"]).trim(), "hi");
    let out = env
        .cmd(&["pull", "docker-daemon:engine/ssh:1"])
        .env("DOCKER_HOST", &host)
        .env("POLYARCH_SSH", &ssh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.ok(&["inspect", "-f", "{{.Architecture}}", "engine/ssh:1"]).trim(), host_arch());
    let port = sshd.port.to_string();
    let left = processes_with(&["dial-stdio", &port]);
    assert!(left.is_empty(), "ssh processes left: {left:?}");

    // The socket path of the URL goes to the remote docker client.
    let with_path = format!("{host}{}", d.socket().display());
    let vars = [("DOCKER_HOST", with_path.as_str()), ("POLYARCH_SSH", &ssh)];
    let (ok, err) = load(&env, &ctx, "engine/ssh:2", &vars);
    assert!(ok && err.contains(&format!("at {with_path}")), "{err}");

    // No sshd there: the engine is unreachable, said with ssh's own words.
    let free = free_port();
    let nobody = format!("ssh://root@127.0.0.1:{free}");
    let (ok, err) = load(&env, &ctx, "engine/ssh:3", &[("DOCKER_HOST", &nobody), ("POLYARCH_SSH", &ssh)]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("no Docker engine reachable (cannot connect to the Docker engine at {nobody}")),
        "{err}"
    );
    assert!(err.contains("Connection refused") && err.contains("status 255"), "{err}");
    assert!(env.ok(&["images"]).contains("engine/ssh"));
    assert!(processes_with(&["dial-stdio", &free.to_string()]).is_empty());
}
