//! Stages and instructions: which stages the target needs, the base of
//! each, and what every instruction does to the config (this file) or the
//! file system ([`crate::dispatch::fsops`]).

mod fsops;
mod meta;
mod pull;
mod run;
mod steps;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use polyarch_dockerfile::instructions::{self, Command, Dockerfile};
use polyarch_dockerfile::Lex;
use polyarch_oci::{media_type as mt, Descriptor, ImageManifest, Platform, RawManifest, Reference};
use polyarch_registry::Client;
use polyarch_store::Store;

use crate::base::{self, BaseImage};
use crate::cache::Cache;
use crate::config::{rfc3339, Image};
use crate::error::{Error, ErrorKind, Location, Result};
use crate::fs::MemFs;
use crate::graph::{self, Graph};
use crate::layer::Layer;
use crate::slots::{Class, Slots};
use crate::{BuildOptions, BuildResult, EventSink, Vertex};

/// Runs builds against a store, pulling base images with a registry client.
#[derive(Clone)]
pub struct Builder {
    store: Store,
    client: Option<Client>,
    events: EventSink,
    /// Runs RUN processes (none: runc, from `BuildOptions::runtime`).
    executor: Option<Arc<dyn polyarch_exec::Executor>>,
    pub(crate) slots: Slots,
    /// Imported records and the notes of `--cache-to`.
    cache_io: Option<Arc<crate::cacheio::CacheIo>>,
    /// Base image metadata resolved once for every build sharing it.
    metadata: Metadata,
    /// Steps being run, merged with the other builds sharing it.
    merges: crate::cache::Merges,
    /// Dockerfiles parsed, shared with the other builds sharing it.
    parses: Parses,
    /// Downloads and checkouts of ADD, shared with the other builds
    /// sharing it.
    pub(crate) fetches: crate::fetched::Fetches,
    /// Stops a build once one of its stages (or of the builds sharing it)
    /// failed: its RUN processes and its stage schedule. Made for each
    /// build when not shared.
    pub(crate) stop: Option<crate::graph::Stop>,
}

/// A Dockerfile parsed and checked: what does not depend on the platform.
/// The builds of every platform of a multi-platform build share one
/// ([`Parses`]); FROM expansion and the stage walk come after, per platform.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) escape: char,
    pub(crate) df: Arc<Dockerfile>,
    /// The index of the target stage.
    pub(crate) target: usize,
}

impl Parsed {
    /// Parses `opts.dockerfile`, finds the target stage and checks stage
    /// references and cycles; errors name the Dockerfile's line.
    pub(crate) fn new(opts: &BuildOptions) -> Result<Parsed> {
        let invalid = |e| invalid(opts, e);
        let ast = polyarch_dockerfile::parse(&opts.dockerfile).map_err(invalid)?;
        let df = instructions::parse(&ast).map_err(invalid)?;
        let target = df.target(opts.target.as_deref()).map_err(invalid)?;
        df.check_sources().map_err(invalid)?;
        df.check_cycles().map_err(invalid)?;
        Ok(Parsed { escape: ast.escape, df: Arc::new(df), target })
    }
}

/// An error of `opts`'s Dockerfile, shown at its line and column.
pub(crate) fn invalid(opts: &BuildOptions, e: polyarch_dockerfile::Error) -> Error {
    let source = String::from_utf8_lossy(&opts.dockerfile);
    Error::At { kind: ErrorKind::Dockerfile, diagnostic: Box::new(e.diagnostic(&opts.dockerfile_name, &source)) }
}

/// Dockerfiles parsed once for every build given clones of it: by bytes,
/// name and target (a failed parse is not kept).
#[derive(Clone, Default)]
pub(crate) struct Parses(Arc<std::sync::Mutex<Vec<ParseEntry>>>);

/// A Dockerfile's bytes, name and target, and its parse.
type ParseEntry = ((Vec<u8>, String, Option<String>), Arc<Parsed>);

impl Parses {
    /// The parse of `opts`'s Dockerfile, made now if no build made it yet.
    pub(crate) fn get(&self, opts: &BuildOptions) -> Result<Arc<Parsed>> {
        let key = (opts.dockerfile.clone(), opts.dockerfile_name.clone(), opts.target.clone());
        let mut done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = done.iter().find(|(k, _)| *k == key) {
            return Ok(p.clone());
        }
        let p = Arc::new(Parsed::new(opts)?);
        done.push((key, p.clone()));
        Ok(p)
    }
}

/// Images resolved for a platform (`name|platform` as written), shared by
/// the builds of several platforms, so that each (image, platform) is
/// resolved once and its "load metadata" step shown once, as BuildKit
/// shows one vertex per distinct resolution.
#[derive(Clone, Default)]
pub(crate) struct Metadata(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<BaseImage>>>>>);

impl Metadata {
    fn cell(&self, key: &str) -> Arc<tokio::sync::OnceCell<BaseImage>> {
        match self.0.lock() {
            Ok(mut m) => m.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }
}

impl Builder {
    /// A builder writing to `store`, with no registry access, no events
    /// and the default [`Slots`].
    pub fn new(store: Store) -> Builder {
        Builder {
            store,
            client: None,
            events: Arc::new(|_| {}),
            executor: None,
            slots: Slots::default(),
            metadata: Metadata::default(),
            merges: crate::cache::Merges::default(),
            parses: Parses::default(),
            fetches: crate::fetched::Fetches::default(),
            stop: None,
            cache_io: None,
        }
    }

    /// Takes records missing here from `io`'s imports and notes the steps
    /// for its export (shared by the builds of every platform).
    pub fn with_cache_io(mut self, io: Arc<crate::cacheio::CacheIo>) -> Builder {
        self.cache_io = Some(io);
        self
    }

    /// Shares base image resolutions with other builders given the same.
    pub(crate) fn with_metadata(mut self, metadata: Metadata) -> Builder {
        self.metadata = metadata;
        self
    }

    /// Merges equal steps with the builds of other builders given the
    /// same table (the platforms of one multi-platform build); clones of
    /// a builder share it anyway.
    pub(crate) fn with_merges(mut self, merges: crate::cache::Merges) -> Builder {
        self.merges = merges;
        self
    }

    /// Parses each Dockerfile once with the builds of other builders given
    /// the same (the platforms of one multi-platform build).
    pub(crate) fn with_parses(mut self, parses: Parses) -> Builder {
        self.parses = parses;
        self
    }

    /// Fetches each ADD source once with the builds of other builders
    /// given the same (the platforms of one multi-platform build).
    pub(crate) fn with_fetches(mut self, fetches: crate::fetched::Fetches) -> Builder {
        self.fetches = fetches;
        self
    }

    /// Shares `stop` with other builds: the first failure of any of them
    /// stops all.
    pub(crate) fn with_stop(mut self, stop: crate::graph::Stop) -> Builder {
        self.stop = Some(stop);
        self
    }

    /// Runs RUN processes with `executor` instead of the OCI runtime of
    /// `BuildOptions::runtime`.
    pub fn with_executor(mut self, executor: Arc<dyn polyarch_exec::Executor>) -> Builder {
        self.executor = Some(executor);
        self
    }

    /// Sets the limits of work at once (shared with other builds that
    /// were given clones of the same slots).
    pub fn with_slots(mut self, slots: Slots) -> Builder {
        self.slots = slots;
        self
    }

    /// Sets the registry client used to pull base images.
    pub fn with_client(mut self, client: Client) -> Builder {
        self.client = Some(client);
        self
    }

    /// Sets where progress events go.
    pub fn with_events(mut self, sink: EventSink) -> Builder {
        self.events = sink;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The executor given, if any.
    pub(crate) fn executor(&self) -> Option<Arc<dyn polyarch_exec::Executor>> {
        self.executor.clone()
    }

    /// The registry client, if any.
    pub(crate) fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// Builds the target stage of `opts` and stores the image (not tagged).
    pub async fn build(&self, opts: &BuildOptions) -> Result<BuildResult> {
        let source = String::from_utf8_lossy(&opts.dockerfile).into_owned();
        let parsed = self.parses.get(opts)?;
        let (escape, target) = (parsed.escape, parsed.target);
        let df_err = |e| invalid(opts, e);
        let df = parsed.df.clone();
        let builtins = builtin_args(&opts.platform);
        let build_args: HashMap<String, String> = opts.build_args.clone().into_iter().collect();
        let froms = instructions::expand_from(&df, escape, &build_args, &builtins).map_err(df_err)?;
        let global_args = global_args(&df, escape, &build_args, &builtins);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut run = Run {
            b: self,
            opts,
            lines: source.split('\n').map(|l| l.trim_end_matches('\r').to_string()).collect(),
            lex: Lex::new(escape),
            cache: Cache::new(&self.store).with_io(self.cache_io.clone()).with_merges(self.merges.clone()),
            latest: None,
            now: opts.source_date_epoch.unwrap_or(now),
            stages: (0..df.stages.len()).map(|_| None).collect(),
            images: HashMap::new(),
            executed: 0,
            cached: 0,
            step: Arc::new(AtomicUsize::new(0)),
            global_args,
            builtins,
            froms: froms.into_iter().map(|f| (f.base, f.platform)).collect(),
            df,
        };
        run.replace_named_stages();
        let needed: Vec<usize> = run.needed(target).into_iter().filter(|i| *i <= target).collect();
        run.prefetch(&needed).await?;
        let graph = Graph::new(&needed, |i| run.stage_deps(i, &needed));
        let mut me = self.clone();
        let stop = me.stop.get_or_insert_with(crate::graph::Stop::default).clone();
        let shared = (Arc::new(me), Arc::new(opts.clone()));
        graph::schedule(&graph, &mut Stages { run: &mut run, graph: &graph, shared }, &stop).await?;
        run.finish(target)
    }
}

/// The stages of one build, as the scheduler runs them: each starts as
/// a [`Job`] of its own and its result is absorbed into the [`Run`].
struct Stages<'r, 'a> {
    run: &'r mut Run<'a>,
    graph: &'r Graph,
    shared: (Arc<Builder>, Arc<BuildOptions>),
}

impl graph::StageWork for Stages<'_, '_> {
    type Out = StageOut;
    type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<StageOut>> + Send>>;

    fn start(&mut self, i: usize) -> Self::Task {
        Box::pin(self.run.job(self.graph.deps(i), &self.shared).build(i))
    }

    fn finish(&mut self, i: usize, out: StageOut) -> Result<()> {
        self.run.absorb(i, out);
        Ok(())
    }
}

/// TARGETPLATFORM and friends, BUILDPLATFORM and friends.
pub(crate) fn builtin_args(target: &Platform) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (prefix, p) in [("TARGET", target.normalize()), ("BUILD", Platform::host().normalize())] {
        m.insert(format!("{prefix}PLATFORM"), p.format());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant_str().to_string());
    }
    m
}

/// Values of the ARGs declared before the first FROM.
fn global_args(
    df: &Dockerfile,
    escape: char,
    build_args: &HashMap<String, String>,
    builtins: &HashMap<String, String>,
) -> HashMap<String, String> {
    let lex = Lex::new(escape);
    let mut env: HashMap<String, String> = builtins.clone();
    let mut out = HashMap::new();
    for a in &df.meta_args {
        let v = match (build_args.get(&a.key), &a.value) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => lex.process_word(d, &env).ok(),
            (None, None) => None,
        };
        if let Some(v) = v {
            env.insert(a.key.clone(), v.clone());
            out.insert(a.key.clone(), v);
        }
    }
    out
}

/// A built stage.
#[derive(Clone)]
pub(crate) struct StageState {
    pub(crate) name: String,
    pub(crate) platform: Platform,
    pub(crate) image: Image,
    pub(crate) layers: Vec<Layer>,
    /// The root file system, read from the layers when first needed.
    pub(crate) fs: Option<MemFs>,
    /// How many of the last `layers` came from the cache and are not yet
    /// in `fs` (nor to be unpacked when `fs` is first read): a cached step
    /// reads nothing until a later step needs the tree.
    pub(crate) unread: usize,
    /// Cache key of the file system state.
    pub(crate) key: polyarch_oci::Digest,
    /// ARGs in scope: name and value (unset when `None`).
    pub(crate) args: Vec<(String, Option<String>)>,
    pub(crate) cmd_set: bool,
    pub(crate) index: usize,
    pub(crate) total: usize,
    /// How many layers there were before the current step.
    pub(crate) layers_before_step: usize,
    /// History entries of metadata steps, whose time is the image's.
    pub(crate) pending: Vec<usize>,
    /// The step being dispatched is an ONBUILD trigger.
    pub(crate) on_build: bool,
    /// The digest of the stage's last step, the next step's input.
    pub(crate) last: Option<polyarch_oci::Digest>,
    /// The FROM step that pulled the base image, and how many of the
    /// layers are the image's: reading them is that step's status.
    pub(crate) from_step: Option<(Vertex, usize)>,
}

pub(crate) struct Run<'a> {
    pub(crate) b: &'a Builder,
    pub(crate) opts: &'a BuildOptions,
    pub(crate) df: Arc<Dockerfile>,
    pub(crate) lines: Vec<String>,
    pub(crate) lex: Lex,
    pub(crate) cache: Cache,
    /// The newest time of a file-system step of this build.
    pub(crate) latest: Option<i64>,
    /// Seconds used for new directories (SOURCE_DATE_EPOCH or now).
    pub(crate) now: i64,
    pub(crate) stages: Vec<Option<StageState>>,
    pub(crate) images: HashMap<String, (BaseImage, Option<MemFs>)>,
    pub(crate) executed: usize,
    pub(crate) cached: usize,
    pub(crate) step: Arc<AtomicUsize>,
    pub(crate) global_args: HashMap<String, String>,
    pub(crate) builtins: HashMap<String, String>,
    pub(crate) froms: Vec<(String, Option<String>)>,
}

impl Run<'_> {
    pub(crate) fn loc(&self, line: usize) -> Location {
        Location {
            file: self.opts.dockerfile_name.clone(),
            line,
            text: self.lines.get(line.wrapping_sub(1)).cloned().unwrap_or_default(),
        }
    }

    /// Records a metadata step's history entry; its time is set at the end.
    pub(crate) fn commit_meta(&self, st: &mut StageState, text: String) {
        st.image.commit(text, false, None);
        st.pending.push(st.image.history.len() - 1);
    }

    /// Records a file-system step's history entry with the time it ran.
    pub(crate) fn commit_fs(&mut self, st: &mut StageState, text: String, ran_at: i64) {
        let t = self.opts.source_date_epoch.unwrap_or(ran_at);
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
        let with_layer = st.image.diff_ids.len() > st.layers_before_step;
        st.image.commit(text, with_layer, Some(&rfc3339(t)));
    }

    /// The stage a `--from` name (or index) refers to, if it is defined
    /// before `before`.
    pub(crate) fn stage_named(&self, name: &str, before: usize) -> Option<usize> {
        self.base_stage(name, before).or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    }

    /// The stage a FROM names (by name only), if defined before `before`.
    fn base_stage(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_lowercase();
        self.df.stages[..before].iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Stages the target needs: its base and `--from` stages, transitively.
    fn needed(&self, target: usize) -> Vec<usize> {
        let mut seen = vec![false; self.df.stages.len()];
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            if let Some(j) = self.base_stage(&self.froms[i].0, i) {
                todo.push(j);
                todo.extend(self.trigger_sources(j));
            }
            for (j, _) in self.df.dependencies(i) {
                todo.push(j);
            }
        }
        (0..seen.len()).filter(|i| seen[*i]).collect()
    }

    /// The stages the ONBUILD triggers of stage `j` read from (they run in
    /// the stages based on `j`).
    fn trigger_sources(&self, j: usize) -> Vec<usize> {
        use polyarch_dockerfile::instructions::Instruction;
        let mut out = Vec::new();
        for c in &self.df.stages[j].commands {
            let Instruction::Onbuild(expr) = &c.instruction else { continue };
            let Ok(cmd) = parse_trigger(expr, c.start_line) else { continue };
            let froms: Vec<&str> = match &cmd.instruction {
                Instruction::Copy(cp) | Instruction::Add(cp) => cp.from.iter().map(String::as_str).collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            out.extend(froms.into_iter().filter_map(|f| self.df.stage_index(f)));
        }
        out
    }

    /// The stages stage `i` reads from: its FROM base and `--from` stages;
    /// every earlier needed stage when a `--from` is only known after
    /// expansion or the base image carries ONBUILD triggers.
    fn stage_deps(&self, i: usize, needed: &[usize]) -> Vec<usize> {
        use polyarch_dockerfile::instructions::Instruction;
        let (base, spec) = &self.froms[i];
        let mut deps: Vec<usize> = self.base_stage(base, i).into_iter().collect();
        if let Some(j) = self.base_stage(base, i) {
            deps.extend(self.trigger_sources(j));
        }
        deps.extend(self.df.dependencies(i).into_iter().map(|(j, _)| j));
        let mut unknown = false;
        for c in &self.df.stages[i].commands {
            let froms: Vec<&str> = match &c.instruction {
                Instruction::Copy(cp) | Instruction::Add(cp) => cp.from.iter().map(String::as_str).collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                unknown |= f.contains('$');
                deps.extend(self.stage_named(f, i));
            }
        }
        let platform =
            spec.as_deref().and_then(|p| Platform::parse(p).ok()).unwrap_or_else(|| self.opts.platform.clone());
        let triggers = self
            .images
            .get(&format!("{base}|{}", platform.format()))
            .is_none_or(|(img, _)| !img.image.config.on_build.is_empty());
        if unknown || (triggers && !base.eq_ignore_ascii_case("scratch") && self.base_stage(base, i).is_none()) {
            deps.extend(needed.iter().copied().filter(|j| *j < i));
        }
        deps
    }

    /// An owned copy of what stage `i` needs to build on its own task: the
    /// states of the stages it reads from (`deps`) and the pulled images.
    fn job(&self, deps: &[usize], shared: &(Arc<Builder>, Arc<BuildOptions>)) -> Job {
        let stages =
            (0..self.stages.len()).map(|j| if deps.contains(&j) { self.stages[j].clone() } else { None }).collect();
        Job {
            b: shared.0.clone(),
            opts: shared.1.clone(),
            df: self.df.clone(),
            lines: self.lines.clone(),
            lex: self.lex.clone(),
            cache: self.cache.clone(),
            now: self.now,
            stages,
            images: self.images.clone(),
            step: self.step.clone(),
            global_args: self.global_args.clone(),
            builtins: self.builtins.clone(),
            froms: self.froms.clone(),
        }
    }

    /// Takes a built stage's state, counts and caches back.
    fn absorb(&mut self, i: usize, out: StageOut) {
        self.executed += out.executed;
        self.cached += out.cached;
        if let Some(t) = out.latest {
            self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
        }
        for (k, v) in out.images {
            match self.images.get_mut(&k) {
                Some(e) if e.1.is_none() => e.1 = v.1,
                Some(_) => {}
                None => {
                    self.images.insert(k, v);
                }
            }
        }
        for (j, st) in out.stages.into_iter().enumerate() {
            if let (Some(Some(mine)), Some(theirs)) = (self.stages.get_mut(j), st) {
                if mine.fs.is_none() && theirs.fs.is_some() {
                    mine.fs = theirs.fs;
                    mine.unread = theirs.unread;
                }
            }
        }
        if let Some(slot) = self.stages.get_mut(i) {
            *slot = out.state;
        }
    }

    /// Builds stage `i`.
    async fn stage(&mut self, i: usize) -> Result<()> {
        let stage = self.df.stages[i].clone();
        let (base_name, platform_spec) = self.froms[i].clone();
        let loc = self.loc(stage.line);
        let platform = match &platform_spec {
            Some(p) => Platform::parse(p).map_err(|e| loc.error(ErrorKind::Invalid, e.to_string(), Some(p)))?,
            None => self.opts.platform.clone(),
        };
        let name = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let mut commands: Vec<Command> = Vec::new();
        let mut base_image = None;
        // As BuildKit numbers steps: FROM is a step (and a vertex) of a
        // stage on an image, not of one on scratch or on another stage.
        let mut from_step = true;
        let mut st = if base_name.eq_ignore_ascii_case("scratch") {
            from_step = false;
            StageState::new(
                name,
                platform.clone(),
                Image::scratch(&platform),
                Vec::new(),
                crate::cache::keys::scratch()?,
            )
        } else if let Some(j) = self.base_stage(&base_name, i) {
            let Some(prev) = self.stages[j].clone() else {
                return Err(loc.error(ErrorKind::Dockerfile, format!("stage {base_name} was not built"), None));
            };
            // As BuildKit's `dispatchState.init`: the child keeps the
            // parent's ARGs and runs its ONBUILD triggers, which do not
            // carry over into the child's config.
            from_step = false;
            let mut s = prev;
            s.name = name;
            for t in std::mem::take(&mut s.image.config.on_build) {
                commands.push(parse_trigger(&t, stage.line).map_err(|m| loc.error(ErrorKind::Dockerfile, m, None))?);
            }
            s.cmd_set = false;
            s
        } else if let Some(s) = self.files_stage(name.clone(), &base_name, &platform)? {
            s
        } else {
            let img = self.image(&base_name, &platform, stage.line).await?;
            base_image = Some(img.clone());
            let mut image = img.image.clone();
            for t in std::mem::take(&mut image.config.on_build) {
                commands.push(parse_trigger(&t, stage.line).map_err(|m| loc.error(ErrorKind::Dockerfile, m, None))?);
            }
            let key = crate::cache::keys::image(&base_name, &img.manifest.digest, &platform)?;
            let mut s = StageState::new(name, platform.clone(), image, img.layers.clone(), key);
            s.platform = platform.clone();
            s
        };
        let triggers = commands.len();
        commands.extend(stage.commands.iter().cloned());
        st.index = 0;
        st.total = usize::from(from_step) + commands.iter().filter(|c| fsops::is_fs_step(c)).count();
        if from_step {
            // An image's FROM names it pinned, as BuildKit's does; a named
            // context's is its own step (`[context base] busybox`), still
            // counted as the stage's first.
            match self.named_step_text(&base_name) {
                // Files: their step is the one that read them.
                Some((context, None)) => {
                    st.index += 1;
                    st.last = Some(Vertex::context(&context, "load from client").digest());
                }
                Some((context, Some(text))) => {
                    let vertex = self.context_vertex(&mut st, &context, text);
                    self.run_from(&mut st, vertex, base_image.as_ref()).await?;
                }
                None => {
                    let from_text = match &base_image {
                        Some(img) => format!("FROM {}", img.top),
                        None => format!("FROM {base_name}"),
                    };
                    let vertex = self.base_vertex(&mut st, &from_text);
                    self.run_from(&mut st, vertex, base_image.as_ref()).await?;
                }
            }
        }
        for (k, cmd) in commands.iter().enumerate() {
            st.on_build = k < triggers;
            // Another part of the build failed: no further step starts.
            if self.b.stop.as_ref().is_some_and(crate::graph::Stop::fired) {
                return Err(Error::Cancelled);
            }
            self.dispatch(&mut st, cmd).await?;
        }
        st.on_build = false;
        self.stages[i] = Some(st);
        Ok(())
    }

    /// The FROM step: an image's layers the store lacks are fetched in it
    /// (after an I/O slot), each blob a status of the step.
    async fn run_from(&mut self, st: &mut StageState, vertex: Vertex, img: Option<&BaseImage>) -> Result<()> {
        let Some(img) = img else {
            let step = self.start(vertex);
            self.done(step);
            return Ok(());
        };
        let slot = match self.needs_layers(img)? {
            true => Some(self.b.slots.acquire(Class::Io).await),
            false => None,
        };
        let step = self.start(vertex);
        st.from_step = Some((step.vertex.clone(), img.layers.len()));
        if let Err(e) = self.pull_layers(img, &step.vertex).await {
            self.failed_step(step, e.to_string());
            return Err(e);
        }
        drop(slot);
        self.done(step);
        Ok(())
    }

    async fn dispatch(&mut self, st: &mut StageState, cmd: &Command) -> Result<()> {
        use instructions::Instruction as I;
        match &cmd.instruction {
            I::Run(r) => self.run(st, cmd, r).await,
            I::Copy(c) => self.copy(st, cmd, c, false).await,
            I::Add(c) => self.copy(st, cmd, c, true).await,
            I::Workdir(p) => self.workdir(st, cmd, p).await,
            I::From(_) => Ok(()),
            other => self.meta(st, cmd, other),
        }
    }

    /// Assembles and stores the image of stage `target`.
    fn finish(&mut self, target: usize) -> Result<BuildResult> {
        let Some(st) = self.stages[target].take() else {
            return Err(Error::Option("the target stage was not built".into()));
        };
        let mut image = st.image;
        for (k, v) in &self.opts.labels {
            image.config.labels.insert(k.clone(), v.clone());
        }
        let created = rfc3339(self.opts.source_date_epoch.or(self.latest).unwrap_or(self.now));
        for i in &st.pending {
            if let Some(h) = image.history.get_mut(*i) {
                h.created = Some(created.clone());
            }
        }
        let mut config = image.to_json(Some(&created))?;
        if let Some(io) = &self.b.cache_io {
            io.finished(&st.key.to_string());
            if io.inline() {
                config = crate::cacheio::with_inline(&config, &io.chain(&st.key.to_string()))?;
            }
        }
        let config_desc = self.b.store.put_bytes(mt::OCI_CONFIG, &config)?;
        let manifest = ImageManifest::new(
            mt::OCI_MANIFEST,
            config_desc.clone(),
            st.layers.iter().map(|l| l.desc.clone()).collect(),
        );
        let raw = RawManifest::from_image(&manifest).map_err(|e| Error::Layer(e.to_string()))?;
        let manifest_desc = self.b.store.put_manifest(&raw)?;
        // The base images' layers are theirs; the rest this build made.
        let bases: std::collections::HashSet<polyarch_oci::Digest> =
            self.images.values().flat_map(|(img, _)| img.layers.iter().map(|l| l.desc.digest.clone())).collect();
        let foreign = crate::archcheck::foreign_programs(&self.b.store, &st.layers, &bases, &st.platform);
        Ok(BuildResult {
            manifest: manifest_desc,
            config: config_desc,
            image,
            layers: st.layers,
            platform: st.platform,
            executed: self.executed,
            cached: self.cached,
            foreign,
        })
    }

    /// Variables visible to expansion: ARGs, then ENV over them.
    pub(crate) fn env(&self, st: &StageState) -> HashMap<String, String> {
        polyarch_frontend::meta::variables(&st.args, &st.image.config.env)
    }

    /// Expands a word with the stage's variables.
    pub(crate) fn expand(&self, st: &StageState, word: &str, line: usize) -> Result<String> {
        let env = self.env(st);
        self.lex.process_word(word, &env).map_err(|e| self.loc(line).error(ErrorKind::Dockerfile, e.to_string(), None))
    }

    /// Expands variables in here-document text: quotes are kept, as
    /// BuildKit expands with `SkipProcessQuotes`.
    pub(crate) fn expand_text(&self, st: &StageState, text: &str, line: usize) -> Result<String> {
        let env = self.env(st);
        let mut out = String::new();
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(
                &expand_keeping_quotes(&self.lex, part, &env)
                    .map_err(|m| self.loc(line).error(ErrorKind::Dockerfile, m, None))?,
            );
        }
        Ok(out)
    }

    /// Whether layers are unpacked under the store root for their contents
    /// (they are for overlay mounts anyway); the naive snapshotter spills.
    pub(crate) fn unpack_layers(&self) -> bool {
        self.opts.snapshotter != crate::process::SnapshotterKind::Naive
    }

    /// The stage's file system, read from its layers on first use; the
    /// layers of cached steps since are applied then, without unpacking
    /// (a RUN that follows unpacks what its overlay needs, and a fully
    /// cached build, such as a fresh store with `--cache-from`, writes no
    /// trees).
    pub(crate) fn stage_fs<'s>(&self, st: &'s mut StageState) -> Result<&'s mut MemFs> {
        let read = st.layers.len() - st.unread.min(st.layers.len());
        if st.fs.is_none() {
            let shown = st.from_step.as_ref().map(|(v, n)| (v, *n));
            st.fs = Some(self.read_layers(&st.layers[..read], shown)?);
        }
        let fs = st.fs.get_or_insert_with(MemFs::new);
        for i in read..st.layers.len() {
            crate::materialize::apply_stored(fs, &self.b.store, &st.layers[..i], &st.layers[i], false)?;
        }
        st.unread = 0;
        Ok(fs)
    }

    /// Adds a cached step's layer to the stage, read only when a later
    /// step needs the tree ([`Run::stage_fs`]).
    pub(crate) fn push_cached_layer(&self, st: &mut StageState, layer: &Layer) {
        st.image.diff_ids.push(layer.diff_id.clone());
        st.layers.push(layer.clone());
        st.unread += 1;
    }
}

/// What one stage's task owns: a [`Run`] for that stage alone.
struct Job {
    b: Arc<Builder>,
    opts: Arc<BuildOptions>,
    df: Arc<Dockerfile>,
    lines: Vec<String>,
    lex: Lex,
    cache: Cache,
    now: i64,
    stages: Vec<Option<StageState>>,
    images: HashMap<String, (BaseImage, Option<MemFs>)>,
    step: Arc<AtomicUsize>,
    global_args: HashMap<String, String>,
    builtins: HashMap<String, String>,
    froms: Vec<(String, Option<String>)>,
}

/// A stage's task's result, merged into the build by [`Run::absorb`].
struct StageOut {
    state: Option<StageState>,
    stages: Vec<Option<StageState>>,
    images: HashMap<String, (BaseImage, Option<MemFs>)>,
    executed: usize,
    cached: usize,
    latest: Option<i64>,
}

impl Job {
    /// Builds stage `i`.
    async fn build(self, i: usize) -> Result<StageOut> {
        let Job { b, opts, df, lines, lex, cache, now, stages, images, step, global_args, builtins, froms } = self;
        let mut run = Run {
            b: &b,
            opts: &opts,
            df,
            lines,
            lex,
            cache,
            latest: None,
            now,
            stages,
            images,
            executed: 0,
            cached: 0,
            step,
            global_args,
            builtins,
            froms,
        };
        run.stage(i).await?;
        let state = run.stages.get_mut(i).and_then(Option::take);
        Ok(StageOut {
            state,
            stages: run.stages,
            images: run.images,
            executed: run.executed,
            cached: run.cached,
            latest: run.latest,
        })
    }
}

impl StageState {
    pub(crate) fn new(
        name: String,
        platform: Platform,
        image: Image,
        layers: Vec<Layer>,
        key: polyarch_oci::Digest,
    ) -> StageState {
        StageState {
            name,
            platform,
            image,
            layers,
            fs: None,
            unread: 0,
            key,
            args: Vec::new(),
            cmd_set: false,
            index: 0,
            total: 1,
            layers_before_step: 0,
            pending: Vec::new(),
            on_build: false,
            last: None,
            from_step: None,
        }
    }
}

/// Parses an ONBUILD trigger as one instruction located at the FROM line.
fn parse_trigger(text: &str, line: usize) -> std::result::Result<Command, String> {
    let ast = polyarch_dockerfile::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    if ast.nodes.len() != 1 {
        return Err("onbuild trigger should be a single expression".into());
    }
    let mut cmd = instructions::parse_instruction(&ast.nodes[0]).map_err(|e| e.to_string())?;
    cmd.start_line = line;
    cmd.end_line = line;
    Ok(cmd)
}

/// Reads a root file system from layers in the store; file contents stay
/// in the layers' unpacked directories where they exist, or are spilled
/// ([`crate::materialize::apply_stored`]).
pub fn load_fs(store: &Store, layers: &[Layer]) -> Result<MemFs> {
    load_fs_with(store, layers, false)
}

/// As [`load_fs`], unpacking the layers that are not yet when `unpack`.
pub fn load_fs_with(store: &Store, layers: &[Layer], unpack: bool) -> Result<MemFs> {
    let mut fs = MemFs::new();
    for (i, l) in layers.iter().enumerate() {
        crate::materialize::apply_stored(&mut fs, store, &layers[..i], l, unpack)?;
    }
    Ok(fs)
}

/// Reads a stored image (manifest descriptor) as config and layers.
pub fn read_image(store: &Store, manifest: &Descriptor) -> Result<(Image, Vec<Layer>)> {
    let img = base::from_store(
        store,
        manifest,
        Reference::parse_normalized("local/image").map_err(|e| Error::Option(e.to_string()))?,
    )?;
    Ok((img.image, img.layers))
}

/// Expands `$VAR` forms in `text` while keeping quote characters literal.
fn expand_keeping_quotes(lex: &Lex, text: &str, env: &HashMap<String, String>) -> std::result::Result<String, String> {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '\'' | '"' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    lex.process_word(&escaped, env).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platforms_of_a_build_share_one_parse() {
        let parses = Parses::default();
        let opts = BuildOptions::new("FROM scratch AS a\nCOPY x /\nFROM a\n");
        let amd64 = parses.get(&opts.clone().with_platform(Platform::parse("linux/amd64").unwrap())).unwrap();
        let arm64 = parses.get(&opts.clone().with_platform(Platform::parse("linux/arm64").unwrap())).unwrap();
        assert!(Arc::ptr_eq(&amd64, &arm64));
        assert_eq!((amd64.target, amd64.df.stages.len()), (1, 2));
        let first = BuildOptions { target: Some("a".into()), ..opts.clone() };
        assert_eq!(parses.get(&first).unwrap().target, 0, "another target is another parse");
        let bad = BuildOptions { target: Some("nowhere".into()), ..opts.clone() };
        let err = parses.get(&bad).unwrap_err().to_string();
        assert!(err.contains("nowhere"), "{err}");
        assert_eq!(parses.0.lock().unwrap().len(), 2, "a failed parse is not kept");
    }

    #[test]
    fn heredoc_expansion_keeps_quotes() {
        let lex = Lex::new('\\');
        let env: HashMap<String, String> = [("A".to_string(), "x y".to_string())].into_iter().collect();
        assert_eq!(expand_keeping_quotes(&lex, r#"echo "$A" '${A}'  end"#, &env).unwrap(), r#"echo "x y" 'x y'  end"#);
    }

    #[test]
    fn builtin_platform_args() {
        let m = builtin_args(&Platform::new("linux", "arm", Some("v7")));
        assert_eq!(m["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(m["TARGETARCH"], "arm");
        assert_eq!(m["TARGETVARIANT"], "v7");
        assert!(m.contains_key("BUILDPLATFORM"));
    }
}
