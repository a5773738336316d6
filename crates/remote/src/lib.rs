//! `polyarch-remote`: builds on other machines.
//!
//! A node is any machine where `polyarch worker --stdio` can be started:
//! through the system `ssh` client, or in a container on a Docker engine
//! ([`docker_container`], through the engine's exec API). The two ends speak the framed
//! protocol of [`wire`] over the worker's stdin and stdout:
//!
//! 1. `Hello` both ways: versions, and the node's platforms (its probe).
//! 2. `Context`: the metadata of the context files the build reads
//!    ([`context::needed`]); the worker answers `Need` with the contents it
//!    does not hold yet, which are then sent once each, by digest.
//! 3. `Build`: the worker builds the platforms given to it into its own
//!    store, streaming progress `Event`s (and relaying its RUN steps'
//!    `--ssh` agent connections to the client, [`agent`]), and answers
//!    `Built` or `Failed`.
//! 4. `Fetch`: blobs the client's store lacks come back, verified.
//! 5. `Push`: the worker pushes its images by digest; the client pushes the
//!    index once every child exists.
//!
//! [`schedule`] decides which node builds which platform; [`build`] runs a
//! whole build on a builder's nodes (placement, fallback to emulation here,
//! failure classification, fetching results) and [`push`] pushes what they
//! built, children before the index. [`builder`] is the builder model: the
//! stored builders, node endpoints, declared platforms and status. The
//! library never prints; the CLI renders [`event`]s.

pub mod agent;
pub mod build;
pub mod builder;
pub mod context;
pub mod docker_container;
pub mod error;
pub mod event;
pub mod push;
pub mod schedule;
pub mod session;
pub mod wire;
pub mod worker;
pub mod worker_image;

pub use build::{NodeBuild, Outcome};
pub use error::{Error, ErrorKind, NodeId, Result};
