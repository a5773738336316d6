//! Interrupting `polyarch build` during a RUN step: SIGTERM stops the
//! container, undoes mounts and temporary directories and exits 130; after
//! SIGKILL the next build removes what the killed one left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// An environment whose config sends docker.io to the fixture registry;
/// `None` (skip) when a prerequisite is missing outside CI.
fn mirrored() -> Option<Env> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    if !require(root, "root (RUN needs an OCI runtime)") || !require(have("runc"), "runc") {
        return None;
    }
    let reg = shared_registry()?;
    let env = Env::new();
    std::fs::write(env.config_file(), format!("[registry.\"docker.io\"]\nmirrors = [\"{}\"]\n", reg.host)).unwrap();
    Some(env)
}

fn context(env: &Env, name: &str, dockerfile: &str) -> PathBuf {
    let dir = env.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// Pids of processes whose command line is exactly `args`.
fn processes(args: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Starts a build whose RUN sleeps for `secs` and waits until it sleeps.
fn start_sleeping(env: &Env, secs: &str) -> Child {
    let ctx = context(env, &format!("sleep-{secs}"), &format!("FROM busybox\nRUN sleep {secs}\n"));
    let mut child = env
        .cmd(&["build", "--progress", "plain", "-o", "type=image,name=sleeper", ctx.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting polyarch");
    let start = Instant::now();
    while processes(&["sleep", secs]).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the build ended before its RUN step started: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the RUN step did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("polyarch did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No mount below the data root, no container of its runtime and no
/// temporary directory remain.
fn assert_clean(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(root.to_str().unwrap())).collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    let state = root.join("exec/runtime");
    if state.exists() {
        let out = sh(Command::new("runc").arg("--root").arg(&state).args(["list", "-q"]));
        assert!(out.trim().is_empty(), "containers left: {out}");
    }
    let run = root.join("run");
    if run.exists() {
        let left: Vec<_> = std::fs::read_dir(&run).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "temporary directories left: {left:?}");
    }
}

/// The sleeper's processes are gone (within a moment); kills survivors
/// so that a failure leaves nothing running.
fn assert_no_process(args: &[&str]) {
    let start = Instant::now();
    while !processes(args).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = processes(args);
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "{args:?} outlived its build: {left:?}");
}

/// The store still works: images are listed and another build succeeds.
fn assert_usable(env: &Env) {
    env.ok(&["images"]);
    let ctx = context(env, "after", "FROM busybox\nRUN echo after > /after\n");
    env.ok(&["build", "--progress", "plain", "-o", "type=image,name=after", ctx.to_str().unwrap()]);
}

#[test]
fn sigterm_stops_the_run_and_cleans_up() {
    let Some(env) = mirrored() else { return };
    let mut child = start_sleeping(&env, "1231");
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_no_process(&["sleep", "1231"]);
    assert_eq!(status.code(), Some(130), "{status}");
    assert_clean(&env.root());
    assert_usable(&env);
    assert_clean(&env.root());
}

#[test]
fn the_next_build_cleans_what_sigkill_left() {
    let Some(env) = mirrored() else { return };
    let mut child = start_sleeping(&env, "1232");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!processes(&["sleep", "1232"]).is_empty(), "the container should survive its killed builder");
    assert_usable(&env);
    assert_clean(&env.root());
    assert_no_process(&["sleep", "1232"]);
}
