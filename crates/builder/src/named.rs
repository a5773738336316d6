//! Named contexts (`--build-context NAME=VALUE`), as buildx passes them
//! and BuildKit's Dockerfile frontend resolves them: a context named like
//! a stage replaces the whole stage; one named like an image (in its
//! familiar form without `:latest`, so `busybox`, `docker.io/library/busybox`
//! and `busybox:latest` are one name) replaces that image wherever the
//! Dockerfile reads it: `FROM`, `COPY --from` and `RUN --mount=from`.
//!
//! A context is files (a directory, a Git checkout or a download, read by
//! the caller), another image (`docker-image://REF`) or an image of an OCI
//! layout directory (`oci-layout://PATH[:TAG][@DIGEST]`), copied into the
//! store through its verified writers before it is used.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use polyarch_frontend::Layout;
use polyarch_oci::{Digest, Platform, Reference};
use polyarch_store::Store;

use crate::base::{self, BaseImage};
use crate::config::Image;
use crate::dispatch::{Run, StageState};
use crate::error::{Error, Result};
use crate::fs::MemFs;
use crate::layer::write_layer;

/// What a named context is.
#[derive(Debug, Clone)]
pub enum NamedContext {
    /// A file tree: a directory, a Git checkout, a download.
    Files(Arc<MemFs>),
    /// `docker-image://REF`: another image.
    Image(String),
    /// `oci-layout://PATH[:TAG][@DIGEST]`: an image of an OCI layout.
    Layout(Layout),
}

/// What a `--build-context` value says, before the caller reads files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A local directory.
    Dir(PathBuf),
    /// `docker-image://REF`.
    Image(String),
    /// `oci-layout://...`.
    Layout(Layout),
    /// A Git or HTTP(S) URL.
    Url(String),
}

impl Value {
    /// Reads a `--build-context` value as buildx does.
    pub fn parse(v: &str) -> Result<Value> {
        if let Some(r) = v.strip_prefix("docker-image://") {
            Reference::parse_normalized(r)
                .map_err(|e| Error::Option(format!("invalid build context docker-image://{r}: {e}")))?;
            return Ok(Value::Image(r.to_string()));
        }
        if let Some(rest) = v.strip_prefix("oci-layout://") {
            return parse_layout(rest);
        }
        if v.starts_with("target:") {
            return Err(Error::Option(format!(
                "build context {v:?}: `target:` contexts exist only in bake files; name the stage with --target or use a directory, docker-image://, oci-layout:// or a URL"
            )));
        }
        if v.starts_with("http://") || v.starts_with("https://") || crate::git::GitRef::is_git(v) {
            return Ok(Value::Url(v.to_string()));
        }
        Ok(Value::Dir(PathBuf::from(v)))
    }
}

/// `PATH[:TAG][@DIGEST]` of `oci-layout://`.
fn parse_layout(rest: &str) -> Result<Value> {
    let bad = |why: String| Error::Option(format!("invalid build context oci-layout://{rest}: {why}"));
    let (path_tag, digest) = match rest.split_once('@') {
        Some((p, d)) => (p, Some(d.parse::<Digest>().map_err(|e| bad(e.to_string()))?)),
        None => (rest, None),
    };
    // A tag follows the last `:` after the last `/`.
    let slash = path_tag.rfind('/').map_or(0, |i| i + 1);
    let (dir, tag) = match path_tag[slash..].rfind(':') {
        Some(i) => (&path_tag[..slash + i], Some(path_tag[slash + i + 1..].to_string())),
        None => (path_tag, None),
    };
    if dir.is_empty() {
        return Err(bad("no directory".into()));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t.filter(|t| !t.is_empty()),
    };
    Ok(Value::Layout(Layout { dir: PathBuf::from(dir), tag, digest }))
}

/// The name a context is known by: the familiar form of the reference
/// without `:latest`, as buildx's `ParseContextNames` and BuildKit's
/// `NamedContext` normalize both sides.
pub fn context_name(name: &str) -> Result<String> {
    polyarch_frontend::context_name(name).map_err(Error::Option)
}

/// The named contexts of a build (`BuildOptions::named_contexts`).
#[derive(Debug, Clone, Default)]
pub struct NamedContexts {
    by_name: BTreeMap<String, NamedContext>,
}

impl NamedContexts {
    /// No named contexts.
    pub fn new() -> NamedContexts {
        NamedContexts::default()
    }

    /// Adds `name` (normalized with [`context_name`]).
    pub fn insert(&mut self, name: &str, context: NamedContext) -> Result<()> {
        self.by_name.insert(context_name(name)?, context);
        Ok(())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every named context, by its normalized name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &NamedContext)> {
        self.by_name.iter()
    }

    /// The context a stage, image or `--from` name refers to.
    pub fn get(&self, name: &str) -> Option<&NamedContext> {
        if self.by_name.is_empty() {
            return None;
        }
        let key = context_name(name).ok()?;
        self.by_name.get(&key)
    }
}

impl Run<'_> {
    /// Stages named like a context are replaced by it: the stage becomes
    /// `FROM <name>` with no instructions, so that nothing it would have
    /// read is resolved or built.
    pub(crate) fn replace_named_stages(&mut self) {
        for i in 0..self.df.stages.len() {
            let Some(name) = self.df.stages[i].name.clone() else { continue };
            if self.opts.named_contexts.get(&name).is_some() {
                self.froms[i].0 = name;
                Arc::make_mut(&mut self.df).stages[i].commands.clear();
            }
        }
    }

    /// The name of the context `name` stands for (its familiar form) and
    /// the text of the step that loads it as a stage's base, as BuildKit
    /// names them: `busybox:latest` (the `docker-image://` reference as
    /// given), `OCI load from client`; none for files, whose `load from
    /// client` step the caller showed when it read them.
    pub(crate) fn named_step_text(&self, name: &str) -> Option<(String, Option<String>)> {
        let text = match self.opts.named_contexts.get(name)? {
            NamedContext::Image(r) => Some(r.clone()),
            NamedContext::Layout(_) => Some("OCI load from client".to_string()),
            NamedContext::Files(_) => None,
        };
        Some((context_name(name).ok()?, text))
    }

    /// The files of a named context, for `COPY --from` and mounts.
    pub(crate) fn named_files(&self, name: &str) -> Option<Arc<MemFs>> {
        match self.opts.named_contexts.get(name)? {
            NamedContext::Files(fs) => Some(fs.clone()),
            _ => None,
        }
    }

    /// The image a named context stands for, if `name` has one.
    pub(crate) async fn named_image(&self, name: &str, platform: &Platform) -> Option<Result<BaseImage>> {
        let b = self.b;
        match self.opts.named_contexts.get(name)? {
            NamedContext::Files(_) => None,
            NamedContext::Image(r) => Some(self.resolve_named(r, platform).await),
            NamedContext::Layout(layout) => Some(from_layout(b.store(), layout, platform)),
        }
    }

    async fn resolve_named(&self, r: &str, platform: &Platform) -> Result<BaseImage> {
        let reference = Reference::parse_normalized(r)
            .map_err(|e| Error::Option(format!("invalid build context docker-image://{r}: {e}")))?
            .with_default_tag();
        base::resolve_metadata(self.b.client(), self.b.store(), &reference, platform, self.opts.resolve_mode).await
    }

    /// `FROM <files context>`: the files as the stage's one layer, on
    /// BuildKit's empty image.
    pub(crate) fn files_stage(&self, stage: String, name: &str, platform: &Platform) -> Result<Option<StageState>> {
        let Some(fs) = self.named_files(name) else { return Ok(None) };
        let tmp = self.b.store().root().join("run");
        let layer = write_layer(self.b.store(), &tmp, fs.iter().map(|(p, n)| (p.as_str(), n)), self.opts.encoding())?;
        let mut image = Image::scratch(platform);
        image.diff_ids.push(layer.diff_id.clone());
        let key = crate::cache::keys::context(name, &layer.diff_id)?;
        let mut st = StageState::new(stage, platform.clone(), image, vec![layer], key);
        st.fs = Some((*fs).clone());
        Ok(Some(st))
    }
}

/// The image of an OCI layout for `platform`, copied into `store`.
fn from_layout(store: &Store, layout: &Layout, platform: &Platform) -> Result<BaseImage> {
    let (dir, image) = read_layout(layout, platform)?;
    let bad = |why: String| Error::Option(format!("build context {layout}: {why}"));
    let manifest = image.manifest.as_image().ok_or_else(|| bad("not an image manifest".into()))?;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        polyarch_store::transfer(&dir, store, d).map_err(|e| bad(format!("blob {}: {e}", d.digest)))?;
    }
    let stored = store.put_manifest(&image.manifest)?;
    base::from_store(store, &stored, layout_reference(&stored.digest)?)
}

/// The reference an image of an OCI layout is known by, pinned to its
/// manifest's `digest` (the build's and the plan's name for it).
pub fn layout_reference(digest: &Digest) -> Result<Reference> {
    let r =
        Reference::parse_normalized(polyarch_frontend::LAYOUT_REFERENCE).map_err(|e| Error::Option(e.to_string()))?;
    Ok(r.with_digest(digest.clone()))
}

/// Finds the image of an OCI layout for `platform`, reading nothing but
/// the layout: the layout opened as a store, and the image (manifest and
/// config) its tag or digest names.
pub fn read_layout(layout: &Layout, platform: &Platform) -> Result<(Store, polyarch_transfer::local::LocalImage)> {
    let shown = layout.to_string();
    let bad = |why: String| Error::Option(format!("build context {shown}: {why}"));
    let Layout { dir, tag, digest } = layout;
    if !dir.join("oci-layout").is_file() || !dir.join("index.json").is_file() {
        return Err(bad("not an OCI layout directory (no oci-layout and index.json)".into()));
    }
    let store = Store::open(dir)?;
    let entries = store.read_index()?.manifests;
    let tagged = |d: &polyarch_oci::Descriptor| {
        tag.as_deref().is_none_or(|t| {
            d.annotation(polyarch_store::ANNOTATION_REF_NAME) == Some(t)
                || d.annotation(polyarch_store::ANNOTATION_IMAGE_NAME).is_some_and(|n| n.ends_with(&format!(":{t}")))
        })
    };
    let found = entries.iter().find(|d| tagged(d) && digest.as_ref().is_none_or(|g| &d.digest == g)).cloned();
    let top = match (found, digest, tag) {
        (Some(d), _, _) => d,
        (None, Some(g), None) => polyarch_transfer::local::manifest_by_digest(&store, g)
            .map_err(Error::local)?
            .ok_or_else(|| bad("no such manifest in the layout".into()))?,
        _ => return Err(bad("no such image in the layout".into())),
    };
    let image = polyarch_transfer::local::image_for(&store, &shown, &top, Some(platform)).map_err(Error::local)?;
    Ok((store, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_buildx_reads_them() {
        assert_eq!(Value::parse("docker-image://busybox:1").unwrap(), Value::Image("busybox:1".into()));
        assert_eq!(Value::parse("./dir").unwrap(), Value::Dir("./dir".into()));
        assert_eq!(Value::parse("https://h/x.tar").unwrap(), Value::Url("https://h/x.tar".into()));
        assert_eq!(Value::parse("git@h:r.git#main").unwrap(), Value::Url("git@h:r.git#main".into()));
        assert_eq!(
            Value::parse("oci-layout:///l/x").unwrap(),
            Value::Layout(Layout { dir: "/l/x".into(), tag: Some("latest".into()), digest: None })
        );
        assert_eq!(
            Value::parse("oci-layout://./a:b/x:v1").unwrap(),
            Value::Layout(Layout { dir: "./a:b/x".into(), tag: Some("v1".into()), digest: None })
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            Value::parse(&format!("oci-layout://l@{d}")).unwrap(),
            Value::Layout(Layout { dir: "l".into(), tag: None, digest: Some(d.parse().unwrap()) })
        );
        assert!(Value::parse("oci-layout://l@sha256:zz").unwrap_err().to_string().contains("oci-layout://l@sha256:zz"));
        assert!(Value::parse("target:base").unwrap_err().to_string().contains("bake"));
        assert!(Value::parse("docker-image://UPPER").is_err());
    }

    #[test]
    fn names_are_familiar_without_latest() {
        assert_eq!(context_name("busybox").unwrap(), "busybox");
        assert_eq!(context_name("docker.io/library/busybox:latest").unwrap(), "busybox");
        assert_eq!(context_name("reg:5000/a/b:1").unwrap(), "reg:5000/a/b:1");
        assert!(context_name("Base").unwrap_err().to_string().contains("Base"));
        let mut n = NamedContexts::new();
        n.insert("alpine:latest", NamedContext::Image("x".into())).unwrap();
        assert!(n.get("docker.io/library/alpine").is_some());
        assert!(n.get("alpine:3").is_none());
    }
}
