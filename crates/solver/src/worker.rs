//! What the caller implements: a [`Worker`] that executes vertices, and a
//! [`ContentChecksum`] hook that digests the files a vertex reads (as
//! BuildKit's `ComputeDigestFunc`), so keys follow content.

use std::future::Future;
use std::sync::Arc;

use polyarch_oci::{Digest, Platform};

use crate::cancel::CancelToken;
use crate::error::BoxError;
use crate::graph::Vertex;
use crate::op::{Op, Selector};
use crate::progress::{Event, ProgressSink, Stream, VertexInfo};

/// Which concurrency limit a vertex's execution counts against.
///
/// The solver keeps one limit per class instead of one for all work, so
/// that a vertex that mostly waits does not hold a slot a CPU-bound one
/// could use: a pull or download waits on the network ([`Class::Io`]); an
/// exec under QEMU user emulation is slow and memory-heavy and would fill
/// every CPU slot for minutes ([`Class::Emulated`], with its own limit,
/// by default the CPU limit); native execs and file ops are [`Class::Cpu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Native execution and file work.
    Cpu,
    /// Execution under emulation.
    Emulated,
    /// Network or disk waits (sources).
    Io,
}

impl Class {
    /// The default class: sources are I/O, execs for a platform whose
    /// architecture is not `native`'s are emulated, everything else CPU.
    pub fn of(vertex: &Vertex, native: &Platform) -> Class {
        match vertex.op() {
            Op::Source(_) => Class::Io,
            Op::Exec(_) => Class::of_exec(vertex.platform(), native),
            _ => Class::Cpu,
        }
    }

    /// The class of executing a program of `platform` on a machine of
    /// `native`: [`Class::Cpu`] for the same OS and architecture, else
    /// [`Class::Emulated`].
    pub fn of_exec(platform: &Platform, native: &Platform) -> Class {
        let (p, n) = (platform.normalize(), native.normalize());
        if p.architecture == n.architecture && p.os == n.os {
            Class::Cpu
        } else {
            Class::Emulated
        }
    }

    /// The default limit of the class for `jobs` CPU slots: `jobs` for
    /// CPU and for emulated work, twice as many (at least 4) for I/O.
    pub fn default_limit(self, jobs: usize) -> usize {
        let jobs = jobs.max(1);
        match self {
            Class::Cpu | Class::Emulated => jobs,
            Class::Io => (2 * jobs).max(4),
        }
    }
}

/// One execution asked of a worker.
#[derive(Clone)]
pub struct Job<R> {
    /// The vertex.
    pub vertex: Arc<Vertex>,
    /// Its inputs' results, in the vertex's input order.
    pub inputs: Vec<R>,
    /// Its cache key.
    pub key: Digest,
    /// Every platform it was asked for (a merged vertex serves several).
    pub platforms: Vec<Platform>,
    /// Cancelled when the solve stops; the worker should then end its
    /// process and clean up promptly (its future is also dropped).
    pub cancel: CancelToken,
    pub(crate) info: VertexInfo,
    pub(crate) progress: Arc<dyn ProgressSink>,
}

impl<R> Job<R> {
    /// Sends output of the vertex's process to the solve's progress sink.
    pub fn log(&self, stream: Stream, data: &[u8]) {
        self.progress.event(Event::Log { vertex: self.info.clone(), stream, data: data.to_vec() });
    }
}

impl<R: std::fmt::Debug> std::fmt::Debug for Job<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("vertex", &self.vertex)
            .field("inputs", &self.inputs)
            .field("key", &self.key)
            .field("platforms", &self.platforms)
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

/// Executes vertices. Results are cheap to clone (a handle to a snapshot
/// or layer, not the files).
pub trait Worker: Send + Sync + 'static {
    /// What a vertex produces.
    type Output: Clone + Send + Sync + 'static;
    /// How execution fails.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The limit `vertex` counts against; by default [`Class::of`] with
    /// this machine's platform. A worker with remote or native nodes for
    /// other platforms says so here.
    fn class(&self, vertex: &Vertex) -> Class {
        Class::of(vertex, &Platform::host())
    }

    /// Executes `job.vertex` on its inputs' results.
    fn exec(&self, job: Job<Self::Output>) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// Digests the content a vertex reads, for its cache key. Calls may block
/// (they run on tokio's blocking pool). `Ok(None)` means "not known": the
/// key then uses the input's key alone, and a context or a download
/// without a checksum cannot be keyed.
pub trait ContentChecksum<R>: Send + Sync {
    /// The digest of what a source brings in: a context's files after its
    /// include and exclude patterns, a download's body.
    fn source(&self, vertex: &Vertex) -> Result<Option<Digest>, BoxError>;

    /// The digest of the files `selector` selects in `result`, the result
    /// of input `input` of `vertex`.
    fn selection(
        &self,
        vertex: &Vertex,
        input: usize,
        result: &R,
        selector: &Selector,
    ) -> Result<Option<Digest>, BoxError>;
}

/// A hook that knows no checksum.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChecksum;

impl<R> ContentChecksum<R> for NoChecksum {
    fn source(&self, _: &Vertex) -> Result<Option<Digest>, BoxError> {
        Ok(None)
    }

    fn selection(&self, _: &Vertex, _: usize, _: &R, _: &Selector) -> Result<Option<Digest>, BoxError> {
        Ok(None)
    }
}
