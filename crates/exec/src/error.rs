//! The one error type of the crate; callers branch on [`Error::kind`].

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file, runtime, user or group does not exist.
    NotFound,
    /// The request itself is malformed (empty args, bad user string).
    InvalidInput,
    /// The runtime refused or failed to start the container.
    Runtime,
    /// The kernel cannot execute the program (no binfmt handler for its
    /// architecture).
    ExecFormat,
    /// The run was cancelled through its handle.
    Cancelled,
    /// The run took longer than its timeout.
    TimedOut,
    /// Reading or writing the state directory or the rootfs failed.
    Io,
}

/// Errors of the executor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Running a runtime command failed before it could report anything.
    #[error("running {}: {source}", program.display())]
    Spawn {
        /// The runtime binary.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No usable OCI runtime was found.
    #[error("no OCI runtime {name:?} found in PATH (install runc: apt-get install runc)")]
    RuntimeNotFound {
        /// The name or path asked for.
        name: String,
    },
    /// The runtime exists but its probe container did not run.
    #[error("the OCI runtime {} does not work here: {reason}", runtime.display())]
    RuntimeProbe {
        /// The runtime binary.
        runtime: PathBuf,
        /// What the runtime said.
        reason: String,
    },
    /// The cgroup parent asked for cannot hold the container's cgroup.
    #[error("--cgroup-parent {parent:?} cannot be used: {reason}")]
    CgroupParent {
        /// The parent as given.
        parent: String,
        /// Why.
        reason: String,
    },
    /// The runtime failed to create or start the container.
    #[error("container {id}: {message}")]
    Start {
        /// The container id.
        id: String,
        /// The runtime's error message.
        message: String,
    },
    /// The program could not be found in the container.
    #[error("container {id}: {message}")]
    ProgramNotFound {
        /// The container id.
        id: String,
        /// The runtime's error message.
        message: String,
    },
    /// The program exists but cannot be executed (no execute permission,
    /// a directory): Docker's exit code 126.
    #[error("container {id}: {message}")]
    NotExecutable {
        /// The container id.
        id: String,
        /// The runtime's error message.
        message: String,
    },
    /// The kernel could not execute the program: it is for another
    /// architecture and no binfmt_misc handler serves it.
    #[error("container {id}: exec format error running {program:?}")]
    ExecFormat {
        /// The container id.
        id: String,
        /// The program (first argument).
        program: String,
    },
    /// A user name (or uid) that `/etc/passwd` of the rootfs lacks.
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UserNotFound {
        /// The user asked for.
        user: String,
    },
    /// A group name that `/etc/group` of the rootfs lacks.
    #[error("unable to find group {group}: no matching entries in group file")]
    GroupNotFound {
        /// The group asked for.
        group: String,
    },
    /// The process description cannot be run.
    #[error("invalid process: {reason}")]
    InvalidProcess {
        /// Why.
        reason: String,
    },
    /// The runtime configuration could not be assembled.
    #[error("assembling config.json: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// The run was cancelled; the container was killed.
    #[error("container {id} was cancelled")]
    Cancelled {
        /// The container id.
        id: String,
    },
    /// The run exceeded its timeout; the container was killed.
    #[error("container {id} timed out after {after:?}")]
    TimedOut {
        /// The container id.
        id: String,
        /// The timeout.
        after: Duration,
    },
    /// The container's terminal could not be set up or served.
    #[error("container {id}: {what}: {source}")]
    Console {
        /// The container id.
        id: String,
        /// What failed.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::Spawn { .. } | Error::Console { .. } => ErrorKind::Io,
            Error::RuntimeNotFound { .. }
            | Error::UserNotFound { .. }
            | Error::GroupNotFound { .. }
            | Error::ProgramNotFound { .. } => ErrorKind::NotFound,
            Error::RuntimeProbe { .. } | Error::Start { .. } | Error::NotExecutable { .. } => ErrorKind::Runtime,
            Error::ExecFormat { .. } => ErrorKind::ExecFormat,
            Error::InvalidProcess { .. } | Error::Spec(_) => ErrorKind::InvalidInput,
            Error::CgroupParent { .. } => ErrorKind::Runtime,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::TimedOut { .. } => ErrorKind::TimedOut,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to [`Error::Io`] at `path`.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}
