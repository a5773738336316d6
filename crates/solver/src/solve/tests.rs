use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polyarch_oci::{Digest, Platform};

use super::*;
use crate::cache::MemoryCache;
use crate::graph::VertexSpec;
use crate::op::*;
use crate::ErrorKind;

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap().normalize()
}

const TARGETS: [&str; 6] = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/386"];

#[derive(Debug, thiserror::Error)]
#[error("process exited with 2: {0}")]
struct Boom(String);

/// Counts executions per vertex digest and concurrency per class.
#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<Digest, usize>>,
    order: Mutex<Vec<String>>,
    running: Mutex<HashMap<Class, usize>>,
    max: Mutex<HashMap<Class, usize>>,
    max_total: AtomicUsize,
    delay: Duration,
    /// Vertices whose name contains this fail.
    fail: Option<&'static str>,
    /// Vertices whose name contains this sleep this long instead.
    slow: Option<(&'static str, Duration)>,
    /// Set when a job's future was dropped before it finished.
    dropped: AtomicBool,
    panic: Option<&'static str>,
}

impl Recorder {
    fn with_delay(delay: Duration) -> Recorder {
        Recorder { delay, ..Recorder::default() }
    }

    fn runs_of(&self, d: &Digest) -> usize {
        self.runs.lock().unwrap().get(d).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }

    fn max(&self, c: Class) -> usize {
        self.max.lock().unwrap().get(&c).copied().unwrap_or(0)
    }
}

/// Sets `dropped` unless disarmed: a job's future dropped mid-way.
struct DropGuard<'a>(&'a AtomicBool, bool);

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl Worker for Recorder {
    type Output = String;
    type Error = Boom;

    fn class(&self, vertex: &Vertex) -> Class {
        Class::of(vertex, &p("linux/amd64"))
    }

    async fn exec(&self, job: Job<String>) -> Result<String, Boom> {
        let v = &job.vertex;
        let class = self.class(v);
        let mut guard = DropGuard(&self.dropped, true);
        {
            let mut running = self.running.lock().unwrap();
            let n = running.entry(class).or_default();
            *n += 1;
            let now = *n;
            let mut max = self.max.lock().unwrap();
            let m = max.entry(class).or_default();
            *m = (*m).max(now);
            self.max_total
                .fetch_max(running.iter().filter(|(c, _)| **c != Class::Io).map(|(_, n)| *n).sum(), Ordering::SeqCst);
        }
        let delay = match self.slow {
            Some((name, d)) if v.name().contains(name) => d,
            _ => self.delay,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        *self.running.lock().unwrap().entry(class).or_default() -= 1;
        guard.1 = false;
        if self.panic.is_some_and(|n| v.name().contains(n)) {
            panic!("worker bug");
        }
        if self.fail.is_some_and(|n| v.name().contains(n)) {
            return Err(Boom(v.name().to_string()));
        }
        job.log(crate::Stream::Stdout, v.name().as_bytes());
        *self.runs.lock().unwrap().entry(v.digest().clone()).or_default() += 1;
        self.order.lock().unwrap().push(v.name().to_string());
        Ok(format!("{}({})", v.name(), job.inputs.join(",")))
    }
}

fn image(g: &mut Graph, name: &str, platform: &str) -> VertexId {
    let op = Op::Source(Source::Image(ImageSource {
        reference: name.into(),
        resolved: Some(Digest::sha256(format!("{name}@{platform}").as_bytes())),
    }));
    g.add(VertexSpec::new(op, p(platform)).with_name(format!("[{platform}] FROM {name}"))).unwrap()
}

fn exec_on(g: &mut Graph, root: VertexId, platform: &str, args: &[&str], name: &str) -> VertexId {
    let op = Op::Exec(Exec {
        args: args.iter().map(|s| s.to_string()).collect(),
        mounts: vec![Mount {
            target: "/".into(),
            kind: MountKind::Input { input: 0, selector: String::new(), readonly: false },
        }],
        ..Exec::default()
    });
    g.add(VertexSpec::new(op, p(platform)).with_inputs([root]).with_name(name)).unwrap()
}

fn copy_onto(g: &mut Graph, from: VertexId, onto: VertexId, platform: &str, name: &str) -> VertexId {
    let op = Op::Copy(Copy {
        source: 0,
        dest: Some(1),
        paths: vec!["/out".into()],
        dest_path: "/out".into(),
        ..Copy::default()
    });
    g.add(VertexSpec::new(op, p(platform)).with_inputs([from, onto]).with_name(name)).unwrap()
}

/// A source of content that checksums to a value the test sets.
#[derive(Default)]
struct Sums(Mutex<String>);

impl ContentChecksum<String> for Sums {
    fn source(&self, v: &Vertex) -> Result<Option<Digest>, crate::BoxError> {
        let c = self.0.lock().map_err(|_| "poisoned")?.clone();
        Ok(matches!(v.op(), Op::Source(Source::Context(_))).then(|| Digest::sha256(c.as_bytes())))
    }

    fn selection(&self, _: &Vertex, _: usize, r: &String, s: &Selector) -> Result<Option<Digest>, crate::BoxError> {
        Ok(Some(Digest::sha256(format!("{r}{:?}", s.paths).as_bytes())))
    }
}

/// `FROM --platform=$BUILDPLATFORM golang AS build; COPY . .; RUN go mod
/// download; RUN GOARCH=$TARGETARCH go build` then `FROM alpine; COPY
/// --from=build /out /out; RUN /out --version` for six targets, all in
/// one graph. Returns the graph and the shared vertices.
fn cross_graph() -> (Graph, Vec<VertexId>) {
    let mut g = Graph::new();
    let mut shared = Vec::new();
    for t in TARGETS {
        let build = "linux/amd64";
        let golang = image(&mut g, "golang", build);
        let ctx = Op::Source(Source::Context(ContextSource { name: "context".into(), ..ContextSource::default() }));
        let ctx = g.add(VertexSpec::new(ctx, p(t)).with_name(format!("[{t} internal] load build context"))).unwrap();
        let src = copy_onto(&mut g, ctx, golang, t, &format!("[{t} build 2/4] COPY . ."));
        let deps =
            exec_on(&mut g, src, build, &["go", "mod", "download"], &format!("[{t} build 3/4] RUN go mod download"));
        let arch = p(t).architecture;
        let bin = exec_on(
            &mut g,
            deps,
            build,
            &["go", "build", &format!("GOARCH={arch}")],
            &format!("[{t} build 4/4] RUN go build"),
        );
        let base = image(&mut g, "alpine", t);
        let app = copy_onto(&mut g, bin, base, t, &format!("[{t} stage-1 2/3] COPY --from=build /out /out"));
        let checked = exec_on(&mut g, app, t, &["/out", "--version"], &format!("[{t} stage-1 3/3] RUN /out --version"));
        g.target(p(t), checked).unwrap();
        shared = vec![golang, ctx, src, deps];
    }
    (g, shared)
}

fn solver(rec: &Arc<Recorder>, cache: &Arc<MemoryCache<String>>) -> Solver<Recorder> {
    Solver::new(rec.clone(), cache.clone()).with_checksum(Arc::new(Sums::default())).with_jobs(3).with_emulated_jobs(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_platform_cross_build_runs_shared_vertices_once() {
    let (g, shared) = cross_graph();
    assert_eq!(g.len(), 4 + 6 * 4, "4 shared vertices and 4 per target");
    assert_eq!(g.platforms(shared[1]).len(), 6, "the context is read for every target");
    assert_eq!(g.names(shared[3]).len(), 6);
    assert_eq!(g.platforms(shared[3]), &[p("linux/amd64")], "the shared RUN runs on the build platform");
    let rec = Arc::new(Recorder::with_delay(Duration::from_millis(5)));
    let cache = Arc::new(MemoryCache::new());
    let sol = solver(&rec, &cache).solve(&g).await.unwrap();
    for v in g.vertices() {
        assert_eq!(rec.runs_of(v.digest()), 1, "{} ran once", v.name());
    }
    assert_eq!((sol.executed(), sol.cached(), rec.total()), (28, 0, 28));
    let results = sol.targets();
    assert_eq!(results.len(), 6);
    for ((platform, r), t) in results.iter().zip(TARGETS) {
        assert_eq!(platform.format(), p(t).format());
        assert!(r.starts_with(&format!("[{t} stage-1 3/3]")), "{r}");
        assert!(r.contains(&format!("GOARCH={}", p(t).architecture)) || r.contains("go build"), "{r}");
    }
    assert!(rec.max(Class::Cpu) <= 3 && rec.max(Class::Emulated) <= 2);
}

fn independent(g: &mut Graph, n: usize, platform: &str, tag: &str) -> Vec<VertexId> {
    let root = image(g, "busybox", platform);
    (0..n).map(|i| exec_on(g, root, platform, &["work", &i.to_string()], &format!("[{platform}] {tag} {i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_follows_the_limits_of_each_class() {
    for jobs in [1, 3] {
        let mut g = Graph::new();
        independent(&mut g, 8, "linux/amd64", "native");
        let rec = Arc::new(Recorder::with_delay(Duration::from_millis(40)));
        let s = Solver::new(rec.clone(), Arc::new(MemoryCache::new())).with_jobs(jobs);
        s.solve(&g).await.unwrap();
        assert_eq!(rec.max(Class::Cpu), jobs, "with {jobs} jobs");
    }
    // Emulated execs have their own limit and leave the CPU slots free.
    let mut g = Graph::new();
    independent(&mut g, 6, "linux/s390x", "emulated");
    independent(&mut g, 6, "linux/amd64", "native");
    let rec = Arc::new(Recorder::with_delay(Duration::from_millis(40)));
    let s = Solver::new(rec.clone(), Arc::new(MemoryCache::new())).with_jobs(2).with_emulated_jobs(1).with_io_jobs(1);
    let sol = s.solve(&g).await.unwrap();
    assert_eq!(sol.executed(), 14);
    assert_eq!((rec.max(Class::Cpu), rec.max(Class::Emulated), rec.max(Class::Io)), (2, 1, 1));
    assert_eq!(rec.max_total.load(Ordering::SeqCst), 3, "an emulated exec does not take a CPU slot");
}

fn failing_graph() -> (Graph, VertexId, VertexId) {
    let mut g = Graph::new();
    let root = image(&mut g, "busybox", "linux/arm64");
    let bad = exec_on(&mut g, root, "linux/arm64", &["false"], "[linux/arm64 stage-0 2/3] RUN false");
    let after = exec_on(&mut g, bad, "linux/arm64", &["true"], "[linux/arm64 stage-0 3/3] RUN true");
    let other = image(&mut g, "alpine", "linux/amd64");
    let slow = exec_on(&mut g, other, "linux/amd64", &["sleep"], "[linux/amd64 other 2/2] RUN sleep");
    g.target(p("linux/arm64"), after).unwrap();
    g.target(p("linux/amd64"), slow).unwrap();
    (g, after, slow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_cancels_dependents_and_the_rest_and_names_vertex_and_platform() {
    let (g, after, slow) = failing_graph();
    // The failing step takes a while, so the slow one is usually running
    // when it fails.
    let rec = Arc::new(Recorder {
        fail: Some("RUN false"),
        slow: Some(("RUN sleep", Duration::from_secs(30))),
        delay: Duration::from_millis(100),
        ..Recorder::default()
    });
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = events.clone();
    let s = Solver::new(rec.clone(), Arc::new(MemoryCache::new()))
        .with_progress(Arc::new(move |e| ev.lock().unwrap().push(e)));
    let started = Instant::now();
    let err = s.solve(&g).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "the slow vertex was stopped");
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert_eq!(err.vertex(), Some("[linux/arm64 stage-0 2/3] RUN false"));
    assert_eq!(err.platform(), Some("linux/arm64"));
    let msg = err.to_string();
    assert!(msg.contains("RUN false") && msg.contains("linux/arm64") && msg.contains("exited with 2"), "{msg}");
    let after = g.get(after).unwrap();
    assert_eq!(rec.runs_of(after.digest()), 0, "the dependent never ran");
    let slow_v = g.get(slow).unwrap();
    assert_eq!(rec.runs_of(slow_v.digest()), 0, "the slow job did not finish");
    let events = events.lock().unwrap();
    let slow_started =
        events.iter().any(|e| matches!(e, Event::Started { vertex, .. } if vertex.digest == *slow_v.digest()));
    assert!(!slow_started || rec.dropped.load(Ordering::SeqCst), "the slow job started and was stopped");
    let cancelled: Vec<&str> =
        events.iter().filter(|e| matches!(e, Event::Cancelled { .. })).map(|e| e.vertex().name.as_str()).collect();
    assert!(cancelled.contains(&after.name()) && cancelled.contains(&g.get(slow).unwrap().name()), "{cancelled:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Failed { .. })).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuing_after_a_failure_finishes_independent_work_only() {
    let (g, after, slow) = failing_graph();
    let rec = Arc::new(Recorder {
        fail: Some("RUN false"),
        slow: Some(("RUN sleep", Duration::from_millis(200))),
        ..Recorder::default()
    });
    let cache = Arc::new(MemoryCache::new());
    let s = Solver::new(rec.clone(), cache.clone()).with_failure_policy(FailurePolicy::ContinueIndependent);
    let err = s.solve(&g).await.unwrap_err();
    assert_eq!(err.vertex(), Some("[linux/arm64 stage-0 2/3] RUN false"));
    assert_eq!(rec.runs_of(g.get(slow).unwrap().digest()), 1, "the independent vertex finished");
    assert_eq!(rec.runs_of(g.get(after).unwrap().digest()), 0);
    assert_eq!(cache.len(), 3, "two images and the slow RUN are recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_solve_with_the_same_cache_executes_nothing() {
    let (g, _) = cross_graph();
    let rec = Arc::new(Recorder::default());
    let cache = Arc::new(MemoryCache::new());
    let first = solver(&rec, &cache).solve(&g).await.unwrap();
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = events.clone();
    let again =
        solver(&rec, &cache).with_progress(Arc::new(move |e| ev.lock().unwrap().push(e))).solve(&g).await.unwrap();
    assert_eq!((again.executed(), again.cached(), rec.total()), (0, 28, 28));
    for v in g.vertices() {
        assert_eq!(first.key(v.id()), again.key(v.id()), "keys are stable across solves");
        assert_eq!(first.result(v.id()), again.result(v.id()));
    }
    let seen = events.lock().unwrap().clone();
    assert_eq!(seen.len(), 28);
    assert!(seen.iter().all(|e| matches!(e, Event::Cached { .. })));

    // Ignoring the cache for the last step re-runs that step alone.
    let mut g2 = g.clone();
    let last = g.targets()[0].vertex;
    let v = g.get(last).unwrap();
    let spec =
        VertexSpec::new(v.op().clone(), v.platform().clone()).with_inputs(v.inputs().to_vec()).with_ignore_cache(true);
    assert_eq!(g2.add(spec).unwrap(), last, "equal vertices merge");
    let third = solver(&rec, &cache).solve(&g2).await.unwrap();
    assert_eq!((third.executed(), third.cached()), (1, 27));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_context_content_reruns_what_reads_it() {
    let mut g = Graph::new();
    let base = image(&mut g, "busybox", "linux/amd64");
    let ctx = g.add(VertexSpec::new(Op::Source(Source::Context(ContextSource::default())), p("linux/amd64"))).unwrap();
    let cp = copy_onto(&mut g, ctx, base, "linux/amd64", "COPY . .");
    let run = exec_on(&mut g, cp, "linux/amd64", &["make"], "RUN make");
    g.target(p("linux/amd64"), run).unwrap();
    let rec = Arc::new(Recorder::default());
    let cache = Arc::new(MemoryCache::new());
    let sums = Arc::new(Sums::default());
    let s = Solver::new(rec.clone(), cache.clone()).with_checksum(sums.clone());
    *sums.0.lock().unwrap() = "v1".into();
    assert_eq!(s.solve(&g).await.unwrap().executed(), 4);
    assert_eq!(s.solve(&g).await.unwrap().executed(), 0);
    *sums.0.lock().unwrap() = "v2".into();
    let sol = s.solve(&g).await.unwrap();
    assert_eq!((sol.executed(), sol.cached()), (3, 1), "context, copy and run again; the image is cached");

    // Without a checksum hook a context cannot be keyed.
    let err = Solver::new(rec, cache).solve(&g).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unresolved);
    assert!(err.to_string().contains("context"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_the_solve_promptly() {
    let mut g = Graph::new();
    independent(&mut g, 4, "linux/amd64", "hang");
    let rec = Arc::new(Recorder { slow: Some(("hang", Duration::from_secs(60))), ..Recorder::default() });
    let token = CancelToken::new();
    // Cancel shortly after the first job started.
    let t = token.clone();
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = events.clone();
    let sink = move |e: Event| {
        ev.lock().unwrap().push(e.clone());
        if matches!(e, Event::Started { ref vertex, .. } if vertex.name.contains("hang")) {
            let t = t.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                t.cancel();
            });
        }
    };
    let s =
        Solver::new(rec.clone(), Arc::new(MemoryCache::new())).with_cancel(token.clone()).with_progress(Arc::new(sink));
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), s.solve(&g)).await.unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(rec.dropped.load(Ordering::SeqCst), "running jobs were stopped");
    assert_eq!(rec.total(), 1, "only the image finished");
    let events = events.lock().unwrap();
    let cancelled = events.iter().filter(|e| matches!(e, Event::Cancelled { .. })).count();
    assert_eq!(cancelled, 4, "every unfinished step is reported: {events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Failed { .. })), "a cancelled step did not fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_fails_the_solve_with_the_vertex() {
    let mut g = Graph::new();
    independent(&mut g, 1, "linux/amd64", "buggy");
    let rec = Arc::new(Recorder { panic: Some("buggy"), ..Recorder::default() });
    let err = Solver::new(rec, Arc::new(MemoryCache::new())).solve(&g).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(err.vertex(), Some("[linux/amd64] buggy 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_vertex_its_platforms_and_inputs() {
    let mut g = Graph::new();
    let root = image(&mut g, "busybox", "linux/arm64");
    let run = exec_on(&mut g, root, "linux/arm64", &["true"], "RUN true");
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = events.clone();
    let rec = Arc::new(Recorder::default());
    Solver::new(rec, Arc::new(MemoryCache::new()))
        .with_progress(Arc::new(move |e| ev.lock().unwrap().push(e)))
        .solve(&g)
        .await
        .unwrap();
    let events = events.lock().unwrap();
    let of_run: Vec<&Event> = events.iter().filter(|e| e.vertex().name == "RUN true").collect();
    assert!(matches!(of_run[..], [Event::Started { .. }, Event::Log { .. }, Event::Completed { .. }]), "{of_run:?}");
    assert!(matches!(of_run[1], Event::Log { stream: crate::Stream::Stdout, data, .. } if data == b"RUN true"));
    let info = of_run[0].vertex();
    assert_eq!(&info.digest, g.get(run).unwrap().digest());
    assert_eq!(info.platforms, ["linux/arm64"]);
    assert_eq!(info.inputs, [g.get(root).unwrap().digest().clone()]);
}

/// Checksums the selected content by the input's result alone.
struct ByResult;

impl ContentChecksum<String> for ByResult {
    fn source(&self, _: &Vertex) -> Result<Option<Digest>, crate::BoxError> {
        Ok(Some(Digest::sha256(b"context")))
    }

    fn selection(&self, _: &Vertex, _: usize, r: &String, _: &Selector) -> Result<Option<Digest>, crate::BoxError> {
        Ok(Some(Digest::sha256(r.as_bytes())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertices_with_one_key_run_once_in_a_solve() {
    let mut g = Graph::new();
    let from = image(&mut g, "busybox", "linux/amd64");
    let onto = image(&mut g, "scratch", "linux/amd64");
    let copies: Vec<VertexId> = ["/a/out", "/b/out", "/c/out"]
        .iter()
        .map(|path| {
            let op = Op::Copy(Copy { source: 0, dest: Some(1), paths: vec![path.to_string()], ..Copy::default() });
            g.add(VertexSpec::new(op, p("linux/amd64")).with_inputs([from, onto]).with_name(format!("COPY {path}")))
                .unwrap()
        })
        .collect();
    let digests: Vec<&Digest> = copies.iter().map(|c| g.get(*c).unwrap().digest()).collect();
    assert!(digests[0] != digests[1] && digests[1] != digests[2], "three vertices");
    let rec = Arc::new(Recorder::with_delay(Duration::from_millis(50)));
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = events.clone();
    let sol = Solver::new(rec.clone(), Arc::new(MemoryCache::new()))
        .with_checksum(Arc::new(ByResult))
        .with_progress(Arc::new(move |e| ev.lock().unwrap().push(e)))
        .solve(&g)
        .await
        .unwrap();
    assert_eq!((sol.executed(), sol.cached()), (3, 2), "two images and one of the copies");
    let keys: Vec<&Digest> = copies.iter().map(|c| sol.key(*c).unwrap()).collect();
    assert!(keys[0] == keys[1] && keys[1] == keys[2]);
    assert_eq!(sol.result(copies[0]), sol.result(copies[2]));
    let cached = events.lock().unwrap().iter().filter(|e| matches!(e, Event::Cached { .. })).count();
    assert_eq!(cached, 2, "the copies that waited are reported as cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_salt_keeps_results_made_another_way_apart() {
    let mut g = Graph::new();
    let ids = independent(&mut g, 2, "linux/amd64", "step");
    let rec = Arc::new(Recorder::default());
    let cache = Arc::new(MemoryCache::new());
    let gzip = || Solver::new(rec.clone(), cache.clone()).with_key_salt("compression=gzip");
    let first = gzip().solve(&g).await.unwrap();
    assert_eq!(first.executed(), 3);
    assert!(!first.was_cached(ids[0]));
    let again = gzip().solve(&g).await.unwrap();
    assert_eq!(again.executed(), 0);
    assert!(again.was_cached(ids[0]) && again.key(ids[0]) == first.key(ids[0]));
    let zstd = Solver::new(rec, cache).with_key_salt("compression=zstd").solve(&g).await.unwrap();
    assert_eq!(zstd.executed(), 3, "another salt, other keys");
    assert_ne!(zstd.key(ids[0]), first.key(ids[0]));
}

/// Measures the scheduler's own cost on a graph of 6 platforms × 2000
/// steps over a shared chain of 2000 (`bench/solver.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: bench/solver.sh runs it"]
async fn scheduler_overhead_on_a_large_graph() {
    let mut g = Graph::new();
    let mut shared = image(&mut g, "golang", "linux/amd64");
    for i in 0..2000 {
        shared = exec_on(&mut g, shared, "linux/amd64", &["step", &i.to_string()], &format!("shared {i}"));
    }
    for t in TARGETS {
        let base = image(&mut g, "alpine", t);
        let mut last = copy_onto(&mut g, shared, base, t, "copy");
        for i in 0..2000 {
            let op = Op::Mkfile(Mkfile { input: Some(0), path: format!("/f{i}"), mode: 0o644, ..Mkfile::default() });
            last = g.add(VertexSpec::new(op, p(t)).with_inputs([last]).with_name(format!("[{t}] {i}"))).unwrap();
        }
        g.target(p(t), last).unwrap();
    }
    let rec = Arc::new(Recorder::default());
    let cache = Arc::new(MemoryCache::new());
    let started = Instant::now();
    let sol = Solver::new(rec.clone(), cache.clone()).with_jobs(2).solve(&g).await.unwrap();
    let cold = started.elapsed();
    let started = Instant::now();
    let again = Solver::new(rec, cache).with_jobs(2).solve(&g).await.unwrap();
    assert_eq!((sol.executed(), again.cached(), again.executed()), (g.len(), g.len(), 0));
    eprintln!(
        "{} vertices: {} executed in {cold:?}, {} cached in {:?}",
        g.len(),
        sol.executed(),
        again.cached(),
        started.elapsed()
    );
}
