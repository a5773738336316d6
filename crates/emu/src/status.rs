//! Everything known about emulation on this host, in one value.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::binfmt::{BinfmtMisc, Handler};
use crate::install::{find_interpreter, handler_problems, remedy, HandlerProblem, Interpreter};
use crate::probe::{probe_all, ProbeOptions, ProbeResult};
use crate::{elf, Arch, Error};

/// A handler that matches an architecture's programs.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerInfo {
    /// The handler.
    #[serde(flatten)]
    pub handler: Handler,
    /// Whether its interpreter is statically linked; `None` when it cannot
    /// be read (e.g. deleted after an `F` registration).
    pub interpreter_static: Option<bool>,
    /// What is wrong with it for builds; empty when it is right.
    pub problems: Vec<HandlerProblem>,
}

/// One architecture.
#[derive(Debug, Clone, Serialize)]
pub struct EmulatorStatus {
    /// The architecture.
    pub arch: Arch,
    /// The handler name polyarch would register.
    pub name: String,
    /// Handlers whose magic matches this architecture's programs.
    pub handlers: Vec<HandlerInfo>,
    /// The emulator `install` would register, or why there is none.
    pub available: Result<Interpreter, String>,
    /// Whether the probe ran.
    pub probe: ProbeResult,
    /// The probe ran and the kernel needed no handler: the host
    /// architecture, or a compat mode (386 on amd64) with no handler.
    pub native: bool,
    /// The command that makes it execute, when it does not.
    pub fix: Option<String>,
}

impl EmulatorStatus {
    /// The handler that serves containers: enabled, with `F`.
    pub fn serving(&self) -> Option<&HandlerInfo> {
        self.handlers.iter().find(|h| h.handler.enabled && h.handler.flags.fix_binary)
    }

    /// The handler shown for this architecture: the serving one, else the
    /// first.
    pub fn shown(&self) -> Option<&HandlerInfo> {
        self.serving().or(self.handlers.first())
    }

    /// Whether programs of this architecture execute.
    pub fn executes(&self) -> bool {
        self.probe.executes
    }
}

/// The emulation state of the host.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The `binfmt_misc` mount point.
    pub mount: PathBuf,
    /// Whether `binfmt_misc` is mounted there.
    pub mounted: bool,
    /// Whether handlers are switched on globally (`None` when unmounted).
    pub enabled: Option<bool>,
    /// The architecture of this process.
    pub host: Option<Arch>,
    /// Every architecture polyarch knows, in [`Arch::ALL`] order.
    pub emulators: Vec<EmulatorStatus>,
}

impl Status {
    /// Architectures that execute natively, host first.
    pub fn native(&self) -> Vec<Arch> {
        let mut v: Vec<Arch> = self.emulators.iter().filter(|e| e.native).map(|e| e.arch).collect();
        v.sort_by_key(|a| Some(*a) != self.host);
        v
    }

    /// Architectures that execute through an emulator.
    pub fn emulated(&self) -> Vec<Arch> {
        self.emulators.iter().filter(|e| e.executes() && !e.native).map(|e| e.arch).collect()
    }

    /// The entry for `arch`.
    pub fn get(&self, arch: Arch) -> Option<&EmulatorStatus> {
        self.emulators.iter().find(|e| e.arch == arch)
    }
}

/// Reads the handlers, looks for emulators (in `qemu_dir` if given) and
/// probes every architecture. Nothing is changed.
pub fn status(fs: &BinfmtMisc, qemu_dir: Option<&Path>, probe_opts: &ProbeOptions) -> Result<Status, Error> {
    let mounted = fs.is_mounted();
    let (enabled, handlers) = if mounted { (Some(fs.enabled()?), fs.handlers()?) } else { (None, Vec::new()) };
    let host = Arch::host();
    let probes = probe_all(&Arch::ALL, probe_opts)?;
    let emulators = Arch::ALL
        .iter()
        .zip(probes)
        .map(|(&arch, probe)| {
            let program = arch.probe_program();
            let matching: Vec<HandlerInfo> = handlers
                .iter()
                .filter(|h| h.matches(&program))
                .map(|h| {
                    let mut problems = handler_problems(h);
                    if problems.is_empty() && !probe.executes {
                        problems.push(HandlerProblem::ProbeFails(probe.detail.clone()));
                    }
                    HandlerInfo {
                        interpreter_static: elf::inspect(&h.interpreter).ok().map(|i| i.is_static()),
                        handler: h.clone(),
                        problems,
                    }
                })
                .collect();
            let handled = matching.iter().any(|h| h.handler.enabled) && enabled == Some(true);
            // Without the mount, handlers are invisible but still active: only
            // compat architectures can be told native.
            let compat = host.is_some_and(|h| arch.maybe_native_on(h));
            let native = probe.executes && (Some(arch) == host || (compat && !handled));
            EmulatorStatus {
                arch,
                name: arch.handler_name(),
                handlers: matching,
                available: find_interpreter(arch, qemu_dir).map_err(|e| e.to_string()),
                fix: remedy(arch, &probe, qemu_dir),
                probe,
                native,
            }
        })
        .collect();
    Ok(Status { mount: fs.root().to_path_buf(), mounted, enabled, host, emulators })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_an_unmounted_directory_still_probes() {
        let dir = tempfile::tempdir().unwrap();
        let s = status(&BinfmtMisc::new(dir.path()), Some(dir.path()), &ProbeOptions::default()).unwrap();
        assert!(!s.mounted);
        assert_eq!(s.enabled, None);
        assert_eq!(s.emulators.len(), Arch::ALL.len());
        let host = Arch::host().unwrap();
        assert_eq!(s.native().first(), Some(&host));
        let e = s.get(host).unwrap();
        assert!(e.native && e.executes() && e.handlers.is_empty());
        assert!(e.available.as_ref().is_err_and(|m| m.contains("no qemu-")), "{:?}", e.available);
    }
}
