//! Registering QEMU emulators with `binfmt_misc`, and removing them.
//!
//! Handlers are registered as tonistiigi/binfmt does: named `qemu-<arch>`,
//! with the magic and mask of [`Arch`], and flags `CF`:
//!
//! - `F` opens the emulator at registration, so it runs inside containers
//!   whose root file system has no emulator. It needs a static emulator.
//! - `C` takes credentials from the program, not the emulator, so set-uid
//!   programs (`sudo`, `ping`) behave in emulated builds; it implies `O`.
//! - `P` (preserve `argv[0]`) only with [`InstallOptions::preserve_argv0`]:
//!   QEMU before 6.1 does not understand the extra argument it adds.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::binfmt::{BinfmtMisc, Flags, Handler, Registration, Rule};
use crate::elf;
use crate::probe::{probe, ProbeOptions};
use crate::{Arch, Error};

/// Directories searched for `qemu-<arch>-static` without `--qemu-dir`.
pub const SEARCH_DIRS: [&str; 2] = ["/usr/bin", "/usr/local/bin"];
/// Debian's wrappers for the `P` flag, links to the static emulators.
pub const DEBIAN_WRAPPER_DIR: &str = "/usr/libexec/qemu-binfmt";

/// An emulator found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interpreter {
    /// Its path.
    pub path: PathBuf,
    /// Whether it is statically linked.
    pub is_static: bool,
}

/// The paths tried for `arch`, in order.
pub fn candidates(arch: Arch, qemu_dir: Option<&Path>) -> Vec<PathBuf> {
    let q = arch.qemu_name();
    match qemu_dir {
        Some(d) => vec![d.join(format!("qemu-{q}-static")), d.join(format!("qemu-{q}"))],
        None => {
            let mut v: Vec<PathBuf> =
                SEARCH_DIRS.iter().map(|d| Path::new(d).join(format!("qemu-{q}-static"))).collect();
            v.push(Path::new(DEBIAN_WRAPPER_DIR).join(format!("{q}-binfmt-P")));
            v.extend(SEARCH_DIRS.iter().map(|d| Path::new(d).join(format!("qemu-{q}"))));
            v
        }
    }
}

/// Finds the emulator for `arch`: the first static one among
/// [`candidates`]. A dynamically linked one alone is
/// [`Error::NotStatic`], none at all [`Error::InterpreterNotFound`].
pub fn find_interpreter(arch: Arch, qemu_dir: Option<&Path>) -> Result<Interpreter, Error> {
    let tried = candidates(arch, qemu_dir);
    let mut dynamic = None;
    for path in &tried {
        if !path.is_file() {
            continue;
        }
        let info = elf::inspect(path)?;
        match info.interpreter {
            None => return Ok(Interpreter { path: path.clone(), is_static: true }),
            Some(interp) => {
                dynamic.get_or_insert(Error::NotStatic { path: path.clone(), interp });
            }
        }
    }
    Err(dynamic.unwrap_or_else(|| Error::InterpreterNotFound {
        qemu: arch.qemu_name().to_string(),
        searched: tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    }))
}

/// How [`install`] works.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The `binfmt_misc` mount point.
    pub binfmt: BinfmtMisc,
    /// Look for emulators only here.
    pub qemu_dir: Option<PathBuf>,
    /// Re-register handlers that lack `F` or are disabled.
    pub replace: bool,
    /// Add the `P` flag.
    pub preserve_argv0: bool,
    /// Where probes for compat architectures (386 on amd64) run.
    pub probe: ProbeOptions,
}

/// What [`install`] did for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum InstallAction {
    /// The host runs it natively; no handler is needed.
    Native,
    /// An enabled handler with `F` was already there.
    AlreadyInstalled {
        /// Its name.
        handler: String,
    },
    /// A handler was registered.
    Registered {
        /// Its name.
        handler: String,
        /// The emulator.
        interpreter: PathBuf,
        /// Handlers removed first (with `replace`).
        replaced: Vec<String>,
    },
}

/// One architecture's outcome.
#[derive(Debug)]
pub struct InstallReport {
    /// The architecture.
    pub arch: Arch,
    /// What happened, or why nothing could.
    pub result: Result<InstallAction, Error>,
}

/// The enabled handler with `F` that serves `arch`, if any; and the ones
/// that match it but cannot serve containers.
fn serving(handlers: &[Handler], arch: Arch) -> (Option<&Handler>, Vec<&Handler>) {
    let probe = arch.probe_program();
    let matching: Vec<&Handler> = handlers.iter().filter(|h| h.matches(&probe)).collect();
    let good = matching.iter().copied().find(|h| h.enabled && h.flags.fix_binary);
    let weak = matching.into_iter().filter(|h| !(h.enabled && h.flags.fix_binary)).collect();
    (good, weak)
}

/// Registers emulators for `archs`: mounts `binfmt_misc` (and switches it
/// on) if needed, skips what the host runs natively, keeps existing
/// handlers that already serve containers, and replaces handlers without
/// `F` only when asked. The outer error is for the mount; each
/// architecture has its own result.
pub fn install(archs: &[Arch], opts: &InstallOptions) -> Result<Vec<InstallReport>, Error> {
    let fs = &opts.binfmt;
    fs.ensure_mounted()?;
    if !fs.enabled()? {
        fs.set_enabled(true)?;
    }
    let host = Arch::host();
    let mut out = Vec::new();
    for &arch in archs {
        let result = install_one(arch, host, opts);
        out.push(InstallReport { arch, result });
    }
    Ok(out)
}

fn install_one(arch: Arch, host: Option<Arch>, opts: &InstallOptions) -> Result<InstallAction, Error> {
    let fs = &opts.binfmt;
    if host == Some(arch) {
        return Ok(InstallAction::Native);
    }
    let handlers = fs.handlers()?;
    let (good, weak) = serving(&handlers, arch);
    if let Some(h) = good {
        return Ok(InstallAction::AlreadyInstalled { handler: h.name.clone() });
    }
    // A compat architecture with no handler at all that runs is native.
    if weak.is_empty() && host.is_some_and(|h| arch.maybe_native_on(h)) && probe(arch, &opts.probe)?.executes {
        return Ok(InstallAction::Native);
    }
    let name = arch.handler_name();
    let ours = fs.handler(&name)?;
    if !opts.replace {
        if let Some(h) = ours.as_ref().or(weak.first().copied()) {
            return Err(Error::NeedsReplace {
                name: h.name.clone(),
                flags: h.flags.to_string(),
                disabled: if h.enabled { String::new() } else { ", disabled".to_string() },
            });
        }
    }
    let interp = find_interpreter(arch, opts.qemu_dir.as_deref())?;
    let mut replaced = Vec::new();
    for h in weak.iter().map(|h| h.name.as_str()).chain(ours.as_ref().map(|h| h.name.as_str())) {
        if !replaced.iter().any(|r| r == h) && fs.remove(h)? {
            replaced.push(h.to_string());
        }
    }
    let flags = Flags { preserve_argv0: opts.preserve_argv0, credentials: true, fix_binary: true, ..Flags::default() };
    let reg = Registration {
        name: name.clone(),
        rule: Rule::Magic { offset: 0, magic: arch.magic().to_vec(), mask: Some(arch.mask().to_vec()) },
        interpreter: interp.path.clone(),
        flags,
    };
    fs.register(&reg)?;
    Ok(InstallAction::Registered { handler: name, interpreter: interp.path, replaced })
}

/// What [`uninstall`] did for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UninstallAction {
    /// The handler was removed.
    Removed {
        /// Its name.
        handler: String,
    },
    /// There was no handler of that name.
    NotInstalled {
        /// The name looked for.
        handler: String,
    },
}

/// One architecture's outcome.
#[derive(Debug)]
pub struct UninstallReport {
    /// The architecture.
    pub arch: Arch,
    /// What happened.
    pub result: Result<UninstallAction, Error>,
}

/// Removes the `qemu-<arch>` handlers of `archs` (handlers under other
/// names are left alone, as tonistiigi/binfmt does).
pub fn uninstall(archs: &[Arch], fs: &BinfmtMisc) -> Result<Vec<UninstallReport>, Error> {
    if !fs.is_mounted() {
        return Err(Error::NotMounted { path: fs.root().to_path_buf() });
    }
    Ok(archs
        .iter()
        .map(|&arch| {
            let handler = arch.handler_name();
            let result = fs.remove(&handler).map(|removed| {
                if removed {
                    UninstallAction::Removed { handler }
                } else {
                    UninstallAction::NotInstalled { handler }
                }
            });
            UninstallReport { arch, result }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_prefer_static_names_and_honour_qemu_dir() {
        let c = candidates(Arch::Arm64, None);
        assert_eq!(c[0], Path::new("/usr/bin/qemu-aarch64-static"));
        assert_eq!(c[1], Path::new("/usr/local/bin/qemu-aarch64-static"));
        assert_eq!(c[2], Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"));
        let d = candidates(Arch::Mips64le, Some(Path::new("/opt/q")));
        assert_eq!(d, [Path::new("/opt/q/qemu-mips64el-static"), Path::new("/opt/q/qemu-mips64el")]);
    }

    #[test]
    fn find_interpreter_rejects_dynamic_and_missing_emulators() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_interpreter(Arch::Riscv64, Some(dir.path())).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
        assert!(err.to_string().contains("qemu-riscv64-static"), "{err}");
        // This test binary is dynamically linked: a stand-in for a
        // non-static emulator.
        std::fs::copy(std::env::current_exe().unwrap(), dir.path().join("qemu-riscv64")).unwrap();
        let err = find_interpreter(Arch::Riscv64, Some(dir.path())).unwrap_err();
        assert!(matches!(err, Error::NotStatic { .. }), "{err}");
        // A static ELF file (a probe) is accepted.
        std::fs::write(dir.path().join("qemu-riscv64-static"), Arch::Amd64.probe_program()).unwrap();
        let found = find_interpreter(Arch::Riscv64, Some(dir.path())).unwrap();
        assert_eq!(found, Interpreter { path: dir.path().join("qemu-riscv64-static"), is_static: true });
    }

    fn handler(name: &str, arch: Arch, flags: &str, enabled: bool) -> Handler {
        Handler {
            name: name.to_string(),
            enabled,
            interpreter: PathBuf::from("/usr/bin/qemu"),
            flags: Flags::parse(flags).unwrap(),
            rule: Rule::Magic { offset: 0, magic: arch.magic().to_vec(), mask: Some(arch.mask().to_vec()) },
        }
    }

    #[test]
    fn serving_needs_enabled_and_fix_binary() {
        let hs = vec![
            handler("qemu-aarch64", Arch::Arm64, "OC", true),
            handler("aarch64-other", Arch::Arm64, "F", false),
            handler("qemu-riscv64", Arch::Riscv64, "CF", true),
        ];
        let (good, weak) = serving(&hs, Arch::Arm64);
        assert!(good.is_none());
        assert_eq!(weak.len(), 2);
        let (good, weak) = serving(&hs, Arch::Riscv64);
        assert_eq!(good.map(|h| h.name.as_str()), Some("qemu-riscv64"));
        assert!(weak.is_empty());
        assert_eq!(serving(&hs, Arch::S390x).1.len(), 0);
    }
}
