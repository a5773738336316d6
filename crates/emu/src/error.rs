//! The crate's error type.

use std::path::PathBuf;

/// What went wrong, coarsely, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file, emulator or handler is not there.
    NotFound,
    /// The operation needs privileges this process lacks.
    PermissionDenied,
    /// Existing state blocks the operation (e.g. a handler without `F`).
    Conflict,
    /// Input could not be understood.
    Invalid,
    /// Any other I/O failure.
    Io,
}

/// Errors of `polyarch-emu`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `binfmt_misc` handler file could not be parsed.
    #[error("{path}: invalid binfmt_misc handler: {reason}")]
    Handler {
        /// The handler file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An ELF file could not be read as one.
    #[error("{path}: not a usable ELF file: {reason}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An architecture or platform polyarch has no emulator for.
    #[error("unknown architecture {name:?}{} (known: {known})", suggestion.as_ref().map(|s| format!("; did you mean {s:?}?")).unwrap_or_default())]
    UnknownArch {
        /// What was asked for.
        name: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
        /// The names polyarch knows.
        known: String,
    },
    /// A registration that the kernel would reject or misread.
    #[error("invalid binfmt_misc registration {name:?}: {reason}")]
    Registration {
        /// The handler name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `binfmt_misc` is not mounted at the expected place.
    #[error("binfmt_misc is not mounted at {path}")]
    NotMounted {
        /// The mount point.
        path: PathBuf,
    },
    /// Mounting `binfmt_misc` failed.
    #[error("mounting binfmt_misc at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No QEMU emulator for an architecture was found on the host.
    #[error("no qemu-{qemu} emulator found (looked for {searched})")]
    InterpreterNotFound {
        /// QEMU's name of the architecture (`aarch64`).
        qemu: String,
        /// The paths tried, comma-separated.
        searched: String,
    },
    /// The emulator is dynamically linked, so the `F` flag cannot make it
    /// work inside containers.
    #[error("{path} is dynamically linked (interpreter {interp}); a static emulator is needed")]
    NotStatic {
        /// The emulator.
        path: PathBuf,
        /// Its `PT_INTERP`.
        interp: String,
    },
    /// A handler for the architecture exists but is wrong for builds.
    #[error("handler {name} (flags {flags:?}, interpreter {}) is wrong: {reasons}", interpreter.display())]
    NeedsReplace {
        /// The handler.
        name: String,
        /// Its flags.
        flags: String,
        /// Its interpreter.
        interpreter: PathBuf,
        /// What is wrong with it, `; `-separated.
        reasons: String,
    },
    /// An overlay mount could not be made or did not behave.
    #[error("overlay file system at {path}: {reason}")]
    Overlay {
        /// The test directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A child could not enter new namespaces.
    #[error("unshare({flags}): {source}")]
    Unshare {
        /// The namespaces asked for (`CLONE_NEWNS`...).
        flags: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Starting a program failed.
    #[error("running {path}: {source}")]
    Spawn {
        /// The program.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        let io_kind = |e: &std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ if e.raw_os_error() == Some(1) => ErrorKind::PermissionDenied,
            std::io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
            _ => ErrorKind::Io,
        };
        match self {
            Error::Io { source, .. }
            | Error::Mount { source, .. }
            | Error::Spawn { source, .. }
            | Error::Unshare { source, .. } => io_kind(source),
            Error::Overlay { .. } => ErrorKind::Io,
            Error::Handler { .. } | Error::Elf { .. } | Error::UnknownArch { .. } | Error::Registration { .. } => {
                ErrorKind::Invalid
            }
            Error::NotMounted { .. } | Error::InterpreterNotFound { .. } => ErrorKind::NotFound,
            Error::NotStatic { .. } | Error::NeedsReplace { .. } => ErrorKind::Conflict,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}
