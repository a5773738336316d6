//! `polyarch build` on a builder with remote nodes, as buildx sends each
//! platform to a node of the builder: every ssh node is started with
//! `polyarch worker --stdio` (see `polyarch_remote`), platforms are placed
//! by `polyarch_remote::schedule`, only the context files the Dockerfile
//! reads travel (each content once, and only when the node lacks it),
//! nodes build into their own stores, and results come back as the content
//! the local store lacks. With `--push` every node pushes its own images
//! and the index is pushed here once all of them exist; nothing is pushed
//! when any platform failed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use polyarch_build::export::IndexImage;
use polyarch_build::multi::{check_emulation, probe_host, renumbered, MultiBuilder, MultiResult, StepNumbers};
use polyarch_build::{config::Image, BuildOptions, BuildResult, Compression, EventSink, Layer};
use polyarch_exec::Cancel;
use polyarch_oci::{Descriptor, Digest, Platform, Reference};
use polyarch_registry::Client;
use polyarch_remote::schedule::{self, How, Offer, Placement};
use polyarch_remote::session::Session;
use polyarch_remote::wire::{BuildSpec, Built};
use polyarch_remote::Error as RemoteError;
use polyarch_store::Store;

use super::multi::Multi;
use super::{BuildArgs, OutputSpec, Progress};
use crate::builders::{Builder, Endpoint, Node, NodeStatus, VERSION};
use crate::cmd::GlobalArgs;

/// What a build on nodes needs from the command.
pub(super) struct Nodes<'a> {
    pub global: &'a GlobalArgs,
    pub rt: &'a tokio::runtime::Runtime,
    pub store: &'a Store,
    pub progress: &'a Arc<Progress>,
    pub outputs: &'a [OutputSpec],
    pub tags: &'a [String],
}

/// A node of the builder, connected or not.
struct Member<'b> {
    node: &'b Node,
    /// `name (endpoint)`.
    label: String,
    session: Option<Session>,
    down: Option<String>,
}

/// Step numbers of every node in one sequence, and step names that say
/// which node built which platform (`[linux/arm64@arm1 stage-0 2/3] ...`).
struct Steps {
    progress: Arc<Progress>,
    numbers: Arc<Mutex<StepNumbers>>,
}

/// `[linux/arm64 stage-0 2/3] RUN x` on `arm1` → `[linux/arm64@arm1 stage-0 2/3] RUN x`.
fn on_node(name: &str, node: &str) -> String {
    match name.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find([' ', ']']).unwrap_or(rest.len());
            format!("[{}@{node}{}", &rest[..end], &rest[end..])
        }
        None => format!("[{node}] {name}"),
    }
}

impl Steps {
    /// The sink of build `source`, whose steps are named with `node(name)`.
    fn sink(&self, source: usize, node: impl Fn(&str) -> String + Send + Sync + 'static) -> EventSink {
        let progress = self.progress.clone();
        let out: EventSink = Arc::new(move |e| progress.lib_event(e));
        renumbered(out, self.numbers.clone(), source, move |name| on_node(name, &node(name)))
    }
}

/// What a node offers the scheduler: declared platforms, then what it
/// reported now (or at its last bootstrap when it is down).
fn offer_of(m: &Member<'_>, local: &serde_json::Value) -> Offer {
    let probe: Option<serde_json::Value> = match (&m.session, &m.node.endpoint, &m.node.state) {
        (Some(s), _, _) => s.probe.clone(),
        (None, Endpoint::Local, _) => Some(local.clone()),
        (None, _, NodeStatus::Running { probe }) => serde_json::to_value(probe).ok(),
        _ => None,
    };
    let list = |key: &str| -> Vec<String> {
        probe
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    Offer {
        name: m.node.name.clone(),
        pinned: m.node.platforms.clone(),
        native: list("native"),
        emulated: list("emulated"),
        down: m.down.clone(),
    }
}

/// Stores what connecting found out about each ssh node (running with its
/// platforms, or the error), as `builder inspect --bootstrap` would, so
/// that `builder ls` shows it; a failure to store it is not the build's.
fn record_status(b: &Builder, members: &[Member<'_>]) {
    let mut updated = b.clone();
    for (node, m) in updated.nodes.iter_mut().zip(members) {
        if let Some(reason) = &m.down {
            node.state = NodeStatus::Error { reason: format!("node {}: {reason}", m.label) };
        } else if let Some(probe) = m.session.as_ref().and_then(|s| s.probe.clone()) {
            if let Ok(probe) = serde_json::from_value(probe) {
                node.state = NodeStatus::Running { probe };
            }
        }
    }
    if updated != *b {
        if let Ok(store) = crate::builders::Store::from_env() {
            let _ = store.put(&updated);
        }
    }
}

/// A remote node's work and its outcome.
struct Job {
    member: usize,
    platforms: Vec<Platform>,
    session: Session,
    result: std::result::Result<Vec<Built>, RemoteError>,
}

impl Nodes<'_> {
    fn say(&self, line: &str) {
        if matches!(self.progress.mode.as_str(), "plain" | "tty") {
            eprintln!("{line}");
        }
    }

    fn client(&self, b: &Builder, insecure: bool) -> Result<Client> {
        match &b.config {
            Some(text) => {
                let config = polyarch_registry::RegistryConfig::parse(text)
                    .map_err(|e| anyhow!("builder {}: invalid config: {e}", b.name))?;
                crate::cmd::context::client_with(config, insecure)
            }
            None => crate::cmd::context::client(self.global, insecure),
        }
    }

    /// Connects to every ssh node at once.
    fn connect<'b>(&self, b: &'b Builder) -> Vec<Member<'b>> {
        std::thread::scope(|sc| {
            let handles: Vec<_> = b
                .nodes
                .iter()
                .map(|node| {
                    sc.spawn(move || {
                        let label = format!("{} ({})", node.name, node.endpoint);
                        let Some(argv) = crate::builders::worker_command(node) else {
                            return Member { node, label, session: None, down: None };
                        };
                        match Session::connect(&label, &argv, VERSION) {
                            Ok(s) => Member { node, label, session: Some(s), down: None },
                            Err(e) => {
                                let reason = match e {
                                    RemoteError::Node { reason, .. } => reason,
                                    other => other.to_string(),
                                };
                                Member { node, label, session: None, down: Some(reason) }
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("connect thread")).collect()
        })
    }

    pub fn build(
        &self,
        b: &Builder,
        opts: &BuildOptions,
        targets: &[Platform],
        a: &BuildArgs,
        cancel: &Cancel,
    ) -> Result<u8> {
        if !opts.secrets.is_empty() {
            bail!("--secret is not supported with builder {:?}: its remote nodes would need the secret values", b.name);
        }
        let mut members = self.connect(b);
        record_status(b, &members);
        let local_probe = serde_json::to_value(crate::cmd::worker::local_probe()?)?;
        let offers: Vec<Offer> = members.iter().map(|m| offer_of(m, &local_probe)).collect();
        let placements = schedule::assign(targets, &offers);

        // Where each platform goes: (platform, node name) built here, and
        // per remote member its platforms.
        let mut here: Vec<(Platform, String)> = Vec::new();
        let mut remote: Vec<Vec<Platform>> = members.iter().map(|_| Vec::new()).collect();
        let mut problems = Vec::new();
        for (t, placement) in targets.iter().zip(&placements) {
            let t_name = t.format();
            match placement {
                Placement::Node { node, how } => {
                    let m = &members[*node];
                    let how = match how {
                        How::Pinned => "declared",
                        How::Native => "native",
                        How::Emulated => "emulated",
                    };
                    self.say(&format!("{t_name} builds on node {} ({how})", m.label));
                    if m.session.is_some() {
                        remote[*node].push(t.clone());
                    } else {
                        here.push((t.clone(), m.node.name.clone()));
                    }
                }
                Placement::Down { node, reason } if a.fallback_emulation => {
                    eprintln!(
                        "WARNING: node {} is unreachable ({reason}): {t_name} builds here instead (--fallback-emulation)",
                        members[*node].label
                    );
                    here.push((t.clone(), "local".into()));
                }
                Placement::Down { node, reason } => {
                    problems.push(format!("{t_name}: node {} is unreachable: {reason}", members[*node].label))
                }
                Placement::Nowhere if a.fallback_emulation => {
                    eprintln!(
                        "WARNING: no node of builder {} builds {t_name}: it builds here instead (--fallback-emulation)",
                        b.name
                    );
                    here.push((t.clone(), "local".into()));
                }
                Placement::Nowhere => {
                    let nodes: Vec<String> = offers
                        .iter()
                        .map(|o| {
                            let all: Vec<&str> =
                                o.pinned.iter().chain(&o.native).chain(&o.emulated).map(String::as_str).collect();
                            format!("{} [{}]", o.name, all.join(", "))
                        })
                        .collect();
                    problems.push(format!("{t_name}: no node of builder {} builds it ({})", b.name, nodes.join("; ")));
                }
            }
        }
        if !problems.is_empty() {
            self.progress.finish(false);
            bail!(
                "builder {:?} cannot build every platform (--fallback-emulation builds them here):\n  {}",
                b.name,
                problems.join("\n  ")
            );
        }
        let here_platforms: Vec<Platform> = here.iter().map(|(p, _)| p.clone()).collect();
        check_emulation(opts, &here_platforms, &Platform::host(), &probe_host)?;

        let client = self.client(b, a.insecure)?;
        let spec = self.spec(b, opts, a)?;
        let dockerfile = Arc::new(opts.dockerfile.clone());
        let df_digest = spec.dockerfile.clone();
        let needed = polyarch_remote::context::needed(&opts.dockerfile, &opts.context);
        let (entries, contents) = polyarch_remote::context::entries(&opts.context, &needed);
        let steps = Steps { progress: self.progress.clone(), numbers: Arc::default() };

        let mut jobs: Vec<Job> = Vec::new();
        let mut local_result: Option<polyarch_build::Result<MultiResult>> = None;
        let done = AtomicBool::new(false);
        let stop_nodes = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let mut handles = Vec::new();
            let mut killers = Vec::new();
            for (i, platforms) in remote.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                let mut session = members[i].session.take().expect("connected");
                killers.push(session.killer());
                let mut spec = spec.clone();
                spec.platforms = platforms.iter().map(|p| p.format()).collect();
                let (entries, contents, dockerfile, df_digest) =
                    (entries.clone(), &contents, dockerfile.clone(), df_digest.clone());
                let node = members[i].node.name.clone();
                let sink = steps.sink(i + 1, move |_| node.clone());
                let label = members[i].label.clone();
                let progress = self.progress.clone();
                let platforms = platforms.clone();
                handles.push(sc.spawn(move || {
                    let sent = session.send_context(entries, contents, &[(df_digest, dockerfile)]);
                    let result = sent.and_then(|sent| {
                        if matches!(progress.mode.as_str(), "plain" | "tty") {
                            eprintln!(
                                "node {label}: context of {} entries, {} contents sent ({} bytes), {} already there",
                                sent.entries, sent.blobs, sent.bytes, sent.reused
                            );
                        }
                        session.build(&spec, &mut |e| sink(e))
                    });
                    Job { member: i, platforms, session, result }
                }));
            }
            let (done, stop_nodes) = (&done, &stop_nodes);
            sc.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if cancel.is_cancelled() || stop_nodes.load(Ordering::SeqCst) {
                        killers.iter().for_each(|k| k.kill());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            if !here.is_empty() {
                let names: HashMap<String, String> = here.iter().map(|(p, n)| (p.format(), n.clone())).collect();
                // Step names start with the platform, which says the node.
                let sink = steps.sink(0, move |name| {
                    let platform = name.strip_prefix('[').and_then(|r| r.split([' ', ']']).next());
                    platform.and_then(|p| names.get(p)).cloned().unwrap_or_else(|| "local".into())
                });
                let builder = MultiBuilder::new(self.store.clone())
                    .with_client(client.clone())
                    .with_events(sink)
                    .with_jobs(a.jobs.unwrap_or_else(polyarch_build::multi::default_jobs));
                let r = self.rt.block_on(builder.build(opts, &here_platforms));
                // A platform failed here: the nodes' work is of no use.
                stop_nodes.store(r.is_err(), Ordering::SeqCst);
                local_result = Some(r);
            }
            for h in handles {
                jobs.push(h.join().expect("node thread"));
            }
            done.store(true, Ordering::SeqCst);
        });
        if cancel.is_cancelled() {
            self.progress.finish(false);
            return Ok(130);
        }

        // Failures: node failures go to --fallback-emulation; the rest fail
        // the build, before anything is exported or pushed.
        let mut failures = Vec::new();
        let mut fallback: Vec<Platform> = Vec::new();
        let mut images: HashMap<String, BuildResult> = HashMap::new();
        if let Some(r) = local_result {
            match r {
                Ok(r) => images.extend(r.images.into_iter().map(|i| (i.platform.format(), i))),
                Err(e) => failures.push(format!("{e}")),
            }
        }
        for job in &jobs {
            let label = &members[job.member].label;
            let list = job.platforms.iter().map(|p| p.format()).collect::<Vec<_>>().join(", ");
            match &job.result {
                Ok(_) => {}
                Err(e) if e.is_node_failure() && stop_nodes.load(Ordering::SeqCst) => {
                    failures.push(format!("{list} on node {label}: stopped, as a platform built here failed"))
                }
                Err(e) if e.is_node_failure() && a.fallback_emulation => {
                    eprintln!("WARNING: {e}: {list} builds here instead (--fallback-emulation)");
                    fallback.extend(job.platforms.iter().cloned());
                }
                Err(RemoteError::Node { reason, .. }) => failures.push(format!("{list} on node {label}: {reason}")),
                Err(RemoteError::Build { platform, message }) => {
                    let which = platform.clone().unwrap_or(list);
                    failures.push(format!("{which} on node {label}: {message}"))
                }
                Err(e) => failures.push(format!("{list} on node {label}: {e}")),
            }
        }
        if failures.is_empty() && !fallback.is_empty() {
            check_emulation(opts, &fallback, &Platform::host(), &probe_host)?;
            let builder = MultiBuilder::new(self.store.clone())
                .with_client(client.clone())
                .with_events(steps.sink(usize::MAX, |_| "local".into()))
                .with_jobs(a.jobs.unwrap_or_else(polyarch_build::multi::default_jobs));
            match self.rt.block_on(builder.build(opts, &fallback)) {
                Ok(r) => images.extend(r.images.into_iter().map(|i| (i.platform.format(), i))),
                Err(e) => failures.push(format!("{e}")),
            }
        }
        if !failures.is_empty() {
            self.progress.finish(false);
            bail!("the build failed; nothing was exported or pushed:\n  {}", failures.join("\n  "));
        }

        // Results come back: every blob the local store lacks, or with
        // `--push` alone only manifests and configs (nodes push the rest).
        let docker_types = self.outputs.iter().any(|o| o.oci_mediatypes == Some(false));
        let push_only = self.outputs.iter().all(|o| o.kind == "image" && o.push) && !a.load;
        let full = docker_types || !push_only;
        let mut pushers: Vec<Mutex<(Session, Vec<Digest>)>> = Vec::new();
        for job in jobs {
            let Ok(built) = job.result else { continue };
            let mut session = job.session;
            let mut want: Vec<Descriptor> = Vec::new();
            for img in &built {
                let mut descs = vec![img.manifest.clone(), img.config.clone()];
                if full {
                    descs.extend(img.layers.iter().map(|(d, _)| d.clone()));
                }
                for d in descs {
                    if !polyarch_store::BlobSource::exists(self.store, &d.digest)?
                        && !want.iter().any(|w| w.digest == d.digest)
                    {
                        want.push(d);
                    }
                }
            }
            let bytes = session.fetch(&want, self.store).map_err(|e| anyhow!("{e}"))?;
            self.say(&format!(
                "node {}: {} result blobs fetched ({bytes} bytes)",
                members[job.member].label,
                want.len()
            ));
            for img in &built {
                images.insert(img.platform.clone(), self.result_of(img)?);
            }
            pushers.push(Mutex::new((session, built.iter().map(|i| i.manifest.digest.clone()).collect())));
        }
        let results: Vec<BuildResult> = targets
            .iter()
            .map(|t| images.remove(&t.format()).ok_or_else(|| anyhow!("{}: no result", t.format())))
            .collect::<Result<_>>()?;

        let code = if targets.len() == 1 {
            let remote_push = |r: &BuildResult, names: &[String]| self.push_image(&client, &pushers, r, names);
            let push: Option<&super::PushImage<'_>> = if full { None } else { Some(&remote_push) };
            super::export_single(
                self.rt,
                &client,
                self.store,
                self.progress,
                self.outputs,
                self.tags,
                &results[0],
                a,
                push,
            )
        } else {
            let remote_push = |img: &IndexImage, names: &[String]| self.push(&client, &pushers, img, names);
            let multi = Multi {
                rt: self.rt,
                client: &client,
                store: self.store,
                progress: self.progress,
                outputs: self.outputs,
                tags: self.tags,
                push: if full && docker_types { None } else { Some(&remote_push) },
                tag: full,
            };
            multi.export(&MultiResult { images: results }, a)
        };
        for p in pushers {
            if let Ok((s, _)) = p.into_inner() {
                s.close();
            }
        }
        code
    }

    /// The node's share of the build request.
    fn spec(&self, b: &Builder, opts: &BuildOptions, a: &BuildArgs) -> Result<BuildSpec> {
        Ok(BuildSpec {
            dockerfile: Digest::sha256(&opts.dockerfile),
            dockerfile_size: opts.dockerfile.len() as u64,
            dockerfile_name: opts.dockerfile_name.clone(),
            target: opts.target.clone(),
            build_args: opts.build_args.clone(),
            labels: opts.labels.clone(),
            platforms: Vec::new(),
            no_cache: opts.no_cache,
            pull: opts.resolve_mode == polyarch_build::base::ResolveMode::Pull,
            compression: match opts.compression {
                Compression::Zstd => "zstd".into(),
                _ => "gzip".into(),
            },
            source_date_epoch: opts.source_date_epoch,
            rewrite_timestamp: opts.rewrite_timestamp,
            network: a.network.clone(),
            runtime: opts.runtime.clone(),
            snapshotter: a.snapshotter.clone(),
            no_cache_filter: opts.no_cache_filter.clone(),
            registry_config: b.config.clone(),
            insecure: a.insecure,
            jobs: a.jobs,
        })
    }

    /// A node's result as a local build result (its config read back).
    fn result_of(&self, img: &Built) -> Result<BuildResult> {
        let config = self.store.read_bytes(&img.config, 8 << 20).context("reading a node's image config")?;
        let platform = Platform::parse(&img.platform).with_context(|| format!("node platform {:?}", img.platform))?;
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
        })
    }

    /// Pushes a one-platform image under every name: the node that built
    /// it pushes its blobs and manifest by digest, then each name is set
    /// here; an image built here is pushed from the local store.
    fn push_image(
        &self,
        client: &Client,
        pushers: &[Mutex<(Session, Vec<Digest>)>],
        r: &BuildResult,
        names: &[String],
    ) -> Result<()> {
        let digest = &r.manifest.digest;
        let Some(p) = pushers.iter().find(|p| p.lock().is_ok_and(|p| p.1.contains(digest))) else {
            return Ok(self.rt.block_on(polyarch_build::export::push(client, self.store, r, names))?);
        };
        {
            let mut guard = p.lock().map_err(|_| anyhow!("a node session broke"))?;
            let session = &mut guard.0;
            let node = session.node().to_string();
            session.push(names, std::slice::from_ref(digest)).map_err(|e| anyhow!("node {node}: {e}"))?;
        }
        let raw = self.store.get_manifest(&r.manifest)?;
        self.rt.block_on(async {
            for n in names {
                let reference = Reference::parse_normalized(n)
                    .with_context(|| format!("invalid reference {n:?}"))?
                    .with_default_tag();
                client.put_manifest(&reference, &raw).await.with_context(|| format!("pushing {reference}"))?;
            }
            Ok(())
        })
    }

    /// Pushes an index: nodes push their children, this machine pushes the
    /// children it built and then the index under every name.
    fn push(
        &self,
        client: &Client,
        pushers: &[Mutex<(Session, Vec<Digest>)>],
        img: &IndexImage,
        names: &[String],
    ) -> Result<()> {
        let remote: BTreeSet<Digest> = pushers.iter().filter_map(|p| p.lock().ok()).flat_map(|p| p.1.clone()).collect();
        let outcomes: Vec<Result<()>> = std::thread::scope(|sc| {
            let handles: Vec<_> = pushers
                .iter()
                .map(|p| {
                    sc.spawn(move || {
                        let mut guard = p.lock().map_err(|_| anyhow!("a node session broke"))?;
                        let (session, manifests) = &mut *guard;
                        let node = session.node().to_string();
                        session.push(names, manifests).map_err(|e| anyhow!("node {node}: {e}"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a push thread failed")))).collect()
        });
        outcomes.into_iter().collect::<Result<Vec<()>>>()?;
        self.rt.block_on(async {
            for n in names {
                let reference = Reference::parse_normalized(n)
                    .with_context(|| format!("invalid reference {n:?}"))?
                    .with_default_tag();
                for c in img.children.iter().filter(|c| !remote.contains(&c.result.manifest.digest)) {
                    let at = reference.with_digest(c.result.manifest.digest.clone());
                    polyarch_build::export::push_image(client, self.store, &c.result, &at).await?;
                }
                client.put_manifest(&reference, &img.raw).await.with_context(|| format!("pushing {reference}"))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_carry_the_node() {
        assert_eq!(on_node("[linux/arm64 stage-0 2/3] RUN x", "arm1"), "[linux/arm64@arm1 stage-0 2/3] RUN x");
        assert_eq!(on_node("[linux/arm64] FROM", "n"), "[linux/arm64@n] FROM");
        assert_eq!(on_node("exporting", "n"), "[n] exporting");
    }
}
