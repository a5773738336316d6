//! The content traits: read blobs by descriptor, write blobs that are
//! verified and committed atomically (as containerd's content store does).
//!
//! Both traits are object-safe and use blocking `std::io`, so they can sit
//! behind `&dyn BlobSource` / `&dyn BlobSink` and be driven from a thread.

use std::io::{self, Read, Write};

use polyarch_oci::{Descriptor, Digest, Digester};

use crate::error::{Error, Result};

/// What the store knows about a blob without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Somewhere blobs can be read from.
pub trait BlobSource {
    /// Opens the blob `desc` points at. The reader yields the stored bytes
    /// as they are; use [`crate::Store::read_bytes`] for verified reads.
    /// Fails with kind `NotFound` when the blob is missing.
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>>;

    /// Whether the blob is present.
    fn exists(&self, digest: &Digest) -> Result<bool>;

    /// Size of a present blob; kind `NotFound` when missing.
    fn stat(&self, digest: &Digest) -> Result<BlobInfo>;
}

/// Somewhere blobs can be written to.
pub trait BlobSink {
    /// A writer for the blob `desc` describes. Fails with kind
    /// `AlreadyExists` when the blob is already there, so callers can skip
    /// fetching it; [`copy_blob`] treats that as success.
    fn writer(&self, desc: &Descriptor) -> Result<BlobWriter>;
}

/// What a [`BlobSink`] implementation provides behind a [`BlobWriter`].
pub trait Ingest: Write + Send {
    /// Bytes written so far.
    fn written(&self) -> u64;

    /// Verifies that exactly `size` bytes hashing to `expected` were
    /// written and makes the blob visible. Committing content that is
    /// already present succeeds.
    fn commit(self: Box<Self>, size: u64, expected: &Digest) -> Result<()>;
}

/// A blob being written. Dropping it without [`BlobWriter::commit`]
/// discards what was written.
pub struct BlobWriter {
    inner: Box<dyn Ingest>,
}

impl BlobWriter {
    /// Wraps an implementation's ingest.
    pub fn new(inner: Box<dyn Ingest>) -> BlobWriter {
        BlobWriter { inner }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.written()
    }

    /// Verifies size and digest, then makes the blob visible atomically.
    /// Idempotent: if the blob already exists the written copy is dropped
    /// and the call succeeds.
    pub fn commit(self, size: u64, expected: &Digest) -> Result<()> {
        self.inner.commit(size, expected)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").field("written", &self.written()).finish()
    }
}

/// Copies `src` into `sink` as the blob `desc`, verifying size and digest.
/// Content that is already present counts as success, as containerd's
/// `content.WriteBlob` has it.
pub fn copy_blob(sink: &dyn BlobSink, desc: &Descriptor, src: &mut dyn Read) -> Result<()> {
    let mut w = match sink.writer(desc) {
        Ok(w) => w,
        Err(e) if e.is_already_exists() => return Ok(()),
        Err(e) => return Err(e),
    };
    io::copy(src, &mut w).map_err(crate::error::io_at(format!("<blob {}>", desc.digest)))?;
    match w.commit(desc.size, &desc.digest) {
        Err(e) if e.is_already_exists() => Ok(()),
        r => r,
    }
}

/// A reader that checks size and digest as it reads: reading past the end
/// fails with `InvalidData` when the content is not what `desc` says.
pub struct VerifiedReader<R> {
    inner: R,
    hasher: Option<Digester>,
    expected: Descriptor,
    read: u64,
}

impl<R: Read> VerifiedReader<R> {
    /// Wraps `inner`, which should yield the blob `desc` describes.
    pub fn new(inner: R, desc: &Descriptor) -> VerifiedReader<R> {
        VerifiedReader { inner, hasher: Some(desc.digest.digester()), expected: desc.clone(), read: 0 }
    }

    fn check(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else { return Ok(()) };
        let err = if self.read != self.expected.size {
            Error::SizeMismatch {
                digest: self.expected.digest.clone(),
                expected: self.expected.size,
                actual: self.read,
            }
        } else {
            let actual = hasher.finish();
            if actual == self.expected.digest {
                return Ok(());
            }
            Error::DigestMismatch { expected: self.expected.digest.clone(), actual }
        };
        Err(io::Error::new(io::ErrorKind::InvalidData, err))
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check()?;
            return Ok(0);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        if self.read > self.expected.size {
            self.check()?;
        }
        Ok(n)
    }
}

/// Copies one blob from a source to a sink, skipping it when present.
pub fn transfer(src: &dyn BlobSource, sink: &dyn BlobSink, desc: &Descriptor) -> Result<()> {
    let mut r = src.open(desc)?;
    copy_blob(sink, desc, &mut r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_reader() {
        let desc = Descriptor::new("", Digest::sha256(b"hello"), 5);
        let mut out = Vec::new();
        VerifiedReader::new(&b"hello"[..], &desc).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
        for bad in [&b"hellO"[..], b"hell", b"hello!"] {
            let err = VerifiedReader::new(bad, &desc).read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
