//! Questions about images in the local store: which platforms an image
//! holds, which image manifest serves a platform, how much space it uses.
//!
//! An index pulled for one platform keeps only that platform's content
//! (as `nerdctl pull --platform` does), so these functions look only at
//! the children that are present.

use std::collections::BTreeSet;

use polyarch_oci::{Descriptor, Digest, ImageConfig, Platform, RawManifest};
use polyarch_store::{BlobSource, Store};

use crate::error::{Error, Result};
use crate::select;

/// Configs are small JSON documents; bound what is read into memory.
pub const MAX_CONFIG_SIZE: u64 = 64 * 1024 * 1024;

/// An image manifest in the store, with its config.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The image manifest's descriptor (with the platform the index gives
    /// it, if it came from an index).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: RawManifest,
    /// The config's exact bytes.
    pub config_bytes: bytes::Bytes,
    /// The config, parsed.
    pub config: ImageConfig,
}

impl LocalImage {
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        self.config.platform()
    }
}

/// What `name` points at, or [`Error::ImageNotFound`].
pub fn resolve(store: &Store, name: &str) -> Result<Descriptor> {
    store.resolve(name)?.ok_or_else(|| Error::ImageNotFound { name: name.to_string() })
}

/// Stored names whose target digest or [`image_id`] starts with `id`
/// (`sha256:` optional, at least 4 hex digits), as Docker accepts image IDs.
pub fn find_by_id(store: &Store, id: &str) -> Result<Vec<(String, Descriptor)>> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (name, d) in store.list()? {
        if d.digest.hex().starts_with(hex) || image_id(store, &d).is_ok_and(|i| i.hex().starts_with(hex)) {
            out.push((name, d));
        }
    }
    Ok(out)
}

/// The image ID Docker and buildx show for a stored image: the config
/// digest of a single-platform image, the digest of an index.
pub fn image_id(store: &Store, desc: &Descriptor) -> Result<Digest> {
    if !desc.media_type.contains("index") && !desc.media_type.contains("manifest.list") {
        if let Some(m) = store.get_manifest(desc)?.as_image() {
            return Ok(m.config.digest.clone());
        }
    }
    Ok(desc.digest.clone())
}

/// The manifest or index stored under `digest` whether or not a name
/// points at it (a child of a stored index, say); `None` when absent.
pub fn manifest_by_digest(store: &Store, digest: &Digest) -> Result<Option<Descriptor>> {
    let info = match store.stat(digest) {
        Ok(info) => info,
        Err(e) if e.kind() == polyarch_store::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let m = store.get_manifest(&Descriptor::new("", digest.clone(), info.size))?;
    Ok(Some(m.descriptor()))
}

/// Reads and parses the config of an image manifest.
pub fn read_config(store: &Store, name: &str, config: &Descriptor) -> Result<(bytes::Bytes, ImageConfig)> {
    let bytes = store.read_bytes(config, MAX_CONFIG_SIZE)?;
    let parsed = ImageConfig::from_slice(&bytes).map_err(|e| Error::InvalidConfig {
        reference: name.to_string(),
        digest: config.digest.clone(),
        reason: e.to_string(),
    })?;
    Ok((bytes, parsed))
}

/// Loads the image manifest `desc` and its config.
pub fn load_image(store: &Store, name: &str, desc: &Descriptor) -> Result<LocalImage> {
    let manifest = store.get_manifest(desc)?;
    let image = manifest.as_image().ok_or_else(|| Error::UnsupportedManifest {
        reference: name.to_string(),
        media_type: manifest.media_type().to_string(),
    })?;
    let (config_bytes, config) = read_config(store, name, &image.config)?;
    Ok(LocalImage { descriptor: desc.clone(), manifest, config_bytes, config })
}

/// The image manifests of `desc` that are in the store, with their
/// platforms: an image manifest itself (platform from its config), or the
/// present children of an index that name a platform (not attestations).
pub fn present_images(store: &Store, name: &str, desc: &Descriptor) -> Result<Vec<(Descriptor, Platform)>> {
    let m = store.get_manifest(desc)?;
    if let Some(index) = m.as_index() {
        let mut out = Vec::new();
        for (child, p) in select::platform_entries(&index.manifests) {
            if store.exists(&child.digest)? {
                out.push((child.clone(), p.clone()));
            }
        }
        return Ok(out);
    }
    let image = m.as_image().ok_or_else(|| Error::UnsupportedManifest {
        reference: name.to_string(),
        media_type: m.media_type().to_string(),
    })?;
    let (_, config) = read_config(store, name, &image.config)?;
    Ok(vec![(desc.clone(), config.platform())])
}

/// The image manifest of `desc` for a platform. For an index: the best
/// present child for `want`; without `want`, the host's, else the first
/// present child. For a single image: the image, which must match `want`
/// when one is given.
pub fn image_for(store: &Store, name: &str, desc: &Descriptor, want: Option<&Platform>) -> Result<LocalImage> {
    let m = store.get_manifest(desc)?;
    let Some(index) = m.as_index() else {
        let img = load_image(store, name, desc)?;
        if let Some(want) = want {
            let actual = img.platform();
            if !want.only().matches(&actual) {
                return Err(Error::PlatformMismatch {
                    reference: name.to_string(),
                    wanted: want.format(),
                    actual: actual.format(),
                });
            }
        }
        return Ok(img);
    };
    let present: Vec<Descriptor> = present_images(store, name, desc)?.into_iter().map(|(d, _)| d).collect();
    let chosen = match want {
        Some(w) => select::best_match(&present, w),
        None => select::best_match(&present, &Platform::host()).or_else(|| present.first()),
    };
    match chosen {
        Some(child) => load_image(store, name, child),
        None => {
            let platform = want.cloned().unwrap_or_else(Platform::host);
            if select::best_match(&index.manifests, &platform).is_some() {
                Err(Error::MissingContent { name: name.to_string(), missing: vec![platform.format()] })
            } else {
                Err(Error::NoMatchingPlatform {
                    reference: name.to_string(),
                    platform: platform.format(),
                    available: select::offered(&present),
                })
            }
        }
    }
}

/// Every present blob `desc` reaches (itself, present children, configs,
/// layers), each once, with its size.
pub fn present_blobs(store: &Store, desc: &Descriptor) -> Result<Vec<(Digest, u64)>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut stack = vec![desc.clone()];
    while let Some(d) = stack.pop() {
        if !seen.insert(d.digest.clone()) || !store.exists(&d.digest)? {
            continue;
        }
        out.push((d.digest.clone(), store.stat(&d.digest)?.size));
        if polyarch_oci::media_type::is_index(&d.media_type)
            || polyarch_oci::media_type::is_image_manifest(&d.media_type)
        {
            let m = store.get_manifest(&d)?;
            if let Some(index) = m.as_index() {
                stack.extend(index.manifests.iter().cloned());
            } else if let Some(image) = m.as_image() {
                stack.push(image.config.clone());
                stack.extend(image.layers.iter().cloned());
            }
        }
    }
    Ok(out)
}

/// The bytes of the present blobs `desc` reaches.
pub fn image_size(store: &Store, desc: &Descriptor) -> Result<u64> {
    Ok(present_blobs(store, desc)?.iter().map(|(_, s)| s).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_store::testsuite::{random_image, random_index};

    fn store() -> (tempfile::TempDir, Store) {
        polyarch_store::testsuite::temp_store()
    }

    #[test]
    fn platforms_of_a_partial_index() {
        let (_d, s) = store();
        let idx = random_index(&s, 3, 1, 7).unwrap();
        let m = s.get_manifest(&idx).unwrap();
        let children = m.as_index().unwrap().manifests.clone();
        let all: Vec<String> = present_images(&s, "x", &idx).unwrap().iter().map(|(_, p)| p.format()).collect();
        assert_eq!(all, ["linux/amd64", "linux/arm64", "linux/riscv64"]);
        // Drop the arm64 child manifest: the index is now partial.
        s.delete_blob(&children[1].digest).unwrap();
        let left: Vec<String> = present_images(&s, "x", &idx).unwrap().iter().map(|(_, p)| p.format()).collect();
        assert_eq!(left, ["linux/amd64", "linux/riscv64"]);
        let riscv = Platform::parse("linux/riscv64").unwrap();
        let img = image_for(&s, "x", &idx, Some(&riscv)).unwrap();
        assert_eq!(img.descriptor.digest, children[2].digest);
        assert_eq!(img.platform().architecture, "riscv64");
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let err = image_for(&s, "x", &idx, Some(&arm64)).unwrap_err();
        assert!(matches!(err, Error::MissingContent { .. }), "{err}");
        let sparc = Platform::parse("linux/sparc64").unwrap();
        let err = image_for(&s, "x", &idx, Some(&sparc)).unwrap_err().to_string();
        assert!(err.contains("linux/sparc64") && err.contains("linux/amd64, linux/riscv64"), "{err}");
    }

    #[test]
    fn single_image_platform_check_and_size() {
        let (_d, s) = store();
        let img = random_image(&s, 2, 3).unwrap();
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert!(image_for(&s, "x", &img, Some(&amd64)).is_ok());
        assert!(image_for(&s, "x", &img, None).is_ok());
        let s390x = Platform::parse("linux/s390x").unwrap();
        assert!(matches!(image_for(&s, "x", &img, Some(&s390x)), Err(Error::PlatformMismatch { .. })));
        let total: u64 = s.blobs().unwrap().iter().map(|b| b.size).sum();
        assert_eq!(image_size(&s, &img).unwrap(), total);
        assert_eq!(present_blobs(&s, &img).unwrap().len(), 4);
    }

    #[test]
    fn children_are_found_by_digest() {
        let (_d, s) = store();
        let idx = random_index(&s, 2, 1, 3).unwrap();
        let child = s.get_manifest(&idx).unwrap().as_index().unwrap().manifests[1].clone();
        let found = manifest_by_digest(&s, &child.digest).unwrap().unwrap();
        assert_eq!((found.digest.clone(), found.size), (child.digest.clone(), child.size));
        let img = image_for(&s, "x", &found, None).unwrap();
        assert_eq!(img.platform().architecture, "arm64");
        assert!(manifest_by_digest(&s, &Digest::sha256(b"absent")).unwrap().is_none());
    }

    #[test]
    fn lookups_by_name_and_id() {
        let (_d, s) = store();
        let img = random_image(&s, 0, 1).unwrap();
        s.tag("docker.io/library/a:1", &img).unwrap();
        assert_eq!(resolve(&s, "docker.io/library/a:1").unwrap().digest, img.digest);
        assert!(matches!(resolve(&s, "docker.io/library/b:1"), Err(Error::ImageNotFound { .. })));
        let id = &img.digest.hex()[..12];
        assert_eq!(find_by_id(&s, id).unwrap().len(), 1);
        assert_eq!(find_by_id(&s, &format!("sha256:{id}")).unwrap().len(), 1);
        assert!(find_by_id(&s, "zz").unwrap().is_empty());
        assert!(find_by_id(&s, "busybox").unwrap().is_empty());
    }
}
