//! Which Docker engine to talk to: `DOCKER_HOST` (with `DOCKER_TLS_VERIFY`,
//! `DOCKER_TLS` and `DOCKER_CERT_PATH`), else the docker context
//! (`DOCKER_CONTEXT`, else `currentContext` of `$DOCKER_CONFIG/config.json`,
//! its TLS material in `contexts/tls`), else the default socket, as the
//! docker CLI chooses.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use crate::tls::TlsFiles;
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
    /// `tcp://host:port` (or `https://`) over TLS.
    Tls { host: String, port: u16, files: TlsFiles },
    /// `ssh://[user@]host[:port][/socket]`: `docker system dial-stdio` on
    /// that host.
    Ssh { user: Option<String>, host: String, port: Option<u16>, socket: Option<String> },
}

fn host_port(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { host, port } | Endpoint::Tls { host, port, .. } => {
                f.write_str("tcp://")?;
                host_port(f, host, *port)
            }
            Endpoint::Ssh { user, host, port, socket } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                match port {
                    Some(p) => host_port(f, host, *p)?,
                    None if host.contains(':') => write!(f, "[{host}]")?,
                    None => f.write_str(host)?,
                }
                f.write_str(socket.as_deref().unwrap_or(""))
            }
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
    /// for TLS: with it, `tcp://` takes the files of `DOCKER_CERT_PATH`
    /// (default `~/.docker`) and verifies the engine.
    pub fn parse(host: &str, tls: bool) -> Result<Endpoint> {
        let files = match tls {
            true => Some(cert_files(host, true)?),
            false => None,
        };
        Endpoint::parse_with(host, files)
    }

    /// Reads a docker host URL; `tcp://` speaks TLS with `tls`, `https://`
    /// always (with `DOCKER_CERT_PATH`'s files when `tls` is `None`).
    pub fn parse_with(host: &str, tls: Option<TlsFiles>) -> Result<Endpoint> {
        let unsupported = |why: &str| Error::Unsupported { endpoint: host.to_string(), why: why.to_string() };
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(Error::BadEndpoint { endpoint: host.into(), why: "no socket path".into() });
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let (rest, tls) = if let Some(rest) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
            (rest, tls)
        } else if let Some(rest) = host.strip_prefix("https://") {
            let files = match tls {
                Some(f) => f,
                None => cert_files(host, true)?,
            };
            (rest, Some(files))
        } else if let Some(rest) = host.strip_prefix("ssh://") {
            return parse_ssh(host, rest);
        } else if host.starts_with("npipe://") || host.starts_with("fd://") {
            return Err(unsupported("this scheme is not supported: use unix://, tcp:// or ssh://"));
        } else {
            return Err(Error::BadEndpoint {
                endpoint: host.into(),
                why: "want unix://PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]".into(),
            });
        };
        let default_port = if tls.is_some() { 2376 } else { 2375 };
        let (name, port) = parse_host_port(host, rest.trim_end_matches('/'), Some(default_port))?;
        let port = port.unwrap_or(default_port);
        Ok(match tls {
            Some(files) => Endpoint::Tls { host: name, port, files },
            None => Endpoint::Tcp { host: name, port },
        })
    }

    /// The endpoint the docker CLI would use, and where it came from.
    pub fn from_env() -> Result<(Endpoint, Origin)> {
        if let Some(host) = var("DOCKER_HOST") {
            let verify = var("DOCKER_TLS_VERIFY").is_some();
            let files = match verify || var("DOCKER_TLS").is_some() {
                true => Some(cert_files(&host, verify)?),
                false => None,
            };
            return Ok((Endpoint::parse_with(&host, files)?, Origin::DockerHost));
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

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The TLS files of `DOCKER_CERT_PATH` (which must exist when set), else
/// of `~/.docker`.
fn cert_files(endpoint: &str, verify: bool) -> Result<TlsFiles> {
    let file_error = |e: crate::tls::FileError| Error::TlsFile { endpoint: endpoint.into(), path: e.path, why: e.why };
    let dir = match var("DOCKER_CERT_PATH") {
        Some(d) => {
            let dir = PathBuf::from(d);
            if !dir.is_dir() {
                return Err(file_error(crate::tls::FileError {
                    path: dir,
                    why: "DOCKER_CERT_PATH is not a directory".into(),
                }));
            }
            dir
        }
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".docker"),
            None => PathBuf::from(".docker"),
        },
    };
    TlsFiles::in_dir(&dir, verify).map_err(file_error)
}

/// `ssh://[user@]host[:port][/socket]`.
fn parse_ssh(endpoint: &str, rest: &str) -> Result<Endpoint> {
    let bad = |why: &str| Error::BadEndpoint { endpoint: endpoint.into(), why: why.into() };
    let (authority, socket) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..]).filter(|s| *s != "/")),
        None => (rest, None),
    };
    if authority.contains(['?', '#']) {
        return Err(bad("no query or fragment in an ssh:// endpoint"));
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, _)) if u.is_empty() || u.contains(':') => return Err(bad("want ssh://USER@HOST, no password")),
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = parse_host_port(endpoint, hostport, None)?;
    if host.starts_with('-') {
        return Err(bad("a host may not start with -"));
    }
    Ok(Endpoint::Ssh { user, host, port, socket: socket.map(str::to_string) })
}

/// `host[:port]` or `[v6][:port]`; `default` is the port when none is
/// given (`None`: keep none).
fn parse_host_port(endpoint: &str, rest: &str, default: Option<u16>) -> Result<(String, Option<u16>)> {
    let bad = |why: &str| Error::BadEndpoint { endpoint: endpoint.into(), why: why.into() };
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
        Some(p) => Some(p.parse().map_err(|_| bad("the port is not a number"))?),
        None => default,
    };
    Ok((name.to_string(), port))
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
    let skip = docker["SkipTLSVerify"].as_bool() == Some(true);
    let tls_dir = dir.join("contexts/tls").join(hex::encode(Sha256::digest(name.as_bytes()))).join("docker");
    let tls = host.starts_with("https://") || (host.starts_with("tcp://") && (skip || tls_dir.is_dir()));
    let files = match tls {
        true => Some(TlsFiles::in_dir(&tls_dir, !skip).map_err(|e| Error::TlsFile {
            endpoint: format!("{host} (docker context {name:?})"),
            path: e.path,
            why: e.why,
        })?),
        false => None,
    };
    Endpoint::parse_with(host, files)
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
        let ssh = |user: Option<&str>, host: &str, port: Option<u16>, socket: Option<&str>| Endpoint::Ssh {
            user: user.map(str::to_string),
            host: host.into(),
            port,
            socket: socket.map(str::to_string),
        };
        assert_eq!(Endpoint::parse("ssh://u@h", false).unwrap(), ssh(Some("u"), "h", None, None));
        let e = Endpoint::parse("ssh://root@[::1]:2222/run/d.sock", false).unwrap();
        assert_eq!(e, ssh(Some("root"), "::1", Some(2222), Some("/run/d.sock")));
        assert_eq!(e.to_string(), "ssh://root@[::1]:2222/run/d.sock");
        assert_eq!(Endpoint::parse("ssh://h/", false).unwrap(), ssh(None, "h", None, None));
        for bad in ["ssh://u:pw@h", "ssh://@h", "ssh://-oProxyCommand=x", "ssh://h:p", "ssh://"] {
            let e = Endpoint::parse(bad, false).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        let e = Endpoint::parse("npipe:////./pipe/docker", false).unwrap_err().to_string();
        assert!(e.contains("npipe") && e.contains("not supported"), "{e}");
        let files = TlsFiles { dir: "/c".into(), ca: None, cert: None, verify: true };
        let tls = Endpoint::parse_with("tcp://h", Some(files.clone())).unwrap();
        assert_eq!(tls, Endpoint::Tls { host: "h".into(), port: 2376, files: files.clone() });
        assert_eq!(tls.to_string(), "tcp://h:2376");
        let https = Endpoint::parse_with("https://h:3000/", Some(files.clone())).unwrap();
        assert_eq!(https, Endpoint::Tls { host: "h".into(), port: 3000, files });
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

    fn context(dir: &Path, name: &str, endpoint: &str) -> PathBuf {
        let id = hex::encode(Sha256::digest(name.as_bytes()));
        let meta = dir.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("meta.json"), format!(r#"{{"Name":"{name}","Endpoints":{{"docker":{endpoint}}}}}"#))
            .unwrap();
        dir.join("contexts/tls").join(id).join("docker")
    }

    #[test]
    fn context_tls_material() {
        let d = tempfile::tempdir().unwrap();
        let tls = context(d.path(), "secure", r#"{"Host":"tcp://10.0.0.2:2376","SkipTLSVerify":false}"#);
        std::fs::create_dir_all(&tls).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(tls.join(f), "x").unwrap();
        }
        let Endpoint::Tls { host, port, files } = context_endpoint(d.path(), "secure").unwrap() else { panic!() };
        assert_eq!((host.as_str(), port, files.verify), ("10.0.0.2", 2376, true));
        assert_eq!(files.ca, Some(tls.join("ca.pem")));
        assert_eq!(files.cert, Some((tls.join("cert.pem"), tls.join("key.pem"))));
        // SkipTLSVerify without material: TLS, not verified.
        context(d.path(), "skip", r#"{"Host":"tcp://h:2376","SkipTLSVerify":true}"#);
        let Endpoint::Tls { files, .. } = context_endpoint(d.path(), "skip").unwrap() else { panic!() };
        assert!(!files.verify && files.ca.is_none() && files.cert.is_none());
        // A key without its certificate names the file and the context.
        let tls = context(d.path(), "half", r#"{"Host":"tcp://h:2376"}"#);
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("key.pem"), "x").unwrap();
        let e = context_endpoint(d.path(), "half").unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("\"half\"") && e.contains("tcp://h:2376"), "{e}");
        let e = context(d.path(), "far", r#"{"Host":"ssh://me@far:22"}"#);
        assert!(!e.exists());
        assert_eq!(context_endpoint(d.path(), "far").unwrap().to_string(), "ssh://me@far:22");
    }
}
