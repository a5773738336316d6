//! `polyarch binfmt`: show, install and remove the QEMU emulators the
//! kernel runs foreign-architecture programs with (as tonistiigi/binfmt).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use polyarch_emu::binfmt::BinfmtMisc;
use polyarch_emu::{
    Arch, EmulatorStatus, Failure, InstallAction, InstallOptions, ProbeOptions, Status, UninstallAction,
};
use serde_json::{json, Value};

use super::GlobalArgs;

/// `--format` of the status commands.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum StatusFormat {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

#[derive(Subcommand)]
pub enum BinfmtCommand {
    /// Show the binfmt_misc handlers of each architecture and which
    /// platforms really execute (found by running a tiny program for each).
    Status(StatusArgs),
    /// Register QEMU emulators with binfmt_misc (needs root).
    Install(InstallArgs),
    /// Remove polyarch's QEMU handlers (`qemu-<arch>`) from binfmt_misc.
    Uninstall(UninstallArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: StatusFormat,
    /// Look for emulators only in this directory.
    #[arg(long, value_name = "DIR")]
    qemu_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct InstallArgs {
    /// Architectures or platforms (`arm64`, `linux/arm/v7`, `riscv64,s390x`),
    /// or `all` for every one an emulator is found for.
    #[arg(required = true, value_name = "ARCH", value_delimiter = ',')]
    archs: Vec<String>,
    /// Look for `qemu-<arch>-static` only in this directory.
    #[arg(long, value_name = "DIR")]
    qemu_dir: Option<PathBuf>,
    /// Replace handlers that are wrong: disabled, without F or P, or with a
    /// missing or dynamically linked emulator (as
    /// multiarch/qemu-user-static --reset).
    #[arg(long, alias = "replace")]
    reset: bool,
    /// Kept for compatibility: P is set whenever the emulator takes it.
    #[arg(long, hide = true)]
    preserve_argv0: bool,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Architectures or platforms, or `all`.
    #[arg(required = true, value_name = "ARCH", value_delimiter = ',')]
    archs: Vec<String>,
}

pub fn run(_global: &GlobalArgs, cmd: BinfmtCommand) -> Result<u8> {
    match cmd {
        BinfmtCommand::Status(a) => status(a),
        BinfmtCommand::Install(a) => install(a),
        BinfmtCommand::Uninstall(a) => uninstall(a),
    }
}

/// Expands `all` and parses names; `all` is reported as `true`.
fn parse_archs(names: &[String]) -> Result<(Vec<Arch>, bool)> {
    if names.iter().any(|n| n == "all") {
        return Ok((Arch::ALL.to_vec(), true));
    }
    let mut out = Vec::new();
    for n in names.iter().filter(|n| !n.trim().is_empty()) {
        let a = Arch::parse(n)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        bail!("no architecture given");
    }
    Ok((out, false))
}

/// Reads everything, probing every architecture.
pub fn host_status(qemu_dir: Option<&std::path::Path>) -> Result<Status> {
    polyarch_emu::status(&BinfmtMisc::default(), qemu_dir, &ProbeOptions::default()).context("reading binfmt_misc")
}

fn platforms(archs: &[Arch]) -> Vec<String> {
    archs.iter().flat_map(|a| a.platforms()).map(|p| p.format()).collect()
}

/// One architecture's JSON object.
pub fn emulator_json(e: &EmulatorStatus) -> Value {
    let h = e.shown();
    json!({
        "arch": e.arch.name(),
        "platforms": platforms(&[e.arch]),
        "name": e.name,
        "installed": !e.handlers.is_empty(),
        "handler": h.map(|h| h.handler.name.clone()),
        "enabled": h.map(|h| h.handler.enabled),
        "interpreter": h.map(|h| h.handler.interpreter.display().to_string()),
        "flags": h.map(|h| h.handler.flags.to_string()),
        "fix_binary": h.map(|h| h.handler.flags.fix_binary),
        "interpreter_static": h.and_then(|h| h.interpreter_static),
        "handlers": e.handlers.iter().map(|h| h.handler.name.clone()).collect::<Vec<_>>(),
        "available": e.available.as_ref().ok().map(|i| i.path.display().to_string()),
        "available_error": e.available.as_ref().err(),
        "problems": h.map(|h| h.problems.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
        "native": e.native,
        "executes": e.executes(),
        "probe": e.probe.detail,
        "failure": e.probe.failure,
        "fix": e.fix,
    })
}

/// The whole status as JSON.
pub fn status_json(s: &Status) -> Value {
    let native = platforms(&s.native());
    let emulated = platforms(&s.emulated());
    json!({
        "mount": s.mount.display().to_string(),
        "mounted": s.mounted,
        "enabled": s.enabled,
        "host": s.host.map(|a| format!("linux/{}", a.name())),
        "supported": native.iter().chain(&emulated).collect::<Vec<_>>(),
        "native": native,
        "emulated": emulated,
        "emulators": s.emulators.iter().map(emulator_json).collect::<Vec<_>>(),
    })
}

/// Writes to stdout; a closed pipe (`polyarch binfmt status | head`) ends
/// the process quietly, as other command-line tools do.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = crate::report::Stdout;
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// [`out`] with a newline.
pub fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// Left-aligned columns three spaces apart; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}", w = widths[i] + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One architecture's row of the status table.
fn status_row(e: &EmulatorStatus) -> Vec<String> {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let h = e.shown();
    let executes = match (e.executes(), e.native, e.probe.failure) {
        (true, true, _) => "native".to_string(),
        (_, _, Some(Failure::Argv0Lost | Failure::ReexecFailed)) => "broken".to_string(),
        (x, _, _) => yes(x),
    };
    let problems = h.map(|h| h.problems.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default();
    vec![
        platforms(&[e.arch]).join(","),
        h.map(|h| h.handler.name.clone()).unwrap_or_else(|| "-".into()),
        h.map(|h| h.handler.flags.to_string()).filter(|f| !f.is_empty()).unwrap_or_else(|| "-".into()),
        h.and_then(|h| h.interpreter_static).map(yes).unwrap_or_else(|| "-".into()),
        h.map(|h| yes(h.handler.enabled)).unwrap_or_else(|| "-".into()),
        executes,
        h.map(|h| h.handler.interpreter.display().to_string()).unwrap_or_else(|| "-".into()),
        if problems.is_empty() { "-".to_string() } else { problems.join("; ") },
    ]
}

fn status(args: StatusArgs) -> Result<u8> {
    let s = host_status(args.qemu_dir.as_deref())?;
    if args.format == StatusFormat::Json {
        outln(&serde_json::to_string_pretty(&status_json(&s))?);
        return Ok(0);
    }
    let state = match (s.mounted, s.enabled) {
        (false, _) => "not mounted".to_string(),
        (true, Some(false)) => "mounted, disabled".to_string(),
        _ => "mounted, enabled".to_string(),
    };
    outln(&format!("binfmt_misc: {} ({state})", s.mount.display()));
    let mut rows = vec![["PLATFORMS", "HANDLER", "FLAGS", "STATIC", "ENABLED", "EXECUTES", "INTERPRETER", "PROBLEMS"]
        .map(String::from)
        .to_vec()];
    rows.extend(s.emulators.iter().map(status_row));
    // How to fix each architecture whose handler is there but wrong.
    let fixes = s.emulators.iter().filter(|e| !e.handlers.is_empty()).filter_map(|e| {
        e.fix.as_ref().map(|fix| format!("{}: {}; fix: {fix}", platforms(&[e.arch]).join(","), e.probe.detail))
    });
    let fixes: Vec<String> = fixes.collect();
    out(&table(&rows));
    for f in &fixes {
        outln(f);
    }
    let mut supported = platforms(&s.native());
    supported.extend(platforms(&s.emulated()));
    outln(&format!("supported: {}", supported.join(", ")));
    Ok(0)
}

fn install(args: InstallArgs) -> Result<u8> {
    let (archs, all) = parse_archs(&args.archs)?;
    let opts = InstallOptions { qemu_dir: args.qemu_dir.clone(), reset: args.reset, ..InstallOptions::default() };
    // `all` means every architecture an emulator is found for.
    let archs: Vec<Arch> = archs
        .into_iter()
        .filter(|&a| {
            !all || Some(a) == Arch::host() || polyarch_emu::find_interpreter(a, args.qemu_dir.as_deref()).is_ok()
        })
        .collect();
    let reports = polyarch_emu::install(&archs, &opts).context(
        "binfmt_misc is needed (run as root, or: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)",
    )?;
    let probe = ProbeOptions::default();
    let mut failed = false;
    for r in reports {
        let (line, ok) = install_line(r, &probe)?;
        outln(&line);
        failed |= !ok;
    }
    Ok(u8::from(failed))
}

/// What `install` says for one architecture, and whether it went well:
/// a registered or kept handler is probed again.
fn install_line(r: polyarch_emu::InstallReport, probe: &ProbeOptions) -> Result<(String, bool)> {
    let name = r.arch.name();
    let what = match r.result {
        Ok(InstallAction::Native) => return Ok((format!("{name}: native, no emulator needed"), true)),
        Ok(InstallAction::AlreadyInstalled { handler }) => format!("already installed ({handler})"),
        Ok(InstallAction::Registered { handler, interpreter, flags, replaced, argv0_note }) => {
            let mut w = format!("installed {handler} -> {} (flags {flags})", interpreter.display());
            if !replaced.is_empty() {
                w.push_str(&format!(" (replaced {})", replaced.join(", ")));
            }
            if let Some(note) = argv0_note {
                w.push_str(&format!(" without P, so argv[0] is lost: {note}"));
            }
            w
        }
        Err(e) => {
            let hint = match e.kind() {
                polyarch_emu::ErrorKind::NotFound => " (apt-get install -y qemu-user-static)".to_string(),
                polyarch_emu::ErrorKind::PermissionDenied => " (run as root)".to_string(),
                polyarch_emu::ErrorKind::Conflict if matches!(e, polyarch_emu::Error::NeedsReplace { .. }) => {
                    format!(" (polyarch binfmt install --reset {name})")
                }
                _ => String::new(),
            };
            return Ok((format!("{name}: error: {e}{hint}"), false));
        }
    };
    let p = polyarch_emu::probe(r.arch, probe)?;
    Ok(if p.executes {
        (format!("{name}: {what}; executes"), true)
    } else {
        (format!("{name}: {what}; does NOT execute: {}", p.detail), false)
    })
}

fn uninstall(args: UninstallArgs) -> Result<u8> {
    let (archs, _) = parse_archs(&args.archs)?;
    let reports = polyarch_emu::uninstall(&archs, &BinfmtMisc::default())?;
    let mut failed = false;
    for r in reports {
        let name = r.arch.name();
        match r.result {
            Ok(UninstallAction::Removed { handler }) => outln(&format!("{name}: removed {handler}")),
            Ok(UninstallAction::NotInstalled { handler }) => outln(&format!("{name}: {handler} not installed")),
            Err(e) => {
                failed = true;
                outln(&format!("{name}: error: {e}"));
            }
        }
    }
    Ok(u8::from(failed))
}
