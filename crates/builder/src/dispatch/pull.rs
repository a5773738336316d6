//! Base images in a build: their metadata resolved once per (image,
//! platform) for every platform's build (the "load metadata" step), their
//! layers fetched by the step that uses them (the FROM step, or a COPY
//! from the image) with a status per blob on that step's vertex, and
//! their file systems read with an "extracting" status per layer, as
//! BuildKit reports a pull.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use polyarch_oci::{Digest, Platform, Reference};

use super::Run;
use crate::base::{self, BaseImage};
use crate::error::{ErrorKind, Result};
use crate::fs::MemFs;
use crate::layer::Layer;
use crate::named::{context_name, NamedContext};
use crate::slots::Class;
use crate::{Event, Status, Vertex};

impl Run<'_> {
    /// Pulls (once per build) an image for `platform`.
    pub(crate) async fn image(&mut self, name: &str, platform: &Platform, line: usize) -> Result<BaseImage> {
        let key = format!("{name}|{}", platform.format());
        if let Some((img, _)) = self.images.get(&key) {
            return Ok(img.clone());
        }
        let img = self.fetch_image(name, platform, line).await?;
        self.images.insert(key, (img.clone(), None));
        Ok(img)
    }

    /// Resolves every registry image the needed stages name (FROM and
    /// `COPY --from`) at once, so that independent stages do not wait on
    /// each other's registry round trips.
    pub(super) async fn prefetch(&mut self, needed: &[usize]) -> Result<()> {
        use polyarch_dockerfile::instructions::Instruction;
        let mut wanted: Vec<(String, String, Platform, usize)> = Vec::new();
        for &i in needed {
            let (base, spec) = &self.froms[i];
            let platform = match spec {
                Some(p) => match Platform::parse(p) {
                    Ok(p) => p,
                    Err(_) => continue,
                },
                None => self.opts.platform.clone(),
            };
            let stage = &self.df.stages[i];
            let mut names = Vec::new();
            if !base.eq_ignore_ascii_case("scratch")
                && self.base_stage(base, i).is_none()
                && self.named_files(base).is_none()
            {
                names.push((base.clone(), stage.line));
            }
            for c in &stage.commands {
                if let Instruction::Copy(cp) = &c.instruction {
                    if let Some(f) = cp.from.as_ref().filter(|f| !f.contains('$')) {
                        if self.stage_named(f, self.df.stages.len()).is_none() && self.named_files(f).is_none() {
                            names.push((f.clone(), c.start_line));
                        }
                    }
                }
            }
            for (n, line) in names {
                let key = format!("{n}|{}", platform.format());
                if !wanted.iter().any(|w| w.0 == key) && !self.images.contains_key(&key) {
                    wanted.push((key, n, platform.clone(), line));
                }
            }
        }
        let results =
            futures_util::future::join_all(wanted.iter().map(|(_, n, p, line)| self.fetch_image(n, p, *line))).await;
        for ((key, ..), r) in wanted.into_iter().zip(results) {
            self.images.insert(key, (r?, None));
        }
        Ok(())
    }

    /// The metadata of image `name` for `platform` (its manifest and
    /// config; layers come with the step that uses them), resolved once
    /// per reference (however it is spelled) and platform for all the
    /// builds sharing the builder's [`super::Metadata`].
    async fn fetch_image(&self, name: &str, platform: &Platform, line: usize) -> Result<BaseImage> {
        let loc = self.loc(line);
        let reference = Reference::parse_normalized(name)
            .map_err(|e| loc.error(ErrorKind::Invalid, e.to_string(), Some(name)))?
            .with_default_tag();
        // A named context stands for its name only, not for the image.
        let named = if self.opts.named_contexts.get(name).is_some() { name } else { "" };
        let cell = self.b.metadata.cell(&format!("{reference}|{}|{named}", platform.format()));
        cell.get_or_try_init(|| self.load_metadata(name, &reference, platform, line)).await.cloned()
    }

    /// The "load metadata for ..." step of an image for a platform.
    async fn load_metadata(
        &self,
        name: &str,
        reference: &Reference,
        platform: &Platform,
        line: usize,
    ) -> Result<BaseImage> {
        let loc = self.loc(line);
        let slot = self.b.slots.acquire(Class::Io).await;
        // A named context's image is loaded under the context's name, as
        // BuildKit's `[context base] load metadata for busybox`.
        let vertex = match self.opts.named_contexts.get(name) {
            Some(NamedContext::Image(r)) => Vertex::context(&context_name(name)?, format!("load metadata for {r}")),
            Some(NamedContext::Layout(l)) => Vertex::context(&context_name(name)?, format!("load metadata for {l}")),
            _ => Vertex::internal(format!("load metadata for {reference}")),
        }
        .with_platform(platform.clone());
        let step = self.start(vertex);
        if let Some(img) = self.named_image(name, platform).await {
            return match img {
                Ok(img) => {
                    self.done(step);
                    Ok(img)
                }
                Err(e) => {
                    let msg = format!("build context {name}: {e}");
                    self.failed_step(step, msg.clone());
                    Err(loc.error(e.kind(), msg, Some(name)))
                }
            };
        }
        let mode = self.opts.resolve_mode;
        let img = match base::resolve_metadata(self.b.client.as_ref(), &self.b.store, reference, platform, mode).await {
            Ok(img) => img,
            Err(e) => {
                let msg = format!("failed to resolve source metadata for {reference}: {e}");
                self.failed_step(step, msg.clone());
                return Err(loc.error(e.kind(), msg, Some(name)));
            }
        };
        drop(slot);
        self.done(step);
        Ok(img)
    }

    /// Fetches the layers of `img` the store lacks, each blob's download a
    /// status of `vertex` (its digest as the id, bytes as total).
    pub(crate) async fn pull_layers(&self, img: &BaseImage, vertex: &Vertex) -> Result<()> {
        let sink = self.b.events.clone();
        let open: Mutex<HashMap<Digest, Status>> = Mutex::default();
        let events = move |e: polyarch_transfer::Event| {
            use polyarch_transfer::Event as T;
            let at = SystemTime::now();
            let Ok(mut open) = open.lock() else { return };
            let status = match e {
                T::BlobStarted { digest, size, .. } => {
                    let s = Status::begin(digest.to_string(), Some(size), at);
                    open.insert(digest, s.clone());
                    s
                }
                T::BlobDone { digest, .. } => match open.remove(&digest) {
                    Some(s) => s.end(at),
                    None => return,
                },
                _ => return,
            };
            drop(open);
            sink(Event::Status { vertex: vertex.clone(), at, status });
        };
        base::fetch_layers(self.b.client(), &self.b.store, img, &events).await
    }

    /// Whether a base image's layers must still be fetched (its step then
    /// waits for an I/O slot first).
    pub(crate) fn needs_layers(&self, img: &BaseImage) -> Result<bool> {
        Ok(!base::missing_layers(&self.b.store, img)?.is_empty())
    }

    /// The file system of an image resolved with [`Run::image`], its
    /// layers fetched first; `step` (the step reading it) gets the
    /// statuses.
    pub(crate) async fn image_fs(&mut self, img: &BaseImage, step: Option<&Vertex>) -> Result<MemFs> {
        let key =
            self.images.iter().find(|(_, (i, _))| i.manifest.digest == img.manifest.digest).map(|(k, _)| k.clone());
        if let Some(k) = &key {
            if let Some((_, Some(fs))) = self.images.get(k) {
                return Ok(fs.clone());
            }
        }
        match step {
            Some(v) => self.pull_layers(img, v).await?,
            None => base::fetch_layers(self.b.client(), &self.b.store, img, &polyarch_transfer::event::ignore).await?,
        }
        let fs = self.read_layers(&img.layers, step.map(|v| (v, img.layers.len())))?;
        if let Some(k) = key {
            if let Some(entry) = self.images.get_mut(&k) {
                entry.1 = Some(fs.clone());
            }
        }
        Ok(fs)
    }

    /// Reads a root file system from `layers` (as [`super::load_fs_with`]),
    /// the first `n` of them with an `extracting sha256:...` status on
    /// the vertex of `shown` (the step that pulled them).
    pub(crate) fn read_layers(&self, layers: &[Layer], shown: Option<(&Vertex, usize)>) -> Result<MemFs> {
        let mut fs = MemFs::new();
        let unpack = self.unpack_layers();
        for (i, l) in layers.iter().enumerate() {
            let vertex = shown.filter(|(_, n)| i < *n).map(|(v, _)| v);
            let status = Status::begin(format!("extracting {}", l.desc.digest), None, SystemTime::now());
            if let Some(v) = vertex {
                self.emit(Event::Status { vertex: v.clone(), at: SystemTime::now(), status: status.clone() });
            }
            crate::materialize::apply_stored(&mut fs, &self.b.store, &layers[..i], l, unpack)?;
            if let Some(v) = vertex {
                let at = SystemTime::now();
                self.emit(Event::Status { vertex: v.clone(), at, status: status.end(at) });
            }
        }
        Ok(fs)
    }
}
