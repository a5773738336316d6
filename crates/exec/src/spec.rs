//! config.json for a run: the OCI runtime spec (runtime-spec `config.md`)
//! with Docker's and BuildKit's defaults — capabilities, devices, masked
//! and read-only paths, `/proc`, `/dev`, `/sys` mounts, namespaces, the
//! seccomp filter of [`crate::seccomp`] — built
//! from `oci-spec`'s types. Pure: no I/O, so every field is unit tested.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    BoxBuilder, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::error::Result;
use crate::process::{MountSpec, NetworkMode, ProcessSpec, Rlimit, SecurityMode, WindowSize};
use crate::user::User;

/// Docker's default capability set (moby `oci/caps/defaults.go`, the same
/// as containerd's `defaultUnixCaps`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from the container (moby `oci/defaults.go`).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container sees read-only (moby `oci/defaults.go`).
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The `PATH` a process gets when its environment has none (BuildKit's
/// `system.DefaultPathEnvUnix`).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything config.json is made of, already resolved.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The rootfs directory (absolute).
    pub rootfs: &'a Path,
    /// The process as asked for.
    pub process: &'a ProcessSpec,
    /// Its user, resolved against the rootfs.
    pub user: &'a User,
    /// Resource limits, already clamped.
    pub rlimits: &'a [Rlimit],
    /// Extra mounts, after the default ones.
    pub mounts: &'a [MountSpec],
    /// The bundle's copy of `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The bundle's copy of `/etc/hosts`.
    pub hosts: PathBuf,
    /// The cgroup path (`/polyarch/<id>`).
    pub cgroups_path: PathBuf,
    /// Give the process a terminal.
    pub terminal: bool,
    /// The terminal's initial size, if known.
    pub console_size: Option<WindowSize>,
    /// The capability set of an insecure process (none: Docker's
    /// defaults).
    pub capabilities: Option<Vec<Capability>>,
    /// Give an insecure process BuildKit's extra devices (not inside a
    /// user namespace, where they cannot be made).
    pub insecure_devices: bool,
}

/// Assembles the spec.
pub fn build(input: &Input<'_>) -> Result<Spec> {
    let p = input.process;
    let user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid)
        .additional_gids(input.user.additional_gids.clone())
        .build()?;
    let insecure = p.security == SecurityMode::Insecure;
    let caps: HashSet<Capability> = match &input.capabilities {
        Some(all) if insecure => all.iter().copied().collect(),
        _ => DEFAULT_CAPABILITIES.into_iter().collect(),
    };
    // BuildKit's `WithInsecureSpec` grants every set, ambient too.
    let extra = if insecure { caps.clone() } else { HashSet::new() };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(extra.clone())
        .ambient(extra)
        .build()?;
    let rlimits = input
        .rlimits
        .iter()
        .map(|r| PosixRlimitBuilder::default().typ(r.resource.oci()).soft(r.soft).hard(r.hard).build())
        .collect::<Result<Vec<_>, _>>()?;
    let mut process = ProcessBuilder::default();
    if let Some(size) = input.console_size.filter(|_| input.terminal) {
        let console = BoxBuilder::default().height(u64::from(size.rows)).width(u64::from(size.cols)).build()?;
        process = process.console_size(console);
    }
    let process = process
        .terminal(input.terminal)
        .user(user)
        .args(p.args.clone())
        .env(environment(&p.env, &input.user.home))
        .cwd(if p.cwd.is_empty() { "/".to_string() } else { p.cwd.clone() })
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(!insecure)
        .build()?;
    let root = RootBuilder::default().path(input.rootfs).readonly(p.readonly_rootfs).build()?;
    let mut mounts = default_mounts(p)?;
    mounts.push(file_bind(&input.resolv_conf, "/etc/resolv.conf")?);
    mounts.push(file_bind(&input.hosts, "/etc/hosts")?);
    for m in input.mounts {
        mounts.push(
            MountBuilder::default()
                .destination(&m.destination)
                .typ(m.kind.clone())
                .source(&m.source)
                .options(m.options.clone())
                .build()?,
        );
    }
    let mut devs = devices(&DEVICES)?;
    if insecure && input.insecure_devices {
        devs.extend(devices(&INSECURE_DEVICES)?);
        devs.extend(loop_devices()?);
    }
    let linux =
        LinuxBuilder::default().namespaces(namespaces(p.network)?).devices(devs).cgroups_path(&input.cgroups_path);
    let linux = if insecure {
        let all = |t| LinuxDeviceCgroupBuilder::default().allow(true).typ(t).access("rwm").build();
        linux
            .resources(
                LinuxResourcesBuilder::default()
                    .devices(vec![all(LinuxDeviceType::C)?, all(LinuxDeviceType::B)?])
                    .build()?,
            )
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new())
            .build()?
    } else {
        linux
            .resources(LinuxResourcesBuilder::default().devices(device_rules()?).build()?)
            .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .seccomp(crate::seccomp::default_profile()?)
            .build()?
    };
    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .hostname(p.hostname.clone())
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

/// The process environment: as given, plus `PATH` and `HOME` when absent.
pub fn environment(env: &[String], home: &str) -> Vec<String> {
    let has = |k: &str| env.iter().any(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == k);
    let mut out = env.to_vec();
    if !has("PATH") {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

fn namespaces(network: NetworkMode) -> Result<Vec<oci_spec::runtime::LinuxNamespace>> {
    let mut kinds =
        vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount];
    if network == NetworkMode::None {
        kinds.push(LinuxNamespaceType::Network);
    }
    Ok(kinds.into_iter().map(|k| LinuxNamespaceBuilder::default().typ(k).build()).collect::<Result<_, _>>()?)
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(kind)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// containerd's default mounts (`oci/mounts.go`), as BuildKit uses them,
/// with `/sys` read-only and the cgroup file system read-only on top
/// (both writable for an insecure process), and `/dev/shm` of the size
/// asked for (`--shm-size`; default 64 MiB).
fn default_mounts(p: &ProcessSpec) -> Result<Vec<Mount>> {
    let access = if p.security == SecurityMode::Insecure { "rw" } else { "ro" };
    let shm = match p.shm_size {
        Some(bytes) if bytes % 1024 == 0 => format!("size={}k", bytes / 1024),
        Some(bytes) => format!("size={bytes}"),
        None => "size=65536k".to_string(),
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", access])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", access])?,
    ])
}

/// Capability names by bit number (`linux/capability.h`).
const CAPABILITY_BITS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities of a `/proc/PID/status` file's `CapEff` line: what a
/// privileged container can get from its caller (as BuildKit's
/// `getAllCaps` takes the current process's). Docker's defaults when the
/// line is missing.
pub fn effective_capabilities(status: &[u8]) -> Vec<Capability> {
    let text = String::from_utf8_lossy(status);
    let mask =
        text.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    let Some(mask) = mask else { return DEFAULT_CAPABILITIES.to_vec() };
    CAPABILITY_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .filter_map(|(_, name)| name.parse::<Capability>().ok())
        .collect()
}

fn file_bind(source: &Path, dest: &str) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string(), "ro".to_string()])
        .build()?)
}

/// The device nodes of a minimal `/dev` (runtime-spec "Default Devices").
const DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The character devices BuildKit adds in insecure mode
/// (`security.WithInsecureSpec`): kmsg, cuse, fuse, kvm, tun, loop-control.
const INSECURE_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/kmsg", 1, 11),
    ("/dev/cuse", 10, 203),
    ("/dev/fuse", 10, 229),
    ("/dev/kvm", 10, 232),
    ("/dev/net/tun", 10, 200),
    ("/dev/loop-control", 10, 237),
];

/// `/dev/loop0` to `/dev/loop7`, for insecure mode.
fn loop_devices() -> Result<Vec<LinuxDevice>> {
    (0..8)
        .map(|i| {
            Ok(LinuxDeviceBuilder::default()
                .path(format!("/dev/loop{i}"))
                .typ(LinuxDeviceType::B)
                .major(7)
                .minor(i)
                .file_mode(0o660u32)
                .uid(0u32)
                .gid(0u32)
                .build()?)
        })
        .collect()
}

fn devices(list: &[(&str, i64, i64)]) -> Result<Vec<LinuxDevice>> {
    Ok(list
        .iter()
        .map(|(path, major, minor)| {
            LinuxDeviceBuilder::default()
                .path(*path)
                .typ(LinuxDeviceType::C)
                .major(*major)
                .minor(*minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
        })
        .collect::<Result<_, _>>()?)
}

/// The device cgroup: deny everything, then allow the default devices,
/// `/dev/console`, `/dev/ptmx` and the pseudo-terminals (Docker's list).
fn device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    let rule = |allow: bool, major: Option<i64>, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access("rwm");
        if allow {
            b = b.typ(LinuxDeviceType::C);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build()
    };
    let mut out = vec![rule(false, None, None)?];
    for (_, major, minor) in DEVICES {
        out.push(rule(true, Some(major), Some(minor))?);
    }
    out.push(rule(true, Some(5), Some(1))?);
    out.push(rule(true, Some(5), Some(2))?);
    out.push(rule(true, Some(136), None)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rlimit::Resource;

    fn assemble(p: &ProcessSpec, mounts: &[MountSpec]) -> serde_json::Value {
        let user = User { uid: 1000, gid: 1000, additional_gids: vec![10, 999], home: "/home/app".into() };
        let rl = [Rlimit { resource: Resource::Nofile, soft: 1024, hard: 1024 }];
        let input = Input {
            rootfs: Path::new("/state/mnt/x"),
            process: p,
            user: &user,
            rlimits: &rl,
            mounts,
            resolv_conf: "/state/bundles/x/resolv.conf".into(),
            hosts: "/state/bundles/x/hosts".into(),
            cgroups_path: "/polyarch/x".into(),
            terminal: false,
            console_size: None,
            capabilities: None,
            insecure_devices: false,
        };
        serde_json::to_value(build(&input).unwrap()).unwrap()
    }

    #[test]
    fn an_insecure_process_is_privileged() {
        let p = ProcessSpec::new(["true"]).with_security(SecurityMode::Insecure).with_shm_size(Some(128 << 20));
        let user = User { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() };
        let caps = effective_capabilities(b"Name:\tx\nCapEff:\t000001fffeffffff\n");
        assert_eq!(caps.len(), 40, "every bit but SYS_RESOURCE's: {caps:?}");
        assert!(caps.contains(&Capability::SysAdmin) && !caps.contains(&Capability::SysResource));
        let input = Input {
            rootfs: Path::new("/r"),
            process: &p,
            user: &user,
            rlimits: &[],
            mounts: &[],
            resolv_conf: "/b/resolv.conf".into(),
            hosts: "/b/hosts".into(),
            cgroups_path: "/polyarch/x".into(),
            terminal: false,
            console_size: None,
            capabilities: Some(caps),
            insecure_devices: true,
        };
        let v = serde_json::to_value(build(&input).unwrap()).unwrap();
        assert!(strings(&v["process"]["capabilities"]["bounding"]).contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert!(v["linux"].get("seccomp").is_none());
        assert_eq!(
            v["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "type": "c", "access": "rwm"}, {"allow": true, "type": "b", "access": "rwm"}])
        );
        assert!(strings(&v["process"]["capabilities"]["ambient"]).contains(&"CAP_SYS_ADMIN".to_string()));
        let devs: Vec<&str> =
            v["linux"]["devices"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert!(devs.contains(&"/dev/fuse") && devs.contains(&"/dev/loop7") && devs.contains(&"/dev/null"), "{devs:?}");
        assert!(v["linux"]["maskedPaths"].as_array().is_none_or(|a| a.is_empty()));
        let sys = v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap();
        assert!(strings(&sys["options"]).contains(&"rw".to_string()));
        let shm = v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/dev/shm").unwrap();
        assert!(strings(&shm["options"]).contains(&"size=131072k".to_string()));
        // The same capability list does not widen a sandboxed process.
        let sandboxed = ProcessSpec::new(["true"]);
        let v = serde_json::to_value(build(&Input { process: &sandboxed, ..input }).unwrap()).unwrap();
        assert!(!strings(&v["process"]["capabilities"]["bounding"]).contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(v["linux"]["seccomp"].is_object());
    }

    #[test]
    fn a_terminal_with_its_size() {
        let p = ProcessSpec::new(["sh"]);
        let user = User { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() };
        let input = Input {
            rootfs: Path::new("/r"),
            process: &p,
            user: &user,
            rlimits: &[],
            mounts: &[],
            resolv_conf: "/b/resolv.conf".into(),
            hosts: "/b/hosts".into(),
            cgroups_path: "/polyarch/x".into(),
            terminal: true,
            console_size: Some(WindowSize { rows: 40, cols: 132 }),
            capabilities: None,
            insecure_devices: false,
        };
        let v = serde_json::to_value(build(&input).unwrap()).unwrap();
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["process"]["consoleSize"], serde_json::json!({"height": 40, "width": 132}));
        let v = serde_json::to_value(build(&Input { terminal: false, ..input }).unwrap()).unwrap();
        assert_eq!(v["process"]["terminal"], false);
        assert!(v["process"].get("consoleSize").is_none());
    }

    fn strings(v: &serde_json::Value) -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn process_fields() {
        let p = ProcessSpec::new(["sh", "-c", "echo hi"]).with_env(["A=1"]).with_cwd("/work").with_hostname("box");
        let v = assemble(&p, &[]);
        let proc = &v["process"];
        assert_eq!(strings(&proc["args"]), ["sh", "-c", "echo hi"]);
        assert_eq!(strings(&proc["env"]), [DEFAULT_PATH, "A=1", "HOME=/home/app"]);
        assert_eq!(proc["cwd"], "/work");
        assert_eq!(proc["user"]["uid"], 1000);
        assert_eq!(proc["user"]["additionalGids"], serde_json::json!([10, 999]));
        assert_eq!(proc["noNewPrivileges"], true);
        assert_eq!(proc["terminal"], false);
        assert_eq!(proc["rlimits"], serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]));
        assert_eq!(v["hostname"], "box");
        assert_eq!(v["root"], serde_json::json!({"path": "/state/mnt/x", "readonly": false}));
        assert_eq!(v["linux"]["cgroupsPath"], "/polyarch/x");
    }

    #[test]
    fn capabilities_are_dockers_defaults() {
        let v = assemble(&ProcessSpec::new(["true"]), &[]);
        let caps = &v["process"]["capabilities"];
        let mut want: Vec<String> = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        want.sort();
        for set in ["bounding", "effective", "permitted"] {
            let mut got = strings(&caps[set]);
            got.sort();
            assert_eq!(got, want, "{set}");
        }
        assert!(strings(&caps["inheritable"]).is_empty());
        assert!(strings(&caps["ambient"]).is_empty());
        assert!(!want.iter().any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_SYS_RESOURCE"));
    }

    #[test]
    fn namespaces_follow_the_network_mode() {
        let kinds = |v: &serde_json::Value| -> Vec<String> {
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_string())
                .collect()
        };
        let host = assemble(&ProcessSpec::new(["true"]), &[]);
        assert_eq!(kinds(&host), ["pid", "ipc", "uts", "mount"]);
        let none = assemble(&ProcessSpec::new(["true"]).with_network(NetworkMode::None), &[]);
        assert_eq!(kinds(&none), ["pid", "ipc", "uts", "mount", "network"]);
    }

    #[test]
    fn mounts_devices_and_paths() {
        let extra = [MountSpec::bind("/host/cache", "/root/.cache", false), MountSpec::tmpfs("/tmp")];
        let v = assemble(&ProcessSpec::new(["true"]).with_readonly_rootfs(true), &extra);
        let dests: Vec<&str> =
            v["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/resolv.conf",
                "/etc/hosts",
                "/root/.cache",
                "/tmp"
            ]
        );
        let sys = &v["mounts"][5];
        assert!(strings(&sys["options"]).contains(&"ro".to_string()));
        assert_eq!(v["mounts"][7]["source"], "/state/bundles/x/resolv.conf");
        assert_eq!(strings(&v["mounts"][9]["options"]), ["rbind", "rw"]);
        assert_eq!(v["root"]["readonly"], true);
        let devs: Vec<&str> =
            v["linux"]["devices"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(devs, ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]);
        let rules = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0], serde_json::json!({"allow": false, "access": "rwm"}));
        assert_eq!(rules.len(), 10);
        assert_eq!(strings(&v["linux"]["maskedPaths"]), MASKED_PATHS);
        assert_eq!(strings(&v["linux"]["readonlyPaths"]), READONLY_PATHS);
    }

    #[test]
    fn environment_keeps_given_path_and_home() {
        let env = vec!["PATH=/bin".to_string(), "HOME=/x".to_string(), "EMPTY".to_string()];
        assert_eq!(environment(&env, "/root"), env);
        assert_eq!(environment(&[], "/"), [DEFAULT_PATH, "HOME=/"]);
    }
}
