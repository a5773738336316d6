//! File contents as references to where their bytes are, so that no file
//! is ever held whole in memory: a file below a root directory (an
//! unpacked layer, a run's upper directory, the build context), a region
//! of a spill file for bytes that only exist in a stream (an archive's
//! entries, a download), or a small buffer. Contents are read through
//! [`Content::open`], which yields exactly the recorded size or fails, and
//! hashed by streaming ([`Content::sha256`], computed once).
//!
//! Small buffers count against a process-wide budget
//! ([`INLINE_BUDGET`]); past it, [`Spill`] writes even small files to disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The largest file [`Spill`] keeps in memory.
pub const INLINE_MAX: u64 = 16 * 1024;
/// The most bytes all in-memory contents of the process may hold before
/// [`Spill`] writes small files to disk too.
pub const INLINE_BUDGET: u64 = 32 << 20;

static INLINE_USED: AtomicU64 = AtomicU64::new(0);

/// Bytes held by in-memory contents now.
pub fn inline_bytes() -> u64 {
    INLINE_USED.load(Ordering::Relaxed)
}

/// A file's content: where its bytes are, their size and (once computed)
/// their sha256. Cheap to clone; clones share the digest.
#[derive(Clone)]
pub struct Content(Arc<Inner>);

struct Inner {
    size: u64,
    sha256: OnceLock<[u8; 32]>,
    src: Src,
}

enum Src {
    Inline(Inline),
    /// `rel` below `root`, resolved as if `root` were `/`.
    Rooted {
        root: Arc<PathBuf>,
        rel: PathBuf,
    },
    /// `size` bytes at `offset` of a spill file.
    Spill {
        file: Arc<File>,
        offset: u64,
    },
}

/// An in-memory buffer whose size counts against [`INLINE_BUDGET`].
struct Inline(Vec<u8>);

impl Inline {
    fn new(data: Vec<u8>) -> Inline {
        INLINE_USED.fetch_add(data.len() as u64, Ordering::Relaxed);
        Inline(data)
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        INLINE_USED.fetch_sub(self.0.len() as u64, Ordering::Relaxed);
    }
}

impl Content {
    fn from_src(size: u64, src: Src, sha256: Option<[u8; 32]>) -> Content {
        let lock = OnceLock::new();
        if let Some(h) = sha256 {
            let _ = lock.set(h);
        }
        Content(Arc::new(Inner { size, sha256: lock, src }))
    }

    /// Content held in memory (here-documents, small generated files).
    pub fn bytes(data: impl Into<Vec<u8>>) -> Content {
        let data = data.into();
        Content::from_src(data.len() as u64, Src::Inline(Inline::new(data)), None)
    }

    /// The regular file `rel` below `root`, of `size` bytes. It is opened
    /// with symlinks resolved inside `root`, so it never reads outside.
    pub fn rooted(root: Arc<PathBuf>, rel: impl Into<PathBuf>, size: u64) -> Content {
        Content::from_src(size, Src::Rooted { root, rel: rel.into() }, None)
    }

    /// The regular file at `path`, of `size` bytes (a stored blob).
    pub fn file(path: &Path, size: u64) -> Content {
        let root = Arc::new(path.parent().map(Path::to_path_buf).unwrap_or_default());
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        Content::rooted(root, name, size)
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.0.size
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.0.size == 0
    }

    /// Where the bytes are, for messages.
    pub fn location(&self) -> PathBuf {
        match &self.0.src {
            Src::Inline(_) => PathBuf::from("<memory>"),
            Src::Rooted { root, rel } => root.join(rel),
            Src::Spill { .. } => PathBuf::from("<spill file>"),
        }
    }

    /// A reader of exactly [`Content::len`] bytes; reading fails when the
    /// file turns out shorter (it changed since it was recorded).
    pub fn open(&self) -> Result<Box<dyn Read + Send + '_>> {
        let inner: Box<dyn Read + Send + '_> = match &self.0.src {
            Src::Inline(b) => Box::new(&b.0[..]),
            Src::Rooted { root, rel } => Box::new(open_in_root(root, rel)?),
            Src::Spill { file, offset } => Box::new(Region { file: file.clone(), pos: *offset }),
        };
        Ok(Box::new(Exact { inner: inner.take(self.0.size), left: self.0.size, what: self.location() }))
    }

    /// The whole content, for small files (`/etc/passwd`, a Dockerfile).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.0.size.min(1 << 20) as usize);
        self.open()?.read_to_end(&mut out).map_err(|e| Error::io(&self.location(), e))?;
        Ok(out)
    }

    /// Copies the content into `w`.
    pub fn copy_to(&self, w: &mut dyn Write) -> Result<u64> {
        let mut r = self.open()?;
        io::copy(&mut r, w).map_err(|e| Error::io(&self.location(), e))
    }

    /// The sha256 of the bytes, read once by streaming and then kept.
    pub fn sha256(&self) -> Result<[u8; 32]> {
        if let Some(h) = self.0.sha256.get() {
            return Ok(*h);
        }
        let mut h = HashWriter(Sha256::new());
        self.copy_to(&mut h)?;
        let sum: [u8; 32] = h.0.finalize().into();
        let _ = self.0.sha256.set(sum);
        Ok(sum)
    }

    /// The digest of the bytes.
    pub fn digest(&self) -> Result<polyarch_oci::Digest> {
        let hex = hex::encode(self.sha256()?);
        format!("sha256:{hex}").parse().map_err(|_| Error::Layer(format!("bad digest sha256:{hex}")))
    }

    /// Whether both hold the same bytes: the same reference, or the same
    /// size and digest. A content that cannot be read equals nothing else.
    pub fn same(&self, other: &Content) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        if self.0.size != other.0.size {
            return false;
        }
        match (self.sha256(), other.sha256()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for Content {
    fn eq(&self, other: &Content) -> bool {
        self.same(other)
    }
}

impl Eq for Content {}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Content({} bytes at {})", self.0.size, self.location().display())
    }
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fails at the end when fewer bytes than expected came.
struct Exact<R> {
    inner: R,
    left: u64,
    what: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            let msg = format!("{} is {} bytes shorter than recorded (it changed)", self.what.display(), self.left);
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A reader over a spill file from `pos` on.
struct Region {
    file: Arc<File>,
    pos: u64,
}

impl Read for Region {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Opens the regular file `rel` below `root`, symlinks resolved as if
/// `root` were `/` (`openat2` with `RESOLVE_IN_ROOT`).
fn open_in_root(root: &Path, rel: &Path) -> Result<File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let full = root.join(rel);
    let io_err = |e: rustix::io::Errno| Error::io(&full, io::Error::from_raw_os_error(e.raw_os_error()));
    let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(root, io::Error::from_raw_os_error(e.raw_os_error())))?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    // openat2 answers EAGAIN when a rename raced it: try again.
    let mut tries = 0;
    let opened = loop {
        match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), how) {
            Err(rustix::io::Errno::AGAIN) if tries < 8 => tries += 1,
            r => break r,
        }
    };
    let fd = match opened {
        Ok(fd) => fd,
        // Kernels before 5.6: no symlink may be on the way.
        Err(rustix::io::Errno::NOSYS) => {
            for a in rel.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
                let md = std::fs::symlink_metadata(root.join(a)).map_err(|e| Error::io(&root.join(a), e))?;
                if !md.is_dir() {
                    return Err(Error::io(&full, io::Error::other("a parent is not a directory")));
                }
            }
            rustix::fs::openat(&dir, rel, flags, Mode::empty()).map_err(io_err)?
        }
        Err(e) => return Err(io_err(e)),
    };
    let f = File::from(fd);
    let md = f.metadata().map_err(|e| Error::io(&full, e))?;
    if !md.is_file() {
        return Err(Error::io(&full, io::Error::other("not a regular file")));
    }
    Ok(f)
}

/// Where contents that only exist in a stream go: an unnamed temporary
/// file in a directory (the store's `run/`), created on first use and
/// gone when the last content referring to it is dropped, or when the
/// process dies. Small contents stay in memory while the budget allows.
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    file: Mutex<Option<Tail>>,
}

/// A spill file and where its next content starts.
type Tail = (Arc<File>, u64);

impl Spill {
    /// A spill in `dir` (made when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Spill {
        Spill { dir: dir.into(), file: Mutex::new(None) }
    }

    /// A spill in the system's temporary directory, for trees read without
    /// a store (a context archive, tests).
    pub fn temp() -> Spill {
        Spill::new(std::env::temp_dir())
    }

    /// Stores everything `r` yields; `size` is what it should yield (a
    /// tar header's size), checked.
    pub fn put(&self, r: &mut dyn Read, size: u64) -> Result<Content> {
        if size <= INLINE_MAX && inline_bytes() + size <= INLINE_BUDGET {
            let mut data = Vec::with_capacity(size as usize);
            r.take(size + 1).read_to_end(&mut data).map_err(|e| Error::layer("reading", e))?;
            if data.len() as u64 != size {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} bytes, not {size}", data.len()));
                return Err(Error::layer("reading", e));
            }
            let sum: [u8; 32] = Sha256::digest(&data).into();
            return Ok(Content::from_src(size, Src::Inline(Inline::new(data)), Some(sum)));
        }
        let mut w = self.writer()?;
        io::copy(r, &mut w).map_err(|e| Error::layer("reading", e))?;
        let c = w.finish()?;
        if c.len() != size {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} bytes, not {size}", c.len()));
            return Err(Error::layer("reading", e));
        }
        Ok(c)
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, Option<Tail>>> {
        self.file.lock().map_err(|_| Error::io(&self.dir, io::Error::other("spill lock poisoned")))
    }

    /// A writer appending one content. It owns the file's end until
    /// [`SpillWriter::finish`]; another writer meanwhile gets a file of its
    /// own.
    pub fn writer(&self) -> Result<SpillWriter<'_>> {
        let taken = self.state()?.take();
        let (file, start) = match taken {
            Some(s) => s,
            None => {
                std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
                let f = tempfile::tempfile_in(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
                (Arc::new(f), 0)
            }
        };
        Ok(SpillWriter { spill: self, file, start, len: 0, hash: Sha256::new() })
    }
}

/// One content being written to a [`Spill`].
pub struct SpillWriter<'a> {
    spill: &'a Spill,
    file: Arc<File>,
    start: u64,
    len: u64,
    hash: Sha256,
}

impl Write for SpillWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.start + self.len)?;
        self.hash.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SpillWriter<'_> {
    /// The content written.
    pub fn finish(self) -> Result<Content> {
        let mut state = self.spill.state()?;
        if state.is_none() {
            *state = Some((self.file.clone(), self.start + self.len));
        }
        let sum: [u8; 32] = self.hash.finalize().into();
        let src = Src::Spill { file: self.file, offset: self.start };
        Ok(Content::from_src(self.len, src, Some(sum)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_and_inline_contents_read_back_and_hash() {
        let d = tempfile::tempdir().unwrap();
        let spill = Spill::new(d.path());
        let small = spill.put(&mut &b"hi"[..], 2).unwrap();
        let big_data = vec![7u8; (INLINE_MAX + 1) as usize];
        let big = spill.put(&mut &big_data[..], big_data.len() as u64).unwrap();
        let other = spill.put(&mut &b"after"[..], 5).unwrap();
        assert_eq!(small.read_all().unwrap(), b"hi");
        assert_eq!(big.read_all().unwrap(), big_data);
        assert_eq!(other.read_all().unwrap(), b"after");
        assert!(matches!(big.0.src, Src::Spill { .. }), "over the inline size goes to disk");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the spill file has no name");
        assert_eq!(big.sha256().unwrap(), <[u8; 32]>::from(Sha256::digest(&big_data)));
        assert!(big.same(&Content::bytes(big_data.clone())));
        assert!(!small.same(&Content::bytes(&b"ho"[..])));
        assert!(spill.put(&mut &b"abc"[..], 4).is_err(), "a short stream is an error");
    }

    #[test]
    fn rooted_files_stay_in_their_root_and_must_keep_their_size() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/f"), b"inside").unwrap();
        std::fs::write(d.path().join("f"), b"outside").unwrap();
        std::os::unix::fs::symlink("../..", root.join("etc/up")).unwrap();
        let r = Arc::new(root.clone());
        assert_eq!(Content::rooted(r.clone(), "etc/f", 6).read_all().unwrap(), b"inside");
        // `etc/up/f` resolves to `/f` of the root, not to the file outside.
        assert!(Content::rooted(r.clone(), "etc/up/f", 7).read_all().is_err());
        assert_eq!(Content::rooted(r.clone(), "etc/up/etc/f", 6).read_all().unwrap(), b"inside");
        let changed = Content::rooted(r.clone(), "etc/f", 10).read_all().unwrap_err().to_string();
        assert!(changed.contains("shorter than recorded"), "{changed}");
        assert!(Content::rooted(r, "etc", 0).open().is_err(), "a directory is no content");
    }
}
