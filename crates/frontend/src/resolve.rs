//! Base images come through a [`Resolver`] the caller implements: the CLI
//! looks in the local store and then the registry, as builds do; tests use
//! a fake. The frontend asks once per reference and platform of a plan.

use std::future::Future;

use polyarch_oci::{Platform, Reference};

use crate::error::BoxError;

/// An image resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference pinned to the platform's manifest digest
    /// (`docker.io/library/busybox:latest@sha256:...`).
    pub pinned: Reference,
    /// The image config blob, as stored.
    pub config: Vec<u8>,
}

/// Finds the manifest and config of a reference for a platform.
pub trait Resolver: Send + Sync {
    /// Resolves `reference` (normalised, with a tag or digest) for `platform`.
    fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> impl Future<Output = Result<ResolvedImage, BoxError>> + Send;
}
