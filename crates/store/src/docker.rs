//! The `docker save` format: `manifest.json` listing each image's config,
//! repo tags and layers by path in the archive. Loading converts such
//! images to OCI manifests; saving writes what `docker save` writes since
//! Docker 25: an OCI layout plus `manifest.json`.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use polyarch_oci::{media_type as mt, Descriptor, ImageConfig, ImageManifest, IndexManifest, RawManifest};
use serde::{Deserialize, Serialize};

use crate::archive::{Scanned, TarOut};
use crate::error::{Error, Result};
use crate::layout::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_LAYOUT_CONTENT};
use crate::{BlobSource, Store};

/// One image in `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn archive_err(entry: &str, reason: impl ToString) -> Error {
    Error::Archive { entry: entry.to_string(), reason: reason.to_string() }
}

/// The familiar form of a stored name: `docker.io/library/busybox:latest` → `busybox:latest`.
/// Names pinned by digest have no tag to write and give `None`.
pub(crate) fn familiar_name(name: &str) -> Option<String> {
    if name.contains('@') {
        return None;
    }
    let short =
        name.strip_prefix("docker.io/").map(|r| r.strip_prefix("library/").filter(|r| !r.contains('/')).unwrap_or(r));
    let short = short.unwrap_or(name);
    let last = short.rsplit('/').next().unwrap_or_default();
    Some(if last.contains(':') { short.to_string() } else { format!("{short}:latest") })
}

/// The tag part of a name, for `org.opencontainers.image.ref.name`.
fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// Layer media type by the blob's first bytes; older `docker save` writes
/// uncompressed tars, newer tools may not.
fn layer_media_type(store: &Store, desc: &Descriptor) -> Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut r = store.open(desc)?;
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::Io { path: store.blob_path(&desc.digest), source: e }),
        }
    }
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => mt::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => mt::OCI_LAYER_ZSTD,
        _ => mt::OCI_LAYER_TAR,
    })
}

/// Converts each `manifest.json` entry to an OCI image manifest, checks
/// all of them (config digests, layers against diff_ids, repo tags), then
/// stores them and tags each with its repo tags.
pub(crate) fn import_manifest_json(
    store: &Store,
    bytes: &[u8],
    scanned: &Scanned,
    fresh: &mut Vec<polyarch_oci::Digest>,
) -> Result<Vec<(String, Descriptor)>> {
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|e| archive_err("manifest.json", e))?;
    let mut images = Vec::new();
    for entry in entries {
        images.push(convert(store, entry, scanned)?);
    }
    let mut out = Vec::new();
    for (raw, platform, names) in images {
        let new = !store.exists(raw.digest())?;
        let desc = store.put_manifest(&raw)?.with_platform(Some(platform));
        if new {
            fresh.push(desc.digest.clone());
        }
        for name in names {
            store.tag(&name, &desc)?;
            let tagged = store.resolve(&name)?.ok_or_else(|| Error::RefNotFound { name: name.clone() })?;
            out.push((name, tagged));
        }
    }
    Ok(out)
}

/// Checks the repo tags of `manifest.json` when the archive's names come
/// from its `index.json` (Docker 25 writes both): an archive naming an
/// image with what is no reference is refused either way.
pub(crate) fn check_repo_tags(bytes: &[u8]) -> Result<()> {
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|e| archive_err("manifest.json", e))?;
    for tag in entries.iter().flat_map(|e| e.repo_tags.iter().flatten()) {
        crate::verify::repo_tag("manifest.json", tag)?;
    }
    Ok(())
}

/// One `manifest.json` entry as an OCI manifest, its platform and its
/// names, checked.
fn convert(
    store: &Store,
    entry: Entry,
    scanned: &Scanned,
) -> Result<(RawManifest, polyarch_oci::Platform, Vec<String>)> {
    let find = |path: &str| {
        scanned.lookup(path).cloned().ok_or_else(|| archive_err(path, "listed in manifest.json but not in the archive"))
    };
    let (config_digest, config_size) = find(&entry.config)?;
    // `<hex>.json` (older docker save) names the config by its digest.
    let stem = entry.config.rsplit('/').next().unwrap_or_default().trim_end_matches(".json");
    if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem != config_digest.hex() {
        return Err(archive_err(&entry.config, format!("the config's content hashes to {config_digest}")));
    }
    let config = Descriptor::new(mt::OCI_CONFIG, config_digest, config_size);
    let config_bytes = store.read_bytes(&config, MAX_CONFIG_SIZE)?;
    let platform = ImageConfig::from_slice(&config_bytes).map_err(|e| archive_err(&entry.config, e))?.platform();
    let mut layers = Vec::new();
    for path in &entry.layers {
        let (digest, size) = find(path)?;
        let mut desc = Descriptor::new("", digest, size);
        desc.media_type = layer_media_type(store, &desc)?.to_string();
        layers.push(desc);
    }
    let manifest = ImageManifest::new(mt::OCI_MANIFEST, config, layers);
    crate::verify::verify_image(store, &manifest)?;
    let names = entry
        .repo_tags
        .unwrap_or_default()
        .iter()
        .map(|t| crate::verify::repo_tag("manifest.json", t))
        .collect::<Result<Vec<_>>>()?;
    let raw = RawManifest::from_image(&manifest).map_err(|e| archive_err("manifest.json", e))?;
    Ok((raw, platform, names))
}

use crate::verify::MAX_CONFIG_SIZE;

impl Store {
    /// Writes a `docker save` tar (Docker 25 layout: blobs by digest,
    /// `oci-layout`, `index.json` and `manifest.json`) for single-platform
    /// images: each entry is a name and the image manifest to save under
    /// it. The same manifest under several names is saved once.
    pub fn export_docker_archive<W: Write>(&self, images: &[(String, Descriptor)], w: W) -> Result<()> {
        let mut order: Vec<(Descriptor, ImageManifest, Vec<String>)> = Vec::new();
        for (name, desc) in images {
            let m = self.get_manifest(desc)?;
            let image = m
                .as_image()
                .ok_or_else(|| Error::NotAnImage { name: name.clone(), media_type: m.media_type().to_string() })?;
            match order.iter_mut().find(|(d, _, _)| d.digest == desc.digest) {
                Some((_, _, names)) => names.push(name.clone()),
                None => order.push((m.descriptor(), image.clone(), vec![name.clone()])),
            }
        }
        let mut out = TarOut::new(w);
        let mut written = std::collections::BTreeSet::new();
        let mut index = IndexManifest::new(mt::OCI_INDEX);
        let mut manifest_json = Vec::new();
        for (desc, image, names) in &order {
            for blob in std::iter::once(&image.config).chain(&image.layers).chain(std::iter::once(desc)) {
                if written.insert(blob.digest.clone()) {
                    out.blob(self, blob)?;
                }
            }
            for name in names {
                let mut entry = desc.clone();
                let ann = entry.annotations.get_or_insert_with(BTreeMap::new);
                ann.insert(ANNOTATION_IMAGE_NAME.to_string(), name.clone());
                ann.insert(ANNOTATION_REF_NAME.to_string(), tag_of(name).to_string());
                index.manifests.push(entry);
            }
            let path = |d: &Descriptor| format!("blobs/{}/{}", d.digest.algorithm().name(), d.digest.hex());
            manifest_json.push(Entry {
                config: path(&image.config),
                repo_tags: Some(names.iter().filter_map(|n| familiar_name(n)).collect()),
                layers: image.layers.iter().map(path).collect(),
            });
        }
        let index_bytes = serde_json::to_vec(&index).map_err(|e| archive_err("index.json", e))?;
        let manifest_bytes = serde_json::to_vec(&manifest_json).map_err(|e| archive_err("manifest.json", e))?;
        out.bytes("index.json", &index_bytes)?;
        out.bytes("manifest.json", &manifest_bytes)?;
        out.bytes("oci-layout", OCI_LAYOUT_CONTENT.as_bytes())?;
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::{random_image, random_index, random_layer, Rng};

    fn store() -> (tempfile::TempDir, Store) {
        crate::testsuite::temp_store()
    }

    #[test]
    fn names() {
        let normalize = |t: &str| crate::verify::repo_tag("manifest.json", t).unwrap();
        assert_eq!(normalize("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(normalize("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalize("localhost:5000/app:v"), "localhost:5000/app:v");
        assert_eq!(normalize("ghcr.io/o/r:t"), "ghcr.io/o/r:t");
        assert_eq!(familiar_name("docker.io/library/busybox:1").as_deref(), Some("busybox:1"));
        assert_eq!(familiar_name("docker.io/me/app:latest").as_deref(), Some("me/app:latest"));
        assert_eq!(familiar_name("localhost:5000/app").as_deref(), Some("localhost:5000/app:latest"));
        assert_eq!(familiar_name("x@sha256:00"), None);
        assert_eq!(tag_of("localhost:5000/app:v1"), "v1");
    }

    /// Builds a pre-25 `docker save` tar: `<id>/layer.tar`, `<hex>.json`,
    /// a symlinked repeated layer, and manifest.json.
    fn legacy_archive() -> (Vec<u8>, Vec<u8>) {
        legacy_archive_with(&["busybox:latest", "example.com/x/y:2"], false)
    }

    /// A legacy `docker save` archive with these repo tags, whose layer is
    /// not the one its config names when `tampered`.
    fn legacy_archive_with(tags: &[&str], tampered: bool) -> (Vec<u8>, Vec<u8>) {
        let mut rng = Rng::new(4);
        let mut layer = random_layer(&mut rng).unwrap();
        let diff = polyarch_oci::Digest::sha256(&layer).to_string();
        if tampered {
            layer[520] ^= 1;
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "rootfs": {"type": "layers", "diff_ids": [diff, diff]},
        }))
        .unwrap();
        let cfg_hex = polyarch_oci::Digest::sha256(&config).hex().to_string();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, data).unwrap();
        };
        add("aaa/VERSION", b"1.0");
        add("aaa/layer.tar", &layer);
        add(&format!("{cfg_hex}.json"), &config);
        let manifest = serde_json::json!([{
            "Config": format!("{cfg_hex}.json"),
            "RepoTags": tags,
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        add("repositories", b"{}");
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar").unwrap();
        (b.into_inner().unwrap(), layer)
    }

    #[test]
    fn imports_legacy_docker_save() {
        let (_d, s) = store();
        let (tar_bytes, layer) = legacy_archive();
        let loaded = s.import_archive(&tar_bytes[..]).unwrap();
        let names: Vec<_> = loaded.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["docker.io/library/busybox:latest", "example.com/x/y:2"]);
        let desc = &loaded[0].1;
        assert_eq!(desc.platform.as_ref().unwrap().format(), "linux/arm64/v8");
        let m = s.get_manifest(desc).unwrap();
        let img = m.as_image().unwrap();
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[1].digest, polyarch_oci::Digest::sha256(&layer));
        assert_eq!(img.layers[0].media_type, mt::OCI_LAYER_TAR);
        assert_eq!(img.config.media_type, mt::OCI_CONFIG);
        // VERSION files and the like are not kept as referenced content.
        assert_eq!(s.du().unwrap().referenced_blobs, 3);
    }

    #[test]
    fn a_layer_that_is_not_its_diff_id_is_refused_and_nothing_stored() {
        let (_d, s) = store();
        let (tar_bytes, layer) = legacy_archive_with(&["app:1"], true);
        let err = s.import_archive(&tar_bytes[..]).unwrap_err();
        let layer_digest = polyarch_oci::Digest::sha256(&layer);
        assert!(matches!(&err, Error::LayerMismatch { layer, .. } if *layer == layer_digest), "{err}");
        assert!(err.to_string().contains(&layer_digest.to_string()), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
        assert!(s.list().unwrap().is_empty());
        assert_eq!(s.blobs().unwrap(), vec![], "the refused archive's blobs go again");
    }

    #[test]
    fn repo_tags_that_are_no_references_are_refused_and_nothing_stored() {
        for bad in ["../../../x:1", "UPPER:x", "a:b:c:d"] {
            let (_d, s) = store();
            let (tar_bytes, _) = legacy_archive_with(&["good:1", bad], false);
            let err = s.import_archive(&tar_bytes[..]).unwrap_err();
            assert!(matches!(&err, Error::BadArchiveName { name, .. } if name == bad), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
            assert!(s.list().unwrap().is_empty(), "{bad}: nothing named");
            assert_eq!(s.blobs().unwrap(), vec![], "{bad}: nothing stored");
        }
    }

    #[test]
    fn docker_archive_round_trip() {
        let (_a, src) = store();
        let img = random_image(&src, 2, 8).unwrap();
        let idx = random_index(&src, 2, 1, 9).unwrap();
        let images =
            vec![("docker.io/library/app:1".to_string(), img.clone()), ("example.com/app:2".to_string(), img.clone())];
        let mut tar_bytes = Vec::new();
        src.export_docker_archive(&images, &mut tar_bytes).unwrap();
        let mut a = tar::Archive::new(&tar_bytes[..]);
        let mut manifest_json = None;
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("manifest.json") {
                let mut v = String::new();
                e.read_to_string(&mut v).unwrap();
                manifest_json = Some(v);
            }
        }
        let mj: serde_json::Value = serde_json::from_str(&manifest_json.unwrap()).unwrap();
        assert_eq!(mj[0]["RepoTags"], serde_json::json!(["app:1", "example.com/app:2"]));
        assert_eq!(mj[0]["Layers"].as_array().unwrap().len(), 2);
        assert!(mj[0]["Config"].as_str().unwrap().starts_with("blobs/sha256/"));

        let (_b, dst) = store();
        let loaded = dst.import_archive(&tar_bytes[..]).unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(loaded.iter().all(|(_, d)| d.digest == img.digest));
        assert_eq!(loaded[0].0, "docker.io/library/app:1");

        let err = src.export_docker_archive(&[("multi".to_string(), idx)], Vec::new()).unwrap_err();
        assert!(matches!(err, Error::NotAnImage { .. }), "{err}");
    }

    #[test]
    fn manifest_json_without_index_uses_digest_paths() {
        // A Docker 25 archive read by a tool that drops index.json.
        let (_a, src) = store();
        let img = random_image(&src, 1, 11).unwrap();
        let mut full = Vec::new();
        src.export_docker_archive(&[("app:1".to_string(), img.clone())], &mut full).unwrap();
        let mut out = tar::Builder::new(Vec::new());
        let mut a = tar::Archive::new(&full[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("index.json") {
                continue;
            }
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.append(&h, &data[..]).unwrap();
        }
        let (_b, dst) = store();
        let loaded = dst.import_archive(&out.into_inner().unwrap()[..]).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, "docker.io/library/app:1");
        // Converted manifest: same config and layers.
        let m = dst.get_manifest(&loaded[0].1).unwrap();
        let orig = src.get_manifest(&img).unwrap();
        assert_eq!(m.as_image().unwrap().config.digest, orig.as_image().unwrap().config.digest);
    }
}
