//! Exporting what a build made (one image or an index, the library's
//! `Built`) to every `--output`: the store and registries here, the files
//! through `polyarch_builder::output::Output::write`.

use std::sync::Mutex;

use anyhow::{bail, Result};
use polyarch_builder::export::{self, Built};
use polyarch_builder::output::{Output, OutputKind};
use polyarch_index::Annotation;
use polyarch_registry::Client;
use polyarch_store::Store;

use super::{parse_tagged, Progress};

/// How `push=true` pushes when nodes pushed what they built (the local
/// store then lacks their layers).
pub(super) type PushBuilt<'a> = dyn Fn(&Built, &[String]) -> Result<()> + 'a;

/// Where a build's result goes.
pub(super) struct Exporter<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub client: &'a Client,
    pub store: &'a Store,
    pub progress: &'a Progress,
    /// The `-t` names, for outputs without `name=`.
    pub tags: &'a [String],
    pub annotations: &'a [Annotation],
    /// How `push=true` pushes; default: every blob from the local store.
    pub push: Option<&'a PushBuilt<'a>>,
    /// Whether `type=image` names the result in the local store (not when
    /// the store lacks the layers other nodes built and pushed).
    pub tag: bool,
}

/// The export step's name, as BuildKit names its exporters: `exporting to
/// client directory` (local), `client tarball` (tar), `oci image format`
/// and `docker image format` (archives), else `exporting to image` (the
/// store, a registry, a load, several kinds at once).
pub fn step_name(outputs: &[Output]) -> &'static str {
    let name = |o: &Output| match o.kind {
        OutputKind::Local => "exporting to client directory",
        OutputKind::Tar => "exporting to client tarball",
        OutputKind::Oci => "exporting to oci image format",
        OutputKind::Docker if o.dest.is_some() => "exporting to docker image format",
        _ => "exporting to image",
    };
    match outputs.split_first() {
        Some((first, rest)) if rest.iter().all(|o| name(o) == name(first)) => name(first),
        _ => "exporting to image",
    }
}

/// The compression (and level) every layer must have when an output says
/// `force-compression=true` (its `compression=`, gzip by default).
pub fn forced_compression(outputs: &[Output]) -> Option<polyarch_builder::Encoding> {
    outputs.iter().any(|o| o.force_compression).then(|| polyarch_builder::output::encoding_of(outputs))
}

/// The image as the outputs want its layers compressed.
pub fn compressed(
    store: &polyarch_store::Store,
    outputs: &[Output],
    r: &polyarch_builder::BuildResult,
) -> polyarch_builder::Result<polyarch_builder::BuildResult> {
    match forced_compression(outputs) {
        Some(c) => polyarch_builder::export::force_compression(store, r, c),
        None => Ok(r.clone()),
    }
}

/// Whether the outputs keep an image (so an index is worth a status line).
pub fn keeps_an_image(outputs: &[Output]) -> bool {
    outputs.iter().any(|o| !matches!(o.kind, OutputKind::Local | OutputKind::Tar | OutputKind::CacheOnly))
}

/// Each name's repository at the result's digest (`NAME@DIGEST`), once
/// per repository: where `push-by-digest` pushes, and the canonical names
/// of `name-canonical`.
fn by_digest(names: &[String], built: &Built) -> Result<Vec<polyarch_oci::Reference>> {
    let digest = built.descriptor().digest;
    let mut out: Vec<polyarch_oci::Reference> = Vec::new();
    for n in names {
        let at = parse_tagged(n)?.trimmed().with_digest(digest.clone());
        if !out.contains(&at) {
            out.push(at);
        }
    }
    Ok(out)
}

impl Exporter<'_> {
    /// Exports `built` to every output; returns the names it was given.
    pub fn export(&self, built: &Built, outputs: &[Output]) -> Result<Vec<String>> {
        let mut names_out = Vec::new();
        for o in outputs {
            let names: Vec<String> = if o.names.is_empty() {
                self.tags.to_vec()
            } else {
                o.names.iter().map(|n| parse_tagged(n).map(|r| r.to_string())).collect::<Result<_>>()?
            };
            if o.kind == OutputKind::Image {
                self.image(built, o, &names)?;
                let canonical = (o.push && o.push_by_digest && o.name_canonical)
                    .then(|| by_digest(&names, built))
                    .transpose()?
                    .unwrap_or_default();
                names_out.extend(names.into_iter().chain(canonical.iter().map(|r| r.to_string())));
                continue;
            }
            if o.kind == OutputKind::Docker && o.dest.is_none() {
                super::load::load(self.store, built, &names, self.annotations)?;
                names_out.extend(names.into_iter().filter(|n| !names_out.contains(n)).collect::<Vec<_>>());
                continue;
            }
            // BuildKit's statuses: files are copied, a tar is sent, an
            // archive's layers are exported.
            let status = match o.kind {
                OutputKind::Local => "copying files",
                OutputKind::Tar => "sending tarball",
                _ => "exporting layers",
            };
            let layers = self.progress.begin_status(status);
            let loaded = o.write(
                self.store,
                built,
                &names,
                self.annotations,
                &mut std::io::BufWriter::new(crate::report::Stdout),
            )?;
            self.progress.end_status(layers);
            if o.kind == OutputKind::Docker && matches!(built, Built::Index(_)) && self.progress.mode != "quiet" {
                eprintln!("{}", super::multi::describe_load(&loaded));
            }
        }
        Ok(names_out)
    }

    fn image(&self, built: &Built, o: &Output, names: &[String]) -> Result<()> {
        if self.tag || !o.push {
            for name in names {
                let naming = self.progress.begin_status(&format!("naming to {name}"));
                export::tag(self.store, built, std::slice::from_ref(name))?;
                self.progress.end_status(naming);
            }
        }
        if !o.push {
            return Ok(());
        }
        if names.is_empty() {
            bail!("push needs a name: give -t NAME or --output type=image,name=NAME,push=true");
        }
        if o.push_by_digest {
            // As BuildKit's image exporter: the repositories get the
            // manifest under its digest, and no tag moves.
            let at: Vec<String> = by_digest(names, built)?.iter().map(|r| r.to_string()).collect();
            return self.push(built, &at);
        }
        self.push(built, names)
    }

    /// Pushes `built` under `names` with BuildKit's statuses: "pushing
    /// layers" (each blob from its first byte) until the first manifest
    /// goes up, then "pushing manifest for NAME@DIGEST" per name.
    fn push(&self, built: &Built, names: &[String]) -> Result<()> {
        let layers = Mutex::new(self.progress.begin_status("pushing layers"));
        let manifests = Mutex::new(Vec::new());
        let digest = built.descriptor().digest;
        let to_manifests = || {
            let Some(begun) = layers.lock().ok().and_then(|mut l| l.take()) else { return };
            self.progress.end_status(Some(begun));
            let begin = |n: &String| {
                let at = if n.contains('@') { n.clone() } else { format!("{n}@{digest}") };
                self.progress.begin_status(&format!("pushing manifest for {at}"))
            };
            manifests.lock().map(|mut m| m.extend(names.iter().map(begin))).ok();
        };
        let pushed: Result<()> = match self.push {
            Some(push) => push(built, names),
            None => {
                let events = |e: polyarch_transfer::Event| {
                    if matches!(e, polyarch_transfer::Event::Manifest { .. }) {
                        to_manifests();
                    }
                    self.progress.upload(&e);
                };
                self.rt.block_on(export::push_with(self.client, self.store, built, names, &events)).map_err(Into::into)
            }
        };
        // Pushes on nodes report no manifest of their own: the whole push is "pushing layers".
        self.progress.end_status(layers.lock().ok().and_then(|mut l| l.take()));
        for m in manifests.into_inner().unwrap_or_default() {
            self.progress.end_status(m);
        }
        pushed
    }
}
