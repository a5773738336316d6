//! Compression of layers and archives, the one implementation every crate
//! uses: recognising a stream by its magic bytes (gzip, bzip2, xz, zstd,
//! or none, as containerd's `archive/compression` does) and decompressing
//! it as it is read; and compressing layers deterministically (gzip
//! through zlib-rs with no name and mtime 0, zstd with a checksum).

use std::io::{self, BufRead, BufReader, Read, Write};

use polyarch_oci::media_type as mt;

/// The formats a stream can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Not compressed.
    Plain,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

/// The format whose magic bytes start `head`.
pub fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(b"BZh") {
        Format::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Format::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else {
        Format::Plain
    }
}

/// Wraps `reader` in the decompressor its first bytes call for (several
/// concatenated gzip, bzip2 or xz members are read as one stream); a
/// plain stream passes through. Memory stays bounded by the buffers.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(64 * 1024, reader);
    let format = detect(r.fill_buf()?);
    Ok(match format {
        Format::Plain => Box::new(r),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Format::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar.
    Uncompressed,
    /// gzip at `level` (0-9); the header carries no file name and mtime 0.
    Gzip {
        /// The deflate level.
        level: u32,
    },
    /// zstd at `level` (1-22).
    Zstd {
        /// The zstd level.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::gzip()
    }
}

impl Compression {
    /// gzip at the default level, 6.
    pub fn gzip() -> Compression {
        Compression::Gzip { level: 6 }
    }

    /// zstd at the default level, 3.
    pub fn zstd() -> Compression {
        Compression::Zstd { level: 3 }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::Uncompressed => mt::OCI_LAYER_TAR,
            Compression::Gzip { .. } => mt::OCI_LAYER_GZIP,
            Compression::Zstd { .. } => mt::OCI_LAYER_ZSTD,
        }
    }

    /// The Docker media type of a layer compressed this way. Docker has
    /// only a gzip type; the others fall back to the OCI ones.
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => mt::DOCKER_LAYER_GZIP,
            other => other.oci_media_type(),
        }
    }
}

/// A compressing writer; [`Encoder::finish`] writes the trailer and hands
/// back the inner writer.
pub enum Encoder<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Compresses into `w` as `c` says; the same input always gives the
    /// same bytes.
    pub fn new(w: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::Uncompressed => Encoder::Plain(w),
            Compression::Gzip { level } => {
                let level = flate2::Compression::new(level.min(9));
                Encoder::Gzip(flate2::GzBuilder::new().mtime(0).write(w, level))
            }
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(w, level)?;
                enc.include_checksum(true)?;
                Encoder::Zstd(enc)
            }
        })
    }

    /// Ends the stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(Vec::new(), c).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn every_format_is_detected_and_read_back() {
        let plain = b"hello layer, hello layer, hello layer".to_vec();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&plain).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&plain).unwrap();
        let cases = [
            (encoded(Compression::Uncompressed, &plain), Format::Plain),
            (encoded(Compression::gzip(), &plain), Format::Gzip),
            (bz.finish().unwrap(), Format::Bzip2),
            (xz.finish().unwrap(), Format::Xz),
            (encoded(Compression::zstd(), &plain), Format::Zstd),
        ];
        for (data, format) in cases {
            assert_eq!(detect(&data), format);
            let mut out = Vec::new();
            decompress(&data[..]).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{format:?}");
        }
        let mut out = Vec::new();
        decompress(&b""[..]).unwrap().read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn gzip_is_deterministic_and_concatenated_members_read_as_one() {
        let blob = encoded(Compression::gzip(), b"a");
        // mtime (bytes 4..8) is zero and FNAME (flag 0x08) is not set.
        assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
        assert_eq!(blob[3] & 0x08, 0);
        assert_eq!(encoded(Compression::gzip(), b"a"), blob);
        let mut two = blob.clone();
        two.extend(encoded(Compression::gzip(), b"b"));
        let mut out = Vec::new();
        decompress(&two[..]).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }

    #[test]
    fn media_types() {
        assert_eq!(Compression::zstd().oci_media_type(), mt::OCI_LAYER_ZSTD);
        assert_eq!(Compression::gzip().docker_media_type(), mt::DOCKER_LAYER_GZIP);
        assert_eq!(Compression::Uncompressed.docker_media_type(), mt::OCI_LAYER_TAR);
    }
}
