//! Errors of the store.

use std::io;
use std::path::PathBuf;

use polyarch_oci::Digest;

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A blob or reference is not in the store.
    NotFound,
    /// The blob is already in the store; writers treat this as success.
    AlreadyExists,
    /// The input (name, descriptor, archive, written content) is wrong.
    Invalid,
    /// The file system failed.
    Io,
    /// Something on disk is not what it should be.
    Corrupt,
}

/// An error of the store. Variants name the digest, path or name involved.
// The fields are what each variant's message says they are.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No blob with this digest.
    #[error("blob {digest} not found")]
    BlobNotFound { digest: Digest },
    /// No reference with this name.
    #[error("reference {name:?} not found")]
    RefNotFound { name: String },
    /// The blob is already present.
    #[error("blob {digest} already exists")]
    AlreadyExists { digest: Digest },
    /// Written or read content hashes to something else.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// Written or read content has another length.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    /// A stored blob does not hash to its own name.
    #[error("blob {digest} at {path} is corrupt: it hashes to {actual}")]
    CorruptBlob { digest: Digest, path: PathBuf, actual: Digest },
    /// A reference name polyarch refuses to store.
    #[error("invalid reference name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A blob is bigger than the caller allows.
    #[error("blob {digest} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { digest: Digest, size: u64, limit: u64 },
    /// A stored manifest or index does not parse.
    #[error("manifest {digest}: {source}")]
    Manifest {
        digest: Digest,
        #[source]
        source: polyarch_oci::Error,
    },
    /// A reference would point at something that is not a manifest or index.
    #[error("{digest} is a {media_type}, not a manifest or index")]
    NotAManifest { digest: Digest, media_type: String },
    /// A reference names something that is not a single-platform image.
    #[error("{name:?} is a {media_type}, not a single-platform image manifest")]
    NotAnImage { name: String, media_type: String },
    /// A file of the layout (index.json, oci-layout) does not parse.
    #[error("{path}: {reason}")]
    CorruptLayout { path: PathBuf, reason: String },
    /// An image's layer does not unpack to what its config says.
    #[error("layer {layer} does not match its image's config: its uncompressed digest is {actual}, the config's diff_id is {expected}")]
    LayerMismatch { layer: Digest, expected: Digest, actual: Digest },
    /// An image's config lists another number of diff_ids than it has layers.
    #[error("image config {config} lists {diff_ids} diff_ids for {layers} layers")]
    LayerCount { config: Digest, diff_ids: usize, layers: usize },
    /// A name an archive gives an image is not a valid reference.
    #[error("archive entry {entry:?}: invalid image name {name:?}: {reason}")]
    BadArchiveName { entry: String, name: String, reason: String },
    /// An archive being imported is malformed.
    #[error("archive entry {entry:?}: {reason}")]
    Archive { entry: String, reason: String },
    /// A prune filter, size or duration that does not parse.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidPolicy { what: &'static str, input: String, reason: &'static str },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BlobNotFound { .. } | Error::RefNotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::InvalidName { .. }
            | Error::TooLarge { .. }
            | Error::NotAnImage { .. }
            | Error::NotAManifest { .. }
            | Error::Archive { .. }
            | Error::BadArchiveName { .. }
            | Error::InvalidPolicy { .. } => ErrorKind::Invalid,
            Error::LayerMismatch { .. } | Error::LayerCount { .. } => ErrorKind::Corrupt,
            Error::CorruptBlob { .. } | Error::Manifest { .. } | Error::CorruptLayout { .. } => ErrorKind::Corrupt,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// Whether this is "already exists", which writers treat as success.
    pub fn is_already_exists(&self) -> bool {
        self.kind() == ErrorKind::AlreadyExists
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it happened on. A store error carried
/// inside an I/O error (from a [`crate::content::VerifiedReader`] or a
/// blob writer) comes back out as itself.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| {
        if source.get_ref().is_some_and(|e| e.is::<Error>()) {
            if let Some(inner) = source.into_inner() {
                if let Ok(e) = inner.downcast::<Error>() {
                    return *e;
                }
            }
            return Error::Io { path, source: io::Error::other("unreadable inner error") };
        }
        Error::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let d = Digest::sha256(b"");
        assert_eq!(Error::BlobNotFound { digest: d.clone() }.kind(), ErrorKind::NotFound);
        assert!(Error::AlreadyExists { digest: d.clone() }.is_already_exists());
        let e = Error::SizeMismatch { digest: d, expected: 1, actual: 2 };
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("expected 1 bytes, got 2"), "{e}");
    }
}
