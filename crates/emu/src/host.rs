//! Host checks a multi-platform build depends on besides emulators: the
//! kernel, overlay mounts, namespaces, disk space, CPU level.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use crate::{Arch, Error};

/// The running kernel's release (`6.1.0-18-amd64`).
pub fn kernel_release() -> Result<String, Error> {
    let p = Path::new("/proc/sys/kernel/osrelease");
    std::fs::read_to_string(p).map(|s| s.trim().to_string()).map_err(|e| Error::io(p, e))
}

/// `(major, minor)` of a release string, if it starts with them.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Mounts a small overlay in a fresh directory under `dir` and checks that
/// it merges, copies up on write, and unmounts. Needs `CAP_SYS_ADMIN`.
pub fn check_overlay(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = tempfile::Builder::new().prefix("overlay-check-").tempdir_in(dir).map_err(|e| Error::io(dir, e))?;
    let p = |n: &str| tmp.path().join(n);
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(p(d)).map_err(|e| Error::io(p(d), e))?;
    }
    std::fs::write(p("lower/file"), "lower").map_err(|e| Error::io(p("lower/file"), e))?;
    let bad = |reason: String| Error::Overlay { path: tmp.path().to_path_buf(), reason };
    let data =
        format!("lowerdir={},upperdir={},workdir={}", p("lower").display(), p("upper").display(), p("work").display());
    let data = std::ffi::CString::new(data).map_err(|e| bad(e.to_string()))?;
    mount("overlay", p("merged"), "overlay", MountFlags::empty(), Some(data.as_c_str()))
        .map_err(|e| bad(format!("mount: {e}")))?;
    let checked = (|| {
        let seen = std::fs::read_to_string(p("merged/file")).map_err(|e| format!("reading through it: {e}"))?;
        if seen != "lower" {
            return Err(format!("read {seen:?} through it, wrote \"lower\""));
        }
        std::fs::write(p("merged/file"), "upper").map_err(|e| format!("writing through it: {e}"))?;
        match std::fs::read_to_string(p("upper/file")) {
            Ok(s) if s == "upper" => Ok(()),
            other => Err(format!("no copy-up to the upper directory ({other:?})")),
        }
    })();
    let unmounted = unmount(p("merged"), UnmountFlags::empty()).map_err(|e| format!("unmount: {e}"));
    checked.and(unmounted).map_err(bad)
}

/// Starts the host's probe program in new namespaces (`CLONE_NEWNS`,
/// plus `CLONE_NEWUSER` with `user`) and checks that it runs.
pub fn check_unshare(user: bool, probe_dir: &Path) -> Result<(), Error> {
    let mut flags = UnshareFlags::NEWNS;
    let mut names = "CLONE_NEWNS".to_string();
    if user {
        flags |= UnshareFlags::NEWUSER;
        names.push_str("|CLONE_NEWUSER");
    }
    let host = Arch::host().ok_or_else(|| Arch::unknown(std::env::consts::ARCH))?;
    let tmp = tempfile::Builder::new()
        .prefix("polyarch-unshare-")
        .tempdir_in(probe_dir)
        .map_err(|e| Error::io(probe_dir, e))?;
    let exe = tmp.path().join("true");
    crate::probe::write_executable(&exe, &host.probe_program())?;
    let mut cmd = crate::probe::command(&exe);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the unshare system call, which is async-signal-safe; no file
    // descriptor table is unshared.
    unsafe {
        cmd.pre_exec(move || rustix::thread::unshare_unsafe(flags).map_err(std::io::Error::from));
    }
    let status = crate::probe::spawn_with_retry(&mut cmd)
        .and_then(|mut c| c.wait())
        .map_err(|source| Error::Unshare { flags: names.clone(), source })?;
    match crate::probe::judge(status) {
        (None, _) => Ok(()),
        (Some(_), detail) => Err(Error::Unshare { flags: names, source: std::io::Error::other(detail) }),
    }
}

/// Whether this process runs with effective user ID 0 (in its user
/// namespace).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Free and total bytes of the file system holding `path` (or its nearest
/// existing ancestor, for a store not created yet).
pub fn disk_space(path: &Path) -> Result<(PathBuf, u64, u64), Error> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            break;
        }
    }
    let st = rustix::fs::statvfs(&p).map_err(|e| Error::io(&p, e.into()))?;
    Ok((p, st.f_bavail.saturating_mul(st.f_frsize), st.f_blocks.saturating_mul(st.f_frsize)))
}

/// The x86-64 microarchitecture level (1 to 4) of a `/proc/cpuinfo`
/// flags list, as the psABI defines the levels.
pub fn amd64_level(cpu_flags: &str) -> u8 {
    let have: std::collections::HashSet<&str> = cpu_flags.split_whitespace().collect();
    let all = |fs: &[&str]| fs.iter().all(|f| have.contains(f));
    let v2 = ["cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"];
    let v3 = ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"];
    let v4 = ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];
    match (all(&v2), all(&v3), all(&v4)) {
        (true, true, true) => 4,
        (true, true, false) => 3,
        (true, false, _) => 2,
        _ => 1,
    }
}

/// The host CPU's x86-64 level from `/proc/cpuinfo`; 1 when unreadable.
pub fn host_amd64_level() -> u8 {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags")).and_then(|l| l.split_once(':')).map(|x| x.1);
    flags.map(amd64_level).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("5.15.153.1-microsoft-standard-WSL2"), Some((5, 15)));
        assert_eq!(parse_kernel_version("garbage"), None);
        let r = kernel_release().unwrap();
        assert!(parse_kernel_version(&r).is_some(), "{r}");
    }

    #[test]
    fn amd64_levels() {
        assert_eq!(amd64_level("fpu sse sse2"), 1);
        assert_eq!(amd64_level("cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3"), 2);
        let v3 = "cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave";
        assert_eq!(amd64_level(v3), 3);
        assert_eq!(amd64_level(&format!("{v3} avx512f avx512bw avx512cd avx512dq avx512vl")), 4);
    }

    #[test]
    fn disk_space_of_a_missing_path_uses_its_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let (at, free, total) = disk_space(&dir.path().join("a/b/c")).unwrap();
        assert_eq!(at, dir.path());
        assert!(total > 0 && free <= total);
    }

    #[test]
    fn overlay_and_mount_namespace_work_as_root() {
        if !is_root() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "prerequisite missing under CI=true: root");
            eprintln!("skipping: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        check_overlay(dir.path()).unwrap();
        // Nothing is left mounted or behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        check_unshare(false, &std::env::temp_dir()).unwrap();
    }
}
