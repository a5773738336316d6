//! Errors of pulls, pushes and local image lookups. Every variant names
//! the image, reference or platform it is about.

use polyarch_oci::Digest;

/// What went wrong, for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An image, tag, manifest, blob or platform does not exist.
    NotFound,
    /// Authentication failed or access was denied.
    Denied,
    /// A failure that may go away when tried again.
    Temporary,
    /// Malformed or inconsistent content.
    Invalid,
    /// Content polyarch does not handle.
    Unsupported,
    /// A local or network I/O failure.
    Io,
}

/// An error of a transfer or a local lookup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry failed; its error names the reference.
    #[error(transparent)]
    Registry(#[from] polyarch_registry::Error),
    /// The store failed; its error names the digest, name or path.
    #[error(transparent)]
    Store(#[from] polyarch_store::Error),
    /// No image in the store has this name.
    #[error("no such image: {name}")]
    ImageNotFound {
        /// The name asked for.
        name: String,
    },
    /// An index has no image for the wanted platform.
    #[error("{reference}: no image for platform {platform} (available: {})", list_or_none(available))]
    NoMatchingPlatform {
        /// The image or reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index offers (or the store holds).
        available: Vec<String>,
    },
    /// A single-platform image is for another platform than asked for.
    #[error("{reference}: image is for platform {actual}, not {wanted}")]
    PlatformMismatch {
        /// The image or reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The image's platform.
        actual: String,
    },
    /// Content needed for the operation is not in the store, e.g. the
    /// other platforms of an index pulled for one platform.
    #[error("{name}: content missing locally for {} (pull it with --all-platforms, or push one platform with --platform)", missing.join(", "))]
    MissingContent {
        /// The image.
        name: String,
        /// The platforms (or digests) whose content is missing.
        missing: Vec<String>,
    },
    /// Several platforms are present and none was chosen.
    #[error("{name}: several platforms are present locally ({}) but not the whole index: choose one with --platform", candidates.join(", "))]
    AmbiguousPlatform {
        /// The image.
        name: String,
        /// The platforms present.
        candidates: Vec<String>,
    },
    /// A manifest that is neither an image manifest nor an index.
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedManifest {
        /// The image or reference.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// An image config could not be read as JSON.
    #[error("config {digest} of {reference}: {reason}")]
    InvalidConfig {
        /// The image or reference.
        reference: String,
        /// The config's digest.
        digest: Digest,
        /// The parse error.
        reason: String,
    },
    /// A background writer stopped unexpectedly.
    #[error("writing blob {digest}: {reason}")]
    Writer {
        /// The blob being written.
        digest: Digest,
        /// What happened to the writer.
        reason: String,
    },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        use polyarch_registry::ErrorKind as R;
        use polyarch_store::ErrorKind as S;
        match self {
            Error::Registry(e) => match e.kind() {
                R::NotFound => ErrorKind::NotFound,
                R::Unauthorized | R::Denied => ErrorKind::Denied,
                R::Temporary => ErrorKind::Temporary,
                R::Invalid => ErrorKind::Invalid,
                R::Unsupported => ErrorKind::Unsupported,
                R::Io | R::Tls => ErrorKind::Io,
            },
            Error::Store(e) => match e.kind() {
                S::NotFound => ErrorKind::NotFound,
                S::Io => ErrorKind::Io,
                _ => ErrorKind::Invalid,
            },
            Error::ImageNotFound { .. } | Error::NoMatchingPlatform { .. } | Error::MissingContent { .. } => {
                ErrorKind::NotFound
            }
            Error::PlatformMismatch { .. } | Error::AmbiguousPlatform { .. } | Error::InvalidConfig { .. } => {
                ErrorKind::Invalid
            }
            Error::UnsupportedManifest { .. } => ErrorKind::Unsupported,
            Error::Writer { .. } => ErrorKind::Io,
        }
    }
}
