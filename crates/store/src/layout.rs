//! Where things live under the store root, which is an OCI image layout
//! (image-spec `image-layout.md`) plus `ingest/` and `locks/`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polyarch_oci::Digest;

use crate::error::{io_at, Error, Result};

/// Contents of `oci-layout`.
pub const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// Annotation with the reference name, as the image spec defines it.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and BuildKit write with the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// `root/blobs/<alg>/<hex>`.
pub(crate) fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join(digest.algorithm().name()).join(digest.hex())
}

/// Mode of the store root: unpacked images keep their files' modes (setuid
/// programs, device nodes), so no other user may reach anything below it,
/// as containerd's and BuildKit's state directories are kept.
pub const ROOT_MODE: u32 = 0o700;

/// Creates what is missing of the layout under `root`, and makes the root
/// itself (new or not) reachable by its owner only.
pub(crate) fn init(root: &Path) -> Result<()> {
    private_dir(root)?;
    for dir in ["blobs/sha256", "ingest", "locks"] {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(io_at(&p))?;
    }
    let layout = root.join("oci-layout");
    match fs::read(&layout) {
        Ok(bytes) => check_layout_file(&layout, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomic(root, &layout, OCI_LAYOUT_CONTENT.as_bytes())
        }
        Err(e) => Err(Error::Io { path: layout, source: e }),
    }
}

/// Creates `dir` (and missing parents, with the default mode) and sets its
/// own mode to [`ROOT_MODE`] whether it was new or not.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    match fs::DirBuilder::new().mode(ROOT_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(Error::Io { path: dir.to_path_buf(), source: e }),
    }
    let meta = fs::metadata(dir).map_err(io_at(dir))?;
    if meta.permissions().mode() & 0o7777 != ROOT_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(ROOT_MODE)).map_err(io_at(dir))?;
    }
    Ok(())
}

fn check_layout_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let corrupt = |reason: String| Error::CorruptLayout { path: path.to_path_buf(), reason };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(s) if s.starts_with("1.") => Ok(()),
        other => Err(corrupt(format!("unsupported imageLayoutVersion {other:?}"))),
    }
}

/// Writes `bytes` to `target` through a synced temp file in `dir` and a
/// rename, so readers see the old or the new file, never a partial one.
pub(crate) fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    debug_assert_eq!(target.parent(), Some(dir));
    crate::AtomicFile::write(target, bytes).map_err(io_at(target))
}

/// fsyncs a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

/// The default store root: `/var/lib/polyarch` for root, else
/// `$XDG_DATA_HOME/polyarch` or `~/.local/share/polyarch`.
pub fn default_root() -> PathBuf {
    let euid = rustix::process::geteuid().as_raw();
    root_for(euid, std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn root_for(euid: u32, xdg: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/var/lib/polyarch");
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(x) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return x.join("polyarch");
    }
    match home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(h) => h.join(".local/share/polyarch"),
        None => std::env::temp_dir().join(format!("polyarch-{euid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roots() {
        assert_eq!(root_for(0, Some("/x".into()), None), PathBuf::from("/var/lib/polyarch"));
        assert_eq!(root_for(1000, Some("/x".into()), Some("/home/u".into())), PathBuf::from("/x/polyarch"));
        assert_eq!(
            root_for(1000, Some("rel".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.local/share/polyarch")
        );
        assert_eq!(root_for(1000, None, Some("/home/u".into())), PathBuf::from("/home/u/.local/share/polyarch"));
        assert!(default_root().ends_with("polyarch"));
    }

    #[test]
    fn init_creates_layout_and_refuses_foreign_versions() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("oci-layout")).unwrap(), OCI_LAYOUT_CONTENT);
        for d in ["blobs/sha256", "ingest", "locks"] {
            assert!(dir.path().join(d).is_dir(), "{d}");
        }
        init(dir.path()).unwrap();
        fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        assert!(matches!(init(dir.path()), Err(Error::CorruptLayout { .. })));
    }

    #[test]
    fn the_root_is_private_new_or_not() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/store");
        init(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let old = dir.path().join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o4777)).unwrap();
        init(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(init(&dir.path().join("file")).is_err());
    }
}
