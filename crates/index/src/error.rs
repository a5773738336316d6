//! Errors of index assembly.

use polyarch_oci::Digest;

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Invalid,
    AlreadyExists,
    Registry,
    Io,
}

/// An error of index assembly; every variant names the list, image,
/// reference or platform involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no local manifest list {name}")]
    ListNotFound { name: String },
    #[error("manifest list {name} already exists locally: pass --amend to add to it, or `polyarch manifest rm {name}` first")]
    ListExists { name: String },
    #[error("{image} is not in the manifest list {list}")]
    EntryNotFound { list: String, image: String },
    #[error("{reference} is a multi-platform index ({count} platforms), not a single image: name one platform's image (e.g. {reference}@<digest> from `polyarch imagetools inspect {reference}`), pass --flatten to take its platform entries, or use `polyarch imagetools create` to merge indexes")]
    SourceIsIndex { reference: String, count: usize },
    #[error(
        "{reference}: the image config says neither os nor architecture; set them with `polyarch manifest annotate`"
    )]
    NoPlatform { reference: String },
    #[error("invalid platform for {image}: {reason}")]
    InvalidPlatform { image: String, reason: String },
    #[error("invalid annotation {input:?}: {reason}")]
    InvalidAnnotation { input: String, reason: String },
    #[error("{what}: annotations need an OCI index; Docker manifest lists have no annotations (drop --format docker)")]
    AnnotationsNeedOci { what: String },
    #[error("nothing to put in the index: no sources given")]
    NoSources,
    #[error("no platform left after filtering: no source holds an image of the platforms asked for")]
    NoPlatformLeft,
    #[error("local manifest list {name} is damaged ({path}): {reason}; remove it with `polyarch manifest rm {name}`")]
    ListCorrupt { name: String, path: String, reason: String },
    #[error("{reference}: child manifest {digest} is missing from the source")]
    MissingChild { reference: String, digest: Digest },
    #[error(transparent)]
    Registry(#[from] polyarch_registry::Error),
    #[error(transparent)]
    Oci(#[from] polyarch_oci::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ListNotFound { .. } | Error::EntryNotFound { .. } | Error::MissingChild { .. } => {
                ErrorKind::NotFound
            }
            Error::ListExists { .. } => ErrorKind::AlreadyExists,
            Error::Registry(_) => ErrorKind::Registry,
            Error::Io { .. } => ErrorKind::Io,
            _ => ErrorKind::Invalid,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io { path: path.display().to_string(), source }
    }
}
