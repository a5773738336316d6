//! Emulation commands: `binfmt status|install|uninstall`, `doctor` and
//! `builder ls`. Every test that registers, removes or replaces handlers
//! does so in a private binfmt_misc instance of its own user namespace
//! (Linux 6.7 and later), never in the host's, which other tests use;
//! builds use the host's handlers as `scripts/test.sh` registers them.

use std::path::Path;

use polyarch_emu::binfmt::{Flags, Registration, Rule};
use polyarch_emu::Arch;
use serde_json::Value;

use crate::util::{context, mirrored_for_run, require, s, Env};

/// The architectures `scripts/test.sh` registers.
const SUITE: &str = "arm64,arm,ppc64le,s390x,riscv64,mips64le";

fn emulator<'a>(status: &'a Value, arch: &str) -> &'a Value {
    status["emulators"].as_array().expect("emulators").iter().find(|e| e["arch"] == arch).expect("arch entry")
}

/// Runs `script` as root of a new user namespace with its own, empty
/// binfmt_misc instance, so registrations can be tried from scratch
/// without touching the host's. `$PA` is polyarch, `$B` the mount point;
/// `vars` are more environment variables. Returns stdout.
fn in_private_binfmt(script: &str, vars: &[(&str, String)]) -> Option<String> {
    let release = polyarch_emu::host::kernel_release().expect("kernel release");
    let version = polyarch_emu::host::parse_kernel_version(&release).unwrap_or((0, 0));
    if !require(version >= (6, 7), &format!("Linux 6.7+ for a private binfmt_misc (have {release})"))
        || !require(crate::util::have("unshare"), "unshare (util-linux)")
        || !["aarch64", "arm", "ppc64le", "s390x", "riscv64", "mips64el"].iter().all(|q| {
            let p = format!("/usr/libexec/qemu-binfmt/{q}-binfmt-P");
            require(Path::new(&p).exists(), &format!("{p} (apt-get install -y qemu-user-static)"))
        })
    {
        return None;
    }
    let mount = "B=/proc/sys/fs/binfmt_misc\nmount -t binfmt_misc binfmt_misc $B || exit 99\n";
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{mount}{script}"))
        .env("PA", env!("CARGO_BIN_EXE_polyarch"))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    Some(stdout)
}

/// The `register` line of a handler for `arch` with `interpreter` and
/// `flags`, as another tool would have written it.
fn line(arch: Arch, interpreter: &str, flags: &str) -> String {
    Registration {
        name: arch.handler_name(),
        rule: Rule::Magic { offset: 0, magic: arch.magic(), mask: Some(arch.mask()) },
        interpreter: interpreter.into(),
        flags: Flags::parse(flags).unwrap(),
    }
    .line()
    .unwrap()
}

/// The lines of `out` starting with `prefix`.
fn lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

const QEMUS: [(&str, &str); 6] = [
    ("arm64", "aarch64"),
    ("arm", "arm"),
    ("ppc64le", "ppc64le"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
    ("mips64le", "mips64el"),
];

#[test]
fn install_from_nothing_registers_p_handlers_and_is_idempotent() {
    let script = format!(
        r#"echo "empty: $(ls $B | tr '\n' ' ')"
"$PA" binfmt install {SUITE}
for h in aarch64 arm ppc64le s390x riscv64 mips64el; do echo "flags $h: $(sed -n 3p $B/qemu-$h)"; done
"$PA" binfmt install {SUITE} | sed 's/^/again /'
"$PA" binfmt status --format json > status.json 2>&1 || true
cat status.json | tr -d '\n' | sed 's/^/json /'; echo
"$PA" binfmt status | sed 's/^/table /'
"$PA" builder ls --format json | tr -d '\n' | sed 's/^/ls /'; echo
"$PA" binfmt uninstall all > /dev/null
echo "left: $(ls $B | tr '\n' ' ')"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let script = format!("cd {}\n{script}", dir.path().display());
    let Some(out) = in_private_binfmt(&script, &[]) else { return };
    assert_eq!(lines(&out, "empty:"), ["empty: register status "], "{out}");
    for (arch, q) in QEMUS {
        let want =
            format!("{arch}: installed qemu-{q} -> /usr/libexec/qemu-binfmt/{q}-binfmt-P (flags POCF); executes");
        assert_eq!(lines(&out, &format!("{arch}: ")), [want.as_str()], "{out}");
        assert_eq!(lines(&out, &format!("flags {q}:")), [format!("flags {q}: flags: POCF")], "{out}");
        assert_eq!(
            lines(&out, &format!("again {arch}:")),
            [format!("again {arch}: already installed (qemu-{q}); executes")]
        );
    }
    let json = lines(&out, "json ")[0].strip_prefix("json ").unwrap();
    let status: Value = serde_json::from_str(json).expect("status JSON");
    for (arch, _) in QEMUS {
        let e = emulator(&status, arch);
        assert_eq!(e["executes"], true, "{e}");
        assert_eq!(e["flags"], "POCF", "{e}");
        assert_eq!(e["problems"], serde_json::json!([]), "{e}");
        assert_eq!(e["failure"], Value::Null, "{e}");
        assert_eq!(e["probe"], "argv[0] and re-exec through /proc/self/exe intact", "{e}");
    }
    // Every architecture Debian ships an emulator for is known: the
    // unregistered ones say how to register them.
    for arch in ["sparc64", "ppc64", "mips", "mipsle", "riscv32", "m68k", "alpha", "hppa", "sh4"] {
        let e = emulator(&status, arch);
        assert_eq!(e["executes"], false, "{e}");
        assert_eq!(e["fix"], format!("polyarch binfmt install {arch}"), "{e}");
    }
    let table = lines(&out, "table linux/arm64 ");
    assert!(table.len() == 1 && table[0].contains(" POCF ") && table[0].ends_with(" -"), "{out}");
    // builder ls lists the host first, then the emulated platforms.
    let ls: Value = serde_json::from_str(lines(&out, "ls ")[0].strip_prefix("ls ").unwrap()).unwrap();
    let ps: Vec<&str> = ls[0]["nodes"][0]["platforms"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(ps[0], format!("linux/{}", Arch::host().unwrap().name()), "{ps:?}");
    for p in ["linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64", "linux/mips64le"] {
        assert!(ps.contains(&p), "{p} in {ps:?}");
    }
    assert!(!ps.contains(&"linux/sparc64"), "{ps:?}");
    assert_eq!(lines(&out, "left:"), ["left: register status "], "{out}");
}

#[test]
fn debian_handlers_are_kept_as_they_are() {
    // As update-binfmts registers them when qemu-user-static is installed.
    let mut script = String::new();
    let mut vars = Vec::new();
    for (arch, q) in QEMUS {
        let a = Arch::parse(arch).unwrap();
        vars.push((q, line(a, &format!("/usr/libexec/qemu-binfmt/{q}-binfmt-P"), "PF")));
        script.push_str(&format!("printf '%s' \"${q}\" > $B/register\n"));
    }
    script.push_str(&format!(
        "before=$(cat $B/qemu-*)\n\"$PA\" binfmt install --reset {SUITE}\n\
         [ \"$before\" = \"$(cat $B/qemu-*)\" ] && echo unchanged\n\
         \"$PA\" doctor | grep 'emulator linux/' | sed 's/^/doctor /'\n"
    ));
    let vars: Vec<(&str, String)> = vars;
    let Some(out) = in_private_binfmt(&script, &vars) else { return };
    for (arch, q) in QEMUS {
        assert_eq!(
            lines(&out, &format!("{arch}: ")),
            [format!("{arch}: already installed (qemu-{q}); executes")],
            "{out}"
        );
    }
    assert_eq!(lines(&out, "unchanged"), ["unchanged"], "{out}");
    let arm64 = lines(&out, "doctor [ok]   emulator linux/arm64: qemu-aarch64");
    assert_eq!(arm64.len(), 1, "{out}");
    // The suite's architectures pass; only missing ones fail.
    let failed = lines(&out, "doctor [FAIL]");
    assert!(failed.iter().all(|l| l.contains(": no emulator registered:")), "{out}");
}

#[test]
fn broken_handlers_are_reported_and_reset() {
    // What `polyarch binfmt install` registered before: the static
    // emulators with OCF, which lose argv[0]; and one without F.
    let mut vars = vec![];
    let mut script = String::new();
    for (arch, q) in QEMUS {
        let (interpreter, flags) = match arch {
            "s390x" => (format!("/usr/bin/qemu-{q}-static"), ""),
            "riscv64" => (format!("/nonexistent/qemu-{q}-static"), "P"),
            // A dynamically linked program in the emulator's place.
            "mips64le" => ("/usr/bin/true".to_string(), "PF"),
            _ => (format!("/usr/bin/qemu-{q}-static"), "OCF"),
        };
        vars.push((q, line(Arch::parse(arch).unwrap(), &interpreter, flags)));
        script.push_str(&format!("printf '%s' \"${q}\" > $B/register\n"));
    }
    script.push_str(&format!(
        r#""$PA" binfmt status --format json | tr -d '\n' | sed 's/^/json /'; echo
"$PA" binfmt status | sed 's/^/table /'
"$PA" doctor | sed 's/^/doctor /' || true
if "$PA" binfmt install {SUITE}; then echo "install: ok"; else echo "install: failed $?"; fi
"$PA" binfmt install --reset {SUITE} | sed 's/^/reset /'
for h in aarch64 s390x; do echo "now $h: $(sed -n 2,3p $B/qemu-$h | tr '\n' ' ')"; done
"$PA" binfmt install {SUITE} | sed 's/^/again /'
"#
    ));
    let Some(out) = in_private_binfmt(&script, &vars) else { return };
    let status: Value = serde_json::from_str(lines(&out, "json ")[0].strip_prefix("json ").unwrap()).unwrap();
    let arm64 = emulator(&status, "arm64");
    assert_eq!(arm64["executes"], false, "{arm64}");
    assert_eq!(arm64["failure"], "argv0_lost", "{arm64}");
    assert_eq!(arm64["fix"], "polyarch binfmt install --reset arm64", "{arm64}");
    assert!(arm64["problems"][0].as_str().unwrap().starts_with("no P flag"), "{arm64}");
    let problems = |arch: &str| -> Vec<String> {
        let e = emulator(&status, arch);
        assert_eq!(
            (&e["executes"], &e["fix"]),
            (&Value::Bool(false), &Value::from(format!("polyarch binfmt install --reset {arch}"))),
            "{e}"
        );
        e["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
    };
    assert!(problems("s390x").iter().any(|p| p.starts_with("no F flag")), "{:?}", problems("s390x"));
    assert!(problems("riscv64").contains(&"its interpreter is missing".to_string()), "{:?}", problems("riscv64"));
    assert_eq!(problems("mips64le"), ["its interpreter is dynamically linked"]);
    let row = lines(&out, "table linux/arm64 ");
    assert!(row.len() == 1 && row[0].contains(" broken ") && row[0].contains("no P flag"), "{out}");
    let fix = lines(&out, "table linux/arm64: runs, but argv[0]");
    assert!(fix.len() == 1 && fix[0].ends_with("fix: polyarch binfmt install --reset arm64"), "{out}");
    let doctor = lines(&out, "doctor [FAIL] emulator linux/arm64: qemu-aarch64");
    assert!(doctor.len() == 1 && doctor[0].contains("argv[0] is lost"), "{out}");
    assert!(out.contains("doctor        fix: polyarch binfmt install --reset arm64\n"), "{out}");
    // Without --reset nothing is replaced, and the error says how.
    for (arch, q) in QEMUS {
        let err = lines(&out, &format!("{arch}: error: handler qemu-{q} "));
        assert!(
            err.len() == 1 && err[0].ends_with(&format!("(polyarch binfmt install --reset {arch})")),
            "{arch}: {out}"
        );
    }
    assert_eq!(lines(&out, "install:"), ["install: failed 1"], "{out}");
    for (arch, q) in QEMUS {
        let want = format!(
            "reset {arch}: installed qemu-{q} -> /usr/libexec/qemu-binfmt/{q}-binfmt-P (flags POCF) \
             (replaced qemu-{q}); executes"
        );
        assert_eq!(lines(&out, &format!("reset {arch}:")), [want.as_str()], "{out}");
        assert_eq!(
            lines(&out, &format!("again {arch}:")),
            [format!("again {arch}: already installed (qemu-{q}); executes")]
        );
    }
    let now = lines(&out, "now aarch64:");
    assert_eq!(now, ["now aarch64: interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P flags: POCF "], "{out}");
}

#[test]
fn uninstall_removes_only_qemu_handlers() {
    let script = r#"printf '%s' ':jar:M:0:\x50\x4b\x03\x04::/bin/true:' > $B/register
"$PA" binfmt install mips64le
"$PA" binfmt uninstall mips64le
"$PA" binfmt uninstall mips64le
"$PA" binfmt status --format json | tr -d '\n' | sed 's/^/json /'; echo
"$PA" doctor | grep --no-group-separator -A1 -E 'emulator linux/(mips64le|sparc64):' | sed 's/^/doctor /'
"$PA" build --platform linux/sparc64 "$CTX" 2>&1 | sed 's/^/build /' || true
echo "left: $(ls $B | tr '\n' ' ')"
"#;
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    // A docker.io mirror that only listens: any request for the base image
    // before the emulation check would reach it.
    let mirror = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    mirror.set_nonblocking(true).unwrap();
    let host = mirror.local_addr().unwrap().to_string();
    let config = env.dir.path().join("mirror.toml");
    let toml = format!("[registry.\"docker.io\"]\nmirrors = [\"{host}\"]\n[registry.\"{host}\"]\nhttp = true\n");
    std::fs::write(&config, toml).unwrap();
    let vars = [
        ("CTX", s(&ctx).to_string()),
        ("POLYARCH_ROOT", s(&env.root()).to_string()),
        ("POLYARCH_CONFIG", s(&config).to_string()),
    ];
    let Some(out) = in_private_binfmt(script, &vars) else { return };
    assert_eq!(lines(&out, "mips64le: removed"), ["mips64le: removed qemu-mips64el"], "{out}");
    assert_eq!(lines(&out, "mips64le: qemu"), ["mips64le: qemu-mips64el not installed"], "{out}");
    let status: Value = serde_json::from_str(lines(&out, "json ")[0].strip_prefix("json ").unwrap()).unwrap();
    let e = emulator(&status, "mips64le");
    assert_eq!((&e["installed"], &e["executes"]), (&Value::Bool(false), &Value::Bool(false)), "{e}");
    assert_eq!(e["failure"], "not_started", "{e}");
    assert_eq!(e["fix"], "polyarch binfmt install mips64le", "{e}");
    assert_eq!(lines(&out, "left:"), ["left: jar register status "], "{out}");
    // A missing emulator of a common architecture fails doctor, another
    // one warns; both with the command that registers it.
    let doctor: Vec<&str> = lines(&out, "doctor ").into_iter().map(|l| l.trim_start_matches("doctor ")).collect();
    assert_eq!(doctor.len(), 4, "{out}");
    assert!(doctor[0].starts_with("[FAIL] emulator linux/mips64le: no emulator registered"), "{out}");
    assert_eq!(doctor[1].trim(), "fix: polyarch binfmt install mips64le");
    assert!(doctor[2].starts_with("[warn] emulator linux/sparc64: no emulator registered"), "{out}");
    assert_eq!(doctor[3].trim(), "fix: polyarch binfmt install sparc64");
    // The build stops before anything is pulled or even resolved (no
    // registry asked), with the same command.
    let build = lines(&out, "build error: ");
    assert_eq!(build.len(), 1, "{out}");
    assert!(mirror.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "the mirror was asked: {out}");
    assert!(build[0].contains("linux/sparc64 cannot execute RUN steps"), "{out}");
    assert!(build[0].ends_with("run `polyarch binfmt install sparc64`"), "{out}");
}

/// Runs `script` with bash as root of a new user namespace that maps the
/// ids 0-65535 (so runc can set up containers), with its own mount and
/// network namespaces and binfmt_misc instance (`$B`, mounted): builds
/// run there against the handlers the script registers. `vars` are
/// environment variables. Returns stdout and stderr.
fn in_private_root(script: &str, vars: &[(&str, &str)]) -> Option<(String, String)> {
    in_private_binfmt("true", &[])?;
    if !require(crate::util::have("ip"), "ip (iproute2)") {
        return None;
    }
    // unshare execs bash before the id maps exist; the second exec, after
    // they are written, gives it root's capabilities in the namespace.
    let wrapper = r#"fifo=$(mktemp -u); mkfifo "$fifo"
unshare --user --mount --net --propagation private bash -c 'read -r _ < "$1"; rm -f "$1"; exec bash -ec "$2"' _ "$fifo" "$SCRIPT" &
pid=$!
while [ "$(readlink /proc/$pid/ns/user)" = "$(readlink /proc/self/ns/user)" ]; do sleep 0.01; done
echo "0 0 65536" > /proc/$pid/uid_map
echo "0 0 65536" > /proc/$pid/gid_map
echo go > "$fifo"
wait $pid"#;
    let setup = "B=/proc/sys/fs/binfmt_misc\nmount -t binfmt_misc binfmt_misc $B\nip link set lo up\n";
    let out = std::process::Command::new("bash")
        .args(["-ec", wrapper])
        .env("SCRIPT", format!("{setup}{script}"))
        .env("PA", env!("CARGO_BIN_EXE_polyarch"))
        .envs(vars.iter().copied())
        .output()
        .expect("running bash");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{script}\nstdout: {stdout}\nstderr: {stderr}");
    Some((stdout, stderr))
}

/// Busybox's shell re-executes applets through /proc/self/exe with the
/// applet's name as argv[0]: under handlers that lose argv[0] (what
/// `binfmt install` registered before), `sleep 1` runs as `sh 1`. In a
/// private binfmt_misc: such handlers stop the build before any step,
/// with the fix; after `polyarch binfmt install --reset` every applet
/// gets its name on every platform.
#[test]
fn emulated_busybox_applets_get_their_argv0() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN sleep 1 && od -An -tx1 -N4 /bin/busybox > /od && echo a b | cut -d' ' -f2 > /cut \
              && basename /x/y > /basename && sh -c 'wc -c < /od' > /wc\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let out = env.dir.path().join("out");
    let broken = line(Arch::Arm64, "/usr/bin/qemu-aarch64-static", "OCF");
    let script = r#"docker-registry serve "$REGDIR/config.yml" > "$REGDIR/in-namespace.log" 2>&1 &
trap "kill $!" EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://$REGISTRY/v2/" && break; sleep 0.1; done
printf '%s' "$BROKEN" > $B/register
if "$PA" build --progress plain --platform "$PLATFORMS" "$CTX" > "$OUT.broken" 2>&1; then echo "broken: built"; fi
sed 's/^/broken: /' "$OUT.broken"
"$PA" binfmt install --reset arm64,arm,ppc64le,s390x
"$PA" build --progress plain --platform "$PLATFORMS" -o "type=local,dest=$OUT" "$CTX" 2>&1 | tail -3
"#;
    let mut vars: Vec<(String, String)> = env
        .cmd(&[])
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
        .collect();
    for (k, v) in [
        ("REGDIR", s(reg.dir.path())),
        ("REGISTRY", reg.host.as_str()),
        ("BROKEN", broken.as_str()),
        ("PLATFORMS", "linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x"),
        ("CTX", s(&ctx)),
        ("OUT", s(&out)),
    ] {
        vars.push((k.to_string(), v.to_string()));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let Some((stdout, stderr)) = in_private_root(script, &vars) else { return };
    let err = lines(&stdout, "broken: error: ");
    assert_eq!(err.len(), 1, "{stdout}\n{stderr}");
    assert!(err[0].contains("linux/arm64 cannot execute RUN steps") && err[0].contains("argv[0]"), "{stdout}");
    assert!(err[0].ends_with("run `polyarch binfmt install --reset arm64`"), "{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("broken: #") && (l.contains("] FROM") || l.contains("] RUN"))),
        "a step ran: {stdout}"
    );
    assert!(
        stdout.contains(
            "arm64: installed qemu-aarch64 -> /usr/libexec/qemu-binfmt/aarch64-binfmt-P (flags POCF) \
         (replaced qemu-aarch64); executes"
        ),
        "{stdout}"
    );
    for d in ["linux_arm64", "linux_arm_v7", "linux_ppc64le", "linux_s390x"] {
        let read =
            |f: &str| std::fs::read_to_string(out.join(d).join(f)).unwrap_or_else(|e| panic!("{d}/{f}: {e}\n{stdout}"));
        assert_eq!(read("od"), " 7f 45 4c 46\n", "{d}");
        assert_eq!(read("cut"), "b\n", "{d}");
        assert_eq!(read("basename"), "y\n", "{d}");
        assert_eq!(read("wc").trim(), "13", "{d}");
    }
    crate::util::assert_clean_root(&env.root());
}

#[test]
fn unknown_architectures_are_rejected() {
    let env = Env::new();
    let err = env.fails(&["binfmt", "install", "sparc65"]);
    assert!(err.contains("unknown architecture \"sparc65\"; did you mean \"sparc64\"?"), "{err}");
    let err = env.fails(&["binfmt", "uninstall", "vax"]);
    assert!(err.contains("unknown architecture"), "{err}");
    let err = env.fails(&["binfmt", "install", "linux/arm65"]);
    assert!(err.contains("did you mean \"arm64\"?"), "{err}");
}

/// A mistyped platform is an error naming the closest architecture,
/// before anything is pulled or built (no registry is configured here:
/// any pull would fail differently).
#[test]
fn platform_typos_name_the_closest_architecture_first() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let typo = |args: &[&str], close: &str| {
        let out = env.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(&format!("; did you mean \"{close}\"?")), "{args:?}: {err}");
        assert!(!err.contains("registry") && !err.contains("#1 "), "{args:?}: {err}");
    };
    typo(&["build", "--platform", "linux/amd46", s(&ctx)], "amd64");
    typo(&["build", "--platform", "linux/amd64,linux/arm65", s(&ctx)], "arm64");
    typo(&["run", "--platform", "linux/arm65", "busybox", "true"], "arm64");
    typo(&["pull", "--platform", "linux/s309x", "busybox"], "s390x");
    typo(&["builder", "create", "--name", "x", "--platform", "linux/ppc64el"], "ppc64le");
    let err = env.fails(&["build", "--platform", "linux/amd46", s(&ctx)]);
    assert!(err.contains("unknown architecture \"amd46\""), "{err}");
    assert!(!err.contains("build it on a machine"), "{err}");
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
    // Reads the host's handlers (as scripts/test.sh registers them).
    let env = Env::new();
    let status: Value = serde_json::from_str(&env.ok(&["binfmt", "status", "--format", "json"])).unwrap();
    if !require(
        emulator(&status, "arm64")["executes"] == true,
        "a working arm64 handler (polyarch binfmt install arm64)",
    ) {
        return;
    }
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
