//! Errors of snapshots, unpacking and diffing.

use std::io;
use std::path::PathBuf;

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A snapshot with this key does not exist.
    NotFound,
    /// A snapshot with this key already exists.
    AlreadyExists,
    /// The request does not fit the snapshot's state (committing a view,
    /// removing a snapshot that has children, ...).
    FailedPrecondition,
    /// A layer archive is malformed or hostile.
    Invalid,
    /// The kernel or file system lacks a needed feature.
    Unsupported,
    /// The file system failed.
    Io,
}

/// An error of the snapshot crate. Variants name the key or path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No snapshot with this key.
    #[error("snapshot {key:?} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// The key is taken.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key that exists.
        key: String,
    },
    /// The snapshot is not in a state that allows the operation.
    #[error("snapshot {key:?}: {reason}")]
    FailedPrecondition {
        /// The snapshot's key.
        key: String,
        /// Why the operation is refused.
        reason: &'static str,
    },
    /// A key polyarch refuses to use.
    #[error("invalid snapshot key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A layer entry is malformed or would escape the root.
    #[error("layer entry {entry:?}: {reason}")]
    InvalidEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A snapshot's metadata file does not parse.
    #[error("corrupt snapshot metadata at {path}: {reason}")]
    CorruptMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The kernel refused a feature (overlayfs, openat2, ...).
    #[error("{feature} is not supported here: {source}")]
    Unsupported {
        /// The missing feature.
        feature: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An unpacked layer does not hash to the diff_id it was applied as.
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff_id the caller named.
        expected: polyarch_oci::Digest,
        /// What the tar hashed to.
        actual: polyarch_oci::Digest,
    },
    /// Writing or committing a layer blob failed.
    #[error("storing layer: {0}")]
    Store(#[from] polyarch_store::Error),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            Error::InvalidKey { .. }
            | Error::InvalidEntry { .. }
            | Error::CorruptMetadata { .. }
            | Error::DiffIdMismatch { .. } => ErrorKind::Invalid,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Io { .. } | Error::Store(_) => ErrorKind::Io,
        }
    }

    pub(crate) fn entry(entry: impl AsRef<[u8]>, reason: &'static str) -> Error {
        Error::InvalidEntry { entry: String::from_utf8_lossy(entry.as_ref()).into_owned(), reason }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it happened on.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Wraps a rustix errno with the path it happened on.
pub(crate) fn errno_at(path: impl Into<PathBuf>) -> impl FnOnce(rustix::io::Errno) -> Error {
    let path = path.into();
    move |e| Error::Io { path, source: e.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(Error::NotFound { key: "k".into() }.kind(), ErrorKind::NotFound);
        let e = Error::entry(b"../x", "escapes the root");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("../x"), "{e}");
    }
}
