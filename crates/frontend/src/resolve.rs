//! Base images come through a [`Resolver`] the caller implements: the CLI
//! looks in the local store and then the registry, as builds do; tests use
//! a fake. The frontend asks once per reference and platform of a plan.

use std::future::Future;

use polyarch_oci::{Platform, Reference};

use crate::error::BoxError;

/// The repository an image of an OCI layout context is known by, pinned
/// to its manifest's digest (an OCI layout has no registry name).
pub const LAYOUT_REFERENCE: &str = "oci-layout/context";

/// An image resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference pinned to the platform's manifest digest
    /// (`docker.io/library/busybox:latest@sha256:...`): what the image
    /// source op and its key hold.
    pub pinned: Reference,
    /// The reference pinned to what it resolved to at the top: an index's
    /// digest for a multi-platform image. BuildKit names the FROM step
    /// with it.
    pub top: Reference,
    /// The image config blob (its JSON), as stored.
    pub config: Vec<u8>,
}

impl ResolvedImage {
    /// A single-platform image: `pinned` is also the top.
    pub fn new(pinned: Reference, config: Vec<u8>) -> ResolvedImage {
        ResolvedImage { top: pinned.clone(), pinned, config }
    }

    /// The same image, resolved at the top to `top`.
    pub fn with_top(mut self, top: Reference) -> ResolvedImage {
        self.top = top;
        self
    }
}

/// Finds the manifest and config of a reference for a platform.
pub trait Resolver: Send + Sync {
    /// Resolves `reference` (normalised, with a tag or digest) for
    /// `platform`: its pinned reference and config JSON.
    fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> impl Future<Output = Result<ResolvedImage, BoxError>> + Send;

    /// Resolves the image of an OCI layout for `platform`: its `pinned`
    /// reference is [`LAYOUT_REFERENCE`] at the platform's manifest digest
    /// (as the build names it). The default refuses layouts.
    fn resolve_layout(
        &self,
        layout: &crate::Layout,
        platform: &Platform,
    ) -> impl Future<Output = Result<ResolvedImage, BoxError>> + Send {
        let _ = platform;
        let e: BoxError = format!("{layout}: this resolver does not read OCI layouts").into();
        async { Err(e) }
    }

    /// The commit a branch, tag or commit `reference` of the git repository
    /// `remote` names, when the resolver can tell (`ADD <repo>.git#ref`);
    /// `None` (the default) leaves the git vertex unpinned.
    fn resolve_git(
        &self,
        remote: &str,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, BoxError>> + Send {
        let _ = (remote, reference);
        async { Ok(None) }
    }
}
