//! The RUN flags of `docker buildx build` end to end, through runc on
//! busybox from the real registry: what the process sees of `--add-host`,
//! `--ulimit`, `--shm-size`, `--cgroup-parent`, `--allow` entitlements
//! and `--ssh` agent forwarding (a real `ssh-agent`, and key files).
//! Every test checks that no mount, container or socket is left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::*;

fn build_local(env: &Env, ctx: &Path, extra: &[&str]) -> PathBuf {
    let dest = tempfile::Builder::new().prefix("out-").tempdir_in(env.dir.path()).unwrap().keep();
    let spec = format!("type=local,dest={}", dest.display());
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(extra);
    args.push(s(ctx));
    build_ok(env, &args);
    assert_clean_root(&env.root());
    dest
}

fn read(dir: &Path, p: &str) -> String {
    std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Removes the cgroups a `--cgroup-parent` test left below `parent` in
/// every hierarchy (the runtime removes only the container's own).
struct CgroupCleanup(String);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        let roots = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path());
        for root in roots.chain([PathBuf::from("/sys/fs/cgroup")]) {
            let _ = std::fs::remove_dir(root.join(&self.0).join("polyarch"));
            let _ = std::fs::remove_dir(root.join(&self.0));
        }
    }
}

#[test]
fn hosts_limits_shm_and_cgroup_parent_reach_the_process() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let parent = format!("polyarch-test-{}", std::process::id());
    let _cleanup = CgroupCleanup(parent.clone());
    let df = "FROM busybox\nRUN cat /etc/hosts > /hosts; ulimit -Sn > /nofile; ulimit -Hn >> /nofile; \
              df -k /dev/shm | tail -n 1 > /shm; cat /proc/self/cgroup > /cgroup\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let flags = [
        "--add-host",
        "db.internal:10.1.2.3",
        "--add-host=v6=[fd00::5]",
        "--add-host",
        "gw:host-gateway",
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "128m",
        "--cgroup-parent",
        &parent,
    ];
    let out = build_local(&env, &ctx, &flags);
    // BuildKit's hosts file of a RUN, host network or not: its own two
    // lines naming the sandbox, then the extra hosts.
    let hosts = read(&out, "hosts");
    assert_eq!(
        hosts,
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         10.1.2.3\tdb.internal\nfd00::5\tv6\n127.0.0.1\tgw\n"
    );
    assert_eq!(read(&out, "nofile"), "1024\n2048\n");
    let shm = read(&out, "shm");
    assert_eq!(shm.split_whitespace().nth(1), Some("131072"), "{shm}");
    let cgroup = read(&out, "cgroup");
    assert!(cgroup.contains(&format!(":/{parent}/polyarch/")), "{cgroup}");
    let plain = build_local(&env, &context(&env, "ctx2", &[("Dockerfile", df)]), &[]);
    assert_eq!(read(&plain, "nofile"), "1024\n1024\n", "the default limit");
    let shm = read(&plain, "shm");
    assert_eq!(shm.split_whitespace().nth(1), Some("65536"), "{shm}");
    assert!(read(&plain, "cgroup").contains(":/polyarch/"));
    let err = env.fails(&["build", "--cgroup-parent", "system.slice:ci:", s(&ctx)]);
    assert!(err.contains("--cgroup-parent \"system.slice:ci:\" cannot be used") && err.contains("systemd"), "{err}");
    assert_clean_root(&env.root());
}

#[test]
fn run_steps_are_named_as_buildkit_names_them() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN hostname > /name; cat /etc/hosts > /hosts\n\
              RUN --network=none hostname > /name-none; cat /etc/hosts > /hosts-none\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let out = build_local(&env, &ctx, &[]);
    let sandbox = "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    assert_eq!(read(&out, "name"), "buildkitsandbox\n");
    assert_eq!(read(&out, "name-none"), "buildkitsandbox\n");
    assert_eq!(read(&out, "hosts"), sandbox, "nothing of the host's file with host networking");
    assert_eq!(read(&out, "hosts-none"), sandbox);
    // BUILDKIT_SANDBOX_HOSTNAME names it, undeclared, and is part of the
    // steps' keys: the steps run again.
    let named = build_local(&env, &ctx, &["--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=box"]);
    assert_eq!(read(&named, "name"), "box\n");
    assert_eq!(read(&named, "hosts-none"), sandbox.replace("buildkitsandbox", "box"));
    // A name the kernel refuses is an error before anything runs.
    let long = format!("BUILDKIT_SANDBOX_HOSTNAME={}", "h".repeat(65));
    let err = env.fails(&["build", "--build-arg", &long, s(&ctx)]);
    assert!(err.contains("invalid BUILDKIT_SANDBOX_HOSTNAME") && err.contains("64 bytes"), "{err}");
    assert_clean_root(&env.root());
}

#[test]
fn bad_run_flags_are_named() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\n")]);
    for (flag, value, want) in [
        ("--add-host", "db", "--add-host: invalid host db"),
        ("--ulimit", "files=1", "--ulimit: invalid ulimit type: files"),
        ("--shm-size", "lots", "--shm-size: invalid size: 'lots'"),
        ("--allow", "device", "--allow: unknown entitlement device"),
    ] {
        let err = env.fails(&["build", flag, value, s(&ctx)]);
        assert!(err.contains(want), "{flag} {value}: {err}");
    }
    let err = env.cmd(&["build", "--ssh", "default", s(&ctx)]).env_remove("SSH_AUTH_SOCK").output().unwrap();
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success() && text.contains("--ssh default: invalid empty ssh agent socket"), "{text}");
}

#[test]
fn insecure_needs_its_entitlement_and_host_network_none() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status > /status; \
              grep ' /sys ' /proc/mounts > /sys-mount; ls /dev/fuse /dev/loop-control > /devs\n\
              RUN grep '^CapEff' /proc/self/status > /sandboxed; ls /dev/fuse > /no-fuse 2>&1 || true\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let err = env.fails(&["build", "--progress", "plain", s(&ctx)]);
    assert!(err.contains("security.insecure is not allowed") && err.contains("Dockerfile:2"), "{err}");
    assert_clean_root(&env.root());
    let out = build_local(&env, &ctx, &["--allow", "security.insecure"]);
    let status = read(&out, "status");
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = ours.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim().to_string();
    assert!(status.contains(&format!("CapEff:\t{cap_eff}")), "every capability of the caller: {status}");
    assert_eq!(read(&out, "devs"), "/dev/fuse\n/dev/loop-control\n");
    assert!(read(&out, "no-fuse").contains("No such file"), "{}", read(&out, "no-fuse"));
    assert!(status.contains("Seccomp:\t0"), "no seccomp filter: {status}");
    assert!(read(&out, "sys-mount").contains(" rw,"), "writable /sys: {}", read(&out, "sys-mount"));
    assert_eq!(read(&out, "sandboxed"), "CapEff:\t00000000a80425fb\n", "the next step is sandboxed again");

    let host = context(&env, "host", &[("Dockerfile", "FROM busybox\nRUN --network=host echo ok > /ok\n")]);
    // As Docker Engine's builder (buildx's default driver): no entitlement
    // needed, and granting it is accepted.
    for flags in [&[][..], &["--allow", "network.host"][..], &["--network", "none"][..]] {
        let out = build_local(&env, &host, flags);
        assert_eq!(read(&out, "ok"), "ok\n");
    }
}

/// A private `ssh-agent` with a new key; killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    key: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).spawn().unwrap();
        let key = dir.join("id_test");
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "polyarch-test-key", "-f"])
            .arg(&key));
        for _ in 0..500 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        sh(Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &socket).stderr(Stdio::null()));
        Agent { child, socket, key }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's `ssh-add` with its libraries, to run on busybox as
/// `/tools/ld.so --library-path /tools /tools/ssh-add`.
fn ssh_add_tools(ctx: &Path) -> String {
    let tools = ctx.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let bin = sh(Command::new("sh").args(["-c", "command -v ssh-add"])).trim().to_string();
    std::fs::copy(&bin, tools.join("ssh-add")).unwrap();
    let mut loader = String::new();
    for line in sh(Command::new("ldd").arg(&bin)).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        let Some(path) = path else { continue };
        let name = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(path, tools.join(&name)).unwrap();
        if name.starts_with("ld-linux") {
            loader = name;
        }
    }
    assert!(!loader.is_empty(), "no loader for {bin}");
    format!("/tools/{loader} --library-path /tools /tools/ssh-add -l")
}

/// Processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

#[test]
fn ssh_agents_and_keys_are_forwarded_to_run() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !require(have("ssh-agent") && have("ssh-add") && have("ssh-keygen"), "openssh-client") {
        return;
    }
    let agent = Agent::start(env.dir.path());
    let ctx = context(&env, "ctx", &[]);
    let list = ssh_add_tools(&ctx);
    let df = format!(
        "FROM busybox\n\
         RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh \
         echo $SSH_AUTH_SOCK > /sock; ls -l $SSH_AUTH_SOCK > /perm; {list} > /keys\n\
         RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh,id=file,target=/agent,required=true \
         SSH_AUTH_SOCK=/agent {list} > /file-keys\n"
    );
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let key_arg = format!("file={}", agent.key.display());
    let out = {
        let dest = env.dir.path().join("out");
        let spec = format!("type=local,dest={}", dest.display());
        let mut c =
            env.cmd(&["build", "--progress", "plain", "-o", &spec, "--ssh", "default", "--ssh", &key_arg, s(&ctx)]);
        let o = c.env("SSH_AUTH_SOCK", &agent.socket).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dest
    };
    assert_eq!(read(&out, "sock"), "/run/buildkit/ssh_agent.0\n");
    assert!(read(&out, "perm").starts_with("srw-------"), "mode 0600: {}", read(&out, "perm"));
    let keys = read(&out, "keys");
    assert!(keys.contains("polyarch-test-key") && keys.contains("(ED25519)"), "{keys}");
    let keys = read(&out, "file-keys");
    assert!(keys.contains("polyarch-test-key"), "the key file's private agent: {keys}");
    assert!(!out.join("run/buildkit").exists(), "no socket stub in the image");
    assert_clean_root(&env.root());
    let root = env.root().display().to_string();
    assert!(processes_naming(&root).is_empty(), "a private agent is left: {:?}", processes_naming(&root));

    let missing = ctx.join("Dockerfile2");
    std::fs::write(&missing, "FROM busybox\nRUN --mount=type=ssh,id=nope,required=true true\n").unwrap();
    let err = env.fails(&["build", "-f", s(&missing), s(&ctx)]);
    assert!(err.contains("no SSH key \"nope\" forwarded") && err.contains("Dockerfile2:2"), "{err}");
}

/// Whatever a test leaves of a killed build goes, also when it fails:
/// the sleeping container and the store's leftovers (swept by the next
/// command).
struct KilledBuild<'a> {
    env: &'a Env,
    sleep: [&'a str; 2],
}

impl Drop for KilledBuild<'_> {
    fn drop(&mut self) {
        for pid in crate::interrupt::processes(&self.sleep) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = self.env.run(&["images"]);
    }
}

#[test]
fn a_private_agent_dies_with_a_killed_build() {
    use crate::interrupt::{assert_no_process, processes};
    let Some((env, _)) = mirrored_for_run() else { return };
    if !require(have("ssh-agent") && have("ssh-add") && have("ssh-keygen"), "openssh-client") {
        return;
    }
    let key = env.dir.path().join("id_kill");
    sh(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh,id=k sleep 1251\n")]);
    let key_arg = format!("k={}", key.display());
    let _cleanup = KilledBuild { env: &env, sleep: ["sleep", "1251"] };
    let mut child = env
        .cmd(&["build", "--progress", "plain", "--ssh", &key_arg, s(&ctx)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = env.root().display().to_string();
    let agents = || processes_naming(&root).into_iter().filter(|c| c.starts_with("ssh-agent")).count();
    let start = std::time::Instant::now();
    while processes(&["sleep", "1251"]).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the build ended before its RUN step started");
        assert!(start.elapsed().as_secs() < 120, "the RUN step did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(agents(), 1, "the key file's agent runs during the build");
    child.kill().unwrap();
    let _ = child.wait();
    let start = std::time::Instant::now();
    while agents() > 0 && start.elapsed().as_secs() < 15 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(agents(), 0, "the agent died with its build (it checks its command every 10 s)");
    // The next commands sweep the killed build's container and directories.
    env.ok(&["images"]);
    let after = context(&env, "after", &[("Dockerfile", "FROM busybox\nRUN echo after > /after\n")]);
    env.ok(&["build", "--progress", "plain", s(&after)]);
    assert_no_process(&["sleep", "1251"]);
    assert_clean_root(&env.root());
}
