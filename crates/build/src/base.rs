//! Base images: resolved for a platform from their index, pulled into the
//! store (mirrors apply through the registry client), and read back as a
//! config plus layers.
//!
//! This is a small adapter over the registry client and the store; a
//! shared pull API may replace it.

use polyarch_oci::{media_type as mt, Descriptor, Platform, RawManifest, Reference};
use polyarch_registry::Client;
use polyarch_store::{BlobSource, Store};

use crate::config::Image;
use crate::error::{Error, Result};
use crate::layer::Layer;

/// Images refuse configs larger than this.
const MAX_CONFIG: u64 = 8 * 1024 * 1024;

/// A pulled base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference with the resolved manifest digest.
    pub pinned: Reference,
    /// The platform manifest.
    pub manifest: Descriptor,
    /// Its config.
    pub image: Image,
    /// Its layers, with diff ids from the config.
    pub layers: Vec<Layer>,
}

/// Resolves `reference` for `platform` and makes sure the manifest, config
/// and layers are in `store`.
pub async fn pull(client: &Client, store: &Store, reference: &Reference, platform: &Platform) -> Result<BaseImage> {
    let name = reference.to_string();
    let top = client.get_manifest(reference).await.map_err(|e| Error::registry(format!("resolving {name}"), e))?;
    let raw = match top.as_index() {
        Some(index) => {
            let matcher = platform.only();
            let mut best: Option<&Descriptor> = None;
            for d in index.manifests.iter().filter(|d| !d.is_attestation()) {
                let Some(p) = &d.platform else { continue };
                if !matcher.matches(p) {
                    continue;
                }
                if best.is_none_or(|b| b.platform.as_ref().is_some_and(|bp| matcher.less(p, bp))) {
                    best = Some(d);
                }
            }
            let Some(chosen) = best else {
                let offered = index
                    .manifests
                    .iter()
                    .filter(|d| !d.is_attestation())
                    .filter_map(|d| d.platform.as_ref().map(|p| p.format()))
                    .collect();
                return Err(Error::NoPlatform { reference: name, platform: platform.format(), offered });
            };
            let r = reference.with_digest(chosen.digest.clone());
            client.get_manifest(&r).await.map_err(|e| Error::registry(format!("resolving {name}"), e))?
        }
        None => top,
    };
    let pinned = reference.with_digest(raw.digest().clone());
    store.put_manifest(&raw)?;
    fetch_image(client, store, &pinned, &raw).await
}

async fn fetch_image(client: &Client, store: &Store, pinned: &Reference, raw: &RawManifest) -> Result<BaseImage> {
    let Some(m) = raw.as_image() else {
        return Err(Error::NoPlatform {
            reference: pinned.to_string(),
            platform: "(not an image)".into(),
            offered: Vec::new(),
        });
    };
    let config = ensure_blob(client, store, pinned, &m.config, MAX_CONFIG).await?;
    let image = Image::from_base(&config)?;
    if image.diff_ids.len() != m.layers.len() {
        return Err(Error::Layer(format!("{pinned}: {} layers but {} diff ids", m.layers.len(), image.diff_ids.len())));
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in m.layers.iter().zip(&image.diff_ids) {
        if !store.exists(&desc.digest)? {
            stream_blob(client, store, pinned, desc).await?;
        }
        let mut desc = desc.clone();
        if desc.media_type == mt::DOCKER_LAYER_GZIP {
            desc.media_type = mt::OCI_LAYER_GZIP.into();
        }
        layers.push(Layer { desc, diff_id: diff_id.clone() });
    }
    Ok(BaseImage { pinned: pinned.clone(), manifest: raw.descriptor(), image, layers })
}

async fn ensure_blob(client: &Client, store: &Store, r: &Reference, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
    if store.exists(&desc.digest)? {
        return Ok(store.read_bytes(desc, limit)?.to_vec());
    }
    let bytes = client
        .get_blob_bytes(r, desc, limit)
        .await
        .map_err(|e| Error::registry(format!("fetching {}", desc.digest), e))?;
    polyarch_store::copy_blob(store, desc, &mut &bytes[..])?;
    Ok(bytes.to_vec())
}

/// Streams a layer into the store through a verified writer (the registry
/// stream checks size and digest as bytes arrive; the writer again on commit).
async fn stream_blob(client: &Client, store: &Store, r: &Reference, desc: &Descriptor) -> Result<()> {
    use futures_util::StreamExt;
    use polyarch_store::BlobSink;
    use std::io::Write;
    let mut stream =
        client.get_blob(r, desc).await.map_err(|e| Error::registry(format!("fetching {}", desc.digest), e))?;
    let mut w = match store.writer(desc) {
        Ok(w) => w,
        Err(e) if e.kind() == polyarch_store::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::registry(format!("fetching {}", desc.digest), e))?;
        w.write_all(&chunk).map_err(|e| Error::layer("storing", e))?;
    }
    w.commit(desc.size, &desc.digest)?;
    Ok(())
}

/// Reads a manifest already in the store as a base image (used when the
/// registry is not needed, e.g. for images built before).
pub fn from_store(store: &Store, manifest: &Descriptor, pinned: Reference) -> Result<BaseImage> {
    let raw = store.get_manifest(manifest)?;
    let Some(m) = raw.as_image() else {
        return Err(Error::NoPlatform {
            reference: pinned.to_string(),
            platform: "(not an image)".into(),
            offered: Vec::new(),
        });
    };
    let config = store.read_bytes(&m.config, MAX_CONFIG)?;
    let image = Image::from_base(&config)?;
    let layers =
        m.layers.iter().zip(&image.diff_ids).map(|(d, id)| Layer { desc: d.clone(), diff_id: id.clone() }).collect();
    Ok(BaseImage { pinned, manifest: raw.descriptor(), image, layers })
}
