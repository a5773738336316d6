//! A recording [`Executor`] for tests of RUN semantics without root or
//! runc (as BuildKit's scheduler tests count executions): every call is
//! kept (command, environment, directory, user as resolved against the
//! root, mounts with their kinds and options, network, limits, hosts...),
//! and a command can be simulated by a behaviour that writes or removes
//! files in the root and in the mounts, prints output and chooses its exit
//! code. Use it with the naive snapshotter, whose root is a plain
//! directory. Built for this crate's tests and, with the `testing`
//! feature, for other crates' tests; never in a release path.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polyarch_exec::{ExitStatus, MountSpec, Output, ProcessIo, ProcessSpec};
use tempfile::TempDir;

use polyarch_exec::Executor;

/// What a simulated command does; returns its exit code.
pub type Behavior = Arc<dyn Fn(&mut Sandbox<'_>) -> io::Result<i32> + Send + Sync>;

/// One run, as the executor received it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The root file system directory.
    pub rootfs: PathBuf,
    /// The extra mounts.
    pub mounts: Vec<MountSpec>,
    /// The process.
    pub process: ProcessSpec,
    /// Its user as the runtime resolves it against the root's
    /// `/etc/passwd` and `/etc/group` (uid, gid), or why it could not.
    pub user: Result<(u32, u32), String>,
    /// What the behaviour noted ([`Sandbox::note`]).
    pub notes: Vec<String>,
}

impl Call {
    /// The command's last argument (a shell form's script).
    pub fn script(&self) -> &str {
        self.process.args.last().map(String::as_str).unwrap_or("")
    }

    /// The value of an environment variable.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.process.env.iter().find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    /// The mount at `destination`.
    pub fn mount(&self, destination: &str) -> Option<&MountSpec> {
        self.mounts.iter().find(|m| m.destination == Path::new(destination))
    }
}

/// Records calls and runs behaviours chosen by the command line.
#[derive(Default)]
pub struct RecordingExecutor {
    calls: Mutex<Vec<Call>>,
    behaviors: Mutex<Vec<(String, Behavior)>>,
}

impl RecordingExecutor {
    /// An executor whose commands all succeed without changing anything.
    pub fn new() -> Arc<RecordingExecutor> {
        Arc::new(RecordingExecutor::default())
    }

    /// Runs `f` for commands whose arguments, joined by spaces, contain
    /// `pattern` (the first behaviour that matches wins).
    pub fn on(
        self: &Arc<Self>,
        pattern: &str,
        f: impl Fn(&mut Sandbox<'_>) -> io::Result<i32> + Send + Sync + 'static,
    ) -> Arc<Self> {
        if let Ok(mut b) = self.behaviors.lock() {
            b.push((pattern.to_string(), Arc::new(f)));
        }
        self.clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// How many runs there were.
    pub fn count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The last call.
    pub fn last(&self) -> Option<Call> {
        self.calls.lock().ok().and_then(|c| c.last().cloned())
    }

    fn behavior(&self, line: &str) -> Option<Behavior> {
        let b = self.behaviors.lock().ok()?;
        b.iter().find(|(p, _)| line.contains(p.as_str())).map(|(_, f)| f.clone())
    }
}

impl Executor for RecordingExecutor {
    fn run(
        &self,
        rootfs: &Path,
        mounts: &[MountSpec],
        process: &ProcessSpec,
        io: ProcessIo<'_>,
    ) -> polyarch_exec::Result<ExitStatus> {
        let io_err = |e: io::Error| polyarch_exec::Error::Io { path: rootfs.to_path_buf(), source: e };
        let user =
            polyarch_exec::user::resolve(rootfs, &process.user).map(|u| (u.uid, u.gid)).map_err(|e| e.to_string());
        // As runc does: the working directory is made when missing.
        polyarch_exec::rootfs::mkdir_all(rootfs, &process.cwd)?;
        let mut sandbox = Sandbox::new(rootfs, mounts, process).map_err(io_err)?;
        let code = match self.behavior(&process.args.join(" ")) {
            Some(f) => f(&mut sandbox).map_err(io_err)?,
            None => 0,
        };
        let ProcessIo { stdout, .. } = io;
        if let Output::Callback(mut f) = stdout {
            f(&sandbox.out);
        }
        let call = Call {
            rootfs: rootfs.to_path_buf(),
            mounts: mounts.to_vec(),
            process: process.clone(),
            user,
            notes: sandbox.notes,
        };
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
        Ok(ExitStatus(code))
    }
}

/// The container as a behaviour sees it: paths are resolved through the
/// mounts (bind sources; a tmpfs is a directory of its own, gone after
/// the run) and otherwise in the root.
pub struct Sandbox<'a> {
    rootfs: &'a Path,
    mounts: Vec<(PathBuf, PathBuf)>,
    _tmpfs: Vec<TempDir>,
    process: &'a ProcessSpec,
    notes: Vec<String>,
    out: Vec<u8>,
}

impl<'a> Sandbox<'a> {
    fn new(rootfs: &'a Path, mounts: &[MountSpec], process: &'a ProcessSpec) -> io::Result<Sandbox<'a>> {
        let mut tmpfs = Vec::new();
        let mut resolved = Vec::new();
        for m in mounts {
            let source = match m.kind.as_str() {
                "tmpfs" => {
                    let t = tempfile::tempdir()?;
                    let p = t.path().to_path_buf();
                    tmpfs.push(t);
                    p
                }
                _ => m.source.clone(),
            };
            resolved.push((m.destination.clone(), source));
        }
        Ok(Sandbox { rootfs, mounts: resolved, _tmpfs: tmpfs, process, notes: Vec::new(), out: Vec::new() })
    }

    /// The process being run.
    pub fn process(&self) -> &ProcessSpec {
        self.process
    }

    /// Where a container path is on the host: below the deepest mount
    /// holding it, else in the root.
    pub fn host_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        let best = self.mounts.iter().filter(|(d, _)| p.starts_with(d)).max_by_key(|(d, _)| d.components().count());
        match best {
            Some((d, src)) => {
                let rest = p.strip_prefix(d).unwrap_or(Path::new(""));
                if rest.as_os_str().is_empty() {
                    src.clone()
                } else {
                    src.join(rest)
                }
            }
            None => self.rootfs.join(path.trim_start_matches('/')),
        }
    }

    /// Writes a file (and its missing parents).
    pub fn write(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        let p = self.host_path(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, data)
    }

    /// A file's bytes, if it exists.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.host_path(path)).ok()
    }

    /// Whether a path exists.
    pub fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.host_path(path)).is_ok()
    }

    /// Removes a file or a directory tree.
    pub fn remove(&mut self, path: &str) -> io::Result<()> {
        let p = self.host_path(path);
        if std::fs::symlink_metadata(&p)?.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        }
    }

    /// Keeps a note in the call's record.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Writes to the process's stdout.
    pub fn print(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }
}
