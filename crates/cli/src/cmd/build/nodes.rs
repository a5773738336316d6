//! `polyarch build` on a builder with remote nodes: the build itself is
//! `polyarch_remote::NodeBuild` (placement, fallback to emulation, failure
//! classification, results); this module gives it the command's options,
//! renders its events as buildx does, and exports the results, with nodes
//! pushing what they built and the index pushed here once all of it
//! exists.

use std::sync::Arc;

use anyhow::Result;
use polyarch_builder::export::Built;
use polyarch_builder::multi::MultiResult;
use polyarch_builder::output::{Output, OutputKind};
use polyarch_builder::{BuildOptions, BuildResult};
use polyarch_exec::Cancel;
use polyarch_oci::Platform;
use polyarch_registry::Client;
use polyarch_remote::builder::{self, Builder};
use polyarch_remote::event::{Event, Fallback};
use polyarch_remote::push::Pushers;
use polyarch_remote::schedule::How;
use polyarch_remote::{ErrorKind, NodeBuild};
use polyarch_store::Store;

use super::export::Exporter;
use super::multi::Multi;
use super::{BuildArgs, Progress};
use crate::cmd::GlobalArgs;

/// What a build on nodes needs from the command.
pub(super) struct Nodes<'a> {
    pub global: &'a GlobalArgs,
    pub rt: &'a tokio::runtime::Runtime,
    pub store: &'a Store,
    pub progress: &'a Arc<Progress>,
    pub outputs: &'a [Output],
    pub tags: &'a [String],
    pub annotations: &'a [polyarch_index::Annotation],
    /// `--cache-from` and `--cache-to`, and what the nodes do with them.
    pub cache: Option<&'a super::cache_flags::Traffic>,
    /// An index for one platform too (`BUILDKIT_MULTI_PLATFORM`).
    pub multi_platform: bool,
}

/// What an event of a build on nodes prints: plain and tty progress show
/// placements, transfers and steps; warnings are always shown.
fn render(progress: &Progress, e: Event) {
    let chatty = progress.chatty();
    match e {
        Event::Step(event) => progress.lib_event(*event),
        Event::Placed { platform, node, how } if chatty => {
            let how = match how {
                How::Pinned => "declared",
                How::Native => "native",
                How::Emulated => "emulated",
            };
            eprintln!("{platform} builds on node {node} ({how})");
        }
        Event::Fallback { platforms, why } => {
            let list = platforms.join(", ");
            match why {
                Fallback::Down { node, reason } => eprintln!(
                    "WARNING: node {node} is unreachable ({reason}): {list} builds here instead (--fallback-emulation)"
                ),
                Fallback::Nowhere { builder } => eprintln!(
                    "WARNING: no node of builder {builder} builds {list}: it builds here instead (--fallback-emulation)"
                ),
                Fallback::Lost { node, reason } => {
                    eprintln!("WARNING: node {node}: {reason}: {list} builds here instead (--fallback-emulation)")
                }
                _ => eprintln!("WARNING: {list} builds here instead (--fallback-emulation)"),
            }
        }
        Event::ContextSent { node, sent } if chatty => eprintln!(
            "node {node}: context of {} entries, {} contents sent ({} bytes), {} already there",
            sent.entries, sent.blobs, sent.bytes, sent.reused
        ),
        Event::Fetched { node, blobs, bytes } if chatty => {
            eprintln!("node {node}: {blobs} result blobs fetched ({bytes} bytes)")
        }
        _ => {}
    }
}

impl Nodes<'_> {
    fn client(&self, b: &Builder, insecure: bool) -> Result<Client> {
        use crate::cmd::context;
        let config =
            context::with_builder_config(context::registry_config(self.global)?, &b.name, b.config.as_deref())?;
        context::client_with(config, insecure)
    }

    pub fn build(
        &self,
        b: &Builder,
        opts: &BuildOptions,
        targets: &[Platform],
        a: &BuildArgs,
        cancel: &Cancel,
    ) -> Result<u8> {
        let client = self.client(b, a.insecure)?;
        // With `--push` alone only manifests and configs come back (nodes
        // push the rest); Docker media types and forced compression are
        // made here from every blob, and pushed from here.
        let docker_types = self.outputs.iter().any(|o| o.oci_mediatypes == Some(false))
            || super::export::forced_compression(self.outputs).is_some();
        let push_only = self.outputs.iter().all(|o| o.kind == OutputKind::Image && o.push) && !a.load;
        let full = docker_types || !push_only;
        let progress = self.progress.clone();
        let mut run = NodeBuild::new(b, self.store.clone(), client.clone(), crate::cmd::worker::local_probe()?)
            .with_events(Arc::new(move |e| render(&progress, e)))
            .with_fallback(a.fallback_emulation)
            .with_layers(full)
            .with_jobs(a.jobs)
            .with_node_options(&a.network, &a.snapshotter, a.insecure)
            .with_cancel(cancel.clone())
            // Nodes push the manifests they built, by digest: they write
            // the manifest annotations themselves.
            .with_annotations(
                self.annotations.iter().filter(|a| a.target.name() == "manifest").map(ToString::to_string).collect(),
            );
        if let Ok(status) = builder::Store::from_env() {
            run = run.with_status(status);
        }
        if let Some(traffic) = self.cache {
            // For the platforms built here; each node imports for its own.
            traffic.import(self.rt, &client, self.progress);
            let (spec, local) = traffic.node_spec();
            run = run.with_cache(traffic.io.clone(), spec, local);
        }
        let polyarch_remote::Outcome { images, pushers } = match run.run(self.rt, opts, targets) {
            Ok(o) => o,
            Err(e) => {
                self.progress.finish(false);
                if let Some(traffic) = self.cache {
                    traffic.print_warnings();
                }
                return match e.kind() {
                    ErrorKind::Cancelled => Ok(130),
                    _ => Err(e.into()),
                };
            }
        };
        let code = self.export(&client, images, &pushers, full, docker_types, a);
        pushers.close();
        code
    }

    /// Exports the results; with `push=true`, nodes push what they built
    /// unless every blob came back (`full`) and must be pushed from here.
    fn export(
        &self,
        client: &Client,
        images: Vec<BuildResult>,
        pushers: &Pushers,
        full: bool,
        docker_types: bool,
        a: &BuildArgs,
    ) -> Result<u8> {
        let (rt, store) = (self.rt, self.store);
        let remote_push = |built: &Built, names: &[String]| -> Result<()> {
            match built {
                Built::Image(r) => Ok(pushers.push_image(rt, client, store, r, names)?),
                Built::Index(img) => Ok(pushers.push_index(rt, client, store, img, names)?),
            }
        };
        if images.len() == 1 && !self.multi_platform {
            let exporter = Exporter {
                rt,
                client,
                store,
                progress: self.progress,
                tags: self.tags,
                annotations: self.annotations,
                push: if full { None } else { Some(&remote_push) },
                tag: full,
            };
            super::export_single(&exporter, self.outputs, &images[0], a, self.cache)
        } else {
            let multi = Multi {
                rt,
                client,
                store,
                progress: self.progress,
                outputs: self.outputs,
                tags: self.tags,
                annotations: self.annotations,
                push: if full && docker_types { None } else { Some(&remote_push) },
                tag: full,
                cache: self.cache,
            };
            multi.export(&MultiResult { images }, a)
        }
    }
}
