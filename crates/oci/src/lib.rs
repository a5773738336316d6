//! The OCI and Docker image model: digests, descriptors, media types,
//! platforms, image references, manifests and indexes.
//!
//! No I/O happens here. Manifests and indexes are immutable values that keep
//! the exact bytes they were read or written as, so a digest is always the
//! digest of those bytes.

pub mod descriptor;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod media_type;
pub mod platform;
pub mod reference;

pub use descriptor::Descriptor;
pub use digest::{Algorithm, Digest, Digester};
pub use error::{Error, ErrorKind};
pub use manifest::{ImageConfig, ImageManifest, IndexManifest, Manifest, RawManifest, MAX_MANIFEST_SIZE};
pub use platform::Platform;
pub use reference::Reference;
