//! Nothing of the store is exposed to other users (its root is 0700,
//! secrets sit in 0600 files in 0700 directories), and whatever a
//! `kill -9` of polyarch leaves (containers, mounts, bundles, secrets,
//! partial snapshots) is taken back by the next command of any kind,
//! after `du` counted it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::interrupt::{assert_no_process, start_sleeping, wait_exit};
use crate::util::proxy::{Fault, FaultProxy, Rule};
use crate::util::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_holding(dir, needle)
}

fn du(env: &Env) -> serde_json::Value {
    serde_json::from_str(env.ok(&["du", "--format", "json"]).trim()).unwrap()
}

fn wait_for<T>(what: &str, child: &mut Child, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("polyarch ended ({status}) before {what}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no {what} within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_store_root_is_private_new_or_not() {
    let env = Env::new();
    env.ok(&["images"]);
    assert_eq!(mode(&env.root()), 0o700, "a new store");
    let old = Env::new();
    std::fs::create_dir(old.root()).unwrap();
    std::fs::set_permissions(old.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    old.ok(&["images"]);
    assert_eq!(mode(&old.root()), 0o700, "a store made 0755 before");
    let other = Env::new();
    let given = other.dir.path().join("given/data");
    other.ok(&["--root", s(&given), "du"]);
    assert_eq!(mode(&given), 0o700, "a --root directory");
    let lists = Env::new();
    lists.run(&["manifest", "rm", "example.com/no/such:list"]);
    assert_eq!(mode(&lists.root()), 0o700, "a root made for manifest lists");
}

const SECRET: &str = "polyarch-secret-value-58213";

/// A build whose RUN reads an env secret and then sleeps `secs`.
fn secret_build(env: &Env, secs: &str) -> Child {
    let df = format!(
        "FROM busybox\nRUN --mount=type=secret,id=tok,env=TOK,required=true test -n \"$TOK\" && sleep {secs}\n"
    );
    let ctx = context(env, &format!("secret-{secs}"), &[("Dockerfile", &df)]);
    env.cmd(&["build", "--progress", "plain", "--secret", "id=tok,env=PA_SECRET", "-o", "type=image,name=s", s(&ctx)])
        .env("PA_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting polyarch")
}

/// The config.json of the running step's bundle, once it holds the secret.
fn bundle_config(env: &Env, child: &mut Child) -> PathBuf {
    let bundles = env.root().join("exec/bundles");
    wait_for("a bundle with the secret", child, || {
        holding(&bundles, SECRET).into_iter().find(|f| f.ends_with("config.json"))
    })
}

fn assert_private(config: &Path) {
    for f in files(config.parent().unwrap()) {
        assert_eq!(mode(&f), 0o600, "every file of the bundle: {}", f.display());
    }
    let mut dir = config.parent().unwrap().to_path_buf();
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    while dir.pop() && dir.starts_with("/tmp/") {
        if dir.join("oci-layout").exists() {
            assert_eq!(mode(&dir), 0o700, "the store root {}", dir.display());
            return;
        }
    }
}

#[test]
fn secrets_are_for_root_alone_and_gone_after_the_build() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut child = secret_build(&env, "3");
    let config = bundle_config(&env, &mut child);
    assert_private(&config);
    for f in holding(&env.root(), SECRET) {
        assert_eq!(mode(&f) & 0o077, 0, "{} holds the secret and others may read it", f.display());
    }
    let status = wait_exit(&mut child, Duration::from_secs(120));
    assert!(status.success(), "{status}");
    assert_eq!(holding(&env.root(), SECRET), Vec::<PathBuf>::new(), "the secret outlived its step");
    assert_clean_root(&env.root());
}

#[test]
fn secrets_of_a_killed_build_go_with_the_next_command() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut child = secret_build(&env, "1236");
    let config = bundle_config(&env, &mut child);
    assert_private(&config);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(config.exists(), "the killed build's bundle is there until a command runs");
    env.ok(&["images"]);
    assert_eq!(holding(&env.root(), SECRET), Vec::<PathBuf>::new(), "the secret outlived its killed build");
    assert_clean_root(&env.root());
    assert_no_process(&["sleep", "1236"]);
}

/// Processes one of whose arguments starts with `prefix`.
fn processes_with_arg_under(prefix: &Path) -> Vec<u32> {
    let want = prefix.to_str().unwrap().as_bytes().to_vec();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a.starts_with(&want)))
        })
        .collect()
}

/// A build killed while its runtime is still starting the container (here
/// a runtime that takes a while to begin): the next command stops that
/// runtime before it sweeps the build's bundle and root, so nothing of it
/// starts, or makes directories again, afterwards.
#[test]
fn a_runtime_still_starting_for_a_killed_build_is_stopped_by_the_next_command() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let runc = sh(Command::new("sh").args(["-c", "command -v runc"])).trim().to_string();
    let mark = env.dir.path().join("runtime-started");
    let slow = env.dir.path().join("slow-runtime");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" run \"*) : > {mark}; sleep 4;; esac\nexec {runc} \"$@\"\n",
            mark = mark.display(),
            runc = runc
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = context(&env, "slow", &[("Dockerfile", "FROM busybox\nRUN sleep 1238\n")]);
    let mut child = env
        .cmd(&["build", "--progress", "plain", "--runtime", s(&slow), "-o", "type=image,name=slow", s(&ctx)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting polyarch");
    wait_for("the runtime to start", &mut child, || mark.exists().then_some(()));
    child.kill().unwrap();
    let _ = child.wait();
    let bundles = env.root().join("exec/bundles");
    assert!(!processes_with_arg_under(&bundles).is_empty(), "the runtime outlives its killed build");
    env.ok(&["images"]);
    assert_eq!(processes_with_arg_under(&bundles), Vec::<u32>::new(), "the runtime of the killed build");
    // Past the runtime's own wait: nothing started or came back.
    std::thread::sleep(Duration::from_secs(5));
    assert_no_process(&["sleep", "1238"]);
    assert_clean_root(&env.root());
}

/// Mount points in this process's mount table below `root`.
fn mounts_below(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(s(root))).map(String::from).collect()
}

fn runc_list(root: &Path) -> String {
    let state = root.join("exec/runtime");
    if !state.exists() {
        return String::new();
    }
    sh(Command::new("runc").arg("--root").arg(&state).args(["list", "-q"]))
}

#[test]
fn a_killed_build_step_is_reclaimed_by_du() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut child = start_sleeping(&env, "1237");
    let live = du(&env);
    assert!(live["OtherBytes"].as_u64().unwrap() > 0, "du counts the running step's state: {live}");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!runc_list(&env.root()).trim().is_empty(), "the container outlives its killed build");
    assert!(!mounts_below(&env.root()).is_empty(), "so does its mount");
    // Several commands at once take it back once, quietly.
    let others: Vec<Child> =
        (0..3).map(|_| env.cmd(&["images"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    let after = du(&env);
    for c in others {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{err}");
    }
    assert_eq!(runc_list(&env.root()).trim(), "", "du must stop the container");
    assert_eq!(mounts_below(&env.root()), Vec::<String>::new());
    assert_no_process(&["sleep", "1237"]);
    assert_clean_root(&env.root());
    for sub in ["exec/bundles", "exec/etc", "exec/mnt", "exec/runtime"] {
        let left: Vec<_> = std::fs::read_dir(env.root().join(sub)).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
    assert!(after["OtherBytes"].as_u64() < live["OtherBytes"].as_u64(), "{live} → {after}");
}

/// The snapshot records of `polyarch run` (`metadata/*.json` of each
/// snapshotter).
fn snapshot_records(root: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for kind in ["overlay", "naive"] {
        for f in files(&root.join("snapshots").join(kind).join("metadata")) {
            if f.extension().is_none_or(|x| x != "json") {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&f).unwrap_or_default()) {
                out.push(v);
            }
        }
    }
    out
}

/// Keys of the snapshots of `polyarch run` being unpacked.
fn extracting(root: &Path) -> Vec<String> {
    let records = snapshot_records(root);
    records.iter().filter_map(|v| v["key"].as_str()).filter(|k| k.starts_with("extract-")).map(String::from).collect()
}

#[test]
fn a_run_killed_while_unpacking_is_reclaimed_by_images() {
    let Some((env, _)) = mirrored_for_run() else { return };
    // A layer that takes a while to unpack: many files and some bytes.
    let df =
        "FROM busybox\nRUN mkdir /many && cd /many && seq 1 20000 | xargs touch && head -c 30000000 /dev/zero > /big\n";
    let ctx = context(&env, "big", &[("Dockerfile", df)]);
    // A naive build unpacks no layer, so the run has to.
    build_ok(&env, &["--snapshotter", "naive", "-t", "big:1", s(&ctx)]);
    let before = du(&env);
    let mut child = env
        .cmd(&["run", "--pull", "never", "--rm", "big:1", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting polyarch run");
    wait_for("a snapshot being unpacked", &mut child, || (!extracting(&env.root()).is_empty()).then_some(()));
    let pid = child.id().to_string();
    sh(Command::new("kill").args(["-STOP", &pid]));
    std::thread::sleep(Duration::from_millis(300));
    let paused = du(&env);
    assert!(!extracting(&env.root()).is_empty(), "du must not touch the work of a live process");
    sh(Command::new("kill").args(["-KILL", &pid]));
    let _ = child.wait();
    let reclaimable = |v: &serde_json::Value| v["RunSnapshotReclaimableBytes"].as_u64().unwrap();
    assert!(reclaimable(&paused) > reclaimable(&before), "du counts the partial snapshot: {before} → {paused}");
    env.ok(&["images"]);
    assert_eq!(extracting(&env.root()), Vec::<String>::new(), "images must remove the partial snapshot");
    let after = du(&env);
    assert!(reclaimable(&after) < reclaimable(&paused), "{paused} → {after}");
    assert!(after["TotalBytes"].as_u64() < paused["TotalBytes"].as_u64(), "{paused} → {after}");
    assert_clean_root(&env.root());
}

#[test]
fn a_pull_killed_mid_download_leaves_no_temp_file_after_the_next_command() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let proxy = FaultProxy::tcp(&reg.host, vec![Rule::conn(Fault::StallAfter(200_000)).always()]);
    let src = format!("{}/library/busybox:latest", proxy.host());
    let mut child = env
        .cmd(&["pull", "-q", "--platform", "linux/amd64", &src])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting polyarch pull");
    let ingest = env.root().join("ingest");
    wait_for("a partial download", &mut child, || {
        files(&ingest).into_iter().any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0)).then_some(())
    });
    let live = du(&env);
    assert!(live["TempFiles"].as_u64().unwrap() > 0, "a live download is kept and counted: {live}");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!files(&ingest).is_empty(), "the killed pull leaves its temp file");
    env.ok(&["images"]);
    assert_eq!(files(&ingest), Vec::<PathBuf>::new(), "images must remove the killed pull's temp files");
    drop(proxy);
}

/// Keys of active snapshots (runs, unpacks) of `polyarch run`.
fn active_snapshots(root: &Path) -> Vec<String> {
    let records = snapshot_records(root);
    records.iter().filter(|v| v["kind"] != "committed").filter_map(|v| v["key"].as_str()).map(String::from).collect()
}

#[test]
fn a_run_killed_while_running_is_reclaimed_by_the_next_command() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut child = env
        .cmd(&["run", "busybox", "sleep", "1238"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting polyarch run");
    wait_for("the container", &mut child, || {
        (!crate::interrupt::processes(&["sleep", "1238"]).is_empty()).then_some(())
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!runc_list(&env.root()).trim().is_empty(), "the container outlives its killed run");
    assert!(!active_snapshots(&env.root()).is_empty(), "so does its snapshot");
    env.ok(&["images"]);
    assert_eq!(runc_list(&env.root()).trim(), "");
    assert_eq!(mounts_below(&env.root()), Vec::<String>::new());
    assert_eq!(active_snapshots(&env.root()), Vec::<String>::new());
    assert_no_process(&["sleep", "1238"]);
    assert_clean_root(&env.root());
}

/// `du -sb` of `dir`, as coreutils counts it.
fn du_sb(dir: &Path) -> u64 {
    let out = sh(Command::new("du").arg("-sb").arg(dir));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn du_totals_what_du_sb_sees_in_the_store() {
    let Some((env, _)) = mirrored_for_run() else { return };
    for snapshotter in ["naive", "overlay"] {
        env.ok(&["run", "--snapshotter", snapshotter, "busybox", "true"]);
    }
    // Hard links, symlinks and directories of an unpacked tree count once.
    let root = env.root();
    let stray = root.join("snapshots/stray/deep");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("f"), vec![7u8; 50_000]).unwrap();
    for i in 0..20 {
        std::fs::hard_link(stray.join("f"), stray.join(format!("h{i}"))).unwrap();
        std::os::unix::fs::symlink("f", stray.join(format!("l{i}"))).unwrap();
    }
    let total = du(&env)["TotalBytes"].as_u64().unwrap();
    assert_eq!(total, du_sb(&root), "du of polyarch against du -sb of {}", root.display());
}
