//! Archives for save and load: OCI layout tars (as `docker save` since 25,
//! BuildKit `type=oci` and skopeo `oci-archive:` write them) and the older
//! `docker save` format (manifest.json + `<id>/layer.tar`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use polyarch_oci::{media_type as mt, Descriptor, Digest, IndexManifest};

use crate::content::VerifiedReader;
use crate::error::{Error, Result};
use crate::gc::Missing;
use crate::layout::OCI_LAYOUT_CONTENT;
use crate::refs::entry_name;
use crate::{copy_blob, BlobSource, Store};

/// Metadata files are read whole; refuse anything bigger than this.
const MAX_META_SIZE: u64 = 16 * 1024 * 1024;

/// A tar being written with fixed owners, modes and times, so the same
/// content always gives the same archive: every image archive (`save`,
/// and a build's `type=oci` and `type=docker` outputs) is written with it.
/// Parent directories get entries of their own, once.
pub struct TarOut<W: Write> {
    builder: tar::Builder<W>,
    dirs: BTreeSet<String>,
}

impl<W: Write> TarOut<W> {
    /// A tar written to `w`.
    pub fn new(w: W) -> TarOut<W> {
        TarOut { builder: tar::Builder::new(w), dirs: BTreeSet::new() }
    }

    fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(kind);
        h
    }

    fn parents(&mut self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            prefix.push_str(part);
            prefix.push('/');
            if self.dirs.insert(prefix.clone()) {
                let mut h = Self::header(0, 0o755, tar::EntryType::Directory);
                self.builder.append_data(&mut h, &prefix, io::empty()).map_err(tar_err(&prefix))?;
            }
        }
        Ok(())
    }

    /// Appends a regular file of `size` bytes read from `data`.
    pub fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<()> {
        self.parents(path)?;
        let mut h = Self::header(size, 0o644, tar::EntryType::Regular);
        self.builder.append_data(&mut h, path, data).map_err(tar_err(path))
    }

    /// Appends a regular file with these bytes.
    pub fn bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.file(path, data.len() as u64, data)
    }

    /// Appends the blob `desc` from `store` at `blobs/<alg>/<hex>`,
    /// verified as it is copied.
    pub fn blob(&mut self, store: &Store, desc: &Descriptor) -> Result<()> {
        let size = store.stat(&desc.digest)?.size;
        if size != desc.size {
            return Err(Error::SizeMismatch { digest: desc.digest.clone(), expected: desc.size, actual: size });
        }
        let data = VerifiedReader::new(store.open(desc)?, desc);
        let path = format!("blobs/{}/{}", desc.digest.algorithm().name(), desc.digest.hex());
        self.file(&path, size, data).map_err(|e| match e {
            Error::DigestMismatch { expected, actual } => {
                Error::CorruptBlob { path: store.blob_path(&expected), digest: expected, actual }
            }
            e => e,
        })
    }

    /// Writes the end of the archive and flushes.
    pub fn finish(self) -> Result<()> {
        let mut w = self.builder.into_inner().map_err(tar_err("end of archive"))?;
        w.flush().map_err(tar_err("end of archive"))
    }
}

fn tar_err(entry: &str) -> impl FnOnce(io::Error) -> Error {
    crate::error::io_at(PathBuf::from(format!("<archive>/{entry}")))
}

fn archive_err(entry: &str, reason: impl ToString) -> Error {
    Error::Archive { entry: entry.to_string(), reason: reason.to_string() }
}

/// What a pass over an archive found: blobs by their path in the archive,
/// symlinks, and the small metadata files.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) files: BTreeMap<String, (Digest, u64)>,
    links: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, Vec<u8>>,
}

impl Scanned {
    /// The blob stored at `path`, following symlinks (older `docker save`
    /// links repeated layers to their first copy).
    pub(crate) fn lookup(&self, path: &str) -> Option<&(Digest, u64)> {
        let mut p = normalize(Path::new(path))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

/// `a/./b/../c` → `a/c`; `None` for paths that leave the archive.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn blob_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

impl Store {
    /// Writes an OCI layout tar holding the references `names`, with their
    /// names in `index.json`, and every blob they reach.
    pub fn export_oci_archive<W: Write>(&self, names: &[&str], w: W) -> Result<()> {
        let mut index = IndexManifest::new(mt::OCI_INDEX);
        let mut seen = BTreeSet::new();
        for name in names {
            if seen.insert(*name) {
                let desc = self.resolve(name)?.ok_or_else(|| Error::RefNotFound { name: name.to_string() })?;
                index.manifests.push(desc);
            }
        }
        let blobs = self.walk(&index.manifests, Missing::Fail)?;
        let index_bytes = serde_json::to_vec(&index).map_err(|e| archive_err("index.json", e))?;
        let mut out = TarOut::new(w);
        for desc in &blobs {
            out.blob(self, desc)?;
        }
        out.bytes("oci-layout", OCI_LAYOUT_CONTENT.as_bytes())?;
        out.bytes("index.json", &index_bytes)?;
        out.finish()
    }

    /// Loads an OCI layout tar or a `docker save` tar: stores every blob,
    /// verified, and tags each named image. Returns the names and what
    /// they now point at. Entries without a name are stored but not tagged.
    /// Nothing is named before every image passed its checks (blobs match
    /// their digests, layers their config's diff_ids, names are valid
    /// references); when one fails, the blobs this load added go again.
    pub fn import_archive<R: Read>(&self, r: R) -> Result<Vec<(String, Descriptor)>> {
        let _lease = self.lease()?;
        let mut fresh = Vec::new();
        let result = self.scan_archive(r, &mut fresh).and_then(|scanned| {
            if let Some(index) = scanned.meta.get("index.json") {
                if let Some(manifest) = scanned.meta.get("manifest.json") {
                    crate::docker::check_repo_tags(manifest)?;
                }
                self.import_oci_index(index)
            } else if let Some(manifest) = scanned.meta.get("manifest.json") {
                crate::docker::import_manifest_json(self, manifest, &scanned, &mut fresh)
            } else {
                Err(archive_err("index.json", "the archive has neither index.json nor manifest.json"))
            }
        });
        if result.is_err() {
            self.forget(&fresh);
        }
        result
    }

    /// Removes blobs an import added when it fails, unless a reference
    /// reaches them meanwhile.
    fn forget(&self, fresh: &[Digest]) {
        let Ok(keep) = self.referenced_blobs() else { return };
        for d in fresh.iter().filter(|d| !keep.contains(d)) {
            let _ = self.delete_blob(d);
        }
    }

    fn scan_archive<R: Read>(&self, r: R, fresh: &mut Vec<Digest>) -> Result<Scanned> {
        let mut archive = tar::Archive::new(r);
        let mut scanned = Scanned::default();
        let entries = archive.entries().map_err(tar_err("(start)"))?;
        for entry in entries {
            let mut entry = entry.map_err(tar_err("(next entry)"))?;
            let raw_path = entry.path().map_err(tar_err("(path)"))?.into_owned();
            let Some(path) = normalize(&raw_path) else { continue };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().map_err(tar_err(&path))?.map(|t| t.into_owned());
                let base = if kind.is_symlink() { Path::new(&path).parent().map(Path::to_path_buf) } else { None };
                if let Some(t) = target.and_then(|t| normalize(&base.unwrap_or_default().join(t))) {
                    scanned.links.insert(path, t);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            if let Some(digest) = blob_digest(&path) {
                let desc = Descriptor::new("", digest.clone(), size);
                let new = !self.exists(&digest)?;
                copy_blob(self, &desc, &mut entry)?;
                if new {
                    fresh.push(digest.clone());
                }
                scanned.files.insert(path, (digest, size));
            } else if matches!(path.as_str(), "index.json" | "manifest.json" | "oci-layout" | "repositories") {
                if size > MAX_META_SIZE {
                    return Err(archive_err(&path, format!("{size} bytes is over the {MAX_META_SIZE}-byte limit")));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut buf).map_err(tar_err(&path))?;
                scanned.meta.insert(path, buf);
            } else if path.ends_with(".tar") || path.ends_with(".json") {
                let mut w = self.ingest_unknown()?;
                io::copy(&mut entry, &mut w).map_err(tar_err(&path))?;
                let (digest, size, new) = w.commit_computed()?;
                if new {
                    fresh.push(digest.clone());
                }
                scanned.files.insert(path, (digest, size));
            }
        }
        Ok(scanned)
    }

    fn import_oci_index(&self, bytes: &[u8]) -> Result<Vec<(String, Descriptor)>> {
        let index: IndexManifest = serde_json::from_slice(bytes).map_err(|e| archive_err("index.json", e))?;
        let mut named = Vec::new();
        for desc in &index.manifests {
            let full = desc.annotation(crate::layout::ANNOTATION_IMAGE_NAME).is_some();
            let Some(name) = entry_name(desc).map(str::to_string) else { continue };
            crate::verify::index_name(&name, full)?;
            // Everything the image needs must have been in the archive (or
            // already here), and match, before it gets a name.
            crate::verify::verify_tree(self, desc)?;
            named.push((name, desc));
        }
        let mut out = Vec::new();
        for (name, desc) in named {
            self.tag(&name, desc)?;
            let tagged = self.resolve(&name)?.ok_or_else(|| Error::RefNotFound { name: name.clone() })?;
            out.push((name, tagged));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::{random_image, random_index};
    use crate::ErrorKind;

    fn store() -> (tempfile::TempDir, Store) {
        crate::testsuite::temp_store()
    }

    fn entries(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn oci_archive_round_trip() {
        let (_a, src) = store();
        let idx = random_index(&src, 2, 2, 1).unwrap();
        let img = random_image(&src, 1, 99).unwrap();
        src.tag("example.com/multi:1", &idx).unwrap();
        src.tag("example.com/single:1", &img).unwrap();
        src.tag("example.com/other:1", &img).unwrap();
        let mut tar_bytes = Vec::new();
        src.export_oci_archive(&["example.com/multi:1", "example.com/single:1"], &mut tar_bytes).unwrap();
        let names = entries(&tar_bytes);
        assert!(names.contains(&"oci-layout".to_string()) && names.contains(&"index.json".to_string()));
        assert_eq!(names.iter().filter(|n| n.starts_with("blobs/sha256/") && n.len() > 13).count(), 9 + 3);
        // Deterministic.
        let mut again = Vec::new();
        src.export_oci_archive(&["example.com/multi:1", "example.com/single:1"], &mut again).unwrap();
        assert_eq!(tar_bytes, again);

        let (_b, dst) = store();
        let loaded = dst.import_archive(&tar_bytes[..]).unwrap();
        let loaded: Vec<_> = loaded.into_iter().map(|(n, d)| (n, d.digest)).collect();
        assert_eq!(
            loaded,
            vec![
                ("example.com/multi:1".to_string(), idx.digest.clone()),
                ("example.com/single:1".to_string(), img.digest)
            ]
        );
        assert_eq!(dst.referenced_blobs().unwrap().len(), 12);
        assert!(dst.du().unwrap().reclaimable_bytes() == 0);
        // Loading twice is fine.
        assert_eq!(dst.import_archive(&tar_bytes[..]).unwrap().len(), 2);
    }

    #[test]
    fn export_unknown_name_fails() {
        let (_a, s) = store();
        let err = s.export_oci_archive(&["nope"], Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn import_refuses_tampered_and_incomplete_archives() {
        let (_a, src) = store();
        let img = random_image(&src, 1, 3).unwrap();
        src.tag("x", &img).unwrap();
        let mut good = Vec::new();
        src.export_oci_archive(&["x"], &mut good).unwrap();
        // Rebuild the archive with one blob's content changed.
        let mut out = TarOut::new(Vec::new());
        let mut dropped = TarOut::new(Vec::new());
        let mut a = tar::Archive::new(&good[..]);
        let layer_path = {
            let m = src.get_manifest(&img).unwrap();
            format!("blobs/sha256/{}", m.as_image().unwrap().layers[0].digest.hex())
        };
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            if e.header().entry_type().is_dir() {
                continue;
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if p == layer_path {
                data[600] ^= 0xff;
                out.bytes(&p, &data).unwrap();
                continue;
            }
            out.bytes(&p, &data).unwrap();
            dropped.bytes(&p, &data).unwrap();
        }
        let (mut bad, mut incomplete) = (Vec::new(), Vec::new());
        out.builder.finish().unwrap();
        bad.extend(out.builder.into_inner().unwrap());
        dropped.builder.finish().unwrap();
        incomplete.extend(dropped.builder.into_inner().unwrap());
        let (_b, dst) = store();
        assert!(matches!(dst.import_archive(&bad[..]), Err(Error::DigestMismatch { .. })));
        assert_eq!(dst.import_archive(&incomplete[..]).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(dst.list().unwrap().is_empty());
        assert!(dst.import_archive(&b""[..]).is_err());
    }

    #[test]
    fn an_oci_image_whose_layer_is_not_its_diff_id_is_refused() {
        let (_a, src) = store();
        let layer = src
            .put_bytes(mt::OCI_LAYER_TAR, &crate::testsuite::random_layer(&mut crate::testsuite::Rng::new(1)).unwrap())
            .unwrap();
        let wrong = Digest::sha256(b"something else");
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [wrong.to_string()]}});
        let config = src.put_bytes(mt::OCI_CONFIG, &serde_json::to_vec(&config).unwrap()).unwrap();
        let manifest = polyarch_oci::ImageManifest::new(mt::OCI_MANIFEST, config.clone(), vec![layer.clone()]);
        let desc = src.put_manifest(&polyarch_oci::RawManifest::from_image(&manifest).unwrap()).unwrap();
        src.tag("example.com/bad:1", &desc).unwrap();
        let mut tar_bytes = Vec::new();
        src.export_oci_archive(&["example.com/bad:1"], &mut tar_bytes).unwrap();
        let (_b, dst) = store();
        let err = dst.import_archive(&tar_bytes[..]).unwrap_err();
        assert!(
            matches!(&err, Error::LayerMismatch { layer: l, expected, .. } if *l == layer.digest && *expected == wrong),
            "{err}"
        );
        assert!(err.to_string().contains(&wrong.to_string()) && err.to_string().contains(&layer.digest.to_string()));
        assert!(dst.list().unwrap().is_empty() && dst.blobs().unwrap().is_empty());
    }

    #[test]
    fn export_refuses_corrupt_blobs() {
        let (_a, s) = store();
        let img = random_image(&s, 1, 3).unwrap();
        s.tag("x", &img).unwrap();
        let layer = s.get_manifest(&img).unwrap().as_image().unwrap().layers[0].clone();
        let p = s.blob_path(&layer.digest);
        let mut data = std::fs::read(&p).unwrap();
        data[700] ^= 1;
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, data).unwrap();
        let err = s.export_oci_archive(&["x"], Vec::new()).unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("./a/b/../c")).as_deref(), Some("a/c"));
        assert_eq!(normalize(Path::new("../x")), None);
        assert_eq!(blob_digest("blobs/sha256/abc"), None);
    }
}
