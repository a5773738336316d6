//! Emulation commands: `binfmt status|install|uninstall`, `doctor` and
//! `builder ls`, against the host's real binfmt_misc.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use polyarch_emu::binfmt::{BinfmtMisc, Handler};
use polyarch_emu::Arch;
use serde_json::Value;

use crate::util::{is_root, require, Env};

/// binfmt_misc is global: tests that change or depend on it take turns.
static BINFMT: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    BINFMT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Root and the static emulators of the architectures used here.
fn binfmt_prerequisites() -> bool {
    require(is_root(), "root (binfmt_misc registration)")
        && ["aarch64", "mips64el"].iter().all(|q| {
            let p = format!("/usr/bin/qemu-{q}-static");
            require(Path::new(&p).exists(), &format!("{p} (apt-get install -y qemu-user-static)"))
        })
}

fn status_json(env: &Env) -> Value {
    serde_json::from_str(&env.ok(&["binfmt", "status", "--format", "json"])).expect("status JSON")
}

fn emulator<'a>(status: &'a Value, arch: &str) -> &'a Value {
    status["emulators"].as_array().expect("emulators").iter().find(|e| e["arch"] == arch).expect("arch entry")
}

fn handlers() -> Vec<Handler> {
    BinfmtMisc::default().handlers().expect("reading binfmt_misc")
}

#[test]
fn install_arm64_is_idempotent_and_status_reports_it_executing() {
    if !binfmt_prerequisites() {
        return;
    }
    let _g = lock();
    let env = Env::new();
    let before = if BinfmtMisc::default().is_mounted() { handlers() } else { Vec::new() };
    let first = env.ok(&["binfmt", "install", "arm64"]);
    assert!(first.contains("arm64:") && first.contains("executes"), "{first}");
    let second = env.ok(&["binfmt", "install", "arm64"]);
    assert!(second.contains("arm64: already installed"), "{second}");
    // Handlers that were there are untouched.
    let after = handlers();
    for h in &before {
        assert!(after.contains(h), "handler {} changed or vanished", h.name);
    }
    let s = status_json(&env);
    assert_eq!(s["mounted"], true);
    assert_eq!(s["enabled"], true);
    let arm64 = emulator(&s, "arm64");
    assert_eq!(arm64["executes"], true, "{arm64}");
    assert_eq!(arm64["native"], false, "{arm64}");
    assert_eq!(arm64["fix_binary"], true, "{arm64}");
    assert_eq!(arm64["interpreter_static"], true, "{arm64}");
    assert_eq!(arm64["probe"], "exit status 0");
    let emulated: Vec<&str> = s["emulated"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(emulated.contains(&"linux/arm64"), "{emulated:?}");
    let host = Arch::host().expect("known host");
    assert_eq!(s["native"][0], format!("linux/{}", host.name()));
    assert_eq!(emulator(&s, host.name())["native"], true);
    // The table shows the same.
    let table = env.ok(&["binfmt", "status"]);
    assert!(table.starts_with("binfmt_misc: /proc/sys/fs/binfmt_misc (mounted, enabled)"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("linux/arm64 ") && l.contains(" yes ")), "{table}");
    assert!(table.contains("supported: linux/"), "{table}");
}

/// Puts a handler back as it was when dropped, even if the test panics.
struct Restore {
    name: String,
    original: Option<Handler>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let fs = BinfmtMisc::default();
        if fs.handler(&self.name).ok().flatten() == self.original {
            return;
        }
        let _ = fs.remove(&self.name);
        if let Some(h) = &self.original {
            if let Err(e) = fs.register(&h.registration()) {
                eprintln!("could not restore binfmt handler {}: {e}", h.name);
            }
        }
    }
}

// mips64le rather than arm64, so that builds running at the same time
// keep their emulator.
#[test]
fn uninstall_then_reinstall_restores_the_original_handler() {
    if !binfmt_prerequisites() {
        return;
    }
    let _g = lock();
    let env = Env::new();
    env.ok(&["binfmt", "install", "mips64le"]);
    let fs = BinfmtMisc::default();
    let name = "qemu-mips64el";
    let original = fs.handler(name).expect("reading handler");
    let others: Vec<Handler> = handlers().into_iter().filter(|h| h.name != name).collect();
    let restore = Restore { name: name.to_string(), original: original.clone() };

    let out = env.ok(&["binfmt", "uninstall", "mips64le"]);
    assert_eq!(out.trim(), format!("mips64le: removed {name}"));
    let s = status_json(&env);
    let e = emulator(&s, "mips64le");
    let names: Vec<&str> = e["handlers"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!names.contains(&name), "{e}");
    if names.is_empty() {
        assert_eq!(e["executes"], false, "{e}");
        assert_eq!(e["installed"], false, "{e}");
    }
    let again = env.ok(&["binfmt", "uninstall", "mips64le"]);
    assert_eq!(again.trim(), format!("mips64le: {name} not installed"));

    let out = env.ok(&["binfmt", "install", "mips64le"]);
    assert!(out.contains(&format!("mips64le: installed {name} -> /")) && out.contains("executes"), "{out}");
    let h = fs.handler(name).unwrap().expect("registered");
    assert!(h.enabled && h.flags.fix_binary && h.flags.credentials, "{h:?}");
    let s = status_json(&env);
    assert_eq!(emulator(&s, "mips64le")["executes"], true);

    drop(restore);
    assert_eq!(fs.handler(name).unwrap(), original, "original handler restored");
    let now: Vec<Handler> = handlers().into_iter().filter(|h| h.name != name).collect();
    assert_eq!(now, others, "other handlers untouched");
}

#[test]
fn unknown_architectures_are_rejected() {
    let env = Env::new();
    let err = env.fails(&["binfmt", "install", "sparc"]);
    assert!(err.contains("unknown architecture \"sparc\""), "{err}");
    let err = env.fails(&["binfmt", "uninstall", "vax"]);
    assert!(err.contains("unknown architecture"), "{err}");
}

const CHECKS: [&str; 10] = [
    "kernel",
    "binfmt_misc",
    "emulator linux/arm64",
    "overlayfs",
    "mount namespace",
    "user namespace",
    "OCI runtime",
    "disk space",
    "registry config",
    "docker credentials",
];

#[test]
fn doctor_reports_every_check() {
    let env = Env::new();
    let out = env.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    for c in CHECKS {
        let named =
            |l: &str| l.split_once(']').is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{c}:")));
        assert!(text.lines().any(named), "no {c} check in:\n{text}");
    }
    let fails = text.lines().filter(|l| l.starts_with("[FAIL]")).count();
    assert_eq!(code == Some(1), fails > 0, "{text}");
    let json = env.run(&["doctor", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&json.stdout).expect("doctor JSON");
    let names: Vec<&str> = doc["checks"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    for c in CHECKS {
        assert!(names.contains(&c), "{names:?}");
    }
    assert_eq!(doc["ok"], json.status.success());
}

#[test]
fn doctor_fails_on_a_broken_docker_config_and_registry_config() {
    let env = Env::new();
    std::fs::write(env.docker_config().join("config.json"), "{not json").unwrap();
    std::fs::write(env.config_file(), "[registry.\"x\"\nmirrors = 3").unwrap();
    let out = env.run(&["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    let check = |n: &str| doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == n).cloned().unwrap();
    let docker = check("docker credentials");
    assert_eq!(docker["status"], "fail", "{docker}");
    assert!(docker["detail"].as_str().unwrap().contains("config.json"), "{docker}");
    assert!(docker["fix"].is_string());
    let reg = check("registry config");
    assert_eq!(reg["status"], "fail", "{reg}");
    assert!(reg["fix"].as_str().unwrap().contains("polyarch.toml"), "{reg}");
    assert_eq!(doc["ok"], false);
}

#[test]
fn builder_ls_lists_native_platforms_first_then_emulated_ones() {
    if !binfmt_prerequisites() {
        return;
    }
    let _g = lock();
    let env = Env::new();
    env.ok(&["binfmt", "install", "arm64"]);
    let out = env.ok(&["builder", "ls"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let cols: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(cols, ["NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "POLYARCH", "PLATFORMS"]);
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["default*", "polyarch"]);
    let node = lines[2];
    assert!(node.starts_with(" \\_ default") && node.contains(" \\_ local"), "{node}");
    assert!(node.contains(&format!(" running   v{} ", env!("CARGO_PKG_VERSION"))), "{node}");
    // The PLATFORMS column lines up with its header.
    let col = lines[0].find("PLATFORMS").unwrap();
    let platforms: Vec<&str> = node[col..].split(", ").collect();
    let host = format!("linux/{}", Arch::host().expect("known host").name());
    assert!(platforms[0] == host || platforms[0].starts_with(&format!("{host} (+")), "{platforms:?}");
    let arm64 = platforms.iter().position(|p| *p == "linux/arm64").expect("linux/arm64 listed");
    assert!(arm64 > 0);
    let json: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    let ps: Vec<&str> = json[0]["nodes"][0]["platforms"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(ps[0], host);
    assert!(ps.contains(&"linux/arm64"), "{ps:?}");
}

/// Runs `script` as root of a new user namespace with its own, empty
/// binfmt_misc instance (Linux 6.7 and later), so registrations can be
/// tried from scratch without touching the host's. Returns stdout.
fn in_private_binfmt(script: &str) -> Option<String> {
    let release = polyarch_emu::host::kernel_release().expect("kernel release");
    let version = polyarch_emu::host::parse_kernel_version(&release).unwrap_or((0, 0));
    if !require(version >= (6, 7), &format!("Linux 6.7+ for a private binfmt_misc (have {release})"))
        || !require(crate::util::have("unshare"), "unshare (util-linux)")
        || !require(Path::new("/usr/bin/qemu-aarch64-static").exists(), "qemu-user-static")
    {
        return None;
    }
    let mount = "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 99\n";
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{mount}{script}"))
        .env("PA", env!("CARGO_BIN_EXE_polyarch"))
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    Some(stdout)
}

#[test]
fn install_from_scratch_and_replace_a_handler_without_f() {
    // A handler for arm64 as a distribution without F would register it.
    let arm64 = Arch::Arm64;
    let esc = |b: &[u8]| b.iter().map(|x| format!("\\\\x{x:02x}")).collect::<String>();
    let line =
        format!(":qemu-aarch64:M:0:{}:{}:/usr/bin/qemu-aarch64-static:", esc(&arm64.magic()), esc(&arm64.mask()));
    let script = format!(
        r#"B=/proc/sys/fs/binfmt_misc
echo "empty: $(ls $B | tr '\n' ' ')"
"$PA" binfmt install riscv64
echo "riscv64: $(sed -n 3p $B/qemu-riscv64)"
printf '%s' '{line}' > $B/register
echo "weak: $(sed -n 3p $B/qemu-aarch64)"
if "$PA" binfmt install arm64; then echo "no-replace: ok"; else echo "no-replace: failed $?"; fi
"$PA" binfmt install --replace arm64
echo "replaced: $(sed -n 3p $B/qemu-aarch64)"
"$PA" binfmt status --format json | tr -d ' \n' | grep -o '"arch":"arm64"[^}}]*' | grep -o '"executes":[a-z]*'
"$PA" binfmt uninstall all
echo "left: $(ls $B | tr '\n' ' ')"
"#
    );
    let Some(out) = in_private_binfmt(&script) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    let find = |p: &str| lines.iter().find(|l| l.starts_with(p)).copied().unwrap_or_else(|| panic!("no {p} in\n{out}"));
    assert_eq!(find("empty:").trim(), "empty: register status");
    assert_eq!(find("riscv64: installed"), "riscv64: installed qemu-riscv64 -> /usr/bin/qemu-riscv64-static; executes");
    assert_eq!(find("riscv64: flags"), "riscv64: flags: OCF");
    assert_eq!(find("weak:"), "weak: flags: ");
    let refused = find("arm64: error:");
    assert!(
        refused.contains("handler qemu-aarch64 exists")
            && refused.ends_with("(polyarch binfmt install --replace arm64)"),
        "{refused}"
    );
    assert_eq!(find("no-replace:"), "no-replace: failed 1");
    let replaced = find("arm64: installed");
    assert!(replaced.ends_with("(replaced qemu-aarch64); executes"), "{replaced}");
    assert_eq!(find("replaced:"), "replaced: flags: OCF");
    assert_eq!(find("\"executes\""), "\"executes\":true");
    assert!(out.contains("arm64: removed qemu-aarch64\n") && out.contains("riscv64: removed qemu-riscv64\n"), "{out}");
    assert_eq!(find("left:").trim(), "left: register status");
}
