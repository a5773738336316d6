//! Writing a cache: the artifact in the store (config blob, then an index
//! or image manifest over the layer blobs, which are the image's own, so
//! a push finds them there or mounts them), pushed with the one tree push
//! (blobs first, the tag last) or written as an OCI layout directory
//! (a temporary directory renamed into place).

use std::collections::BTreeMap;
use std::path::Path;

use polyarch_oci::{media_type as mt, Descriptor, ImageManifest, IndexManifest, RawManifest, Reference};
use polyarch_registry::Client;
use polyarch_store::{BlobSource as _, Store};
use polyarch_transfer::Content;

use super::config::{CacheConfig, CONFIG_MEDIA_TYPE};
use super::ExportOptions;
use crate::error::{Error, Result};

/// A cache written into the store.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest or index the tag names.
    pub root: RawManifest,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs.
    pub layers: Vec<Descriptor>,
}

impl Artifact {
    /// Every blob below the root.
    pub fn blobs(&self) -> Vec<Descriptor> {
        self.layers.iter().cloned().chain(std::iter::once(self.config.clone())).collect()
    }

    /// What a push sends: an image manifest with its blobs, or an index
    /// whose entries are the blobs themselves (BuildKit's layout).
    fn content(&self) -> Content {
        match self.root.as_image() {
            Some(_) => Content::image(self.root.descriptor(), self.root.clone()),
            None => Content { root: self.root.clone(), images: Vec::new() },
        }
    }
}

/// Writes `config` and its root manifest into the store.
pub fn artifact(store: &Store, config: &CacheConfig, opts: &ExportOptions) -> Result<Artifact> {
    let layers = config.layers();
    for l in &layers {
        if !store.exists(&l.digest)? {
            return Err(polyarch_store::Error::BlobNotFound { digest: l.digest.clone() }.into());
        }
    }
    let config = store.put_bytes(CONFIG_MEDIA_TYPE, &config.to_bytes())?;
    let invalid = |e: polyarch_oci::Error| Error::Layer(e.to_string());
    let root = if opts.image_manifest {
        let m = ImageManifest::new(mt::OCI_MANIFEST, config.clone(), layers.clone());
        RawManifest::from_image(&m).map_err(invalid)?
    } else {
        let media_type = if opts.oci_mediatypes { mt::OCI_INDEX } else { mt::DOCKER_MANIFEST_LIST };
        let mut ix = IndexManifest::new(media_type);
        ix.manifests = layers.iter().cloned().chain(std::iter::once(config.clone())).collect();
        RawManifest::from_index(&ix).map_err(invalid)?
    };
    store.put_manifest(&root)?;
    Ok(Artifact { root, config, layers })
}

/// Pushes the artifact to `reference`: blobs (mounted or skipped when
/// the registry has them), then the tag.
pub async fn push(client: &Client, store: &Store, a: &Artifact, reference: &Reference) -> Result<()> {
    crate::export::push_to(
        client,
        store,
        &a.content(),
        std::slice::from_ref(reference),
        &polyarch_transfer::event::ignore,
    )
    .await
}

/// Writes the artifact as an OCI layout at `dest`, its root tagged
/// `latest` in `index.json` (as BuildKit's `type=local`): written beside
/// `dest` and renamed over it, so `dest` holds the old cache or the new
/// one, never a part.
pub fn write_local(store: &Store, a: &Artifact, dest: &Path) -> Result<()> {
    let mut root = a.root.descriptor();
    root.annotations = Some(BTreeMap::from([(polyarch_store::ANNOTATION_REF_NAME.to_string(), "latest".to_string())]));
    let mut index = IndexManifest::new(mt::OCI_INDEX);
    index.manifests.push(root.clone());
    let index_json = serde_json::to_vec(&index).map_err(|source| Error::Json { what: "index", source })?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "cache".into());
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    let staged = tmp.path().join("layout");
    let mut blobs = a.blobs();
    blobs.push(a.root.descriptor());
    crate::export::write_layout_dir(store, &index_json, &blobs, &staged)?;
    if dest.exists() {
        // The old cache moves aside and goes with the temporary directory.
        let old = tmp.path().join("old");
        std::fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
        if let Err(e) = std::fs::rename(&staged, dest) {
            let _ = std::fs::rename(&old, dest);
            return Err(Error::io(dest, e));
        }
    } else {
        std::fs::rename(&staged, dest).map_err(|e| Error::io(dest, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cacheio::config::{Entry, EntryLayer};

    fn cache(store: &Store) -> CacheConfig {
        let blob = store.put_bytes(mt::OCI_LAYER_GZIP, b"layer").unwrap();
        CacheConfig::new(vec![Entry {
            key: "sha256:k".into(),
            parent: "scratch".into(),
            platform: "linux/amd64".into(),
            layer: Some(EntryLayer {
                digest: blob.digest,
                media_type: blob.media_type,
                size: blob.size,
                diff_id: polyarch_oci::Digest::sha256(b"x"),
            }),
            created: Some(1),
        }])
    }

    #[test]
    fn an_index_lists_the_layers_then_the_config() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("s")).unwrap();
        let a = artifact(&store, &cache(&store), &ExportOptions::default()).unwrap();
        let ix = a.root.as_index().unwrap();
        assert_eq!(ix.media_type.as_deref(), Some(mt::OCI_INDEX));
        assert_eq!(ix.manifests.len(), 2);
        assert_eq!(ix.manifests[1].media_type, CONFIG_MEDIA_TYPE);
        let opts = ExportOptions { image_manifest: true, ..ExportOptions::default() };
        let m = artifact(&store, &cache(&store), &opts).unwrap();
        let image = m.root.as_image().unwrap();
        assert_eq!(image.config.media_type, CONFIG_MEDIA_TYPE);
        assert_eq!(image.layers.len(), 1);
    }

    #[test]
    fn a_local_export_replaces_the_directory_whole_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("s")).unwrap();
        let dest = d.path().join("cache");
        std::fs::create_dir_all(dest.join("stale")).unwrap();
        let a = artifact(&store, &cache(&store), &ExportOptions::default()).unwrap();
        write_local(&store, &a, &dest).unwrap();
        assert!(!dest.join("stale").exists());
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "nothing left beside it: {names:?}");
        let index: IndexManifest = serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
        assert_eq!(index.manifests[0].digest, *a.root.digest());
        for b in a.blobs() {
            assert!(dest.join("blobs/sha256").join(b.digest.hex()).is_file());
        }
    }

    #[test]
    fn a_record_without_its_blob_is_not_exported() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("s")).unwrap();
        let c = cache(&store);
        store.delete_blob(&c.layers()[0].digest).unwrap();
        assert!(artifact(&store, &c, &ExportOptions::default()).is_err());
    }
}
