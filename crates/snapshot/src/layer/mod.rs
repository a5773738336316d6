//! Writing layer tars deterministically, hashing while streaming.
//!
//! Every layer polyarch writes follows the same rules, whatever produced
//! its entries: PAX format, numeric owners with empty user and group
//! names, no atime or ctime, mtimes in whole seconds clamped to
//! `SOURCE_DATE_EPOCH` when one is given (or all set to it with
//! `rewrite_timestamps`, BuildKit's `rewrite-timestamp=true`), entries in
//! path order with parents first. One pass computes the diff_id (sha256 of
//! the tar) and the blob's digest and size.

mod builder;
mod header;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use polyarch_oci::{Algorithm, Descriptor, Digest, Digester};
use polyarch_store::{copy_blob, BlobSink};

use crate::compress::{Compression, Encoder};
use crate::error::{io_at, Result};

pub use builder::{FileSource, LayerBuilder};
pub(crate) use header::{EntryKind, TarEntry};

/// Ownership, mode, mtime and xattrs of one layer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, written as PAX `SCHILY.xattr.*` records.
    pub xattrs: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// `0644`, root-owned, mtime 0.
    pub fn file() -> Meta {
        Meta { mode: 0o644, uid: 0, gid: 0, mtime: 0, xattrs: Default::default() }
    }

    /// `0755`, root-owned, mtime 0.
    pub fn dir() -> Meta {
        Meta { mode: 0o755, ..Meta::file() }
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: u32) -> Meta {
        self.mode = mode;
        self
    }

    /// Sets owner and group.
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Meta {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets the modification time.
    pub fn with_mtime(mut self, mtime: i64) -> Meta {
        self.mtime = mtime;
        self
    }

    /// Adds an extended attribute.
    pub fn with_xattr(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Meta {
        self.xattrs.insert(name.into(), value.into());
        self
    }
}

/// How a layer is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerOptions {
    compression: Compression,
    source_date_epoch: Option<i64>,
    rewrite_timestamps: bool,
    docker_media_type: bool,
}

impl LayerOptions {
    /// gzip level 6, OCI media types, mtimes as found.
    pub fn new() -> LayerOptions {
        LayerOptions::default()
    }

    /// The blob's compression.
    pub fn with_compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Clamps every mtime to at most `epoch`.
    pub fn with_source_date_epoch(mut self, epoch: Option<i64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// With a source date epoch, sets every mtime to it instead of clamping.
    pub fn with_rewrite_timestamps(mut self, on: bool) -> Self {
        self.rewrite_timestamps = on;
        self
    }

    /// Describes the blob with Docker's media type instead of OCI's.
    pub fn with_docker_media_type(mut self, on: bool) -> Self {
        self.docker_media_type = on;
        self
    }

    /// The compression in use.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The mtime written for an entry whose file says `mtime`.
    pub fn mtime(&self, mtime: i64) -> i64 {
        let t = match self.source_date_epoch {
            Some(e) if self.rewrite_timestamps => e,
            Some(e) => mtime.min(e),
            None => mtime,
        };
        t.max(0)
    }

    fn media_type(&self) -> &'static str {
        if self.docker_media_type {
            self.compression.docker_media_type()
        } else {
            self.compression.oci_media_type()
        }
    }
}

/// A layer written: its blob's descriptor and what it unpacks to.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// The (compressed) blob.
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar, for the image config's `rootfs`.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// A writer that hashes and counts what passes through.
pub(crate) struct Hashing<W> {
    inner: W,
    digester: Digester,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing { inner, digester: Digester::new(Algorithm::Sha256), count: 0 }
    }

    fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.digester.finish(), self.count)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer tar being written to `W` through the chosen compression.
pub(crate) struct TarStream<W: Write> {
    builder: tar::Builder<Hashing<Encoder<Hashing<W>>>>,
    opts: LayerOptions,
}

impl<W: Write> TarStream<W> {
    pub(crate) fn new(out: W, opts: &LayerOptions) -> io::Result<TarStream<W>> {
        let enc = Encoder::new(Hashing::new(out), opts.compression)?;
        Ok(TarStream { builder: tar::Builder::new(Hashing::new(enc)), opts: opts.clone() })
    }

    /// Appends one entry; `data` must yield exactly the entry's size.
    pub(crate) fn append(&mut self, entry: &TarEntry, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mtime = self.opts.mtime(entry.meta.mtime);
        let (header, pax) = header::build(entry, mtime)?;
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let size = entry.kind.size();
        match data {
            Some(r) => {
                let mut r = r.take(size);
                self.builder.append(&header, &mut r)?;
                if r.limit() != 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while it was archived"));
                }
                Ok(())
            }
            None => self.builder.append(&header, io::empty()),
        }
    }

    /// Writes the end-of-archive marker and the compression trailer.
    pub(crate) fn finish(self) -> io::Result<(W, LayerInfo)> {
        let media_type = self.opts.media_type();
        let hashing = self.builder.into_inner()?;
        let (enc, diff_id, uncompressed_size) = hashing.finish();
        let mut inner = enc.finish()?;
        inner.flush()?;
        let (out, digest, size) = inner.finish();
        let descriptor = Descriptor::new(media_type, digest, size);
        Ok((out, LayerInfo { descriptor, diff_id, uncompressed_size }))
    }
}

/// Writes a layer with `write` into a temp file in `tmp_dir`, then stores
/// the blob in `sink` under the digest `write` reported. A blob that is
/// already there counts as stored.
pub fn store_layer<F>(sink: &dyn BlobSink, tmp_dir: &Path, write: F) -> Result<LayerInfo>
where
    F: FnOnce(&mut std::fs::File) -> Result<LayerInfo>,
{
    let mut tmp = tempfile::tempfile_in(tmp_dir).map_err(io_at(tmp_dir))?;
    let info = write(&mut tmp)?;
    tmp.seek(SeekFrom::Start(0)).map_err(io_at(tmp_dir))?;
    copy_blob(sink, &info.descriptor, &mut tmp)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_clamping() {
        let o = LayerOptions::new();
        assert_eq!(o.mtime(5), 5);
        assert_eq!(o.mtime(-5), 0);
        let o = o.with_source_date_epoch(Some(100));
        assert_eq!(o.mtime(50), 50);
        assert_eq!(o.mtime(150), 100);
        let o = o.with_rewrite_timestamps(true);
        assert_eq!(o.mtime(50), 100);
    }

    #[test]
    fn stores_layers_in_a_store() {
        use polyarch_store::{BlobSource, Store};
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let mut b = LayerBuilder::new();
        b.add_file("hello", FileSource::Bytes(b"world".to_vec()), Meta::file()).unwrap();
        let write = |f: &mut std::fs::File| b.write(f, &LayerOptions::new()).map(|(_, info)| info);
        let info = store_layer(&store, tmp.path(), write).unwrap();
        let blob = store.read_bytes(&info.descriptor, 1 << 20).unwrap();
        assert_eq!(blob.len() as u64, info.descriptor.size);
        assert!(store.exists(&info.descriptor.digest).unwrap());
        // Storing the same layer again is fine.
        let write = |f: &mut std::fs::File| b.write(f, &LayerOptions::new()).map(|(_, info)| info);
        assert_eq!(store_layer(&store, tmp.path(), write).unwrap(), info);
    }

    #[test]
    fn media_types() {
        use polyarch_oci::media_type as mt;
        let o = LayerOptions::new();
        assert_eq!(o.media_type(), mt::OCI_LAYER_GZIP);
        assert_eq!(o.clone().with_docker_media_type(true).media_type(), mt::DOCKER_LAYER_GZIP);
        assert_eq!(o.clone().with_compression(Compression::zstd()).media_type(), mt::OCI_LAYER_ZSTD);
        assert_eq!(o.with_compression(Compression::Uncompressed).media_type(), mt::OCI_LAYER_TAR);
    }
}
