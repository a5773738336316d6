//! Running foreign-architecture programs on this host: the kernel's
//! `binfmt_misc` handlers, the QEMU user-mode emulators behind them, and
//! probes that decide whether a platform really executes (as in
//! moby/buildkit util/archutil/detect.go).
//!
//! - [`arch`]: the architectures polyarch knows, their ELF magic and mask
//!   (as qemu's scripts/qemu-binfmt-conf.sh and tonistiigi/binfmt).
//! - [`binfmt`]: the `binfmt_misc` file system: handlers, registration.
//! - [`code`]: the probes' machine code, which checks `argv[0]` and a
//!   re-exec through `/proc/self/exe`.
//! - [`elf`]: tiny static executables around that code; ELF inspection.
//! - [`probe`]: run those executables to see what executes, and how well.
//! - [`install`]: register and remove QEMU handlers.
//! - [`host`]: other host checks a multi-platform build depends on.
//!
//! Nothing here prints; callers render the returned values.

pub mod arch;
pub mod binfmt;
pub mod code;
pub mod elf;
mod error;
pub mod host;
pub mod install;
pub mod probe;
mod status;

pub use arch::Arch;
pub use binfmt::{BinfmtMisc, Flags, Handler, Registration, Rule};
pub use error::{Error, ErrorKind};
pub use install::{
    find_interpreter, handler_problems, install, remedy, uninstall, HandlerProblem, InstallAction, InstallOptions,
    InstallReport, Interpreter, UninstallAction, UninstallReport,
};
pub use probe::{probe, probe_all, probe_platform, Failure, ProbeOptions, ProbeResult};
pub use status::{status, EmulatorStatus, Status};
