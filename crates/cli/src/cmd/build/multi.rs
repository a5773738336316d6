//! `polyarch build --platform a,b,...`: every platform built under one
//! scheduler, then one index exported as buildx does: tagged in the store,
//! pushed children first, an OCI layout holding the index, one directory
//! per platform for `type=local`, and for `type=docker` one image per
//! platform under per-platform tags.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use polyarch_builder::export::{self, Built, IndexImage};
use polyarch_builder::multi::{MultiBuilder, MultiResult};
use polyarch_builder::output::Output;
use polyarch_builder::slots::Class;
use polyarch_builder::BuildOptions;
use polyarch_index::Annotation;
use polyarch_oci::Platform;
use polyarch_registry::Client;
use polyarch_store::Store;

use super::export::{Exporter, PushBuilt};
use super::{BuildArgs, Progress};

/// What a multi-platform build needs from the command.
pub(super) struct Multi<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub client: &'a Client,
    pub store: &'a Store,
    pub progress: &'a Arc<Progress>,
    pub outputs: &'a [Output],
    pub tags: &'a [String],
    pub annotations: &'a [Annotation],
    /// How `push=true` pushes; default: every blob from the local store.
    pub push: Option<&'a PushBuilt<'a>>,
    /// Whether `type=image` names the index in the local store (not when
    /// the store lacks the layers other nodes built and pushed).
    pub tag: bool,
    /// `--cache-from` and `--cache-to`, for a build here.
    pub cache: Option<&'a super::cache_flags::Traffic>,
}

impl Multi<'_> {
    /// Builds every platform, exports the index and writes the reports.
    pub fn build(&self, opts: &BuildOptions, platforms: &[Platform], jobs: usize, a: &BuildArgs) -> Result<u8> {
        let list = platforms.iter().map(|p| p.format()).collect::<Vec<_>>().join(", ");
        let sink = self.progress.clone();
        let builder = MultiBuilder::new(self.store.clone())
            .with_client(self.client.clone())
            .with_events(Arc::new(move |e| sink.lib_event(e)))
            .with_jobs(jobs);
        let builder = match self.cache {
            Some(c) => builder.with_cache_io(c.io.clone()),
            None => builder,
        };
        if self.progress.chatty() {
            let emulated = polyarch_builder::slots::Slots::new(jobs).limit(Class::Emulated);
            eprintln!(
                "building for {} platforms: {list} (at once; {jobs} native and {emulated} emulated steps at a time)",
                platforms.len()
            );
        }
        let result = match self.rt.block_on(builder.build(opts, platforms)) {
            Ok(r) => r,
            Err(e) => {
                self.progress.finish(false);
                if let Some(c) = self.cache {
                    c.print_warnings();
                }
                return Err(e.into());
            }
        };
        self.export(&result, a)
    }

    /// Assembles the index over `result`, exports it to every output and
    /// writes the reports.
    pub fn export(&self, result: &MultiResult, a: &BuildArgs) -> Result<u8> {
        let docker_types = self.outputs.iter().any(|o| o.oci_mediatypes == Some(false));
        let t = Instant::now();
        let exporting = self.progress.start_export(super::export::step_name(self.outputs));
        let assembling = std::time::SystemTime::now();
        let exported = export::check_annotations(self.annotations, true, docker_types).and_then(|()| {
            let images = result.images.iter().map(|r| {
                super::export::compressed(self.store, self.outputs, r)
                    .and_then(|r| export::annotate(self.store, &r, self.annotations))
            });
            export::assemble_index(self.store, &images.collect::<Result<Vec<_>, _>>()?, docker_types, self.annotations)
        });
        let img = match exported {
            Ok(img) => img,
            Err(e) => {
                self.progress.failed(exporting, e.to_string());
                self.progress.finish(false);
                return Err(e.into());
            }
        };
        if super::export::keeps_an_image(self.outputs) {
            self.progress.ended_status(&format!("exporting manifest list {}", img.index.digest), assembling);
        }
        let exporter = Exporter {
            rt: self.rt,
            client: self.client,
            store: self.store,
            progress: self.progress,
            tags: self.tags,
            annotations: self.annotations,
            push: self.push,
            tag: self.tag,
        };
        let names_out = match exporter.export(&Built::Index(Box::new(img.clone())), self.outputs) {
            Ok(n) => n,
            Err(e) => {
                self.progress.failed(exporting, crate::report::Chain(&e).to_string());
                self.progress.finish(false);
                return Err(e);
            }
        };
        self.progress.done_export(exporting, t.elapsed());
        if let Some(c) = self.cache {
            let compression = polyarch_builder::output::encoding_of(self.outputs).compression;
            if let Err(e) = c.export(self.rt, self.client, self.store, self.progress, compression) {
                self.progress.finish(false);
                c.print_warnings();
                return Err(e);
            }
        }
        self.progress.finish(true);
        if let Some(c) = self.cache {
            c.print_warnings();
        }
        super::warn_foreign(self.progress, &result.images.iter().collect::<Vec<_>>());
        if self.progress.chatty() {
            eprintln!("executed {} step(s), {} cached", result.executed(), result.cached());
        }
        let digest = img.index.digest.to_string();
        if let Some(path) = &a.iidfile {
            polyarch_store::AtomicFile::write(path, digest.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &a.metadata_file {
            write_metadata(path, &img, &names_out)?;
        }
        if a.progress == "quiet" {
            crate::outln!("{digest}")?;
        }
        Ok(0)
    }
}

/// What `docker load` and `podman load` import from a multi-platform
/// Docker archive: one image per platform, each under its platform's tags.
pub(super) fn describe_load(loaded: &[(Platform, Vec<String>)]) -> String {
    let mut out = format!(
        "the archive holds one image per platform; `docker load` and `podman load` import {} images:",
        loaded.len()
    );
    for (p, tags) in loaded {
        let what = if tags.is_empty() { "(untagged)".to_string() } else { tags.join(", ") };
        out.push_str(&format!("\n  {}: {what}", p.format()));
    }
    out
}

/// buildx's metadata for an index, plus each platform's manifest and
/// config digests under `polyarch.platforms`, which buildx does not give
/// (moby/buildkit#4080).
fn write_metadata(path: &Path, img: &IndexImage, names: &[String]) -> Result<()> {
    let mut desc = img.index.clone();
    desc.annotations = None;
    let mut platforms = serde_json::Map::new();
    for c in &img.children {
        platforms.insert(
            c.result.platform.format(),
            serde_json::json!({
                "digest": c.manifest.digest.to_string(),
                "config.digest": c.config.digest.to_string(),
                "mediaType": c.manifest.media_type,
            }),
        );
    }
    let mut m = serde_json::Map::new();
    m.insert("containerimage.descriptor".into(), serde_json::to_value(&desc)?);
    m.insert("containerimage.digest".into(), img.index.digest.to_string().into());
    if !names.is_empty() {
        m.insert("image.name".into(), names.join(",").into());
    }
    m.insert("polyarch.platforms".into(), serde_json::Value::Object(platforms));
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(m))?;
    polyarch_store::AtomicFile::write(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_report_names_every_platform() {
        let text = describe_load(&[
            (Platform::new("linux", "amd64", None), vec!["app:1-linux-amd64".into()]),
            (Platform::new("linux", "arm", Some("v7")), vec![]),
        ]);
        assert!(text.contains("import 2 images"), "{text}");
        assert!(text.contains("linux/amd64: app:1-linux-amd64"), "{text}");
        assert!(text.contains("linux/arm/v7: (untagged)"), "{text}");
    }
}
