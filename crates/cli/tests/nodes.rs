//! Builds on a builder with two nodes: this machine and a second node
//! reached through a real sshd on 127.0.0.1, running polyarch with its own
//! store. Each node builds one platform; the index is pushed to the
//! registry fixture once both children exist; a node killed mid-build
//! fails its platform by name and nothing is pushed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::ssh::Sshd;
use crate::util::{context, mirrored, require, s, sh, Env, Registry};

/// The far node: a wrapper that runs this polyarch with the node's own
/// store and records the worker's pid.
struct FarNode {
    store: PathBuf,
    pid_file: PathBuf,
    program: PathBuf,
}

impl FarNode {
    fn new(dir: &Path) -> FarNode {
        let store = dir.join("far-store");
        let pid_file = dir.join("far-worker.pid");
        let program = dir.join("far-polyarch");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\necho $$ > {}\nPOLYARCH_ROOT={} exec {} \"$@\"\n",
                pid_file.display(),
                store.display(),
                env!("CARGO_BIN_EXE_polyarch")
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        FarNode { store, pid_file, program }
    }

    fn has_blob(&self, digest: &str) -> bool {
        blob(&self.store, digest).exists()
    }
}

fn blob(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// The builder `duo`: `here` (this machine, linux/amd64) and `far` (ssh,
/// linux/arm64), with the test's registry config for every node.
fn duo(env: &Env, sshd: &Sshd, far: &FarNode) {
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    env.ok(&["builder", "create", "--name", "duo", "--node", "here", "--platform", "linux/amd64", "local"]);
    env.ok(&[
        "builder",
        "create",
        "--name",
        "duo",
        "--append",
        "--node",
        "far",
        "--platform",
        "linux/arm64",
        "--config",
        s(&env.config_file()),
        "--remote-polyarch",
        s(&far.program),
        &endpoint,
    ]);
}

fn setup() -> Option<(Env, &'static Registry, Sshd, FarNode)> {
    let (env, reg) = mirrored()?;
    if !require(polyarch_emu::host::is_root(), "root (RUN steps and sshd)") {
        return None;
    }
    let sshd = Sshd::start(env.dir.path())?;
    let far = FarNode::new(env.dir.path());
    duo(&env, &sshd, &far);
    Some((env, reg, sshd, far))
}

/// Waits until a process whose command line has `pattern` runs (`true`)
/// or is gone (`false`); `what` names the wait in the failure.
fn wait_for_process(pattern: &str, running: bool, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Command::new("pgrep").args(["-f", pattern]).status().unwrap().success() != running {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a two-platform build on `duo` with `args` in the background.
fn spawn_build(env: &Env, sshd: &Sshd, args: &[&str]) -> std::process::Child {
    env.cmd(&["build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", "--progress", "plain"])
        .args(args)
        .env("POLYARCH_SSH", sshd.ssh_command())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn tags_exist(reg: &Registry, repo: &str) -> bool {
    Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false", &format!("docker://{}/{repo}", reg.host)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn two_nodes_build_one_platform_each_and_push_the_index() {
    let Some((env, reg, sshd, far)) = setup() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY hello.txt /hello.txt\nRUN uname -m > /arch\n"),
            ("hello.txt", "hello from a node\n"),
            ("unused.bin", &"x".repeat(100_000)),
        ],
    );
    let image = format!("{}/nodes/app:1", reg.host);
    let meta = env.dir.path().join("meta.json");
    let build = |extra: &[&str]| {
        let mut args =
            vec!["build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(s(&ctx));
        let out = env.cmd(&args).env("POLYARCH_SSH", sshd.ssh_command()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build failed:\n{stderr}");
        stderr
    };
    let stderr = build(&["-t", &image, "--push", "--metadata-file", s(&meta)]);
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    // The build found the far node running: `builder ls` says so.
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    let far_node = &ls[1]["nodes"][1];
    assert_eq!((far_node["name"].as_str(), far_node["status"].as_str()), (Some("far"), Some("running")), "{ls}");
    assert!(stderr.contains("linux/amd64 builds on node here (local) (declared)"), "{stderr}");
    assert!(stderr.contains(&format!("linux/arm64 builds on node far ({endpoint}) (declared)")), "{stderr}");
    assert!(stderr.contains("[linux/arm64@far 3/3] RUN uname -m > /arch"), "{stderr}");
    assert!(stderr.contains("[linux/amd64@here 3/3] RUN uname -m > /arch"), "{stderr}");
    // Only the file COPY reads travels, not the unused one.
    assert!(stderr.contains("context of 1 entries, 1 contents sent (18 bytes)"), "{stderr}");

    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let digest = |p: &str| meta["polyarch.platforms"][p]["digest"].as_str().unwrap().to_string();
    let (amd, arm) = (digest("linux/amd64"), digest("linux/arm64"));
    assert!(far.has_blob(&arm), "the far node's store holds its image");
    assert!(!far.has_blob(&amd), "the far node did not build linux/amd64");
    assert!(blob(&env.root(), &amd).exists(), "this machine's store holds its image");
    // With --push alone the far node pushed its layers itself: they never
    // came to this machine.
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(&far.store, &arm)).unwrap()).unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
    assert!(far.has_blob(&top) && !blob(&env.root(), &top).exists(), "layer {top}");

    // The index in the registry names both children, and each runs.
    let raw = crate::util::skopeo_raw(&image);
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let children: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["platform"]["architecture"].as_str().unwrap().into(), m["digest"].as_str().unwrap().into()))
        .collect();
    assert_eq!(children, [("amd64".to_string(), amd), ("arm64".to_string(), arm)]);
    let client = Env::new();
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = client.ok(&["run", "--rm", "--platform", platform, &image, "cat", "/arch"]);
        assert_eq!(out.trim(), arch, "{platform}");
        let out = client.ok(&["run", "--rm", "--platform", platform, &image, "cat", "/hello.txt"]);
        assert_eq!(out, "hello from a node\n");
    }

    // Again: everything cached on both nodes, and no content travels twice.
    let stderr = build(&["-t", &image, "--push"]);
    assert!(stderr.contains("context of 1 entries, 0 contents sent (0 bytes), 1 already there"), "{stderr}");
    assert!(!stderr.contains("DONE") || stderr.matches("CACHED").count() >= 4, "{stderr}");

    // Without --push the results come back into this machine's store.
    let stderr = build(&["-t", "nodes/local:1"]);
    assert!(stderr.contains("result blobs fetched"), "{stderr}");
    let images = env.ok(&["images"]);
    assert!(images.contains("nodes/local"), "{images}");
    let out = env.ok(&["run", "--rm", "--platform", "linux/arm64", "nodes/local:1", "cat", "/arch"]);
    assert_eq!(out.trim(), "aarch64");

    // One platform, built and pushed by the far node: a single manifest
    // under the tag, whose layers never came here.
    let ctx_one = context(&env, "one", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch && echo one > /one\n")]);
    let one = format!("{}/nodes/one:1", reg.host);
    let out = env
        .cmd(&["build", "--builder", "duo", "--platform", "linux/arm64", "--progress", "plain"])
        .args(["-t", &one, "--push", "--iidfile", s(&env.dir.path().join("iid")), s(&ctx_one)])
        .env("POLYARCH_SSH", sshd.ssh_command())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: Value = serde_json::from_slice(&crate::util::skopeo_raw(&one)).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{manifest}");
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
    assert!(far.has_blob(&top) && !blob(&env.root(), &top).exists(), "layer {top}");
    let iid = std::fs::read_to_string(env.dir.path().join("iid")).unwrap();
    // buildx's image ID of a one-platform image is its config digest, pushed or not.
    assert_eq!(iid, manifest["config"]["digest"].as_str().unwrap());
    let out = client.ok(&["run", "--rm", "--platform", "linux/arm64", &one, "cat", "/arch"]);
    assert_eq!(out.trim(), "aarch64");

    // force-compression: every layer of both platforms is zstd, the base
    // image's too, recompressed here from the blobs that came back.
    let forced = format!("{}/nodes/forced:1", reg.host);
    build(&["-o", &format!("type=image,name={forced},push=true,compression=zstd,force-compression=true")]);
    let index: Value = serde_json::from_slice(&crate::util::skopeo_raw(&forced)).unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let raw = crate::util::skopeo_raw(&format!("{}/nodes/forced@{}", reg.host, child["digest"].as_str().unwrap()));
        let manifest: Value = serde_json::from_slice(&raw).unwrap();
        let types: Vec<&str> =
            manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
        assert_eq!(types, ["application/vnd.oci.image.layer.v1.tar+zstd"; 3], "{child}");
    }
    let out = client.ok(&["run", "--rm", "--platform", "linux/arm64", &forced, "cat", "/arch"]);
    assert_eq!(out.trim(), "aarch64");
}

#[test]
fn a_node_killed_mid_build_fails_its_platform_and_nothing_is_pushed() {
    let Some((env, reg, sshd, far)) = setup() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", "FROM busybox\nARG TARGETARCH\nRUN [ \"$TARGETARCH\" != arm64 ] || sleep 61\n")],
    );
    let image = format!("{}/nodes/killed:1", reg.host);
    let child = spawn_build(&env, &sshd, &["-t", &image, "--push", s(&ctx)]);
    // Wait for the far node's RUN step, then kill its worker.
    wait_for_process("sleep 61", true, 60, "the far node's RUN step never started");
    let pid = std::fs::read_to_string(&far.pid_file).unwrap();
    assert!(Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap().success());
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(t.elapsed() < Duration::from_secs(30), "the client noticed late");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    assert!(stderr.contains(&format!("linux/arm64 on node far ({endpoint}): the worker went away")), "{stderr}");
    assert!(stderr.contains("nothing was exported or pushed"), "{stderr}");
    assert!(!tags_exist(reg, "nodes/killed"), "nothing may be pushed when a platform failed");

    // The next session on the node removes what the killed worker left.
    let ctx2 = context(&env, "ctx2", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let out = env
        .cmd(&["build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", s(&ctx2)])
        .env("POLYARCH_SSH", sshd.ssh_command())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for_process("sleep 61", false, 10, "the killed worker's container is still running");
}

#[test]
fn an_interrupted_client_stops_the_remote_build_and_leaves_nothing_running() {
    let Some((env, _reg, sshd, _far)) = setup() else { return };
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", "FROM busybox\nARG TARGETARCH\nRUN [ \"$TARGETARCH\" != arm64 ] || sleep 62\n")],
    );
    let child = spawn_build(&env, &sshd, &[s(&ctx)]);
    wait_for_process("sleep 62", true, 60, "the far node's RUN step never started");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    // The node's worker saw its client go and killed its RUN container.
    wait_for_process("sleep 62", false, 15, "the far node's RUN step is still running");
}

#[test]
fn a_platform_failing_here_stops_the_nodes() {
    let Some((env, _reg, sshd, _far)) = setup() else { return };
    let df =
        "FROM busybox\nARG TARGETARCH\nRUN if [ \"$TARGETARCH\" = arm64 ]; then sleep 63; else sleep 2; exit 3; fi\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let started = Instant::now();
    let child = spawn_build(&env, &sshd, &[s(&ctx)]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(50), "the build waited for the far node's step: {stderr}");
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(stderr.contains("linux/arm64 on node far") && stderr.contains("stopped, as a platform built here failed"));
    // The far node's step was stopped, not waited for.
    wait_for_process("sleep 63", false, 15, "the far node's RUN step is still running");
}

#[test]
fn an_unreachable_node_fails_by_name_or_falls_back_to_emulation() {
    let Some((env, reg)) = mirrored() else { return };
    if !require(polyarch_emu::host::is_root(), "root (RUN steps)") {
        return;
    }
    let closed = format!("ssh://root@127.0.0.1:{}", crate::util::free_port());
    env.ok(&["builder", "create", "--name", "gone", "--node", "here", "--platform", "linux/amd64", "local"]);
    env.ok(&[
        "builder",
        "create",
        "--name",
        "gone",
        "--append",
        "--node",
        "dead",
        "--platform",
        "linux/arm64",
        &closed,
    ]);
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch\n")]);
    let image = format!("{}/nodes/fallback:1", reg.host);
    let args = ["build", "--builder", "gone", "--platform", "linux/amd64,linux/arm64", "-t", &image, "--push"];
    let mut failing = args.to_vec();
    failing.push(s(&ctx));
    let stderr = env.fails(&failing);
    assert!(stderr.contains(&format!("linux/arm64: node dead ({closed}) is unreachable")), "{stderr}");
    assert!(!tags_exist(reg, "nodes/fallback"));

    let mut fallback = args.to_vec();
    fallback.extend(["--fallback-emulation", s(&ctx)]);
    let out = env.run(&fallback);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("WARNING: node dead") && stderr.contains("builds here instead"), "{stderr}");
    let out = Env::new().ok(&["run", "--rm", "--platform", "linux/arm64", &image, "cat", "/arch"]);
    assert_eq!(out.trim(), "aarch64");
}

#[test]
fn a_build_error_on_a_node_fails_its_platform_and_is_not_built_again_here() {
    let Some((env, reg, sshd, _far)) = setup() else { return };
    let df = "FROM busybox\nARG TARGETARCH\nRUN [ \"$TARGETARCH\" != arm64 ] || exit 4\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let image = format!("{}/nodes/broken:1", reg.host);
    let child = spawn_build(&env, &sshd, &["--fallback-emulation", "-t", &image, "--push", s(&ctx)]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    assert!(stderr.contains("[linux/arm64@far 2/2] RUN"), "{stderr}");
    let line = stderr.lines().find(|l| l.contains(&format!("on node far ({endpoint}): "))).unwrap_or_default();
    assert!(line.trim_start().starts_with("linux/arm64 on node far") && line.contains("exit code: 4"), "{stderr}");
    assert!(!stderr.contains("builds here instead"), "a build error is not a node failure: {stderr}");
    assert!(stderr.contains("nothing was exported or pushed"), "{stderr}");
    assert!(!tags_exist(reg, "nodes/broken"), "nothing may be pushed when a platform failed");
}

#[test]
fn run_settings_and_secrets_reach_the_far_node_and_stay_in_its_memory() {
    let Some((env, _reg, sshd, far)) = setup() else { return };
    const SECRET: &str = "polyarch-node-secret-40917";
    let df = "FROM busybox\n\
        RUN --mount=type=secret,id=tok,env=TOK grep -w far.test /etc/hosts > /hosts && ulimit -n > /nofile \
        && df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && echo \"${#TOK}\" > /secret-length\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let out_dir = env.dir.path().join("out");
    let mut child = env
        .cmd(&["build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", "--progress", "plain"])
        .args(["--add-host", "far.test:127.0.0.9", "--ulimit", "nofile=2048:4096", "--shm-size", "96m"])
        .args(["--secret", "id=tok,env=PA_NODE_SECRET", "-o", &format!("type=local,dest={}", out_dir.display())])
        .arg(&ctx)
        .env("POLYARCH_SSH", sshd.ssh_command())
        .env("PA_NODE_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(stderr.contains("[linux/arm64@far 2/2] RUN"), "{stderr}");
    for p in ["linux_amd64", "linux_arm64"] {
        let read =
            |f: &str| std::fs::read_to_string(out_dir.join(p).join(f)).unwrap_or_else(|e| panic!("{p}/{f}: {e}"));
        assert!(read("hosts").contains("127.0.0.9") && read("hosts").contains("far.test"), "{p}: {}", read("hosts"));
        assert_eq!(read("nofile").trim(), "2048", "{p}");
        assert_eq!(read("shm").trim(), (96 * 1024).to_string(), "{p}");
        assert_eq!(read("secret-length").trim(), SECRET.len().to_string(), "{p}");
    }
    // The far node held the secret in memory only: nothing in its store
    // holds it once the build is over, nor does any file of this machine's.
    for root in [&far.store, &env.root()] {
        let holding = crate::util::files_holding(root, SECRET);
        assert!(holding.is_empty(), "{}: {holding:?}", root.display());
    }

    // A secret that cannot be read fails before any node builds, naming it.
    let out = env
        .cmd(&[
            "build",
            "--builder",
            "duo",
            "--platform",
            "linux/amd64,linux/arm64",
            "--secret",
            "id=gone,env=PA_UNSET_42",
        ])
        .arg(&ctx)
        .env("POLYARCH_SSH", sshd.ssh_command())
        .env_remove("PA_UNSET_42")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("secret \"gone\"") && err.contains("PA_UNSET_42"), "{err}");
}

#[test]
fn one_registry_cache_holds_every_nodes_steps_and_serves_them_again() {
    let Some((env, reg, sshd, far)) = setup() else { return };
    let df = "FROM busybox\nARG TARGETARCH\nRUN echo built-$TARGETARCH > /built && uname -m > /arch\n\
              RUN cat /built /arch > /both\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let cache = format!("{}/nodes/cache:1", reg.host);
    let build = |extra: &[&str]| {
        let out = env
            .cmd(&["build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", "--progress", "plain"])
            .args(extra)
            .arg(&ctx)
            .env("POLYARCH_SSH", sshd.ssh_command())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build failed:\n{stderr}");
        stderr
    };
    // Whether the step shown as `[...NEEDLE` ran (was shown, and not CACHED).
    let ran = |stderr: &str, needle: &str| {
        let ids: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix('#')?.split_once(' '))
            .filter(|(_, rest)| rest.contains(needle))
            .map(|(id, _)| id)
            .collect();
        assert!(!ids.is_empty(), "no step {needle}: {stderr}");
        !ids.iter().any(|id| stderr.lines().any(|l| l == format!("#{id} CACHED")))
    };
    let steps = ["@far 2/3] RUN echo", "@far 3/3] RUN cat", "@here 2/3] RUN echo", "@here 3/3] RUN cat"];
    let image = format!("{}/nodes/cached:1", reg.host);
    let first = build(&["--cache-to", &format!("type=registry,ref={cache},mode=max"), "-t", &image, "--push"]);
    assert!(steps.iter().all(|st| ran(&first, st)), "{first}");
    assert!(first.contains("exporting cache to registry"), "{first}");

    // Both stores emptied: only the registry cache knows the steps. The far
    // node imports it itself, this machine for its own platform.
    for root in [&far.store, &env.root()] {
        std::fs::remove_dir_all(root).unwrap();
    }
    let out_dir = env.dir.path().join("out");
    let again = build(&[
        "--cache-from",
        &format!("type=registry,ref={cache}"),
        "-o",
        &format!("type=local,dest={}", out_dir.display()),
    ]);
    for st in steps {
        assert!(!ran(&again, st), "{st} ran again instead of coming from the cache: {again}");
    }
    for (p, arch) in [("linux_amd64", "built-amd64\nx86_64\n"), ("linux_arm64", "built-arm64\naarch64\n")] {
        assert_eq!(std::fs::read_to_string(out_dir.join(p).join("both")).unwrap(), arch, "{p}");
    }

    // A local cache directory of this machine travels to the far node with
    // the context, and serves both again.
    let dir = env.dir.path().join("local-cache");
    build(&["--cache-to", &format!("type=local,dest={},mode=max", dir.display())]);
    for root in [&far.store, &env.root()] {
        std::fs::remove_dir_all(root).unwrap();
    }
    let again = build(&["--cache-from", &format!("type=local,src={}", dir.display())]);
    for st in steps {
        assert!(!ran(&again, st), "{st} ran again instead of coming from the local cache: {again}");
    }

    // An inline cache: the far node writes it into the config of the image
    // it builds and pushes.
    let inline = format!("{}/nodes/inline:1", reg.host);
    build(&["--cache-to", "type=inline", "-t", &inline, "--push"]);
    let index: Value = serde_json::from_slice(&crate::util::skopeo_raw(&inline)).unwrap();
    let arm = index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "arm64").unwrap();
    let config = sh(Command::new("skopeo").args(["inspect", "--tls-verify=false", "--config", "--raw"]).arg(format!(
        "docker://{}@{}",
        inline.rsplit_once(':').unwrap().0,
        arm["digest"].as_str().unwrap()
    )));
    let config: Value = serde_json::from_str(&config).unwrap();
    assert!(config["moby.buildkit.cache.v0"].is_string(), "{config}");
}

#[test]
fn named_contexts_travel_to_the_far_node() {
    let Some((env, reg, sshd, far)) = setup() else { return };
    let df = "FROM base\nCOPY --from=extra note.txt /note.txt\nRUN cat /note.txt > /seen && uname -m >> /seen\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let extra =
        context(&env, "extra", &[("note.txt", "from a named context\n"), ("unused/big.bin", &"y".repeat(50_000))]);
    let out_dir = env.dir.path().join("out");
    let base = format!("base=docker-image://{}", crate::util::busybox(reg));
    let (extra_ctx, dest) = (format!("extra={}", extra.display()), format!("type=local,dest={}", out_dir.display()));
    let duo = ["--builder", "duo", "--platform", "linux/amd64,linux/arm64"];
    let seen_both = || {
        for (p, arch) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
            let seen = std::fs::read_to_string(out_dir.join(p).join("seen")).unwrap();
            assert_eq!(seen, format!("from a named context\n{arch}\n"), "{p}");
        }
    };
    let named = ["--build-context", &extra_ctx, "--build-context", &base, "-o", &dest, s(&ctx)];
    let stderr = build_on(&env, &sshd, &[&duo[..], &named[..]].concat());
    assert!(stderr.contains("[linux/arm64@far stage-0 3/3] RUN"), "{stderr}");
    seen_both();

    // An OCI layout of this machine travels as a tree, written out on the
    // node for its build.
    let layout = env.dir.path().join("layout");
    sh(Command::new("skopeo")
        .args(["copy", "-q", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}", crate::util::busybox(reg)))
        .arg(format!("oci:{}:edge", layout.display())));
    std::fs::remove_dir_all(&out_dir).unwrap();
    let oci = format!("base=oci-layout://{}:edge", layout.display());
    let named = ["--build-context", &extra_ctx, "--build-context", &oci, "-o", &dest, s(&ctx)];
    build_on(&env, &sshd, &[&duo[..], &named[..]].concat());
    seen_both();
    let run = far.store.join("run");
    let left: Vec<_> = std::fs::read_dir(&run).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert!(left.iter().all(|p| !p.join("oci-layout").exists()), "the layout went with the build: {left:?}");
}

/// `DIR/ld.so`, `DIR/ssh-add` and the libraries it loads: this machine's
/// `ssh-add`, to run in a busybox step through its own loader.
fn ssh_add_tools(dir: &Path) {
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::copy("/usr/bin/ssh-add", dir.join("ssh-add")).unwrap();
    let ldd = sh(Command::new("ldd").arg("/usr/bin/ssh-add"));
    for path in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let p = Path::new(path);
        let to = match p.file_name().unwrap().to_str().unwrap() {
            n if n.starts_with("ld-linux") => dir.join("ld.so"),
            n => dir.join("lib").join(n),
        };
        std::fs::copy(p, to).unwrap();
    }
}

#[test]
fn ssh_agents_of_the_client_serve_run_steps_on_the_far_node() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(polyarch_emu::host::is_root(), "root (RUN steps and sshd)") {
        return;
    }
    let Some(sshd) = Sshd::start(env.dir.path()) else { return };
    let far = FarNode::new(env.dir.path());
    solo(&env, &sshd, &far, &["--config", s(&env.config_file())]);
    let tools = env.dir.path().join("tools");
    ssh_add_tools(&tools);
    let key = env.dir.path().join("id_agent_test");
    sh(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "agent-test-key"]).arg("-f").arg(&key));
    let df = "FROM busybox\n\
        RUN --mount=type=bind,from=tools,target=/tools --mount=type=ssh \
        /tools/ld.so --library-path /tools/lib /tools/ssh-add -l > /keys\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let out_dir = env.dir.path().join("out");
    let (ssh, tools_ctx) = (format!("default={}", key.display()), format!("tools={}", tools.display()));
    let dest = format!("type=local,dest={}", out_dir.display());
    let args = ["--builder", "solo", "--ssh", &ssh, "--build-context", &tools_ctx, "-o", &dest, s(&ctx)];
    let stderr = build_on(&env, &sshd, &args);
    assert!(stderr.contains("[linux/amd64@far stage-0 2/2] RUN"), "{stderr}");
    let fingerprint = sh(Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")));
    let keys = std::fs::read_to_string(out_dir.join("keys")).unwrap();
    let fp = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(keys.contains(fp) && keys.contains("agent-test-key"), "{keys} against {fingerprint}");
    // Nothing of the relay is left on the node.
    let run = far.store.join("run");
    let left: Vec<_> = std::fs::read_dir(&run).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert!(left.iter().all(|p| !p.join("agent-0.sock").exists()), "{left:?}");
}

/// `polyarch build --progress plain ARGS` with the test's ssh client;
/// asserts success and returns stderr.
fn build_on(env: &Env, sshd: &Sshd, args: &[&str]) -> String {
    let out =
        env.cmd(&["build", "--progress", "plain"]).args(args).env("POLYARCH_SSH", sshd.ssh_command()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// The builder `solo`: only the far node, linux/amd64, with `extra`
/// options of `builder create`.
fn solo(env: &Env, sshd: &Sshd, far: &FarNode, extra: &[&str]) {
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let mut args = vec!["builder", "create", "--name", "solo", "--node", "far", "--platform", "linux/amd64"];
    args.extend_from_slice(extra);
    args.extend(["--remote-polyarch", s(&far.program), &endpoint]);
    env.ok(&args);
}

/// `ADD` of a repository over ssh on a far node: git there reaches the
/// server through the client's agent, relayed over the session.
#[test]
fn a_far_node_fetches_a_git_repository_over_ssh_with_the_clients_agent() {
    let env = Env::new();
    if !require(polyarch_emu::host::is_root(), "root (sshd)")
        || !require(crate::util::have("git") && crate::util::have("ssh-keyscan"), "git and ssh-keyscan")
    {
        return;
    }
    let Some(sshd) = Sshd::start(env.dir.path()) else { return };
    let far = FarNode::new(env.dir.path());
    solo(&env, &sshd, &far, &[]);
    let work = env.dir.path().join("repo-work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("hello.txt"), "over ssh").unwrap();
    let git = |dir: &Path, args: &[&str]| {
        sh(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir))
    };
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(env.dir.path(), &["clone", "-q", "--bare", s(&work), "repo.git"]);
    let repo = format!("ssh://root@127.0.0.1:{}{}", sshd.port, env.dir.path().join("repo.git").display());
    let ctx = context(&env, "ctx", &[("Dockerfile", &format!("FROM scratch\nADD {repo}#main /src/\n"))]);
    let out_dir = env.dir.path().join("out");
    let key = format!("default={}", env.dir.path().join("id_ed25519").display());
    let dest = format!("type=local,dest={}", out_dir.display());
    let stderr = build_on(&env, &sshd, &["--builder", "solo", "--ssh", &key, "-o", &dest, s(&ctx)]);
    assert!(stderr.contains("[linux/amd64@far 1/1] ADD"), "{stderr}");
    assert_eq!(std::fs::read_to_string(out_dir.join("src/hello.txt")).unwrap(), "over ssh");
}

#[test]
fn manifest_annotations_are_written_by_the_node_that_pushes_the_manifest() {
    let Some((env, reg, sshd, _far)) = setup() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch\n")]);
    let image = format!("{}/nodes/annotated:1", reg.host);
    let out = env
        .cmd(&["build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", "--progress", "plain"])
        .args(["--annotation", "manifest:org.example.note=from-node"])
        .args(["--annotation", "manifest[linux/arm64]:org.example.arch=arm"])
        .args(["--annotation", "index:org.example.index=both", "-t", &image, "--push"])
        .arg(&ctx)
        .env("POLYARCH_SSH", sshd.ssh_command())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let index: Value = serde_json::from_slice(&crate::util::skopeo_raw(&image)).unwrap();
    assert_eq!(index["annotations"]["org.example.index"], "both", "{index}");
    let repo = image.rsplit_once(':').unwrap().0;
    for m in index["manifests"].as_array().unwrap() {
        let arch = m["platform"]["architecture"].as_str().unwrap();
        let raw = crate::util::skopeo_raw(&format!("{repo}@{}", m["digest"].as_str().unwrap()));
        let child: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(child["annotations"]["org.example.note"], "from-node", "{arch}: {child}");
        assert_eq!(child["annotations"]["org.example.arch"].as_str(), (arch == "arm64").then_some("arm"), "{arch}");
    }
}
