//! What to run and how to wire it: [`ProcessSpec`] (as BuildKit's
//! `executor.Meta`), [`MountSpec`], [`ProcessIo`] (standard streams,
//! cancellation, timeout) and the resulting [`ExitStatus`].

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rlimit::Resource;

/// The network a container sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace (what `docker build` uses by default).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface.
    None,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;

    fn from_str(s: &str) -> Result<NetworkMode, String> {
        match s {
            "host" | "default" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            other => Err(format!("unsupported network mode {other:?} (want host or none)")),
        }
    }
}

/// What `/etc/hosts` the container starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostsFile {
    /// As `docker run` makes it: the host's with host networking (names
    /// resolve as on the host), a loopback-only file otherwise; then the
    /// host name on 127.0.0.1.
    #[default]
    Network,
    /// As BuildKit makes it for a RUN step, whatever the network:
    /// `127.0.0.1 localhost HOSTNAME` and the `::1` line, nothing of the
    /// host's.
    Sandbox,
}

/// How much the process is confined (BuildKit's `pb.SecurityMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecurityMode {
    /// Docker's defaults: its capability set, seccomp, read-only `/sys`,
    /// masked `/proc` paths, no new privileges.
    #[default]
    Sandbox,
    /// As `docker run --privileged` and BuildKit's insecure mode: every
    /// capability of the caller's bounding set, no seccomp filter,
    /// writable `/sys` and cgroup file system, no masked or read-only
    /// paths, every device allowed.
    Insecure,
}

/// A resource limit the process asks for. The executor lowers both values
/// to the caller's own hard limit: raising a hard limit needs
/// `CAP_SYS_RESOURCE`, which the caller may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Which limit.
    pub resource: Resource,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// The process to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program and its arguments; `args[0]` is looked up in `PATH`.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries. `PATH` and `HOME` get defaults when missing.
    pub env: Vec<String>,
    /// The working directory, created (owned by root, mode 0755) if missing.
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, resolved against the
    /// rootfs' `/etc/passwd` and `/etc/group`; empty means root.
    pub user: String,
    /// The container's host name.
    pub hostname: String,
    /// The network namespace.
    pub network: NetworkMode,
    /// What `/etc/hosts` starts from (the extra hosts follow).
    pub hosts_file: HostsFile,
    /// Mount the rootfs read-only.
    pub readonly_rootfs: bool,
    /// Resource limits on top of the default `RLIMIT_NOFILE` 1024:1024.
    pub rlimits: Vec<Rlimit>,
    /// Extra `/etc/hosts` entries (name, address), after the defaults.
    pub extra_hosts: Vec<(String, String)>,
    /// The size of `/dev/shm` in bytes (default 64 MiB).
    pub shm_size: Option<u64>,
    /// The cgroup the container's own cgroup is made in (default
    /// `/polyarch`).
    pub cgroup_parent: Option<String>,
    /// Confinement.
    pub security: SecurityMode,
}

impl ProcessSpec {
    /// Runs `args` as root in `/` with host networking and no environment.
    pub fn new<I, S>(args: I) -> ProcessSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProcessSpec {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: "/".into(),
            user: String::new(),
            hostname: "polyarch".into(),
            network: NetworkMode::Host,
            hosts_file: HostsFile::Network,
            readonly_rootfs: false,
            rlimits: Vec::new(),
            extra_hosts: Vec::new(),
            shm_size: None,
            cgroup_parent: None,
            security: SecurityMode::Sandbox,
        }
    }

    /// Sets the environment (`KEY=VALUE` entries).
    pub fn with_env<I, S>(mut self, env: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env = env.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the working directory.
    pub fn with_cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = cwd.into();
        self
    }

    /// Sets the user (`name`, `uid`, `name:group`, `uid:gid`).
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the host name.
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// Sets the network mode.
    pub fn with_network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }

    /// Sets what `/etc/hosts` starts from.
    pub fn with_hosts_file(mut self, hosts_file: HostsFile) -> Self {
        self.hosts_file = hosts_file;
        self
    }

    /// Mounts the rootfs read-only when `on`.
    pub fn with_readonly_rootfs(mut self, on: bool) -> Self {
        self.readonly_rootfs = on;
        self
    }

    /// Adds a resource limit.
    pub fn with_rlimit(mut self, resource: Resource, soft: u64, hard: u64) -> Self {
        self.rlimits.push(Rlimit { resource, soft, hard });
        self
    }

    /// Adds an `/etc/hosts` entry.
    pub fn with_extra_host(mut self, name: impl Into<String>, address: impl Into<String>) -> Self {
        self.extra_hosts.push((name.into(), address.into()));
        self
    }

    /// Sets the size of `/dev/shm` in bytes.
    pub fn with_shm_size(mut self, bytes: Option<u64>) -> Self {
        self.shm_size = bytes;
        self
    }

    /// Sets the parent cgroup.
    pub fn with_cgroup_parent(mut self, parent: Option<String>) -> Self {
        self.cgroup_parent = parent;
        self
    }

    /// Sets the confinement.
    pub fn with_security(mut self, mode: SecurityMode) -> Self {
        self.security = mode;
        self
    }
}

/// An extra mount in the container, in the shape of an OCI `mounts` entry
/// (and of `polyarch_snapshot::Mount`, plus a destination): a snapshot's
/// bind or overlay mount converts field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Where it appears in the container (absolute).
    pub destination: PathBuf,
    /// `bind`, `overlay`, `tmpfs`, ...
    pub kind: String,
    /// The host directory or file bound, or the file system's source name.
    pub source: PathBuf,
    /// Mount options (`rbind`, `ro`, `lowerdir=...`, `size=...`).
    pub options: Vec<String>,
}

impl MountSpec {
    /// A recursive bind mount of `source` at `destination`.
    pub fn bind(source: impl Into<PathBuf>, destination: impl Into<PathBuf>, readonly: bool) -> MountSpec {
        let access = if readonly { "ro" } else { "rw" };
        MountSpec {
            destination: destination.into(),
            kind: "bind".into(),
            source: source.into(),
            options: vec!["rbind".into(), access.into()],
        }
    }

    /// An empty tmpfs at `destination`.
    pub fn tmpfs(destination: impl Into<PathBuf>) -> MountSpec {
        MountSpec {
            destination: destination.into(),
            kind: "tmpfs".into(),
            source: "tmpfs".into(),
            options: vec!["nosuid".into(), "nodev".into(), "mode=1777".into()],
        }
    }
}

/// Receives a chunk of a stream as it arrives.
pub type Sink<'a> = Box<dyn FnMut(&[u8]) + Send + 'a>;

/// Where a container's output goes.
#[derive(Default)]
pub enum Output<'a> {
    /// The caller's own stream.
    #[default]
    Inherit,
    /// Discarded.
    Null,
    /// Each chunk to a callback, on a separate thread.
    Callback(Sink<'a>),
}

impl fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Output::Inherit => "Inherit",
            Output::Null => "Null",
            Output::Callback(_) => "Callback",
        })
    }
}

/// Stops a run from another thread: the container gets SIGTERM, then
/// SIGKILL after the grace period.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A handle that has not fired.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every run holding a clone of this handle to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A terminal's window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Window size changes for a run's terminal: set from another thread (on
/// `SIGWINCH`, say) and applied by the run within a poll interval.
#[derive(Debug, Clone, Default)]
pub struct Resize(Arc<Mutex<Option<WindowSize>>>);

impl Resize {
    /// A handle with no change pending.
    pub fn new() -> Resize {
        Resize::default()
    }

    /// Asks for the terminal to become `size`.
    pub fn set(&self, size: WindowSize) {
        if let Ok(mut pending) = self.0.lock() {
            *pending = Some(size);
        }
    }

    /// The size asked for since the last call, if any.
    pub fn take(&self) -> Option<WindowSize> {
        self.0.lock().ok().and_then(|mut pending| pending.take())
    }
}

/// A pseudo-terminal for the process, as `docker run -t`: the runtime
/// creates it in the container (its stdin, stdout and stderr) and hands
/// the master side over its console socket; what the terminal shows goes
/// to [`ProcessIo::stdout`].
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    /// The initial window size (none: the kernel's default, 0x0).
    pub size: Option<WindowSize>,
    /// Copy the caller's stdin to the terminal (`-i`).
    pub stdin: bool,
    /// Later window size changes.
    pub resize: Resize,
}

/// Standard streams and lifetime control of one run.
#[derive(Debug, Default)]
pub struct ProcessIo<'a> {
    /// Give the container the caller's stdin (else `/dev/null`).
    pub stdin_inherit: bool,
    /// Where stdout goes.
    pub stdout: Output<'a>,
    /// Where stderr goes.
    pub stderr: Output<'a>,
    /// Stops the run when fired.
    pub cancel: Option<Cancel>,
    /// Kills the run after this long.
    pub timeout: Option<Duration>,
    /// A terminal instead of separate streams (`stdin_inherit` and
    /// `stderr` then do not apply).
    pub terminal: Option<Terminal>,
}

impl<'a> ProcessIo<'a> {
    /// The caller's stdout and stderr, no stdin.
    pub fn inherit() -> ProcessIo<'a> {
        ProcessIo::default()
    }

    /// Everything discarded.
    pub fn null() -> ProcessIo<'a> {
        ProcessIo { stdout: Output::Null, stderr: Output::Null, ..ProcessIo::default() }
    }

    /// Gives the container the caller's stdin.
    pub fn with_stdin_inherited(mut self) -> Self {
        self.stdin_inherit = true;
        self
    }

    /// Streams stdout to `f`.
    pub fn with_stdout(mut self, f: impl FnMut(&[u8]) + Send + 'a) -> Self {
        self.stdout = Output::Callback(Box::new(f));
        self
    }

    /// Streams stderr to `f`.
    pub fn with_stderr(mut self, f: impl FnMut(&[u8]) + Send + 'a) -> Self {
        self.stderr = Output::Callback(Box::new(f));
        self
    }

    /// Stops the run when `cancel` fires.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Kills the run after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Gives the process a terminal.
    pub fn with_terminal(mut self, terminal: Terminal) -> Self {
        self.terminal = Some(terminal);
        self
    }
}

/// How the process ended: its exit code, or 128 + the signal that killed
/// it (the shell's and runc's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus(pub i32);

impl ExitStatus {
    /// The exit code.
    pub fn code(self) -> i32 {
        self.0
    }

    /// Whether the code is 0.
    pub fn success(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_parse() {
        assert_eq!("host".parse::<NetworkMode>(), Ok(NetworkMode::Host));
        assert_eq!("none".parse::<NetworkMode>(), Ok(NetworkMode::None));
        assert!("bridge".parse::<NetworkMode>().unwrap_err().contains("bridge"));
    }

    #[test]
    fn resizes_are_taken_once() {
        let r = Resize::new();
        assert_eq!(r.take(), None);
        r.clone().set(WindowSize { rows: 1, cols: 2 });
        r.set(WindowSize { rows: 30, cols: 100 });
        assert_eq!(r.take(), Some(WindowSize { rows: 30, cols: 100 }));
        assert_eq!(r.take(), None);
    }

    #[test]
    fn cancel_is_shared_by_clones() {
        let c = Cancel::new();
        let d = c.clone();
        assert!(!d.is_cancelled());
        c.cancel();
        assert!(d.is_cancelled());
    }
}
