//! `--cache-to` and `--cache-from`, as buildx's: parsed by the library
//! (`polyarch_builder::cacheio::spec`) before anything else, every
//! `--cache-from` read before the build (one `importing cache manifest
//! from ...` step each), the records of every platform exported after the
//! outputs. What cannot be imported is a `WARNING:` line (printed once the
//! progress display is done, with the build's other warnings) and a colder
//! build; an export failure fails the build unless `ignore-error=true`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use polyarch_builder::cacheio::{self, export, CacheFrom, CacheIo, CacheTo, CacheWarning};
use polyarch_builder::{Compression, Vertex};
use polyarch_registry::Client;
use polyarch_remote::wire::CacheSpec;
use polyarch_store::Store;

use super::Progress;

#[derive(Args, Debug, Default)]
pub struct CacheFlags {
    /// Import build cache: `type=registry,ref=REPO:TAG`, a plain image
    /// REF (its inline cache, or a cache manifest), `type=local,src=DIR
    /// [,digest=sha256:...]` (repeatable).
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Export build cache: `type=registry,ref=REPO:TAG[,mode=min|max]
    /// [,oci-mediatypes=BOOL][,image-manifest=BOOL][,ignore-error=BOOL]`,
    /// `type=local,dest=DIR[,mode=...]`, `type=inline` (repeatable).
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
}

/// The cache traffic of one build.
pub struct Traffic {
    /// Shared with the builds of every platform.
    pub io: Arc<CacheIo>,
    from: Vec<CacheFrom>,
    to: Vec<CacheTo>,
}

impl CacheFlags {
    /// The parsed flags, `None` when none was given (an empty value, as
    /// buildx's `--cache-to=""`, is none); `inline` adds `type=inline`
    /// (the build argument `BUILDKIT_INLINE_CACHE`).
    pub fn parse(&self, inline: bool) -> Result<Option<Traffic>> {
        let given = |v: &Vec<String>| v.iter().filter(|s| !s.trim().is_empty()).cloned().collect::<Vec<_>>();
        let from =
            given(&self.cache_from).iter().map(|v| cacheio::parse_cache_from(v)).collect::<Result<Vec<_>, _>>()?;
        let mut to = given(&self.cache_to).iter().map(|v| cacheio::parse_cache_to(v)).collect::<Result<Vec<_>, _>>()?;
        if inline && !to.contains(&CacheTo::Inline) {
            to.push(CacheTo::Inline);
        }
        if from.is_empty() && to.is_empty() {
            return Ok(None);
        }
        let inline = to.contains(&CacheTo::Inline);
        Ok(Some(Traffic { io: Arc::new(CacheIo::new(inline)), from, to }))
    }
}

fn warn(w: &CacheWarning) {
    eprintln!("WARNING: {w}");
}

impl Traffic {
    /// What builder nodes do with the caches: each imports the registry
    /// caches itself, and the local cache directories (the second value)
    /// travel to it with the context; for a `--cache-to` written here,
    /// each sends back the records it used.
    pub fn node_spec(&self) -> (CacheSpec, Vec<std::path::PathBuf>) {
        let (mut from, mut local, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
        for f in &self.from {
            match f {
                CacheFrom::Registry { reference } => from.push(format!("type=registry,ref={reference}")),
                CacheFrom::Local { src, digest } => {
                    dirs.push(src.clone());
                    local.push(digest.clone());
                }
            }
        }
        let report = self.to.iter().any(|t| !matches!(t, CacheTo::Inline));
        (CacheSpec { from, local, report, inline: self.io.inline() }, dirs)
    }

    /// Reads every `--cache-from` into the table; what cannot be read is
    /// a warning.
    pub fn import(&self, rt: &tokio::runtime::Runtime, client: &Client, progress: &Progress) {
        for from in &self.from {
            let t = Instant::now();
            let step = progress.start(Vertex::plain(format!("importing cache manifest from {from}")));
            if let Err(w) = rt.block_on(cacheio::import::import(&self.io, client, from)) {
                self.io.warn(w);
            }
            progress.done(step, t.elapsed());
        }
    }

    /// Prints the warnings of the build: caches that could not be
    /// imported, blobs that could not be fetched, ignored export failures.
    pub fn print_warnings(&self) {
        for w in self.io.take_warnings() {
            warn(&w);
        }
    }

    /// Exports the build's records to every `--cache-to` but `inline`
    /// (which the image config carries already).
    pub fn export(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &Client,
        store: &Store,
        progress: &Progress,
        compression: Compression,
    ) -> Result<()> {
        for to in &self.to {
            let (what, target) = match to {
                CacheTo::Inline => continue,
                CacheTo::Registry { reference, .. } => ("registry", reference.to_string()),
                CacheTo::Local { dest, .. } => ("client directory", dest.display().to_string()),
            };
            let opts = to.options();
            if let Some(c) = opts.compression.filter(|c| *c != compression.name()) {
                let reason = format!(
                    "compression={c} is not applied: the cache shares the image's {} layers",
                    compression.name()
                );
                self.io.warn(CacheWarning::Option { target: target.clone(), reason });
            }
            let t = Instant::now();
            let step = progress.start(Vertex::plain(format!("exporting cache to {what}")));
            let done = self.write(rt, client, store, to, &opts);
            progress.done(step, t.elapsed());
            match done {
                Ok(()) => {}
                Err(e) if opts.ignore_error => self.io.warn(CacheWarning::Export { target, reason: e.to_string() }),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("exporting cache to {target}"))),
            }
        }
        Ok(())
    }

    fn write(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &Client,
        store: &Store,
        to: &CacheTo,
        opts: &cacheio::ExportOptions,
    ) -> polyarch_builder::Result<()> {
        let artifact = export::artifact(store, &self.io.gather(opts.mode), opts)?;
        match to {
            CacheTo::Registry { reference, .. } => rt.block_on(export::push(client, store, &artifact, reference)),
            CacheTo::Local { dest, .. } => export::write_local(store, &artifact, dest),
            CacheTo::Inline => Ok(()),
        }
    }
}
