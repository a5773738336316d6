//! Registering QEMU emulators with `binfmt_misc`, and removing them.
//!
//! Handlers are registered as tonistiigi/binfmt does, named `qemu-<arch>`
//! with the magic and mask of [`Arch`], with flags `POCF`:
//!
//! - `P` preserves `argv[0]`. Without it the emulator gets the program's
//!   path in its place, and busybox's shell, which re-executes itself
//!   through `/proc/self/exe` with the applet's name as `argv[0]`, runs
//!   the wrong applet (`RUN sleep 5` fails with `can't open '5'`). The
//!   emulator must take the extra argument `P` adds: Debian's
//!   `/usr/libexec/qemu-binfmt/<arch>-binfmt-P` wrappers do, and so does
//!   QEMU 6.1 and later on Linux 5.12 and later (`AT_FLAGS`). An emulator
//!   that cannot is registered without `P`, and the report says so.
//! - `F` opens the emulator at registration, so it runs inside containers
//!   whose root file system has no emulator. It needs a static emulator.
//! - `C` takes credentials from the program, not the emulator, so set-uid
//!   programs (`sudo`, `ping`) behave in emulated builds; it implies `O`.
//!
//! A handler already there is kept when it is right, and replaced with
//! [`InstallOptions::reset`] when it is not (see [`HandlerProblem`]), as
//! `multiarch/qemu-user-static --reset` does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::binfmt::{BinfmtMisc, Flags, Handler, Registration, Rule};
use crate::elf;
use crate::probe::{probe, Failure, ProbeOptions, ProbeResult};
use crate::{Arch, Error};

/// Directories searched for `qemu-<arch>-static` without `--qemu-dir`.
pub const SEARCH_DIRS: [&str; 2] = ["/usr/bin", "/usr/local/bin"];
/// Debian's wrappers for the `P` flag, links to the static emulators.
pub const DEBIAN_WRAPPER_DIR: &str = "/usr/libexec/qemu-binfmt";
/// The suffix of Debian's wrappers: QEMU reads the `P` flag's extra
/// argument when its own name ends so.
const WRAPPER_SUFFIX: &str = "-binfmt-P";

/// An emulator found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interpreter {
    /// Its path.
    pub path: PathBuf,
    /// Whether it is statically linked.
    pub is_static: bool,
    /// Whether it takes the `P` flag's extra argument.
    pub preserve_argv0: bool,
    /// Why it cannot, when it cannot.
    pub argv0_note: Option<String>,
}

/// The paths tried for `arch`, in order: the `P` wrapper first, then the
/// static emulator, then any emulator.
pub fn candidates(arch: Arch, qemu_dir: Option<&Path>) -> Vec<PathBuf> {
    let q = arch.qemu_name();
    let (wrapper_dir, dirs): (&Path, Vec<&Path>) = match qemu_dir {
        Some(d) => (d, vec![d]),
        None => (Path::new(DEBIAN_WRAPPER_DIR), SEARCH_DIRS.iter().map(Path::new).collect()),
    };
    let mut v = vec![wrapper_dir.join(format!("{q}{WRAPPER_SUFFIX}"))];
    v.extend(dirs.iter().map(|d| d.join(format!("qemu-{q}-static"))));
    v.extend(dirs.iter().map(|d| d.join(format!("qemu-{q}"))));
    v
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
            None => {
                let (preserve_argv0, argv0_note) = takes_argv0(path);
                return Ok(Interpreter { path: path.clone(), is_static: true, preserve_argv0, argv0_note });
            }
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

/// Whether the emulator at `path` takes the `P` flag's extra argument:
/// Debian's wrappers always do; another QEMU from 6.1 on, when the kernel
/// (5.12 and later) tells it with `AT_FLAGS`.
fn takes_argv0(path: &Path) -> (bool, Option<String>) {
    if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(WRAPPER_SUFFIX)) {
        return (true, None);
    }
    let kernel = crate::host::kernel_release().ok().and_then(|r| crate::host::parse_kernel_version(&r));
    if kernel.is_some_and(|k| k < (5, 12)) {
        return (false, Some("Linux before 5.12 tells no emulator about the P flag".to_string()));
    }
    match qemu_version(path) {
        Some(v) if v >= (6, 1) => (true, None),
        Some((a, b)) => (false, Some(format!("QEMU {a}.{b} is older than 6.1, which added the P flag"))),
        None => (false, Some(format!("{} --version names no QEMU version", path.display()))),
    }
}

/// `(major, minor)` from `qemu-aarch64 version 7.2.22 (Debian ...)`.
fn qemu_version(path: &Path) -> Option<(u32, u32)> {
    let out = Command::new(path).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.lines().next()?.split(" version ").nth(1)?;
    crate::host::parse_kernel_version(rest)
}

/// What is wrong with an existing handler for serving builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerProblem {
    /// It is switched off.
    Disabled,
    /// No `F` flag: containers, whose root has no emulator, cannot use it.
    NoFixBinary,
    /// No `P` flag: `argv[0]` is lost.
    NoPreserveArgv0,
    /// Its interpreter is not there.
    InterpreterMissing,
    /// Its interpreter is dynamically linked.
    InterpreterDynamic,
    /// It looks right, but its probe fails (the detail says how).
    ProbeFails(String),
}

impl fmt::Display for HandlerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerProblem::Disabled => f.write_str("disabled"),
            HandlerProblem::NoFixBinary => f.write_str("no F flag, so containers cannot use it"),
            HandlerProblem::NoPreserveArgv0 => {
                f.write_str("no P flag, so argv[0] is lost (busybox sh runs the wrong applet)")
            }
            HandlerProblem::InterpreterMissing => f.write_str("its interpreter is missing"),
            HandlerProblem::InterpreterDynamic => f.write_str("its interpreter is dynamically linked"),
            HandlerProblem::ProbeFails(d) => write!(f, "its probe fails: {d}"),
        }
    }
}

/// What is wrong with `h`, from its file alone (no probe).
pub fn handler_problems(h: &Handler) -> Vec<HandlerProblem> {
    let mut out = Vec::new();
    if !h.enabled {
        out.push(HandlerProblem::Disabled);
    }
    if !h.flags.fix_binary {
        out.push(HandlerProblem::NoFixBinary);
    }
    if !h.flags.preserve_argv0 {
        out.push(HandlerProblem::NoPreserveArgv0);
    }
    if !h.interpreter.exists() {
        out.push(HandlerProblem::InterpreterMissing);
    } else if elf::inspect(&h.interpreter).is_ok_and(|i| !i.is_static()) {
        out.push(HandlerProblem::InterpreterDynamic);
    }
    out
}

/// The problems of a handler serving `arch`, with its probe's verdict
/// when the file shows none.
fn problems_with_probe(h: &Handler, probed: &ProbeResult) -> Vec<HandlerProblem> {
    let mut p = handler_problems(h);
    if p.is_empty() && !probed.executes {
        p.push(HandlerProblem::ProbeFails(probed.detail.clone()));
    }
    p
}

/// The command that makes `arch` execute here after `probed` failed
/// (`None` when it passed): install QEMU if no emulator is found,
/// `--reset` when a handler is there but wrong.
pub fn remedy(arch: Arch, probed: &ProbeResult, qemu_dir: Option<&Path>) -> Option<String> {
    if probed.executes {
        return None;
    }
    let handled = BinfmtMisc::default()
        .handlers()
        .map(|hs| hs.iter().any(|h| h.matches(&arch.probe_program())))
        .unwrap_or(probed.failure != Some(Failure::NotStarted));
    let install = if handled {
        format!("polyarch binfmt install --reset {arch}")
    } else {
        format!("polyarch binfmt install {arch}")
    };
    Some(match find_interpreter(arch, qemu_dir) {
        // A handler can only keep argv[0] with an emulator that takes P.
        Ok(i) if !i.preserve_argv0 && probed.failure == Some(Failure::Argv0Lost) => {
            format!("apt-get install -y qemu-user-static (QEMU 6.1 or later) && {install}")
        }
        Ok(_) => install,
        Err(_) => format!("apt-get install -y qemu-user-static && {install}"),
    })
}

/// How [`install`] works.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The `binfmt_misc` mount point.
    pub binfmt: BinfmtMisc,
    /// Look for emulators only here.
    pub qemu_dir: Option<PathBuf>,
    /// Replace handlers that are wrong (see [`HandlerProblem`]).
    pub reset: bool,
    /// Where probes run.
    pub probe: ProbeOptions,
}

/// What [`install`] did for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum InstallAction {
    /// The host runs it natively; no handler is needed.
    Native,
    /// A right handler was already there.
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
        /// Its flags.
        flags: String,
        /// Handlers removed first (with `reset`).
        replaced: Vec<String>,
        /// Why `P` is missing, when it is.
        argv0_note: Option<String>,
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

/// Registers emulators for `archs`: mounts `binfmt_misc` (and switches it
/// on) if needed, skips what the host runs natively, keeps existing
/// handlers that are right, and replaces wrong ones only with `reset`.
/// The outer error is for the mount; each architecture has its own result.
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
    let program = arch.probe_program();
    let matching: Vec<Handler> = fs.handlers()?.into_iter().filter(|h| h.matches(&program)).collect();
    let probed = if matching.is_empty() && !host.is_some_and(|h| arch.maybe_native_on(h)) {
        None
    } else {
        Some(probe(arch, &opts.probe)?)
    };
    if let Some(p) = &probed {
        if let Some(h) = matching.iter().find(|h| problems_with_probe(h, p).is_empty()) {
            return Ok(InstallAction::AlreadyInstalled { handler: h.name.clone() });
        }
        // A compat architecture with no handler at all that runs is native.
        if matching.is_empty() && p.executes {
            return Ok(InstallAction::Native);
        }
    }
    let name = arch.handler_name();
    let mut wrong = matching;
    if let Some(h) = fs.handler(&name)? {
        if !wrong.iter().any(|w| w.name == h.name) {
            wrong.push(h);
        }
    }
    if let (false, Some(h)) = (opts.reset, wrong.first()) {
        let problems = match &probed {
            Some(p) if h.matches(&program) => problems_with_probe(h, p),
            _ => handler_problems(h),
        };
        let reasons = if problems.is_empty() {
            vec!["it matches other programs".to_string()]
        } else {
            problems.iter().map(ToString::to_string).collect()
        };
        return Err(Error::NeedsReplace {
            name: h.name.clone(),
            flags: h.flags.to_string(),
            interpreter: h.interpreter.clone(),
            reasons: reasons.join("; "),
        });
    }
    let interp = find_interpreter(arch, opts.qemu_dir.as_deref())?;
    let mut replaced = Vec::new();
    for h in &wrong {
        if fs.remove(&h.name)? {
            replaced.push(h.name.clone());
        }
    }
    let flags = Flags { preserve_argv0: interp.preserve_argv0, credentials: true, fix_binary: true, open_binary: true };
    let reg = Registration {
        name: name.clone(),
        rule: Rule::Magic { offset: 0, magic: arch.magic(), mask: Some(arch.mask()) },
        interpreter: interp.path.clone(),
        flags,
    };
    fs.register(&reg)?;
    Ok(InstallAction::Registered {
        handler: name,
        interpreter: interp.path,
        flags: flags.to_string(),
        replaced,
        argv0_note: interp.argv0_note,
    })
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
    fn candidates_prefer_the_p_wrapper_then_static_names_and_honour_qemu_dir() {
        let c = candidates(Arch::Arm64, None);
        assert_eq!(c[0], Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"));
        assert_eq!(c[1], Path::new("/usr/bin/qemu-aarch64-static"));
        assert_eq!(c[2], Path::new("/usr/local/bin/qemu-aarch64-static"));
        let d = candidates(Arch::Mips64le, Some(Path::new("/opt/q")));
        assert_eq!(
            d,
            [
                Path::new("/opt/q/mips64el-binfmt-P"),
                Path::new("/opt/q/qemu-mips64el-static"),
                Path::new("/opt/q/qemu-mips64el")
            ]
        );
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
        // A static ELF file that is no QEMU (a probe) is accepted, without P.
        std::fs::write(dir.path().join("qemu-riscv64-static"), Arch::Amd64.probe_program()).unwrap();
        let found = find_interpreter(Arch::Riscv64, Some(dir.path())).unwrap();
        assert_eq!(found.path, dir.path().join("qemu-riscv64-static"));
        assert!(found.is_static && !found.preserve_argv0, "{found:?}");
        assert!(found.argv0_note.is_some(), "{found:?}");
    }

    #[test]
    fn debian_wrappers_and_new_qemus_take_the_p_flag() {
        let wrapper = Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        let qemu = Path::new("/usr/bin/qemu-aarch64-static");
        if !wrapper.exists() || !qemu.exists() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "prerequisite missing under CI=true: qemu-user-static");
            eprintln!("skipping: qemu-user-static is not installed");
            return;
        }
        let found = find_interpreter(Arch::Arm64, None).unwrap();
        assert_eq!(found.path, wrapper);
        assert!(found.preserve_argv0 && found.argv0_note.is_none(), "{found:?}");
        // Debian 12's QEMU is 7.2: it reads the P flag from AT_FLAGS too.
        assert!(qemu_version(qemu).is_some_and(|v| v >= (6, 1)), "{:?}", qemu_version(qemu));
        assert_eq!(takes_argv0(qemu), (true, None));
    }

    fn handler(name: &str, arch: Arch, flags: &str, enabled: bool, interpreter: &Path) -> Handler {
        Handler {
            name: name.to_string(),
            enabled,
            interpreter: interpreter.to_path_buf(),
            flags: Flags::parse(flags).unwrap(),
            rule: Rule::Magic { offset: 0, magic: arch.magic(), mask: Some(arch.mask()) },
        }
    }

    #[test]
    fn handler_problems_name_each_fault() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("static");
        std::fs::write(&stat, Arch::Amd64.probe_program()).unwrap();
        let dynamic = std::env::current_exe().unwrap();
        let gone = dir.path().join("gone");
        use HandlerProblem::*;
        assert_eq!(handler_problems(&handler("a", Arch::Arm64, "POCF", true, &stat)), []);
        assert_eq!(handler_problems(&handler("a", Arch::Arm64, "PF", true, &stat)), []);
        assert_eq!(handler_problems(&handler("a", Arch::Arm64, "OCF", true, &stat)), [NoPreserveArgv0]);
        assert_eq!(handler_problems(&handler("a", Arch::Arm64, "P", false, &stat)), [Disabled, NoFixBinary]);
        assert_eq!(handler_problems(&handler("a", Arch::Arm64, "PF", true, &gone)), [InterpreterMissing]);
        assert_eq!(handler_problems(&handler("a", Arch::Arm64, "PF", true, &dynamic)), [InterpreterDynamic]);
        assert!(NoPreserveArgv0.to_string().contains("argv[0] is lost"));
    }
}
