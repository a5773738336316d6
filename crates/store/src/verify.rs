//! Checks an archive's images pass before anything is named: every layer
//! unpacks to the diff_id its config lists (as skopeo and `docker load`
//! check), and every name is a reference the rest of polyarch can address.

use std::io::{self, Read};

use polyarch_oci::{media_type as mt, Descriptor, Digest, ImageManifest, Reference};

use crate::error::{io_at, Error, Result};
use crate::gc::Missing;
use crate::{is_manifest_type, BlobSource, Store};

/// Configs are JSON documents; bound what is read into memory.
pub(crate) const MAX_CONFIG_SIZE: u64 = 64 * 1024 * 1024;

/// The digest of a layer's uncompressed content (its diff_id if it is the
/// layer its config says), whatever compression it has (gzip, zstd, none).
pub(crate) fn uncompressed_digest(store: &Store, layer: &Descriptor, like: &Digest) -> Result<Digest> {
    let path = store.blob_path(&layer.digest);
    let mut r = crate::compression::decompress(store.open(layer)?).map_err(io_at(&path))?;
    let mut digester = like.digester();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(digester.finish()),
            Ok(n) => digester.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io { path, source: e }),
        }
    }
}

/// Checks that the layers of `image` are what its config's
/// `rootfs.diff_ids` say. Manifests whose config is no image config
/// (artifacts) have nothing to check; layers that are neither here nor
/// distributable are skipped.
pub(crate) fn verify_image(store: &Store, image: &ImageManifest) -> Result<()> {
    let config = &image.config;
    if !matches!(config.media_type.as_str(), mt::OCI_CONFIG | mt::DOCKER_CONFIG) {
        return Ok(());
    }
    let bytes = store.read_bytes(config, MAX_CONFIG_SIZE)?;
    let bad = |reason: String| Error::Archive { entry: config.digest.to_string(), reason };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let ids = v["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
    if ids.len() != image.layers.len() {
        return Err(Error::LayerCount {
            config: config.digest.clone(),
            diff_ids: ids.len(),
            layers: image.layers.len(),
        });
    }
    for (layer, id) in image.layers.iter().zip(ids) {
        let expected: Digest = id
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("invalid diff_id {id} in rootfs.diff_ids")))?;
        if !store.exists(&layer.digest)? && mt::is_non_distributable(&layer.media_type) {
            continue;
        }
        let size = store.stat(&layer.digest)?.size;
        if size != layer.size {
            return Err(Error::SizeMismatch { digest: layer.digest.clone(), expected: layer.size, actual: size });
        }
        let actual = uncompressed_digest(store, layer, &expected)?;
        if actual != expected {
            return Err(Error::LayerMismatch { layer: layer.digest.clone(), expected, actual });
        }
    }
    Ok(())
}

/// Checks everything `root` reaches: all of it is present (children of an
/// index may be missing) and every image's layers match its config.
pub(crate) fn verify_tree(store: &Store, root: &Descriptor) -> Result<()> {
    for desc in store.walk(std::slice::from_ref(root), Missing::Fail)? {
        if !is_manifest_type(&desc.media_type) || !store.exists(&desc.digest)? {
            continue;
        }
        if let Some(image) = store.get_manifest(&desc)?.as_image() {
            verify_image(store, image)?;
        }
    }
    Ok(())
}

/// The stored name of a `docker save` repo tag: a reference as the Docker
/// CLI reads one (`busybox:1` → `docker.io/library/busybox:1`).
pub(crate) fn repo_tag(entry: &str, tag: &str) -> Result<String> {
    let bad = |reason: String| Error::BadArchiveName { entry: entry.into(), name: tag.into(), reason };
    let r = Reference::parse_normalized(tag).map_err(|e| bad(e.to_string()))?;
    if r.digest.is_some() {
        return Err(bad("a repo tag names a tag, not a digest".into()));
    }
    Ok(r.with_default_tag().to_string())
}

/// Checks the name an OCI index entry gives its image: a reference for
/// `io.containerd.image.name`, a `ref.name` of the image spec's grammar
/// (components of letters and digits joined by `-._:@+` or `--`, between
/// slashes) otherwise.
pub(crate) fn index_name(name: &str, full: bool) -> Result<()> {
    let bad = |reason: String| Error::BadArchiveName { entry: "index.json".into(), name: name.into(), reason };
    if full {
        return Reference::parse_normalized(name).map(|_| ()).map_err(|e| bad(e.to_string()));
    }
    for part in name.split('/') {
        let chars: Vec<char> = part.chars().collect();
        let alnum = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !alnum(chars.first()) || !alnum(chars.last()) {
            return Err(bad("each component must start and end with a letter or digit".into()));
        }
        for w in chars.windows(2) {
            let sep = |c: char| "-._:@+".contains(c);
            if !w.iter().all(|c| c.is_ascii_alphanumeric() || sep(*c)) {
                return Err(bad("only letters, digits and -._:@+ are allowed".into()));
            }
            if sep(w[0]) && sep(w[1]) && !(w[0] == '-' && w[1] == '-') {
                return Err(bad("separators must be between letters or digits".into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncompressed_digests_of_every_compression() {
        use std::io::Write;
        let (_d, s) = crate::testsuite::temp_store();
        let tar = crate::testsuite::random_layer(&mut crate::testsuite::Rng::new(3)).unwrap();
        let want = Digest::sha256(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let zst = zstd::stream::encode_all(&tar[..], 1).unwrap();
        for (media_type, bytes) in
            [(mt::OCI_LAYER_TAR, tar.clone()), (mt::OCI_LAYER_GZIP, gz.finish().unwrap()), (mt::OCI_LAYER_ZSTD, zst)]
        {
            let desc = s.put_bytes(media_type, &bytes).unwrap();
            assert_eq!(uncompressed_digest(&s, &desc, &want).unwrap(), want, "{media_type}");
        }
    }

    #[test]
    fn repo_tags_are_references() {
        assert_eq!(repo_tag("manifest.json", "busybox:1").unwrap(), "docker.io/library/busybox:1");
        assert_eq!(repo_tag("manifest.json", "reg:5000/a/b").unwrap(), "reg:5000/a/b:latest");
        for bad in ["../../../x:1", "UPPER:x", "a b:1", "", "x@sha256:abc"] {
            let err = repo_tag("manifest.json", bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn index_names() {
        for ok in ["latest", "1.0", "example.com/a:1", "a--b", "x@y+z"] {
            index_name(ok, false).unwrap();
        }
        for bad in ["../x", "a/../b", "a//b", "-a", "a..b", "a b", ""] {
            assert!(index_name(bad, false).is_err(), "{bad}");
        }
        assert!(index_name("UPPER:x", true).is_err());
        index_name("example.com/a:1", true).unwrap();
    }
}
