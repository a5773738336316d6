//! Local manifest lists (`polyarch manifest create/annotate/push/rm`), kept
//! in polyarch's data directory until they are pushed.
//!
//! Each list is one JSON file named after the digest of the list's name;
//! every write goes to a temporary file that is renamed into place, so a
//! list is always either the old or the new version.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use polyarch_oci::{Descriptor, Digest, RawManifest};
use serde::{Deserialize, Serialize};

use crate::Error;

/// One image of a local list: where it came from, its descriptor (with the
/// platform as created or annotated) and its manifest bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ListEntry {
    /// The image reference as given, fully qualified.
    pub source: String,
    /// Descriptor of the manifest, with the platform the index will carry.
    pub descriptor: Descriptor,
    /// The exact manifest bytes.
    pub manifest: RawManifest,
}

/// A local manifest list.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalList {
    /// The list's reference, fully qualified (e.g. `127.0.0.1:5000/app/img:v1`).
    pub name: String,
    pub entries: Vec<ListEntry>,
}

impl LocalList {
    pub fn new(name: impl Into<String>) -> LocalList {
        LocalList { name: name.into(), entries: Vec::new() }
    }

    /// Adds an entry, replacing one with the same manifest digest (as
    /// `docker manifest create --amend` does).
    pub fn upsert(&mut self, entry: ListEntry) {
        match self.entries.iter_mut().find(|e| e.descriptor.digest == entry.descriptor.digest) {
            Some(slot) => *slot = entry,
            None => self.entries.push(entry),
        }
    }

    /// The entry for an image reference (by its source name or digest).
    pub fn entry_mut(&mut self, source: &str, digest: Option<&Digest>) -> Option<&mut ListEntry> {
        self.entries.iter_mut().find(|e| e.source == source || digest.is_some_and(|d| &e.descriptor.digest == d))
    }
}

#[derive(Serialize, Deserialize)]
struct EntryFile {
    source: String,
    descriptor: Descriptor,
    #[serde(rename = "mediaType")]
    media_type: String,
    /// Manifest bytes, base64, so that they survive exactly.
    manifest: String,
}

#[derive(Serialize, Deserialize)]
struct ListFile {
    name: String,
    entries: Vec<EntryFile>,
}

/// The directory of local lists.
#[derive(Debug, Clone)]
pub struct ListStore {
    dir: PathBuf,
}

impl ListStore {
    /// Lists under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ListStore {
        ListStore { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        let d = Digest::sha256(name.as_bytes());
        self.dir.join(format!("{}.json", &d.hex()[..32]))
    }

    /// The list called `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<LocalList>, Error> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let corrupt =
            |reason: String| Error::ListCorrupt { name: name.to_string(), path: path.display().to_string(), reason };
        let file: ListFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut list = LocalList::new(file.name);
        for e in file.entries {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(e.manifest.as_bytes())
                .map_err(|e| corrupt(e.to_string()))?;
            let manifest = RawManifest::from_bytes(raw, Some(&e.media_type)).map_err(|e| corrupt(e.to_string()))?;
            manifest.verify(&e.descriptor.digest).map_err(|e| corrupt(e.to_string()))?;
            list.entries.push(ListEntry { source: e.source, descriptor: e.descriptor, manifest });
        }
        Ok(Some(list))
    }

    /// Writes a list atomically.
    pub fn put(&self, list: &LocalList) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let file = ListFile {
            name: list.name.clone(),
            entries: list
                .entries
                .iter()
                .map(|e| EntryFile {
                    source: e.source.clone(),
                    descriptor: e.descriptor.clone(),
                    media_type: e.manifest.media_type().to_string(),
                    manifest: base64::engine::general_purpose::STANDARD.encode(e.manifest.bytes()),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Io { path: self.dir.display().to_string(), source: std::io::Error::other(e) })?;
        let path = self.path(&list.name);
        write_atomic(&path, &bytes)
    }

    /// Removes a list; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it
/// over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> ListEntry {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{n}}},"layers":[]}}"#,
            Digest::sha256(&[n])
        );
        let manifest = RawManifest::from_bytes(body.into_bytes(), None).unwrap();
        ListEntry { source: format!("example.com/img:{n}"), descriptor: manifest.descriptor(), manifest }
    }

    #[test]
    fn round_trip_keeps_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path().join("manifests"));
        assert!(store.get("example.com/list:v1").unwrap().is_none());
        let mut list = LocalList::new("example.com/list:v1");
        list.upsert(entry(1));
        list.upsert(entry(2));
        list.upsert(entry(1));
        assert_eq!(list.entries.len(), 2);
        store.put(&list).unwrap();
        let back = store.get("example.com/list:v1").unwrap().unwrap();
        assert_eq!(back, list);
        assert!(store.remove("example.com/list:v1").unwrap());
        assert!(!store.remove("example.com/list:v1").unwrap());
    }

    #[test]
    fn corrupt_list_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        std::fs::write(store.path("x/y:z"), b"{not json").unwrap();
        let err = store.get("x/y:z").unwrap_err();
        assert!(err.to_string().contains("x/y:z"), "{err}");
    }
}
