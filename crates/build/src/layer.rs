//! Deterministic layers: entries in path order, numeric owners, no user or
//! group names, PAX records only where USTAR cannot hold a value and for
//! extended attributes (`SCHILY.xattr.*`), hard links within a layer as tar
//! link entries; the compressed blob and the uncompressed `diff_id` come
//! out of one pass.

use std::collections::HashMap;
use std::io::Write;

use polyarch_oci::{Descriptor, Digest};
use polyarch_store::Store;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::fs::{Kind, Node};

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (the default, as BuildKit).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => polyarch_oci::media_type::OCI_LAYER_GZIP,
            Compression::Zstd => polyarch_oci::media_type::OCI_LAYER_ZSTD,
        }
    }

    /// A stable name, used in cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A layer in the store: the blob and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// The compressed blob.
    pub desc: Descriptor,
    /// `sha256` of the uncompressed tar.
    pub diff_id: Digest,
}

/// Serialises `entries` (paths relative to the root, sorted) as a tar. A
/// file of a hard-link group whose first member (in path order) is in the
/// same tar is written as a hard link to it, as a file-system diff would.
pub fn tar_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Node)>) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut firsts: HashMap<u64, (&str, &Node)> = HashMap::new();
    for (path, node) in entries {
        let mut link_to = None;
        if let (Some(g), Kind::File(_)) = (node.link, &node.kind) {
            match firsts.get(&g) {
                Some((first, n)) if n.same_inode(node) => link_to = Some(*first),
                Some(_) => {}
                None => {
                    firsts.insert(g, (path, node));
                }
            }
        }
        append(&mut b, path, node, link_to).map_err(|e| Error::layer("writing", e))?;
    }
    b.into_inner().map_err(|e| Error::layer("writing", e))
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, node: &Node, link_to: Option<&str>) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    let name = if node.is_dir() { format!("{path}/") } else { path.to_string() };
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if h.set_path(&name).is_err() {
        pax.push(("path".into(), name.clone().into_bytes()));
        let short: String = name.chars().rev().take(90).collect::<String>().chars().rev().collect();
        h.set_path(short.trim_start_matches('/'))?;
    }
    h.set_mode(node.mode);
    set_id(&mut h, &mut pax, node.uid, "uid");
    set_id(&mut h, &mut pax, node.gid, "gid");
    h.set_mtime(node.mtime.max(0) as u64);
    let data: &[u8] = match (&node.kind, link_to) {
        (Kind::Dir, _) => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            &[]
        }
        (Kind::Symlink(t), _) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            set_link(&mut h, &mut pax, t)?;
            &[]
        }
        (Kind::File(_), Some(first)) => {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            set_link(&mut h, &mut pax, first)?;
            &[]
        }
        (Kind::File(d), None) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(d.len() as u64);
            d.as_slice()
        }
    };
    for (k, v) in &node.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    h.set_cksum();
    b.append(&h, data)
}

/// Sets a link target, in a PAX `linkpath` record when USTAR cannot hold it.
fn set_link(h: &mut tar::Header, pax: &mut Vec<(String, Vec<u8>)>, target: &str) -> std::io::Result<()> {
    if h.set_link_name(target).is_err() {
        pax.push(("linkpath".into(), target.as_bytes().to_vec()));
        h.set_link_name("x")?;
    }
    Ok(())
}

fn set_id(h: &mut tar::Header, pax: &mut Vec<(String, Vec<u8>)>, id: u64, key: &'static str) {
    // USTAR holds 7 octal digits.
    let fits = id < 0o7777777;
    let v = if fits { id } else { 0 };
    if key == "uid" {
        h.set_uid(v);
    } else {
        h.set_gid(v);
    }
    if !fits {
        pax.push((key.to_string(), id.to_string().into_bytes()));
    }
}

struct Hashing<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses `tar` and stores it; returns the layer.
pub fn store_layer(store: &Store, tar: &[u8], compression: Compression) -> Result<Layer> {
    let diff_id = Digest::sha256(tar);
    let blob = compress(tar, compression)?;
    let desc = store.put_bytes(compression.media_type(), &blob)?;
    Ok(Layer { desc, diff_id })
}

/// Compresses bytes deterministically (no gzip name or time).
pub fn compress(tar: &[u8], compression: Compression) -> Result<Vec<u8>> {
    let out = Hashing { inner: Vec::new(), hash: Sha256::new(), size: 0 };
    let out = match compression {
        Compression::Gzip => {
            let mut gz = flate2::GzBuilder::new().mtime(0).write(out, flate2::Compression::default());
            gz.write_all(tar).map_err(|e| Error::layer("compressing", e))?;
            gz.finish().map_err(|e| Error::layer("compressing", e))?
        }
        Compression::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(out, 3).map_err(|e| Error::layer("compressing", e))?;
            z.write_all(tar).map_err(|e| Error::layer("compressing", e))?;
            z.finish().map_err(|e| Error::layer("compressing", e))?
        }
    };
    Ok(out.inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entries() -> Vec<(String, Node)> {
        let long = format!("{}/file", "d".repeat(150));
        vec![
            ("app".into(), Node::dir(0o755, 0, 0, 5)),
            ("app/f".into(), Node::new(Kind::File(Arc::new(b"hi".to_vec())), 0o640, 1000, 2000, 7)),
            ("app/l".into(), Node::new(Kind::Symlink("f".into()), 0o777, 0, 0, 7)),
            (long, Node::new(Kind::File(Arc::new(vec![])), 0o644, 9_999_999, 0, 0)),
        ]
    }

    #[test]
    fn tar_is_deterministic_and_reads_back() {
        let e = entries();
        let a = tar_entries(e.iter().map(|(p, n)| (p.as_str(), n))).unwrap();
        let b = tar_entries(e.iter().map(|(p, n)| (p.as_str(), n))).unwrap();
        assert_eq!(a, b);
        let fs = crate::fs::MemFs::from_tar(&a[..]).unwrap();
        let f = fs.get("app/f").unwrap();
        assert_eq!((f.mode, f.uid, f.gid, f.mtime), (0o640, 1000, 2000, 7));
        assert_eq!(fs.get("app/l").unwrap().kind, Kind::Symlink("f".into()));
        let long = format!("{}/file", "d".repeat(150));
        assert_eq!(fs.get(&long).unwrap().uid, 9_999_999);
        assert_eq!(compress(&a, Compression::Gzip).unwrap(), compress(&b, Compression::Gzip).unwrap());
        let z = compress(&a, Compression::Zstd).unwrap();
        assert_eq!(crate::compress::detect(&z), crate::compress::Format::Zstd);
    }
}
