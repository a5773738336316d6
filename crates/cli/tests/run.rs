//! `polyarch run` against the real registry fixture: native and emulated
//! platforms (checked against podman for some), exit codes, isolation,
//! flags, and no mount or container left behind. These need root, runc
//! and binfmt_misc QEMU handlers; under `CI=true` a missing one fails.

use std::path::Path;
use std::process::Command;

use crate::util::{assert_no_mounts_or_containers, busybox, have, is_root, require, s, shared_registry, Env};

fn root_and_runc() -> bool {
    require(is_root(), "running as root") && require(have("runc"), "runc (apt-get install runc)")
}

/// A new environment and the fixture's busybox; `None` (skip) when the
/// registry, root or runc is missing outside CI.
fn setup() -> Option<(Env, String)> {
    let reg = shared_registry()?;
    if !root_and_runc() {
        return None;
    }
    Some((Env::new(), busybox(reg)))
}

/// A binfmt_misc handler for a QEMU architecture name is registered and enabled.
fn binfmt(qemu_arch: &str) -> bool {
    let p = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu_arch}"));
    let ok = std::fs::read_to_string(&p).is_ok_and(|s| s.starts_with("enabled"));
    require(ok, &format!("{} (apt-get install qemu-user-static)", p.display()))
}

/// No mount of this environment remains, the runtime has no container,
/// and every snapshot left is a committed (shared) one.
fn assert_clean(env: &Env) {
    let root = env.root();
    assert_no_mounts_or_containers(&root);
    for dir in ["exec/bundles", "exec/mnt"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            let left: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "{dir} left: {left:?}");
        }
    }
    for kind in ["overlay", "naive"] {
        if let Ok(rd) = std::fs::read_dir(root.join("snapshots").join(kind).join("metadata")) {
            for e in rd {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                assert!(text.contains("\"kind\":\"committed\""), "snapshot left: {text}");
            }
        }
    }
}

/// `polyarch run ARGS`, returning (exit code, stdout, stderr).
fn run(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

fn uname(env: &Env, img: &str, platform: &str, cmd: &[&str]) -> String {
    let mut args = vec!["--rm", "--platform", platform, img];
    args.extend_from_slice(cmd);
    let (code, out, err) = run(env, &args);
    assert_eq!(code, 0, "run {platform} {cmd:?}: {err}");
    out.trim().to_string()
}

#[test]
fn run_native_and_emulated_platforms() {
    let Some((env, img)) = setup() else { return };
    let wanted = [
        ("aarch64", "linux/arm64", "aarch64"),
        ("arm", "linux/arm/v7", "armv7l"),
        ("ppc64le", "linux/ppc64le", "ppc64le"),
        ("s390x", "linux/s390x", "s390x"),
    ];
    if !wanted.iter().all(|(q, _, _)| binfmt(q)) {
        return;
    }
    assert_eq!(uname(&env, &img, "linux/amd64", &["uname", "-m"]), "x86_64");
    for (_, platform, machine) in wanted {
        assert_eq!(uname(&env, &img, platform, &["uname", "-m"]), machine, "{platform}");
    }
    // linux/386 runs natively on x86_64; its 32-bit personality says i686.
    assert_eq!(uname(&env, &img, "linux/386", &["uname", "-m"]), "x86_64");
    assert_eq!(uname(&env, &img, "linux/386", &["linux32", "uname", "-m"]), "i686");
    // The ELF really is the platform's: busybox reports its own build.
    let file = uname(&env, &img, "linux/s390x", &["sh", "-c", "od -An -tx1 -j18 -N2 /bin/busybox"]);
    assert_eq!(file.split_whitespace().collect::<Vec<_>>(), ["00", "16"], "e_machine EM_S390 (big endian)");
    assert_clean(&env);
}

#[test]
fn run_matches_podman() {
    let Some((env, img)) = setup() else { return };
    if !require(have("podman"), "podman (apt-get install podman)") {
        return;
    }
    if !binfmt("aarch64") || !binfmt("s390x") {
        return;
    }
    for platform in ["linux/amd64", "linux/arm64", "linux/s390x"] {
        let ours = uname(&env, &img, platform, &["uname", "-m"]);
        let out = Command::new("podman")
            .args(["--runtime", "runc", "run", "--rm", "--pull=always", "--tls-verify=false"])
            .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--platform", platform, &img])
            .args(["uname", "-m"])
            .output()
            .expect("running podman");
        assert!(out.status.success(), "podman {platform}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ours, "{platform}");
    }
    assert_clean(&env);
}

#[test]
fn run_passes_exit_codes_through() {
    let Some((env, img)) = setup() else { return };
    assert_eq!(run(&env, &[&img, "sh", "-c", "exit 7"]).0, 7);
    assert_eq!(run(&env, &["--rm", &img, "false"]).0, 1);
    assert_eq!(run(&env, &[&img, "true"]).0, 0);
    // The image's CMD (`sh`) with no stdin exits at once.
    assert_eq!(run(&env, &[&img]).0, 0);
    let (code, _, err) = run(&env, &[&img, "no-such-program"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    // A program that cannot be executed is 126, said once, as docker's.
    for path in ["/etc/passwd", "/etc"] {
        let (code, _, err) = run(&env, &[&img, path]);
        assert_eq!(code, 126, "{path}: {err}");
        assert_eq!(err.matches(&format!("exec: \"{path}\"")).count(), 1, "{err}");
    }
    // `--name` is taken as docker takes it, and checked as docker checks it.
    assert_eq!(run(&env, &["--rm", "--name", "web-1", &img, "true"]).0, 0);
    let (code, _, err) = run(&env, &["--name", "a b", &img, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("Invalid container name (a b)"), "{err}");
    let (code, _, err) = run(&env, &["-u", "ghost", &img, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("unable to find user ghost"), "{err}");
    assert_clean(&env);
}

#[test]
fn run_isolates_the_container() {
    let Some((env, img)) = setup() else { return };
    let marker = tempfile::Builder::new().prefix("polyarch-marker-").tempfile_in("/tmp").unwrap();
    let name = marker.path().to_string_lossy().into_owned();
    assert!(Path::new(&name).exists());
    let (code, out, _) = run(&env, &[&img, "sh", "-c", &format!("test -e {name} && echo visible || echo hidden")]);
    assert_eq!((code, out.trim()), (0, "hidden"));
    let devs = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let (_, none, _) = run(&env, &["--network", "none", &img, "sh", "-c", devs]);
    assert_eq!(none.trim(), "lo");
    let (_, host, _) = run(&env, &["--network", "host", &img, "sh", "-c", devs]);
    assert!(host.lines().count() > 1, "host networking: {host}");
    let (_, ps, _) = run(&env, &[&img, "ps", "-o", "pid,comm"]);
    let pids: Vec<&str> = ps.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(pids, ["1"], "only the process itself in its pid namespace: {ps}");
    let (_, hn, _) = run(&env, &[&img, "hostname"]);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(hn.trim(), host_name.trim());
    assert_eq!(hn.trim().len(), 12);
    // Writes go to the run's own snapshot, never to the shared image.
    assert_eq!(run(&env, &[&img, "sh", "-c", "echo x > /etc/written"]).0, 0);
    assert_eq!(run(&env, &[&img, "test", "-e", "/etc/written"]).0, 1);
    assert_clean(&env);
}

#[test]
fn run_applies_env_workdir_user_and_entrypoint() {
    let Some((env, img)) = setup() else { return };
    let (code, out, err) = run(
        &env,
        &[
            "-e",
            "A=1",
            "-e",
            "PATH=/bin",
            "-w",
            "/w/x",
            "-u",
            "nobody",
            &img,
            "sh",
            "-c",
            "echo $A $PATH; pwd; id -u; id -g",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1 /bin\n/w/x\n65534\n65534\n");
    let (_, out, _) = run(&env, &["-u", "0:65534", &img, "sh", "-c", "id -u; id -g"]);
    assert_eq!(out, "0\n65534\n");
    let (_, out, _) = run(&env, &[&img, "sh", "-c", "echo $PATH; pwd; id -u"]);
    assert_eq!(out, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/\n0\n");
    let (_, out, _) = run(&env, &["--entrypoint", "echo", &img, "a", "b"]);
    assert_eq!(out, "a b\n");
    // --env-file first, then -e, as docker.
    let file = env.dir.path().join("env.list");
    std::fs::write(&file, "# settings\nA=from-file\nB=two words\n").unwrap();
    let (code, out, err) =
        run(&env, &["--env-file", s(&file), "-e", "A=from-flag", &img, "sh", "-c", "echo \"$A|$B\""]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from-flag|two words\n");
    let (_, out, _) = run(&env, &["--entrypoint", "/bin/hostname", &img]);
    assert_eq!(out.trim().len(), 12, "--entrypoint resets CMD: {out}");
    assert_clean(&env);
}

#[test]
fn run_binds_host_paths_as_docker_does() {
    let Some((env, img)) = setup() else { return };
    let host = env.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from the host\n").unwrap();
    let made = env.dir.path().join("made/by/run");
    let ro = format!("{}:/in:ro", host.display());
    let rw = format!("{}:/out", made.display());
    let script = "cat /in/in.txt; touch /in/x 2>/dev/null && echo writable || echo read-only; echo hi > /out/o.txt";
    let (code, out, err) = run(&env, &["-v", &ro, "-v", &rw, &img, "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from the host\nread-only\n");
    assert_eq!(std::fs::read_to_string(made.join("o.txt")).unwrap(), "hi\n", "-v makes a missing host directory");
    // --mount: a bind of an existing source, and a tmpfs.
    let bind = format!("type=bind,source={},target=/m,readonly", host.display());
    let (code, out, err) = run(
        &env,
        &[
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,target=/t",
            &img,
            "sh",
            "-c",
            "cat /m/in.txt; grep -c ' /t tmpfs ' /proc/mounts",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from the host\n1\n");
    // Refused before anything runs, with exit code 125.
    let gone = format!("type=bind,source={},target=/m", env.dir.path().join("gone").display());
    for (args, why) in [
        (vec!["--mount", gone.as_str()], "bind source path does not exist"),
        (vec!["-v", "data:/d"], "named volume"),
        (vec!["-v", "/tmp:relative"], "not absolute"),
    ] {
        let mut all = args.clone();
        all.extend([img.as_str(), "true"]);
        let (code, _, err) = run(&env, &all);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert!(!host.join("x").exists());
    assert_clean(&env);
}

#[test]
fn run_pull_policies() {
    let Some((env, img)) = setup() else { return };
    let (code, _, err) = run(&env, &["--pull", "never", &img, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such image") && err.contains("--pull never"), "{err}");
    let (code, _, err) = run(&env, &[&img, "true"]);
    assert_eq!(code, 0);
    assert!(err.contains("Unable to find image"), "{err}");
    let (code, _, err) = run(&env, &["--pull", "never", &img, "true"]);
    assert_eq!((code, err.as_str()), (0, ""), "the stored image runs without pulling");
    let (code, _, err) = run(&env, &["--pull", "always", &img, "true"]);
    assert_eq!(code, 0);
    assert!(err.contains("Digest: sha256:") && !err.contains("Unable to find"), "{err}");
    let (code, _, err) = run(&env, &["--platform", "linux/sparc64", &img, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("linux/sparc64"), "{err}");
    assert_clean(&env);
}

/// Waits until `root` has a running container; returns its id.
pub fn wait_for_container(root: &Path) -> String {
    let runtime = root.join("exec/runtime");
    for _ in 0..500 {
        if let Ok(out) = Command::new("runc").arg("--root").arg(&runtime).args(["list", "-q"]).output() {
            let ids = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !ids.is_empty() {
                return ids;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no container started under {}", runtime.display());
}

#[test]
fn run_stops_the_container_on_sigint() {
    let Some((env, img)) = setup() else { return };
    env.ok(&["pull", "-q", &img]);
    let script = "trap 'echo stopping; exit 3' TERM; echo up; while :; do sleep 0.1; done";
    let mut child = env.cmd(&["run", &img, "sh", "-c", script]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    wait_for_container(&env.root());
    // Signal only once the shell has set its trap and said so.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "up\n");
    let started = std::time::Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(out, "stopping\n", "the container got SIGTERM");
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "{:?}", started.elapsed());
    assert_clean(&env);
}

#[test]
fn run_cleans_up_after_a_killed_polyarch() {
    let Some((env, img)) = setup() else { return };
    env.ok(&["pull", "-q", &img]);
    let mut child = env.cmd(&["run", &img, "sleep", "600"]).spawn().unwrap();
    let id = wait_for_container(&env.root());
    child.kill().unwrap();
    child.wait().unwrap();
    let root = env.root().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(mounts.lines().any(|l| l.contains(&root)), "the killed run's mount is still there");
    // The next run removes the container, its mount and its snapshot.
    assert_eq!(run(&env, &[&img, "true"]).0, 0);
    let left =
        Command::new("runc").arg("--root").arg(env.root().join("exec/runtime")).args(["list", "-q"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&id));
    assert_clean(&env);
}

#[test]
fn run_picks_the_runtime_by_probing() {
    let Some((env, img)) = setup() else { return };
    let (code, _, err) = run(&env, &["--runtime", "/nonexistent/runc", &img, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("no OCI runtime \"/nonexistent/runc\""), "{err}");
    if have("crun") {
        // crun runs only if its probe container does (crun 1.8 refuses
        // hybrid cgroup hosts); either way nothing is left behind.
        let (code, out, err) = run(&env, &["--runtime", "crun", &img, "uname", "-m"]);
        if code == 0 {
            assert_eq!(out.trim(), "x86_64");
        } else {
            assert_eq!(code, 125, "{err}");
            assert!(err.contains("crun does not work here"), "{err}");
        }
    }
    assert_clean(&env);
}

#[test]
fn run_explains_platforms_the_kernel_cannot_execute() {
    if !root_and_runc() || !require(have("python3"), "python3") {
        return;
    }
    let env = Env::new();
    let archive = env.dir.path().join("foreign.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run/foreign_image.py");
    let made = Command::new("python3").arg(&script).arg(&archive).arg("docker.io/library/foreign:1").status().unwrap();
    assert!(made.success());
    env.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let (code, _, err) = run(&env, &["--pull", "never", "--platform", "linux/ia64", "foreign:1"]);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("exec format error"), "{err}");
    assert!(err.contains("linux/ia64") && err.contains("polyarch binfmt install ia64"), "{err}");
    assert!(err.contains("apt-get install qemu-user-static"), "{err}");
    // Without --platform the only platform stored is run, after Docker's
    // warning, and fails the same way.
    let (code, _, err) = run(&env, &["--pull", "never", "foreign:1"]);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("WARNING: The requested image's platform (linux/ia64) does not match"), "{err}");
    assert!(err.contains("polyarch binfmt install ia64"), "{err}");
    assert_clean(&env);
}

#[test]
fn run_limits_read_only_root_and_hostname() {
    let Some((env, img)) = setup() else { return };
    let (code, out, err) = run(&env, &["--ulimit", "nofile=100:200", &img, "sh", "-c", "ulimit -Sn; ulimit -Hn"]);
    assert_eq!((code, out.as_str()), (0, "100\n200\n"), "{err}");
    // Above polyarch's own hard limit: lowered to it instead of failing.
    let host = Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
    let hard = String::from_utf8_lossy(&host.stdout).trim().to_string();
    let (code, out, err) = run(&env, &["--ulimit", "nofile=1073741816", &img, "sh", "-c", "ulimit -Sn; ulimit -Hn"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{hard}\n{hard}\n"));
    let (code, _, err) = run(&env, &["--ulimit", "bogus=1", &img, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown ulimit name \"bogus\""), "{err}");
    assert_eq!(run(&env, &["--read-only", &img, "touch", "/x"]).0, 1);
    assert_eq!(run(&env, &[&img, "touch", "/x"]).0, 0);
    let (_, out, _) = run(&env, &["--hostname", "box", &img, "hostname"]);
    assert_eq!(out, "box\n");
    assert_clean(&env);
}

#[test]
fn run_with_either_snapshotter() {
    let Some((env, img)) = setup() else { return };
    if !binfmt("aarch64") {
        return;
    }
    for s in ["naive", "overlay"] {
        let (code, out, err) = run(&env, &["--snapshotter", s, "--platform", "linux/arm64", &img, "uname", "-m"]);
        assert_eq!((code, out.as_str()), (0, "aarch64\n"), "{s}: {err}");
        assert_eq!(run(&env, &["--snapshotter", s, &img, "sh", "-c", "echo x > /etc/passwd"]).0, 0);
        let (code, out, _) =
            run(&env, &["--snapshotter", s, &img, "sh", "-c", "grep -q ^root: /etc/passwd && echo intact"]);
        assert_eq!((code, out.as_str()), (0, "intact\n"), "{s}: a run's writes stay in its own snapshot");
        assert!(env.root().join("snapshots").join(s).join("metadata").is_dir(), "{s} was used");
    }
    assert_clean(&env);
}

/// More of `docker run`'s flags: `--add-host`, `--shm-size`, `--tmpfs`
/// (and `--mount type=tmpfs` sizes and modes), `--privileged`, `-p` with
/// docker's warning on the host network; `-d` and flags polyarch lacks
/// are refused by name with 125.
#[test]
fn run_takes_dockers_hosts_shm_tmpfs_and_privileged_flags() {
    let Some((env, img)) = setup() else { return };
    let ok = |args: &[&str]| {
        let (code, out, err) = run(&env, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        (out, err)
    };
    let (hosts, _) =
        ok(&["--add-host", "foo:10.1.2.3", "--add-host", "bar=::1,baz:127.0.0.2", &img, "cat", "/etc/hosts"]);
    for line in ["10.1.2.3\tfoo", "::1\tbar", "127.0.0.2\tbaz"] {
        assert!(hosts.lines().any(|l| l == line), "{line}: {hosts}");
    }
    let (shm, _) = ok(&["--shm-size", "96m", &img, "sh", "-c", "df -k /dev/shm | tail -1"]);
    assert!(shm.split_whitespace().nth(1) == Some("98304"), "{shm}");
    let (t, _) = ok(&[
        "--tmpfs",
        "/scratch:size=1m,mode=700",
        &img,
        "sh",
        "-c",
        "df -k /scratch | tail -1; stat -c %a /scratch",
    ]);
    assert!(t.contains(" 1024 ") && t.trim_end().ends_with("700"), "{t}");
    let (t, _) = ok(&[
        "--mount",
        "type=tmpfs,target=/m,tmpfs-size=2m,tmpfs-mode=0750",
        &img,
        "sh",
        "-c",
        "df -k /m | tail -1; stat -c %a /m",
    ]);
    assert!(t.contains(" 2048 ") && t.trim_end().ends_with("750"), "{t}");
    let caps = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([img.as_str(), "sh", "-c", "grep CapEff /proc/self/status"]);
        let (out, _) = ok(&args);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert!(caps(&["--privileged"]).count_ones() > caps(&[]).count_ones(), "--privileged gives more capabilities");
    let (_, err) = ok(&["-p", "8080:80", "-l", "team=a", &img, "true"]);
    assert!(err.contains("WARNING: Published ports are discarded when using host network mode"), "{err}");

    for (args, want) in [
        (vec!["-d", img.as_str(), "true"], "-d/--detach is not supported"),
        (vec!["--cap-add", "NET_ADMIN", img.as_str(), "true"], "polyarch run does not support --cap-add of docker run"),
        (vec!["--tmpfs", "/x:bogus", img.as_str(), "true"], "unknown tmpfs option \"bogus\""),
        (vec!["--no-such-flag", img.as_str()], "--no-such-flag"),
    ] {
        let (code, _, err) = run(&env, &args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
