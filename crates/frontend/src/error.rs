//! The crate error. Every error about an instruction names the Dockerfile,
//! the line and column and shows the line, as the builder's errors do.

use polyarch_dockerfile::Diagnostic;

/// A resolver's failure, kept as its source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for callers that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Dockerfile is malformed or names unknown stages or flags.
    Dockerfile,
    /// A value was understood and rejected (a bad platform, chmod, reference).
    Invalid,
    /// An image could not be resolved.
    Resolve,
    /// The options of the plan are inconsistent.
    Options,
    /// The graph refused a vertex (a bug of the frontend).
    Graph,
}

/// A failure to plan a build.
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
    /// An image named by the Dockerfile could not be resolved.
    #[error("{}", .diagnostic.render())]
    Resolve {
        /// The reference, normalised.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// Where it is named, with the resolver's reason as the message.
        diagnostic: Box<Diagnostic>,
        /// The resolver's error; its text is already the diagnostic's
        /// message, so it is not chained as a source (it would print twice).
        cause: BoxError,
    },
    /// A resolver answered with a reference that carries no digest.
    #[error("the resolver gave {reference} for {platform}, which has no digest")]
    Unpinned {
        /// The reference it gave.
        reference: String,
        /// The platform asked for.
        platform: String,
    },
    /// A base image's config is not a JSON object.
    #[error("invalid image config of {reference}: {source}")]
    Config {
        /// The image.
        reference: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A platform option cannot be read.
    #[error("invalid platform {platform:?}: {source}")]
    Platform {
        /// The text.
        platform: String,
        /// Why.
        source: polyarch_oci::Error,
    },
    /// The graph refused a vertex.
    #[error(transparent)]
    Graph(#[from] polyarch_solver::Error),
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::At { kind, .. } => *kind,
            Error::Resolve { .. } | Error::Unpinned { .. } | Error::Config { .. } => ErrorKind::Resolve,
            Error::Platform { .. } => ErrorKind::Options,
            Error::Graph(_) => ErrorKind::Graph,
        }
    }

    /// The Dockerfile line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::At { diagnostic, .. } | Error::Resolve { diagnostic, .. } if diagnostic.line > 0 => {
                Some(diagnostic.line)
            }
            _ => None,
        }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where errors of one Dockerfile point: its name and text.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) file: String,
    pub(crate) text: String,
}

impl Source {
    /// An error of `kind` at `line`, underlining `token` when given (else
    /// the line's first word).
    pub(crate) fn error(&self, kind: ErrorKind, line: usize, message: impl Into<String>, token: Option<&str>) -> Error {
        Error::At { kind, diagnostic: self.diagnostic(line, message, token) }
    }

    /// `message` located at `line`, `token` underlined.
    pub(crate) fn diagnostic(&self, line: usize, message: impl Into<String>, token: Option<&str>) -> Box<Diagnostic> {
        let e = polyarch_dockerfile::Error::Instruction {
            message: message.into(),
            start_line: line,
            end_line: line,
            token: token.map(str::to_string),
        };
        Box::new(e.diagnostic(&self.file, &self.text))
    }

    /// A parser or stage error of the dockerfile crate, located.
    pub(crate) fn dockerfile(&self, e: polyarch_dockerfile::Error) -> Error {
        Error::At { kind: ErrorKind::Dockerfile, diagnostic: Box::new(e.diagnostic(&self.file, &self.text)) }
    }
}
