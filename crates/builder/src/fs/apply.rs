//! Reading a tar stream into a tree: one pass, in archive order, each
//! entry placed at its path resolved inside the root (as containerd's
//! apply and BuildKit's unpacking do), so that `link -> /etc` followed by
//! `link/file` puts `etc/file` in the root and never an entry below the
//! link. File contents are references into the layer's unpacked directory
//! when there is one, or spilled.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use super::{base, clean, join, new_link_group, parent, Content, Kind, MemFs, Node, Spill};
use crate::error::{Error, Result};

/// Where the bytes of regular files read from a tar go.
#[derive(Debug, Clone, Copy)]
pub enum Backing<'a> {
    /// The archive is unpacked below this directory (the layer's unpacked
    /// form): contents refer to the files there, and are not read.
    Dir(&'a Arc<PathBuf>),
    /// The bytes are copied into a spill file (or kept, when small).
    Spill(&'a Spill),
}

/// How [`MemFs::apply_tar`] reads an archive.
#[derive(Debug, Clone)]
pub struct TarApply<'a> {
    /// Where contents go.
    pub backing: Backing<'a>,
    /// The directory the archive is unpacked into; it is the archive's `/`
    /// for symlinks (`""`: the tree's root).
    pub root: String,
    /// Apply OCI whiteouts (layers); when false they are skipped (ADD).
    pub whiteouts: bool,
}

impl<'a> TarApply<'a> {
    /// A layer applied at the root, with whiteouts.
    pub fn layer(backing: Backing<'a>) -> TarApply<'a> {
        TarApply { backing, root: String::new(), whiteouts: true }
    }
}

impl MemFs {
    /// Applies a tar stream (compressed or not). Returns the paths written
    /// (directories made for missing parents included), in order; an entry
    /// written twice appears twice.
    pub fn apply_tar(&mut self, reader: impl Read, opts: &TarApply) -> Result<Vec<String>> {
        let mut ar = tar::Archive::new(crate::compress::decompress(reader)?);
        let entries = ar.entries().map_err(|e| Error::layer("reading", e))?;
        let mut written = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::layer("reading", e))?;
            let raw = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            if raw.is_empty() {
                continue;
            }
            let name = base(&raw);
            if name.starts_with(".wh.") {
                if opts.whiteouts {
                    self.whiteout(opts, &raw);
                }
                continue;
            }
            let Some(path) = self.resolve_entry(&opts.root, &raw) else {
                return Err(Error::Layer(format!("{raw}: a parent directory is a file, or its links loop")));
            };
            if path.is_empty() || path == opts.root {
                continue;
            }
            let Some(node) = self.entry_node(&mut entry, &raw, &path, opts)? else { continue };
            written.extend(self.ensure_parents(&path, 0));
            self.insert(path.clone(), node);
            written.push(path);
        }
        Ok(written)
    }

    fn whiteout(&mut self, opts: &TarApply, raw: &str) {
        let Some(dir) = self.resolve_entry(&opts.root, parent(raw)) else { return };
        let dir = self.resolve(&dir, true).unwrap_or(dir);
        match base(raw) {
            ".wh..wh..opq" => {
                let below: Vec<String> = self.children(&dir).map(|(k, _)| k.clone()).collect();
                for k in below {
                    self.nodes.remove(&k);
                }
            }
            name => {
                if let Some(victim) = name.strip_prefix(".wh.").filter(|v| !v.starts_with(".wh.")) {
                    self.remove_tree(&join(&dir, victim));
                }
            }
        }
    }

    /// The node an entry makes; `None` for kinds a tree does not hold.
    fn entry_node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &str,
        at: &str,
        opts: &TarApply,
    ) -> Result<Option<Node>> {
        let xattrs = pax_xattrs(entry)?;
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let mtime = h.mtime().unwrap_or(0) as i64;
        let size = h.size().unwrap_or(0);
        let kind = match h.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => {
                let t = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned());
                Kind::Symlink(t.unwrap_or_default())
            }
            tar::EntryType::Link => {
                let t = entry.link_name_bytes().map(|b| clean(&String::from_utf8_lossy(&b))).unwrap_or_default();
                let found = self.resolve_entry(&opts.root, &t);
                let Some(target) = found.as_ref().and_then(|p| self.nodes.get_mut(p)) else {
                    return Err(Error::Layer(format!("hard link {raw} to missing {t}")));
                };
                // A hard link is the target's inode: its content,
                // metadata and attributes, and now a shared group.
                if matches!(target.kind, Kind::File(_)) {
                    target.link.get_or_insert_with(new_link_group);
                }
                return Ok(Some(target.clone()));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File(match opts.backing {
                // The unpacked directory holds the entry where its path
                // resolves (through the layers below), as the tree does.
                Backing::Dir(root) => Content::rooted(root.clone(), at, size),
                Backing::Spill(spill) => spill.put(entry, size)?,
            }),
            t @ (tar::EntryType::Char | tar::EntryType::Block) => Kind::Device {
                block: t == tar::EntryType::Block,
                major: h.device_major().ok().flatten().unwrap_or(0),
                minor: h.device_minor().ok().flatten().unwrap_or(0),
            },
            tar::EntryType::Fifo => Kind::Fifo,
            _ => return Ok(None),
        };
        Ok(Some(Node { xattrs, ..Node::new(kind, mode, uid, gid, mtime) }))
    }
}

/// The extended attributes of a tar entry: PAX `SCHILY.xattr.NAME` records
/// and bsdtar's `LIBARCHIVE.xattr.NAME` ones, read as the unpacker reads
/// them ([`polyarch_snapshot::pax_xattr`]; `SCHILY` wins).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<BTreeMap<String, Vec<u8>>> {
    use polyarch_snapshot::XattrRecord;
    let mut out = BTreeMap::new();
    let mut libarchive = BTreeMap::new();
    let Some(exts) = entry.pax_extensions().map_err(|e| Error::layer("reading", e))? else { return Ok(out) };
    for ext in exts {
        let ext = ext.map_err(|e| Error::layer("reading", e))?;
        let Ok(key) = ext.key() else { continue };
        match polyarch_snapshot::pax_xattr(key, ext.value_bytes()) {
            Some((name, value, XattrRecord::Schily)) => {
                out.insert(name, value);
            }
            Some((name, value, XattrRecord::Libarchive)) => {
                libarchive.insert(name, value);
            }
            None => {}
        }
    }
    for (k, v) in libarchive {
        out.entry(k).or_insert(v);
    }
    Ok(out)
}
