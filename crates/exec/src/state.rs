//! polyarch's executor state directory and the names in it:
//!
//! ```text
//! STATE/runtime/       the runtime's --root (one directory per container)
//! STATE/bundles/ID/    config.json and the runtime's log, for root alone (0600)
//! STATE/etc/ID/        resolv.conf and hosts, bound into the container (0644)
//! STATE/mnt/ID/        mount points callers use for root file systems
//! ```
//!
//! Every ID is `pa-PID-START-SEQ`: the owning polyarch process and its
//! start time (so a reused pid is not mistaken for the owner) and a
//! counter. [`State::cleanup_stale`] removes what dead owners left.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{io_at, Error, Result};
use crate::runtime::Runtime;
use crate::sys::Syscalls;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The directories of the executor's state.
#[derive(Debug, Clone)]
pub struct State {
    dir: PathBuf,
}

/// What [`State::cleanup_stale`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Containers deleted from the runtime.
    pub containers: Vec<String>,
    /// Mount points detached.
    pub mounts: Vec<PathBuf>,
    /// Bundle and mount directories removed.
    pub dirs: Vec<PathBuf>,
    /// What could not be removed (left for a later attempt), with why.
    pub failed: Vec<(PathBuf, String)>,
}

impl State {
    /// Opens (creating) the state under `dir`.
    pub fn open(dir: &Path) -> Result<State> {
        let dir =
            if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().map_err(io_at(dir))?.join(dir) };
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        private_dir(&dir)?;
        for sub in ["runtime", "bundles", "etc", "mnt"] {
            private_dir(&dir.join(sub))?;
        }
        Ok(State { dir })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime's `--root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("runtime")
    }

    /// Where the bundle of container `id` lives.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join("bundles").join(id)
    }

    /// Where the files container `id` sees (resolv.conf, hosts) live: apart
    /// from its bundle, since its processes of any user read them.
    pub fn files(&self, id: &str) -> PathBuf {
        self.dir.join("etc").join(id)
    }

    /// Where the mount point `id` lives.
    pub fn mount_point(&self, id: &str) -> PathBuf {
        self.dir.join("mnt").join(id)
    }

    /// A fresh id owned by this process.
    pub fn new_id(&self, sys: &dyn Syscalls) -> String {
        let pid = std::process::id();
        let start = sys.process_start_time(pid).unwrap_or(0);
        format!("pa-{pid}-{start}-{}", SEQ.fetch_add(1, Ordering::SeqCst))
    }

    /// Removes the containers, mounts, bundles and mount directories whose
    /// owner process is gone. Mount directories are removed only once
    /// nothing is mounted below them; one that cannot be is reported in
    /// [`Cleanup::failed`] and the rest is still cleaned. Without a
    /// runtime, containers are left (their directories too) and the rest
    /// is cleaned.
    pub fn cleanup_stale(&self, runtime: Option<&Runtime>, sys: &dyn Syscalls) -> Result<Cleanup> {
        let mut done = Cleanup::default();
        // A runtime the dead owner started may still be creating its
        // container (it was killed right after spawning it): stopped
        // first, so that it neither starts the process after the sweep
        // below nor makes the root's mount points again once it is gone.
        let bundles = self.dir.join("bundles");
        let stale: Vec<PathBuf> = stale_entries(&bundles, sys)?.into_iter().map(|id| bundles.join(id)).collect();
        sys.kill_processes_with_arg(&stale);
        if let Some(runtime) = runtime {
            for id in stale_entries(&self.runtime_root(), sys)? {
                runtime.kill(&id, "KILL");
                if runtime.delete(&id) {
                    done.containers.push(id);
                }
            }
        }
        for base in [self.dir.join("bundles"), self.dir.join("etc"), self.dir.join("mnt")] {
            done.absorb(remove_stale_in(&base, sys)?);
        }
        Ok(done)
    }
}

impl Cleanup {
    /// Adds what `other` did to this.
    pub fn absorb(&mut self, other: Cleanup) {
        self.containers.extend(other.containers);
        self.mounts.extend(other.mounts);
        self.dirs.extend(other.dirs);
        self.failed.extend(other.failed);
    }
}

/// Removes the entries of `dir` named after a dead owner (`pa-PID-START-…`,
/// see [`owner`]): whatever is mounted below each is detached first, and
/// nothing is deleted through a mount. For any directory of per-process
/// work, the executor's or a caller's.
pub fn remove_stale_in(dir: &Path, sys: &dyn Syscalls) -> Result<Cleanup> {
    let mut done = Cleanup::default();
    for id in stale_entries(dir, sys)? {
        let path = dir.join(id);
        if let Err(e) = remove_unmounted(&path, sys, &mut done) {
            done.failed.push((path, e.to_string()));
        }
    }
    Ok(done)
}

/// Detaches whatever is mounted at or below `dir`, then removes it (never
/// deleting through a mount).
pub fn remove_tree(dir: &Path, sys: &dyn Syscalls) -> Result<Cleanup> {
    let mut done = Cleanup::default();
    remove_unmounted(dir, sys, &mut done)?;
    Ok(done)
}

/// Whether something process `pid` made at `created` (nanoseconds since
/// the epoch, as names without a start time record it) was made by a
/// process that is gone: none runs with that pid, or the one that does
/// started after it was made (the pid was reused).
pub fn is_stale_since(pid: u32, created: u128, sys: &dyn Syscalls) -> bool {
    let Some(ticks) = sys.process_start_time(pid) else { return true };
    let Some(boot) = boot_time() else { return false };
    // USER_HZ is 100 for /proc on every Linux; one second of slack covers
    // the boot time's resolution.
    let started = (u128::from(boot) * 100 + u128::from(ticks)) * 10_000_000;
    created + 2_000_000_000 < started
}

/// The host's boot time (`btime` of /proc/stat), seconds since the epoch.
fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// Mode of every directory of the state: bundles hold the process's
/// environment (secrets included), mount points the image's files.
pub const PRIVATE_MODE: u32 = 0o700;

/// Creates `dir` (its parent must exist) readable by its owner only, and
/// makes an existing one so.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(PRIVATE_MODE).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_at(dir)(e)),
    }
    let meta = fs::metadata(dir).map_err(io_at(dir))?;
    if meta.permissions().mode() & 0o7777 != PRIVATE_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_MODE)).map_err(io_at(dir))?;
    }
    Ok(())
}

/// Whether `id` names something of a process that no longer runs. Names
/// that are not polyarch ids are never stale.
pub fn is_stale(id: &str, sys: &dyn Syscalls) -> bool {
    let Some((pid, start)) = owner(id) else { return false };
    sys.process_start_time(pid) != Some(start)
}

/// The owner `(pid, start time)` encoded in an id.
pub fn owner(id: &str) -> Option<(u32, u64)> {
    let pos = id.find("pa-")?;
    let mut parts = id[pos + 3..].split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some((pid, start))
}

/// Names in `dir` of a dead owner.
fn stale_entries(dir: &Path, sys: &dyn Syscalls) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("pa-") && is_stale(&name, sys) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Detaches every mount below `dir`, then removes it if nothing is left
/// mounted (never deleting through a mount).
pub(crate) fn remove_unmounted(dir: &Path, sys: &dyn Syscalls, done: &mut Cleanup) -> Result<()> {
    for m in sys.mounts_under(dir).map_err(io_at(dir))? {
        if sys.unmount(&m).is_ok() {
            done.mounts.push(m);
        }
    }
    if !sys.mounts_under(dir).map_err(io_at(dir))?.is_empty() {
        return Err(Error::Io { path: dir.to_path_buf(), source: std::io::Error::other("still mounted") });
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {
            done.dirs.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recording;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ids_name_their_owner() {
        let sys = Recording::new().with_process(std::process::id(), 77);
        let t = tempfile::tempdir().unwrap();
        let s = State::open(t.path()).unwrap();
        let a = s.new_id(&sys);
        let b = s.new_id(&sys);
        assert_ne!(a, b);
        assert_eq!(owner(&a), Some((std::process::id(), 77)));
        assert!(!is_stale(&a, &sys));
        assert_eq!(owner(&format!("run-{a}")), Some((std::process::id(), 77)));
        assert!(is_stale("pa-1-5-0", &sys), "pid 1 is not running with start time 5 here");
        assert!(!is_stale("somebody-elses", &sys));
        assert_eq!(owner("pa-x-1-2"), None);
    }

    #[test]
    fn a_reused_pid_is_no_live_owner() {
        let me = std::process::id();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        assert!(!is_stale_since(me, now, &crate::sys::Linux), "made by this process just now");
        assert!(is_stale_since(me, now - 3600 * 1_000_000_000 * 24 * 365, &crate::sys::Linux), "before it started");
        assert!(is_stale_since(20, now, &Recording::new()), "no such process");
    }

    #[test]
    fn state_directories_are_private() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let s = State::open(&dir).unwrap();
        for d in
            [s.dir().to_path_buf(), s.runtime_root(), s.dir().join("bundles"), s.dir().join("etc"), s.dir().join("mnt")]
        {
            assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o7777, 0o700, "{}", d.display());
        }
    }

    /// A fake runtime that appends its arguments to a log, so that the
    /// exact commands are checked without runc.
    fn fake_runtime(dir: &Path) -> (Runtime, PathBuf) {
        let log = dir.join("calls");
        let bin = dir.join("fake-runc");
        fs::write(&bin, format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display())).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        (Runtime::locate(bin.to_str().unwrap(), &dir.join("state/runtime")).unwrap(), log)
    }

    #[test]
    fn cleanup_removes_only_what_dead_owners_left() {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(&t.path().join("state")).unwrap();
        let (rt, log) = fake_runtime(t.path());
        let (live, dead) = ("pa-10-100-0", "pa-20-200-3");
        for id in [live, dead] {
            fs::create_dir_all(s.runtime_root().join(id)).unwrap();
            fs::create_dir_all(s.bundle(id)).unwrap();
            fs::create_dir_all(s.mount_point(id).join("proc")).unwrap();
        }
        fs::create_dir_all(s.bundle("not-ours")).unwrap();
        let dead_mnt = s.mount_point(dead);
        let sys = Recording::new()
            .with_process(10, 100)
            .with_process(20, 999) // pid reused by another process
            .with_mount(&dead_mnt)
            .with_mount(dead_mnt.join("proc"))
            .with_mount(s.mount_point(live));
        let done = s.cleanup_stale(Some(&rt), &sys).unwrap();
        assert_eq!(done.containers, [dead]);
        assert_eq!(done.mounts, [dead_mnt.join("proc"), dead_mnt.clone()]);
        assert_eq!(done.dirs, [s.bundle(dead), dead_mnt.clone()]);
        let root = s.runtime_root();
        let calls = fs::read_to_string(log).unwrap();
        assert_eq!(
            calls,
            format!("--root {r} kill {dead} KILL\n--root {r} delete --force {dead}\n", r = root.display())
        );
        assert!(s.bundle(live).exists() && s.mount_point(live).exists() && s.bundle("not-ours").exists());
        assert!(!s.bundle(dead).exists() && !dead_mnt.exists());
        assert!(done.failed.is_empty());
    }

    #[test]
    fn a_stuck_mount_is_reported_and_the_rest_cleaned() {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(t.path()).unwrap();
        let (rt, _) = fake_runtime(t.path());
        let stuck = s.mount_point("pa-20-200-0");
        fs::create_dir_all(stuck.join("x")).unwrap();
        fs::create_dir_all(s.bundle("pa-20-200-1")).unwrap();
        let done = s.cleanup_stale(Some(&rt), &StuckMount(Recording::new(), stuck.clone())).unwrap();
        assert_eq!(done.failed.len(), 1, "{done:?}");
        assert_eq!(done.failed[0].0, stuck);
        assert!(stuck.join("x").exists(), "nothing is deleted through a mount");
        assert!(!s.bundle("pa-20-200-1").exists(), "the bundle went anyway");
    }

    #[test]
    fn a_mount_that_will_not_go_keeps_its_directory() {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(t.path()).unwrap();
        let dir = s.mount_point("pa-20-200-0");
        fs::create_dir_all(dir.join("x")).unwrap();
        fs::write(dir.join("x/file"), b"keep").unwrap();
        // The recording host reports a mount below that unmount cannot find.
        let sys = StuckMount(Recording::new(), dir.clone());
        let err = remove_unmounted(&dir, &sys, &mut Cleanup::default()).unwrap_err();
        assert!(err.to_string().contains("still mounted"), "{err}");
        assert!(dir.join("x/file").exists());
    }

    #[test]
    fn runtimes_still_creating_a_dead_owners_container_are_stopped_first() {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(t.path()).unwrap();
        let sys = Recording::new().with_process(std::process::id(), 77);
        let live = s.new_id(&sys);
        for id in ["pa-1-5-0", live.as_str()] {
            fs::create_dir_all(s.bundle(id)).unwrap();
        }
        s.cleanup_stale(None, &sys).unwrap();
        let kills: Vec<String> = sys.calls().into_iter().filter(|c| c.starts_with("kill-with-arg")).collect();
        assert_eq!(kills, [format!("kill-with-arg {}", s.bundle("pa-1-5-0").display())]);
        assert!(!s.bundle("pa-1-5-0").exists());
        assert!(s.bundle(&live).exists(), "a live owner's bundle stays");
    }

    #[test]
    fn processes_are_killed_by_an_argument() {
        let t = tempfile::tempdir().unwrap();
        let marker = t.path().join("bundle-of-a-dead-owner");
        // A shell builtin that blocks on the pipe held here: no child
        // process (a forked `sleep` would carry the same arguments until it
        // execs, and be killed too).
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("read x")
            .arg("sh")
            .arg(&marker)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut killed = Vec::new();
        for _ in 0..100 {
            killed = crate::sys::Linux.kill_processes_with_arg(std::slice::from_ref(&marker));
            if !killed.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(killed, [pid]);
        let status = child.wait().unwrap();
        assert!(!status.success(), "{status}");
        assert!(crate::sys::Linux.kill_processes_with_arg(std::slice::from_ref(&marker)).is_empty());
    }

    #[derive(Debug)]
    struct StuckMount(Recording, PathBuf);

    impl Syscalls for StuckMount {
        fn hard_limit(&self, r: crate::rlimit::Resource) -> Option<u64> {
            self.0.hard_limit(r)
        }
        fn process_start_time(&self, pid: u32) -> Option<u64> {
            self.0.process_start_time(pid)
        }
        fn mounts_under(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
            Ok(if self.1.starts_with(dir) { vec![self.1.clone()] } else { Vec::new() })
        }
        fn unmount(&self, _path: &Path) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(16))
        }
        fn kill_processes_with_arg(&self, args: &[PathBuf]) -> Vec<u32> {
            self.0.kill_processes_with_arg(args)
        }
    }
}
