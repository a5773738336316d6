//! The few host syscalls the executor depends on, behind a trait so that
//! rlimit clamping and stale-state cleanup can be tested without root (as
//! youki's `syscall::Syscall` with its `TestHelperSyscall`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::mount::UnmountFlags;

use crate::rlimit::Resource;

/// Host operations the executor performs outside the runtime.
pub trait Syscalls: Send + Sync + Debug {
    /// The caller's hard limit for `r` (`None` = unlimited).
    fn hard_limit(&self, r: Resource) -> Option<u64>;
    /// The start time (clock ticks since boot) of process `pid`, or `None`
    /// when no such process exists.
    fn process_start_time(&self, pid: u32) -> Option<u64>;
    /// Mount points at or below `dir`, deepest first.
    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Detaches the mount at `path` (`umount -l`).
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Kills (SIGKILL) every process one of whose arguments is one of
    /// `args` and waits a little for them to be gone; returns their pids.
    fn kill_processes_with_arg(&self, args: &[PathBuf]) -> Vec<u32>;
}

/// The real host.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

impl Syscalls for Linux {
    fn hard_limit(&self, r: Resource) -> Option<u64> {
        rustix::process::getrlimit(r.rustix()).maximum
    }

    fn process_start_time(&self, pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_start_time(&stat)
    }

    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(mount_points_under(&info, dir))
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        rustix::mount::unmount(path, UnmountFlags::DETACH).map_err(io::Error::from)
    }

    fn kill_processes_with_arg(&self, args: &[PathBuf]) -> Vec<u32> {
        use std::os::unix::ffi::OsStrExt;
        let mut killed = Vec::new();
        if args.is_empty() {
            return killed;
        }
        let wanted = |a: &[u8]| args.iter().any(|w| w.as_os_str().as_bytes() == a);
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
            if !cmdline.split(|b| *b == 0).any(wanted) {
                continue;
            }
            let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { continue };
            if rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok() {
                killed.push(pid);
            }
        }
        // Gone, or a zombie its new parent has yet to reap: either way it
        // does nothing more.
        let gone = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |st| st.rfind(')').is_some_and(|i| st[i + 1..].trim_start().starts_with('Z')))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !killed.iter().all(|p| gone(*p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        killed
    }
}

/// Field 22 of `/proc/PID/stat`; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Mount points (field 5 of mountinfo, octal escapes decoded) at or below
/// `dir`, deepest first so that they can be unmounted in order.
pub(crate) fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fake host that answers from tables and records every call, for tests
/// here and in crates that drive the executor.
#[derive(Debug, Default)]
pub struct Recording {
    limits: HashMap<Resource, u64>,
    processes: HashMap<u32, u64>,
    mounts: Mutex<Vec<PathBuf>>,
    calls: Mutex<Vec<String>>,
}

impl Recording {
    /// A host with no processes, no mounts and unlimited limits.
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Sets the hard limit of `r`.
    pub fn with_hard_limit(mut self, r: Resource, hard: u64) -> Self {
        self.limits.insert(r, hard);
        self
    }

    /// Declares a live process.
    pub fn with_process(mut self, pid: u32, start_time: u64) -> Self {
        self.processes.insert(pid, start_time);
        self
    }

    /// Declares a mount point.
    pub fn with_mount(self, path: impl Into<PathBuf>) -> Self {
        if let Ok(mut m) = self.mounts.lock() {
            m.push(path.into());
        }
        self
    }

    /// The calls made so far, as `name arg` strings.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }
}

impl Syscalls for Recording {
    fn hard_limit(&self, r: Resource) -> Option<u64> {
        self.record(format!("getrlimit {}", r.name()));
        self.limits.get(&r).copied()
    }

    fn process_start_time(&self, pid: u32) -> Option<u64> {
        self.record(format!("stat {pid}"));
        self.processes.get(&pid).copied()
    }

    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.record(format!("mounts {}", dir.display()));
        let m = self.mounts.lock().map_err(|_| io::Error::other("poisoned"))?;
        let mut out: Vec<PathBuf> = m.iter().filter(|p| p.starts_with(dir)).cloned().collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Ok(out)
    }

    fn kill_processes_with_arg(&self, args: &[PathBuf]) -> Vec<u32> {
        for arg in args {
            self.record(format!("kill-with-arg {}", arg.display()));
        }
        Vec::new()
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        self.record(format!("unmount {}", path.display()));
        let mut m = self.mounts.lock().map_err(|_| io::Error::other("poisoned"))?;
        let before = m.len();
        m.retain(|p| p != path);
        if m.len() == before {
            return Err(io::Error::from_raw_os_error(22));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        let me = std::process::id();
        assert!(Linux.process_start_time(me).is_some());
    }

    #[test]
    fn mountinfo_points_below_a_dir_deepest_first() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/sda rw
30 22 0:40 / /var/lib/x/mnt/a rw - overlay overlay rw
31 30 0:41 / /var/lib/x/mnt/a/proc rw - proc proc rw
32 22 0:42 / /var/lib/x/mnt\\040b rw - tmpfs tmpfs rw
33 22 0:43 / /var/lib/xy rw - tmpfs tmpfs rw
";
        let got = mount_points_under(info, Path::new("/var/lib/x"));
        assert_eq!(
            got,
            [
                PathBuf::from("/var/lib/x/mnt/a/proc"),
                PathBuf::from("/var/lib/x/mnt/a"),
                PathBuf::from("/var/lib/x/mnt b"),
            ]
        );
    }

    #[test]
    fn recording_unmount_forgets_the_mount() {
        let sys = Recording::new().with_mount("/s/mnt/a");
        assert_eq!(sys.mounts_under(Path::new("/s")).unwrap().len(), 1);
        sys.unmount(Path::new("/s/mnt/a")).unwrap();
        assert!(sys.unmount(Path::new("/s/mnt/a")).is_err());
        assert_eq!(sys.calls(), ["mounts /s", "unmount /s/mnt/a", "unmount /s/mnt/a"]);
    }
}
