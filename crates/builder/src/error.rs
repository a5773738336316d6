//! The crate error. Errors about an instruction carry a diagnostic that
//! names the Dockerfile, line and column and shows the line.

use std::path::{Path, PathBuf};

use polyarch_dockerfile::Diagnostic;
use polyarch_oci::Digest;

/// What went wrong, for callers that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Dockerfile is malformed or names unknown stages or flags.
    Dockerfile,
    /// A source file, image or stage is missing.
    NotFound,
    /// The instruction is valid but not supported by this builder yet.
    Unsupported,
    /// Input that was understood and rejected (bad option, bad checksum).
    Invalid,
    /// The registry, the store or the file system failed.
    Io,
    /// Stopped because another part of the build failed (a RUN process
    /// killed, a step or stage not run to its end).
    Cancelled,
}

/// A build failure.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error at a place in the Dockerfile.
    #[error("{}", .diagnostic.render())]
    At {
        /// What kind of failure.
        kind: ErrorKind,
        /// Where, with the line.
        diagnostic: Box<Diagnostic>,
    },
    /// A build option is wrong.
    #[error("{0}")]
    Option(String),
    /// Stopped because another part of the build failed.
    #[error("stopped: another part of the build failed")]
    Cancelled,
    /// A `--cache-to` or `--cache-from` value is wrong.
    #[error("invalid {flag} {value:?}: {reason}")]
    CacheSpec {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cache export failed.
    #[error("exporting cache to {target}: {reason}")]
    CacheExport {
        /// The destination (reference or directory).
        target: String,
        /// Why.
        reason: String,
    },
    /// An `--ssh` agent could not be reached or started.
    #[error("--ssh {id}: {reason}")]
    Ssh {
        /// The ssh id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(Box<polyarch_store::Error>),
    /// A step's cache key could not be made.
    #[error("cache key: {0}")]
    Key(Box<polyarch_solver::Error>),
    /// A step that this build shared with another one failed there (the
    /// failure of its first run, which the others waited for).
    #[error("{message}")]
    Shared {
        /// The failure's kind.
        kind: ErrorKind,
        /// The failure, as it was shown.
        message: String,
        /// Where, when it was at a line of the Dockerfile.
        diagnostic: Option<Box<Diagnostic>>,
    },
    /// A registry request failed.
    #[error("{what}: {source}")]
    Registry {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: Box<polyarch_registry::Error>,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A layer or archive could not be read or written.
    #[error("{what} a layer: {source}")]
    LayerIo {
        /// Reading, writing, compressing.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A layer holds something that cannot be applied.
    #[error("invalid layer: {0}")]
    Layer(String),
    /// A JSON document (config, manifest) is not what it should be.
    #[error("invalid {what}: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A base image has no manifest for the platform.
    #[error("{reference}: no image for platform {platform}{}", offered_list(.offered))]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the image's index offers (empty when unknown).
        offered: Vec<String>,
    },
    /// A platform whose RUN steps must execute here cannot.
    #[error(
        "{platform} cannot execute RUN steps on this machine ({detail}); they need a working emulator: run `{fix}`"
    )]
    Emulation {
        /// The platform.
        platform: String,
        /// What the probe saw.
        detail: String,
        /// The command that fixes it.
        fix: String,
    },
    /// One platform of a multi-platform build failed.
    #[error("[{platform}] {source}")]
    ForPlatform {
        /// The platform.
        platform: String,
        /// Why.
        source: Box<Error>,
    },
    /// A download failed.
    /// An image neither the store nor the registry has for the platform.
    #[error("{reference} for {platform} is not in the local store ({local}), and the registry answered: {registry}")]
    NotFound {
        /// The reference.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// Why the store has no image for it.
        local: String,
        /// What the registry answered.
        registry: Box<Error>,
    },
    /// Reading an image from the store failed.
    #[error(transparent)]
    Local(Box<polyarch_transfer::Error>),
    /// A push failed.
    #[error("pushing {reference}: {source}")]
    Push {
        /// The first reference pushed to.
        reference: String,
        /// Why.
        source: Box<polyarch_transfer::Error>,
    },
    #[error("downloading {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A Git source could not be fetched or checked out.
    #[error("git repository {url}: {message}")]
    Git {
        /// The URL with its `#ref:subdir` fragment.
        url: String,
        /// Why.
        message: String,
    },
    /// Downloaded content does not match `--checksum`.
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    Checksum {
        /// The URL.
        url: String,
        /// What `--checksum` said.
        expected: String,
        /// What arrived.
        actual: Digest,
    },
}

impl From<polyarch_store::Error> for Error {
    fn from(e: polyarch_store::Error) -> Error {
        Error::Store(Box::new(e))
    }
}

/// `" (the image offers linux/amd64, linux/arm64)"`, or nothing.
fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        String::new()
    } else {
        format!(" (the image offers {})", offered.join(", "))
    }
}

/// The crate result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::At { kind, .. } => *kind,
            Error::Option(_) | Error::CacheSpec { .. } | Error::Checksum { .. } | Error::Ssh { .. } => {
                ErrorKind::Invalid
            }
            Error::NoPlatform { .. } | Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Emulation { .. } => ErrorKind::Unsupported,
            Error::ForPlatform { source, .. } => source.kind(),
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Shared { kind, .. } => *kind,
            Error::Store(e) if e.kind() == polyarch_store::ErrorKind::NotFound => ErrorKind::NotFound,
            Error::Registry { source, .. } if source.kind() == polyarch_registry::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Push { source, .. } | Error::Local(source)
                if source.kind() == polyarch_transfer::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Io,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn layer(what: &'static str, source: std::io::Error) -> Error {
        Error::LayerIo { what, source }
    }

    pub(crate) fn key(e: polyarch_solver::Error) -> Error {
        Error::Key(Box::new(e))
    }

    pub(crate) fn local(e: polyarch_transfer::Error) -> Error {
        Error::Local(Box::new(e))
    }

    pub(crate) fn registry(what: impl Into<String>, source: polyarch_registry::Error) -> Error {
        Error::Registry { what: what.into(), source: Box::new(source) }
    }

    /// The diagnostic, for errors located in the Dockerfile.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Error::At { diagnostic, .. } => Some(diagnostic),
            Error::ForPlatform { source, .. } => source.diagnostic(),
            Error::Shared { diagnostic, .. } => diagnostic.as_deref(),
            _ => None,
        }
    }
}

/// Where an instruction is, to locate errors.
#[derive(Debug, Clone)]
pub struct Location {
    /// The Dockerfile name as shown to the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The text of that line.
    pub text: String,
}

impl Location {
    /// An error of `kind` at this place, underlining `token` if found in
    /// the line (else the whole instruction).
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>, token: Option<&str>) -> Error {
        let lead = self.text.len() - self.text.trim_start().len();
        let (column, width) = match token.filter(|t| !t.is_empty()).and_then(|t| self.text.find(t).map(|i| (i, t))) {
            Some((i, t)) => (self.text[..i].chars().count() + 1, t.chars().count()),
            None => (lead + 1, self.text.trim().chars().count().max(1)),
        };
        Error::At {
            kind,
            diagnostic: Box::new(Diagnostic {
                file: self.file.clone(),
                line: self.line,
                column,
                width,
                message: message.into(),
                source_line: self.text.clone(),
            }),
        }
    }
}
