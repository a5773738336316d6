//! Outputs of a build, as buildx's `--output`: the local store, an OCI
//! layout (tar or directory), a Docker archive, the root file system as a
//! tar or a directory, and a registry push.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use polyarch_oci::{media_type as mt, Descriptor, ImageManifest, IndexManifest, Platform, RawManifest, Reference};
use polyarch_registry::Client;
use polyarch_snapshot::Root;
use polyarch_store::{BlobSource, Store};
use polyarch_transfer::Content;
use rustix::fs::FileType;

use crate::error::{Error, Result};
use crate::fs::{Kind, MemFs, Node};
use crate::layer::write_tar;
use crate::BuildResult;

/// The OCI annotation with the reference name.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name.
const IMAGE_NAME: &str = "io.containerd.image.name";

/// Every blob of the image, config first.
fn blobs(r: &BuildResult) -> Vec<Descriptor> {
    let mut v = vec![r.config.clone()];
    v.extend(r.layers.iter().map(|l| l.desc.clone()));
    v.push(r.manifest.clone());
    v
}

/// The manifest descriptor with the platform, as an index entry.
fn entry(r: &BuildResult, name: Option<&str>) -> Descriptor {
    let mut d = r.manifest.clone();
    d.media_type = mt::OCI_MANIFEST.into();
    d.platform = Some(r.platform.clone());
    if let Some(n) = name {
        let mut a = BTreeMap::new();
        a.insert(IMAGE_NAME.to_string(), n.to_string());
        if let Ok(reference) = Reference::parse_normalized(n) {
            if let Some(tag) = reference.tag.as_deref() {
                a.insert(REF_NAME.to_string(), tag.to_string());
            }
        }
        d.annotations = Some(a);
    }
    d
}

fn index_json(r: &BuildResult, names: &[String]) -> Result<Vec<u8>> {
    let mut idx = IndexManifest::new(mt::OCI_INDEX);
    if names.is_empty() {
        idx.manifests.push(entry(r, None));
    }
    for n in names {
        idx.manifests.push(entry(r, Some(n)));
    }
    serde_json::to_vec(&idx).map_err(|source| Error::Json { what: "index", source })
}

struct TarWriter<W: Write> {
    b: tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    fn new(w: W) -> Self {
        TarWriter { b: tar::Builder::new(w) }
    }

    fn file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|e| Error::layer("writing", e))?;
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        self.b.append(&h, data).map_err(|e| Error::layer("writing", e))
    }

    /// A blob from the store, streamed.
    fn blob(&mut self, store: &Store, d: &Descriptor) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(blob_path(d)).map_err(|e| Error::layer("writing", e))?;
        h.set_size(d.size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        let r = store.open(d)?;
        self.b.append(&h, r.take(d.size)).map_err(|e| Error::layer("writing", e))
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|e| Error::layer("writing", e))?;
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_cksum();
        self.b.append(&h, &[][..]).map_err(|e| Error::layer("writing", e))
    }

    fn finish(self) -> Result<W> {
        self.b.into_inner().map_err(|e| Error::layer("writing", e))
    }
}

fn blob_path(d: &Descriptor) -> String {
    let s = d.digest.to_string();
    let (alg, hex) = s.split_once(':').unwrap_or(("sha256", &s));
    format!("blobs/{alg}/{hex}")
}

/// An OCI image layout as a tar: `oci-layout`, `index.json` and `blobs`.
fn layout_tar<W: Write>(store: &Store, index_json: &[u8], blobs: Vec<Descriptor>, w: W) -> Result<W> {
    let mut t = TarWriter::new(w);
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.file("index.json", index_json)?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    for d in blobs {
        t.blob(store, &d)?;
    }
    t.finish()
}

/// An OCI image layout as a directory, written through the rooted writer
/// like every tree (see [`write_tree`]).
fn layout_dir(store: &Store, index_json: &[u8], blobs: Vec<Descriptor>, dest: &Path) -> Result<()> {
    let root = Root::create(dest).map_err(|e| snapshot_err(dest, e))?;
    let write = |name: &str, data: &mut dyn Read| -> Result<()> {
        let slot = root.slot(name.as_bytes()).map_err(|e| snapshot_err(dest, e))?;
        slot.write_file(data).and_then(|_| slot.set_mode(0o644)).map_err(|e| snapshot_err(dest, e))
    };
    write("oci-layout", &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..])?;
    write("index.json", &mut &index_json[..])?;
    for d in blobs {
        write(&blob_path(&d), &mut store.open(&d)?)?;
    }
    Ok(())
}

/// The snapshot crate's error as ours; `dest` names the tree for the
/// errors that carry no path.
fn snapshot_err(dest: &Path, e: polyarch_snapshot::Error) -> Error {
    match e {
        polyarch_snapshot::Error::Io { path, source } => Error::Io { path, source },
        other => Error::io(dest, std::io::Error::other(other.to_string())),
    }
}

/// Writes an OCI image layout tar to `w` (`type=oci`).
pub fn write_oci_tar<W: Write>(store: &Store, r: &BuildResult, names: &[String], w: W) -> Result<W> {
    layout_tar(store, &index_json(r, names)?, blobs(r), w)
}

/// Writes an OCI image layout directory (`type=oci,tar=false`).
pub fn write_oci_dir(store: &Store, r: &BuildResult, names: &[String], dest: &Path) -> Result<()> {
    layout_dir(store, &index_json(r, names)?, blobs(r), dest)
}

/// Writes a `docker load` archive (`type=docker`): an OCI layout plus
/// `manifest.json`.
pub fn write_docker_tar<W: Write>(store: &Store, r: &BuildResult, names: &[String], w: W) -> Result<W> {
    let mut t = TarWriter::new(w);
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.file("index.json", &index_json(r, names)?)?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    for d in blobs(r) {
        t.blob(store, &d)?;
    }
    let tags: Vec<String> = names
        .iter()
        .filter_map(|n| Reference::parse_normalized(n).ok())
        .map(|r| r.with_default_tag().familiar_string())
        .collect();
    let manifest = serde_json::json!([{
        "Config": blob_path(&r.config),
        "RepoTags": tags,
        "Layers": r.layers.iter().map(|l| blob_path(&l.desc)).collect::<Vec<_>>(),
    }]);
    let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json { what: "manifest.json", source })?;
    t.file("manifest.json", &bytes)?;
    t.finish()
}

/// The image's root file system.
pub fn rootfs(store: &Store, r: &BuildResult) -> Result<MemFs> {
    crate::dispatch::load_fs(store, &r.layers)
}

/// Writes the root file system as a tar (`type=tar`).
pub fn write_rootfs_tar<W: Write>(store: &Store, r: &BuildResult, w: W) -> Result<W> {
    let fs = rootfs(store, r)?;
    write_tar(w, fs.iter().map(|(p, n)| (p.as_str(), n)))
}

/// Writes the root file system into a directory (`type=local`).
pub fn write_local(store: &Store, r: &BuildResult, dest: &Path) -> Result<()> {
    write_tree(&rootfs(store, r)?, dest)
}

/// Writes `tree` below `dest` (made if missing). Every entry goes through
/// the snapshot crate's rooted writer: its parents resolve inside `dest`
/// (a symlink in the tree, absolute or climbing with `..`, is followed as
/// if `dest` were `/`), and nothing follows the entry's own name, so no
/// write lands outside `dest` whatever the tree's links say. Owners are
/// set when running as root; modes, xattrs and times are set.
pub(crate) fn write_tree(tree: &MemFs, dest: &Path) -> Result<()> {
    let err = |e| snapshot_err(dest, e);
    let root = Root::create(dest).map_err(err)?;
    let owners = crate::fs::is_root();
    let mut firsts: HashMap<u64, (&str, &Node)> = HashMap::new();
    for (path, node) in tree.iter() {
        let slot = root.slot(path.as_bytes()).map_err(err)?;
        let first = node.link.and_then(|g| firsts.get(&g)).filter(|(_, f)| f.same_inode(node));
        // Should linking fail, the member is written as a file of its own.
        if first.is_some_and(|(first, _)| root.slot(first.as_bytes()).and_then(|t| slot.hard_link(&t)).is_ok()) {
            continue;
        }
        if let Some(g) = node.link {
            firsts.entry(g).or_insert((path, node));
        }
        match &node.kind {
            Kind::Dir => slot.make_dir().map_err(err)?,
            Kind::File(content) => {
                slot.write_file(&mut content.open()?).map_err(err)?;
            }
            Kind::Symlink(t) => slot.symlink(t.as_bytes()).map_err(err)?,
            Kind::Fifo => slot.make_node(FileType::Fifo, 0).map_err(err)?,
            // A device node can only be made by root; elsewhere it is left out.
            Kind::Device { .. } if !owners => continue,
            Kind::Device { block, major, minor } => {
                let ft = if *block { FileType::BlockDevice } else { FileType::CharacterDevice };
                slot.make_node(ft, rustix::fs::makedev(*major, *minor)).map_err(err)?
            }
        }
        if owners {
            let _ = slot.set_owner(node.uid as u32, node.gid as u32);
        }
        if !matches!(node.kind, Kind::Symlink(_)) {
            slot.set_mode(node.mode).map_err(err)?;
        }
        // After the owner: changing it clears `security.capability`. Best
        // effort, as a file system or an unprivileged process may refuse
        // some namespaces.
        for (k, v) in &node.xattrs {
            let _ = slot.set_xattr(k, v);
        }
    }
    // Times last, deepest first, so that writing children does not change
    // a directory's time again.
    let all: Vec<(&String, &Node)> = tree.iter().collect();
    for (path, node) in all.into_iter().rev() {
        if matches!(node.kind, Kind::Symlink(_)) {
            continue;
        }
        if let Ok(slot) = root.slot(path.as_bytes()) {
            let _ = slot.set_mtime(node.mtime.max(0));
        }
    }
    Ok(())
}

/// Tags the image in the store under each name (`type=image`, default).
pub fn tag(store: &Store, r: &BuildResult, names: &[String]) -> Result<()> {
    let mut d = r.manifest.clone();
    d.platform = Some(r.platform.clone());
    for n in names {
        store.tag(n, &d)?;
    }
    Ok(())
}

/// Pushes the image to each reference (`push=true`, `type=registry`).
pub async fn push(client: &Client, store: &Store, r: &BuildResult, names: &[String]) -> Result<()> {
    let tags = names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>>>()?;
    push_to(client, store, &image_content(store, r)?, &tags).await
}

/// A name as a reference with a tag (`latest` when it has none).
fn parse_name(n: &str) -> Result<Reference> {
    Ok(Reference::parse_normalized(n)
        .map_err(|e| Error::Option(format!("invalid reference {n:?}: {e}")))?
        .with_default_tag())
}

/// Pushes one image's config and layers, then its manifest at `at` (a tag,
/// or the manifest's digest).
pub async fn push_image(client: &Client, store: &Store, r: &BuildResult, at: &Reference) -> Result<()> {
    push_to(client, store, &image_content(store, r)?, std::slice::from_ref(at)).await
}

fn image_content(store: &Store, r: &BuildResult) -> Result<Content> {
    let mut desc = r.manifest.clone();
    desc.platform = Some(r.platform.clone());
    Ok(Content::image(desc, store.get_manifest(&r.manifest)?))
}

/// The one push of a build's output: `polyarch_transfer`'s, blobs in
/// parallel, streamed from the store or mounted, children before tags.
async fn push_to(client: &Client, store: &Store, content: &Content, tags: &[Reference]) -> Result<()> {
    match polyarch_transfer::push_content(client, store, content, tags, &polyarch_transfer::event::ignore).await {
        Ok(_) => Ok(()),
        Err(e) => {
            Err(Error::Push { reference: tags.first().map(|t| t.to_string()).unwrap_or_default(), source: Box::new(e) })
        }
    }
}

/// Whether every blob of the image is present (used by tests and checks).
pub fn complete(store: &Store, r: &BuildResult) -> Result<bool> {
    for d in blobs(r) {
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

impl IndexChild {
    /// Every blob, config first, the manifest last.
    fn blobs(&self) -> Vec<Descriptor> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v.push(self.manifest.clone());
        v
    }
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
            other => {
                return Err(Error::Option(format!(
                    "oci-mediatypes=false: a layer of type {other} has no Docker media type (use compression=gzip)"
                )))
            }
        };
        layers.push(d);
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(mt::DOCKER_MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: layers.clone(),
        subject: None,
        annotations: None,
        extra: Default::default(),
    };
    let raw = RawManifest::from_image(&manifest).map_err(|e| Error::Layer(e.to_string()))?;
    Ok((store.put_manifest(&raw)?, config, layers))
}

/// Writes the index over `results` to the store: an OCI index whose
/// children keep OCI media types, or with `docker_types` a Docker manifest
/// list whose children use Docker media types too (as buildx with
/// `oci-mediatypes=false`). Every entry carries its platform.
pub fn assemble_index(store: &Store, results: &[BuildResult], docker_types: bool) -> Result<IndexImage> {
    let mut children = Vec::new();
    for r in results {
        let (mut manifest, config, layers) = if docker_types {
            docker_child(store, r)?
        } else {
            (r.manifest.clone(), r.config.clone(), r.layers.iter().map(|l| l.desc.clone()).collect())
        };
        manifest.platform = Some(r.platform.clone());
        children.push(IndexChild { manifest, config, layers, result: r.clone() });
    }
    let mut idx = IndexManifest::new(if docker_types { mt::DOCKER_MANIFEST_LIST } else { mt::OCI_INDEX });
    idx.manifests = children.iter().map(|c| c.manifest.clone()).collect();
    let raw = RawManifest::from_index(&idx).map_err(|e| Error::Layer(e.to_string()))?;
    let index = store.put_manifest(&raw)?;
    Ok(IndexImage { index, raw, children })
}

/// Tags the index in the store under each name.
pub fn tag_index(store: &Store, img: &IndexImage, names: &[String]) -> Result<()> {
    for n in names {
        store.tag(n, &img.index)?;
    }
    Ok(())
}

/// Pushes every child (blobs, then the manifest by digest) and then the
/// index under each reference, so that no tag ever names missing content.
pub async fn push_index(client: &Client, store: &Store, img: &IndexImage, names: &[String]) -> Result<()> {
    let tags = names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>>>()?;
    let images = img.children.iter().map(|c| Ok((c.manifest.clone(), store.get_manifest(&c.manifest)?)));
    let content = Content { root: img.raw.clone(), images: images.collect::<Result<_>>()? };
    push_to(client, store, &content, &tags).await
}

/// `index.json` of an OCI layout holding the index, once per name.
fn layout_index(img: &IndexImage, names: &[String]) -> Result<Vec<u8>> {
    let mut top = IndexManifest::new(mt::OCI_INDEX);
    let mut named = |name: Option<&str>| {
        let mut d = img.index.clone();
        d.platform = None;
        if let Some(n) = name {
            let mut a = BTreeMap::new();
            a.insert(IMAGE_NAME.to_string(), n.to_string());
            if let Some(tag) = Reference::parse_normalized(n).ok().and_then(|r| r.tag) {
                a.insert(REF_NAME.to_string(), tag);
            }
            d.annotations = Some(a);
        }
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

fn index_blobs(img: &IndexImage) -> Vec<Descriptor> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for d in img.children.iter().flat_map(IndexChild::blobs).chain(std::iter::once(img.index.clone())) {
        if seen.insert(d.digest.clone()) {
            out.push(d);
        }
    }
    out
}

/// Writes an OCI image layout tar holding the index (`type=oci`).
pub fn write_oci_index_tar<W: Write>(store: &Store, img: &IndexImage, names: &[String], w: W) -> Result<W> {
    layout_tar(store, &layout_index(img, names)?, index_blobs(img), w)
}

/// Writes an OCI image layout directory holding the index
/// (`type=oci,tar=false`).
pub fn write_oci_index_dir(store: &Store, img: &IndexImage, names: &[String], dest: &Path) -> Result<()> {
    layout_dir(store, &layout_index(img, names)?, index_blobs(img), dest)
}

/// The directory buildx writes a platform's files to: `linux_arm_v7`.
pub fn platform_dir(p: &Platform) -> String {
    p.format().replace('/', "_")
}

/// Writes each platform's root file system into its own subdirectory of
/// `dest` (`type=local` with several platforms).
pub fn write_local_platforms(store: &Store, results: &[BuildResult], dest: &Path) -> Result<()> {
    for r in results {
        write_local(store, r, &dest.join(platform_dir(&r.platform)))?;
    }
    Ok(())
}

/// Writes each platform's root file system under its own directory in one
/// tar (`type=tar` with several platforms).
pub fn write_rootfs_tar_platforms<W: Write>(store: &Store, results: &[BuildResult], w: W) -> Result<W> {
    let mut all = MemFs::new();
    for r in results {
        let dir = platform_dir(&r.platform);
        let fs = rootfs(store, r)?;
        let mut top = crate::fs::Node::dir(0o755, 0, 0, 0);
        if let Some(root) = fs.iter().find(|(p, _)| p.is_empty()).map(|(_, n)| n.clone()) {
            top = root;
        }
        all.insert(dir.clone(), top);
        for (p, n) in fs.iter().filter(|(p, _)| !p.is_empty()) {
            all.insert(format!("{dir}/{p}"), n.clone());
        }
    }
    write_tar(w, all.iter().map(|(p, n)| (p.as_str(), n)))
}

/// The name a platform's image gets in a multi-platform Docker archive:
/// the tag with the platform appended (`app:1.0` → `app:1.0-linux-arm-v7`).
pub fn platform_tag(name: &str, p: &Platform) -> Result<String> {
    let r = Reference::parse_normalized(name)
        .map_err(|e| Error::Option(format!("invalid reference {name:?}: {e}")))?
        .with_default_tag();
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let suffix = p.format().replace('/', "-");
    let tagged = Reference { tag: Some(format!("{tag}-{suffix}")), digest: None, ..r };
    Ok(tagged.familiar_string())
}

/// Each platform of a Docker archive and the names it is loaded as.
pub type Loaded = Vec<(Platform, Vec<String>)>;

/// Writes a `docker load` archive with one image per platform, each under
/// its platform's tags ([`platform_tag`]), since `docker load` (without the
/// containerd store) and `podman load` load images, not indexes. Returns
/// what each platform is loaded as.
pub fn write_docker_platforms<W: Write>(
    store: &Store,
    results: &[BuildResult],
    names: &[String],
    w: W,
) -> Result<(W, Loaded)> {
    let mut t = TarWriter::new(w);
    let mut loaded = Vec::new();
    let mut idx = IndexManifest::new(mt::OCI_INDEX);
    let mut manifest_json = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    for r in results {
        let tags = names.iter().map(|n| platform_tag(n, &r.platform)).collect::<Result<Vec<_>>>()?;
        for d in blobs(r) {
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
    t.file("index.json", &serde_json::to_vec(&idx).map_err(|source| Error::Json { what: "index", source })?)?;
    let bytes = serde_json::to_vec(&manifest_json).map_err(|source| Error::Json { what: "manifest.json", source })?;
    t.file("manifest.json", &bytes)?;
    Ok((t.finish()?, loaded))
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
}
