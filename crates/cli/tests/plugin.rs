//! polyarch as a docker CLI plugin, through the real docker client: HOME
//! is a temporary directory whose `.docker/cli-plugins/` holds polyarch as
//! `docker-polyarch` and `docker-buildx`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// An environment whose docker client finds polyarch as its plugins.
pub(crate) struct Plugins {
    pub(crate) env: Env,
    pub(crate) home: PathBuf,
}

/// The major version of the docker client (`docker version`), 0 when it
/// does not say.
pub(crate) fn docker_client_major() -> u32 {
    let out =
        Command::new("docker").args(["version", "--format", "{{.Client.Version}}"]).env_remove("DOCKER_HOST").output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.trim().split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

pub(crate) fn docker_client() -> bool {
    require(have("docker"), "the docker client (/usr/local/bin/docker)")
}

impl Plugins {
    pub(crate) fn new(env: Env) -> Plugins {
        let home = env.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let p = Plugins { env, home };
        for name in ["polyarch", "buildx"] {
            let out = p
                .env
                .cmd(&["install-plugin", "--as", name])
                .env("HOME", &p.home)
                .env_remove("DOCKER_CONFIG")
                .output()
                .unwrap();
            assert!(out.status.success(), "install-plugin --as {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        p
    }

    fn docker(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir, args).env_remove("DOCKER_HOST").output().expect("running docker")
    }

    /// The docker client in `dir` with `args`, finding polyarch as its
    /// plugins and polyarch finding this environment's store and config.
    pub(crate) fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args)
            .current_dir(dir)
            .env("HOME", &self.home)
            .env_remove("DOCKER_CONFIG")
            .env_remove("BUILDX_BUILDER")
            .env_remove("POLYARCH_BUILDER")
            .env("POLYARCH_ROOT", self.env.root())
            .env("XDG_CONFIG_HOME", self.env.dir.path().join("xdg"))
            .env_remove("POLYARCH_CONFIG");
        if self.env.config_file().exists() {
            c.env("POLYARCH_CONFIG", self.env.config_file());
        }
        c
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.docker(dir, args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn docker_polyarch_and_docker_buildx_version() {
    if !docker_client() {
        return;
    }
    let p = Plugins::new(Env::new());
    let link = p.home.join(".docker/cli-plugins/docker-polyarch");
    assert_eq!(std::fs::canonicalize(&link).unwrap(), std::fs::canonicalize(env!("CARGO_BIN_EXE_polyarch")).unwrap());
    let here = p.home.clone();
    let v = p.ok(&here, &["polyarch", "version"]);
    let own = p.env.ok(&["version"]);
    assert_eq!(v, own, "docker polyarch version is polyarch version");
    assert!(v.starts_with(&format!("polyarch v{} ", env!("CARGO_PKG_VERSION"))), "{v}");
    assert_eq!(p.ok(&here, &["buildx", "version"]), own);
    // Docker's global options come before the plugin name; they do not reach polyarch's parser.
    assert_eq!(p.ok(&here, &["--context", "default", "polyarch", "version"]), own);
    assert_eq!(
        p.ok(&here, &["-H", "unix:///nonexistent.sock", "buildx", "version", "--format", "{{.Name}}"]),
        "polyarch\n"
    );

    // Docker lists both as valid plugins with our metadata.
    let help = p.ok(&here, &["--help"]);
    assert!(!help.contains("Invalid Plugins"), "{help}");
    assert!(help.contains("polyarch*") && help.contains("buildx*"), "{help}");
    let info = String::from_utf8_lossy(&p.docker(&here, &["info", "--format", "{{json .ClientInfo.Plugins}}"]).stdout)
        .into_owned();
    let plugins: serde_json::Value = serde_json::from_str(info.trim()).unwrap_or_else(|e| panic!("{e}: {info}"));
    let ours: Vec<&serde_json::Value> =
        plugins.as_array().unwrap().iter().filter(|p| p["Vendor"] == "polyarch").collect();
    assert_eq!(ours.len(), 2, "{info}");
    assert!(ours.iter().all(|p| p["Version"] == format!("v{}", env!("CARGO_PKG_VERSION"))), "{info}");

    // Installing again is refused unless forced.
    let out = p.env.cmd(&["install-plugin"]).env("HOME", &p.home).env_remove("DOCKER_CONFIG").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

#[test]
fn docker_buildx_build_pushes_two_platforms() {
    if !docker_client() {
        return;
    }
    let Some((env, reg)) = mirrored() else { return };
    let p = Plugins::new(env);
    let ctx = context(&p.env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY hello /hello\n"), ("hello", "hi\n")]);
    let image = format!("{}/test/plugin-buildx:1", reg.host);
    p.ok(&ctx, &["buildx", "build", "--platform", "linux/amd64,linux/arm64", "-t", &image, "--push", "."]);

    let (status, raw) = api::get(reg, "GET", "test/plugin-buildx/manifests/1");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["platform"]["os"] != "unknown")
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    assert!(api::complete_or_absent(reg, "test/plugin-buildx", "1"), "every child is in the registry");

    // `docker build` goes to the buildx plugin, so to polyarch, into its
    // store (docker 23 and later; older clients build with their engine).
    if docker_client_major() >= 23 {
        p.ok(&ctx, &["build", "-t", "plugin-classic:1", "."]);
        let names = p.env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(names.lines().any(|l| l == "plugin-classic:1"), "{names}");
    }
    // And imagetools is buildx's.
    let inspected = p.ok(&ctx, &["buildx", "imagetools", "inspect", "--format", "{{.Name}}", &image]);
    assert_eq!(inspected.trim(), image);
}

#[test]
fn docker_buildx_create_ls_inspect_use_rm() {
    if !docker_client() {
        return;
    }
    let p = Plugins::new(Env::new());
    let here = p.home.clone();
    p.ok(&here, &["buildx", "create", "--name", "pbx", "--node", "n1", "--platform", "linux/amd64", "local"]);
    let ls = p.ok(&here, &["buildx", "ls"]);
    assert!(ls.starts_with("NAME/NODE"), "{ls}");
    assert!(ls.lines().any(|l| l.starts_with("pbx")), "{ls}");
    assert!(ls.contains(" \\_ n1"), "{ls}");
    let names = p.ok(&here, &["buildx", "ls", "--format", "{{.Name}}{{range .Nodes}} {{.Name}}{{end}}"]);
    assert!(names.lines().any(|l| l == "pbx n1"), "{names}");
    p.ok(&here, &["buildx", "use", "pbx"]);
    let inspect = p.ok(&here, &["buildx", "inspect"]);
    assert!(inspect.starts_with("Name:          pbx\n"), "{inspect}");
    // buildx's --builder before the command picks the builder.
    let inspect = p.ok(&here, &["buildx", "--builder", "default", "inspect"]);
    assert!(inspect.starts_with("Name:          default\n"), "{inspect}");
    p.ok(&here, &["buildx", "rm", "pbx"]);
    let ls = p.ok(&here, &["buildx", "ls"]);
    assert!(!ls.contains("pbx"), "{ls}");
}

/// Children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split(' ').nth(1).and_then(|x| x.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn killing_docker_stops_the_plugin() {
    if !docker_client() {
        return;
    }
    let p = Plugins::new(Env::new());
    let mut cmd = Command::new("docker");
    cmd.args(["polyarch", "login", "-u", "u", "--password-stdin", "127.0.0.1:1"])
        .env("HOME", &p.home)
        .env_remove("DOCKER_CONFIG")
        .env("POLYARCH_ROOT", p.env.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut docker = cmd.spawn().unwrap();
    let _stdin = docker.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let plugin = loop {
        if let Some(c) = children(docker.id()).first() {
            break *c;
        }
        assert!(std::time::Instant::now() < deadline, "the plugin never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Give the plugin time to connect to docker's socket, as it does first thing.
    std::thread::sleep(std::time::Duration::from_millis(500));
    // A client that names no socket (20.10) ignores SIGTERM while its
    // plugin runs: only a `kill -9` ends it.
    let environ = std::fs::read(format!("/proc/{plugin}/environ")).unwrap_or_default();
    let socket = environ.split(|b| *b == 0).any(|v| v.starts_with(b"DOCKER_CLI_PLUGIN_SOCKET="));
    let signal = if socket { "-TERM" } else { "-KILL" };
    sh(Command::new("kill").args([signal, &docker.id().to_string()]));
    let status = docker.wait().unwrap();
    assert!(!status.success());
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !Path::new(&format!("/proc/{plugin}")).exists()
            || std::fs::read_to_string(format!("/proc/{plugin}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "polyarch (pid {plugin}) outlived the docker that ran it");
}
