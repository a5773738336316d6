//! Moving images between registries and the local store: [`pull`] an image
//! or index (one platform, the host's, or all of them) into a
//! [`polyarch_store::Store`], and [`push`] a stored image to a registry.
//!
//! Content is streamed through verified writers, a few blobs at a time,
//! and always written children first: blobs, then image manifests, then
//! the index, then the name. A store lease is held from the first blob to
//! the tag so that a concurrent prune cannot remove what is being written.
//!
//! The library never prints. Progress is reported as [`Event`]s through a
//! callback; byte counts come from the registry client's own progress sink.
//!
//! [`local`] answers questions about stored images (which platforms are
//! present, how large an image is, which image manifest serves a platform)
//! for commands such as `images`, `inspect` and `save`.

#![warn(missing_docs)]

pub mod error;
pub mod event;
pub mod local;
pub mod pull;
pub mod push;
pub mod select;

pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventSink};
pub use pull::{fetch_image, pull, pull_platform, resolve_platform, PlatformSelection, Pulled, PulledImage};
pub use push::{push, push_content, Content, PushOptions, Pushed};

/// How many blobs move at once.
pub const PARALLEL: usize = 4;

#[cfg(test)]
mod tests {
    /// Transfers sit on the model, the registry and the store; never on
    /// the builder or the CLI (as ggcr's depcheck_test.go guards).
    #[test]
    fn depends_only_on_model_registry_and_store() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
        let ours: Vec<&str> =
            deps.lines().filter(|l| l.starts_with("polyarch-")).map(|l| l.split(['.', ' ']).next().unwrap()).collect();
        assert_eq!(ours, ["polyarch-oci", "polyarch-registry", "polyarch-store"]);
    }
}
