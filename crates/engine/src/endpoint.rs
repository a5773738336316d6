//! Which Docker engine to talk to: `DOCKER_HOST`, else the docker context
//! (`DOCKER_CONTEXT`, else `currentContext` of `$DOCKER_CONFIG/config.json`),
//! else the default socket, as the docker CLI chooses.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// The default engine socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where an engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path/to/sock`.
    Unix(PathBuf),
    /// `tcp://host:port`, plain HTTP.
    Tcp { host: String, port: u16 },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

/// Where the endpoint came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The `DOCKER_HOST` variable.
    DockerHost,
    /// A docker context of this name.
    Context(String),
    /// The default socket.
    Default,
}

impl Endpoint {
    /// Reads a docker host URL. `tls` is whether `DOCKER_TLS_VERIFY` asks
    /// for TLS, which is not supported yet.
    pub fn parse(host: &str, tls: bool) -> Result<Endpoint> {
        let unsupported = |why: &str| Error::Unsupported { endpoint: host.to_string(), why: why.to_string() };
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(Error::BadEndpoint { endpoint: host.into(), why: "no socket path".into() });
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
            if tls {
                return Err(unsupported("TLS (DOCKER_TLS_VERIFY) is not supported yet: use plain tcp:// or unix://"));
            }
            return parse_tcp(host, rest.trim_end_matches('/'));
        }
        if host.starts_with("ssh://") {
            return Err(unsupported("ssh:// engine endpoints are not supported yet: use unix:// or tcp://"));
        }
        if host.starts_with("https://") || host.starts_with("npipe://") || host.starts_with("fd://") {
            return Err(unsupported("this scheme is not supported yet: use unix:// or tcp://"));
        }
        Err(Error::BadEndpoint { endpoint: host.into(), why: "want unix://PATH or tcp://HOST:PORT".into() })
    }

    /// The endpoint the docker CLI would use, and where it came from.
    pub fn from_env() -> Result<(Endpoint, Origin)> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(host) = var("DOCKER_HOST") {
            let tls = var("DOCKER_TLS_VERIFY").is_some();
            return Ok((Endpoint::parse(&host, tls)?, Origin::DockerHost));
        }
        let dir = docker_config_dir();
        let context = match var("DOCKER_CONTEXT") {
            Some(c) => Some(c),
            None => dir.as_deref().map(current_context).transpose()?.flatten(),
        };
        match context.filter(|c| c != "default") {
            Some(name) => {
                let dir =
                    dir.ok_or_else(|| Error::Context { name: name.clone(), why: "no HOME or DOCKER_CONFIG".into() })?;
                Ok((context_endpoint(&dir, &name)?, Origin::Context(name)))
            }
            None => Ok((Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)), Origin::Default)),
        }
    }
}

fn parse_tcp(host: &str, rest: &str) -> Result<Endpoint> {
    let bad = |why: &str| Error::BadEndpoint { endpoint: host.into(), why: why.into() };
    let (name, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h, p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if name.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        None => 2375,
    };
    Ok(Endpoint::Tcp { host: name.to_string(), port })
}

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".docker"))
}

/// `currentContext` of `DIR/config.json`, if the file and key exist.
fn current_context(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Config { path, source: source.into() }),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::Config { path: path.clone(), source: e.into() })?;
    Ok(v.get("currentContext").and_then(|c| c.as_str()).filter(|c| !c.is_empty()).map(str::to_string))
}

/// `Endpoints.docker.Host` of a context's `meta.json`
/// (`DIR/contexts/meta/<sha256 of the name>/meta.json`).
pub fn context_endpoint(dir: &Path, name: &str) -> Result<Endpoint> {
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    let path = dir.join("contexts/meta").join(id).join("meta.json");
    let text = std::fs::read(&path)
        .map_err(|e| Error::Context { name: name.into(), why: format!("reading {}: {e}", path.display()) })?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Context { name: name.into(), why: format!("{}: {e}", path.display()) })?;
    let docker = &v["Endpoints"]["docker"];
    let host = docker["Host"].as_str().ok_or_else(|| Error::Context {
        name: name.into(),
        why: format!("{}: no Endpoints.docker.Host", path.display()),
    })?;
    let tls = docker["SkipTLSVerify"].as_bool() == Some(false) && host.starts_with("tcp://") && has_tls(dir, name);
    Endpoint::parse(host, tls)
}

/// Whether the context stores TLS material (`contexts/tls/<id>/docker`).
fn has_tls(dir: &Path, name: &str) -> bool {
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    dir.join("contexts/tls").join(id).join("docker").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(Endpoint::parse("unix:///run/d.sock", false).unwrap(), Endpoint::Unix("/run/d.sock".into()));
        let tcp = Endpoint::parse("tcp://127.0.0.1:2376", false).unwrap();
        assert_eq!(tcp, Endpoint::Tcp { host: "127.0.0.1".into(), port: 2376 });
        assert_eq!(tcp.to_string(), "tcp://127.0.0.1:2376");
        let v6 = Endpoint::parse("tcp://[::1]:9", false).unwrap();
        assert_eq!(v6.to_string(), "tcp://[::1]:9");
        assert_eq!(Endpoint::parse("tcp://h", false).unwrap(), Endpoint::Tcp { host: "h".into(), port: 2375 });
        let e = Endpoint::parse("tcp://h:1", true).unwrap_err().to_string();
        assert!(e.contains("tcp://h:1") && e.contains("TLS"), "{e}");
        let e = Endpoint::parse("ssh://u@h", false).unwrap_err().to_string();
        assert!(e.contains("ssh://u@h") && e.contains("not supported yet"), "{e}");
        assert!(Endpoint::parse("tcp://h:x", false).unwrap_err().to_string().contains("port"));
        assert!(Endpoint::parse("/var/run/docker.sock", false).is_err());
    }

    #[test]
    fn context_meta() {
        let d = tempfile::tempdir().unwrap();
        let id = hex::encode(Sha256::digest(b"far"));
        let meta = d.path().join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"far","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://10.0.0.2:2375","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        assert_eq!(context_endpoint(d.path(), "far").unwrap(), Endpoint::Tcp { host: "10.0.0.2".into(), port: 2375 });
        let e = context_endpoint(d.path(), "near").unwrap_err().to_string();
        assert!(e.contains("near"), "{e}");
        std::fs::write(d.path().join("config.json"), r#"{"currentContext":"far"}"#).unwrap();
        assert_eq!(current_context(d.path()).unwrap().as_deref(), Some("far"));
    }
}
