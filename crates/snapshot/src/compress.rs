//! Layer compression: choosing an encoder, and sniffing gzip, zstd or plain
//! tar by magic bytes when reading (as containerd's `archive/compression`
//! does).

use std::io::{self, BufRead, BufReader, Read, Write};

use polyarch_oci::media_type as mt;

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

/// A compressing writer; [`Encoder::finish`] writes the trailer.
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(w: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::Uncompressed => Encoder::Plain(w),
            Compression::Gzip { level } => {
                let level = flate2::Compression::new(level.min(9));
                // mtime 0 and no name: the same input gives the same bytes.
                Encoder::Gzip(flate2::GzBuilder::new().mtime(0).write(w, level))
            }
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(w, level)?;
                enc.include_checksum(true)?;
                Encoder::Zstd(enc)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
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

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// What the first bytes of `buf` say the stream is.
pub fn detect(buf: &[u8]) -> Compression {
    if buf.starts_with(GZIP_MAGIC) {
        Compression::gzip()
    } else if buf.starts_with(ZSTD_MAGIC) {
        Compression::zstd()
    } else {
        Compression::Uncompressed
    }
}

/// Wraps `r` in the decompressor its magic bytes call for; plain streams
/// pass through.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(64 * 1024, r);
    let kind = detect(br.fill_buf()?);
    Ok(match kind {
        Compression::Gzip { .. } => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd { .. } => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        Compression::Uncompressed => Box::new(br),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: Compression) -> Vec<u8> {
        let mut enc = Encoder::new(Vec::new(), c).unwrap();
        enc.write_all(b"hello layer").unwrap();
        let blob = enc.finish().unwrap();
        let mut out = Vec::new();
        decompress(&blob[..]).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello layer", "{c:?}");
        blob
    }

    #[test]
    fn sniffs_and_round_trips() {
        for c in [Compression::Uncompressed, Compression::gzip(), Compression::zstd()] {
            let blob = round_trip(c);
            assert_eq!(std::mem::discriminant(&detect(&blob)), std::mem::discriminant(&c));
        }
    }

    #[test]
    fn gzip_header_is_deterministic() {
        let blob = round_trip(Compression::gzip());
        // mtime (bytes 4..8) is zero and FNAME (flag 0x08) is not set.
        assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
        assert_eq!(blob[3] & 0x08, 0);
        assert_eq!(round_trip(Compression::gzip()), blob);
    }

    #[test]
    fn empty_stream_is_plain() {
        let mut out = Vec::new();
        decompress(&b""[..]).unwrap().read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }
}
