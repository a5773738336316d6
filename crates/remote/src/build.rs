//! A build on the nodes of a builder, as buildx sends each platform to a
//! node of the builder: every ssh node is started with `polyarch worker
//! --stdio`, platforms are placed by [`crate::schedule`], only the context
//! files the Dockerfile reads travel (each content once, and only when the
//! node lacks it), nodes build into their own stores, platforms of local
//! nodes (and, with `--fallback-emulation`, of nodes that are down or
//! fail) build here, and results come back as the content the local store
//! lacks. Nothing is returned when any platform failed; pushing is
//! [`Pushers`]' job, once the caller exported.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polyarch_builder::multi::{check_emulation, probe_host, MultiBuilder, MultiResult};
use polyarch_builder::{config::Image, BuildOptions, BuildResult, Layer};
use polyarch_exec::Cancel;
use polyarch_oci::{Descriptor, Digest, Platform};
use polyarch_registry::Client;
use polyarch_store::Store;

use crate::builder::{self, Builder, Endpoint, NodeStatus, Probe};
use crate::error::{Error, NodeId, Result, Unplaced};
use crate::event::{Event, Fallback, Sink, Steps};
use crate::push::Pushers;
use crate::schedule::{self, Offer, Placement};
use crate::session::Session;
use crate::wire::{BuildSpec, Built, CacheReport, CacheSpec};
use polyarch_builder::cacheio::{CacheIo, CacheWarning};
use polyarch_builder::named::NamedContext;

/// A node of the builder, connected or not.
struct Member {
    id: NodeId,
    session: Option<Session>,
    down: Option<String>,
}

/// Where each platform builds.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Platforms built here, with the name of the node they belong to.
    pub here: Vec<(Platform, String)>,
    /// Per node, the platforms it builds.
    pub remote: Vec<Vec<Platform>>,
}

/// A remote node's work and its outcome.
struct Job {
    member: usize,
    platforms: Vec<Platform>,
    session: Session,
    result: Result<(Vec<Built>, Option<CacheReport>)>,
}

/// What a build on nodes gives back: every platform's image, in the order
/// asked, in the local store (with only manifests and configs of images
/// nodes built when layers were not asked for), and the sessions that push
/// what the nodes built.
pub struct Outcome {
    /// One per platform, in the order asked.
    pub images: Vec<BuildResult>,
    /// The nodes that hold images.
    pub pushers: Pushers,
}

/// A build on the nodes of a builder.
pub struct NodeBuild<'a> {
    builder: &'a Builder,
    store: Store,
    client: Client,
    events: Sink,
    probe: Probe,
    version: String,
    fallback: bool,
    layers: bool,
    jobs: Option<usize>,
    network: String,
    snapshotter: String,
    insecure: bool,
    cancel: Cancel,
    status: Option<builder::Store>,
    cache: Option<(Arc<CacheIo>, CacheSpec, Vec<PathBuf>)>,
    annotations: Vec<String>,
}

impl<'a> NodeBuild<'a> {
    /// A build on `builder`'s nodes into `store`, pulling with `client`;
    /// `probe` is this machine's (for its local nodes).
    pub fn new(builder: &'a Builder, store: Store, client: Client, probe: Probe) -> NodeBuild<'a> {
        NodeBuild {
            builder,
            store,
            client,
            events: Arc::new(|_| {}),
            probe,
            version: builder::VERSION.to_string(),
            fallback: false,
            layers: true,
            jobs: None,
            network: "default".into(),
            snapshotter: "auto".into(),
            insecure: false,
            cancel: Cancel::new(),
            status: None,
            cache: None,
            annotations: Vec::new(),
        }
    }

    /// Where progress goes.
    pub fn with_events(mut self, events: Sink) -> Self {
        self.events = events;
        self
    }

    /// `--fallback-emulation`: platforms of nodes that are down or fail
    /// build here.
    pub fn with_fallback(mut self, yes: bool) -> Self {
        self.fallback = yes;
        self
    }

    /// Whether layers come back too (not when the nodes push them).
    pub fn with_layers(mut self, yes: bool) -> Self {
        self.layers = yes;
        self
    }

    /// `--jobs`: native steps at once (emulated steps and pulls have
    /// limits of their own), here and on each node.
    pub fn with_jobs(mut self, jobs: Option<usize>) -> Self {
        self.jobs = jobs;
        self
    }

    /// `--network`, `--snapshotter` and `--insecure` as the nodes get them.
    pub fn with_node_options(mut self, network: &str, snapshotter: &str, insecure: bool) -> Self {
        (self.network, self.snapshotter, self.insecure) = (network.to_string(), snapshotter.to_string(), insecure);
        self
    }

    /// The build's cache table (`io`, shared with the platforms built
    /// here) and what the nodes do with caches: import the `--cache-from`
    /// values of `spec` themselves and, with `spec.report`, send back the
    /// records they used, which join `io` (and whose layers come back with
    /// the results) so that one `--cache-to` export holds every node's.
    /// `local` are the OCI layout directories of `--cache-from
    /// type=local` (`spec.local` their digests, in order), sent to the
    /// nodes with the context.
    pub fn with_cache(mut self, io: Arc<CacheIo>, spec: CacheSpec, local: Vec<PathBuf>) -> Self {
        self.cache = Some((io, spec, local));
        self
    }

    /// `--annotation` values for image manifests, which the nodes write
    /// into the manifests they build (and push).
    pub fn with_annotations(mut self, annotations: Vec<String>) -> Self {
        self.annotations = annotations;
        self
    }

    /// Stops every node's and this machine's work when fired.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Records what connecting found out about each node in `store`, as
    /// `builder inspect --bootstrap` does.
    pub fn with_status(mut self, store: builder::Store) -> Self {
        self.status = Some(store);
        self
    }

    fn say(&self, e: Event) {
        (self.events)(e)
    }

    /// Builds `targets`. A fired cancel gives [`Error::Cancelled`].
    pub fn run(&self, rt: &tokio::runtime::Runtime, opts: &BuildOptions, targets: &[Platform]) -> Result<Outcome> {
        let spec = self.spec(opts)?;
        let mut members = self.connect();
        self.record_status(&members);
        let offers: Vec<Offer> = members.iter().zip(&self.builder.nodes).map(|(m, n)| self.offer(m, n)).collect();
        let ids: Vec<NodeId> = members.iter().map(|m| m.id.clone()).collect();
        let connected: Vec<bool> = members.iter().map(|m| m.session.is_some()).collect();
        let (plan, events) = plan(&self.builder.name, &ids, &connected, &offers, targets, self.fallback)?;
        events.into_iter().for_each(|e| self.say(e));
        let here: Vec<Platform> = plan.here.iter().map(|(p, _)| p.clone()).collect();
        check_emulation(opts, &here, &Platform::host(), &probe_host)?;

        let steps = Steps::new(self.events.clone());
        let local_caches = self.cache.as_ref().map(|(_, _, l)| l.as_slice()).unwrap_or_default();
        let context = crate::context::of(opts, local_caches)?;
        let (jobs, local, stopped) = self.run_jobs(rt, (opts, &spec), context, &plan, &mut members, &steps);
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let mut images: HashMap<String, BuildResult> = HashMap::new();
        let mut failures = Vec::new();
        if let Some(r) = local {
            match r {
                Ok(r) => images.extend(r.images.into_iter().map(|i| (i.platform.format(), i))),
                Err(e) => failures.push(Error::Local(e)),
            }
        }
        let (jobs, errors): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.result.is_ok());
        let outcomes = errors
            .into_iter()
            .filter_map(|j| Some((members[j.member].id.clone(), formats(&j.platforms), j.result.err()?)))
            .collect();
        let (failed, fallback, events) = classify(outcomes, stopped, self.fallback);
        events.into_iter().for_each(|e| self.say(e));
        failures.extend(failed);
        if failures.is_empty() && !fallback.is_empty() {
            match self.build_fallback(rt, opts, &fallback, &steps) {
                Ok(r) => images.extend(r.images.into_iter().map(|i| (i.platform.format(), i))),
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            return Err(Error::Build { failures });
        }
        let pushers = self.fetch(jobs, &members, &mut images)?;
        let images = targets
            .iter()
            .map(|t| images.remove(&t.format()).ok_or_else(|| Error::Missing { platform: t.format() }))
            .collect::<Result<_>>()?;
        Ok(Outcome { images, pushers })
    }

    /// Connects to every ssh and docker-container node at once.
    fn connect(&self) -> Vec<Member> {
        std::thread::scope(|sc| {
            let handles: Vec<_> =
                self.builder
                    .nodes
                    .iter()
                    .map(|node| {
                        sc.spawn(move || {
                            let id = node.id();
                            let session = match &node.endpoint {
                                Endpoint::Local => return Member { id, session: None, down: None },
                                Endpoint::Docker { .. } => crate::docker_container::DockerNode::new(node)
                                    .and_then(|d| d.connect(&self.version)),
                                Endpoint::Ssh { .. } => match builder::worker_command(node) {
                                    Some(argv) => Session::connect(&id, &argv, &self.version),
                                    None => return Member { id, session: None, down: None },
                                },
                            };
                            match session {
                                Ok(s) => Member { id, session: Some(s), down: None },
                                Err(Error::Unreachable { reason, .. } | Error::Protocol { message: reason, .. }) => {
                                    Member { id, session: None, down: Some(reason) }
                                }
                                Err(e) => Member { id, session: None, down: Some(e.to_string()) },
                            }
                        })
                    })
                    .collect();
            handles.into_iter().map(|h| h.join().expect("connect thread")).collect()
        })
    }

    /// Stores what connecting found out about each ssh node (running with
    /// its platforms, or the error), so that `builder ls` shows it; a
    /// failure to store it is not the build's.
    fn record_status(&self, members: &[Member]) {
        let Some(store) = &self.status else { return };
        let mut updated = self.builder.clone();
        for (node, m) in updated.nodes.iter_mut().zip(members) {
            if let Some(reason) = &m.down {
                node.state = NodeStatus::Error { reason: format!("node {}: {reason}", m.id) };
            } else if let Some(probe) = m.session.as_ref().and_then(|s| s.probe.clone()) {
                if let Ok(probe) = serde_json::from_value(probe) {
                    node.state = NodeStatus::Running { probe };
                }
            }
        }
        if updated != *self.builder {
            let _ = store.put(&updated);
        }
    }

    /// What a node offers the scheduler: declared platforms, then what it
    /// reported now (or at its last bootstrap when it is down).
    fn offer(&self, m: &Member, node: &builder::Node) -> Offer {
        let probe: Option<Probe> = match (&m.session, &node.endpoint, &node.state) {
            (Some(s), _, _) => s.probe.clone().and_then(|p| serde_json::from_value(p).ok()),
            (None, Endpoint::Local, _) => Some(self.probe.clone()),
            (None, _, NodeStatus::Running { probe }) => Some(probe.clone()),
            _ => None,
        };
        let (native, emulated) = probe.map(|p| (p.native, p.emulated)).unwrap_or_default();
        Offer { name: node.name.clone(), pinned: node.platforms.clone(), native, emulated, down: m.down.clone() }
    }

    /// The nodes' share of the build request, with the values of its
    /// secrets (read here: a node has no access to this machine's files
    /// or environment).
    fn spec(&self, opts: &BuildOptions) -> Result<BuildSpec> {
        let mut secrets = BTreeMap::new();
        for (id, source) in &opts.secrets {
            let value = source.read().map_err(|e| Error::Secret { id: id.clone(), message: e.to_string() })?;
            secrets.insert(id.clone(), value);
        }
        Ok(BuildSpec {
            dockerfile: Digest::sha256(&opts.dockerfile),
            dockerfile_size: opts.dockerfile.len() as u64,
            dockerfile_name: opts.dockerfile_name.clone(),
            target: opts.target.clone(),
            build_args: opts.build_args.clone(),
            labels: opts.labels.clone(),
            platforms: Vec::new(),
            no_cache: opts.no_cache,
            pull: opts.resolve_mode == polyarch_builder::base::ResolveMode::Pull,
            compression: opts.compression.name().into(),
            compression_level: opts.compression_level,
            source_date_epoch: opts.source_date_epoch,
            rewrite_timestamp: opts.rewrite_timestamp,
            network: self.network.clone(),
            runtime: opts.runtime.clone(),
            snapshotter: self.snapshotter.clone(),
            no_cache_filter: opts.no_cache_filter.clone(),
            registry_config: self.builder.config.clone(),
            insecure: self.insecure,
            jobs: self.jobs,
            run: crate::wire::RunSpec::new(&opts.run, secrets),
            cache: self.cache.as_ref().map(|(_, c, _)| c.clone()).unwrap_or_default(),
            annotations: self.annotations.clone(),
            named_images: opts
                .named_contexts
                .iter()
                .filter_map(|(name, c)| match c {
                    NamedContext::Image(reference) => Some((name.clone(), reference.clone())),
                    _ => None,
                })
                .collect(),
            named_layouts: opts
                .named_contexts
                .iter()
                .filter_map(|(name, c)| match c {
                    NamedContext::Layout(l) => {
                        Some((name.clone(), crate::wire::LayoutRef { tag: l.tag.clone(), digest: l.digest.clone() }))
                    }
                    _ => None,
                })
                .collect(),
        })
    }

    fn local_builder(&self, sink: polyarch_builder::EventSink) -> MultiBuilder {
        let b = MultiBuilder::new(self.store.clone())
            .with_client(self.client.clone())
            .with_events(sink)
            .with_jobs(self.jobs.unwrap_or_else(polyarch_builder::multi::default_jobs));
        match &self.cache {
            Some((io, _, _)) => b.with_cache_io(io.clone()),
            None => b,
        }
    }

    /// Runs every node's share and this machine's at once. A platform
    /// failing here, or the cancel, stops the nodes. Returns the nodes'
    /// jobs, this machine's result and whether the nodes were stopped.
    fn run_jobs(
        &self,
        rt: &tokio::runtime::Runtime,
        (opts, spec): (&BuildOptions, &BuildSpec),
        (context, contents): (crate::context::Context, Vec<crate::context::Content>),
        plan: &Plan,
        members: &mut [Member],
        steps: &Steps,
    ) -> (Vec<Job>, Option<polyarch_builder::Result<MultiResult>>, bool) {
        let extra = [(spec.dockerfile.clone(), polyarch_builder::fs::Content::bytes(opts.dockerfile.clone()))];
        let (done, stop_nodes) = (AtomicBool::new(false), AtomicBool::new(false));
        let mut jobs = Vec::new();
        let mut local = None;
        std::thread::scope(|sc| {
            let mut handles = Vec::new();
            let mut killers = Vec::new();
            for (i, platforms) in plan.remote.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                let Some(mut session) = members[i].session.take() else { continue };
                killers.push(session.killer());
                let mut spec = spec.clone();
                spec.platforms = formats(platforms);
                let (context, contents, extra, steps) = (context.clone(), &contents, &extra, steps.clone());
                let agents = &opts.run.ssh;
                let (node, platforms) = (members[i].id.clone(), platforms.clone());
                handles.push(sc.spawn(move || {
                    let result = session.send_context(context, contents, extra).and_then(|sent| {
                        steps.say(Event::ContextSent { node: node.clone(), sent });
                        session.build(&spec, agents, &mut |e| steps.step(i + 1, &node.name, e))
                    });
                    Job { member: i, platforms, session, result }
                }));
            }
            let (done, stop_nodes, cancel) = (&done, &stop_nodes, &self.cancel);
            sc.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if cancel.is_cancelled() || stop_nodes.load(Ordering::SeqCst) {
                        killers.iter().for_each(|k| k.kill());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            if !plan.here.is_empty() {
                let names: HashMap<String, String> = plan.here.iter().map(|(p, n)| (p.format(), n.clone())).collect();
                let sink = steps.sink(0, move |p| {
                    p.and_then(|p| names.get(&p.format())).cloned().unwrap_or_else(|| "local".into())
                });
                let here: Vec<Platform> = plan.here.iter().map(|(p, _)| p.clone()).collect();
                let r = rt.block_on(self.local_builder(sink).build(opts, &here));
                // A platform failed here: the nodes' work is of no use.
                stop_nodes.store(r.is_err(), Ordering::SeqCst);
                local = Some(r);
            }
            for h in handles {
                jobs.push(h.join().expect("node thread"));
            }
            done.store(true, Ordering::SeqCst);
        });
        (jobs, local, stop_nodes.load(Ordering::SeqCst))
    }

    /// Builds here the platforms of nodes that failed.
    fn build_fallback(
        &self,
        rt: &tokio::runtime::Runtime,
        opts: &BuildOptions,
        platforms: &[Platform],
        steps: &Steps,
    ) -> Result<MultiResult> {
        check_emulation(opts, platforms, &Platform::host(), &probe_host)?;
        let sink = steps.sink(usize::MAX, |_| "local".into());
        Ok(rt.block_on(self.local_builder(sink).build(opts, platforms))?)
    }

    /// Fetches what the local store lacks of every node's images: every
    /// blob, or without layers only manifests and configs.
    fn fetch(&self, jobs: Vec<Job>, members: &[Member], images: &mut HashMap<String, BuildResult>) -> Result<Pushers> {
        let mut pushers = Vec::new();
        for job in jobs {
            let Ok((built, report)) = job.result else { continue };
            let mut session = job.session;
            let mut want: Vec<Descriptor> = Vec::new();
            let mut records = Vec::new();
            if let (Some(report), Some((io, spec, _))) = (report, &self.cache) {
                let node = members[job.member].id.to_string();
                for message in report.warnings {
                    io.warn(CacheWarning::Node { node: node.clone(), message });
                }
                if spec.report {
                    records.extend(report.records.iter().filter_map(|e| Some(e.layer.as_ref()?.layer().desc)));
                }
                io.absorb(report.records, report.finals);
            }
            let mut descs = Vec::new();
            for img in &built {
                descs.extend([img.manifest.clone(), img.config.clone()]);
                if self.layers {
                    descs.extend(img.layers.iter().map(|(d, _)| d.clone()));
                }
            }
            descs.extend(records);
            for d in descs {
                if !polyarch_store::BlobSource::exists(&self.store, &d.digest)?
                    && !want.iter().any(|w| w.digest == d.digest)
                {
                    want.push(d);
                }
            }
            let bytes = session.fetch(&want, &self.store)?;
            self.say(Event::Fetched { node: members[job.member].id.clone(), blobs: want.len(), bytes });
            for img in &built {
                images.insert(img.platform.clone(), self.result_of(session.node(), img)?);
            }
            pushers.push((session, built.iter().map(|i| i.manifest.digest.clone()).collect()));
        }
        Ok(Pushers::new(pushers))
    }

    /// A node's result as a local build result (its config read back).
    fn result_of(&self, node: &NodeId, img: &Built) -> Result<BuildResult> {
        let config = self.store.read_bytes(&img.config, 8 << 20)?;
        let platform = Platform::parse(&img.platform).map_err(|e| Error::Protocol {
            node: node.clone(),
            message: format!("node platform {:?}: {e}", img.platform),
        })?;
        Ok(BuildResult {
            manifest: img.manifest.clone(),
            config: img.config.clone(),
            image: Image::from_base(&config)?,
            layers: img
                .layers
                .iter()
                .map(|(desc, diff_id)| Layer { desc: desc.clone(), diff_id: diff_id.clone() })
                .collect(),
            platform,
            executed: img.executed,
            cached: img.cached,
            // Not checked for a build on a node: its layers stay there.
            foreign: Vec::new(),
        })
    }
}

fn formats(platforms: &[Platform]) -> Vec<String> {
    platforms.iter().map(|p| p.format()).collect()
}

/// Places `targets` on the nodes (`ids`, of which `connected` are ssh
/// nodes with a session; the others are local or down) and says so.
/// Platforms no node can take fail with why, unless `fallback` builds
/// them here.
pub(crate) fn plan(
    builder: &str,
    ids: &[NodeId],
    connected: &[bool],
    offers: &[Offer],
    targets: &[Platform],
    fallback: bool,
) -> Result<(Plan, Vec<Event>)> {
    let mut plan = Plan { here: Vec::new(), remote: vec![Vec::new(); ids.len()] };
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for (t, placement) in targets.iter().zip(schedule::assign(targets, offers)) {
        let platform = t.format();
        match placement {
            Placement::Node { node, how } => {
                events.push(Event::Placed { platform, node: ids[node].clone(), how });
                match connected[node] {
                    true => plan.remote[node].push(t.clone()),
                    false => plan.here.push((t.clone(), ids[node].name.clone())),
                }
            }
            Placement::Down { node, reason } if fallback => {
                let why = Fallback::Down { node: ids[node].clone(), reason };
                events.push(Event::Fallback { platforms: vec![platform], why });
                plan.here.push((t.clone(), "local".into()));
            }
            Placement::Down { node, reason } => {
                problems.push(Unplaced::Down { platform, node: ids[node].clone(), reason })
            }
            Placement::Nowhere if fallback => {
                let why = Fallback::Nowhere { builder: builder.to_string() };
                events.push(Event::Fallback { platforms: vec![platform], why });
                plan.here.push((t.clone(), "local".into()));
            }
            Placement::Nowhere => {
                let offers = offers
                    .iter()
                    .map(|o| (o.name.clone(), o.pinned.iter().chain(&o.native).chain(&o.emulated).cloned().collect()))
                    .collect();
                problems.push(Unplaced::Nowhere { platform, builder: builder.to_string(), offers })
            }
        }
    }
    match problems.is_empty() {
        true => Ok((plan, events)),
        false => Err(Error::Unplaced { builder: builder.to_string(), problems }),
    }
}

/// Sorts the nodes' outcomes (node, its platforms, its error): a node that
/// failed itself is a failure when the nodes were `stopped` (a platform
/// built here failed), its platforms build here with `fallback`, and any
/// other error fails the build. Returns the failures, the platforms to
/// build here and what to say.
pub(crate) fn classify(
    outcomes: Vec<(NodeId, Vec<String>, Error)>,
    stopped: bool,
    fallback: bool,
) -> (Vec<Error>, Vec<Platform>, Vec<Event>) {
    let (mut failures, mut here, mut events) = (Vec::new(), Vec::new(), Vec::new());
    for (node, platforms, e) in outcomes {
        if e.is_node_failure() && stopped {
            failures.push(Error::Stopped { node, platforms });
        } else if e.is_node_failure() && fallback {
            let reason = match e {
                Error::Lost { reason, .. } | Error::Unreachable { reason, .. } => reason,
                Error::Protocol { message, .. } => message,
                other => other.to_string(),
            };
            here.extend(platforms.iter().filter_map(|p| Platform::parse(p).ok()));
            events.push(Event::Fallback { platforms, why: Fallback::Lost { node, reason } });
        } else {
            failures.push(e.for_platforms(&platforms));
        }
    }
    (failures, here, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::How;
    use crate::wire::WireError;

    fn id(name: &str) -> NodeId {
        NodeId { name: name.into(), endpoint: format!("ssh://{name}") }
    }

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn offer(name: &str, pinned: &[&str], down: Option<&str>) -> Offer {
        let pinned = pinned.iter().map(|s| s.to_string()).collect();
        Offer { name: name.into(), pinned, down: down.map(String::from), ..Offer::default() }
    }

    #[test]
    fn platforms_go_to_connected_nodes_or_build_here_for_local_ones() {
        let offers = [offer("here", &["linux/amd64"], None), offer("far", &["linux/arm64"], None)];
        let (plan, events) =
            plan("b", &[id("here"), id("far")], &[false, true], &offers, &[p("linux/amd64"), p("linux/arm64")], false)
                .unwrap();
        assert_eq!(plan.here, [(p("linux/amd64"), "here".to_string())]);
        assert_eq!(plan.remote, [vec![], vec![p("linux/arm64")]]);
        assert_eq!(events[1], Event::Placed { platform: "linux/arm64".into(), node: id("far"), how: How::Pinned });
    }

    #[test]
    fn down_nodes_and_unoffered_platforms_fail_typed_or_fall_back() {
        let offers = [offer("dead", &["linux/arm64"], Some("refused")), offer("a", &["linux/amd64"], None)];
        let ids = [id("dead"), id("a")];
        let targets = [p("linux/arm64"), p("linux/amd64"), p("linux/riscv64")];
        let err = plan("b", &ids, &[false, true], &offers, &targets, false).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Unplaced);
        let Error::Unplaced { problems, .. } = &err else { panic!("{err:?}") };
        assert_eq!(
            problems[0],
            Unplaced::Down { platform: "linux/arm64".into(), node: id("dead"), reason: "refused".into() }
        );
        assert!(matches!(&problems[1], Unplaced::Nowhere { platform, .. } if platform == "linux/riscv64"));
        assert_eq!(problems.len(), 2);

        let (plan, events) = plan("b", &ids, &[false, true], &offers, &targets, true).unwrap();
        assert_eq!(plan.here, [(p("linux/arm64"), "local".to_string()), (p("linux/riscv64"), "local".to_string())]);
        assert_eq!(plan.remote[1], [p("linux/amd64")]);
        let why = Fallback::Down { node: id("dead"), reason: "refused".into() };
        assert_eq!(events[0], Event::Fallback { platforms: vec!["linux/arm64".into()], why });
    }

    fn lost(node: &str) -> Error {
        Error::Lost { node: id(node), platforms: vec![], reason: "the worker went away".into() }
    }

    fn failed(node: &str) -> Error {
        let error = WireError::Build { platform: Some("linux/s390x".into()), message: "exit code: 3".into() };
        Error::Failed { node: id(node), platforms: vec![], error: Box::new(error) }
    }

    #[test]
    fn node_failures_fall_back_and_build_errors_fail() {
        let outcomes = || {
            vec![
                (id("a"), vec!["linux/arm64".to_string()], lost("a")),
                (id("b"), vec!["linux/s390x".to_string(), "linux/ppc64le".to_string()], failed("b")),
            ]
        };
        let (failures, here, events) = classify(outcomes(), false, false);
        assert_eq!(
            failures.iter().map(Error::kind).collect::<Vec<_>>(),
            [crate::error::ErrorKind::NodeFailed, crate::error::ErrorKind::Build]
        );
        assert_eq!(failures[0].to_string(), "linux/arm64 on node a (ssh://a): the worker went away");
        assert_eq!(failures[1].platforms(), ["linux/s390x"]);
        assert!(here.is_empty() && events.is_empty());

        let (failures, here, events) = classify(outcomes(), false, true);
        assert_eq!(failures.len(), 1, "a build error is not retried here");
        assert_eq!(failures[0].node(), Some(&id("b")));
        assert_eq!(here, [p("linux/arm64")]);
        let why = Fallback::Lost { node: id("a"), reason: "the worker went away".into() };
        assert_eq!(events, [Event::Fallback { platforms: vec!["linux/arm64".into()], why }]);

        let (failures, here, _) = classify(outcomes(), true, true);
        assert!(matches!(&failures[0], Error::Stopped { node, .. } if *node == id("a")), "{failures:?}");
        assert_eq!(failures[1].kind(), crate::error::ErrorKind::Build);
        assert!(here.is_empty());
    }
}
