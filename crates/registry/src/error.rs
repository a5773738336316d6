//! Errors of registry operations.
//!
//! Every variant names the registry, repository, reference or digest it is
//! about, and never carries a credential. Callers branch on [`Error::kind`].

use std::fmt;
use std::path::PathBuf;

use polyarch_oci::Digest;
use serde::Deserialize;

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The manifest, blob, repository or tag does not exist.
    NotFound,
    /// Authentication failed or is missing.
    Unauthorized,
    /// Authenticated, but not allowed.
    Denied,
    /// A failure that may go away when tried again (rate limits, 5xx,
    /// network resets).
    Temporary,
    /// Malformed or inconsistent data (digest mismatch, bad config, bad
    /// response).
    Invalid,
    /// Something polyarch does not support (schema 1, unknown algorithm).
    Unsupported,
    /// A local I/O failure, or a registry that cannot be reached.
    Io,
    /// A TLS failure (unknown CA, bad certificate).
    Tls,
}

/// One entry of the registry's JSON error body
/// (`{"errors":[{"code","message","detail"}]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryError {
    /// The error code, e.g. `MANIFEST_UNKNOWN`.
    #[serde(default)]
    pub code: String,
    /// The human message the registry sent.
    #[serde(default)]
    pub message: String,
    /// Any detail the registry sent, as JSON text.
    #[serde(default, deserialize_with = "detail_as_text")]
    pub detail: Option<String>,
}

fn detail_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.filter(|v| !v.is_null()).map(|v| match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<RegistryError>,
}

/// Parses a registry error body; an empty list when it is not one.
pub(crate) fn parse_error_body(body: &[u8]) -> Vec<RegistryError> {
    serde_json::from_slice::<ErrorBody>(body).map(|b| b.errors).unwrap_or_default()
}

/// The registry's errors rendered as `manifest unknown (MANIFEST_UNKNOWN)`,
/// several joined with `; `.
pub struct ErrorList<'a>(pub &'a [RegistryError]);

impl fmt::Display for ErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let msg = if e.message.is_empty() { e.code.to_lowercase().replace('_', " ") } else { e.message.clone() };
            write!(f, "{msg}")?;
            if !e.code.is_empty() {
                write!(f, " ({})", e.code)?;
            }
        }
        Ok(())
    }
}

/// An error of a registry operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry answered with an error status.
    #[error("{reference}: {}", status_message(*status, errors))]
    Status {
        /// Registry host as in the reference (e.g. `127.0.0.1:5000`).
        registry: String,
        /// Repository path (e.g. `library/busybox`), when known.
        repository: Option<String>,
        /// What was asked for, e.g. `127.0.0.1:5000/library/busybox:nope`.
        reference: String,
        /// HTTP status code.
        status: u16,
        /// The errors of the JSON body, if any.
        errors: Vec<RegistryError>,
    },
    /// Authentication was refused (after trying the configured credentials).
    #[error("{reference}: unauthorized: {}", unauthorized(registry, errors, *had_credentials))]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// What was asked for.
        reference: String,
        /// Whether credentials were sent.
        had_credentials: bool,
        /// The errors of the JSON body, if any.
        errors: Vec<RegistryError>,
    },
    /// The registry cannot be reached (connection refused, DNS, reset).
    #[error("cannot reach registry {registry}: {reason}")]
    Connect {
        /// Registry host.
        registry: String,
        /// Short cause, e.g. `connection refused`.
        reason: String,
    },
    /// TLS handshake or certificate failure.
    #[error("TLS error talking to registry {registry}: {reason}")]
    Tls {
        /// Registry host.
        registry: String,
        /// The underlying cause.
        reason: String,
    },
    /// A network failure in the middle of a request or body.
    #[error("{reference}: network error: {reason}")]
    Network {
        /// What was being transferred.
        reference: String,
        /// The underlying cause.
        reason: String,
        /// Whether the request timed out.
        timeout: bool,
    },
    /// Content did not hash to the expected digest.
    #[error("{reference}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched or pushed.
        reference: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// Content was longer or shorter than its descriptor says.
    #[error("{reference}: size mismatch for {digest}: expected {expected} bytes, got {actual}{}", if *.more { " or more" } else { "" })]
    SizeMismatch {
        /// What was fetched.
        reference: String,
        /// The digest of the content.
        digest: Digest,
        /// The size in the descriptor.
        expected: u64,
        /// The bytes received so far.
        actual: u64,
        /// Whether the transfer was cut short because it went past `expected`.
        more: bool,
    },
    /// Content larger than allowed (manifests: 4 MiB).
    #[error("{reference}: {what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// What was fetched.
        reference: String,
        /// `manifest` or `blob`.
        what: &'static str,
        /// The size announced or read so far.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest the image model refuses (schema 1, bad JSON).
    #[error("{reference}: {source}")]
    Manifest {
        /// What was fetched or pushed.
        reference: String,
        /// The model's error.
        #[source]
        source: polyarch_oci::Error,
    },
    /// The registry sent something that breaks the protocol.
    #[error("registry {registry}: invalid response: {reason}")]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A reference that cannot be used for the operation.
    #[error("{reference}: invalid reference: {reason}")]
    InvalidReference {
        /// The reference.
        reference: String,
        /// Why.
        reason: &'static str,
    },
    /// A configuration file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A docker credential helper failed.
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    CredentialHelper {
        /// The helper's suffix (`pass`, `secretservice`, ...).
        helper: String,
        /// The registry the credentials are for.
        registry: String,
        /// What went wrong (never the helper's output for `get`).
        reason: String,
    },
    /// A reader of pushed content failed.
    #[error("{reference}: reading content to push: {reason}")]
    Source {
        /// What was being pushed.
        reference: String,
        /// The cause.
        reason: String,
    },
    /// A temporary failure persisted past the retry bound. The last
    /// failure is part of the message, not a separate cause, so that an
    /// error chain names it once.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: Box<Error>,
    },
    /// Every pull endpoint failed: the origin's failure, with what each
    /// mirror tried before it answered. Kind and status are the origin's.
    #[error("{origin}; {}", MirrorList(mirrors))]
    Mirrors {
        /// The origin's failure.
        origin: Box<Error>,
        /// Each mirror tried (`host[/prefix]`) and its failure, in order.
        mirrors: Vec<(String, Error)>,
    },
}

struct MirrorList<'a>(&'a [(String, Error)]);

impl fmt::Display for MirrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (host, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "mirror {host}: {e}")?;
        }
        Ok(())
    }
}

fn status_message(status: u16, errors: &[RegistryError]) -> String {
    if !errors.is_empty() {
        return ErrorList(errors).to_string();
    }
    match status {
        404 => "not found (HTTP 404)".to_string(),
        403 => "denied (HTTP 403)".to_string(),
        429 => "too many requests (HTTP 429)".to_string(),
        s => format!("unexpected HTTP status {s}"),
    }
}

fn unauthorized(registry: &str, errors: &[RegistryError], had_credentials: bool) -> String {
    let mut s = if had_credentials {
        format!("registry {registry} refused the credentials")
    } else {
        format!("registry {registry} requires authentication; log in first")
    };
    // Distribution's generic "authentication required" adds nothing.
    let telling: Vec<RegistryError> =
        errors.iter().filter(|e| e.message != "authentication required").cloned().collect();
    if !telling.is_empty() {
        s.push_str(&format!(" ({})", ErrorList(&telling)));
    }
    s
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Status { status, errors, .. } => status_kind(*status, errors),
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::Connect { .. } => ErrorKind::Io,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::Network { .. } => ErrorKind::Temporary,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } | Error::TooLarge { .. } => ErrorKind::Invalid,
            Error::Manifest { source, .. } => match source.kind() {
                polyarch_oci::ErrorKind::Unsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Invalid,
            },
            Error::InvalidResponse { .. } | Error::Config { .. } | Error::InvalidReference { .. } => ErrorKind::Invalid,
            Error::Io { .. } | Error::Source { .. } | Error::CredentialHelper { .. } => ErrorKind::Io,
            Error::GaveUp { last, .. } => last.kind(),
            Error::Mirrors { origin, .. } => origin.kind(),
        }
    }

    /// The HTTP status the registry answered, if this error comes from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::Unauthorized { .. } => Some(401),
            Error::GaveUp { last, .. } => last.status(),
            Error::Mirrors { origin, .. } => origin.status(),
            _ => None,
        }
    }

    /// Whether trying again may help.
    pub fn is_temporary(&self) -> bool {
        self.kind() == ErrorKind::Temporary
    }
}

fn status_kind(status: u16, errors: &[RegistryError]) -> ErrorKind {
    for e in errors {
        match e.code.as_str() {
            "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UPLOAD_UNKNOWN" => return ErrorKind::NotFound,
            "UNAUTHORIZED" => return ErrorKind::Unauthorized,
            "DENIED" => return ErrorKind::Denied,
            "TOOMANYREQUESTS" => return ErrorKind::Temporary,
            "UNSUPPORTED" => return ErrorKind::Unsupported,
            "DIGEST_INVALID"
            | "MANIFEST_INVALID"
            | "MANIFEST_BLOB_UNKNOWN"
            | "NAME_INVALID"
            | "TAG_INVALID"
            | "SIZE_INVALID"
            | "BLOB_UPLOAD_INVALID"
            | "MANIFEST_UNVERIFIED"
            | "PAGINATION_NUMBER_INVALID"
            | "RANGE_INVALID" => return ErrorKind::Invalid,
            _ => {}
        }
    }
    match status {
        404 => ErrorKind::NotFound,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Denied,
        408 | 429 | 500 | 502 | 503 | 504 => ErrorKind::Temporary,
        405 | 501 => ErrorKind::Unsupported,
        _ => ErrorKind::Invalid,
    }
}

/// How [`short_reason`] starts the reason of a name that does not resolve.
pub(crate) const DNS_FAILED: &str = "DNS lookup failed";

/// A short reason for a transport error: walks the source chain for an
/// I/O error kind so that messages read `connection refused`. Public for
/// every HTTP client of polyarch (downloads of ADD, contexts by URL).
pub fn short_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let s = match io.kind() {
                K::ConnectionRefused => "connection refused",
                K::ConnectionReset => "connection reset",
                K::ConnectionAborted => "connection aborted",
                K::TimedOut => "timed out",
                K::UnexpectedEof => "connection closed early",
                _ => "",
            };
            if !s.is_empty() {
                return s.to_string();
            }
            // getaddrinfo's failure, as std words it: the name does not
            // resolve here (final: the resolver has retried already).
            let text = io.to_string();
            if let Some(why) = text.strip_prefix("failed to lookup address information: ") {
                return format!("{DNS_FAILED}: {why}");
            }
        }
        last = e.to_string();
        cur = e.source();
    }
    last
}

/// Whether the source chain holds a TLS (rustls) error.
pub(crate) fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let mut io = e.downcast_ref::<std::io::Error>();
        // hyper-util wraps rustls' io::Error in another io::Error.
        while let Some(i) = io {
            let inner = i.get_ref();
            if i.kind() == std::io::ErrorKind::InvalidData || inner.is_some_and(|x| x.is::<rustls::Error>()) {
                return true;
            }
            io = inner.and_then(|x| x.downcast_ref::<std::io::Error>());
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registry_error_body() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        let errors = parse_error_body(body);
        assert_eq!(errors[0].detail.as_deref(), Some(r#"{"Tag":"nope"}"#));
        let e = Error::Status {
            registry: "127.0.0.1:5000".into(),
            repository: Some("library/busybox".into()),
            reference: "127.0.0.1:5000/library/busybox:nope".into(),
            status: 404,
            errors,
        };
        assert_eq!(e.to_string(), "127.0.0.1:5000/library/busybox:nope: manifest unknown (MANIFEST_UNKNOWN)");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_name_that_does_not_resolve_reads_as_a_dns_failure() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("dns error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(short_reason(&Wrapper(io)), "DNS lookup failed: Name or service not known");
    }

    #[test]
    fn mirrors_follow_the_origins_failure() {
        let origin = Error::Connect { registry: "registry-1.docker.io".into(), reason: "connection refused".into() };
        let mirror = Error::Status {
            registry: "127.0.0.1:5000".into(),
            repository: Some("library/busybox".into()),
            reference: "docker.io/library/busybox:nope".into(),
            status: 404,
            errors: vec![RegistryError {
                code: "MANIFEST_UNKNOWN".into(),
                message: "manifest unknown".into(),
                detail: None,
            }],
        };
        let e = Error::Mirrors { origin: Box::new(origin), mirrors: vec![("127.0.0.1:5000".into(), mirror)] };
        assert_eq!(
            e.to_string(),
            "cannot reach registry registry-1.docker.io: connection refused; \
             mirror 127.0.0.1:5000: docker.io/library/busybox:nope: manifest unknown (MANIFEST_UNKNOWN)"
        );
        assert_eq!((e.kind(), e.status()), (ErrorKind::Io, None));
    }

    #[test]
    fn kinds_from_codes_and_statuses() {
        let mk = |status, code: &str| Error::Status {
            registry: "r".into(),
            repository: None,
            reference: "r/x".into(),
            status,
            errors: if code.is_empty() {
                vec![]
            } else {
                vec![RegistryError { code: code.into(), message: String::new(), detail: None }]
            },
        };
        assert_eq!(mk(400, "MANIFEST_BLOB_UNKNOWN").kind(), ErrorKind::Invalid);
        assert_eq!(mk(404, "NAME_UNKNOWN").kind(), ErrorKind::NotFound);
        assert_eq!(mk(403, "DENIED").kind(), ErrorKind::Denied);
        assert_eq!(mk(429, "TOOMANYREQUESTS").kind(), ErrorKind::Temporary);
        assert_eq!(mk(503, "").kind(), ErrorKind::Temporary);
        assert_eq!(mk(404, "").to_string(), "r/x: not found (HTTP 404)");
        assert_eq!(mk(400, "NAME_UNKNOWN").to_string(), "r/x: name unknown (NAME_UNKNOWN)");
    }

    #[test]
    fn unauthorized_messages() {
        let e = Error::Unauthorized {
            registry: "r:1".into(),
            reference: "r:1/a:b".into(),
            had_credentials: true,
            errors: parse_error_body(br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#),
        };
        assert_eq!(e.to_string(), "r:1/a:b: unauthorized: registry r:1 refused the credentials");
        let e = Error::Unauthorized {
            registry: "r:1".into(),
            reference: "r:1/a:b".into(),
            had_credentials: false,
            errors: vec![],
        };
        assert_eq!(e.to_string(), "r:1/a:b: unauthorized: registry r:1 requires authentication; log in first");
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
    }

    #[test]
    fn garbage_body_is_no_errors() {
        assert!(parse_error_body(b"<html>").is_empty());
    }
}
