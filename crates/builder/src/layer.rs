//! Deterministic layers: entries in path order, numeric owners, no user or
//! group names, PAX records only where USTAR cannot hold a value and for
//! extended attributes (`SCHILY.xattr.*`), hard links within a layer as tar
//! link entries; the compressed blob and the uncompressed `diff_id` come
//! out of one pass that streams each file's content from where it is into
//! the compressor and a temporary file, hashing as it goes.
//!
//! A layer never holds an entry below a symlink (or below any other entry
//! that is not a directory): such an entry would be unpacked through the
//! link, and writing one is an error.

use std::collections::HashMap;
use std::io::{Seek, Write};
use std::path::Path;

use polyarch_oci::{Descriptor, Digest};
use polyarch_store::compression::Encoder;
use polyarch_store::Store;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::fs::{parent, Kind, Node};

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (the default, as BuildKit).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// A plain tar (`compression=uncompressed`).
    Uncompressed,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => polyarch_oci::media_type::OCI_LAYER_GZIP,
            Compression::Zstd => polyarch_oci::media_type::OCI_LAYER_ZSTD,
            Compression::Uncompressed => polyarch_oci::media_type::OCI_LAYER_TAR,
        }
    }

    /// A stable name, used in cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "uncompressed",
        }
    }

    /// Whether a layer of `media_type` is compressed this way (a plain
    /// tar, or a type of neither kind, is not).
    pub fn is_of(self, media_type: &str) -> bool {
        use polyarch_oci::media_type as mt;
        match self {
            Compression::Gzip => matches!(media_type, mt::OCI_LAYER_GZIP | mt::DOCKER_LAYER_GZIP),
            Compression::Zstd => media_type == mt::OCI_LAYER_ZSTD,
            Compression::Uncompressed => matches!(media_type, mt::OCI_LAYER_TAR | mt::DOCKER_LAYER_TAR),
        }
    }
}

/// A compression and its level (`compression-level=`): how new layers
/// are written. The level changes the blob, not the content, so it is in
/// no cache key: a cached step keeps the blob it has, as BuildKit reuses
/// a layer's blob of the same compression whatever level made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoding {
    /// The compression.
    pub compression: Compression,
    /// Its level; `None` is the compression's default (gzip 6, zstd 3).
    pub level: Option<i32>,
}

impl From<Compression> for Encoding {
    fn from(compression: Compression) -> Encoding {
        Encoding { compression, level: None }
    }
}

impl Encoding {
    /// `compression` at `level`, checked as BuildKit's compressors check
    /// it: gzip takes -1 (its default) to 9; zstd takes any level and
    /// clamps it to zstd's 1-22 (BuildKit maps every integer onto one of
    /// its encoder's speeds); an uncompressed layer ignores it.
    pub fn new(compression: Compression, level: Option<i32>) -> std::result::Result<Encoding, String> {
        if let (Compression::Gzip, Some(l)) = (compression, level) {
            if !(-1..=9).contains(&l) {
                return Err(format!("compression-level={l} is out of range for gzip (0-9, or -1 for the default)"));
            }
        }
        Ok(Encoding { compression, level })
    }

    /// The store crate's compression for this encoding.
    fn store(self) -> polyarch_store::compression::Compression {
        use polyarch_store::compression::Compression as C;
        match (self.compression, self.level) {
            (Compression::Gzip, Some(l)) if l >= 0 => C::Gzip { level: l as u32 },
            (Compression::Gzip, _) => C::gzip(),
            (Compression::Zstd, Some(l)) => C::Zstd { level: l.clamp(1, 22) },
            (Compression::Zstd, None) => C::zstd(),
            (Compression::Uncompressed, _) => C::Uncompressed,
        }
    }

    /// Whether layers are written as with no level given.
    fn is_default(self) -> bool {
        self.store() == Encoding::from(self.compression).store()
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

/// Serialises `entries` (paths relative to the root, sorted) as a tar in
/// memory, for small trees and tests; see [`write_tar`].
pub fn tar_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Node)>) -> Result<Vec<u8>> {
    write_tar(Vec::new(), entries)
}

/// Writes `entries` (paths relative to the root, sorted) as a tar into
/// `w`, streaming file contents. A file of a hard-link group whose first
/// member (in path order) is in the same tar is written as a hard link to
/// it, as a file-system diff would. An entry below a symlink or a file of
/// the same tar is an error.
pub fn write_tar<'a, W: Write>(w: W, entries: impl IntoIterator<Item = (&'a str, &'a Node)>) -> Result<W> {
    let mut b = tar::Builder::new(w);
    let mut firsts: HashMap<u64, (&str, &Node)> = HashMap::new();
    let mut leaves: HashMap<&str, &'static str> = HashMap::new();
    for (path, node) in entries {
        check_parents(&leaves, path)?;
        if let Some(what) = leaf_kind(&node.kind) {
            leaves.insert(path, what);
        }
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
        append(&mut b, path, node, link_to)?;
    }
    b.into_inner().map_err(|e| Error::layer("writing", e))
}

/// What an entry other entries cannot be below is, for messages.
fn leaf_kind(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::Dir => None,
        Kind::Symlink(_) => Some("symlink"),
        Kind::File(_) => Some("file"),
        Kind::Device { .. } => Some("device"),
        Kind::Fifo => Some("fifo"),
    }
}

/// Fails when a parent of `path` is a symlink (or another non-directory)
/// written earlier in the same layer.
fn check_parents(leaves: &HashMap<&str, &'static str>, path: &str) -> Result<()> {
    let mut p = parent(path);
    while !p.is_empty() {
        if let Some(what) = leaves.get(p) {
            return Err(Error::Layer(format!(
                "entry {path:?} is below the {what} {p:?}; a layer must not hold entries below a symlink"
            )));
        }
        p = parent(p);
    }
    Ok(())
}

fn append<W: Write>(b: &mut tar::Builder<W>, path: &str, node: &Node, link_to: Option<&str>) -> Result<()> {
    let io = |e| Error::layer("writing", e);
    let mut h = tar::Header::new_ustar();
    let name = if node.is_dir() { format!("{path}/") } else { path.to_string() };
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if h.set_path(&name).is_err() {
        pax.push(("path".into(), name.clone().into_bytes()));
        let short: String = name.chars().rev().take(90).collect::<String>().chars().rev().collect();
        h.set_path(short.trim_start_matches('/')).map_err(io)?;
    }
    h.set_mode(node.mode);
    set_id(&mut h, &mut pax, node.uid, "uid");
    set_id(&mut h, &mut pax, node.gid, "gid");
    h.set_mtime(node.mtime.max(0) as u64);
    h.set_size(0);
    let mut data: Option<&crate::content::Content> = None;
    match (&node.kind, link_to) {
        (Kind::Dir, _) => h.set_entry_type(tar::EntryType::Directory),
        (Kind::Symlink(t), _) => {
            h.set_entry_type(tar::EntryType::Symlink);
            set_link(&mut h, &mut pax, t).map_err(io)?;
        }
        (Kind::File(_), Some(first)) => {
            h.set_entry_type(tar::EntryType::Link);
            set_link(&mut h, &mut pax, first).map_err(io)?;
        }
        (Kind::File(c), None) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(c.len());
            data = Some(c);
        }
        (Kind::Device { block, major, minor }, _) => {
            h.set_entry_type(if *block { tar::EntryType::Block } else { tar::EntryType::Char });
            h.set_device_major(*major).map_err(io)?;
            h.set_device_minor(*minor).map_err(io)?;
        }
        (Kind::Fifo, _) => h.set_entry_type(tar::EntryType::Fifo),
    }
    for (k, v) in &node.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(io)?;
    }
    h.set_cksum();
    match data {
        Some(c) => b.append(&h, c.open()?).map_err(|e| Error::io(&c.location(), e)),
        None => b.append(&h, std::io::empty()).map_err(io),
    }
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

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing { inner, hash: Sha256::new(), size: 0 }
    }

    fn finish(self) -> (W, Digest, u64) {
        let hex = hex::encode(self.hash.finalize());
        let digest = format!("sha256:{hex}").parse().unwrap_or_else(|_| Digest::sha256(b""));
        (self.inner, digest, self.size)
    }
}

/// How many bytes the compressor is given at a time. The compressed bytes
/// depend on where the input is cut, so it is always cut here, whatever
/// sizes the tar is written in.
const CHUNK: usize = 64 * 1024;

/// Feeds `inner` in chunks of exactly [`CHUNK`] bytes (the last one
/// shorter).
struct Chunked<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Chunked<W> {
    fn new(inner: W) -> Chunked<W> {
        Chunked { inner, buf: Vec::with_capacity(CHUNK) }
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.inner.write_all(&self.buf)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The store crate's compressing writer for `compression`.
fn encoder<W: Write>(out: W, encoding: Encoding) -> std::io::Result<Encoder<W>> {
    Encoder::new(out, encoding.store())
}

/// BuildKit's gzip of an empty layer (the 1024 zero bytes that end a tar,
/// no header time or name), `sha256:4f4fb700...`: the layer of a RUN, COPY
/// or WORKDIR that changed nothing, as BuildKit writes it, so images share
/// it with every image BuildKit built.
pub const EMPTY_GZIP_LAYER: [u8; 32] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x8c, 0x58, 0x00,
    0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
];

/// The layer of no change: an empty tar (`diff_id`
/// `sha256:5f70bf18...`), compressed as BuildKit compresses it for gzip
/// at the default level.
pub fn empty_layer(store: &Store, encoding: impl Into<Encoding>) -> Result<Layer> {
    let encoding = encoding.into();
    let tar = [0u8; 1024];
    let blob = match encoding.compression {
        Compression::Gzip if encoding.is_default() => EMPTY_GZIP_LAYER.to_vec(),
        _ => compress(&tar, encoding)?,
    };
    let desc = store.put_bytes(encoding.compression.media_type(), &blob)?;
    Ok(Layer { desc, diff_id: Digest::sha256(&tar) })
}

/// Writes `entries` as a layer into the store: the tar streams through the
/// compressor into an unnamed temporary file in `tmp` (the store's `run/`),
/// hashed on both sides, and is then committed as a verified blob. No
/// entries give [`empty_layer`].
pub fn write_layer<'a>(
    store: &Store,
    tmp: &Path,
    entries: impl IntoIterator<Item = (&'a str, &'a Node)>,
    encoding: impl Into<Encoding>,
) -> Result<Layer> {
    let encoding = encoding.into();
    let mut entries = entries.into_iter().peekable();
    if entries.peek().is_none() {
        return empty_layer(store, encoding);
    }
    stream_layer(store, tmp, encoding, |tar| write_tar(tar, entries), |_| Ok(()))
}

/// `layer` compressed as `compression` (`force-compression`): its blob is
/// decompressed and compressed again as it streams into an unnamed
/// temporary file in `tmp`, checked against its `diff_id` and committed as
/// a verified blob. A layer compressed so already is returned as it is
/// (whatever its level, as BuildKit converts only other compressions).
pub fn recompress(store: &Store, tmp: &Path, layer: &Layer, encoding: impl Into<Encoding>) -> Result<Layer> {
    let encoding = encoding.into();
    if encoding.compression.is_of(&layer.desc.media_type) {
        return Ok(layer.clone());
    }
    let copy = |mut tar: TarSink| {
        let mut plain = crate::compress::decompress(polyarch_store::BlobSource::open(store, &layer.desc)?)?;
        std::io::copy(&mut plain, &mut tar).map_err(|e| Error::layer("recompressing", e))?;
        Ok(tar)
    };
    let check = |diff_id: &Digest| {
        if *diff_id == layer.diff_id {
            return Ok(());
        }
        Err(Error::Layer(format!(
            "recompressing {}: its content is {diff_id}, not the diff id {} the image names",
            layer.desc.digest, layer.diff_id
        )))
    };
    let mut out = stream_layer(store, tmp, encoding, copy, check)?;
    out.desc.annotations = layer.desc.annotations.clone();
    Ok(out)
}

/// Where a layer's tar is written: hashed (the `diff_id`), compressed in
/// chunks, hashed again (the blob's digest), into a temporary file.
type TarSink = Hashing<Chunked<Encoder<Hashing<std::io::BufWriter<std::fs::File>>>>>;

/// The one path a streamed layer takes into the store: `write` fills the
/// tar, `check` sees its `diff_id` before anything is committed, and the
/// compressed blob is copied into the store as a verified blob.
fn stream_layer(
    store: &Store,
    tmp: &Path,
    encoding: Encoding,
    write: impl FnOnce(TarSink) -> Result<TarSink>,
    check: impl FnOnce(&Digest) -> Result<()>,
) -> Result<Layer> {
    std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    let file = tempfile::tempfile_in(tmp).map_err(|e| Error::io(tmp, e))?;
    let enc =
        encoder(Hashing::new(std::io::BufWriter::new(file)), encoding).map_err(|e| Error::layer("compressing", e))?;
    let tar = write(Hashing::new(Chunked::new(enc)))?;
    let (chunked, diff_id, _) = tar.finish();
    check(&diff_id)?;
    let enc = chunked.finish().map_err(|e| Error::layer("compressing", e))?;
    let out = enc.finish().map_err(|e| Error::layer("compressing", e))?;
    let (buf, digest, size) = out.finish();
    let mut file = buf.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
    file.rewind().map_err(|e| Error::io(tmp, e))?;
    let desc = Descriptor::new(encoding.compression.media_type(), digest, size);
    polyarch_store::copy_blob(store, &desc, &mut file)?;
    Ok(Layer { desc, diff_id })
}

/// Compresses an in-memory `tar` and stores it; returns the layer.
pub fn store_layer(store: &Store, tar: &[u8], compression: Compression) -> Result<Layer> {
    let diff_id = Digest::sha256(tar);
    let blob = compress(tar, compression)?;
    let desc = store.put_bytes(compression.media_type(), &blob)?;
    Ok(Layer { desc, diff_id })
}

/// Compresses bytes deterministically (no gzip name or time).
pub fn compress(tar: &[u8], encoding: impl Into<Encoding>) -> Result<Vec<u8>> {
    let enc = encoder(Vec::new(), encoding.into()).map_err(|e| Error::layer("compressing", e))?;
    let mut chunked = Chunked::new(enc);
    chunked.write_all(tar).map_err(|e| Error::layer("compressing", e))?;
    let enc = chunked.finish().map_err(|e| Error::layer("compressing", e))?;
    enc.finish().map_err(|e| Error::layer("compressing", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_store::BlobSource;

    fn entries() -> Vec<(String, Node)> {
        let long = format!("{}/file", "d".repeat(150));
        vec![
            ("app".into(), Node::dir(0o755, 0, 0, 5)),
            ("app/f".into(), Node::new(Kind::File(crate::fs::Content::bytes(&b"hi"[..])), 0o640, 1000, 2000, 7)),
            ("app/l".into(), Node::new(Kind::Symlink("f".into()), 0o777, 0, 0, 7)),
            (long, Node::new(Kind::File(crate::fs::Content::bytes(Vec::new())), 0o644, 9_999_999, 0, 0)),
        ]
    }

    #[test]
    fn an_empty_layer_is_buildkits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let none: [(&str, &Node); 0] = [];
        let gz = write_layer(&store, &dir.path().join("tmp"), none, Compression::Gzip).unwrap();
        assert_eq!(
            gz.desc.digest.to_string(),
            "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1"
        );
        assert_eq!(gz.desc.size, 32);
        assert_eq!(gz.diff_id.to_string(), "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
        let mut tar = Vec::new();
        let blob = store.open(&gz.desc).unwrap();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(blob), &mut tar).unwrap();
        assert_eq!(tar, [0u8; 1024], "the gzip stream's CRC and size hold");
        let zst = empty_layer(&store, Compression::Zstd).unwrap();
        assert_eq!(zst.diff_id, gz.diff_id);
        assert_eq!(zst.desc.media_type, polyarch_oci::media_type::OCI_LAYER_ZSTD);
    }

    #[test]
    fn recompressing_keeps_the_content_and_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let tmp = dir.path().join("tmp");
        let e = entries();
        let gz = write_layer(&store, &tmp, e.iter().map(|(p, n)| (p.as_str(), n)), Compression::Gzip).unwrap();
        assert_eq!(recompress(&store, &tmp, &gz, Compression::Gzip).unwrap(), gz, "already gzip");
        let zst = recompress(&store, &tmp, &gz, Compression::Zstd).unwrap();
        assert_eq!(
            (zst.desc.media_type.as_str(), &zst.diff_id),
            (polyarch_oci::media_type::OCI_LAYER_ZSTD, &gz.diff_id)
        );
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut zstd::Decoder::new(store.open(&zst.desc).unwrap()).unwrap(), &mut tar).unwrap();
        assert_eq!(Digest::sha256(&tar), gz.diff_id);
        let back = recompress(&store, &tmp, &zst, Compression::Gzip).unwrap();
        assert_eq!(back, gz, "gzip again is the same blob");
        let lying = Layer { diff_id: Digest::sha256(b"other"), ..gz.clone() };
        let err = recompress(&store, &tmp, &lying, Compression::Zstd).unwrap_err().to_string();
        assert!(err.contains("not the diff id"), "{err}");
    }

    #[test]
    fn a_level_changes_the_blob_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let tmp = dir.path().join("tmp");
        let text = "a line of text that compresses well\n".repeat(4096);
        let e = [("t", Node::new(Kind::File(crate::fs::Content::bytes(text.clone().into_bytes())), 0o644, 0, 0, 0))];
        let write = |c, level| {
            let enc = Encoding::new(c, level).unwrap();
            write_layer(&store, &tmp, e.iter().map(|(p, n)| (*p, n)), enc).unwrap()
        };
        let default = write(Compression::Gzip, None);
        assert_eq!(write(Compression::Gzip, Some(6)), default, "6 is gzip's default");
        assert_eq!(write(Compression::Gzip, Some(-1)), default, "-1 names the default");
        let stored = write(Compression::Gzip, Some(0));
        assert_eq!(stored.diff_id, default.diff_id);
        assert!(stored.desc.size > text.len() as u64, "level 0 stores: {}", stored.desc.size);
        assert!(default.desc.size < stored.desc.size / 20);
        let (z1, z19) = (write(Compression::Zstd, Some(1)), write(Compression::Zstd, Some(19)));
        assert_eq!((z1.diff_id.clone(), z19.diff_id.clone()), (default.diff_id.clone(), default.diff_id.clone()));
        assert_ne!(z1.desc.digest, z19.desc.digest);
        assert_eq!(write(Compression::Zstd, Some(-5)), z1, "below zstd's range is its fastest");
        assert_eq!(
            write(Compression::Uncompressed, Some(9)).desc.size,
            write(Compression::Uncompressed, None).desc.size
        );
        assert!(Encoding::new(Compression::Gzip, Some(10)).is_err());
        // The empty layer is BuildKit's blob at the default level only.
        let none: [(&str, &Node); 0] = [];
        let empty = write_layer(&store, &tmp, none, Encoding::new(Compression::Gzip, Some(0)).unwrap()).unwrap();
        assert_eq!(empty.diff_id, empty_layer(&store, Compression::Gzip).unwrap().diff_id);
        assert_ne!(empty.desc.size, 32);
        // force-compression converts at the level; the same compression stays.
        let zst = recompress(&store, &tmp, &default, Encoding::new(Compression::Zstd, Some(19)).unwrap()).unwrap();
        assert_eq!(zst, z19);
        assert_eq!(recompress(&store, &tmp, &stored, Compression::Gzip).unwrap(), stored);
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

    #[test]
    fn an_entry_below_a_symlink_is_refused() {
        let link = Node::new(Kind::Symlink("/etc".into()), 0o777, 0, 0, 0);
        let file = Node::new(Kind::File(crate::fs::Content::bytes(&b"x"[..])), 0o644, 0, 0, 0);
        let dir = Node::dir(0o755, 0, 0, 0);
        let e = tar_entries([("a", &dir), ("a/link", &link), ("a/link/passwd", &file)]).unwrap_err().to_string();
        assert!(e.contains("\"a/link/passwd\" is below the symlink \"a/link\""), "{e}");
        let e = tar_entries([("f", &file), ("f/x", &file)]).unwrap_err().to_string();
        assert!(e.contains("below the file \"f\""), "{e}");
        // A sibling whose name starts like the link is fine.
        assert!(tar_entries([("a", &dir), ("a/link", &link), ("a/link-2", &file), ("a/link.d/x", &file)]).is_ok());
    }

    #[test]
    fn layers_stream_from_contents_into_the_store() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("store")).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.path().join("big"), &data).unwrap();
        let root = std::sync::Arc::new(d.path().to_path_buf());
        let big = Node::new(Kind::File(crate::fs::Content::rooted(root, "big", data.len() as u64)), 0o644, 0, 0, 0);
        let entries = [("big", &big)];
        for c in [Compression::Gzip, Compression::Zstd] {
            let layer = write_layer(&store, &d.path().join("tmp"), entries, c).unwrap();
            let tar = tar_entries(entries).unwrap();
            assert_eq!(layer.diff_id, Digest::sha256(&tar), "{c:?}");
            assert_eq!(layer, store_layer(&store, &tar, c).unwrap(), "the same blob as compressing in memory");
            let back = crate::fs::MemFs::from_tar(store.open(&layer.desc).unwrap()).unwrap();
            assert_eq!(back.read("big").unwrap(), data);
        }
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).unwrap().count(), 0, "no temporary file left");
        let short = Node::new(
            Kind::File(crate::fs::Content::rooted(std::sync::Arc::new(d.path().to_path_buf()), "big", 4_000_000)),
            0o644,
            0,
            0,
            0,
        );
        let e = write_layer(&store, &d.path().join("tmp"), [("big", &short)], Compression::Gzip).unwrap_err();
        assert!(e.to_string().contains("shorter than recorded"), "{e}");
    }
}
