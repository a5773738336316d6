//! Typed progress events of a solve, sent to a sink the caller renders.

use std::time::Duration;

use polyarch_oci::Digest;

/// The vertex an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its progress name (of its first add).
    pub name: String,
    /// Every platform it was added for.
    pub platforms: Vec<String>,
    /// Its inputs' digests.
    pub inputs: Vec<Digest>,
}

/// An output stream of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What happened to a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Its execution started.
    Started {
        /// The vertex.
        vertex: VertexInfo,
        /// Its cache key.
        key: Digest,
    },
    /// Its result came from the cache; it was not executed.
    Cached {
        /// The vertex.
        vertex: VertexInfo,
        /// Its cache key.
        key: Digest,
    },
    /// Its execution finished.
    Completed {
        /// The vertex.
        vertex: VertexInfo,
        /// How long it ran.
        elapsed: Duration,
    },
    /// It failed (its key, cache or execution).
    Failed {
        /// The vertex.
        vertex: VertexInfo,
        /// The error, as text.
        message: String,
    },
    /// Output of its process, sent by the worker ([`crate::Job::log`]).
    Log {
        /// The vertex.
        vertex: VertexInfo,
        /// Which stream.
        stream: Stream,
        /// The bytes, as written.
        data: Vec<u8>,
    },
    /// It was stopped or never started because the solve was cancelled or
    /// an input failed.
    Cancelled {
        /// The vertex.
        vertex: VertexInfo,
    },
}

impl Event {
    /// The vertex of the event.
    pub fn vertex(&self) -> &VertexInfo {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex, .. }
            | Event::Completed { vertex, .. }
            | Event::Failed { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Cancelled { vertex } => vertex,
        }
    }
}

/// Receives events; called from the solver's tasks, so it must be quick.
pub trait ProgressSink: Send + Sync {
    /// One event.
    fn event(&self, event: Event);
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _: Event) {}
}

impl<F: Fn(Event) + Send + Sync> ProgressSink for F {
    fn event(&self, event: Event) {
        self(event)
    }
}
