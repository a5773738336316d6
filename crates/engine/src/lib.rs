//! A small Docker Engine API client: the endpoint the docker CLI would use
//! (`DOCKER_HOST`, the docker context, the default socket), `/_ping`,
//! `/version`, `/info`, and images in and out as streamed archives
//! (`POST /images/load`, `GET /images/get`). Bodies stream: an archive is
//! never held in memory.

pub mod attach;
pub mod containers;
pub mod endpoint;
pub mod http;
mod idle;
pub mod ssh;
pub mod tls;

use std::io::{self, BufRead as _, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use attach::{Demux, Exec, ExecState};
pub use containers::{ContainerInfo, ContainerSpec, ContainerState, VolumeMount};
pub use endpoint::{Endpoint, Origin, TlsFiles, DEFAULT_SOCKET};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No engine answers at the endpoint.
    Unreachable,
    /// The endpoint or context is malformed or of a kind not supported.
    Endpoint,
    /// The engine answered with an error.
    Api,
    /// The engine's answer is not what the API says.
    Protocol,
    /// The TLS session failed: a certificate refused on either side.
    Tls,
}

/// An engine error; every variant names the endpoint or the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid Docker endpoint {endpoint:?}: {why}")]
    BadEndpoint { endpoint: String, why: String },
    #[error("Docker endpoint {endpoint}: {why}")]
    Unsupported { endpoint: String, why: String },
    #[error("docker context {name:?}: {why}")]
    Context { name: String, why: String },
    #[error("reading docker config {}: {source}", path.display())]
    Config { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("Docker endpoint {endpoint}: TLS file {}: {why}", path.display())]
    TlsFile { endpoint: String, path: PathBuf, why: String },
    #[error("TLS with the Docker engine at {endpoint} failed: {why}")]
    Tls { endpoint: String, why: String },
    #[error("cannot connect to the Docker engine at {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    #[error("talking to the Docker engine at {endpoint} ({call}): {source}")]
    Io { endpoint: String, call: String, source: io::Error },
    #[error("the Docker engine at {endpoint} refused {call} (HTTP {status}): {message}")]
    Api { endpoint: String, call: String, status: u16, message: String },
    #[error("the Docker engine at {endpoint} failed {call}: {message}")]
    Failed { endpoint: String, call: String, message: String },
    #[error("unexpected answer from the Docker engine at {endpoint} to {call}: {why}")]
    Protocol { endpoint: String, call: String, why: String },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadEndpoint { .. }
            | Error::Unsupported { .. }
            | Error::Context { .. }
            | Error::Config { .. }
            | Error::TlsFile { .. } => ErrorKind::Endpoint,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::Connect { .. } => ErrorKind::Unreachable,
            Error::Api { .. } | Error::Failed { .. } => ErrorKind::Api,
            Error::Io { .. } | Error::Protocol { .. } => ErrorKind::Protocol,
        }
    }
}

impl Error {
    /// The error of an I/O failure with the engine at `endpoint`: TLS
    /// material that cannot be used, a TLS session refused, ssh that could
    /// not connect, else [`Error::Connect`] (no `call` yet) or
    /// [`Error::Io`] during `call`.
    pub fn from_io(endpoint: &Endpoint, call: Option<&str>, source: io::Error) -> Error {
        let name = endpoint.to_string();
        if let Some(f) = source.get_ref().and_then(|i| i.downcast_ref::<tls::FileError>()) {
            return Error::TlsFile { endpoint: name, path: f.path.clone(), why: f.why.clone() };
        }
        if let Some(e) = tls::rustls_error(&source) {
            return Error::Tls { endpoint: name, why: tls_why(endpoint, e) };
        }
        let dial = source.get_ref().is_some_and(|i| i.is::<ssh::DialError>());
        match call {
            Some(call) if !dial => Error::Io { endpoint: name, call: call.to_string(), source },
            _ => Error::Connect { endpoint: name, source },
        }
    }
}

/// A TLS failure, with what to check when the engine refused a missing or
/// unknown client certificate.
fn tls_why(endpoint: &Endpoint, e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    let Endpoint::Tls { files, .. } = endpoint else { return e.to_string() };
    let refused = matches!(
        e,
        rustls::Error::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::HandshakeFailure)
    );
    match (&files.cert, refused) {
        (None, true) => format!(
            "{e}: the engine wants a client certificate, and there is no cert.pem and key.pem in {}",
            files.dir.display()
        ),
        (Some((cert, _)), true) => format!("{e}: the engine refused the client certificate {}", cert.display()),
        _ => e.to_string(),
    }
}

/// `GET /version`, the fields polyarch reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
}

/// `GET /info`, the fields polyarch reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub driver_status: Vec<Vec<String>>,
    #[serde(default, rename = "OSType")]
    pub os_type: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub default_runtime: String,
}

impl Info {
    /// Whether images are kept by containerd (the "containerd image
    /// store"), which loads multi-platform indexes: `DriverStatus` then has
    /// `driver-type` `io.containerd.snapshotter.v1`.
    pub fn containerd_store(&self) -> bool {
        self.driver_status
            .iter()
            .any(|kv| kv.len() == 2 && kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1")
    }
}

/// What `/images/load` reported: its `stream` lines, e.g.
/// `Loaded image: app:1` or `Loaded image ID: sha256:...`.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub lines: Vec<String>,
}

/// An engine at one endpoint; every call opens its own connection, except
/// over ssh, where the connection of a `/_ping`, `/version` or `/info` is
/// kept for the next call (clones share it).
#[derive(Clone, Debug)]
pub struct Engine {
    endpoint: Endpoint,
    timeout: Duration,
    idle: idle::Idle,
}

/// One JSON message of the engine's message stream.
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

impl Engine {
    /// An engine at `endpoint`; a reply may take up to 10 minutes (a large
    /// load).
    pub fn new(endpoint: Endpoint) -> Engine {
        Engine { endpoint, timeout: Duration::from_secs(600), idle: idle::Idle::default() }
    }

    /// The engine the docker CLI would use.
    pub fn from_env() -> Result<(Engine, Origin)> {
        let (e, origin) = Endpoint::from_env()?;
        Ok((Engine::new(e), origin))
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Engine {
        self.timeout = timeout;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A connection for one request: the kept one (over ssh), else a new one.
    fn connect(&self) -> Result<http::Conn> {
        match self.kept() {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    /// A new connection.
    fn open(&self) -> Result<http::Conn> {
        http::Conn::open(&self.endpoint, self.timeout).map_err(|source| Error::from_io(&self.endpoint, None, source))
    }

    fn io(&self, call: &str) -> impl Fn(io::Error) -> Error + '_ {
        let call = call.to_string();
        move |source| Error::from_io(&self.endpoint, Some(&call), source)
    }

    /// Sends a bodiless request; returns the response if its status is 2xx.
    fn get(&self, method: &str, path: &str) -> Result<http::Response<http::Conn>> {
        let call = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut conn = self.connect()?;
        http::write_head(&mut conn, method, path, None, false).map_err(self.io(&call))?;
        let resp = http::read_response(conn).map_err(self.io(&call))?;
        self.check(&call, resp)
    }

    /// Turns a non-2xx response into [`Error::Api`] with the engine's
    /// `message`.
    fn check<R: Read>(&self, call: &str, mut resp: http::Response<R>) -> Result<http::Response<R>> {
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let mut text = String::new();
        let _ = resp.body.by_ref().take(64 * 1024).read_to_string(&mut text);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        Err(Error::Api { endpoint: self.endpoint.to_string(), call: call.into(), status: resp.status, message })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T> {
        let text = self.get_whole(path, 16 << 20)?;
        serde_json::from_slice(&text).map_err(|e| Error::Protocol {
            endpoint: self.endpoint.to_string(),
            call: format!("GET {path}"),
            why: e.to_string(),
        })
    }

    /// `GET /_ping`: whether an engine answers.
    pub fn ping(&self) -> Result<()> {
        let body = self.get_whole("/_ping", 1024)?;
        let text = String::from_utf8_lossy(&body);
        if text.trim() != "OK" {
            return Err(Error::Protocol {
                endpoint: self.endpoint.to_string(),
                call: "GET /_ping".into(),
                why: format!("answered {:?}, not OK", text.trim()),
            });
        }
        Ok(())
    }

    /// `GET /version`.
    pub fn version(&self) -> Result<Version> {
        self.get_json("/version")
    }

    /// `GET /info`.
    pub fn info(&self) -> Result<Info> {
        self.get_json("/info")
    }

    /// `POST /images/load`: `write` streams a `docker save` or OCI archive
    /// into the request body. An error the engine reports (an HTTP error
    /// or an `errorDetail` message) wins over the writer's broken pipe.
    pub fn load<E: From<Error>>(&self, write: impl FnOnce(&mut dyn Write) -> Result<(), E>) -> Result<Loaded, E> {
        let call = "POST /images/load";
        let mut conn = self.connect()?;
        let reader = conn.try_clone().map_err(self.io(call))?;
        http::write_head(&mut conn, "POST", "/images/load?quiet=1", Some("application/x-tar"), true)
            .map_err(self.io(call))?;
        // Chunks of up to 256 KiB, whatever sizes the writer writes.
        let mut body = io::BufWriter::with_capacity(256 * 1024, http::ChunkedWriter::new(conn));
        let written = write(&mut body);
        let finished = match &written {
            Ok(()) => body
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|chunked| chunked.finish())
                .map(|_| ())
                .map_err(self.io(call)),
            Err(_) => {
                // An unfinished body: end it so the engine answers now.
                drop(body);
                reader.shutdown_write();
                Ok(())
            }
        };
        // Whatever the engine answered explains a failed write best.
        let answer = http::read_response(reader).map_err(self.io(call)).and_then(|r| self.check(call, r));
        let resp = match answer {
            Err(e) if e.kind() == ErrorKind::Api => return Err(e.into()),
            Err(e) => {
                written?;
                finished?;
                return Err(e.into());
            }
            Ok(r) => r,
        };
        written?;
        finished?;
        self.messages(call, resp.body).map_err(E::from)
    }

    /// Reads a JSON message stream; an `error`/`errorDetail` message fails.
    fn messages(&self, call: &str, body: impl Read) -> Result<Loaded> {
        let mut loaded = Loaded::default();
        for line in BufReader::new(body).lines() {
            let line = line.map_err(self.io(call))?;
            if line.trim().is_empty() {
                continue;
            }
            let m: Message = serde_json::from_str(&line).map_err(|e| Error::Protocol {
                endpoint: self.endpoint.to_string(),
                call: call.into(),
                why: format!("{e} in {line:?}"),
            })?;
            let detail = m.error_detail.and_then(|d| d.message);
            if let Some(message) = detail.or(m.error) {
                return Err(Error::Failed { endpoint: self.endpoint.to_string(), call: call.into(), message });
            }
            if let Some(s) = m.stream.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
                loaded.lines.push(s);
            }
        }
        Ok(loaded)
    }

    /// `GET /images/get?names=...`: `read` consumes the `docker save`
    /// archive of those images as it streams.
    pub fn save<T, E: From<Error>>(
        &self,
        names: &[&str],
        read: impl FnOnce(&mut dyn Read) -> Result<T, E>,
    ) -> Result<T, E> {
        let query: Vec<String> = names.iter().map(|n| format!("names={}", encode(n))).collect();
        let mut resp = self.get("GET", &format!("/images/get?{}", query.join("&")))?;
        read(&mut resp.body)
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_store_from_driver_status() {
        let info: Info = serde_json::from_str(
            r#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]],"OSType":"linux"}"#,
        )
        .unwrap();
        assert!(info.containerd_store());
        let info: Info =
            serde_json::from_str(r#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"]]}"#).unwrap();
        assert!(!info.containerd_store());
    }

    #[test]
    fn message_stream() {
        let e = Engine::new(Endpoint::Unix("/x".into()));
        let ok = e.messages("c", &b"{\"stream\":\"Loaded image: a:1\\n\"}\n\n"[..]).unwrap();
        assert_eq!(ok.lines, vec!["Loaded image: a:1"]);
        let err = e
            .messages("c", &b"{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\n"[..])
            .unwrap_err();
        assert!(err.to_string().contains("unexpected EOF") && err.to_string().contains("unix:///x"), "{err}");
        assert!(e.messages("c", &b"not json\n"[..]).is_err());
    }

    #[test]
    fn unreachable_names_the_endpoint() {
        let e = Engine::new(Endpoint::Unix("/nonexistent/docker.sock".into())).ping().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert!(e.to_string().contains("unix:///nonexistent/docker.sock"), "{e}");
    }

    /// A one-connection server on a unix socket: `serve` gets the request
    /// (head and body reader) and returns the raw response.
    fn fake(serve: impl FnOnce(String, &mut dyn Read) -> Vec<u8> + Send + 'static) -> (tempfile::TempDir, Engine) {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let answer = if head.contains("Transfer-Encoding: chunked") {
                let mut body = http::ChunkedReader::for_tests(r);
                serve(head, &mut body)
            } else {
                serve(head, &mut r)
            };
            let mut w = conn;
            let _ = w.write_all(&answer);
        });
        let engine = Engine::new(Endpoint::Unix(sock)).with_timeout(Duration::from_secs(20));
        (dir, engine)
    }

    fn ok_stream(lines: &str) -> Vec<u8> {
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{lines}\r\n0\r\n\r\n", lines.len())
            .into_bytes()
    }

    #[test]
    fn load_streams_the_body_in_chunks() {
        let (_d, engine) = fake(|head, body| {
            assert!(head.starts_with("POST /images/load?quiet=1 HTTP/1.1"), "{head}");
            let mut all = Vec::new();
            body.read_to_end(&mut all).unwrap();
            assert_eq!(all.len(), 3 << 20);
            ok_stream("{\"stream\":\"Loaded image: a:1\\n\"}\n")
        });
        let loaded = engine
            .load(|w| {
                for _ in 0..3 {
                    w.write_all(&vec![7u8; 1 << 20]).map_err(|e| Error::Io {
                        endpoint: "t".into(),
                        call: "w".into(),
                        source: e,
                    })?;
                }
                Ok::<(), Error>(())
            })
            .unwrap();
        assert_eq!(loaded.lines, vec!["Loaded image: a:1"]);
    }

    #[test]
    fn an_early_refusal_wins_over_the_broken_pipe() {
        let (_d, engine) = fake(|_, body| {
            let mut some = [0u8; 1024];
            body.read_exact(&mut some).unwrap();
            let msg = r#"{"message":"archive/tar: invalid tar header"}"#;
            format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{msg}", msg.len()).into_bytes()
        });
        let err = engine
            .load(|w| {
                for _ in 0..64 {
                    w.write_all(&vec![1u8; 1 << 20]).map_err(|e| Error::Io {
                        endpoint: "t".into(),
                        call: "w".into(),
                        source: e,
                    })?;
                }
                Ok::<(), Error>(())
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Api, "{err}");
        assert!(err.to_string().contains("invalid tar header") && err.to_string().contains("HTTP 400"), "{err}");
    }

    #[test]
    fn a_failed_writer_ends_the_request_and_keeps_its_error() {
        let (_d, engine) = fake(|_, body| {
            let mut all = Vec::new();
            // The client ends the body early: EOF within a chunk or before the last chunk.
            assert!(body.read_to_end(&mut all).is_err());
            ok_stream("{\"errorDetail\":{\"message\":\"unexpected EOF\"}}\n")
        });
        let t0 = std::time::Instant::now();
        let err = engine
            .load(|w| {
                w.write_all(b"partial").map_err(|e| Error::Io { endpoint: "t".into(), call: "w".into(), source: e })?;
                Err(Error::Protocol { endpoint: "t".into(), call: "writer".into(), why: "the store failed".into() })
            })
            .unwrap_err();
        assert!(err.to_string().contains("the store failed"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn save_names_and_errors() {
        let (_d, engine) = fake(|head, _| {
            assert!(head.starts_with("GET /images/get?names=a%2Fb%3A1 HTTP/1.1"), "{head}");
            let msg = r#"{"message":"reference does not exist"}"#;
            format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{msg}", msg.len()).into_bytes()
        });
        let err = engine.save(&["a/b:1"], |_| Ok::<(), Error>(())).unwrap_err();
        assert!(err.to_string().contains("reference does not exist") && err.to_string().contains("HTTP 404"), "{err}");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode("docker.io/a/b:1"), "docker.io%2Fa%2Fb%3A1");
    }
}
