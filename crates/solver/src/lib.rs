//! The build solver: a graph of typed ops for every platform of a build,
//! versioned canonical cache keys, and one scheduler that runs the whole
//! graph. It knows no Dockerfile; a frontend turns one into a [`Graph`].
//!
//! - [`op`]: the ops ([`Op::Exec`], file ops, [`Op::Merge`],
//!   [`Op::Source`]), as BuildKit's LLB.
//! - [`graph`]: vertices (op, inputs, platform) with an identity digest;
//!   equal vertices of several platforms are one vertex.
//! - [`key`]: cache keys from the normalised op, a per-op version tag, the
//!   platform where it matters, input keys and content checksums.
//! - [`solve`]: the scheduler, with limits per kind of work, failure
//!   policies and cancellation; execution goes through a [`Worker`],
//!   results through a [`CacheStore`], events to a [`ProgressSink`].

pub mod cache;
pub mod cancel;
pub mod dag;
pub mod error;
pub mod graph;
pub mod key;
pub mod op;
pub mod progress;
pub mod solve;
pub mod worker;

pub use cache::{CacheStore, MemoryCache};
pub use cancel::CancelToken;
pub use dag::Dag;
pub use error::{BoxError, Error, ErrorKind, Result};
pub use graph::{Graph, Target, Vertex, VertexId, VertexSpec};
pub use key::DepKey;
pub use op::Op;
pub use progress::{Event, NoProgress, ProgressSink, Stream, VertexInfo};
pub use solve::{FailurePolicy, Solution, Solver};
pub use worker::{Class, ContentChecksum, Job, NoChecksum, Worker};
