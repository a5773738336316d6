//! Compressed inputs of ADD: the store crate's decompression, and whether
//! what it yields is a tar.

use std::io::Read;

use crate::error::{Error, Result};

pub use polyarch_store::compression::{detect, Format};

/// Wraps `reader` in the decompressor its first bytes call for (the
/// store crate's [`polyarch_store::compression::decompress`]).
pub fn decompress<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    polyarch_store::compression::decompress(reader).map_err(|e| Error::layer("reading", e))
}

/// Whether the stream is a tar archive once decompressed: the ustar magic
/// at offset 257 of the first header, or a valid old-style header
/// checksum. Reads at most the first header's worth of output.
pub fn is_tar(data: impl Read) -> bool {
    let Ok(mut r) = decompress(data) else { return false };
    let mut block = vec![0u8; 512];
    let mut n = 0;
    while n < 512 {
        match r.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    if n < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { *b as u32 }).sum();
    stored == Some(sum) && block[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(2);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn every_format_round_trips() {
        let plain = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&plain).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&plain).unwrap();
        let xz = xz.finish().unwrap();
        let zs = zstd::encode_all(&plain[..], 3).unwrap();
        for (data, fmt) in
            [(&plain, Format::Plain), (&gz, Format::Gzip), (&bz, Format::Bzip2), (&xz, Format::Xz), (&zs, Format::Zstd)]
        {
            assert_eq!(detect(data), fmt);
            let mut out = Vec::new();
            decompress(&data[..]).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{fmt:?}");
            assert!(is_tar(&data[..]), "{fmt:?}");
        }
        assert!(!is_tar(&b"just some text that is not an archive"[..]));
        assert!(!is_tar(&[0u8; 1024][..]));
    }
}
