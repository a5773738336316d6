//! Builders and their nodes (as `docker buildx create/use/rm`): where they
//! are stored, how endpoints are written, how a node is reached and probed.
//!
//! Each builder is one JSON file in `$XDG_CONFIG_HOME/polyarch/builders/`;
//! the builder chosen with `use` is named in `current` next to them. Every
//! file is written to a temporary file and renamed, so readers never see a
//! half-written one. The default builder (the local node) is not stored: it
//! is always present and cannot be removed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, NodeId, Result};

/// The name of the builder that is always present (as buildx's `default`).
pub const DEFAULT: &str = "default";
/// Another name for the default builder.
pub const LOCAL_ALIAS: &str = "local";
/// The driver of builders of local and ssh nodes.
pub const DRIVER: &str = "polyarch";
/// The driver of builders whose nodes are containers on Docker engines.
pub const DOCKER_CONTAINER: &str = "docker-container";
/// The engine's own builder (for polyarch: a local node).
pub const DOCKER: &str = "docker";
/// polyarch's version as nodes report it.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Where a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// This machine.
    Local,
    /// A machine reached with the system `ssh` client.
    Ssh { user: Option<String>, host: String, port: Option<u16> },
    /// A Docker engine (`unix://PATH`, `tcp://HOST:PORT` or a docker
    /// context's name) where the node is a container
    /// ([`crate::docker_container`]).
    Docker { host: String },
}

impl Endpoint {
    /// Parses `local` or `ssh://[user@]host[:port]`.
    pub fn parse(s: &str) -> Result<Endpoint> {
        if s == "local" {
            return Ok(Endpoint::Local);
        }
        let Some(rest) = s.strip_prefix("ssh://") else {
            return Err(Error::UnsupportedEndpoint { endpoint: s.to_string() });
        };
        let invalid = |reason: &str| Error::InvalidEndpoint { endpoint: s.to_string(), reason: reason.to_string() };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(invalid("a path, query or fragment is not allowed"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, hp)) if !u.is_empty() && !u.contains(':') => (Some(u.to_string()), hp),
            Some(_) => return Err(invalid("bad user (passwords are not supported)")),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport).map_err(|r| invalid(&r))?;
        if host.is_empty() || host.starts_with('-') || host.chars().any(char::is_whitespace) {
            return Err(invalid("bad host"));
        }
        Ok(Endpoint::Ssh { user, host, port })
    }

    /// Whether the node is another machine.
    pub fn is_remote(&self) -> bool {
        !matches!(self, Endpoint::Local)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the error says what is wrong.
fn split_host_port(s: &str) -> std::result::Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {p:?}"));
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| "unclosed '['".to_string())?;
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
                None => Err(format!("unexpected {after:?} after the address")),
            },
        };
    }
    match s.split_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(parse_port(p)?))),
        None => Ok((s.to_string(), None)),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Local => f.write_str("local"),
            Endpoint::Docker { host } => f.write_str(host),
            Endpoint::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                match port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Endpoint::Docker { host } => s.collect_str(&format_args!("{DOCKER_PREFIX}{host}")),
            _ => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(host) = s.strip_prefix(DOCKER_PREFIX) {
            return Ok(Endpoint::Docker { host: host.to_string() });
        }
        Endpoint::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How a Docker endpoint is written in a builder's file (its own text
/// can be a context name, which would read as anything).
const DOCKER_PREFIX: &str = "docker:";

/// What `polyarch worker --probe` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// polyarch's version on the node.
    pub version: String,
    /// Platforms it runs natively, the host's first.
    pub native: Vec<String>,
    /// Platforms its emulators run.
    pub emulated: Vec<String>,
}

/// A node's last known state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum NodeStatus {
    /// Never bootstrapped, or stopped.
    #[default]
    Inactive,
    /// The last probe answered.
    Running {
        /// What it reported.
        probe: Probe,
    },
    /// The last probe failed.
    Error {
        /// Why, naming the node.
        reason: String,
    },
}

impl NodeStatus {
    /// `inactive`, `running` or `error`.
    pub fn word(&self) -> &'static str {
        match self {
            NodeStatus::Inactive => "inactive",
            NodeStatus::Running { .. } => "running",
            NodeStatus::Error { .. } => "error",
        }
    }
}

/// One node of a builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its name in the builder.
    pub name: String,
    /// Where it runs.
    pub endpoint: Endpoint,
    /// Platforms given with `--platform`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The `polyarch` program on the node (default: `polyarch` on its PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_bin: Option<String>,
    /// `--driver-opt` KEY=VALUE pairs (docker-container nodes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// `--buildkitd-flags`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildkitd_flags: Option<String>,
    /// Its last known state.
    #[serde(default)]
    pub state: NodeStatus,
}

impl Node {
    /// The node as errors and events name it.
    pub fn id(&self) -> NodeId {
        NodeId { name: self.name.clone(), endpoint: self.endpoint.to_string() }
    }

    /// Declared platforms first, then native, then emulated ones, each once;
    /// the flag says whether the platform is emulated.
    pub fn platforms(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = self.platforms.iter().map(|p| (p.clone(), false)).collect();
        if let NodeStatus::Running { probe } = &self.state {
            let found = probe.native.iter().map(|p| (p, false)).chain(probe.emulated.iter().map(|p| (p, true)));
            for (p, emulated) in found {
                if !out.iter().any(|(q, _)| q == p) {
                    out.push((p.clone(), emulated));
                }
            }
        }
        out
    }
}

/// A stored builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// Its name.
    pub name: String,
    /// [`DRIVER`], [`DOCKER_CONTAINER`] or [`DOCKER`].
    #[serde(default = "driver")]
    pub driver: String,
    /// Its nodes, in the order they were added.
    pub nodes: Vec<Node>,
    /// The registry configuration given with `--config` (the TOML text, as
    /// the client's config file), applied on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

fn driver() -> String {
    DRIVER.to_string()
}

impl Builder {
    /// A builder with no nodes yet.
    pub fn new(name: &str) -> Builder {
        Builder { name: name.to_string(), driver: DRIVER.to_string(), nodes: Vec::new(), config: None }
    }

    /// The nodes on other machines.
    pub fn remote_nodes(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| n.endpoint.is_remote()).collect()
    }
}

/// Whether `name` refers to the default builder.
pub fn is_default(name: &str) -> bool {
    name == DEFAULT || name == LOCAL_ALIAS
}

/// Builder and node names: a letter or digit, then letters, digits, `_`,
/// `.` and `-` (so a name is always a safe file name).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::InvalidName { name: name.to_string() });
    }
    Ok(())
}

/// The builders directory in a config directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io<'p>(doing: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::Io { doing, path: path.to_path_buf(), source }
}

impl Store {
    /// The builders of directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// `$XDG_CONFIG_HOME/polyarch/builders`, or `~/.config/polyarch/builders`.
    pub fn from_env() -> Result<Store> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
                .ok_or(Error::NoConfigDir)?,
        };
        Ok(Store::new(base.join("polyarch").join("builders")))
    }

    #[cfg(test)]
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// A stored builder, or `None`.
    pub fn get(&self, name: &str) -> Result<Option<Builder>> {
        validate_name(name)?;
        let p = self.path(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|source| Error::Json { path: p.clone(), source })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &p)(e)),
        }
    }

    /// Every stored builder, sorted by name.
    pub fn list(&self) -> Result<Vec<Builder>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("reading", &self.dir)(e)),
        };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(io("reading", &self.dir))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".json").filter(|s| validate_name(s).is_ok()) {
                names.push(stem.to_string());
            }
        }
        names.sort();
        names.iter().filter_map(|n| self.get(n).transpose()).collect()
    }

    /// Writes a builder (temp file + rename).
    pub fn put(&self, b: &Builder) -> Result<()> {
        validate_name(&b.name)?;
        let path = self.path(&b.name);
        let json = serde_json::to_vec_pretty(b).map_err(|source| Error::Json { path: path.clone(), source })?;
        write_atomic(&self.dir, &path, &json)
    }

    /// Removes a builder; the current choice falls back to the default.
    pub fn remove(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        if self.current()?.as_deref() == Some(name) {
            self.set_current(None)?;
        }
        let p = self.path(name);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("removing", &p)(e)),
        }
    }

    /// The builder chosen with `use`; `None` is the default.
    pub fn current(&self) -> Result<Option<String>> {
        let p = self.dir.join("current");
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty() && !is_default(s))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &p)(e)),
        }
    }

    /// Chooses the builder commands use; `None` (or the default's name)
    /// chooses the default.
    pub fn set_current(&self, name: Option<&str>) -> Result<()> {
        let p = self.dir.join("current");
        match name.filter(|n| !is_default(n)) {
            Some(n) => write_atomic(&self.dir, &p, format!("{n}\n").as_bytes()),
            None => match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &p)(e)),
                _ => Ok(()),
            },
        }
    }

    /// The builder a command uses: `explicit` (from `--builder` or
    /// `POLYARCH_BUILDER`), else the current one. `None` is the default.
    pub fn resolve(&self, explicit: Option<&str>) -> Result<Option<Builder>> {
        let name = match explicit.filter(|n| !n.is_empty()) {
            Some(n) => Some(n.to_string()),
            None => self.current()?,
        };
        match name {
            None => Ok(None),
            Some(n) if is_default(&n) => Ok(None),
            Some(n) => match self.get(&n)? {
                Some(b) => Ok(Some(b)),
                None => Err(Error::NoBuilder { name: n }),
            },
        }
    }
}

/// The builder `build` uses when it has remote nodes; `None` builds here
/// (the default builder, or builders of local nodes only).
pub fn for_build(explicit: Option<&str>) -> Result<Option<Builder>> {
    Ok(chosen(explicit)?.filter(|b| !b.remote_nodes().is_empty()))
}

/// The builder a build uses (`--builder`, `POLYARCH_BUILDER`, the current
/// one), remote nodes or not; `None` for the default builder.
pub fn chosen(explicit: Option<&str>) -> Result<Option<Builder>> {
    let explicit = explicit.filter(|n| !n.is_empty());
    if explicit.is_none_or(is_default)
        && std::env::var_os("XDG_CONFIG_HOME").is_none()
        && std::env::var_os("HOME").is_none()
    {
        return Ok(None);
    }
    Store::from_env()?.resolve(explicit)
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    polyarch_store::AtomicFile::write(path, bytes).map_err(io("writing", path))
}

/// The ssh command: `POLYARCH_SSH` (split on white space) or `ssh`.
fn ssh_command() -> Vec<String> {
    let words: Vec<String> =
        std::env::var("POLYARCH_SSH").unwrap_or_default().split_whitespace().map(String::from).collect();
    if words.is_empty() {
        vec!["ssh".to_string()]
    } else {
        words
    }
}

/// The argument vector that runs `polyarch worker --probe` on a node.
pub fn probe_command(node: &Node) -> Option<Vec<String>> {
    remote_command(node, &["worker", "--probe"])
}

/// The argument vector that runs `polyarch worker --stdio` on a node.
pub fn worker_command(node: &Node) -> Option<Vec<String>> {
    remote_command(node, &["worker", "--stdio"])
}

/// `ssh [options] [-p port] -- [user@]host polyarch ARGS...`.
fn remote_command(node: &Node, args: &[&str]) -> Option<Vec<String>> {
    let Endpoint::Ssh { user, host, port } = &node.endpoint else {
        return None;
    };
    let mut argv = ssh_command();
    argv.extend(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"].map(String::from));
    if let Some(p) = port {
        argv.extend(["-p".to_string(), p.to_string()]);
    }
    argv.push("--".to_string());
    argv.push(match user {
        Some(u) => format!("{u}@{host}"),
        None => host.clone(),
    });
    let bin = node.remote_bin.clone().or_else(|| std::env::var("POLYARCH_REMOTE_BIN").ok().filter(|s| !s.is_empty()));
    argv.push(bin.unwrap_or_else(|| "polyarch".to_string()));
    argv.extend(args.iter().map(|a| a.to_string()));
    Some(argv)
}

/// Probes a node over ssh; `local` is the probe of this machine (or why it
/// failed).
pub fn probe_node(node: &Node, local: &dyn Fn() -> std::result::Result<Probe, String>) -> NodeStatus {
    let result = match probe_command(node) {
        None => local(),
        Some(argv) => run_probe(&argv),
    };
    match result {
        Ok(probe) => NodeStatus::Running { probe },
        Err(e) => NodeStatus::Error { reason: format!("node {}: {e}", node.id()) },
    }
}

/// Runs a probe command; the error is the reason stored in the node's
/// status.
fn run_probe(argv: &[String]) -> std::result::Result<Probe, String> {
    let (prog, args) = argv.split_first().ok_or("no probe command")?;
    let out = Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {prog}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
        return Err(format!("{prog} failed ({}): {last}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        let text = String::from_utf8_lossy(&out.stdout);
        format!("unexpected probe output {:?}: {e}", text.chars().take(200).collect::<String>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, endpoint: &str) -> Node {
        Node {
            name: name.into(),
            endpoint: Endpoint::parse(endpoint).unwrap(),
            platforms: vec![],
            remote_bin: None,
            driver_opts: BTreeMap::new(),
            buildkitd_flags: None,
            state: NodeStatus::Inactive,
        }
    }

    #[test]
    fn endpoints_parse_and_print_back() {
        for (s, want) in [
            ("local", Endpoint::Local),
            ("ssh://h", Endpoint::Ssh { user: None, host: "h".into(), port: None }),
            (
                "ssh://root@10.0.0.1:2222",
                Endpoint::Ssh { user: Some("root".into()), host: "10.0.0.1".into(), port: Some(2222) },
            ),
            ("ssh://u@[::1]:22", Endpoint::Ssh { user: Some("u".into()), host: "::1".into(), port: Some(22) }),
            ("ssh://[fe80::1]", Endpoint::Ssh { user: None, host: "fe80::1".into(), port: None }),
        ] {
            let e = Endpoint::parse(s).unwrap();
            assert_eq!(e, want, "{s}");
            assert_eq!(e.to_string(), s);
        }
        assert_eq!(Endpoint::parse("ssh://h/").unwrap().to_string(), "ssh://h");
    }

    #[test]
    fn bad_endpoints_are_rejected() {
        for s in [
            "",
            "tcp://h:1234",
            "h:22",
            "ssh://",
            "ssh://u@",
            "ssh://h:0",
            "ssh://h:99999",
            "ssh://h:x",
            "ssh://u:pw@h",
            "ssh://h/path",
            "ssh://-oProxyCommand=x",
            "ssh://[::1",
            "ssh://[::1]x",
        ] {
            assert!(Endpoint::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn endpoint_errors_are_typed_and_name_the_endpoint() {
        let e = Endpoint::parse("tcp://h:1234").unwrap_err();
        assert!(matches!(&e, Error::UnsupportedEndpoint { endpoint } if endpoint == "tcp://h:1234"), "{e:?}");
        let e = Endpoint::parse("ssh://h:x").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Invalid);
        assert_eq!(e.to_string(), r#"invalid endpoint "ssh://h:x": bad port "x""#);
        let e = validate_name("a/b").unwrap_err();
        assert!(matches!(&e, Error::InvalidName { name } if name == "a/b"), "{e:?}");
    }

    #[test]
    fn a_corrupt_or_missing_builder_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("builders"));
        let e = store.resolve(Some("gone")).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "no builder \"gone\" found (see `polyarch builder ls`)");
        store.put(&Builder::new("bad")).unwrap();
        std::fs::write(store.dir().join("bad.json"), "{").unwrap();
        let e = store.get("bad").unwrap_err();
        assert!(matches!(&e, Error::Json { path, .. } if path.ends_with("bad.json")), "{e:?}");
        assert_eq!(e.kind(), crate::error::ErrorKind::Io);
    }

    #[test]
    fn names_are_checked() {
        for ok in ["b", "b0", "my-builder_1.x"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-b", ".b", "a/b", "a b", "../x"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_round_trips_builders_and_the_current_choice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("builders"));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.current().unwrap(), None);
        let mut n = node("b0", "ssh://root@h:2");
        n.platforms = vec!["linux/arm64".into()];
        n.state = NodeStatus::Running {
            probe: Probe {
                version: "v1".into(),
                native: vec!["linux/amd64".into()],
                emulated: vec!["linux/arm64".into(), "linux/riscv64".into()],
            },
        };
        let b = Builder {
            name: "b".into(),
            driver: DRIVER.into(),
            nodes: vec![n, node("b1", "local")],
            config: Some("[registry.\"docker.io\"]\nmirrors = [\"127.0.0.1:5000\"]\n".into()),
        };
        store.put(&b).unwrap();
        store.put(&Builder { name: "a".into(), driver: DRIVER.into(), nodes: vec![], config: None }).unwrap();
        assert_eq!(store.get("b").unwrap().as_ref(), Some(&b));
        assert_eq!(store.list().unwrap().iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // No temporary files are left behind.
        let files: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");

        store.set_current(Some("b")).unwrap();
        assert_eq!(store.current().unwrap().as_deref(), Some("b"));
        assert_eq!(store.resolve(None).unwrap().map(|b| b.name), Some("b".into()));
        assert_eq!(store.resolve(Some("default")).unwrap(), None);
        assert_eq!(store.resolve(Some("a")).unwrap().map(|b| b.name), Some("a".into()));
        assert!(store.resolve(Some("zz")).is_err());
        assert!(store.remove("b").unwrap());
        assert!(!store.remove("b").unwrap());
        assert_eq!(store.current().unwrap(), None, "removing the current builder falls back to the default");
        store.set_current(Some("local")).unwrap();
        assert_eq!(store.current().unwrap(), None);
    }

    #[test]
    fn platforms_list_declared_then_native_then_emulated_once() {
        let mut n = node("b0", "local");
        n.platforms = vec!["linux/arm64".into(), "linux/s390x".into()];
        assert_eq!(n.platforms(), [("linux/arm64".to_string(), false), ("linux/s390x".to_string(), false)]);
        n.state = NodeStatus::Running {
            probe: Probe {
                version: "v1".into(),
                native: vec!["linux/amd64".into()],
                emulated: vec!["linux/arm64".into(), "linux/riscv64".into()],
            },
        };
        let got: Vec<(String, bool)> = n.platforms();
        assert_eq!(
            got,
            [("linux/arm64", false), ("linux/s390x", false), ("linux/amd64", false), ("linux/riscv64", true)]
                .map(|(p, e)| (p.to_string(), e))
        );
    }

    #[test]
    fn probe_command_uses_ssh_options_port_user_and_remote_bin() {
        let mut n = node("b0", "ssh://root@h:2222");
        n.remote_bin = Some("/opt/polyarch".into());
        let argv = probe_command(&n).unwrap();
        let tail = [
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-p",
            "2222",
            "--",
            "root@h",
            "/opt/polyarch",
            "worker",
            "--probe",
        ];
        assert_eq!(&argv[argv.len() - tail.len()..], tail);
        assert!(probe_command(&node("l", "local")).is_none());
        assert_eq!(worker_command(&n).unwrap().last().map(String::as_str), Some("--stdio"));
    }

    #[test]
    fn failed_probes_name_the_node() {
        let n = node("b0", "local");
        let st = probe_node(&n, &|| Err("boom".into()));
        assert_eq!(st, NodeStatus::Error { reason: "node b0 (local): boom".into() });
        let st = run_probe(&["/nonexistent/ssh".to_string()]);
        assert!(st.is_err());
        let st = run_probe(&["sh".into(), "-c".into(), "echo not json".into()]);
        assert!(st.unwrap_err().contains("unexpected probe output"));
        let st = run_probe(&["sh".into(), "-c".into(), "echo 'no route' >&2; exit 255".into()]).unwrap_err();
        assert!(st.contains("no route"), "{st}");
    }
}
