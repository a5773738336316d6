//! Test support: a real registry (`shared/fixtures/registry.sh`) per test
//! binary, filled with the busybox fixture images.
//!
//! Under `CI=true` missing prerequisites fail the test; elsewhere the test
//! is skipped with a message on stderr.

#![allow(dead_code)]

pub mod fake;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use polyarch_oci::Reference;
use polyarch_registry::{Client, ClientBuilder, DockerConfig, RegistryConfig, RetryPolicy};

/// What kind of registry to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Plain HTTP, no auth, with the busybox images.
    Plain,
    /// Plain HTTP with basic auth, empty.
    Auth,
    /// HTTPS with basic auth, empty.
    AuthTls,
    /// Plain HTTP, empty, for tests that stop it.
    Disposable,
}

/// A running registry; stopped when the last handle is dropped.
pub struct Registry {
    pub port: u16,
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

impl Registry {
    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA of a `--tls` registry.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("certs.d").join("ca.crt")
    }

    /// A reference into this registry.
    pub fn reference(&self, path: &str, tag: Option<&str>) -> Reference {
        reference(&self.host(), path, tag)
    }

    /// Stops it now.
    pub fn stop(&self) {
        let _ =
            Command::new(script()).args(["stop", "--port", &self.port.to_string(), "--dir"]).arg(&self.dir).output();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Stopped under the lock that [`registry`] starts registries under:
        // a restart on the same port and directory must not find this one
        // still stopping (registry.sh would take it for running, and the
        // stop would then take the new user's registry away).
        if HOLDING.with(Cell::get) {
            self.stop();
        } else {
            let _running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            self.stop();
        }
    }
}

/// A reference from parts.
pub fn reference(domain: &str, path: &str, tag: Option<&str>) -> Reference {
    Reference { domain: domain.to_string(), path: path.to_string(), tag: tag.map(str::to_string), digest: None }
}

fn fixtures() -> PathBuf {
    match std::env::var_os("POLYARCH_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

fn script() -> PathBuf {
    fixtures().join("registry.sh")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns `None`) or, under CI, panics.
fn unavailable(why: &str) -> Option<Arc<Registry>> {
    if under_ci() {
        panic!("registry test prerequisite missing under CI: {why}");
    }
    eprintln!("skipping registry test: {why}");
    // As the CLI tests' `note_skip`: scripts/test.sh counts these lines.
    if let Some(path) = std::env::var_os("POLYARCH_SKIPPED") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = std::io::Write::write_all(&mut f, format!("registry test: {why}\n").as_bytes());
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Mode, live handle, port, data directory, populated.
type Slot = (Mode, Weak<Registry>, u16, PathBuf, bool);

static RUNNING: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

thread_local! {
    /// Whether this thread holds [`RUNNING`] (a registry dropped then is
    /// stopped without taking it again).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as holding [`RUNNING`] until dropped.
struct Holding;

impl Holding {
    fn new() -> Holding {
        HOLDING.with(|h| h.set(true));
        Holding
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
}

/// A registry of `mode` shared by the tests of this binary (restarted on
/// the same port and data directory if all users dropped it).
pub fn registry(mode: Mode) -> Option<Arc<Registry>> {
    let script = script();
    if !script.exists() {
        return unavailable(&format!("{} not found", script.display()));
    }
    if Command::new("docker-registry").arg("--version").output().is_err() && !under_ci() {
        return unavailable("docker-registry is not installed (registry.sh installs it as root)");
    }
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    let _holding = Holding::new();
    if running.is_empty() {
        remove_stale_dirs();
    }
    let slot = running.iter().position(|e| e.0 == mode && mode != Mode::Disposable);
    if let Some(i) = slot {
        if let Some(r) = running[i].1.upgrade() {
            return Some(r);
        }
    }
    let (port, dir, populated) = match slot {
        Some(i) => (running[i].2, running[i].3.clone(), running[i].4),
        None => {
            let port = free_port();
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("registry-{}-{:?}-{}", std::process::id(), mode, port).to_lowercase());
            (port, dir, false)
        }
    };
    let mut args =
        vec!["start".to_string(), "--port".into(), port.to_string(), "--dir".into(), dir.display().to_string()];
    if matches!(mode, Mode::Auth | Mode::AuthTls) {
        args.push("--auth".into());
    }
    if mode == Mode::AuthTls {
        args.push("--tls".into());
    }
    let out =
        match Command::new(&script).args(&args).env_remove("REGISTRY_USER").env_remove("REGISTRY_PASSWORD").output() {
            Ok(o) => o,
            Err(e) => return unavailable(&format!("cannot run registry.sh: {e}")),
        };
    if !out.status.success() {
        return unavailable(&format!("registry.sh start failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let env = parse_exports(&String::from_utf8_lossy(&out.stdout));
    let reg = Arc::new(Registry { port, dir: dir.clone(), env });
    if mode == Mode::Plain && !populated {
        let out = Command::new(fixtures().join("base-images.py")).arg(reg.host()).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => return unavailable(&format!("base-images.py failed: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => return unavailable(&format!("cannot run base-images.py: {e}")),
        }
    }
    let entry = (mode, Arc::downgrade(&reg), port, dir, true);
    match slot {
        Some(i) => running[i] = entry,
        None => running.push(entry),
    }
    Some(reg)
}

/// Removes data directories left by earlier test processes that are gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name.strip_prefix("registry-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.split_whitespace().next().unwrap_or("").trim_matches('"').to_string()))
        .collect()
}

/// A client for tests: no docker config, fast retries.
pub fn client(config: RegistryConfig) -> Client {
    builder(config).build().expect("client")
}

/// A builder for tests: no docker config, fast retries.
pub fn builder(config: RegistryConfig) -> ClientBuilder {
    ClientBuilder::new()
        .with_config(config)
        .with_docker_config(DockerConfig::empty())
        .with_retry_policy(RetryPolicy::fast())
}

/// A docker config file in `dir` with credentials for `host`.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> DockerConfig {
    let path = dir.join("config.json");
    let mut c = DockerConfig::load_from(&path).expect("load docker config");
    c.login(host, user, password).expect("login");
    DockerConfig::load_from(&path).expect("reload docker config")
}
