//! Snapshotters, following containerd's model
//! (`core/snapshots/snapshotter.go`): `prepare` makes an active snapshot
//! on top of a committed parent, `commit` freezes it under a name,
//! `view` is a read-only active snapshot. Each snapshot is a directory
//! `snapshots/<id>/` under the root, and each key a small JSON file in
//! `metadata/` naming its id, kind and parent.

mod naive;
mod overlay;
mod records;
#[cfg(test)]
mod stacks;
#[cfg(test)]
mod testsuite;

use std::io::{Read, Write};

use polyarch_oci::{Digest, Digester};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::{LayerInfo, LayerOptions};
use crate::mount::Mount;
use crate::unpack::{UnpackOptions, UnpackStats};

pub use naive::NaiveSnapshotter;
pub use overlay::OverlaySnapshotter;

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, made by `prepare`.
    Active,
    /// Read-only, made by `view`.
    View,
    /// Frozen by `commit`; may be a parent.
    Committed,
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key (or name, once committed).
    pub key: String,
    /// Its state.
    pub kind: Kind,
    /// The committed snapshot it sits on.
    pub parent: Option<String>,
}

/// Disk used by a snapshot's own directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub size: u64,
    /// Files, directories and links.
    pub inodes: u64,
}

/// Stores file system trees as a chain of snapshots.
pub trait Snapshotter: Send + Sync {
    /// Makes an active snapshot `key` on top of the committed `parent` and
    /// returns how to mount it writable.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mount>;

    /// Makes a read-only view `key` of the committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Mount>;

    /// Freezes the active snapshot `key` as the committed `name`; `key`
    /// is gone afterwards.
    fn commit(&self, name: &str, key: &str) -> Result<()>;

    /// Removes a snapshot; committed ones only when nothing sits on them.
    fn remove(&self, key: &str) -> Result<()>;

    /// How to mount an existing snapshot (read-only unless active).
    fn mounts(&self, key: &str) -> Result<Mount>;

    /// Kind and parent of a snapshot.
    fn stat(&self, key: &str) -> Result<Info>;

    /// Disk used by the snapshot's own directory (for the naive
    /// snapshotter that is the whole tree).
    fn usage(&self, key: &str) -> Result<Usage>;

    /// Every snapshot, by key.
    fn list(&self) -> Result<Vec<Info>>;

    /// Writes the layer of changes `key` makes on top of its parent.
    fn diff(&self, key: &str, out: &mut dyn Write, opts: &LayerOptions) -> Result<LayerInfo>;

    /// Unpacks an uncompressed layer into the active snapshot `key`.
    fn apply(&self, key: &str, layer: &mut dyn Read, opts: &UnpackOptions) -> Result<UnpackStats>;
}

/// The chain id of a layer on top of `parent` (a chain id itself), as
/// the image-spec's config.md defines it: the diff_id for a base layer,
/// else `sha256(parent + " " + diff_id)`.
pub fn chain_id(parent: Option<&str>, diff_id: &Digest) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => Digest::sha256(format!("{p} {diff_id}").as_bytes()).to_string(),
    }
}

/// Unpacks a layer (uncompressed tar) on top of the committed `parent`
/// and commits it under its chain id, which it returns. A chain id that is
/// already committed is returned without reading the layer, so base image
/// layers are unpacked once and shared. The tar must hash to `diff_id`.
pub fn apply_layer(
    s: &dyn Snapshotter,
    parent: Option<&str>,
    diff_id: &Digest,
    layer: &mut dyn Read,
    opts: &UnpackOptions,
) -> Result<String> {
    let name = chain_id(parent, diff_id);
    if let Ok(info) = s.stat(&name) {
        if info.kind == Kind::Committed {
            return Ok(name);
        }
    }
    let key = format!("extract-{}-{name}", records::unique_suffix());
    s.prepare(&key, parent)?;
    let result = unpack_verified(s, &key, diff_id, layer, opts).and_then(|()| s.commit(&name, &key));
    match result {
        Ok(()) => Ok(name),
        Err(e) => {
            let _ = s.remove(&key);
            if e.kind() == crate::ErrorKind::AlreadyExists {
                return Ok(name);
            }
            Err(e)
        }
    }
}

fn unpack_verified(
    s: &dyn Snapshotter,
    key: &str,
    diff_id: &Digest,
    layer: &mut dyn Read,
    opts: &UnpackOptions,
) -> Result<()> {
    let mut hashing = HashingReader { inner: layer, digester: diff_id.digester() };
    s.apply(key, &mut hashing, opts)?;
    // The tar's trailing blocks past the end marker count too.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| Error::Io { path: key.into(), source: e })?;
    let actual = hashing.digester.finish();
    if &actual != diff_id {
        return Err(Error::DiffIdMismatch { expected: diff_id.clone(), actual });
    }
    Ok(())
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    digester: Digester,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids() {
        let d = Digest::sha256(b"layer");
        assert_eq!(chain_id(None, &d), d.to_string());
        let c = chain_id(Some("sha256:aa"), &d);
        assert_eq!(c, Digest::sha256(format!("sha256:aa {d}").as_bytes()).to_string());
    }
}
