//! Running processes in containers, for `RUN` steps and `polyarch run`.
//!
//! [`Executor::run`] takes a root file system (a mounted snapshot or a
//! plain directory), extra mounts, a [`ProcessSpec`] and its
//! [`ProcessIo`], and returns the process's [`ExitStatus`], as BuildKit's
//! `executor.Executor`. [`RuncExecutor`] implements it with an OCI runtime
//! (runc by default) and Docker's defaults: its capability set,
//! no-new-privileges, new mount/pid/ipc/uts namespaces (and a network
//! namespace with only `lo` for [`NetworkMode::None`]), `/proc`, a minimal
//! `/dev`, read-only `/sys`, the host's resolv.conf and hosts, masked and
//! read-only `/proc` paths, resource limits within the caller's own.
//! Docker's seccomp and AppArmor profiles are not applied.
//!
//! Foreign-architecture programs run through the kernel's binfmt_misc
//! handlers; with the `F` flag the interpreter is opened at registration,
//! so it works inside the container. Without a handler the run fails with
//! [`ErrorKind::ExecFormat`].
//!
//! Nothing outlives a run: the container is killed and deleted and its
//! bundle removed when `run` returns, also on error, cancellation
//! ([`Cancel`]) or timeout; [`RuncExecutor::cleanup_stale`] removes what a
//! killed polyarch process left behind. Mount targets the runtime had to
//! create in the rootfs are removed again when still empty
//! ([`stubs`]), so a diff of the rootfs holds only what the process wrote.
//!
//! A `RUN` step, with output streamed to a callback:
//!
//! ```no_run
//! use polyarch_exec::{Executor, MountSpec, ProcessIo, ProcessSpec, RuncExecutorBuilder};
//!
//! # fn main() -> polyarch_exec::Result<()> {
//! let exec = RuncExecutorBuilder::new("/var/lib/polyarch/exec").build()?;
//! exec.cleanup_stale()?;
//! let rootfs = exec.mount_point()?; // mount the step's active snapshot here
//! let process = ProcessSpec::new(["/bin/sh", "-c", "apk add curl"])
//!     .with_env(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
//!     .with_cwd("/src")
//!     .with_user("app");
//! let cache = [MountSpec::bind("/var/cache/polyarch/apk", "/var/cache/apk", false)];
//! let mut log = Vec::new();
//! let io = ProcessIo::null().with_stdout(|b| log.extend_from_slice(b));
//! let status = exec.run(rootfs.path(), &cache, &process, io)?;
//! assert!(status.success(), "RUN failed with {status}");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod arch;
pub mod console;
pub mod error;
pub mod process;
pub mod rlimit;
pub mod rootfs;
pub mod runc;
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod stubs;
pub mod sys;
pub mod user;

use std::path::Path;

pub use console::RawMode;
pub use error::{Error, ErrorKind, Result};
pub use process::{
    Cancel, ExitStatus, HostsFile, MountSpec, NetworkMode, Output, ProcessIo, ProcessSpec, Resize, Rlimit,
    SecurityMode, Terminal, WindowSize,
};
pub use rlimit::Resource;
pub use runc::{MountPoint, RuncExecutor, RuncExecutorBuilder};
pub use state::Cleanup;

/// Runs one process in a container and waits for it.
pub trait Executor: Send + Sync {
    /// Runs `process` with `rootfs` as its root and `mounts` on top, and
    /// returns how it exited. A non-zero exit is an `Ok`; `Err` means the
    /// process could not be started or was stopped (cancelled, timed out).
    fn run(&self, rootfs: &Path, mounts: &[MountSpec], process: &ProcessSpec, io: ProcessIo<'_>) -> Result<ExitStatus>;
}

impl<E: Executor + ?Sized> Executor for std::sync::Arc<E> {
    fn run(&self, rootfs: &Path, mounts: &[MountSpec], process: &ProcessSpec, io: ProcessIo<'_>) -> Result<ExitStatus> {
        (**self).run(rootfs, mounts, process, io)
    }
}

#[cfg(test)]
mod tests {
    /// The executor sits low: no polyarch crate below it is needed (as
    /// ggcr's depcheck_test.go guards).
    #[test]
    fn depends_on_no_other_polyarch_crate() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
        let ours: Vec<&str> = deps.lines().filter(|l| l.starts_with("polyarch-")).collect();
        assert!(ours.is_empty(), "{ours:?}");
    }
}
