//! The OCI runtime binary (runc, or another runc-compatible one) and the
//! subcommands the executor uses, all with `--root` pointing at polyarch's
//! own state directory so that its containers never mix with others'.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// A runtime binary and its state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    path: PathBuf,
    root: PathBuf,
}

impl Runtime {
    /// `name` as a path (when it holds a `/`) or looked up in `PATH`.
    pub fn locate(name: &str, root: &Path) -> Result<Runtime> {
        let not_found = || Error::RuntimeNotFound { name: name.to_string() };
        let path = if name.contains('/') {
            let p = PathBuf::from(name);
            if !is_executable(&p) {
                return Err(not_found());
            }
            p
        } else {
            find_in_path(name, std::env::var_os("PATH").as_deref()).ok_or_else(not_found)?
        };
        Ok(Runtime { path, root: root.to_path_buf() })
    }

    /// The binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state root given as `--root`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is runc itself (by file name), which needs no probe.
    pub fn is_runc(&self) -> bool {
        self.path.file_name() == Some(OsStr::new("runc"))
    }

    /// `RUNTIME --root ROOT ARGS...`.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// `kill ID SIGNAL`; whether the runtime accepted it.
    pub fn kill(&self, id: &str, signal: &str) -> bool {
        self.quiet(&["kill", id, signal])
    }

    /// `delete --force ID`; whether the runtime accepted it.
    pub fn delete(&self, id: &str) -> bool {
        self.quiet(&["delete", "--force", id])
    }

    fn quiet(&self, args: &[&str]) -> bool {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let path = path.unwrap_or(OsStr::new("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_name_and_path() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("fake-runtime");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        assert!(find_in_path("fake-runtime", Some(t.path().as_os_str())).is_none(), "not executable yet");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in_path("fake-runtime", Some(t.path().as_os_str())), Some(bin.clone()));
        let r = Runtime::locate(bin.to_str().unwrap(), Path::new("/state")).unwrap();
        assert!(!r.is_runc());
        let args: Vec<String> = r.command(["list"]).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--root", "/state", "list"]);
        let e = Runtime::locate("/nonexistent/runc", Path::new("/s")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
    }
}
