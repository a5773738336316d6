//! Errors of the image model.

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed.
    Invalid,
    /// The input is of a kind polyarch does not support.
    Unsupported,
}

/// An error of the image model. Every variant names the offending input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: &'static str },
    #[error("unsupported digest algorithm {algorithm:?} in {input:?}")]
    UnsupportedAlgorithm { input: String, algorithm: String },
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform { input: String, reason: String },
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    #[error("invalid {what} JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported media type {media_type:?}{}", hint.map(|h| format!(": {h}")).unwrap_or_default())]
    UnsupportedMediaType { media_type: String, hint: Option<&'static str> },
    #[error("manifest is {size} bytes, over the {limit}-byte limit")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnsupportedAlgorithm { .. } | Error::UnsupportedMediaType { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Invalid,
        }
    }
}
