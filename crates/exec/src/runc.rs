//! [`RuncExecutor`]: each run writes an OCI bundle (config.json from
//! [`crate::spec`], copies of the host's resolv.conf and hosts) under the
//! state directory and runs `RUNTIME --root STATE/runtime run --bundle B
//! ID` in the foreground, as BuildKit's `runcexecutor` does through
//! go-runc. The runtime's own errors go to a JSON log in the bundle, so
//! they are told apart from the process's exit code. A run with a
//! terminal runs detached with a console socket instead ([`crate::console`]).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{io_at, Error, Result};
use crate::process::{
    Cancel, ExitStatus, HostsFile, MountSpec, NetworkMode, Output, ProcessIo, ProcessSpec, SecurityMode, Sink,
};
use crate::runtime::Runtime;
use crate::state::{self, Cleanup, State};
use crate::stubs::Stubs;
use crate::sys::{Linux, Syscalls};
use crate::{arch, rlimit, rootfs, spec, user, Executor};

/// How often a running container is checked for exit, cancellation and
/// timeout.
const POLL: Duration = Duration::from_millis(10);

/// Configures a [`RuncExecutor`].
#[derive(Debug)]
pub struct RuncExecutorBuilder {
    state_dir: PathBuf,
    runtime: Option<String>,
    sys: Arc<dyn Syscalls>,
    grace: Duration,
}

impl RuncExecutorBuilder {
    /// An executor keeping its state under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> RuncExecutorBuilder {
        RuncExecutorBuilder {
            state_dir: state_dir.into(),
            runtime: None,
            sys: Arc::new(Linux),
            grace: Duration::from_secs(5),
        }
    }

    /// The runtime by name (looked up in `PATH`) or path. Default: runc,
    /// else crun. Any runtime other than runc must pass a probe run first
    /// (crun 1.8 refuses hybrid cgroup v1/v2 hosts).
    pub fn with_runtime(mut self, runtime: Option<&str>) -> Self {
        self.runtime = runtime.map(str::to_string);
        self
    }

    /// Host syscalls (a [`crate::sys::Recording`] in tests).
    pub fn with_syscalls(mut self, sys: Arc<dyn Syscalls>) -> Self {
        self.sys = sys;
        self
    }

    /// How long a cancelled container gets between SIGTERM and SIGKILL.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Opens the state directory, finds the runtime and probes it.
    pub fn build(self) -> Result<RuncExecutor> {
        let state = State::open(&self.state_dir)?;
        let root = state.runtime_root();
        let runtime = match self.runtime.as_deref() {
            Some(name) => Runtime::locate(name, &root)?,
            None => Runtime::locate("runc", &root).or_else(|e| Runtime::locate("crun", &root).map_err(|_| e))?,
        };
        let exec = RuncExecutor { runtime, state, sys: self.sys, grace: self.grace };
        if !exec.runtime.is_runc() {
            exec.probe()?;
        }
        Ok(exec)
    }
}

/// Runs processes in containers with runc (or a compatible runtime).
#[derive(Debug)]
pub struct RuncExecutor {
    pub(crate) runtime: Runtime,
    state: State,
    sys: Arc<dyn Syscalls>,
    grace: Duration,
}

impl RuncExecutor {
    /// The runtime in use.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The state directory.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Removes containers, bundles and mounts left by polyarch processes
    /// that died without cleaning up.
    pub fn cleanup_stale(&self) -> Result<Cleanup> {
        self.state.cleanup_stale(Some(&self.runtime), self.sys.as_ref())
    }

    /// Whether a name made from an id of [`RuncExecutor::mount_point`]
    /// belongs to a process that is gone (for callers' own leftovers,
    /// such as active snapshots keyed by that id).
    pub fn is_stale(&self, name: &str) -> bool {
        state::is_stale(name, self.sys.as_ref())
    }

    /// A fresh empty directory under the state directory to mount a root
    /// file system on. Dropping it detaches whatever is still mounted
    /// below and removes it; [`RuncExecutor::cleanup_stale`] does the same
    /// for a dead owner.
    pub fn mount_point(&self) -> Result<MountPoint> {
        let id = self.state.new_id(self.sys.as_ref());
        let path = self.state.mount_point(&id);
        state::private_dir(&path)?;
        Ok(MountPoint { id, path, sys: self.sys.clone() })
    }

    /// Runs `/bin/true` from the host's `/usr` in a throwaway container:
    /// a runtime that cannot (crun 1.8 on hybrid cgroups) fails here
    /// rather than on the first real run.
    pub fn probe(&self) -> Result<()> {
        let mnt = self.mount_point()?;
        let mounts = host_usr_mounts(mnt.path())?;
        let failed = |reason: String| Error::RuntimeProbe { runtime: self.runtime.path().to_path_buf(), reason };
        match self.run(mnt.path(), &mounts, &ProcessSpec::new(["/bin/true"]), ProcessIo::null()) {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(failed(s.to_string())),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    fn prepare(
        &self,
        id: &str,
        bundle: &Path,
        rootfs: &Path,
        mounts: &[MountSpec],
        p: &ProcessSpec,
        io: &ProcessIo<'_>,
    ) -> Result<()> {
        if p.args.is_empty() {
            return Err(Error::InvalidProcess { reason: "no command given".into() });
        }
        let rootfs = fs::canonicalize(rootfs).map_err(io_at(rootfs))?;
        let user = user::resolve(&rootfs, &p.user)?;
        if !p.readonly_rootfs {
            rootfs::mkdir_all(&rootfs, &p.cwd)?;
        }
        state::private_dir(bundle)?;
        // The runtime appends to its log; made here, it is 0600 too.
        write_private(&bundle.join("log.json"), b"")?;
        let files = self.state.files(id);
        state::private_dir(&files)?;
        let resolv_conf = files.join("resolv.conf");
        let hosts = files.join("hosts");
        write(&resolv_conf, &host_file("/etc/resolv.conf"))?;
        write(&hosts, &hosts_file_of(p))?;
        let rlimits = rlimit::effective(&p.rlimits, self.sys.as_ref());
        let input = spec::Input {
            rootfs: &rootfs,
            process: p,
            user: &user,
            rlimits: &rlimits,
            mounts,
            resolv_conf,
            hosts,
            cgroups_path: cgroups_path(p.cgroup_parent.as_deref(), id)?,
            capabilities: match p.security {
                SecurityMode::Sandbox => None,
                SecurityMode::Insecure => Some(spec::effective_capabilities(&host_file("/proc/self/status"))),
            },
            insecure_devices: !in_user_namespace(),
            terminal: io.terminal.is_some(),
            console_size: io.terminal.as_ref().and_then(|t| t.size),
        };
        let config = bundle.join("config.json");
        let json = serde_json::to_vec(&spec::build(&input)?)
            .map_err(|e| Error::Io { path: config.clone(), source: std::io::Error::other(e.to_string()) })?;
        write_private(&config, &json)
    }

    /// Waits for the runtime to exit, stopping the container when the run
    /// is cancelled or times out.
    pub(crate) fn wait(
        &self,
        child: &mut Child,
        id: &str,
        cancel: Option<&Cancel>,
        timeout: Option<Duration>,
    ) -> Result<Waited> {
        use std::os::unix::process::ExitStatusExt;
        let child = std::cell::RefCell::new(child);
        let mut exited = || -> Result<Option<ExitStatus>> {
            let st = child
                .borrow_mut()
                .try_wait()
                .map_err(|e| Error::Spawn { program: self.runtime.path().into(), source: e })?;
            Ok(st.map(|st| ExitStatus(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))))
        };
        let kill = || {
            let _ = child.borrow_mut().kill();
        };
        self.wait_for(&mut exited, &kill, id, cancel, timeout, &mut || {})
    }

    /// Polls `exited` until it returns a status, stopping the container
    /// when the run is cancelled or times out (`kill` when the runtime
    /// cannot), and calling `tick` on every poll.
    pub(crate) fn wait_for(
        &self,
        exited: &mut dyn FnMut() -> Result<Option<ExitStatus>>,
        kill: &dyn Fn(),
        id: &str,
        cancel: Option<&Cancel>,
        timeout: Option<Duration>,
        tick: &mut dyn FnMut(),
    ) -> Result<Waited> {
        let started = Instant::now();
        let mut stopping: Option<(Stop, Instant)> = None;
        let mut killed = false;
        loop {
            if let Some(status) = exited()? {
                return Ok(Waited { status, stop: stopping.map(|(s, _)| s) });
            }
            tick();
            match stopping {
                None => {
                    let reason = if cancel.is_some_and(Cancel::is_cancelled) {
                        Some(Stop::Cancelled)
                    } else if timeout.is_some_and(|t| started.elapsed() >= t) {
                        Some(Stop::TimedOut)
                    } else {
                        None
                    };
                    if let Some(r) = reason {
                        self.runtime.kill(id, "TERM");
                        stopping = Some((r, Instant::now()));
                    }
                }
                Some((_, at)) if !killed && at.elapsed() >= self.grace => {
                    if !self.runtime.kill(id, "KILL") {
                        // Not created yet or already gone: stop the runtime itself.
                        kill();
                    }
                    killed = true;
                }
                Some((_, at)) if at.elapsed() >= self.grace * 2 + Duration::from_secs(1) => {
                    kill();
                }
                Some(_) => {}
            }
            thread::sleep(POLL);
        }
    }
}

impl Executor for RuncExecutor {
    fn run(&self, rootfs: &Path, mounts: &[MountSpec], process: &ProcessSpec, io: ProcessIo<'_>) -> Result<ExitStatus> {
        let id = self.state.new_id(self.sys.as_ref());
        let bundle = self.state.bundle(&id);
        let files = self.state.files(&id);
        let _guard =
            ContainerGuard { runtime: &self.runtime, id: &id, dirs: [&bundle, &files], sys: self.sys.as_ref() };
        let stub_targets = [Path::new("/etc/resolv.conf"), Path::new("/etc/hosts")];
        let canonical = fs::canonicalize(rootfs).map_err(io_at(rootfs))?;
        let _stubs =
            Stubs::record(&canonical, stub_targets.into_iter().chain(mounts.iter().map(|m| m.destination.as_path())));
        self.prepare(&id, &bundle, rootfs, mounts, process, &io)?;
        if io.terminal.is_some() {
            return self.run_with_terminal(&id, &bundle, rootfs, process, io);
        }
        let log = bundle.join("log.json");
        let mut cmd =
            self.runtime.command(["--log".as_ref(), log.as_os_str(), "--log-format".as_ref(), "json".as_ref()]);
        cmd.arg("run").arg("--bundle").arg(&bundle).arg(&id);
        cmd.stdin(if io.stdin_inherit { Stdio::inherit() } else { Stdio::null() });
        cmd.stdout(stdio(&io.stdout)).stderr(stdio(&io.stderr));
        let mut child = cmd.spawn().map_err(|e| Error::Spawn { program: self.runtime.path().into(), source: e })?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let ProcessIo { stdout, stderr, cancel, timeout, .. } = io;
        let waited = thread::scope(|s| {
            let pumps = [
                out.zip(sink(stdout)).map(|(r, f)| s.spawn(move || pump(Pipe::Out(r), f))),
                err.zip(sink(stderr)).map(|(r, f)| s.spawn(move || pump(Pipe::Err(r), f))),
            ];
            let waited = self.wait(&mut child, &id, cancel.as_ref(), timeout);
            for p in pumps.into_iter().flatten() {
                let _ = p.join();
            }
            waited
        })?;
        match waited.stop {
            Some(Stop::Cancelled) => return Err(Error::Cancelled { id: id.clone() }),
            Some(Stop::TimedOut) => return Err(Error::TimedOut { id: id.clone(), after: timeout.unwrap_or_default() }),
            None => {}
        }
        outcome(&id, rootfs, process, &log, waited.status)
    }
}

/// How a run that was not stopped ended: its status, or the runtime's
/// error when it failed to start the process.
pub(crate) fn outcome(
    id: &str,
    rootfs: &Path,
    process: &ProcessSpec,
    log: &Path,
    status: ExitStatus,
) -> Result<ExitStatus> {
    if status.success() {
        return Ok(status);
    }
    match runtime_error(log) {
        Some(message) if process.cgroup_parent.is_some() && message.contains("cgroup") => {
            let parent = process.cgroup_parent.clone().unwrap_or_default();
            let reason = format!(
                "the runtime could not make the container's cgroup below it ({message}); the cgroup file system \
                 must be writable here (with cgroups v2, delegated to this process)"
            );
            Err(Error::CgroupParent { parent, reason })
        }
        Some(message) => Err(classify(id.to_string(), &process.args[0], message)),
        None if never_ran(rootfs, process) => {
            Err(Error::ExecFormat { id: id.to_string(), program: process.args[0].clone() })
        }
        None => Ok(status),
    }
}

pub(crate) struct Waited {
    pub(crate) status: ExitStatus,
    pub(crate) stop: Option<Stop>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    Cancelled,
    TimedOut,
}

pub(crate) fn stdio(o: &Output<'_>) -> Stdio {
    match o {
        Output::Inherit => Stdio::inherit(),
        Output::Null => Stdio::null(),
        Output::Callback(_) => Stdio::piped(),
    }
}

fn sink(o: Output<'_>) -> Option<Sink<'_>> {
    match o {
        Output::Callback(f) => Some(f),
        _ => None,
    }
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

fn pump(mut pipe: Pipe, mut f: Sink<'_>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match &mut pipe {
            Pipe::Out(r) => r.read(&mut buf),
            Pipe::Err(r) => r.read(&mut buf),
        };
        match n {
            Ok(0) => return,
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The last error the runtime logged (`{"level":"error","msg":...}` lines).
pub(crate) fn runtime_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
}

fn classify(id: String, program: &str, message: String) -> Error {
    if message.contains("exec format error") {
        Error::ExecFormat { id, program: program.to_string() }
    } else if message.contains("executable file not found")
        || (message.contains("no such file or directory") && message.contains("exec"))
    {
        Error::ProgramNotFound { id, message }
    } else if message.contains("exec") && (message.contains("permission denied") || message.contains("is a directory"))
    {
        Error::NotExecutable { id, message }
    } else {
        Error::Start { id, message }
    }
}

/// Whether the program is an ELF file this host cannot execute (runc 1.1
/// reports that `execve` failure only on the container's stderr).
fn never_ran(rootfs: &Path, p: &ProcessSpec) -> bool {
    let env = spec::environment(&p.env, "/");
    let Some(header) = arch::find_program(rootfs, &p.args[0], &env).and_then(|f| arch::header(&f)) else {
        return false;
    };
    arch::unexecutable(&header, &arch::native_machines(), &arch::handlers())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(io_at(path))
}

/// Writes a new file only its owner can read (0600 from its creation on,
/// never wider): the bundle's config holds the process's environment,
/// secrets included.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))
}

/// Whether this process runs in a user namespace (its uid map is not the
/// whole identity range), where device nodes cannot be made.
fn in_user_namespace() -> bool {
    let map = String::from_utf8_lossy(&host_file("/proc/self/uid_map")).into_owned();
    map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
}

/// A host file's bytes, empty when it is missing.
fn host_file(path: &str) -> Vec<u8> {
    fs::read(path).unwrap_or_default()
}

/// The container's cgroup: `/polyarch/ID`, or `PARENT/polyarch/ID` below
/// a `--cgroup-parent` (as BuildKit puts its own under `PARENT/buildkit`).
/// A systemd slice (`name.slice:prefix:`) needs runc's systemd cgroup
/// driver, which polyarch does not use.
fn cgroups_path(parent: Option<&str>, id: &str) -> Result<PathBuf> {
    match parent.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(PathBuf::from("/polyarch").join(id)),
        Some(p) if p.contains(".slice") && p.ends_with(':') => Err(Error::CgroupParent {
            parent: p.to_string(),
            reason: "systemd slices need the systemd cgroup driver, which polyarch does not use; give a cgroupfs path"
                .into(),
        }),
        Some(p) if p.split('/').any(|c| c == "..") => {
            Err(Error::CgroupParent { parent: p.to_string(), reason: "it must not contain \"..\"".into() })
        }
        Some(p) => Ok(PathBuf::from("/").join(p.trim_start_matches('/')).join("polyarch").join(id)),
    }
}

/// `/etc/hosts` for the container. As `docker run` makes it
/// ([`HostsFile::Network`]): the host's with host networking (names resolve
/// as on the host), a loopback-only file otherwise, both naming the
/// container's host name; as BuildKit makes it for RUN
/// ([`HostsFile::Sandbox`], its `initHostsFile`): `127.0.0.1 localhost
/// HOSTNAME` and the `::1` line whatever the network. Then the extra
/// entries (`--add-host`) as BuildKit appends them, `ADDRESS\tNAME`.
fn hosts_file_of(p: &ProcessSpec) -> Vec<u8> {
    let loopback_v6 = "::1\tlocalhost ip6-localhost ip6-loopback\n";
    let mut text = match (p.hosts_file, p.network) {
        (HostsFile::Sandbox, _) => {
            let name = if p.hostname.is_empty() { String::new() } else { format!(" {}", p.hostname) };
            format!("127.0.0.1\tlocalhost{name}\n{loopback_v6}")
        }
        (HostsFile::Network, NetworkMode::Host) => String::from_utf8_lossy(&host_file("/etc/hosts")).into_owned(),
        (HostsFile::Network, NetworkMode::None) => format!("127.0.0.1\tlocalhost\n{loopback_v6}"),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if p.hosts_file == HostsFile::Network && !p.hostname.is_empty() {
        text.push_str(&format!("127.0.0.1\t{}\n", p.hostname));
    }
    for (name, address) in &p.extra_hosts {
        text.push_str(&format!("{address}\t{name}\n"));
    }
    text.into_bytes()
}

/// Mounts that make an empty directory a usable root with the host's
/// `/usr` read-only: `/usr` bound, `/bin`, `/lib`... as the host has them
/// (symlinks on a merged-/usr host, else bound too). For probes and tests.
pub fn host_usr_mounts(root: &Path) -> Result<Vec<MountSpec>> {
    let mut mounts = vec![MountSpec::bind("/usr", "/usr", true)];
    for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&host).map_err(io_at(&host))?;
                let link = root.join(name);
                if fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(&target, &link).map_err(io_at(&link))?;
                }
            }
            Ok(m) if m.is_dir() => mounts.push(MountSpec::bind(&host, &host, true)),
            _ => {}
        }
    }
    Ok(mounts)
}

/// Deletes the container, its bundle and its files however the run ends.
struct ContainerGuard<'a> {
    runtime: &'a Runtime,
    id: &'a str,
    dirs: [&'a Path; 2],
    sys: &'a dyn Syscalls,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        // `run` deletes the container itself when it exits; these matter
        // when the runtime was killed or failed half-way.
        if self.runtime.root().join(self.id).exists() {
            self.runtime.kill(self.id, "KILL");
            self.runtime.delete(self.id);
        }
        for dir in self.dirs {
            let _ = state::remove_unmounted(dir, self.sys, &mut Cleanup::default());
        }
    }
}

/// A directory to mount a root file system on; see
/// [`RuncExecutor::mount_point`].
#[derive(Debug)]
pub struct MountPoint {
    id: String,
    path: PathBuf,
    sys: Arc<dyn Syscalls>,
}

impl MountPoint {
    /// Takes over `dir`, an empty directory made by the caller (named as
    /// [`RuncExecutor::mount_point`]'s are, `pa-PID-START-SEQ`, when a
    /// stale-state sweep of its parent should remove it after a kill):
    /// dropping it detaches whatever is mounted below and removes it.
    pub fn adopt(dir: impl Into<PathBuf>) -> MountPoint {
        let path = dir.into();
        let id = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        MountPoint { id, path, sys: Arc::new(Linux) }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its id (`pa-PID-START-SEQ`), to name related state after.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        let _ = state::remove_unmounted(&self.path, self.sys.as_ref(), &mut Cleanup::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_come_from_the_json_log() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log.json");
        assert_eq!(runtime_error(&log), None);
        fs::write(
            &log,
            concat!(
                "{\"level\":\"warning\",\"msg\":\"cgroup v1 is deprecated\",\"time\":\"t\"}\n",
                "{\"level\":\"error\",\"msg\":\"runc run failed: unable to start container process: exec: \\\"/x\\\": exec format error\",\"time\":\"t\"}\n",
            ),
        )
        .unwrap();
        let msg = runtime_error(&log).unwrap();
        assert!(msg.contains("exec format error"));
        assert!(matches!(classify("c".into(), "/x", msg), Error::ExecFormat { program, .. } if program == "/x"));
        let nf =
            "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert_eq!(classify("c".into(), "nope", nf.into()).kind(), crate::ErrorKind::NotFound);
        assert_eq!(classify("c".into(), "x", "cgroups: bad".into()).kind(), crate::ErrorKind::Runtime);
        for denied in [
            "runc run failed: unable to start container process: exec: \"/etc/passwd\": permission denied",
            "runc run failed: unable to start container process: exec: \"/etc\": is a directory",
        ] {
            assert!(matches!(classify("c".into(), "x", denied.into()), Error::NotExecutable { .. }), "{denied}");
        }
    }

    #[test]
    fn a_runtime_failing_its_probe_is_refused_with_its_reason() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("fake-crun");
        let script = "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --log ] && log=$2; shift; done\n\
            echo '{\"level\":\"error\",\"msg\":\"cgroups in hybrid mode not supported\"}' > \"$log\"\nexit 1\n";
        fs::write(&bin, script).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let state = t.path().join("state");
        let err = RuncExecutorBuilder::new(&state).with_runtime(bin.to_str()).build().unwrap_err();
        assert!(matches!(&err, Error::RuntimeProbe { reason, .. } if reason.contains("hybrid mode")), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Runtime);
        for sub in ["bundles", "etc", "mnt"] {
            assert_eq!(fs::read_dir(state.join(sub)).unwrap().count(), 0, "{sub} left behind");
        }
    }

    #[test]
    fn a_cgroup_the_runtime_cannot_make_names_the_parent() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log.json");
        let msg =
            "runc run failed: unable to apply cgroup configuration: mkdir /sys/fs/cgroup/cpu/ci: read-only file system";
        fs::write(&log, format!("{{\"level\":\"error\",\"msg\":\"{msg}\"}}\n")).unwrap();
        let p = ProcessSpec::new(["true"]).with_cgroup_parent(Some("ci".into()));
        let e = outcome("x", t.path(), &p, &log, ExitStatus(1)).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("--cgroup-parent \"ci\" cannot be used:") && text.contains("read-only"), "{text}");
        assert_eq!(e.kind(), crate::ErrorKind::Runtime);
        let plain = outcome("x", t.path(), &ProcessSpec::new(["true"]), &log, ExitStatus(1)).unwrap_err();
        assert!(matches!(plain, Error::Start { .. }), "{plain}");
    }

    #[test]
    fn cgroup_parents() {
        assert_eq!(cgroups_path(None, "x").unwrap(), Path::new("/polyarch/x"));
        assert_eq!(cgroups_path(Some("ci/jobs"), "x").unwrap(), Path::new("/ci/jobs/polyarch/x"));
        assert_eq!(cgroups_path(Some("/ci"), "x").unwrap(), Path::new("/ci/polyarch/x"));
        let e = cgroups_path(Some("system.slice:docker:"), "x").unwrap_err();
        assert!(e.to_string().contains("system.slice:docker:") && e.to_string().contains("systemd"), "{e}");
        assert!(cgroups_path(Some("a/../../b"), "x").is_err());
    }

    #[test]
    fn hosts_files_name_the_container() {
        let spec = |network, hosts_file, extra: &[(&str, &str)]| {
            let mut p =
                ProcessSpec::new(["true"]).with_network(network).with_hosts_file(hosts_file).with_hostname("box");
            for (name, address) in extra {
                p = p.with_extra_host(*name, *address);
            }
            String::from_utf8(hosts_file_of(&p)).unwrap()
        };
        let none = spec(NetworkMode::None, HostsFile::Network, &[]);
        assert_eq!(none, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\tbox\n");
        let extra = [("db", "10.0.0.5"), ("v6", "fd00::1")];
        let with = spec(NetworkMode::None, HostsFile::Network, &extra);
        assert!(with.ends_with("127.0.0.1\tbox\n10.0.0.5\tdb\nfd00::1\tv6\n"), "{with}");
        let host = spec(NetworkMode::Host, HostsFile::Network, &[]);
        assert!(host.ends_with("127.0.0.1\tbox\n"));
        assert!(host.starts_with(&String::from_utf8_lossy(&host_file("/etc/hosts")).into_owned()));
        // BuildKit's RUN file, on any network: nothing of the host's.
        for network in [NetworkMode::Host, NetworkMode::None] {
            let sandbox = spec(network, HostsFile::Sandbox, &extra);
            assert_eq!(
                sandbox,
                "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.5\tdb\nfd00::1\tv6\n"
            );
        }
    }
}
