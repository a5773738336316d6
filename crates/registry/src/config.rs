//! Per-registry settings (mirrors, plain HTTP, TLS verification, extra CAs),
//! read from the `[registry."host"]` tables of `polyarch.toml`, shaped like
//! BuildKit's `buildkitd.toml`:
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["127.0.0.1:5000"]
//!
//! [registry."127.0.0.1:5000"]
//! http = true
//! insecure = true
//! ca = ["/path/ca.crt"]
//!
//! [[registry."127.0.0.1:5000".keypair]]
//! key = "/path/client.key"
//! cert = "/path/client.crt"
//! ```
//!
//! Other top-level tables of the file are ignored here;
//! [`RegistryConfig::ignored_keys`] names them for a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// Settings of one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    /// Mirrors tried first for pulls: `host:port` or
    /// `http(s)://host:port[/path]`.
    pub mirrors: Vec<String>,
    /// Talk plain HTTP to this host.
    pub http: bool,
    /// Skip TLS verification for this host (and allow plain HTTP fallback).
    pub insecure: bool,
    /// Extra CA certificates (PEM files) to trust for this host.
    pub ca: Vec<PathBuf>,
    /// Client certificates for this host (the first is presented).
    pub keypair: Vec<KeyPair>,
}

/// A client certificate and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPair {
    /// The private key (PEM).
    pub key: PathBuf,
    /// The certificate (PEM), with its chain if any.
    pub cert: PathBuf,
}

/// The keys of a host's table that polyarch maps.
const HOST_KEYS: [&str; 5] = ["mirrors", "http", "insecure", "ca", "keypair"];

/// Registry settings for all hosts, keyed by host (`docker.io`,
/// `127.0.0.1:5000`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Per-host settings.
    pub hosts: BTreeMap<String, HostConfig>,
    /// The keys each host's table of the file sets (for [`Self::overlay`]).
    set: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
struct File<H> {
    #[serde(default)]
    registry: BTreeMap<String, H>,
}

/// A parsed mirror entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `http` or `https` when the entry names one; `None` means "decide
    /// like for any other host".
    pub scheme: Option<String>,
    /// `host[:port]`.
    pub host: String,
    /// Path prefix before `/v2/`, without a trailing slash (often empty).
    pub prefix: String,
}

impl Mirror {
    /// Parses `host:port`, `host/prefix` or `http(s)://host:port[/path]`.
    /// A trailing `/v2` in the path is dropped, as containerd does.
    pub fn parse(entry: &str) -> Option<Mirror> {
        let entry = entry.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, rest)) if s == "http" || s == "https" => (Some(s.to_string()), rest),
            Some(_) => return None,
            None => (None, entry),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() || host.contains(['?', '#', '@', ' ']) {
            return None;
        }
        let mut prefix = path.trim_end_matches('/').to_string();
        if prefix.ends_with("/v2") {
            prefix.truncate(prefix.len() - 3);
        }
        Some(Mirror { scheme, host: host.to_string(), prefix })
    }
}

impl RegistryConfig {
    /// Loads the configuration. With `path`, that file must exist; without,
    /// `$XDG_CONFIG_HOME/polyarch/polyarch.toml` (or
    /// `~/.config/polyarch/polyarch.toml`) is read if it exists, and a
    /// missing file gives an empty configuration.
    pub fn load(path: Option<&Path>) -> Result<RegistryConfig, Error> {
        match path {
            Some(p) => Self::load_file(p),
            None => match default_path() {
                Some(p) if p.exists() => Self::load_file(&p),
                _ => Ok(RegistryConfig::default()),
            },
        }
    }

    /// Reads one file (which must exist).
    pub fn load_file(path: &Path) -> Result<RegistryConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|reason| Error::Config { path: path.to_path_buf(), reason })
    }

    /// Parses TOML text; other top-level keys are ignored.
    pub fn parse(text: &str) -> Result<RegistryConfig, String> {
        let file: File<HostConfig> = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        for (host, cfg) in &file.registry {
            for m in &cfg.mirrors {
                if Mirror::parse(m).is_none() {
                    return Err(format!("registry {host:?}: invalid mirror {m:?}"));
                }
            }
        }
        let tables: File<toml::Table> = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let set = tables.registry.into_iter().map(|(h, t)| (h, t.into_iter().map(|(k, _)| k).collect())).collect();
        Ok(RegistryConfig { hosts: file.registry, set })
    }

    /// This configuration with `over`'s on top: for each host, the keys
    /// `over` sets replace these (as a builder's `--config` does over the
    /// user's own configuration); the others stay.
    pub fn overlay(mut self, over: &RegistryConfig) -> RegistryConfig {
        for (host, theirs) in &over.hosts {
            let keys = over.set.get(host).cloned().unwrap_or_default();
            let mine = self.hosts.entry(host.clone()).or_default();
            for key in &keys {
                match key.as_str() {
                    "mirrors" => mine.mirrors = theirs.mirrors.clone(),
                    "http" => mine.http = theirs.http,
                    "insecure" => mine.insecure = theirs.insecure,
                    "ca" => mine.ca = theirs.ca.clone(),
                    "keypair" => mine.keypair = theirs.keypair.clone(),
                    _ => {}
                }
            }
            self.set.entry(host.clone()).or_default().extend(keys);
        }
        self
    }

    /// The keys of a buildkitd.toml-shaped text that polyarch does not map
    /// (`debug`, `grpc.address`, `worker.oci.gc`, a host's `foo`), as
    /// dotted paths.
    pub fn ignored_keys(text: &str) -> Result<Vec<String>, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let mut out = Vec::new();
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("registry", toml::Value::Table(hosts)) => {
                    for (host, cfg) in hosts {
                        let Some(cfg) = cfg.as_table() else { continue };
                        let prefix = format!("registry.{}", dotted(host));
                        for k in cfg.keys().filter(|k| !HOST_KEYS.contains(&k.as_str())) {
                            leaves(&format!("{prefix}.{}", dotted(k)), &cfg[k], &mut out);
                        }
                        // One client certificate is presented: the first.
                        if let Some(more) = cfg.get("keypair").and_then(|k| k.as_array()).filter(|a| a.len() > 1) {
                            out.push(format!("{prefix}.keypair[1..{}] (only the first keypair is used)", more.len()));
                        }
                    }
                }
                _ => leaves(&dotted(key), value, &mut out),
            }
        }
        Ok(out)
    }

    /// The settings of `host`, if any.
    pub fn host(&self, host: &str) -> Option<&HostConfig> {
        self.hosts.get(host)
    }

    /// The parsed mirrors of `domain` (in order).
    pub fn mirrors(&self, domain: &str) -> Vec<Mirror> {
        self.host(domain).map(|h| h.mirrors.iter().filter_map(|m| Mirror::parse(m)).collect()).unwrap_or_default()
    }
}

/// A TOML key as written in a dotted path (quoted unless bare).
fn dotted(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The dotted paths of the values below `path` (tables expanded).
fn leaves(path: &str, value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) if !t.is_empty() => {
            for (k, v) in t {
                leaves(&format!("{path}.{}", dotted(k)), v, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// `$XDG_CONFIG_HOME/polyarch/polyarch.toml` or
/// `~/.config/polyarch/polyarch.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("polyarch").join("polyarch.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_shape_and_ignores_other_keys() {
        let cfg = RegistryConfig::parse(
            r#"
            debug = true
            [build]
            jobs = 2
            [registry."docker.io"]
            mirrors = ["127.0.0.1:5000", "https://mirror.example/prefix/v2/"]
            [registry."127.0.0.1:5000"]
            http = true
            insecure = true
            ca = ["/path/ca.crt"]
            "#,
        )
        .unwrap();
        let m = cfg.mirrors("docker.io");
        assert_eq!(m[0], Mirror { scheme: None, host: "127.0.0.1:5000".into(), prefix: String::new() });
        assert_eq!(
            m[1],
            Mirror { scheme: Some("https".into()), host: "mirror.example".into(), prefix: "/prefix".into() }
        );
        let h = cfg.host("127.0.0.1:5000").unwrap();
        assert!(h.http && h.insecure);
        assert_eq!(h.ca, vec![PathBuf::from("/path/ca.crt")]);
        assert!(cfg.mirrors("quay.io").is_empty());
    }

    #[test]
    fn keypairs() {
        let cfg = RegistryConfig::parse("[[registry.\"r:1\".keypair]]\nkey = \"/k.pem\"\ncert = \"/c.pem\"\n").unwrap();
        let kp = &cfg.host("r:1").unwrap().keypair;
        assert_eq!(kp, &vec![KeyPair { key: "/k.pem".into(), cert: "/c.pem".into() }]);
        let e = RegistryConfig::parse("[[registry.\"r:1\".keypair]]\nkey = \"/k.pem\"\n").unwrap_err();
        assert!(e.contains("cert"), "{e}");
    }

    #[test]
    fn overlay_replaces_the_keys_it_sets() {
        let mine = RegistryConfig::parse(
            "[registry.\"docker.io\"]\nmirrors = [\"a:1\"]\n[registry.\"r:1\"]\nhttp = true\nca = [\"/ca\"]\n",
        )
        .unwrap();
        let theirs = RegistryConfig::parse(
            "[registry.\"docker.io\"]\nmirrors = [\"b:2\"]\n[registry.\"r:1\"]\nhttp = false\n[registry.\"q:3\"]\ninsecure = true\n",
        )
        .unwrap();
        let both = mine.clone().overlay(&theirs);
        assert_eq!(both.mirrors("docker.io")[0].host, "b:2");
        let r = both.host("r:1").unwrap();
        assert!(!r.http, "an explicit false wins");
        assert_eq!(r.ca, vec![PathBuf::from("/ca")], "a key it does not set stays");
        assert!(both.host("q:3").unwrap().insecure);
        // Overlaying nothing changes nothing.
        assert_eq!(mine.clone().overlay(&RegistryConfig::default()), mine);
    }

    #[test]
    fn ignored_keys_are_named() {
        let text = r#"
            debug = true
            [grpc]
            address = ["tcp://0.0.0.0:1234"]
            [worker.oci]
            gc = true
            [registry."docker.io"]
            mirrors = ["m:1"]
            foo = 1
            [[registry."r:1".keypair]]
            key = "/a"
            cert = "/b"
            [[registry."r:1".keypair]]
            key = "/c"
            cert = "/d"
        "#;
        assert_eq!(
            RegistryConfig::ignored_keys(text).unwrap(),
            [
                "debug",
                "grpc.address",
                "registry.\"docker.io\".foo",
                "registry.\"r:1\".keypair[1..2] (only the first keypair is used)",
                "worker.oci.gc"
            ]
        );
        assert!(RegistryConfig::ignored_keys("[registry.\"x\"]\nhttp = true\n").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_mirror_and_bad_toml() {
        assert!(RegistryConfig::parse("[registry.\"docker.io\"]\nmirrors = [\"ftp://x\"]").is_err());
        assert!(RegistryConfig::parse("[registry").is_err());
        assert!(RegistryConfig::parse("[registry.\"x\"]\nhttp = \"yes\"").is_err());
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(RegistryConfig::load(Some(&missing)).is_err());
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "[registry.\"a:1\"]\nhttp = true\n").unwrap();
        assert!(RegistryConfig::load(Some(&p)).unwrap().host("a:1").unwrap().http);
        let e = RegistryConfig::load_file(&{
            let b = dir.path().join("b.toml");
            std::fs::write(&b, "[registry.\"x\"]\nhttp = 1\n").unwrap();
            b
        })
        .unwrap_err();
        assert!(e.to_string().contains("b.toml"), "{e}");
    }
}
