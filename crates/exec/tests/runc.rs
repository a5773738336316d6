//! Real containers with runc: a root made of the host's `/usr` (read-only)
//! on an empty directory, so no image is needed. These need root and
//! runc; under `CI=true` a missing prerequisite fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polyarch_exec::runc::host_usr_mounts;
use polyarch_exec::{
    Cancel, ErrorKind, Executor, MountSpec, NetworkMode, ProcessIo, ProcessSpec, Resize, Resource, RuncExecutor,
    RuncExecutorBuilder, Terminal, WindowSize,
};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn ready() -> bool {
    let root = rustix::process::geteuid().is_root();
    let runc = Command::new("runc").arg("--version").output().is_ok_and(|o| o.status.success());
    if root && runc {
        return true;
    }
    let what = format!("root: {root}, runc: {runc}");
    assert!(!in_ci(), "prerequisite missing under CI=true: {what}");
    eprintln!("skipping: {what}");
    false
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    rootfs: PathBuf,
    exec: RuncExecutor,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new().prefix("polyarch-exec-").tempdir().unwrap();
        let state = dir.path().join("state");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\nwheel:x:10:app\n").unwrap();
        let exec = RuncExecutorBuilder::new(&state).with_kill_grace(Duration::from_millis(300)).build().unwrap();
        Fixture { _dir: dir, state, rootfs, exec }
    }

    fn mounts(&self) -> Vec<MountSpec> {
        host_usr_mounts(&self.rootfs).unwrap()
    }

    /// Runs `sh -c script` and returns (exit code, stdout, stderr).
    fn sh(&self, p: ProcessSpec) -> (i32, String, String) {
        let out = Mutex::new(Vec::new());
        let err = Mutex::new(Vec::new());
        let io = ProcessIo::null()
            .with_stdout(|b| out.lock().unwrap().extend_from_slice(b))
            .with_stderr(|b| err.lock().unwrap().extend_from_slice(b));
        let st = self.exec.run(&self.rootfs, &self.mounts(), &p, io).unwrap();
        let s = |v: Mutex<Vec<u8>>| String::from_utf8(v.into_inner().unwrap()).unwrap();
        (st.code(), s(out), s(err))
    }

    fn assert_clean(&self) {
        let list =
            Command::new("runc").arg("--root").arg(self.state.join("runtime")).args(["list", "-q"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "", "runc containers left");
        let bundles: Vec<_> = std::fs::read_dir(self.state.join("bundles")).unwrap().collect();
        assert!(bundles.is_empty(), "bundles left: {bundles:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let st = self.state.to_string_lossy().into_owned();
        let rf = self.rootfs.to_string_lossy().into_owned();
        assert!(!mounts.lines().any(|l| l.contains(&st) || l.contains(&rf)), "mounts left:\n{mounts}");
    }
}

fn script(s: &str) -> ProcessSpec {
    ProcessSpec::new(["/bin/sh", "-c", s])
}

#[test]
fn output_is_streamed_and_exit_codes_pass_through() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let (code, out, err) = f.sh(script("echo out; echo err >&2; exit 7"));
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    let (code, out, _) = f.sh(script("exit 255"));
    assert_eq!((code, out.as_str()), (255, ""));
    // Mount targets the runtime had to create are gone again.
    for stub in ["etc/resolv.conf", "etc/hosts", "usr"] {
        assert!(!f.rootfs.join(stub).exists(), "{stub} stub left in the rootfs");
    }
    assert!(f.rootfs.join("etc/passwd").exists());
    f.assert_clean();
}

#[test]
fn environment_cwd_user_and_hostname() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let p = script("echo $FOO; echo $PATH; echo $HOME; pwd; id -u; id -g; id -G; hostname")
        .with_env(["FOO=bar"])
        .with_cwd("/work/dir")
        .with_user("app")
        .with_hostname("box");
    let (code, out, err) = f.sh(p);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "bar",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "/home/app",
            "/work/dir",
            "1000",
            "1000",
            "1000 10",
            "box"
        ]
    );
    assert!(f.rootfs.join("work/dir").is_dir(), "the working directory is created in the rootfs");
    let (_, out, _) = f.sh(script("id -u; id -g").with_user("4242:77"));
    assert_eq!(out, "4242\n77\n");
    let e = f.exec.run(&f.rootfs, &f.mounts(), &script("true").with_user("ghost"), ProcessIo::null()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    f.assert_clean();
}

#[test]
fn docker_like_isolation() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let checks = "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; \
        echo pid $$; ls /dev | tr '\\n' ' '; echo; \
        cat /proc/keys /proc/timer_list | wc -c; ls /sys/firmware | wc -l; touch /sys/x >/dev/null 2>&1 && echo sys-rw || echo sys-ro; \
        echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq-rw || echo sysrq-ro; \
        test -s /etc/resolv.conf && echo resolv; grep -c polyarch /etc/hosts; ulimit -n; ulimit -Hn";
    let (code, out, err) = f.sh(script(checks));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // The 14 default capabilities: 0x00000000a80425fb.
    assert_eq!(lines[0], "CapEff:\t00000000a80425fb");
    assert_eq!(lines[1], "NoNewPrivs:\t1");
    assert_eq!(lines[2], "pid 1");
    for dev in ["full", "mqueue", "null", "pts", "random", "shm", "tty", "urandom", "zero"] {
        assert!(lines[3].split(' ').any(|d| d == dev), "/dev lacks {dev}: {}", lines[3]);
    }
    assert_eq!(lines[4].trim(), "0", "/proc/keys and /proc/timer_list are masked");
    assert_eq!(lines[5].trim(), "0", "/sys/firmware is masked");
    assert_eq!(&lines[6..], ["sys-ro", "sysrq-ro", "resolv", "1", "1024", "1024"]);
    f.assert_clean();
}

#[test]
fn network_none_has_only_loopback() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let devs = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let (_, none, _) = f.sh(script(devs).with_network(NetworkMode::None));
    assert_eq!(none, "lo\n");
    let (_, host, _) = f.sh(script(devs));
    assert!(host.lines().count() > 1, "host networking shows the host's interfaces: {host}");
    f.assert_clean();
}

#[test]
fn rlimits_are_clamped_to_the_callers_hard_limits() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    let p = script("ulimit -Sn; ulimit -Hn").with_rlimit(Resource::Nofile, u64::MAX / 2, u64::MAX / 2);
    let (code, out, err) = f.sh(p);
    assert_eq!(code, 0, "asking for more than the hard limit must not fail the run: {err}");
    let want = hard.map_or("unlimited".to_string(), |h| h.to_string());
    assert_eq!(out, format!("{want}\n{want}\n"));
    f.assert_clean();
}

#[test]
fn missing_programs_and_bad_args_are_errors() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let e = f.exec.run(&f.rootfs, &f.mounts(), &ProcessSpec::new(["no-such-program"]), ProcessIo::null()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = f.exec.run(&f.rootfs, &f.mounts(), &ProcessSpec::new(Vec::<String>::new()), ProcessIo::null()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    f.assert_clean();
}

#[test]
fn cancel_and_timeout_kill_the_container() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let started = Instant::now();
    let e = f
        .exec
        .run(&f.rootfs, &f.mounts(), &script("sleep 60"), ProcessIo::null().with_timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let cancel = Cancel::new();
    let c = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(String::new()));
    let s = seen.clone();
    let io = ProcessIo::null()
        .with_cancel(cancel)
        .with_stdout(move |b| s.lock().unwrap().push_str(&String::from_utf8_lossy(b)));
    let e = f
        .exec
        .run(
            &f.rootfs,
            &f.mounts(),
            &script("trap 'echo term; exit 143' TERM; echo up; while :; do sleep 0.05; done"),
            io,
        )
        .unwrap_err();
    t.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(seen.lock().unwrap().as_str(), "up\nterm\n", "SIGTERM comes first");
    f.assert_clean();
}

#[test]
fn stale_state_of_dead_owners_is_cleaned() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    // A polyarch process that died mid-run: its container still runs.
    let id = "pa-999999999-1-0";
    let bundle = f.state.join("bundles").join(id);
    std::fs::create_dir_all(&bundle).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/usr/bin/sleep", "60"], "cwd": "/",
                    "env": ["PATH=/usr/bin:/bin"]},
        "root": {"path": f.rootfs},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let st = Command::new("runc")
        .arg("--root")
        .arg(f.state.join("runtime"))
        .args(["run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mp = f.exec.mount_point().unwrap();
    let dead_mnt = mp.path().parent().unwrap().join("pa-999999999-1-7");
    std::mem::drop(mp);
    std::fs::create_dir_all(&dead_mnt).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&dead_mnt).status().unwrap();
    assert!(ok.success());
    let done = f.exec.cleanup_stale().unwrap();
    assert_eq!(done.containers, [id]);
    assert_eq!(done.mounts, std::slice::from_ref(&dead_mnt));
    assert!(!dead_mnt.exists() && !bundle.exists());
    f.assert_clean();
}

#[test]
fn mount_points_unmount_on_drop() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let mp = f.exec.mount_point().unwrap();
    let path: PathBuf = mp.path().to_path_buf();
    assert!(Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&path).status().unwrap().success());
    std::fs::write(path.join("f"), b"x").unwrap();
    assert!(!f.exec.is_stale(mp.id()));
    drop(mp);
    assert!(!Path::new(&path).exists());
    f.assert_clean();
}

/// An ELF executable header for a machine no binfmt handler serves
/// (IA-64), so the kernel answers ENOEXEC.
fn foreign_elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h[16] = 2; // ET_EXEC
    h[18] = 50; // EM_IA_64
    h[20] = 1; // EV_CURRENT
    h[52] = 64; // e_ehsize
    h[54] = 56; // e_phentsize
    h
}

#[test]
fn programs_for_unserved_architectures_fail_with_exec_format() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let prog = f.rootfs.join("foreign");
    std::fs::write(&prog, foreign_elf()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = f.exec.run(&f.rootfs, &f.mounts(), &ProcessSpec::new(["/foreign"]), ProcessIo::null()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExecFormat, "{e}");
    assert!(e.to_string().contains("/foreign"), "{e}");
    f.assert_clean();
}

#[test]
fn extra_mounts_and_a_read_only_root() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let shared = f.rootfs.parent().unwrap().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::create_dir_all(f.rootfs.join("tmp")).unwrap();
    let mut mounts = f.mounts();
    mounts.push(MountSpec::bind(&shared, "/cache", false));
    mounts.push(MountSpec::tmpfs("/tmp"));
    let p = script("echo hi > /cache/out; echo t > /tmp/t; touch /etc/x 2>/dev/null && echo root-rw || echo root-ro")
        .with_readonly_rootfs(true);
    let out = Mutex::new(String::new());
    let io = ProcessIo::null().with_stdout(|b| out.lock().unwrap().push_str(&String::from_utf8_lossy(b)));
    assert!(f.exec.run(&f.rootfs, &mounts, &p, io).unwrap().success());
    assert_eq!(out.into_inner().unwrap(), "root-ro\n");
    assert_eq!(std::fs::read_to_string(shared.join("out")).unwrap(), "hi\n");
    assert!(!f.rootfs.join("tmp/t").exists(), "the tmpfs took the write");
    assert!(!f.rootfs.join("cache").exists(), "the empty mount stub was removed");
    f.assert_clean();
}

/// A terminal run's screen, with the terminal of `size`.
fn on_terminal(
    f: &Fixture,
    p: &ProcessSpec,
    size: Option<WindowSize>,
    cancel: Option<Cancel>,
) -> (Result<i32, polyarch_exec::Error>, String) {
    let screen = Mutex::new(Vec::new());
    let terminal = Terminal { size, stdin: false, resize: Resize::new() };
    let mut io = ProcessIo::null().with_stdout(|b| screen.lock().unwrap().extend_from_slice(b)).with_terminal(terminal);
    if let Some(c) = cancel {
        io = io.with_cancel(c);
    }
    let status = f.exec.run(&f.rootfs, &f.mounts(), p, io).map(|s| s.code());
    (status, String::from_utf8_lossy(&screen.into_inner().unwrap()).into_owned())
}

#[test]
fn a_terminal_of_its_own_with_the_size_asked_for() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let size = WindowSize { rows: 33, cols: 101 };
    let (status, screen) = on_terminal(&f, &script("tty; stty size; echo err >&2; exit 4"), Some(size), None);
    assert_eq!(status.unwrap(), 4, "the exit code is kept: {screen}");
    assert_eq!(screen, "/dev/pts/0\r\n33 101\r\nerr\r\n", "stdout and stderr are the terminal");
    let (status, _) = on_terminal(&f, &ProcessSpec::new(["no-such-program"]), None, None);
    assert_eq!(status.unwrap_err().kind(), ErrorKind::NotFound);
    f.assert_clean();
}

#[test]
fn a_cancelled_terminal_run_stops_its_container() {
    if !ready() {
        return;
    }
    let f = Fixture::new();
    let cancel = Cancel::new();
    let c = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        c.cancel();
    });
    let started = Instant::now();
    let p = script("trap 'echo term; exit 143' TERM; echo up; while :; do sleep 0.05; done");
    let (status, screen) = on_terminal(&f, &p, None, Some(cancel));
    t.join().unwrap();
    assert_eq!(status.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(screen, "up\r\nterm\r\n", "SIGTERM comes first");
    f.assert_clean();
}
