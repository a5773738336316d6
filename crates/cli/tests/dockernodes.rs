//! docker-container builders: two Docker engines the test starts (one on a
//! unix socket, one on tcp://127.0.0.1:PORT), one node on each, each node
//! a privileged worker container made from this polyarch. A two-platform
//! build with RUN steps runs linux/amd64 in the first engine's container
//! and linux/arm64 (under the host's QEMU handlers, which have `F`) in the
//! second's, and pushes one index; `builder rm` leaves no container and no
//! volume on either engine.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::dockerd::Dockerd;
use crate::util::{context, have, mirrored_for_run, podman_run, require, s, skopeo_raw, Env, Registry};

/// Both engines, the registry, and an environment mirroring docker.io to it.
fn setup() -> Option<(Env, &'static Registry, Dockerd, Dockerd)> {
    let handler = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    let fixed = handler.starts_with("enabled") && handler.lines().any(|l| l.starts_with("flags:") && l.contains('F'));
    if !require(fixed, "a host qemu-aarch64 binfmt handler with the F flag (polyarch binfmt install)") {
        return None;
    }
    let (env, reg) = mirrored_for_run()?;
    let unix = Dockerd::start()?;
    let tcp = Dockerd::start_tcp()?;
    Some((env, reg, unix, tcp))
}

/// Names of all containers (`-a`) and of volumes on an engine.
fn leftovers(d: &Dockerd) -> (String, String) {
    (d.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]), d.ok(&["volume", "ls", "-q"]))
}

fn node<'a>(ls: &'a Value, builder: &str, node: &str) -> &'a Value {
    let b = ls.as_array().unwrap().iter().find(|b| b["name"] == builder).unwrap_or_else(|| panic!("{ls}"));
    b["nodes"].as_array().unwrap().iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("{ls}"))
}

#[test]
fn two_engines_build_one_platform_each_and_push_one_index() {
    let Some((env, reg, unix, tcp)) = setup() else { return };
    let tcp_host = tcp.tcp.clone().unwrap();
    // No endpoint and a tcp DOCKER_HOST: a node on that engine, never a
    // local one; --bootstrap makes and starts its container.
    let out = env
        .cmd(&[
            "builder",
            "create",
            "--name",
            "dc",
            "--driver-opt",
            "network=host",
            "--node",
            "dc-arm",
            "--platform",
            "linux/arm64",
            "--bootstrap",
        ])
        .env("DOCKER_HOST", &tcp_host)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.ok(&[
        "builder",
        "create",
        "--name",
        "dc",
        "--append",
        "--driver",
        "docker-container",
        "--driver-opt",
        "network=host,env.POLYARCH_TEST=1",
        "--node",
        "dc-amd",
        "--platform",
        "linux/amd64",
        "--config",
        s(&env.config_file()),
        &unix.host(),
    ]);
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    let arm = node(&ls, "dc", "dc-arm");
    assert_eq!((arm["endpoint"].as_str(), arm["status"].as_str()), (Some(tcp_host.as_str()), Some("running")), "{ls}");
    assert_eq!(arm["native"][0], "linux/amd64", "the engine's own platform first: {ls}");
    assert_eq!(node(&ls, "dc", "dc-amd")["status"], "inactive", "not bootstrapped yet: {ls}");
    let b = ls.as_array().unwrap().iter().find(|b| b["name"] == "dc").unwrap();
    assert_eq!(b["driver"], "docker-container");

    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch\n")]);
    let image = format!("{}/dockernodes/app:1", reg.host);
    let out = env
        .cmd(&["build", "--builder", "dc", "--platform", "linux/amd64,linux/arm64", "--progress", "plain"])
        .args(["-t", &image, "--push", s(&ctx)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed:\n{stderr}\nunix engine:\n{}", unix.log());
    assert!(stderr.contains("[linux/amd64@dc-amd 2/2] RUN uname -m > /arch"), "{stderr}");
    assert!(stderr.contains("[linux/arm64@dc-arm 2/2] RUN uname -m > /arch"), "{stderr}");

    // One worker container on each engine, running.
    for (d, name) in [(&unix, "polyarch_buildkit_dc-amd"), (&tcp, "polyarch_buildkit_dc-arm")] {
        let ps = d.ok(&["ps", "--format", "{{.Names}}"]);
        assert_eq!(ps.trim(), name, "{ps}");
        let vols = d.ok(&["volume", "ls", "-q"]);
        assert_eq!(vols.trim(), format!("{name}_state"), "{vols}");
    }
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    for n in ["dc-amd", "dc-arm"] {
        assert_eq!(node(&ls, "dc", n)["status"], "running", "{ls}");
    }
    let table = env.ok(&["builder", "ls"]);
    assert!(table.contains("docker-container") && table.contains(&tcp_host), "{table}");

    // One index in the registry, each child built where it says.
    let index: Value = serde_json::from_slice(&skopeo_raw(&image)).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{index}");
    let client = Env::new();
    let podman = client.dir.path().join("podman");
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = client.ok(&["run", "--rm", "--platform", platform, &image, "cat", "/arch"]);
        assert_eq!(out.trim(), arch, "{platform}");
        if require(have("podman"), "podman") {
            let out = podman_run(&podman, platform, &image, &["cat", "/arch"]);
            assert_eq!(out.trim(), arch, "podman run --platform {platform}");
        }
    }

    interrupted_build_leaves_no_step_running(&env, "-INT");
    interrupted_build_leaves_no_step_running(&env, "-KILL");

    // stop stops the containers; the next use starts them again.
    env.ok(&["builder", "stop", "dc"]);
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    assert_eq!(node(&ls, "dc", "dc-amd")["status"], "stopped", "{ls}");
    assert_eq!(node(&ls, "dc", "dc-arm")["status"], "stopped", "{ls}");
    let inspect = env.ok(&["builder", "inspect", "--bootstrap", "dc"]);
    assert!(inspect.contains("Driver:        docker-container"), "{inspect}");
    assert_eq!(inspect.matches("Status:        running").count(), 2, "{inspect}");
    assert!(inspect.contains("linux/arm64*"), "{inspect}");
    assert!(inspect.contains("Driver Options: env.POLYARCH_TEST=\"1\" network=\"host\""), "{inspect}");

    // rm --keep-state keeps the volumes; rm removes containers and volumes.
    env.ok(&["builder", "rm", "--keep-state", "dc"]);
    for (d, name) in [(&unix, "polyarch_buildkit_dc-amd"), (&tcp, "polyarch_buildkit_dc-arm")] {
        let (containers, volumes) = leftovers(d);
        assert_eq!((containers.trim(), volumes.trim()), ("", format!("{name}_state").as_str()), "{}", d.host());
    }
    env.ok(&["builder", "create", "--name", "dc", "--node", "dc-amd", "--bootstrap", &unix.host()]);
    // Appended with no endpoint: DOCKER_HOST's engine.
    let out = env
        .cmd(&["builder", "create", "--name", "dc", "--append", "--node", "dc-arm", "--bootstrap"])
        .env("DOCKER_HOST", &tcp_host)
        .env_remove("DOCKER_CONTEXT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.ok(&["builder", "rm", "dc"]);
    for d in [&unix, &tcp] {
        let (containers, volumes) = leftovers(d);
        assert_eq!((containers.trim(), volumes.trim()), ("", ""), "left on {}", d.host());
    }
}

/// Whether a process whose command line has `pattern` runs, within `secs`.
fn wait_for(pattern: &str, count: usize, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let out = Command::new("pgrep").args(["-c", "-f", pattern]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim().parse::<usize>().unwrap_or(0) == count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A client interrupted (or killed) mid-build: each node's worker sees its
/// session end and stops its RUN container.
fn interrupted_build_leaves_no_step_running(env: &Env, signal: &str) {
    let ctx = context(env, "sleepy", &[("Dockerfile", "FROM busybox\nRUN sleep 6271\n")]);
    let child = env
        .cmd(&["build", "--builder", "dc", "--platform", "linux/amd64,linux/arm64", "--progress", "plain", s(&ctx)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for("sleep 627[1]", 2, 60), "the RUN steps never started on both nodes");
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let want = if signal == "-INT" { Some(130) } else { None };
    assert_eq!(out.status.code(), want, "{signal}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_for("sleep 627[1]", 0, 20), "{signal}: a RUN step still runs in a worker container");
}

#[test]
fn drivers_and_endpoints_are_checked() {
    let env = Env::new();
    let fail = |args: &[&str]| {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fail(&["builder", "create", "--driver", "kubernetes", "--name", "k"]);
    assert!(e.contains("\"kubernetes\" is not supported"), "{e}");
    let e = fail(&["builder", "create", "--driver", "nope", "--name", "k"]);
    assert!(e.contains("failed to find driver \"nope\""), "{e}");
    let e =
        fail(&["builder", "create", "--driver", "docker-container", "--driver-opt", "memory=1g", "tcp://127.0.0.1:1"]);
    assert!(e.contains("\"memory=1g\"") && e.contains("docker-container"), "{e}");
    let e = fail(&["builder", "create", "--driver", "docker-container", "local"]);
    assert!(e.contains("needs a Docker endpoint"), "{e}");
    let e = fail(&["builder", "create", "--driver", "docker-container", "bogus://x"]);
    assert!(e.contains("bogus://x"), "{e}");
    env.ok(&["builder", "create", "--name", "d", "--driver", "docker"]);
    let e = fail(&["builder", "create", "--name", "d", "--driver", "docker", "--append", "--node", "x"]);
    assert!(e.contains("does not support --append"), "{e}");
    // A tcp engine that does not answer: a docker-container node on it, and
    // its bootstrap fails naming the node and the endpoint.
    let out = env.run(&["builder", "create", "--name", "t", "--node", "far", "--bootstrap", "tcp://127.0.0.1:1"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("far (tcp://127.0.0.1:1)"), "{e}");
    assert!(out.stdout.is_empty(), "the name is printed only once the builder booted (as buildx)");
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    assert_eq!(node(&ls, "t", "far")["endpoint"], "tcp://127.0.0.1:1", "{ls}");
    let b = ls.as_array().unwrap().iter().find(|b| b["name"] == "t").unwrap();
    assert_eq!(b["driver"], "docker-container", "{ls}");
    // Appended with neither endpoint nor DOCKER_HOST: the builder's driver,
    // on the default engine.
    let out = env
        .cmd(&["builder", "create", "--name", "t", "--append", "--node", "near"])
        .env("DOCKER_HOST", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    assert_eq!(node(&ls, "t", "near")["endpoint"], "unix:///var/run/docker.sock", "{ls}");
    // A builder whose engine is gone can still be removed, with a warning.
    let out = env.run(&["builder", "rm", "t"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && e.contains("warning: node far (tcp://127.0.0.1:1)"), "{e}");
    // A polyarch builder takes no docker-container node.
    env.ok(&["builder", "create", "--name", "p", "local"]);
    let e = fail(&["builder", "create", "--name", "p", "--append", "tcp://127.0.0.1:1"]);
    assert!(e.contains("uses the polyarch driver"), "{e}");
    // `--append --node N` alone with a tcp DOCKER_HOST: with the default
    // builder in use, a new builder whose node is on that engine; with a
    // builder in use, a node added to it (refused here: another driver).
    let out = env
        .cmd(&["builder", "create", "--append", "--node", "remote-builder"])
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    assert_eq!(node(&ls, &made, "remote-builder")["endpoint"], "tcp://127.0.0.1:1", "{ls}");
    env.ok(&["builder", "use", "p"]);
    let out = env
        .cmd(&["builder", "create", "--append", "--node", "rb"])
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("uses the polyarch driver"), "{e}");
    // --leave removes a node; use --default goes back to the default builder.
    env.ok(&["builder", "create", "--name", "p", "--append", "--node", "p2", "local"]);
    env.ok(&["builder", "create", "--leave", "--name", "p", "--node", "p2"]);
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    let p = ls.as_array().unwrap().iter().find(|b| b["name"] == "p").unwrap();
    assert_eq!(p["nodes"].as_array().unwrap().len(), 1, "{ls}");
    env.ok(&["builder", "use", "p"]);
    env.ok(&["builder", "use", "--default"]);
    let ls: Value = serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).unwrap();
    assert_eq!(ls[0]["current"], true, "{ls}");
}

/// `--driver-opt image=REF`: the node's container runs a published worker
/// image, pulled by the engine from the registry (here the image polyarch
/// made of itself, pushed there first).
#[test]
fn a_node_runs_the_worker_image_it_is_given() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    let Some(engine) = Dockerd::start() else { return };
    env.ok(&["builder", "create", "--name", "own", "--driver-opt", "network=host", "--bootstrap", &engine.host()]);
    let images = engine.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "polyarch/worker"]);
    let made = images.lines().next().unwrap_or_else(|| panic!("no worker image made: {images}")).to_string();
    let published = format!("{}/dockernodes/worker:1", reg.host);
    engine.ok(&["tag", &made, &published]);
    engine.ok(&["push", &published]);
    env.ok(&["builder", "rm", "own"]);
    engine.ok(&["rmi", &made, &published]);

    let opts = format!("image={published},network=host");
    env.ok(&["builder", "create", "--name", "given", "--driver-opt", &opts, "--bootstrap", &engine.host()]);
    let image = engine.ok(&["inspect", "--format", "{{.Config.Image}}", "polyarch_buildkit_given0"]);
    assert_eq!(image.trim(), published, "the container runs the image given");
    let ctx = context(&env, "given", &[("Dockerfile", "FROM busybox\nRUN uname -m > /arch\n")]);
    let out = env.dir.path().join("out");
    let spec = format!("type=local,dest={}", s(&out));
    env.ok(&["build", "--builder", "given", "--progress", "plain", "-o", &spec, s(&ctx)]);
    assert_eq!(std::fs::read_to_string(out.join("arch")).unwrap().trim(), "x86_64");
    let inspect = env.ok(&["builder", "inspect", "given"]);
    assert!(inspect.contains(&format!("image=\"{published}\"")), "{inspect}");
    env.ok(&["builder", "rm", "given"]);
    let (containers, volumes) = leftovers(&engine);
    assert_eq!((containers.trim(), volumes.trim()), ("", ""));
}
