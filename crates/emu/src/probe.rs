//! Deciding whether a platform really executes: write that architecture's
//! probe program to a file and execute it directly, so that whatever the
//! kernel does with it (run it natively, hand it to a `binfmt_misc`
//! emulator, or refuse it) is what is tested (as in moby/buildkit
//! util/archutil/detect.go).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use polyarch_oci::Platform;
use serde::Serialize;

use crate::{Arch, Error};

/// `ETXTBSY`: another thread forked while the probe was open for writing.
const ETXTBSY: i32 = 26;

/// Where and how long probes run.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The directory for probe files; it must allow execution.
    pub dir: PathBuf,
    /// How long a probe may take (emulators start in milliseconds).
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { dir: std::env::temp_dir(), timeout: Duration::from_secs(10) }
    }
}

impl ProbeOptions {
    /// Probe files go in `dir`.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// Probes are killed after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    /// The architecture probed.
    pub arch: Arch,
    /// Whether the program ran and exited with status 0.
    pub executes: bool,
    /// What happened, e.g. `exit status 0` or `Exec format error (os error 8)`.
    pub detail: String,
}

/// Probes one architecture. Failing to run the program is a result
/// (`executes: false`), not an error; only failing to write it is.
pub fn probe(arch: Arch, opts: &ProbeOptions) -> Result<ProbeResult, Error> {
    let dir = tempfile::Builder::new()
        .prefix("polyarch-probe-")
        .tempdir_in(&opts.dir)
        .map_err(|e| Error::io(&opts.dir, e))?;
    let path = dir.path().join(format!("probe-{}", arch.name()));
    write_executable(&path, &arch.probe_program())?;
    let (executes, detail) = match spawn(&path) {
        Ok(child) => match wait(child, opts.timeout) {
            Ok(Some(status)) => (status.success(), describe(status)),
            Ok(None) => (false, format!("timed out after {:?}", opts.timeout)),
            Err(e) => (false, format!("waiting: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            (false, format!("{e} (is {} mounted noexec?)", opts.dir.display()))
        }
        Err(e) => (false, e.to_string()),
    };
    Ok(ProbeResult { arch, executes, detail })
}

/// Probes the architecture that runs `platform`.
pub fn probe_platform(platform: &Platform, opts: &ProbeOptions) -> Result<ProbeResult, Error> {
    let arch = Arch::from_platform(platform).ok_or_else(|| Error::UnknownArch {
        name: platform.format(),
        known: Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
    })?;
    probe(arch, opts)
}

/// Probes several architectures at once, one thread each; results are in
/// the order of `archs`.
pub fn probe_all(archs: &[Arch], opts: &ProbeOptions) -> Result<Vec<ProbeResult>, Error> {
    std::thread::scope(|s| {
        let handles: Vec<_> = archs.iter().map(|&a| s.spawn(move || probe(a, opts))).collect();
        handles
            .into_iter()
            .zip(archs)
            .map(|(h, &a)| {
                h.join().unwrap_or_else(|_| {
                    Ok(ProbeResult { arch: a, executes: false, detail: "probe thread panicked".to_string() })
                })
            })
            .collect()
    })
}

pub(crate) fn write_executable(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))
}

/// Starts the probe, retrying while a concurrently forked child of this
/// process still holds the file open for writing (`ETXTBSY`, see
/// rust-lang/rust#114554).
fn spawn(path: &Path) -> std::io::Result<Child> {
    let mut cmd = Command::new(path);
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    spawn_with_retry(&mut cmd)
}

/// `cmd.spawn()`, retried with backoff on `ETXTBSY`.
pub(crate) fn spawn_with_retry(cmd: &mut Command) -> std::io::Result<Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..8 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            r => return r,
        }
    }
    cmd.spawn()
}

/// Waits up to `timeout`; kills and reaps the child after that.
fn wait(mut child: Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_architecture_executes() {
        let host = Arch::host().expect("a known host architecture");
        let r = probe(host, &ProbeOptions::default()).unwrap();
        assert!(r.executes, "{r:?}");
        assert_eq!(r.detail, "exit status 0");
    }

    #[test]
    fn unknown_platforms_and_missing_dirs_are_errors() {
        let r = probe_platform(&Platform::new("linux", "amd64", None), &ProbeOptions::default()).unwrap();
        assert_eq!(r.arch, Arch::Amd64);
        let err = probe_platform(&Platform::new("linux", "sparc64", None), &ProbeOptions::default()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        let missing = ProbeOptions::default().with_dir("/nonexistent/polyarch");
        assert_eq!(probe(Arch::Amd64, &missing).unwrap_err().kind(), crate::ErrorKind::NotFound);
    }

    #[test]
    fn probe_all_keeps_the_order() {
        let archs = [Arch::S390x, Arch::Amd64, Arch::Arm];
        let rs = probe_all(&archs, &ProbeOptions::default()).unwrap();
        assert_eq!(rs.iter().map(|r| r.arch).collect::<Vec<_>>(), archs);
    }

    #[test]
    fn a_noexec_directory_is_reported_as_not_executing() {
        use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
        if !crate::host::is_root() {
            assert!(!in_ci(), "prerequisite missing under CI=true: root");
            eprintln!("skipping: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        mount("tmpfs", dir.path(), "tmpfs", MountFlags::NOEXEC, None).unwrap();
        let host = Arch::host().unwrap();
        let r = probe(host, &ProbeOptions::default().with_dir(dir.path()));
        unmount(dir.path(), UnmountFlags::DETACH).unwrap();
        let r = r.unwrap();
        assert!(!r.executes, "{r:?}");
        assert!(r.detail.contains("mounted noexec?"), "{r:?}");
    }

    fn in_ci() -> bool {
        std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
    }

    /// Runs every probe under its QEMU emulator directly (no binfmt_misc
    /// involved), so a wrong instruction or header shows here.
    #[test]
    fn every_probe_runs_under_its_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let mut ran = Vec::new();
        for a in Arch::ALL {
            let qemu = PathBuf::from(format!("/usr/bin/qemu-{}-static", a.qemu_name()));
            if !qemu.exists() {
                assert!(
                    !in_ci(),
                    "prerequisite missing under CI=true: {} (apt-get install qemu-user-static)",
                    qemu.display()
                );
                eprintln!("skipping {a}: {} missing", qemu.display());
                continue;
            }
            let p = dir.path().join(a.name());
            write_executable(&p, &a.probe_program()).unwrap();
            let out = Command::new(&qemu).arg(&p).output().unwrap();
            assert!(out.status.success(), "{a}: {} {:?}", describe(out.status), String::from_utf8_lossy(&out.stderr));
            ran.push(a);
        }
        eprintln!("probes run under qemu: {ran:?}");
    }
}
