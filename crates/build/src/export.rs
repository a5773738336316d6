//! Outputs of a build, as buildx's `--output`: the local store, an OCI
//! layout (tar or directory), a Docker archive, the root file system as a
//! tar or a directory, and a registry push.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use polyarch_oci::{media_type as mt, Descriptor, IndexManifest, Platform, Reference};
use polyarch_registry::Client;
use polyarch_store::{BlobSource, Store};

use crate::error::{Error, Result};
use crate::fs::MemFs;
use crate::layer::tar_entries;
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

/// Writes an OCI image layout tar to `w` (`type=oci`).
pub fn write_oci_tar<W: Write>(store: &Store, r: &BuildResult, names: &[String], w: W) -> Result<W> {
    let mut t = TarWriter::new(w);
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.file("index.json", &index_json(r, names)?)?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    for d in blobs(r) {
        t.blob(store, &d)?;
    }
    t.finish()
}

/// Writes an OCI image layout directory (`type=oci,tar=false`).
pub fn write_oci_dir(store: &Store, r: &BuildResult, names: &[String], dest: &Path) -> Result<()> {
    let blobs_dir = dest.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(|e| Error::io(&blobs_dir, e))?;
    let write = |p: &Path, data: &[u8]| std::fs::write(p, data).map_err(|e| Error::io(p, e));
    write(&dest.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write(&dest.join("index.json"), &index_json(r, names)?)?;
    for d in blobs(r) {
        let path = dest.join(blob_path(&d));
        let mut out = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        std::io::copy(&mut store.open(&d)?, &mut out).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
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
pub fn write_rootfs_tar<W: Write>(store: &Store, r: &BuildResult, mut w: W) -> Result<W> {
    let fs = rootfs(store, r)?;
    let tar = tar_entries(fs.iter().map(|(p, n)| (p.as_str(), n)))?;
    w.write_all(&tar).map_err(|e| Error::layer("writing", e))?;
    Ok(w)
}

/// Writes the root file system into a directory (`type=local`).
pub fn write_local(store: &Store, r: &BuildResult, dest: &Path) -> Result<()> {
    rootfs(store, r)?.write_to_dir(dest)
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
    for n in names {
        let reference = Reference::parse_normalized(n)
            .map_err(|e| Error::Option(format!("invalid reference {n:?}: {e}")))?
            .with_default_tag();
        let mut all = vec![r.config.clone()];
        all.extend(r.layers.iter().map(|l| l.desc.clone()));
        for d in &all {
            let data = bytes::Bytes::from(store.read_bytes(d, u64::MAX)?.to_vec());
            client
                .push_blob(&reference, d, &data)
                .await
                .map_err(|e| Error::registry(format!("pushing {}", d.digest), e))?;
        }
        let raw = store.get_manifest(&r.manifest)?;
        client.put_manifest(&reference, &raw).await.map_err(|e| Error::registry(format!("pushing {reference}"), e))?;
    }
    Ok(())
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
