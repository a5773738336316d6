//! Outputs of a build, as buildx's `--output` (see [`crate::output`] for
//! the parsed form): the local store, an OCI layout (tar or directory), a
//! Docker archive, the root file system as a tar or a directory, and a
//! registry push. Each output is one function over [`Built`], one image or
//! an index over one image per platform; archives go through the store's
//! [`TarOut`], trees through the snapshot crate's rooted writer, pushes
//! through `polyarch_transfer`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use polyarch_index::annotation::{for_target, Annotation, AnnotationTarget};
use polyarch_oci::{media_type as mt, Descriptor, ImageManifest, IndexManifest, Platform, RawManifest, Reference};
use polyarch_registry::Client;
use polyarch_store::archive::TarOut;
use polyarch_store::{BlobSource, Store};
use polyarch_transfer::Content;

use crate::error::{Error, Result};
use crate::fs::MemFs;
use crate::layer::write_tar;
use crate::BuildResult;

mod tree;

pub(crate) use tree::write_tree;

/// The OCI annotation with the reference name.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name.
const IMAGE_NAME: &str = "io.containerd.image.name";

/// What a build made, for its outputs.
#[derive(Debug, Clone)]
pub enum Built {
    /// One image (a build for one platform).
    Image(Box<BuildResult>),
    /// An index over one image per platform.
    Index(Box<IndexImage>),
}

impl Built {
    /// What a name points at: the image manifest (with its platform) or
    /// the index.
    pub fn descriptor(&self) -> Descriptor {
        match self {
            Built::Image(r) => Descriptor { platform: Some(r.platform.clone()), ..r.manifest.clone() },
            Built::Index(img) => img.index.clone(),
        }
    }

    /// The images, one per platform, in the order built.
    pub fn images(&self) -> Vec<&BuildResult> {
        match self {
            Built::Image(r) => vec![r],
            Built::Index(img) => img.children.iter().map(|c| &c.result).collect(),
        }
    }

    /// Every blob of an OCI layout holding it, each once: per image its
    /// config, layers and manifest, then the index.
    fn blobs(&self) -> Vec<Descriptor> {
        let mut all: Vec<Descriptor> = match self {
            Built::Image(r) => image_blobs(&r.config, r.layers.iter().map(|l| &l.desc), &r.manifest),
            Built::Index(img) => img
                .children
                .iter()
                .flat_map(|c| image_blobs(&c.config, c.layers.iter(), &c.manifest))
                .chain(std::iter::once(img.index.clone()))
                .collect(),
        };
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|d| seen.insert(d.digest.clone()));
        all
    }

    /// `index.json` of an OCI layout holding it: its descriptor once per
    /// name (once unnamed without names), with the name annotations and
    /// the `index-descriptor` ones.
    fn layout_index(&self, names: &[String], annotations: &[Annotation]) -> Result<Vec<u8>> {
        let mut top = IndexManifest::new(mt::OCI_INDEX);
        let extra = for_target(annotations, AnnotationTarget::IndexDescriptor.name(), None);
        let mut named = |name: Option<&str>| {
            let mut d = self.descriptor();
            if matches!(self, Built::Image(_)) {
                d.media_type = mt::OCI_MANIFEST.into();
            } else {
                d.platform = None;
            }
            let mut a = extra.clone();
            if let Some(n) = name {
                a.insert(IMAGE_NAME.to_string(), n.to_string());
                if let Some(tag) = Reference::parse_normalized(n).ok().and_then(|r| r.tag) {
                    a.insert(REF_NAME.to_string(), tag);
                }
            }
            d.annotations = (!a.is_empty()).then_some(a);
            top.manifests.push(d);
        };
        if names.is_empty() {
            named(None);
        }
        for n in names {
            named(Some(n));
        }
        serde_json::to_vec(&top).map_err(|source| Error::Json { what: "index", source })
    }

    /// What a push sends.
    fn content(&self, store: &Store) -> Result<Content> {
        match self {
            Built::Image(r) => Ok(Content::image(self.descriptor(), store.get_manifest(&r.manifest)?)),
            Built::Index(img) => {
                let images = img.children.iter().map(|c| Ok((c.manifest.clone(), store.get_manifest(&c.manifest)?)));
                Ok(Content { root: img.raw.clone(), images: images.collect::<Result<_>>()? })
            }
        }
    }
}

fn image_blobs<'a>(
    config: &Descriptor,
    layers: impl Iterator<Item = &'a Descriptor>,
    manifest: &Descriptor,
) -> Vec<Descriptor> {
    std::iter::once(config.clone()).chain(layers.cloned()).chain(std::iter::once(manifest.clone())).collect()
}

/// `blobs/<alg>/<hex>`.
fn blob_path(d: &Descriptor) -> String {
    format!("blobs/{}/{}", d.digest.algorithm().name(), d.digest.hex())
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes an OCI image layout tar to `w` (`type=oci`).
pub fn write_oci_tar<W: Write>(
    store: &Store,
    built: &Built,
    names: &[String],
    annotations: &[Annotation],
    w: W,
) -> Result<()> {
    let mut t = TarOut::new(w);
    t.bytes("oci-layout", OCI_LAYOUT)?;
    t.bytes("index.json", &built.layout_index(names, annotations)?)?;
    for d in built.blobs() {
        t.blob(store, &d)?;
    }
    Ok(t.finish()?)
}

/// Writes an OCI image layout directory (`type=oci,tar=false`).
pub fn write_oci_dir(
    store: &Store,
    built: &Built,
    names: &[String],
    annotations: &[Annotation],
    dest: &Path,
) -> Result<()> {
    tree::layout_dir(store, &built.layout_index(names, annotations)?, &built.blobs(), dest)
}

/// Writes an OCI layout directory of `blobs` from the store with
/// `index_json` (a cache export), through the rooted writer.
pub(crate) fn write_layout_dir(store: &Store, index_json: &[u8], blobs: &[Descriptor], dest: &Path) -> Result<()> {
    tree::layout_dir(store, index_json, blobs, dest)
}

/// Each platform of a Docker archive and the names it is loaded as.
pub type Loaded = Vec<(Platform, Vec<String>)>;

/// Writes a `docker load` archive (`type=docker`): an OCI layout plus
/// `manifest.json`. An index is written as one image per platform, each
/// under its platform's tags ([`platform_tag`]), since `docker load`
/// (without the containerd store) and `podman load` load images, not
/// indexes. Returns what each platform is loaded as.
pub fn write_docker_tar<W: Write>(store: &Store, built: &Built, names: &[String], w: W) -> Result<Loaded> {
    let mut t = TarOut::new(w);
    let mut loaded = Vec::new();
    let mut idx = IndexManifest::new(mt::OCI_INDEX);
    let mut manifest_json = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    t.bytes("oci-layout", OCI_LAYOUT)?;
    for r in built.images() {
        let tags = match built {
            Built::Image(_) => names
                .iter()
                .filter_map(|n| Reference::parse_normalized(n).ok())
                .map(|r| r.with_default_tag().familiar_string())
                .collect(),
            Built::Index(_) => names.iter().map(|n| platform_tag(n, &r.platform)).collect::<Result<Vec<_>>>()?,
        };
        for d in image_blobs(&r.config, r.layers.iter().map(|l| &l.desc), &r.manifest) {
            if seen.insert(d.digest.clone()) {
                t.blob(store, &d)?;
            }
        }
        if tags.is_empty() {
            idx.manifests.push(entry(r, None));
        }
        for tag in &tags {
            let full = Reference::parse_normalized(tag).map(|r| r.to_string()).unwrap_or_else(|_| tag.clone());
            idx.manifests.push(entry(r, Some(&full)));
        }
        manifest_json.push(serde_json::json!({
            "Config": blob_path(&r.config),
            "RepoTags": tags,
            "Layers": r.layers.iter().map(|l| blob_path(&l.desc)).collect::<Vec<_>>(),
        }));
        loaded.push((r.platform.clone(), tags));
    }
    t.bytes("index.json", &serde_json::to_vec(&idx).map_err(|source| Error::Json { what: "index", source })?)?;
    let bytes = serde_json::to_vec(&manifest_json).map_err(|source| Error::Json { what: "manifest.json", source })?;
    t.bytes("manifest.json", &bytes)?;
    t.finish()?;
    Ok(loaded)
}

/// An image's manifest descriptor with its platform, as an entry of a
/// Docker archive's `index.json`.
fn entry(r: &BuildResult, name: Option<&str>) -> Descriptor {
    let mut d = r.manifest.clone();
    d.media_type = mt::OCI_MANIFEST.into();
    d.platform = Some(r.platform.clone());
    if let Some(n) = name {
        let mut a = BTreeMap::new();
        a.insert(IMAGE_NAME.to_string(), n.to_string());
        if let Some(tag) = Reference::parse_normalized(n).ok().and_then(|r| r.tag) {
            a.insert(REF_NAME.to_string(), tag);
        }
        d.annotations = Some(a);
    }
    d
}

/// The image's root file system.
pub fn rootfs(store: &Store, r: &BuildResult) -> Result<MemFs> {
    crate::dispatch::load_fs(store, &r.layers)
}

/// The root file systems of the images: one at the top for an image; for
/// an index, each platform's under its own directory ([`platform_dir`]),
/// or with `split` false all laid over each other at the top.
fn rootfs_all(store: &Store, built: &Built, split: bool) -> Result<MemFs> {
    let Built::Index(_) = built else { return rootfs(store, built.images()[0]) };
    let mut all = MemFs::new();
    for r in built.images() {
        let fs = rootfs(store, r)?;
        if !split {
            for (p, n) in fs.iter() {
                all.insert(p.clone(), n.clone());
            }
            continue;
        }
        // The directory first: inserting it later would replace what is below.
        let dir = platform_dir(&r.platform);
        all.insert(dir.clone(), crate::fs::Node::dir(0o755, 0, 0, 0));
        for (p, n) in fs.iter().filter(|(p, _)| !p.is_empty()) {
            all.insert(format!("{dir}/{p}"), n.clone());
        }
    }
    Ok(all)
}

/// Writes the root file system as a tar (`type=tar`); an index's
/// platforms each under their own directory unless `split` is false.
pub fn write_rootfs_tar<W: Write>(store: &Store, built: &Built, split: bool, w: W) -> Result<W> {
    let fs = rootfs_all(store, built, split)?;
    write_tar(w, fs.iter().map(|(p, n)| (p.as_str(), n)))
}

/// Writes the root file system into a directory (`type=local`); an
/// index's platforms each into their own subdirectory unless `split` is
/// false.
pub fn write_local(store: &Store, built: &Built, split: bool, dest: &Path) -> Result<()> {
    match built {
        Built::Index(_) if split => {
            for r in built.images() {
                write_tree(&rootfs(store, r)?, &dest.join(platform_dir(&r.platform)))?;
            }
            Ok(())
        }
        _ => write_tree(&rootfs_all(store, built, split)?, dest),
    }
}

/// Names what the build made in the store (`type=image`).
pub fn tag(store: &Store, built: &Built, names: &[String]) -> Result<()> {
    let d = built.descriptor();
    for n in names {
        store.tag(n, &d)?;
    }
    Ok(())
}

/// Pushes what the build made under each name (`push=true`,
/// `type=registry`): every child first, the tags last.
pub async fn push(client: &Client, store: &Store, built: &Built, names: &[String]) -> Result<()> {
    push_with(client, store, built, names, &polyarch_transfer::event::ignore).await
}

/// [`push`], reporting each blob's upload to `events`.
pub async fn push_with(
    client: &Client,
    store: &Store,
    built: &Built,
    names: &[String],
    events: polyarch_transfer::EventSink<'_>,
) -> Result<()> {
    let tags = names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>>>()?;
    push_to(client, store, &built.content(store)?, &tags, events).await
}

/// Pushes one image's config and layers, then its manifest at `at` (a tag,
/// or the manifest's digest).
pub async fn push_image(client: &Client, store: &Store, r: &BuildResult, at: &Reference) -> Result<()> {
    let built = Built::Image(Box::new(r.clone()));
    push_to(client, store, &built.content(store)?, std::slice::from_ref(at), &polyarch_transfer::event::ignore).await
}

/// A name as a reference with a tag (`latest` when it has none).
fn parse_name(n: &str) -> Result<Reference> {
    Ok(Reference::parse_normalized(n).map_err(|e| Error::Option(e.to_string()))?.with_default_tag())
}

/// The one push of a build's output: `polyarch_transfer`'s, blobs in
/// parallel, streamed from the store or mounted, children before tags.
pub(crate) async fn push_to(
    client: &Client,
    store: &Store,
    content: &Content,
    tags: &[Reference],
    events: polyarch_transfer::EventSink<'_>,
) -> Result<()> {
    match polyarch_transfer::push_content(client, store, content, tags, events).await {
        Ok(_) => Ok(()),
        Err(e) => {
            Err(Error::Push { reference: tags.first().map(|t| t.to_string()).unwrap_or_default(), source: Box::new(e) })
        }
    }
}

/// Whether every blob of the image is present (used by tests and checks).
pub fn complete(store: &Store, r: &BuildResult) -> Result<bool> {
    for d in image_blobs(&r.config, r.layers.iter().map(|l| &l.desc), &r.manifest) {
        if !store.exists(&d.digest)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The platform string for reports.
pub fn platform_string(p: &Platform) -> String {
    p.format()
}

/// A multi-platform image: an index over one image per platform, as
/// `docker buildx build --platform a,b` exports it.
#[derive(Debug, Clone)]
pub struct IndexImage {
    /// The index in the store (OCI index or Docker manifest list).
    pub index: Descriptor,
    /// The index as written.
    pub raw: RawManifest,
    /// Per platform, in the order built.
    pub children: Vec<IndexChild>,
}

/// One platform of an [`IndexImage`].
#[derive(Debug, Clone)]
pub struct IndexChild {
    /// The image manifest as the index lists it (with the platform).
    pub manifest: Descriptor,
    /// Its config blob.
    pub config: Descriptor,
    /// Its layers, base first.
    pub layers: Vec<Descriptor>,
    /// The build that produced it.
    pub result: BuildResult,
}

/// Checks that `annotations` fit what the build makes, as BuildKit does
/// ("the build must produce the component that you specify"): an index
/// and its descriptors exist only for several platforms, and Docker media
/// types (`oci-mediatypes=false`) have no annotations.
pub fn check_annotations(annotations: &[Annotation], index: bool, docker_types: bool) -> Result<()> {
    if let Some(a) = annotations.first().filter(|_| docker_types) {
        return Err(Error::Option(format!(
            "annotation {a}: Docker media types (oci-mediatypes=false) have no annotations"
        )));
    }
    let needs_index =
        |a: &&Annotation| matches!(a.target, AnnotationTarget::Index | AnnotationTarget::ManifestDescriptor(_));
    match annotations.iter().find(needs_index) {
        Some(a) if !index => Err(Error::Option(format!(
            "annotation {a}: a build for one platform makes no index (build for several with --platform)"
        ))),
        _ => Ok(()),
    }
}

/// The image with the `manifest` annotations for its platform added to
/// its manifest (stored); unchanged when none applies.
pub fn annotate(store: &Store, r: &BuildResult, annotations: &[Annotation]) -> Result<BuildResult> {
    let extra = for_target(annotations, AnnotationTarget::Manifest(None).name(), Some(&r.platform));
    if extra.is_empty() {
        return Ok(r.clone());
    }
    let manifest = rewrite_manifest(store, r, |m| m.annotations.get_or_insert_with(Default::default).extend(extra))?;
    Ok(BuildResult { manifest, ..r.clone() })
}

/// Stores `r`'s manifest as `change` leaves it; returns its descriptor.
fn rewrite_manifest(store: &Store, r: &BuildResult, change: impl FnOnce(&mut ImageManifest)) -> Result<Descriptor> {
    let raw = store.get_manifest(&r.manifest)?;
    let mut m =
        raw.as_image().cloned().ok_or_else(|| Error::Layer(format!("{} is not an image", r.manifest.digest)))?;
    change(&mut m);
    let raw = RawManifest::from_image(&m).map_err(|e| Error::Layer(e.to_string()))?;
    Ok(store.put_manifest(&raw)?)
}

/// The image with every layer compressed as `encoding` says
/// (`force-compression=true`, as BuildKit converts the base image's
/// layers too): the others are recompressed into the store (see
/// [`crate::layer::recompress`]) and a manifest naming them is stored,
/// with the same config and annotations; unchanged when every layer is
/// compressed so already.
pub fn force_compression(store: &Store, r: &BuildResult, encoding: impl Into<crate::Encoding>) -> Result<BuildResult> {
    let encoding = encoding.into();
    if r.layers.iter().all(|l| encoding.compression.is_of(&l.desc.media_type)) {
        return Ok(r.clone());
    }
    let tmp = store.root().join("run");
    let layers =
        r.layers.iter().map(|l| crate::layer::recompress(store, &tmp, l, encoding)).collect::<Result<Vec<_>>>()?;
    let manifest = rewrite_manifest(store, r, |m| m.layers = layers.iter().map(|l| l.desc.clone()).collect())?;
    Ok(BuildResult { manifest, layers, ..r.clone() })
}

/// Docker media types for an image built with OCI ones
/// (`oci-mediatypes=false`); zstd layers have none.
fn docker_child(store: &Store, r: &BuildResult) -> Result<(Descriptor, Descriptor, Vec<Descriptor>)> {
    let mut config = r.config.clone();
    config.media_type = mt::DOCKER_CONFIG.into();
    let mut layers = Vec::new();
    for l in &r.layers {
        let mut d = l.desc.clone();
        d.media_type = match d.media_type.as_str() {
            mt::OCI_LAYER_GZIP | mt::DOCKER_LAYER_GZIP => mt::DOCKER_LAYER_GZIP.into(),
            mt::OCI_LAYER_TAR | mt::DOCKER_LAYER_TAR => mt::DOCKER_LAYER_TAR.into(),
            other => {
                return Err(Error::Option(format!(
                    "oci-mediatypes=false: a layer of type {other} has no Docker media type (use compression=gzip or uncompressed)"
                )))
            }
        };
        layers.push(d);
    }
    let manifest = ImageManifest::new(mt::DOCKER_MANIFEST, config.clone(), layers.clone());
    let raw = RawManifest::from_image(&manifest).map_err(|e| Error::Layer(e.to_string()))?;
    Ok((store.put_manifest(&raw)?, config, layers))
}

/// `r` as an image of Docker media types (a schema 2 manifest, its config
/// and gzip layers), as buildx writes a single-platform image with
/// `oci-mediatypes=false`.
pub fn with_docker_types(store: &Store, r: &BuildResult) -> Result<BuildResult> {
    let (manifest, config, layers) = docker_child(store, r)?;
    let mut out = r.clone();
    out.manifest = manifest;
    out.config = config;
    for (l, d) in out.layers.iter_mut().zip(layers) {
        l.desc = d;
    }
    Ok(out)
}

/// Writes the index over `results` to the store: an OCI index whose
/// children keep OCI media types, or with `docker_types` a Docker manifest
/// list whose children use Docker media types too (as buildx with
/// `oci-mediatypes=false`). Every entry carries its platform and the
/// `manifest-descriptor` annotations for it; the index the `index` ones.
/// (The `manifest` ones are the images' own: see [`annotate`].)
pub fn assemble_index(
    store: &Store,
    results: &[BuildResult],
    docker_types: bool,
    annotations: &[Annotation],
) -> Result<IndexImage> {
    check_annotations(annotations, true, docker_types)?;
    let mut children = Vec::new();
    for r in results {
        let (mut manifest, config, layers) = if docker_types {
            docker_child(store, r)?
        } else {
            (r.manifest.clone(), r.config.clone(), r.layers.iter().map(|l| l.desc.clone()).collect())
        };
        manifest.platform = Some(r.platform.clone());
        let extra = for_target(annotations, AnnotationTarget::ManifestDescriptor(None).name(), Some(&r.platform));
        if !extra.is_empty() {
            manifest.annotations.get_or_insert_with(Default::default).extend(extra);
        }
        children.push(IndexChild { manifest, config, layers, result: r.clone() });
    }
    let mut idx = IndexManifest::new(if docker_types { mt::DOCKER_MANIFEST_LIST } else { mt::OCI_INDEX });
    idx.manifests = children.iter().map(|c| c.manifest.clone()).collect();
    let own = for_target(annotations, AnnotationTarget::Index.name(), None);
    idx.annotations = (!own.is_empty()).then_some(own);
    let raw = RawManifest::from_index(&idx).map_err(|e| Error::Layer(e.to_string()))?;
    let index = store.put_manifest(&raw)?;
    Ok(IndexImage { index, raw, children })
}

/// The directory buildx writes a platform's files to: `linux_arm_v7`.
pub fn platform_dir(p: &Platform) -> String {
    p.format().replace('/', "_")
}

/// The name a platform's image gets in a multi-platform Docker archive:
/// the tag with the platform appended (`app:1.0` → `app:1.0-linux-arm-v7`).
pub fn platform_tag(name: &str, p: &Platform) -> Result<String> {
    let r = Reference::parse_normalized(name).map_err(|e| Error::Option(e.to_string()))?.with_default_tag();
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let suffix = p.format().replace('/', "-");
    let tagged = Reference { tag: Some(format!("{tag}-{suffix}")), digest: None, ..r };
    Ok(tagged.familiar_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_as_buildx() {
        assert_eq!(platform_dir(&Platform::new("linux", "arm", Some("v7"))), "linux_arm_v7");
        assert_eq!(platform_dir(&Platform::new("linux", "arm64", None)), "linux_arm64");
        let p = Platform::new("linux", "arm", Some("v7"));
        assert_eq!(platform_tag("docker.io/library/app:1.0", &p).unwrap(), "app:1.0-linux-arm-v7");
        assert_eq!(
            platform_tag("reg.example:5000/team/app", &p).unwrap(),
            "reg.example:5000/team/app:latest-linux-arm-v7"
        );
    }

    #[test]
    fn annotations_must_fit_the_build() {
        let parse = |s: &str| Annotation::parse_build(s).unwrap();
        assert!(check_annotations(&parse("k=v"), false, false).is_ok());
        let err = check_annotations(&parse("index:k=v"), false, false).unwrap_err().to_string();
        assert!(err.contains("index:k=v") && err.contains("one platform"), "{err}");
        assert!(check_annotations(&parse("manifest-descriptor:k=v"), false, false).is_err());
        assert!(check_annotations(&parse("index,manifest-descriptor:k=v"), true, false).is_ok());
        let err = check_annotations(&parse("k=v"), true, true).unwrap_err().to_string();
        assert!(err.contains("oci-mediatypes=false"), "{err}");
    }
}
