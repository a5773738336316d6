//! Interrupting `polyarch build` during a RUN step: SIGTERM stops the
//! container, undoes mounts and temporary directories and exits 130; after
//! SIGKILL the next build removes what the killed one left.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

fn context(env: &Env, name: &str, dockerfile: &str) -> PathBuf {
    crate::util::context(env, name, &[("Dockerfile", dockerfile)])
}

/// Pids of processes whose command line is exactly `args`.
pub(crate) fn processes(args: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Starts a build whose RUN sleeps for `secs` and waits until it sleeps.
pub(crate) fn start_sleeping(env: &Env, secs: &str) -> Child {
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

pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
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

/// The sleeper's processes are gone (within a moment); kills survivors
/// so that a failure leaves nothing running.
pub(crate) fn assert_no_process(args: &[&str]) {
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
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut child = start_sleeping(&env, "1231");
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_no_process(&["sleep", "1231"]);
    assert_eq!(status.code(), Some(130), "{status}");
    assert_clean_root(&env.root());
    assert_usable(&env);
    assert_clean_root(&env.root());
}

#[test]
fn the_next_build_cleans_what_sigkill_left() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut child = start_sleeping(&env, "1232");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!processes(&["sleep", "1232"]).is_empty(), "the container should survive its killed builder");
    assert_usable(&env);
    assert_clean_root(&env.root());
    assert_no_process(&["sleep", "1232"]);
}

/// A failing step stops the rest of the build, as BuildKit cancels it:
/// the RUN steps still running (of another stage of the same platform or
/// of another platform) are killed at once and shown CANCELED, no other
/// step starts,
/// and the failure is the one reported; nothing of theirs is left.
#[test]
fn a_failure_stops_the_other_stages_and_platforms() {
    let Some((env, _reg)) = mirrored_for_run() else { return };
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: linux/386 runs natively on x86_64 hosts only");
        return;
    }
    let df = "FROM busybox AS slow\nRUN sleep 97 && touch /slow\n\
              FROM busybox AS fast\nARG TARGETARCH\nRUN sleep 3 && if [ \"$TARGETARCH\" = amd64 ]; then exit 7; fi; sleep 97\n\
              FROM busybox\nCOPY --from=slow /slow /\nCOPY --from=fast /etc/hostname /fast\n";
    let ctx = context(&env, "stop", df);
    let t = Instant::now();
    let err =
        env.fails(&["build", "--progress", "plain", "--jobs", "4", "--platform", "linux/amd64,linux/386", s(&ctx)]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(60), "the build waited for the other steps to end ({took:?}):\n{err}");
    assert!(err.contains("error: [linux/amd64]") && err.contains("exit code: 7"), "the failure is reported:\n{err}");
    assert!(err.contains("Dockerfile:5:1"), "the failing step's line:\n{err}");
    assert!(err.contains(" CANCELED"), "the RUN steps still running were cancelled:\n{err}");
    assert_eq!(err.matches(" ERROR:").count(), 1, "a cancelled step is not a failure of its own:\n{err}");
    assert_no_process(&["sleep", "97"]);
    assert_no_mounts_or_containers(&env.root());
    assert_usable(&env);
}
