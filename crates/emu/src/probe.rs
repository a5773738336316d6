//! Deciding whether a platform really executes: write that architecture's
//! probe program to a file and execute it directly, so that whatever the
//! kernel does with it (run it natively, hand it to a `binfmt_misc`
//! emulator, or refuse it) is what is tested (as in moby/buildkit
//! util/archutil/detect.go). A program that merely starts is not enough:
//! the probe checks that `argv[0]` arrives intact and that re-executing
//! through `/proc/self/exe` works, as busybox's shell needs for every
//! applet it runs (see [`crate::code`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use polyarch_oci::Platform;
use serde::Serialize;

use crate::{code, Arch, Error};

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

/// Why a probe did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The kernel would not start it: no handler (`ENOEXEC`), or a
    /// handler whose emulator is gone.
    NotStarted,
    /// It ran, but `argv[0]` arrived as the program's path: a handler
    /// without the `P` flag (or an emulator that ignores it).
    Argv0Lost,
    /// It ran, but re-executing itself through `/proc/self/exe` failed.
    ReexecFailed,
    /// It ended otherwise: another exit status, a signal, a time-out.
    Other,
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    /// The architecture probed.
    pub arch: Arch,
    /// Whether the program ran with its `argv[0]`, re-executed itself
    /// through `/proc/self/exe` and passed.
    pub executes: bool,
    /// What happened, e.g. `argv[0] and re-exec intact` or
    /// `Exec format error (os error 8)`.
    pub detail: String,
    /// Why it did not pass; `None` when it did.
    pub failure: Option<Failure>,
}

/// What a passing probe reports.
pub const PASSED: &str = "argv[0] and re-exec through /proc/self/exe intact";

/// The command that runs a probe file: `argv` is `["A", "B"]`, with no
/// environment.
pub(crate) fn command(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.arg0(code::ARG0).arg(code::ARG1);
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// Reads a probe's exit status.
pub(crate) fn judge(status: ExitStatus) -> (Option<Failure>, String) {
    match status.code() {
        Some(code::PASS) => (None, PASSED.to_string()),
        Some(code::ARGV0_LOST) => (
            Some(Failure::Argv0Lost),
            "runs, but argv[0] arrives as the program's path (a handler without the P flag): \
             shells that re-execute applets, such as busybox sh, fail"
                .to_string(),
        ),
        Some(code::REEXEC_FAILED) => {
            (Some(Failure::ReexecFailed), "runs, but re-executing itself through /proc/self/exe fails".to_string())
        }
        _ => (Some(Failure::Other), describe(status)),
    }
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
    let (failure, detail) = match spawn_with_retry(&mut command(&path)) {
        Ok(child) => match wait(child, opts.timeout) {
            Ok(Some(status)) => judge(status),
            Ok(None) => (Some(Failure::Other), format!("timed out after {:?}", opts.timeout)),
            Err(e) => (Some(Failure::Other), format!("waiting: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            (Some(Failure::NotStarted), format!("{e} (is {} mounted noexec?)", opts.dir.display()))
        }
        Err(e) => (Some(Failure::NotStarted), e.to_string()),
    };
    Ok(ProbeResult { arch, executes: failure.is_none(), detail, failure })
}

/// Probes the architecture that runs `platform`.
pub fn probe_platform(platform: &Platform, opts: &ProbeOptions) -> Result<ProbeResult, Error> {
    let arch = Arch::from_platform(platform).ok_or_else(|| Arch::unknown(&platform.format()))?;
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
                    let detail = "probe thread panicked".to_string();
                    Ok(ProbeResult { arch: a, executes: false, detail, failure: Some(Failure::Other) })
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

/// `cmd.spawn()`, retried with backoff on `ETXTBSY`: a concurrently
/// forked child of this process may still hold the file open for writing
/// (rust-lang/rust#114554).
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
        assert_eq!(r.detail, PASSED);
        assert_eq!(r.failure, None);
    }

    #[test]
    fn unknown_platforms_and_missing_dirs_are_errors() {
        let r = probe_platform(&Platform::new("linux", "amd64", None), &ProbeOptions::default()).unwrap();
        assert_eq!(r.arch, Arch::Amd64);
        let err = probe_platform(&Platform::new("linux", "wasm", None), &ProbeOptions::default()).unwrap_err();
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

    /// Runs every probe under its QEMU emulator directly, as `["A", "B"]`
    /// (QEMU's `-0` sets `argv[0]`), so a wrong instruction or header
    /// shows here; the re-exec goes through the host's handler when there
    /// is one (the unit tests of binfmt handlers are the CLI's emu tests).
    /// Run as `["/path", "B"]` instead, every probe reports `argv[0]` lost.
    #[test]
    fn every_probe_runs_under_its_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let mut ran = Vec::new();
        for a in Arch::ALL {
            let qemu = PathBuf::from(format!("/usr/bin/qemu-{}-static", a.qemu_name()));
            if Some(a) == Arch::host() {
                continue;
            }
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
            // The first run alone: argv[0] checked, then a re-exec of
            // QEMU's /proc/self/exe, which QEMU turns into the probe's path.
            let host_handler = crate::BinfmtMisc::default()
                .handlers()
                .unwrap_or_default()
                .iter()
                .any(|h| h.enabled && h.matches(&a.probe_program()));
            let out = Command::new(&qemu).args(["-0", code::ARG0]).arg(&p).arg(code::ARG1).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if host_handler {
                let (failure, detail) = judge(out.status);
                assert!(failure.is_none() || failure == Some(Failure::Argv0Lost), "{a}: {detail} {stderr}");
            }
            // The second run alone (argv ["B"]) passes under QEMU.
            let second = Command::new(&qemu).args(["-0", code::ARG1]).arg(&p).output().unwrap();
            assert_eq!(second.status.code(), Some(code::PASS), "{a}: {}", describe(second.status));
            // With argv[0] lost (QEMU given the path), the probe says so.
            let lost = Command::new(&qemu).arg(&p).arg(code::ARG1).output().unwrap();
            assert_eq!(lost.status.code(), Some(code::ARGV0_LOST), "{a}: {}", describe(lost.status));
            ran.push(a);
        }
        eprintln!("probes run under qemu: {ran:?}");
    }
}
