//! Helpers for the CLI tests: a real registry from the shared fixtures,
//! populated with the multi-arch busybox image, and a `polyarch` command
//! with its own data directory, config and docker config.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod api;
pub mod certs;
pub mod dockerd;
pub mod hostile;
pub mod image;
pub mod net;
pub mod proxy;
pub mod ssh;

/// Where the shared fixture scripts live.
pub fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("POLYARCH_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks a prerequisite: under CI a missing one fails the test; elsewhere
/// the test is skipped with a message.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing under CI=true: {what}");
    }
    eprintln!("skipping: prerequisite missing: {what}");
    note_skip(what);
    false
}

/// Adds a line to the file `POLYARCH_SKIPPED` names, if any, so that the
/// run can say how many tests were skipped and why (scripts/test.sh).
pub fn note_skip(what: &str) {
    use std::io::Write as _;
    if let Some(path) = std::env::var_os("POLYARCH_SKIPPED") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{what}");
        }
    }
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().is_ok_and(|o| o.status.success())
}

/// The effective uid is 0.
pub fn is_root() -> bool {
    polyarch_emu::host::is_root()
}

/// Root and runc, which RUN steps need; checked with [`require`].
pub fn runc_prerequisites() -> bool {
    require(is_root(), "root (RUN needs an OCI runtime)") && require(have("runc"), "runc")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(5999)
}

/// A running registry started by the fixture script; stopped on drop.
pub struct Registry {
    pub host: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub ca: Option<PathBuf>,
}

impl Registry {
    /// Starts a registry with the given extra flags (`--auth`, `--tls`).
    pub fn start(flags: &[&str]) -> Option<Registry> {
        let script = fixtures_dir().join("registry.sh");
        if !require(script.exists(), &format!("{} (the shared fixtures)", script.display())) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("polyarch-reg-").tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let out = Command::new(&script)
                .args(["start", "--port", &port.to_string(), "--dir"])
                .arg(dir.path())
                .args(flags)
                .output()
                .expect("running registry.sh");
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("already in use") {
                    continue;
                }
                panic!("registry.sh start failed: {err}");
            }
            // The shared registry lives in a static, which is never dropped:
            // a watchdog stops it when this test process exits.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" stop --port "$3" --dir "$4" >/dev/null 2>&1; rm -rf "$4""#)
                .arg("watchdog")
                .arg(std::process::id().to_string())
                .arg(&script)
                .arg(port.to_string())
                .arg(dir.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let env = String::from_utf8_lossy(&out.stdout).to_string();
            let get =
                |k: &str| env.lines().find_map(|l| l.strip_prefix(&format!("export {k}="))).map(|s| s.to_string());
            return Some(Registry {
                host: get("REGISTRY").expect("REGISTRY line"),
                dir,
                port,
                user: get("REGISTRY_USER"),
                password: get("REGISTRY_PASSWORD"),
                ca: get("REGISTRY_CA").map(PathBuf::from),
            });
        }
        panic!("no free port for a registry");
    }

    pub fn stop(&self) {
        let _ = Command::new(fixtures_dir().join("registry.sh"))
            .args(["stop", "--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .output();
    }

    /// Pushes the multi-arch busybox fixture (`library/busybox:latest` and
    /// the per-platform `latest-ARCH` tags).
    pub fn push_busybox(&self) {
        let mut cmd = Command::new("python3");
        cmd.arg(fixtures_dir().join("base-images.py"));
        match &self.ca {
            Some(ca) => {
                cmd.arg(format!("https://{}", self.host)).arg("--ca-cert").arg(ca);
            }
            None => {
                cmd.arg(&self.host);
            }
        }
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            cmd.arg("--user").arg(format!("{u}:{p}"));
        }
        let out = cmd.output().expect("running base-images.py");
        assert!(out.status.success(), "base-images.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The plain-HTTP registry with busybox, shared by the tests of one binary.
pub fn shared_registry() -> Option<&'static Registry> {
    static REG: OnceLock<Option<Registry>> = OnceLock::new();
    REG.get_or_init(|| {
        if !require(have("docker-registry"), "docker-registry (apt-get install docker-registry)") {
            return None;
        }
        let r = Registry::start(&[])?;
        r.push_busybox();
        Some(r)
    })
    .as_ref()
}

/// The multi-arch busybox image on `reg`.
pub fn busybox(reg: &Registry) -> String {
    format!("{}/library/busybox:latest", reg.host)
}

/// A polyarch invocation with its own state directories.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("polyarch-test-").tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("docker")).expect("mkdir");
        Env { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("polyarch.toml")
    }

    /// `polyarch ARGS` with this environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_polyarch"));
        c.args(args)
            .env("POLYARCH_ROOT", self.root())
            .env("DOCKER_CONFIG", self.docker_config())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            // No Docker engine unless a test names one: `--load` then goes
            // to the local store, whatever engine the machine runs.
            .env("DOCKER_HOST", format!("unix://{}", self.dir.path().join("no-engine.sock").display()))
            .env_remove("POLYARCH_CONFIG");
        if self.config_file().exists() {
            c.env("POLYARCH_CONFIG", self.config_file());
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running polyarch")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "polyarch {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "polyarch {args:?} should have failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "exit code");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Runs a command and returns stdout, panicking with its stderr on failure.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo inspect --raw` of a reference on a plain-HTTP registry.
pub fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("running skopeo");
    assert!(out.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Every regular file below `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The regular files below `dir` holding `needle`.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())))
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    polyarch_oci::Digest::sha256(bytes).to_string()
}

/// An environment whose config sends docker.io to the fixture registry.
pub fn mirrored() -> Option<(Env, &'static Registry)> {
    let reg = shared_registry()?;
    let env = Env::new();
    std::fs::write(env.config_file(), format!("[registry.\"docker.io\"]\nmirrors = [\"{}\"]\n", reg.host)).unwrap();
    Some((env, reg))
}

/// [`mirrored`] for builds with RUN steps: `None` (skip) when root or runc
/// is missing outside CI.
pub fn mirrored_for_run() -> Option<(Env, &'static Registry)> {
    if !runc_prerequisites() {
        return None;
    }
    mirrored()
}

/// `polyarch build --progress plain ARGS`, asserting success; returns
/// (stdout, stderr).
pub fn build_ok(env: &Env, args: &[&str]) -> (String, String) {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "polyarch {full:?} failed:\n{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// No mount below the data root `root` and no container of its runtime
/// remain.
pub fn assert_no_mounts_or_containers(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(root.to_str().unwrap())).collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    let state = root.join("exec/runtime");
    if state.exists() {
        let out = sh(Command::new("runc").arg("--root").arg(&state).args(["list", "-q"]));
        assert!(out.trim().is_empty(), "containers left: {out}");
    }
}

/// [`assert_no_mounts_or_containers`], and no temporary directory remains
/// under `root/run`.
pub fn assert_clean_root(root: &Path) {
    assert_no_mounts_or_containers(root);
    let run = root.join("run");
    if run.exists() {
        let left: Vec<_> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "temporary directories left under {}: {left:?}", run.display());
    }
}

/// Writes `files` (path → content) under a new context directory.
pub fn context(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.dir.path().join(name);
    for (p, c) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, c).unwrap();
    }
    dir
}

/// A path as `&str`, for command arguments.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `executed N step(s), M cached` from a build's stderr.
pub fn counts(stderr: &str) -> (usize, usize) {
    let line = stderr.lines().find(|l| l.starts_with("executed ")).unwrap_or_else(|| panic!("no summary in {stderr}"));
    let n: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect();
    (n[0], n[1])
}

/// `podman run --rm --platform PLATFORM IMAGE ARGS...` with its storage
/// under `dir` (pulled from the registry fixture over plain HTTP, runc as
/// its runtime, limits this machine grants): the process's stdout.
pub fn podman_run(dir: &Path, platform: &str, image: &str, args: &[&str]) -> String {
    let out = Command::new("podman")
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--runtime", "runc", "run", "--rm", "--pull=always", "--tls-verify=false", "--network", "none"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--platform", platform, image])
        .args(args)
        .output()
        .expect("running podman");
    assert!(out.status.success(), "podman run {platform} {image}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
