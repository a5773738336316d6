//! Talking to OCI registries: resolve, fetch and push manifests and blobs,
//! with Docker-compatible authentication, per-registry configuration
//! (mirrors, plain HTTP, extra CAs) and bounded retries.
//!
//! The library never prints; progress is reported through an optional
//! [`Event`] sink set with [`ClientBuilder::with_progress`].

#![warn(missing_docs)]

pub mod auth;
pub mod blob;
pub mod challenge;
pub mod client;
pub mod config;
pub mod error;
pub mod retry;
pub mod sink;
mod transport;
pub mod upload;

pub use auth::{Credential, DockerConfig};
pub use blob::{BlobStream, ByteStream, CopyOutcome, Direction};
pub use client::{Client, ClientBuilder, Timeouts};
pub use config::{HostConfig, KeyPair, Mirror, RegistryConfig};
pub use error::{short_reason, Error, ErrorKind, RegistryError};
pub use retry::RetryPolicy;
pub use sink::{push_tree, BlobOrigin, Pushing, Put, RepoSink, Tree};
pub use upload::{PushOutcome, PushSource, SourceFn};

use polyarch_oci::Digest;

/// Progress of registry transfers, for renderers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bytes of a blob moved.
    Bytes {
        /// The blob.
        digest: Digest,
        /// Download or upload.
        direction: Direction,
        /// Bytes so far (of this attempt).
        transferred: u64,
        /// The blob's size.
        total: u64,
    },
    /// A blob was mounted from another repository.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// A blob was already in the target repository.
    Skipped {
        /// The blob.
        digest: Digest,
    },
}
