//! Errors of the solver. Every error about a vertex names it, its digest
//! and the platforms it was asked for.

use polyarch_oci::Digest;

/// An error of a caller's worker, cache store or checksum hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The graph is malformed (an unknown input, an input out of range).
    Invalid,
    /// A source was not resolved (image digest, git commit) or a content
    /// checksum a key needs was not supplied.
    Unresolved,
    /// A vertex's execution failed.
    Failed,
    /// The cache store failed.
    Cache,
    /// The solve was cancelled.
    Cancelled,
    /// A task of the solver stopped unexpectedly (a panic in a worker).
    Internal,
}

/// An error of the solver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vertex names an input that is not (yet) in the graph.
    #[error("vertex {vertex:?}: input {input} is not a vertex of this graph")]
    UnknownInput { vertex: String, input: usize },
    /// An op refers to an input position the vertex does not have.
    #[error("vertex {vertex:?} ({op}): the op reads input {input}, but the vertex has {inputs} inputs")]
    InputOutOfRange { vertex: String, op: &'static str, input: usize, inputs: usize },
    /// A cache key was asked for with another number of input parts than
    /// the vertex has inputs.
    #[error("vertex {vertex:?}: {given} input keys given for {inputs} inputs")]
    InputKeys { vertex: String, given: usize, inputs: usize },
    /// A target or lookup names a vertex index the graph does not have.
    #[error("no vertex {index} in this graph of {len} vertices")]
    UnknownVertex { index: usize, len: usize },
    /// A source's key needs a value resolved before solving.
    #[error("{vertex:?} ({platform}): {what} has no resolved {needed}; resolve it before solving")]
    Unresolved { vertex: String, platform: String, what: String, needed: &'static str },
    /// A source's key needs a content checksum the hook did not give.
    #[error("{vertex:?} ({platform}): no content checksum for {what}; the caller's checksum hook must supply one")]
    MissingChecksum { vertex: String, platform: String, what: String },
    /// An op could not be encoded canonically.
    #[error("encoding {what} canonically: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The worker failed to execute a vertex.
    #[error("{vertex:?} ({platform}, {digest}): {source}")]
    Exec {
        vertex: String,
        digest: Digest,
        platform: String,
        #[source]
        source: BoxError,
    },
    /// The checksum hook failed for a vertex.
    #[error("{vertex:?} ({platform}, {digest}): content checksum: {source}")]
    Checksum {
        vertex: String,
        digest: Digest,
        platform: String,
        #[source]
        source: BoxError,
    },
    /// The cache store failed for a vertex.
    #[error("{vertex:?} ({platform}, {digest}): cache store: {source}")]
    Cache {
        vertex: String,
        digest: Digest,
        platform: String,
        #[source]
        source: BoxError,
    },
    /// The solve was cancelled before it finished.
    #[error("the solve was cancelled")]
    Cancelled,
    /// A vertex's task stopped without a result (a panic).
    #[error("{vertex:?} ({platform}): its task stopped: {reason}")]
    Task { vertex: String, platform: String, reason: String },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownInput { .. }
            | Error::InputOutOfRange { .. }
            | Error::InputKeys { .. }
            | Error::UnknownVertex { .. } => ErrorKind::Invalid,
            Error::Encode { .. } | Error::Task { .. } => ErrorKind::Internal,
            Error::Unresolved { .. } | Error::MissingChecksum { .. } => ErrorKind::Unresolved,
            Error::Exec { .. } | Error::Checksum { .. } => ErrorKind::Failed,
            Error::Cache { .. } => ErrorKind::Cache,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// The name of the vertex this error is about, if any.
    pub fn vertex(&self) -> Option<&str> {
        match self {
            Error::UnknownInput { vertex, .. }
            | Error::InputOutOfRange { vertex, .. }
            | Error::InputKeys { vertex, .. }
            | Error::Unresolved { vertex, .. }
            | Error::MissingChecksum { vertex, .. }
            | Error::Exec { vertex, .. }
            | Error::Checksum { vertex, .. }
            | Error::Cache { vertex, .. }
            | Error::Task { vertex, .. } => Some(vertex),
            Error::UnknownVertex { .. } | Error::Encode { .. } | Error::Cancelled => None,
        }
    }

    /// The platforms of the vertex this error is about, if any.
    pub fn platform(&self) -> Option<&str> {
        match self {
            Error::Unresolved { platform, .. }
            | Error::MissingChecksum { platform, .. }
            | Error::Exec { platform, .. }
            | Error::Checksum { platform, .. }
            | Error::Cache { platform, .. }
            | Error::Task { platform, .. } => Some(platform),
            _ => None,
        }
    }
}

/// A result of the solver.
pub type Result<T, E = Error> = std::result::Result<T, E>;
