//! Files that appear whole or not at all: written to a temporary file
//! beside the target, synced, then renamed over it. The temporary file is
//! removed if the writer is dropped before [`AtomicFile::commit`].
//!
//! Used for every file polyarch writes for a user (archives of `-o`,
//! `save -o`, man pages) and for the store's own `index.json`.

use std::fs::{File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A file being written to `path`; nothing is at `path` until
/// [`AtomicFile::commit`].
pub struct AtomicFile {
    path: PathBuf,
    dir: PathBuf,
    tmp: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `path`, whose directory must exist. The file gets
    /// mode 0666 less the umask (as `creat`), not the private mode of a
    /// temporary file. Errors carry no path; callers name it.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(without_path)?;
        Ok(AtomicFile { path: path.to_path_buf(), dir, tmp: BufWriter::with_capacity(256 * 1024, tmp) })
    }

    /// Writes `bytes` to `path` at once: the whole file or, on failure,
    /// whatever was there before.
    pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = AtomicFile::create(path)?;
        f.write_all(bytes)?;
        f.commit()
    }

    /// The file this becomes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the file into place, then syncs its
    /// directory so the rename survives a crash.
    pub fn commit(self) -> io::Result<()> {
        let tmp = self.tmp.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        File::open(&self.dir).and_then(|d| d.sync_all())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// tempfile's errors end with `at path "DIR/.name.XXXXXX"`: a name the
/// user never chose. The OS error alone reads better beside the target.
fn without_path(e: io::Error) -> io::Error {
    let text = e.to_string();
    match text.rfind(" at path \"") {
        Some(i) => io::Error::new(e.kind(), &text[..i]),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_whole_with_the_umasks_mode_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.tar");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"data").unwrap();
        assert!(!path.exists(), "nothing before the commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap().trim();
        let umask = u32::from_str_radix(umask, 8).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask, "{mode:o}");

        // Dropped before the commit: the old file stays, no temp is left.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn an_error_does_not_name_the_temporary_file() {
        let e = AtomicFile::create(Path::new("/proc/out.tar")).err().unwrap();
        assert!(!e.to_string().contains("at path"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = AtomicFile::create(&d.path().join("missing/out.tar")).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }
}
