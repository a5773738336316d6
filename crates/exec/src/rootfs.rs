//! Paths inside a container's root file system, resolved the way the
//! container would see them: symlinks are followed relative to the root
//! and `..` never climbs above it (as BuildKit's `fs.RootPath` and
//! `filepath-securejoin`).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{io_at, Error, Result};

/// More links than this in one lookup is a loop (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// The host path of `path` (absolute or relative to `/`) inside `root`,
/// with every symlink resolved within `root`. Components that do not
/// exist yet are appended as given.
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf> {
    let mut pending: Vec<OsString> = components(Path::new(path));
    pending.reverse();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let host = join(root, &done).join(&c);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::Io {
                        path: host,
                        source: std::io::Error::from_raw_os_error(rustix::io::Errno::LOOP.raw_os_error()),
                    });
                }
                let target = fs::read_link(&host).map_err(io_at(&host))?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => done.push(c),
        }
    }
    Ok(join(root, &done))
}

/// Creates `path` inside `root` (and its missing parents) as root-owned
/// directories with mode 0755, as BuildKit does for a missing working
/// directory. Returns the host path.
pub fn mkdir_all(root: &Path, path: &str) -> Result<PathBuf> {
    let host = resolve(root, path)?;
    if !host.is_dir() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(&host).map_err(io_at(&host))?;
    }
    // A parent created above may have been a dangling symlink target;
    // check that the result still lies inside the root.
    let again = resolve(root, path)?;
    if again != host || !again.starts_with(root) {
        return Err(Error::InvalidProcess { reason: format!("working directory {path:?} escapes the root") });
    }
    Ok(host)
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../../../../etc", r.join("usr/escape")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(resolve(r, "/lib/x").unwrap(), r.join("usr/lib/x"));
        assert_eq!(resolve(r, "usr/escape/passwd").unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve(r, "/../../etc").unwrap(), r.join("etc"));
        assert_eq!(resolve(r, "/").unwrap(), r.to_path_buf());
        assert!(resolve(r, "/loop1/x").is_err());
    }

    #[test]
    fn mkdir_all_follows_links_and_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("data")).unwrap();
        symlink("/data", r.join("app")).unwrap();
        let made = mkdir_all(r, "/app/src/x").unwrap();
        assert_eq!(made, r.join("data/src/x"));
        assert!(made.is_dir());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&made).unwrap().permissions().mode() & 0o7777, 0o755);
        symlink("/../../outside", r.join("evil")).unwrap();
        let e = mkdir_all(r, "/evil/y").unwrap();
        assert!(e.starts_with(r), "{e:?}");
    }
}
