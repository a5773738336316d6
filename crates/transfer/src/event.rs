//! Progress of pulls and pushes, for renderers. Bytes within a blob are
//! reported by the registry client's [`polyarch_registry::Event`]s.

use polyarch_oci::{Digest, Platform};
use polyarch_registry::Direction;

/// Something a pull or push did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The reference was resolved to this manifest or index.
    Resolved {
        /// The reference as given (full form).
        reference: String,
        /// The digest of what it points at.
        digest: Digest,
        /// Its media type (an index or an image manifest).
        media_type: String,
    },
    /// A blob starts moving.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Download (pull) or upload (push).
        direction: Direction,
    },
    /// A blob was already where it had to go; nothing moved.
    BlobExists {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob was mounted from another repository of the same registry.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The repository it came from.
        from: String,
    },
    /// A blob finished moving, verified.
    BlobDone {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A manifest or index was written (to the store or the registry).
    Manifest {
        /// Its digest.
        digest: Digest,
        /// The platform of an image manifest, when the index names one.
        platform: Option<Platform>,
    },
    /// Only part of what was asked for could be done, e.g. a push that
    /// sends one platform of an index that is incomplete in the store.
    Note {
        /// What the user should know.
        message: String,
    },
}

/// Where events go. Called from the transferring task; keep it cheap.
pub type EventSink<'a> = &'a (dyn Fn(Event) + Send + Sync);

/// A sink that drops every event.
pub fn ignore(_: Event) {}
