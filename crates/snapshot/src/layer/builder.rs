//! Layers from an explicit list of entries (for `COPY` and `ADD`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::{EntryKind, LayerInfo, LayerOptions, Meta, TarEntry, TarStream};
use crate::error::{io_at, Error, Result};
use crate::rooted::clean;
use crate::unpack::{WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// Where a file entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The file at this path, read when the layer is written.
    Path(PathBuf),
}

#[derive(Debug)]
struct Pending {
    entry: TarEntry,
    source: Option<FileSource>,
}

/// Collects entries, then writes them as one layer in path order (parents
/// before children), whatever order they were added in. Adding a path
/// again replaces the earlier entry.
#[derive(Debug, Default)]
pub struct LayerBuilder {
    entries: BTreeMap<Vec<Vec<u8>>, Pending>,
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    /// Entries added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, path: &str, meta: Meta) -> Result<&mut Self> {
        self.insert(path, EntryKind::Dir, meta, None)
    }

    /// Adds a regular file. The size of a [`FileSource::Path`] is taken
    /// now; the content is read when the layer is written.
    pub fn add_file(&mut self, path: &str, source: FileSource, meta: Meta) -> Result<&mut Self> {
        let size = match &source {
            FileSource::Bytes(b) => b.len() as u64,
            FileSource::Path(p) => std::fs::metadata(p).map_err(io_at(p))?.len(),
        };
        self.insert(path, EntryKind::File { size }, meta, Some(source))
    }

    /// Adds a symlink to `target`, stored as given.
    pub fn add_symlink(&mut self, path: &str, target: &str, meta: Meta) -> Result<&mut Self> {
        self.insert(path, EntryKind::Symlink { target: target.as_bytes().to_vec() }, meta, None)
    }

    /// Adds a hard link to `target`, another path of this layer or of a
    /// lower one.
    pub fn add_hardlink(&mut self, path: &str, target: &str, meta: Meta) -> Result<&mut Self> {
        let t = clean(target.as_bytes());
        if t.is_empty() {
            return Err(Error::entry(target, "hard link to the root"));
        }
        let target = crate::rooted::join(&t).into_os_string().into_encoded_bytes();
        self.insert(path, EntryKind::Hardlink { target }, meta, None)
    }

    /// Adds a whiteout that deletes `path` from lower layers.
    pub fn add_whiteout(&mut self, path: &str) -> Result<&mut Self> {
        let mut comps = key(path)?;
        let name = comps.pop().unwrap_or_default();
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(&name);
        comps.push(wh);
        self.insert_key(comps, TarEntry::whiteout(Vec::new()), None);
        Ok(self)
    }

    /// Marks the directory `path` opaque: lower layers' contents vanish.
    pub fn add_opaque(&mut self, path: &str) -> Result<&mut Self> {
        let mut comps = clean(path.as_bytes()).into_iter().map(|c| c.into_encoded_bytes()).collect::<Vec<_>>();
        comps.push(WHITEOUT_OPAQUE.as_bytes().to_vec());
        self.insert_key(comps, TarEntry::whiteout(Vec::new()), None);
        Ok(self)
    }

    fn insert(&mut self, path: &str, kind: EntryKind, meta: Meta, source: Option<FileSource>) -> Result<&mut Self> {
        let comps = key(path)?;
        self.insert_key(comps, TarEntry { path: Vec::new(), kind, meta }, source);
        Ok(self)
    }

    fn insert_key(&mut self, comps: Vec<Vec<u8>>, mut entry: TarEntry, source: Option<FileSource>) {
        entry.path = comps.join(&b'/');
        self.entries.insert(comps, Pending { entry, source });
    }

    /// Writes the layer to `out`.
    pub fn write<W: Write>(&self, out: W, opts: &LayerOptions) -> Result<(W, LayerInfo)> {
        let at = PathBuf::from("<layer>");
        let mut tar = TarStream::new(out, opts).map_err(io_at(&at))?;
        for p in self.entries.values() {
            let shown = || PathBuf::from(String::from_utf8_lossy(&p.entry.path).into_owned());
            match &p.source {
                None => tar.append(&p.entry, None).map_err(io_at(shown()))?,
                Some(FileSource::Bytes(b)) => tar.append(&p.entry, Some(&mut &b[..])).map_err(io_at(shown()))?,
                Some(FileSource::Path(path)) => {
                    let mut f = File::open(path).map_err(io_at(path))?;
                    tar.append(&p.entry, Some(&mut f as &mut dyn Read)).map_err(io_at(path))?;
                }
            }
        }
        tar.finish().map_err(io_at(at))
    }
}

/// The cleaned components of a non-root path.
fn key(path: &str) -> Result<Vec<Vec<u8>>> {
    let comps = clean(path.as_bytes());
    if comps.is_empty() {
        return Err(Error::entry(path, "the layer root cannot be an entry"));
    }
    Ok(comps.into_iter().map(|c| c.into_encoded_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Compression;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries().unwrap().map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap()).collect()
    }

    #[test]
    fn sorts_parents_first_and_is_deterministic() {
        let build = || {
            let mut b = LayerBuilder::new();
            b.add_file("a.b", FileSource::Bytes(b"1".to_vec()), Meta::file()).unwrap();
            b.add_file("a/z", FileSource::Bytes(b"2".to_vec()), Meta::file()).unwrap();
            b.add_dir("/a/", Meta::dir()).unwrap();
            b.add_symlink("a/l", "../a.b", Meta::file().with_mode(0o777)).unwrap();
            b.add_hardlink("a/h", "/a/z", Meta::file()).unwrap();
            b.add_whiteout("old").unwrap();
            b.add_opaque("a").unwrap();
            b.write(Vec::new(), &LayerOptions::new().with_compression(Compression::Uncompressed)).unwrap()
        };
        let (tar, info) = build();
        let want = [".wh.old", "a/", "a/.wh..wh..opq", "a/h", "a/l", "a/z", "a.b"];
        assert_eq!(names(&tar), want);
        assert_eq!(build().1, info);
        assert_eq!(info.diff_id, info.descriptor.digest);
        assert_eq!(info.uncompressed_size, tar.len() as u64);
    }

    #[test]
    fn rejects_the_root() {
        assert!(LayerBuilder::new().add_dir("/../.", Meta::dir()).is_err());
        assert!(LayerBuilder::new().add_hardlink("x", "..", Meta::file()).is_err());
    }
}
