//! `polyarch build --platform a,b,...`: every platform built under one
//! scheduler, then one index exported as buildx does: tagged in the store,
//! pushed children first, an OCI layout holding the index, one directory
//! per platform for `type=local`, and for `type=docker` one image per
//! platform under per-platform tags.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use polyarch_builder::export::{self, IndexImage};
use polyarch_builder::multi::{MultiBuilder, MultiResult};
use polyarch_builder::{BuildOptions, Event};
use polyarch_oci::Platform;
use polyarch_registry::Client;
use polyarch_store::Store;

use super::{parse_tagged, with_dest, BuildArgs, OutputSpec, Progress};

/// Pushes an index under names, children first (remote builds, where
/// nodes push their own children).
pub(super) type PushIndex<'a> = dyn Fn(&IndexImage, &[String]) -> Result<()> + 'a;

/// What a multi-platform build needs from the command.
pub(super) struct Multi<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub client: &'a Client,
    pub store: &'a Store,
    pub progress: &'a Arc<Progress>,
    pub outputs: &'a [OutputSpec],
    pub tags: &'a [String],
    /// How `push=true` pushes; default: every blob from the local store.
    pub push: Option<&'a PushIndex<'a>>,
    /// Whether `type=image` names the index in the local store (not when
    /// the store lacks the layers other nodes built and pushed).
    pub tag: bool,
}

impl Multi<'_> {
    /// Builds every platform, exports the index and writes the reports.
    pub fn build(&self, opts: &BuildOptions, platforms: &[Platform], jobs: usize, a: &BuildArgs) -> Result<u8> {
        let list = platforms.iter().map(|p| p.format()).collect::<Vec<_>>().join(", ");
        if matches!(self.progress.mode.as_str(), "plain" | "tty") {
            eprintln!("building for {} platforms: {list} ({} at a time)", platforms.len(), jobs.min(platforms.len()));
        }
        let sink = self.progress.clone();
        let builder = MultiBuilder::new(self.store.clone())
            .with_client(self.client.clone())
            .with_events(Arc::new(move |e| sink.lib_event(e)))
            .with_jobs(jobs);
        let result = match self.rt.block_on(builder.build(opts, platforms)) {
            Ok(r) => r,
            Err(e) => {
                self.progress.finish(false);
                return Err(e.into());
            }
        };
        self.export(&result, a)
    }

    /// Assembles the index over `result`, exports it to every output and
    /// writes the reports.
    pub fn export(&self, result: &MultiResult, a: &BuildArgs) -> Result<u8> {
        let result = result.clone();
        let docker_types = self.outputs.iter().any(|o| o.oci_mediatypes == Some(false));
        let img = export::assemble_index(self.store, &result.images, docker_types)?;
        let t = Instant::now();
        let export_id = self.progress.next_id();
        self.progress.event(&Event::Started { id: export_id, name: "exporting to image".into() });
        let mut names_out: Vec<String> = Vec::new();
        for o in self.outputs {
            self.export_one(&result, &img, o, &mut names_out)?;
        }
        self.progress.event(&Event::Done { id: export_id, elapsed: t.elapsed() });
        self.progress.finish(true);
        if a.progress != "quiet" {
            eprintln!("executed {} step(s), {} cached", result.executed(), result.cached());
        }
        let digest = img.index.digest.to_string();
        if let Some(path) = &a.iidfile {
            std::fs::write(path, &digest).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &a.metadata_file {
            write_metadata(path, &img, &names_out)?;
        }
        if a.progress == "quiet" {
            println!("{digest}");
        }
        Ok(0)
    }

    fn export_one(&self, r: &MultiResult, img: &IndexImage, o: &OutputSpec, names_out: &mut Vec<String>) -> Result<()> {
        let names: Vec<String> = if o.names.is_empty() {
            self.tags.to_vec()
        } else {
            o.names.iter().map(|n| parse_tagged(n).map(|r| r.to_string())).collect::<Result<_>>()?
        };
        let dest = o.dest.as_deref().unwrap_or("");
        let store = self.store;
        match o.kind.as_str() {
            "image" => {
                if self.tag || !o.push {
                    export::tag_index(store, img, &names)?;
                }
                if o.push {
                    if names.is_empty() {
                        bail!("push needs a name: give -t NAME or --output type=image,name=NAME,push=true");
                    }
                    match self.push {
                        Some(push) => push(img, &names)?,
                        None => self.rt.block_on(export::push_index(self.client, store, img, &names))?,
                    }
                }
                names_out.extend(names);
            }
            "oci" if !o.tar => export::write_oci_index_dir(store, img, &names, Path::new(dest))?,
            "oci" => with_dest(dest, |w| export::write_oci_index_tar(store, img, &names, w).map(|_| ()))?,
            "docker" if o.dest.is_none() => {
                super::load::index(store, &r.images, img, &names)?;
                names_out.extend(names.into_iter().filter(|n| !names_out.contains(n)).collect::<Vec<_>>());
            }
            "docker" => {
                let mut loaded = Vec::new();
                with_dest(dest, |w| {
                    export::write_docker_platforms(store, &r.images, &names, w).map(|(_, l)| loaded = l)
                })?;
                if self.progress.mode != "quiet" {
                    eprintln!("{}", describe_load(&loaded));
                }
            }
            "tar" => with_dest(dest, |w| export::write_rootfs_tar_platforms(store, &r.images, w).map(|_| ()))?,
            "local" => export::write_local_platforms(store, &r.images, Path::new(dest))?,
            other => bail!("unknown output type {other:?}"),
        }
        Ok(())
    }
}

/// What `docker load` and `podman load` import from a multi-platform
/// Docker archive: one image per platform, each under its platform's tags.
fn describe_load(loaded: &[(Platform, Vec<String>)]) -> String {
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
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
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
