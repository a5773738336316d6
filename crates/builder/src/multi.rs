//! Multi-platform builds, as `docker buildx build --platform a,b,c`: the
//! requested platforms parsed and normalised, a check that every platform
//! whose RUN steps must execute here can, and one build per platform, all
//! at once, whose steps share one set of [`Slots`] (native, emulated and
//! I/O work each with its own limit; as in containers/buildah
//! imagebuildah/build.go, with BuildKit's per-step scheduling). Steps whose cache key is the
//! same for several platforms (a `FROM --platform=$BUILDPLATFORM` stage, a
//! COPY of the same files) run once: the builds share one merge table,
//! see [`crate::cache`].
//!
//! The per-platform results become one index in [`crate::export`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use polyarch_dockerfile::instructions::{self, Instruction};
use polyarch_oci::Platform;
use polyarch_registry::Client;
use polyarch_solver::dag::{self, Dag, Driver, Flow, Stopped};
use polyarch_solver::CancelToken;
use polyarch_store::Store;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{renumbered, StepNumbers};
use crate::slots::{Class, Slots};
use crate::{BuildOptions, BuildResult, Builder, EventSink};

/// Parses `--platform` values as buildx does: each value may be a comma
/// list, `local` is the platform of this machine, and every spelling
/// containerd accepts is normalised (`linux/aarch64` → `linux/arm64`).
/// Duplicates after normalisation are dropped; the order is kept.
pub fn parse_platforms(values: &[String]) -> Result<Vec<Platform>> {
    let mut out: Vec<Platform> = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let p = if item == "local" {
            Platform::host().normalize()
        } else {
            Platform::parse(item).map_err(|e| Error::Option(e.to_string()))?.normalize()
        };
        if !out.iter().any(|o| o.format() == p.format()) {
            out.push(p);
        }
    }
    Ok(out)
}

/// How many native steps run at once by default (`--jobs`): one per
/// core, but no more than one per GiB of available memory, and at least
/// one. Emulated RUN steps and pulls have their own limits ([`Slots`]).
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| (kb / (1024 * 1024)) as usize);
    match mem_gib {
        Some(m) => cores.min(m).max(1),
        None => cores.max(1),
    }
}

/// Why a platform cannot execute programs on this machine, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrunnable {
    /// What the probe saw (`Exec format error (os error 8)`).
    pub detail: String,
    /// The command that fixes it.
    pub fix: String,
}

/// Decides whether a platform executes here.
pub type Prober<'a> = dyn Fn(&Platform) -> std::result::Result<(), Unrunnable> + 'a;

/// The prober that executes a tiny program of the platform's architecture
/// (`polyarch_emu::probe_platform`), which also checks that `argv[0]`
/// arrives and a re-exec through `/proc/self/exe` works; the fix is
/// `polyarch_emu::remedy`'s (`polyarch binfmt install ARCH`, `--reset`
/// for a wrong handler, after installing QEMU when it is missing). A
/// platform no QEMU emulates here needs a node of that platform.
pub fn probe_host(platform: &Platform) -> std::result::Result<(), Unrunnable> {
    let Some(arch) = polyarch_emu::Arch::from_platform(platform) else {
        let p = platform.format();
        return Err(Unrunnable {
            detail: format!("polyarch has no emulator for {p}"),
            fix: format!("polyarch builder create --append --name NAME --platform {p} ssh://USER@HOST (a node of {p})"),
        });
    };
    let opts = polyarch_emu::ProbeOptions::default();
    match polyarch_emu::probe_platform(platform, &opts) {
        Ok(r) if r.executes => Ok(()),
        Ok(r) => {
            let fix = polyarch_emu::remedy(arch, &r, None).unwrap_or_default();
            Err(Unrunnable { detail: r.detail, fix })
        }
        Err(e) => Err(Unrunnable { detail: e.to_string(), fix: format!("polyarch binfmt install {}", arch.name()) }),
    }
}

/// The automatic platform arguments for a build for `target` on `build`.
fn platform_args(target: &Platform, build: &Platform) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (prefix, p) in [("TARGET", target.normalize()), ("BUILD", build.normalize())] {
        m.insert(format!("{prefix}PLATFORM"), p.format());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant_str().to_string());
    }
    m
}

/// The platforms whose programs RUN steps of the needed stages execute
/// when building `opts` for `target` on `host`: a stage runs on its
/// `FROM --platform`, on its base stage's platform, or on the target.
pub fn run_platforms(opts: &BuildOptions, target: &Platform, host: &Platform) -> Result<Vec<Platform>> {
    run_platforms_of(&crate::dispatch::Parsed::new(opts)?, opts, target, host)
}

/// [`run_platforms`] of a Dockerfile parsed already.
fn run_platforms_of(
    parsed: &crate::dispatch::Parsed,
    opts: &BuildOptions,
    target: &Platform,
    host: &Platform,
) -> Result<Vec<Platform>> {
    let invalid = |e| crate::dispatch::invalid(opts, e);
    let (df, last) = (&parsed.df, parsed.target);
    let build_args: HashMap<String, String> = opts.build_args.clone().into_iter().collect();
    let froms =
        instructions::expand_from(df, parsed.escape, &build_args, &platform_args(target, host)).map_err(invalid)?;
    let stage_of = |name: &str, before: usize| {
        let lower = name.to_lowercase();
        df.stages[..before].iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
    };
    let mut platforms: Vec<Platform> = Vec::with_capacity(df.stages.len());
    for (i, f) in froms.iter().enumerate() {
        let p = match (&f.platform, stage_of(&f.base, i)) {
            // A bad `--platform` fails that stage in the build, with its line.
            (Some(spec), _) => Platform::parse(spec).map(|p| p.normalize()).unwrap_or_else(|_| target.clone()),
            (None, Some(j)) => platforms[j].clone(),
            (None, None) => target.clone(),
        };
        platforms.push(p);
    }
    let mut needed = vec![false; df.stages.len()];
    let mut todo = vec![last];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        todo.extend(stage_of(&froms[i].base, i));
        todo.extend(df.dependencies(i).into_iter().map(|(j, _)| j));
    }
    let mut out: Vec<Platform> = Vec::new();
    for (i, stage) in df.stages.iter().enumerate() {
        let runs = stage.commands.iter().any(|c| matches!(c.instruction, Instruction::Run(_)));
        if needed[i] && runs && !out.iter().any(|p| p.format() == platforms[i].format()) {
            out.push(platforms[i].clone());
        }
    }
    Ok(out)
}

/// Checks, before anything is built, that every platform whose RUN steps
/// execute here and whose architecture is not this machine's can execute
/// (with `probe`); the first that cannot stops the build with its fix.
pub fn check_emulation(opts: &BuildOptions, targets: &[Platform], host: &Platform, probe: &Prober<'_>) -> Result<()> {
    let host_arch = polyarch_emu::Arch::from_platform(host);
    let mut checked: Vec<String> = Vec::new();
    let parsed = crate::dispatch::Parsed::new(opts)?;
    for t in targets {
        for p in run_platforms_of(&parsed, opts, t, host)? {
            let native = host_arch.is_some() && polyarch_emu::Arch::from_platform(&p) == host_arch;
            if native || checked.contains(&p.format()) {
                continue;
            }
            checked.push(p.format());
            if let Err(u) = probe(&p) {
                return Err(Error::Emulation { platform: p.format(), detail: u.detail, fix: u.fix });
            }
        }
    }
    Ok(())
}

/// What a multi-platform build produced: one result per platform, in the
/// order asked for.
#[derive(Debug, Clone)]
pub struct MultiResult {
    /// Per platform.
    pub images: Vec<BuildResult>,
}

impl MultiResult {
    /// Filesystem steps that ran, over all platforms.
    pub fn executed(&self) -> usize {
        self.images.iter().map(|r| r.executed).sum()
    }

    /// Filesystem steps served from the cache, over all platforms.
    pub fn cached(&self) -> usize {
        self.images.iter().map(|r| r.cached).sum()
    }
}

/// Runs the builds of several platforms against one store.
pub struct MultiBuilder {
    store: Store,
    client: Option<Client>,
    events: EventSink,
    slots: Slots,
    executor: Option<Arc<dyn polyarch_exec::Executor>>,
    cache_io: Option<Arc<crate::cacheio::CacheIo>>,
}

impl MultiBuilder {
    /// A builder writing to `store`, with no registry access, no events and
    /// the slots of [`default_jobs`].
    pub fn new(store: Store) -> MultiBuilder {
        MultiBuilder {
            store,
            client: None,
            events: Arc::new(|_| {}),
            slots: Slots::default(),
            executor: None,
            cache_io: None,
        }
    }

    /// Shares `io` (imported records, notes for `--cache-to`) among the
    /// builds of every platform: one cache for all of them.
    pub fn with_cache_io(mut self, io: Arc<crate::cacheio::CacheIo>) -> MultiBuilder {
        self.cache_io = Some(io);
        self
    }

    /// Runs RUN processes of every platform with `executor`.
    pub fn with_executor(mut self, executor: Arc<dyn polyarch_exec::Executor>) -> MultiBuilder {
        self.executor = Some(executor);
        self
    }

    /// Sets the registry client used to pull base images.
    pub fn with_client(mut self, client: Client) -> MultiBuilder {
        self.client = Some(client);
        self
    }

    /// Sets where progress events go; step numbers run across platforms.
    pub fn with_events(mut self, sink: EventSink) -> MultiBuilder {
        self.events = sink;
        self
    }

    /// Sets `--jobs`: how many native steps run at once (at least one),
    /// with the solver's default limits for emulated steps and pulls.
    pub fn with_jobs(mut self, jobs: usize) -> MultiBuilder {
        self.slots = Slots::new(jobs);
        self
    }

    /// Sets the limits of every kind of work.
    pub fn with_slots(mut self, slots: Slots) -> MultiBuilder {
        self.slots = slots;
        self
    }

    /// How many native steps run at once.
    pub fn jobs(&self) -> usize {
        self.slots.limit(Class::Cpu)
    }

    /// Builds `opts` for every platform in `platforms`, all at once: their
    /// steps wait for slots of their kind, never for another platform's
    /// build. The first failure stops the others and is returned naming
    /// its platform. Must run on a multi-thread tokio runtime. Step names
    /// show the platform.
    pub async fn build(&self, opts: &BuildOptions, platforms: &[Platform]) -> Result<MultiResult> {
        let mut run = Platforms {
            multi: self,
            opts,
            platforms,
            numbering: Arc::new(Mutex::new(StepNumbers::default())),
            metadata: crate::dispatch::Metadata::default(),
            merges: crate::cache::Merges::default(),
            parses: crate::dispatch::Parses::default(),
            fetches: crate::fetched::Fetches::default(),
            stop: crate::graph::Stop::default(),
            stopped: None,
            done: platforms.iter().map(|_| None).collect(),
        };
        // Every platform is a node of its own: all start at once, and the
        // first failure stops the others, which are waited for, so that
        // none of their steps (or containers) outlives the build.
        let dag = Dag::new(vec![Vec::new(); platforms.len()]);
        match dag::run(&dag, None, &mut run, &CancelToken::new()).await {
            Ok(_) => {}
            Err(Stopped::Failed(e)) => return Err(e),
            Err(Stopped::Cancelled) => return Err(Error::Cancelled),
        }
        // A platform without a result was stopped by a failure reported
        // as stopped only (none other was).
        let images: Option<Vec<BuildResult>> = run.done.into_iter().collect();
        images
            .map(|images| MultiResult { images })
            .ok_or_else(|| run.stopped.unwrap_or_else(|| Error::Option("a platform build produced no result".into())))
    }
}

/// The builds of one multi-platform build, one per platform, sharing the
/// step numbering, metadata, merge table, parses and fetches.
struct Platforms<'a> {
    multi: &'a MultiBuilder,
    opts: &'a BuildOptions,
    platforms: &'a [Platform],
    numbering: Arc<Mutex<StepNumbers>>,
    metadata: crate::dispatch::Metadata,
    merges: crate::cache::Merges,
    parses: crate::dispatch::Parses,
    fetches: crate::fetched::Fetches,
    /// Fired by the first failure: the other platforms stop.
    stop: crate::graph::Stop,
    /// A platform's build stopped by that cancellation.
    stopped: Option<Error>,
    done: Vec<Option<BuildResult>>,
}

impl Driver for Platforms<'_> {
    type Output = BuildResult;
    type Error = Error;
    type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<BuildResult>> + Send>>;

    fn start(&mut self, i: usize) -> Self::Task {
        let m = self.multi;
        let sink = renumbered(m.events.clone(), self.numbering.clone(), i, |v| v.show_platform = true);
        let mut b = Builder::new(m.store.clone())
            .with_events(sink)
            .with_slots(m.slots.clone())
            .with_metadata(self.metadata.clone())
            .with_merges(self.merges.clone())
            .with_parses(self.parses.clone())
            .with_fetches(self.fetches.clone())
            .with_stop(self.stop.clone());
        if let Some(c) = &m.client {
            b = b.with_client(c.clone());
        }
        if let Some(e) = &m.executor {
            b = b.with_executor(e.clone());
        }
        if let Some(io) = &m.cache_io {
            b = b.with_cache_io(io.clone());
        }
        let o = self.opts.clone().with_platform(self.platforms[i].clone());
        Box::pin(async move { b.build(&o).await })
    }

    fn done(&mut self, i: usize, r: BuildResult) -> Flow<Error> {
        if let Some(slot) = self.done.get_mut(i) {
            *slot = Some(r);
        }
        Flow::Continue
    }

    fn failed(&mut self, i: usize, e: std::result::Result<Error, tokio::task::JoinError>) -> Flow<Error> {
        let e = e.unwrap_or_else(|j| Error::Option(format!("a platform build stopped: {j}")));
        let platform = self.platforms.get(i).map(|p| p.format()).unwrap_or_default();
        let e = Error::ForPlatform { platform, source: Box::new(e) };
        // A platform stopped by another's failure waits for that failure,
        // which is the one to report.
        if self.stop.fired() && e.kind() == ErrorKind::Cancelled {
            self.stopped.get_or_insert(e);
            return Flow::SkipDependents;
        }
        Flow::Stop(e)
    }

    fn stopping(&mut self) {
        self.stop.fire();
    }

    /// The other platforms see the stop (their RUN processes killed, their
    /// stages' schedules stopped) and end by themselves, each having
    /// waited for its stages; only what still runs after that is aborted.
    fn drain(&self) -> std::time::Duration {
        crate::graph::STOP_DRAIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::cell::RefCell;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap().normalize()
    }

    #[test]
    fn platform_lists_as_buildx() {
        let got = parse_platforms(&[
            "linux/amd64,linux/aarch64".into(),
            "linux/arm64".into(),
            "linux/armhf, linux/arm/v7".into(),
            "local".into(),
        ])
        .unwrap();
        let names: Vec<String> = got.iter().map(|p| p.format()).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        assert!(parse_platforms(&["linux/amd64,linux/*".into()]).is_err());
        assert_eq!(parse_platforms(&["".into()]).unwrap(), Vec::<Platform>::new());
    }

    const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox AS build\nRUN make\n\
                         FROM busybox AS unused\nRUN true\n\
                         FROM busybox\nCOPY --from=build /out /out\n";

    #[test]
    fn run_platforms_follow_from_platform_and_needed_stages() {
        let host = p("linux/amd64");
        let opts = BuildOptions::new(CROSS);
        let got = run_platforms(&opts, &p("linux/arm64"), &host).unwrap();
        assert_eq!(got, vec![host.clone()], "the build stage runs on the build platform; the unused stage not at all");
        let opts = BuildOptions::new("FROM busybox AS base\nRUN true\nFROM base\nCOPY a b\n");
        assert_eq!(run_platforms(&opts, &p("linux/s390x"), &host).unwrap(), vec![p("linux/s390x")]);
        let opts = BuildOptions::new("FROM busybox\nCOPY a b\n");
        assert!(run_platforms(&opts, &p("linux/s390x"), &host).unwrap().is_empty());
    }

    #[test]
    fn emulation_is_probed_for_foreign_run_platforms_only() {
        let host = p("linux/amd64");
        let probed = RefCell::new(Vec::new());
        let fails = |pl: &Platform| {
            probed.borrow_mut().push(pl.format());
            Err(Unrunnable { detail: "Exec format error".into(), fix: "polyarch binfmt install arm64".into() })
        };
        let run = BuildOptions::new("FROM busybox\nRUN true\n");
        let err = check_emulation(&run, &[p("linux/amd64"), p("linux/arm64")], &host, &fails).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("linux/arm64") && msg.contains("polyarch binfmt install arm64"), "{msg}");
        assert!(matches!(err, Error::Emulation { .. }) && err.kind() == ErrorKind::Unsupported);
        assert_eq!(*probed.borrow(), ["linux/arm64"], "the native platform is not probed");

        probed.borrow_mut().clear();
        let copy_only = BuildOptions::new("FROM busybox\nCOPY a b\n");
        check_emulation(&copy_only, &[p("linux/arm64"), p("linux/s390x")], &host, &fails).unwrap();
        let cross = BuildOptions::new(CROSS);
        check_emulation(&cross, &[p("linux/arm64"), p("linux/s390x")], &host, &fails).unwrap();
        assert!(probed.borrow().is_empty(), "nothing runs on a foreign platform");

        let works = |pl: &Platform| {
            probed.borrow_mut().push(pl.format());
            Ok(())
        };
        check_emulation(&run, &[p("linux/arm64"), p("linux/arm/v7"), p("linux/arm64")], &host, &works).unwrap();
        assert_eq!(*probed.borrow(), ["linux/arm64", "linux/arm/v7"], "each platform is probed once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_shared_by_platforms_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ctx = crate::MemFs::new();
        ctx.insert("a".into(), crate::copy::file_node(b"shared", 0o644, 1));
        let df = "FROM --platform=linux/amd64 scratch AS b\nCOPY a /a\nFROM scratch\nCOPY --from=b /a /a\n";
        let opts = BuildOptions::new(df).with_context(ctx);
        let names = Arc::new(Mutex::new(Vec::new()));
        let n = names.clone();
        let sink: EventSink = Arc::new(move |e| {
            if let crate::Event::Started { vertex, .. } = e {
                n.lock().unwrap().push(vertex.name());
            }
        });
        let targets = [p("linux/arm64"), p("linux/s390x"), p("linux/arm/v7")];
        let r = MultiBuilder::new(store.clone()).with_events(sink).with_jobs(3).build(&opts, &targets).await.unwrap();
        let built: Vec<String> = r.images.iter().map(|i| i.platform.format()).collect();
        assert_eq!(built, ["linux/arm64", "linux/s390x", "linux/arm/v7"]);
        // The build stage's COPY runs once, and so does the final stage's:
        // a COPY onto the empty tree of the same files is one step for
        // every platform, as it is one vertex of the plan.
        assert_eq!((r.executed(), r.cached()), (1 + 1, 2 + 2), "the build stage's COPY runs once");
        // Each target's build shows the step, named as BuildKit names it:
        // by the platform the stage runs as.
        let names = names.lock().unwrap().clone();
        assert_eq!(names.iter().filter(|n| *n == "[linux/amd64 b 1/1] COPY a /a").count(), 3, "{names:?}");
        for t in &targets {
            assert!(names.contains(&format!("[{} stage-1 1/1] COPY --from=b /a /a", t.format())), "{names:?}");
        }
        let again = MultiBuilder::new(store).with_jobs(1).build(&opts, &targets).await.unwrap();
        assert_eq!((again.executed(), again.cached()), (0, 6));
        for (a, b) in r.images.iter().zip(&again.images) {
            assert_eq!(a.manifest.digest, b.manifest.digest);
        }
    }

    /// With one slot of each kind, an emulated RUN step and a native one
    /// of another platform run at once (each waits for the other): the
    /// emulated step holds the emulated slot, not the native one (issue
    /// 12). With one slot for all work (or one platform at a time) the
    /// wait times out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_emulated_run_does_not_hold_the_native_slot() {
        use crate::testing::RecordingExecutor;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = Platform::host().normalize();
        let foreign = if host.architecture == "s390x" { p("linux/arm64") } else { p("linux/s390x") };
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        let emulated_arch = foreign.architecture.clone();
        let exec = RecordingExecutor::new().on("step", move |sb| {
            let arch = sb.process().env.iter().find_map(|e| e.strip_prefix("TARGETARCH=").map(String::from));
            // Each step waits for the other to have run: both must hold a
            // slot at once, whichever starts first.
            let wait_for = |what: &str| {
                let t = Instant::now();
                while !l.lock().unwrap().iter().any(|e| e == what) {
                    if t.elapsed() > Duration::from_secs(10) {
                        l.lock().unwrap().push(format!("timed out waiting for {what}"));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            };
            if arch.as_deref() != Some(emulated_arch.as_str()) {
                wait_for("emulated started");
                l.lock().unwrap().push("native done".to_string());
                return Ok(0);
            }
            l.lock().unwrap().push("emulated started".to_string());
            wait_for("native done");
            l.lock().unwrap().push("emulated done".to_string());
            Ok(0)
        });
        let mut opts = BuildOptions::new("FROM scratch\nARG TARGETARCH\nRUN step\n");
        opts.snapshotter = crate::process::SnapshotterKind::Naive;
        let r = MultiBuilder::new(store)
            .with_executor(exec.clone())
            .with_jobs(1)
            .build(&opts, &[foreign, host])
            .await
            .unwrap();
        assert_eq!(r.images.len(), 2);
        assert_eq!(exec.count(), 2);
        assert_eq!(*log.lock().unwrap(), ["emulated started", "native done", "emulated done"]);
    }

    /// An executor whose `step` command for arm64 exits 3 at once and whose
    /// other commands run until cancelled (20 s at most).
    #[derive(Default)]
    struct StopsWhenCancelled {
        cancelled: std::sync::atomic::AtomicUsize,
        ran: Mutex<Vec<String>>,
    }

    impl polyarch_exec::Executor for StopsWhenCancelled {
        fn run(
            &self,
            _rootfs: &std::path::Path,
            _mounts: &[polyarch_exec::MountSpec],
            process: &polyarch_exec::ProcessSpec,
            io: polyarch_exec::ProcessIo<'_>,
        ) -> polyarch_exec::Result<polyarch_exec::ExitStatus> {
            let script = process.args.join(" ");
            self.ran.lock().unwrap().push(script.clone());
            if script.contains("step") && process.env.iter().any(|e| e == "TARGETARCH=arm64") {
                // Fails only once the other platform's step runs, so that
                // there is a running step to cancel whatever the order in
                // which the two platforms reach their RUN.
                let t = std::time::Instant::now();
                while self.ran.lock().unwrap().len() < 2 && t.elapsed() < std::time::Duration::from_secs(10) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                return Ok(polyarch_exec::ExitStatus(3));
            }
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_secs(20) {
                if io.cancel.as_ref().is_some_and(polyarch_exec::Cancel::is_cancelled) {
                    self.cancelled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return Err(polyarch_exec::Error::Cancelled { id: "test".into() });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(polyarch_exec::ExitStatus(0))
        }
    }

    /// The first failure stops the rest of the build: the RUN still
    /// running in another platform's build is cancelled, no step after it
    /// starts, and the error reported is the failure, naming its platform.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_cancels_the_other_platforms_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let exec = Arc::new(StopsWhenCancelled::default());
        let mut opts = BuildOptions::new("FROM scratch\nARG TARGETARCH\nRUN step-$TARGETARCH\nRUN after\n");
        opts.snapshotter = crate::process::SnapshotterKind::Naive;
        let t = std::time::Instant::now();
        let err = MultiBuilder::new(store)
            .with_executor(exec.clone())
            .with_jobs(2)
            .build(&opts, &[p("linux/s390x"), p("linux/arm64")])
            .await
            .unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(15), "the s390x step ran to its end");
        match &err {
            Error::ForPlatform { platform, source } => {
                assert_eq!(platform, "linux/arm64");
                assert!(source.to_string().contains("exit code: 3"), "{source}");
            }
            e => panic!("not a platform's failure: {e}"),
        }
        assert_eq!(exec.cancelled.load(std::sync::atomic::Ordering::SeqCst), 1, "the s390x RUN was cancelled");
        let ran = exec.ran.lock().unwrap().clone();
        assert!(!ran.iter().any(|r| r.contains("after")), "no step starts after the failure: {ran:?}");
    }

    #[test]
    fn dockerfile_errors_keep_their_location() {
        let opts = BuildOptions::new("FROM scratch\nFORM busybox\n");
        let err = run_platforms(&opts, &p("linux/arm64"), &p("linux/amd64")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Dockerfile);
        assert!(err.to_string().contains("Dockerfile:2:1: unknown instruction: FORM"), "{err}");
    }
}
