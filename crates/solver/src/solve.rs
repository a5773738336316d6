//! The scheduler: solves every target of a graph at once, as BuildKit's
//! scheduler does for a build of several platforms. Vertices are merged by
//! digest when they are added ([`crate::Graph::add`]), so work two
//! platforms share is one vertex and runs once. A vertex starts as soon as
//! its inputs are done: its key is computed (with the caller's content
//! checksums), the cache store is asked, and only on a miss it waits for a
//! slot of its [`Class`] and goes to the worker. The first failure cancels
//! the rest of the solve ([`FailurePolicy::CancelAll`], BuildKit's
//! behaviour) or only what depends on it ([`FailurePolicy::ContinueIndependent`]);
//! cancelling the token stops everything at its next await point.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use polyarch_oci::{Digest, Platform};
use tokio::sync::Semaphore;

use crate::cache::CacheStore;
use crate::cancel::CancelToken;
use crate::dag::{self, Dag, Driver, Flow, Stopped};
use crate::error::{Error, Result};
use crate::graph::{Graph, Vertex, VertexId};
use crate::key::{self, DepKey};
use crate::progress::{Event, NoProgress, ProgressSink, VertexInfo};
use crate::worker::{Class, ContentChecksum, Job, NoChecksum, Worker};

/// What a failed vertex stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Everything: the solve ends with the failure (as BuildKit).
    #[default]
    CancelAll,
    /// Only the vertices that depend on it; independent ones finish (and
    /// are recorded in the cache), then the first failure is returned.
    ContinueIndependent,
}

/// The results of a solve.
#[derive(Debug, Clone)]
pub struct Solution<R> {
    done: Vec<Option<(R, Digest)>>,
    from_cache: Vec<bool>,
    targets: Vec<(Platform, VertexId)>,
    executed: usize,
    cached: usize,
}

impl<R> Solution<R> {
    /// The result of vertex `id`, if it was needed.
    pub fn result(&self, id: VertexId) -> Option<&R> {
        self.done.get(id.index()).and_then(Option::as_ref).map(|(r, _)| r)
    }

    /// The cache key of vertex `id`, if it was needed.
    pub fn key(&self, id: VertexId) -> Option<&Digest> {
        self.done.get(id.index()).and_then(Option::as_ref).map(|(_, k)| k)
    }

    /// Whether vertex `id`'s result came from the cache (or from another
    /// vertex of the same key) instead of its own execution.
    pub fn was_cached(&self, id: VertexId) -> bool {
        self.from_cache.get(id.index()).copied().unwrap_or(false)
    }

    /// The result of each target, in the order they were asked for.
    pub fn targets(&self) -> Vec<(&Platform, &R)> {
        self.targets.iter().filter_map(|(p, id)| self.result(*id).map(|r| (p, r))).collect()
    }

    /// How many vertices the worker executed.
    pub fn executed(&self) -> usize {
        self.executed
    }

    /// How many vertices came from the cache.
    pub fn cached(&self) -> usize {
        self.cached
    }
}

/// Default CPU limit: one per core.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Solves graphs with a worker, a cache store and limits per [`Class`].
pub struct Solver<W: Worker> {
    worker: Arc<W>,
    cache: Arc<dyn CacheStore<W::Output>>,
    checksum: Arc<dyn ContentChecksum<W::Output>>,
    progress: Arc<dyn ProgressSink>,
    limits: HashMap<Class, usize>,
    failure: FailurePolicy,
    cancel: CancelToken,
    salt: String,
}

impl<W: Worker> Solver<W> {
    /// A solver with no checksum hook, no progress, one CPU slot and one
    /// emulated slot per core, and twice as many I/O slots (at least 4).
    pub fn new(worker: Arc<W>, cache: Arc<dyn CacheStore<W::Output>>) -> Solver<W> {
        let jobs = default_jobs();
        let limits = [Class::Cpu, Class::Emulated, Class::Io].map(|c| (c, c.default_limit(jobs))).into();
        Solver {
            worker,
            cache,
            checksum: Arc::new(NoChecksum),
            progress: Arc::new(NoProgress),
            limits,
            failure: FailurePolicy::default(),
            cancel: CancelToken::new(),
            salt: String::new(),
        }
    }

    /// Sets how many CPU-bound executions run at once (at least one).
    pub fn with_jobs(mut self, jobs: usize) -> Solver<W> {
        self.limits.insert(Class::Cpu, jobs.max(1));
        self
    }

    /// Sets how many emulated executions run at once (at least one).
    pub fn with_emulated_jobs(mut self, jobs: usize) -> Solver<W> {
        self.limits.insert(Class::Emulated, jobs.max(1));
        self
    }

    /// Sets how many I/O-bound executions (sources) run at once (at least one).
    pub fn with_io_jobs(mut self, jobs: usize) -> Solver<W> {
        self.limits.insert(Class::Io, jobs.max(1));
        self
    }

    /// Sets the content checksum hook.
    pub fn with_checksum(mut self, checksum: Arc<dyn ContentChecksum<W::Output>>) -> Solver<W> {
        self.checksum = checksum;
        self
    }

    /// Sets where progress events go.
    pub fn with_progress(mut self, progress: Arc<dyn ProgressSink>) -> Solver<W> {
        self.progress = progress;
        self
    }

    /// Sets what a failure stops.
    pub fn with_failure_policy(mut self, failure: FailurePolicy) -> Solver<W> {
        self.failure = failure;
        self
    }

    /// Mixes `salt` into every cache key: what the worker's results depend
    /// on beyond the graph (a layer compression, a timestamp policy), so
    /// results made another way are never reused. Empty by default.
    pub fn with_key_salt(mut self, salt: impl Into<String>) -> Solver<W> {
        self.salt = salt.into();
        self
    }

    /// Sets the token that cancels solves.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Solver<W> {
        self.cancel = cancel;
        self
    }

    /// Solves every target of `graph` (every vertex when it has none).
    /// Must run inside a tokio runtime; a multi-thread one runs vertices in
    /// parallel.
    pub async fn solve(&self, graph: &Graph) -> Result<Solution<W::Output>> {
        let dag = Dag::new(graph.vertices().map(|v| v.inputs().iter().map(|x| x.index()).collect()).collect());
        let needed = match graph.targets() {
            [] => vec![true; graph.len()],
            targets => dag.needed(targets.iter().map(|t| t.vertex.index())),
        };
        let mut run = Run::new(self, graph, needed.clone());
        let outcome = dag::run(&dag, Some(&needed), &mut run, &self.cancel).await;
        // Nothing outlives the solve: the scheduler has stopped and waited
        // for every task; what is left of the work ends with the token.
        run.token.cancel();
        run.report_unfinished();
        match outcome {
            Ok(_) => {}
            Err(Stopped::Cancelled) => return Err(Error::Cancelled),
            Err(Stopped::Failed(e)) => return Err(e),
        }
        if let Some(e) = run.first_error.take() {
            return Err(e);
        }
        let targets = graph.targets().iter().map(|t| (t.platform.clone(), t.vertex)).collect();
        Ok(Solution { done: run.done, from_cache: run.from_cache, targets, executed: run.executed, cached: run.cached })
    }
}

/// What a vertex's task returns.
struct Outcome<R> {
    result: R,
    key: Digest,
    cached: bool,
}

/// The state of one solve: what [`dag::run`] schedules, vertex by vertex.
struct Run<'a, W: Worker> {
    solver: &'a Solver<W>,
    graph: &'a Graph,
    needed: Vec<bool>,
    /// Failed, skipped or reported as cancelled: never to be reported again.
    ended: Vec<bool>,
    done: Vec<Option<(W::Output, Digest)>>,
    from_cache: Vec<bool>,
    slots: HashMap<Class, Arc<Semaphore>>,
    token: CancelToken,
    in_flight: InFlight<W::Output>,
    first_error: Option<Error>,
    executed: usize,
    cached: usize,
}

type Task<R> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome<R>>> + Send>>;

impl<'a, W: Worker> Run<'a, W> {
    fn new(solver: &'a Solver<W>, graph: &'a Graph, needed: Vec<bool>) -> Run<'a, W> {
        let n = graph.len();
        let slots = solver.limits.iter().map(|(c, n)| (*c, Arc::new(Semaphore::new(*n)))).collect();
        Run {
            solver,
            graph,
            needed,
            ended: vec![false; n],
            done: (0..n).map(|_| None).collect(),
            from_cache: vec![false; n],
            slots,
            token: solver.cancel.child(),
            in_flight: InFlight::default(),
            first_error: None,
            executed: 0,
            cached: 0,
        }
    }

    fn info(&self, v: &Vertex) -> VertexInfo {
        VertexInfo {
            digest: v.digest().clone(),
            name: v.name().to_string(),
            platforms: self.graph.platforms(v.id()).iter().map(key::platform_string).collect(),
            inputs: v.input_digests().to_vec(),
        }
    }

    fn names(&self, i: usize) -> (String, String) {
        match self.graph.get(VertexId(i)) {
            Ok(v) => (v.name().to_string(), self.graph.platform_list(v.id())),
            Err(_) => (format!("vertex {i}"), String::new()),
        }
    }

    /// Reports every needed vertex that neither finished nor ended.
    fn report_unfinished(&mut self) {
        for v in self.graph.vertices() {
            let k = v.id().index();
            if self.needed[k] && self.done[k].is_none() && !std::mem::replace(&mut self.ended[k], true) {
                self.solver.progress.event(Event::Cancelled { vertex: self.info(v) });
            }
        }
    }

    fn task(&self, vertex: Arc<Vertex>, inputs: Vec<(W::Output, Digest)>) -> Task<W::Output> {
        let class = self.solver.worker.class(&vertex);
        let slots = self.slots.get(&class).cloned().unwrap_or_else(|| Arc::new(Semaphore::new(1)));
        let step = Step {
            info: self.info(&vertex),
            platforms: self.graph.platforms(vertex.id()).to_vec(),
            platform_list: self.graph.platform_list(vertex.id()),
            ignore_cache: self.graph.ignores_cache(vertex.id()),
            vertex,
            worker: self.solver.worker.clone(),
            cache: self.solver.cache.clone(),
            checksum: self.solver.checksum.clone(),
            progress: self.solver.progress.clone(),
            token: self.token.clone(),
            in_flight: self.in_flight.clone(),
            salt: self.solver.salt.clone(),
        };
        Box::pin(step.run(inputs, slots))
    }
}

impl<W: Worker> Driver for Run<'_, W> {
    type Output = Outcome<W::Output>;
    type Error = Error;
    type Task = Task<W::Output>;

    fn start(&mut self, k: usize) -> Task<W::Output> {
        let vertex = match self.graph.get(VertexId(k)) {
            Ok(v) => v.clone(),
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let inputs: Option<Vec<(W::Output, Digest)>> =
            vertex.inputs().iter().map(|x| self.done[x.index()].clone()).collect();
        match inputs {
            Some(inputs) => self.task(vertex, inputs),
            None => {
                let (vertex, platform) = self.names(k);
                let reason = "started before its inputs were done".to_string();
                Box::pin(std::future::ready(Err(Error::Task { vertex, platform, reason })))
            }
        }
    }

    fn done(&mut self, i: usize, o: Outcome<W::Output>) -> Flow<Error> {
        if o.cached {
            self.cached += 1;
        } else {
            self.executed += 1;
        }
        if let (Some(slot), Some(c)) = (self.done.get_mut(i), self.from_cache.get_mut(i)) {
            *slot = Some((o.result, o.key));
            *c = o.cached;
        }
        Flow::Continue
    }

    /// Records the failure of vertex `i`; stops the solve under
    /// [`FailurePolicy::CancelAll`], else skips what depends on it.
    fn failed(&mut self, i: usize, e: std::result::Result<Error, tokio::task::JoinError>) -> Flow<Error> {
        let e = e.unwrap_or_else(|j| {
            let (vertex, platform) = self.names(i);
            Error::Task { vertex, platform, reason: j.to_string() }
        });
        if matches!(e, Error::Cancelled) {
            return Flow::Stop(e);
        }
        let Ok(v) = self.graph.get(VertexId(i)) else { return Flow::Stop(e) };
        if !std::mem::replace(&mut self.ended[i], true) {
            self.solver.progress.event(Event::Failed { vertex: self.info(v), message: e.to_string() });
        }
        if self.solver.failure == FailurePolicy::CancelAll {
            return Flow::Stop(e);
        }
        self.first_error.get_or_insert(e);
        Flow::SkipDependents
    }

    fn skipped(&mut self, k: usize) {
        if let Ok(v) = self.graph.get(VertexId(k)) {
            if !std::mem::replace(&mut self.ended[k], true) {
                self.solver.progress.event(Event::Cancelled { vertex: self.info(v) });
            }
        }
    }

    fn stopping(&mut self) {
        self.token.cancel();
    }
}

/// Results of one solve being produced, by cache key.
type InFlight<R> = Arc<std::sync::Mutex<HashMap<Digest, Arc<tokio::sync::OnceCell<R>>>>>;

/// Everything one vertex's task needs, owned.
struct Step<W: Worker> {
    vertex: Arc<Vertex>,
    info: VertexInfo,
    platforms: Vec<Platform>,
    platform_list: String,
    ignore_cache: bool,
    worker: Arc<W>,
    cache: Arc<dyn CacheStore<W::Output>>,
    checksum: Arc<dyn ContentChecksum<W::Output>>,
    progress: Arc<dyn ProgressSink>,
    token: CancelToken,
    in_flight: InFlight<W::Output>,
    salt: String,
}

impl<W: Worker> Step<W> {
    async fn run(self, inputs: Vec<(W::Output, Digest)>, slots: Arc<Semaphore>) -> Result<Outcome<W::Output>> {
        let key = self.key(&inputs).await?;
        // Vertices of other digests may have the same key (a COPY of equal
        // files from other directories): one of them produces the result,
        // the others wait for it, as BuildKit merges edges by cache key.
        let cell = self.in_flight.lock().ok().map(|mut m| m.entry(key.clone()).or_default().clone());
        let Some(cell) = cell else { return self.produce(key, inputs, slots).await };
        let (tried, produced) = (AtomicBool::new(false), AtomicBool::new(false));
        let result = cell
            .get_or_try_init(|| async {
                tried.store(true, Ordering::SeqCst);
                let o = self.produce(key.clone(), inputs, slots).await?;
                produced.store(!o.cached, Ordering::SeqCst);
                Ok::<_, Error>(o.result)
            })
            .await?
            .clone();
        if !tried.load(Ordering::SeqCst) {
            self.progress.event(Event::Cached { vertex: self.info.clone(), key: key.clone() });
        }
        Ok(Outcome { result, key, cached: !produced.load(Ordering::SeqCst) })
    }

    /// Looks the key up and, on a miss, executes the vertex and records it.
    async fn produce(
        &self,
        key: Digest,
        inputs: Vec<(W::Output, Digest)>,
        slots: Arc<Semaphore>,
    ) -> Result<Outcome<W::Output>> {
        if !self.ignore_cache {
            let (cache, k) = (self.cache.clone(), key.clone());
            let found = blocking(move || cache.lookup(&k)).await.map_err(|e| self.cache_error(e))?;
            if let Some(result) = found {
                self.progress.event(Event::Cached { vertex: self.info.clone(), key: key.clone() });
                return Ok(Outcome { result, key, cached: true });
            }
        }
        let _slot = tokio::select! {
            s = slots.acquire_owned() => s.map_err(|_| Error::Cancelled)?,
            _ = self.token.cancelled() => return Err(Error::Cancelled),
        };
        self.progress.event(Event::Started { vertex: self.info.clone(), key: key.clone() });
        let job = Job {
            vertex: self.vertex.clone(),
            inputs: inputs.into_iter().map(|(r, _)| r).collect(),
            key: key.clone(),
            platforms: self.platforms.clone(),
            cancel: self.token.clone(),
            info: self.info.clone(),
            progress: self.progress.clone(),
        };
        let started = Instant::now();
        let result = tokio::select! {
            r = self.worker.exec(job) => r.map_err(|e| Error::Exec {
                vertex: self.vertex.name().to_string(),
                digest: self.vertex.digest().clone(),
                platform: self.platform_list.clone(),
                source: Box::new(e),
            })?,
            _ = self.token.cancelled() => return Err(Error::Cancelled),
        };
        let (cache, k, r) = (self.cache.clone(), key.clone(), result.clone());
        blocking(move || cache.record(&k, &r)).await.map_err(|e| self.cache_error(e))?;
        self.progress.event(Event::Completed { vertex: self.info.clone(), elapsed: started.elapsed() });
        Ok(Outcome { result, key, cached: false })
    }

    fn cache_error(&self, source: crate::BoxError) -> Error {
        Error::Cache {
            vertex: self.vertex.name().to_string(),
            digest: self.vertex.digest().clone(),
            platform: self.platform_list.clone(),
            source,
        }
    }

    /// The vertex's cache key, with the checksums of what it reads.
    async fn key(&self, inputs: &[(W::Output, Digest)]) -> Result<Digest> {
        let (checksum, vertex, list) = (self.checksum.clone(), self.vertex.clone(), self.platform_list.clone());
        let salt = self.salt.clone();
        let inputs = inputs.to_vec();
        blocking(move || {
            let fail = |source| Error::Checksum {
                vertex: vertex.name().to_string(),
                digest: vertex.digest().clone(),
                platform: list.clone(),
                source,
            };
            let uses = vertex.op().input_uses();
            let mut deps = Vec::with_capacity(inputs.len());
            for (i, (result, key)) in inputs.iter().enumerate() {
                let mut sums = Vec::new();
                for u in uses.iter().filter(|u| u.input == i && u.content_based) {
                    let sel = u.selector.clone().unwrap_or_default();
                    sums.push(checksum.selection(&vertex, i, result, &sel).map_err(fail)?);
                }
                deps.push(DepKey::new(key.clone()).with_checksum(combine(sums)?));
            }
            let content = checksum.source(&vertex).map_err(fail)?;
            let key = vertex.cache_key(&list, &deps, content.as_ref())?;
            key::salted(key, &salt)
        })
        .await
        .map_err(|e| match e {
            Error::Task { reason, .. } => {
                Error::Task { vertex: self.vertex.name().to_string(), platform: self.platform_list.clone(), reason }
            }
            e => e,
        })
    }
}

/// One checksum for the content-based uses of an input: none when any is
/// unknown, the digest of the list when there are several.
fn combine(sums: Vec<Option<Digest>>) -> Result<Option<Digest>> {
    let known: Option<Vec<Digest>> = sums.into_iter().collect();
    match known {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(mut v) if v.len() == 1 => Ok(v.pop()),
        Some(v) => key::digest_of(&v, "checksums").map(Some),
    }
}

/// Runs `f` on tokio's blocking pool (a cache store or checksum hook may
/// read files).
async fn blocking<T: Send + 'static, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    E: From<Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(E::from(Error::Task { vertex: String::new(), platform: String::new(), reason: e.to_string() })),
    }
}

#[cfg(test)]
mod tests;
