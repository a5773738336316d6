//! `polyarch doctor`: checks what a multi-platform build needs and prints
//! the command that fixes each problem.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use clap::Args;
use polyarch_emu::{host, EmulatorStatus, Status};
use polyarch_registry::DockerConfig;
use serde::Serialize;

use super::binfmt::{host_status, outln, StatusFormat};
use super::{context, GlobalArgs};

/// Below this much free space under the store a build fails.
const DISK_FAIL: u64 = 1 << 30;
/// Below this much a warning.
const DISK_WARN: u64 = 5 << 30;

#[derive(Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    status: Level,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(name: impl Into<String>, status: Level, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { name: name.into(), status, detail: detail.into(), fix }
}

pub fn run(global: &GlobalArgs, args: DoctorArgs) -> Result<u8> {
    let mut checks = vec![kernel()];
    match host_status(None) {
        Ok(s) => {
            checks.push(binfmt_mount(&s));
            checks.extend(s.emulators.iter().filter(|e| Some(e.arch) != s.host).map(emulator));
        }
        Err(e) => checks.push(check("binfmt_misc", Level::Fail, crate::report::Chain(&e).to_string(), None)),
    }
    let root = context::private_data_root(global).unwrap_or_else(|_| context::data_root(global));
    checks.push(overlay(&root));
    checks.extend(namespaces());
    checks.push(runtime());
    checks.push(disk(&root));
    checks.push(registry_config(global));
    checks.push(docker_config());
    let failed = checks.iter().any(|c| c.status == Level::Fail);
    if args.format == StatusFormat::Json {
        let doc = serde_json::json!({ "ok": !failed, "checks": checks });
        outln(&serde_json::to_string_pretty(&doc)?);
    } else {
        for c in &checks {
            let tag = match c.status {
                Level::Ok => "[ok]  ",
                Level::Warn => "[warn]",
                Level::Fail => "[FAIL]",
            };
            outln(&format!("{tag} {}: {}", c.name, c.detail));
            if let Some(fix) = &c.fix {
                outln(&format!("       fix: {fix}"));
            }
        }
        let n = checks.iter().filter(|c| c.status == Level::Fail).count();
        outln(&if n == 0 { "no problems found".to_string() } else { format!("{n} problem(s) found") });
    }
    Ok(u8::from(failed))
}

fn kernel() -> Check {
    match host::kernel_release() {
        // The F flag of binfmt_misc arrived in Linux 4.8.
        Ok(r) => match host::parse_kernel_version(&r) {
            Some(v) if v >= (4, 8) => check("kernel", Level::Ok, r, None),
            _ => check("kernel", Level::Fail, format!("{r}: Linux 4.8 or later is needed for emulation"), None),
        },
        Err(e) => check("kernel", Level::Fail, e.to_string(), None),
    }
}

fn binfmt_mount(s: &Status) -> Check {
    let at = s.mount.display();
    match (s.mounted, s.enabled) {
        (false, _) => check(
            "binfmt_misc",
            Level::Fail,
            format!("not mounted at {at}"),
            Some("polyarch binfmt install all (or: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)".into()),
        ),
        (true, Some(false)) => {
            check("binfmt_misc", Level::Fail, format!("disabled at {at}"), Some(format!("echo 1 > {at}/status")))
        }
        _ => check("binfmt_misc", Level::Ok, format!("mounted at {at}, enabled"), None),
    }
}

fn emulator(e: &EmulatorStatus) -> Check {
    let name = format!("emulator {}", e.arch.platforms().iter().map(|p| p.format()).collect::<Vec<_>>().join(","));
    if e.executes() && e.native {
        return check(name, Level::Ok, "runs natively", None);
    }
    let Some(h) = e.shown() else {
        if e.executes() {
            return check(
                name,
                Level::Warn,
                "executes, but its handler cannot be checked while binfmt_misc is not mounted",
                Some("mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc".into()),
            );
        }
        // Images are commonly published for buildkit's architectures; the
        // others Debian emulates are a warning when missing.
        let level = if e.arch.is_common() { Level::Fail } else { Level::Warn };
        return check(name, level, format!("no emulator registered: {}", e.probe.detail), e.fix.clone());
    };
    let d =
        format!("{} ({}, flags {:?})", h.handler.name, h.handler.interpreter.display(), h.handler.flags.to_string());
    if e.executes() && h.problems.is_empty() {
        return check(name, Level::Ok, format!("{d}: {}", e.probe.detail), None);
    }
    let mut why: Vec<String> = h.problems.iter().map(ToString::to_string).collect();
    if !e.executes() && !why.iter().any(|w| w.contains(&e.probe.detail)) {
        why.push(format!("probe: {}", e.probe.detail));
    }
    let fix = e.fix.clone().or_else(|| Some(format!("polyarch binfmt install --reset {}", e.arch.name())));
    check(name, Level::Fail, format!("{d}: {}", why.join("; ")), fix)
}

fn overlay(root: &Path) -> Check {
    if !host::is_root() {
        return check("overlayfs", Level::Fail, "mounting needs root", Some("run polyarch as root".into()));
    }
    match host::check_overlay(root) {
        Ok(()) => check("overlayfs", Level::Ok, format!("mounts under {}", root.display()), None),
        Err(e) => check("overlayfs", Level::Fail, e.to_string(), Some("modprobe overlay".into())),
    }
}

fn namespaces() -> Vec<Check> {
    let tmp = std::env::temp_dir();
    // Without root, a mount namespace comes with a user namespace.
    let rootless = !host::is_root();
    let mnt = match host::check_unshare(rootless, &tmp) {
        Ok(()) if rootless => check("mount namespace", Level::Ok, "unshare(CLONE_NEWUSER|CLONE_NEWNS) works", None),
        Ok(()) => check("mount namespace", Level::Ok, "unshare(CLONE_NEWNS) works", None),
        Err(e) => check("mount namespace", Level::Fail, e.to_string(), Some("run polyarch as root".into())),
    };
    let user = match host::check_unshare(true, &tmp) {
        Ok(()) => check("user namespace", Level::Ok, "unshare(CLONE_NEWUSER) works", None),
        // Root builds do not need user namespaces; rootless ones do.
        Err(e) => check(
            "user namespace",
            if host::is_root() { Level::Warn } else { Level::Fail },
            e.to_string(),
            Some("sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1".into()),
        ),
    };
    vec![mnt, user]
}

fn runtime() -> Check {
    match Command::new("runc").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let v = String::from_utf8_lossy(&out.stdout);
            check("OCI runtime", Level::Ok, v.lines().next().unwrap_or("runc").to_string(), None)
        }
        Ok(out) => check(
            "OCI runtime",
            Level::Fail,
            format!("runc --version failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            Some("apt-get install -y --reinstall runc".into()),
        ),
        Err(e) => check("OCI runtime", Level::Fail, format!("runc: {e}"), Some("apt-get install -y runc".into())),
    }
}

fn human(bytes: u64) -> String {
    format!("{:.1}GiB", bytes as f64 / f64::from(1u32 << 30))
}

fn disk(root: &Path) -> Check {
    match host::disk_space(root) {
        Ok((at, free, total)) => {
            let d = format!("{} free of {} at {}", human(free), human(total), at.display());
            let fix = || Some(format!("free space under {} or pass --root DIR", at.display()));
            match free {
                f if f < DISK_FAIL => check("disk space", Level::Fail, d, fix()),
                f if f < DISK_WARN => check("disk space", Level::Warn, d, fix()),
                _ => check("disk space", Level::Ok, d, None),
            }
        }
        Err(e) => check("disk space", Level::Fail, e.to_string(), None),
    }
}

fn registry_config(global: &GlobalArgs) -> Check {
    let path = global.config.clone().or_else(polyarch_registry::config::default_path);
    let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into());
    match context::registry_config(global) {
        Ok(_) => check("registry config", Level::Ok, format!("{shown} parses"), None),
        Err(e) => check(
            "registry config",
            Level::Fail,
            crate::report::Chain(&e).to_string(),
            Some(format!("fix or remove {shown}")),
        ),
    }
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn docker_config() -> Check {
    let name = "docker credentials";
    match DockerConfig::load() {
        Ok(c) => {
            let shown = c.path().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into());
            if let Some(store) = c.creds_store() {
                let helper = format!("docker-credential-{store}");
                if !on_path(&helper) {
                    return check(
                        name,
                        Level::Fail,
                        format!("{shown} uses credsStore {store:?} but {helper} is not on PATH"),
                        Some(format!("install {helper} or remove credsStore from {shown}")),
                    );
                }
            }
            check(name, Level::Ok, format!("{shown} is readable"), None)
        }
        Err(e) => check(name, Level::Fail, e.to_string(), Some("fix the JSON or its permissions".into())),
    }
}
