//! Reading `--cache-from`: a cache index or manifest in a registry, an
//! image whose config carries an inline cache (each platform's, for an
//! index), or an OCI layout directory as `type=local` writes it. What
//! cannot be read is a [`CacheWarning`], never a failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polyarch_oci::{media_type as mt, Descriptor, Manifest, RawManifest, Reference, MAX_MANIFEST_SIZE};
use polyarch_registry::Client;
use polyarch_store::Store;

use super::config::{CacheConfig, CONFIG_MEDIA_TYPE, INLINE_KEY};
use super::{CacheFrom, CacheIo, CacheWarning, Fetch};

/// The largest cache config or image config read (16 MiB).
const MAX_CONFIG: u64 = 16 * 1024 * 1024;

/// Where documents and blobs are read from.
enum Origin {
    Registry { client: Client, reference: Reference },
    Local { dir: PathBuf },
}

impl Origin {
    fn name(&self) -> String {
        match self {
            Origin::Registry { reference, .. } => reference.to_string(),
            Origin::Local { dir } => dir.display().to_string(),
        }
    }

    async fn bytes(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, String> {
        match self {
            Origin::Registry { client, reference } => {
                client.get_blob_bytes(reference, desc, limit).await.map(|b| b.to_vec()).map_err(|e| e.to_string())
            }
            Origin::Local { dir } => local_bytes(dir, desc, limit),
        }
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest, String> {
        match self {
            Origin::Registry { client, reference } => {
                client.get_manifest(&reference.with_digest(desc.digest.clone())).await.map_err(|e| e.to_string())
            }
            Origin::Local { dir } => {
                let bytes = local_bytes(dir, desc, MAX_MANIFEST_SIZE)?;
                RawManifest::from_bytes(bytes, Some(&desc.media_type)).map_err(|e| e.to_string())
            }
        }
    }
}

/// A blob of a layout directory, verified against its descriptor.
fn local_bytes(dir: &Path, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, String> {
    if desc.size > limit {
        return Err(format!("blob {} is larger than {limit} bytes", desc.digest));
    }
    let path = blob_path(dir, desc);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let actual = desc.digest.of_same_kind(&bytes);
    if actual != desc.digest || bytes.len() as u64 != desc.size {
        return Err(format!("{}: content is {actual} ({} bytes), not {}", path.display(), bytes.len(), desc.digest));
    }
    Ok(bytes)
}

fn blob_path(dir: &Path, desc: &Descriptor) -> PathBuf {
    dir.join("blobs").join(desc.digest.algorithm().name()).join(desc.digest.hex())
}

impl Fetch for Origin {
    fn fetch(&self, store: &Store, desc: &Descriptor) -> Result<(), String> {
        match self {
            Origin::Registry { client, reference } => {
                let h = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
                if h.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                    return Err("fetching needs a multi-thread runtime".into());
                }
                let ignore = polyarch_transfer::event::ignore;
                let fetch = polyarch_transfer::pull::fetch_blob(client, store, reference, desc, &ignore);
                tokio::task::block_in_place(|| h.block_on(fetch)).map(|_| ()).map_err(|e| e.to_string())
            }
            Origin::Local { dir } => {
                let path = blob_path(dir, desc);
                let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                match polyarch_store::copy_blob(store, desc, &mut f) {
                    Err(e) if !e.is_already_exists() => Err(format!("{}: {e}", path.display())),
                    _ => Ok(()),
                }
            }
        }
    }

    fn name(&self) -> String {
        Origin::name(self)
    }
}

/// Reads `from` into `io`; returns how many records it added, or why it
/// gave none (the build goes on without it).
pub async fn import(io: &CacheIo, client: &Client, from: &CacheFrom) -> Result<usize, CacheWarning> {
    let origin = match from {
        CacheFrom::Registry { reference } => Origin::Registry { client: client.clone(), reference: reference.clone() },
        CacheFrom::Local { src, .. } => Origin::Local { dir: src.clone() },
    };
    let name = origin.name();
    let failed = |reason: String| CacheWarning::Import { source_name: name.clone(), reason };
    let root = match from {
        CacheFrom::Registry { reference } => client.get_manifest(reference).await.map_err(|e| failed(e.to_string()))?,
        CacheFrom::Local { src, digest } => {
            let desc = layout_root(src, digest.as_ref()).map_err(&failed)?;
            origin.manifest(&desc).await.map_err(&failed)?
        }
    };
    let configs = configs(&origin, &root).await.map_err(&failed)?;
    if configs.is_empty() {
        return Err(failed("it is neither a cache nor an image with an inline cache".into()));
    }
    let origin: Arc<Origin> = Arc::new(origin);
    let mut added = 0;
    for bytes in configs {
        let parsed = match bytes {
            Doc::Blob(b) => CacheConfig::parse(&b),
            Doc::Inline(v) => CacheConfig::from_inline(&v),
        };
        let config = parsed.map_err(|reason| CacheWarning::Unreadable { source_name: name.clone(), reason })?;
        added += io.add(config, origin.clone());
    }
    Ok(added)
}

/// A cache document: a config blob, or an image config's inline value.
enum Doc {
    Blob(Vec<u8>),
    Inline(serde_json::Value),
}

/// The cache documents under `root`: the config of a cache index or
/// manifest, else the inline caches of the image's (or index's) configs.
async fn configs(origin: &Origin, root: &RawManifest) -> Result<Vec<Doc>, String> {
    match root.manifest() {
        Manifest::Index(ix) => {
            if let Some(c) = ix.manifests.iter().find(|d| d.media_type == CONFIG_MEDIA_TYPE) {
                return Ok(vec![Doc::Blob(origin.bytes(c, MAX_CONFIG).await?)]);
            }
            let mut out = Vec::new();
            for child in ix.manifests.iter().filter(|d| mt::is_image_manifest(&d.media_type) && !d.is_attestation()) {
                let m = origin.manifest(child).await?;
                out.extend(image_configs(origin, &m).await?);
            }
            Ok(out)
        }
        Manifest::Image(_) => image_configs(origin, root).await,
    }
}

async fn image_configs(origin: &Origin, m: &RawManifest) -> Result<Vec<Doc>, String> {
    let Some(image) = m.as_image() else { return Ok(Vec::new()) };
    let bytes = origin.bytes(&image.config, MAX_CONFIG).await?;
    if image.config.media_type == CONFIG_MEDIA_TYPE {
        return Ok(vec![Doc::Blob(bytes)]);
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("image config: {e}"))?;
    Ok(v.get(INLINE_KEY).cloned().map(Doc::Inline).into_iter().collect())
}

/// The manifest a layout's `index.json` names: by digest, else the one
/// tagged `latest`, else the only one.
fn layout_root(dir: &Path, digest: Option<&polyarch_oci::Digest>) -> Result<Descriptor, String> {
    let path = dir.join("index.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let index: polyarch_oci::IndexManifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let tag = |d: &Descriptor| d.annotations.as_ref().and_then(|a| a.get(polyarch_store::ANNOTATION_REF_NAME)).cloned();
    let found = match digest {
        Some(want) => index.manifests.iter().find(|d| d.digest == *want),
        None => index.manifests.iter().find(|d| tag(d).as_deref() == Some("latest")).or_else(|| {
            if index.manifests.len() == 1 {
                index.manifests.first()
            } else {
                None
            }
        }),
    };
    found.cloned().ok_or_else(|| match digest {
        Some(d) => format!("{} names no manifest {d}", path.display()),
        None => format!("{} names no manifest tagged latest", path.display()),
    })
}
