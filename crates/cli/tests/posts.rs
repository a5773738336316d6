//! The command sequences of the usual multi-architecture tutorials, run as
//! a new user runs them, with polyarch installed as the docker CLI's buildx
//! plugin and the real docker client: register emulators, create a
//! docker-container builder on this machine's engine and append a node on
//! a "remote" engine over tcp://, inspect and list it, build for several
//! platforms with `--push`, `--load` and `-o type=docker`, join per-arch
//! images with `docker manifest create/annotate/push/inspect`, read them
//! with `imagetools inspect`, and `docker run --platform ... uname -m`.
//! Both engines are dockerds the test starts on loopback.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::plugin::{docker_client, docker_client_major, Plugins};
use crate::util::dockerd::Dockerd;
use crate::util::{context, mirrored_for_run, require, Registry};

/// Runs the docker client against `host` in `dir`, asserting success.
fn docker(p: &Plugins, host: &str, dir: &Path, args: &[&str]) -> String {
    let out: Output = p.command(dir, args).env("DOCKER_HOST", host).output().expect("running docker");
    assert!(
        out.status.success(),
        "DOCKER_HOST={host} docker {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup() -> Option<(Plugins, &'static Registry, Dockerd, Dockerd)> {
    if !docker_client() {
        return None;
    }
    let handler = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    let fixed = handler.starts_with("enabled") && handler.lines().any(|l| l.starts_with("flags:") && l.contains('F'));
    if !require(fixed, "a host qemu-aarch64 binfmt handler with the F flag (polyarch binfmt install)") {
        return None;
    }
    let (env, reg) = mirrored_for_run()?;
    let local = Dockerd::start()?;
    let remote = Dockerd::start_tcp()?;
    Some((Plugins::new(env), reg, local, remote))
}

/// The `os/arch[/variant]` of each entry of an index.
fn platforms(index: &Value) -> Vec<String> {
    let mut v: Vec<String> = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| &m["platform"])
        .filter(|p| p["os"] != "unknown")
        .map(|p| format!("{}/{}", p["os"].as_str().unwrap(), p["architecture"].as_str().unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn the_tutorials_run_with_polyarch_as_buildx() {
    let Some((p, reg, local, remote)) = setup() else { return };
    let here = local.host();
    let there = remote.tcp.clone().unwrap();
    let dockerfile =
        "FROM busybox\nARG TARGETPLATFORM\nRUN echo \"built for $TARGETPLATFORM on $(uname -m)\" > /built\n\
                      CMD [\"uname\", \"-m\"]\n";
    let ctx = context(&p.env, "app", &[("Dockerfile", dockerfile)]);

    // 1. Register the emulators (the tutorials' `docker run --privileged
    // tonistiigi/binfmt --install arm64`); right handlers are kept as they are.
    let out = p.env.ok(&["binfmt", "install", "arm64"]);
    assert!(out.contains("arm64") || out.contains("aarch64"), "{out}");

    // 2. A docker-container builder on this machine's engine, made the
    // current one; then a node appended on the remote engine over tcp://.
    docker(
        &p,
        &here,
        &ctx,
        &["buildx", "create", "--name", "mybuilder", "--driver", "docker-container", "--driver-opt", "network=host"],
    );
    docker(&p, &here, &ctx, &["buildx", "use", "mybuilder"]);
    docker(
        &p,
        &there,
        &ctx,
        &[
            "buildx",
            "create",
            "--name",
            "mybuilder",
            "--append",
            "--node",
            "remote-builder",
            "--driver-opt",
            "network=host",
        ],
    );
    let inspect = docker(&p, &here, &ctx, &["buildx", "inspect", "--bootstrap"]);
    assert!(inspect.contains("Name:          mybuilder"), "{inspect}");
    assert!(inspect.contains("Driver:        docker-container"), "{inspect}");
    assert!(inspect.contains("remote-builder") && inspect.contains(&there), "{inspect}");
    assert_eq!(inspect.matches("Status:        running").count(), 2, "{inspect}");
    assert!(inspect.contains("linux/arm64"), "emulated arm64 on the nodes: {inspect}");
    let ls = docker(&p, &here, &ctx, &["buildx", "ls"]);
    assert!(ls.lines().any(|l| l.starts_with("mybuilder*")), "the current builder is marked: {ls}");
    assert!(ls.contains("remote-builder") && ls.contains("docker-container"), "{ls}");
    for (engine, name) in [(&local, "polyarch_buildkit_mybuilder0"), (&remote, "polyarch_buildkit_remote-builder")] {
        let ps = engine.ok(&["ps", "--format", "{{.Names}}"]);
        assert_eq!(ps.trim(), name, "one worker container per engine: {ps}");
    }

    // The remote engine's kernel runs its emulated steps: its handlers are
    // seen (and would be installed, with `binfmt install`) by polyarch in a
    // privileged container of the worker image there, as tonistiigi/binfmt
    // (this machine grants no `--privileged`: the capability it needs).
    let images = remote.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "polyarch/worker"]);
    let worker = images.lines().next().unwrap_or_else(|| panic!("no worker image on the remote engine: {images}"));
    let status = remote.ok(&["run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined"]
        .iter()
        .copied()
        .chain(["--security-opt", "systempaths=unconfined", "--security-opt", "apparmor=unconfined"])
        .chain(["--network", "none", "--entrypoint", "/usr/bin/polyarch", worker, "binfmt", "status"])
        .collect::<Vec<_>>());
    let arm = status.lines().find(|l| l.starts_with("linux/arm64")).unwrap_or_else(|| panic!("{status}"));
    assert_eq!(arm.split_whitespace().nth(5), Some("yes"), "the remote engine executes arm64: {status}");

    // 3. One multi-platform image, pushed; read with imagetools.
    let image = format!("{}/posts/hello:latest", reg.host);
    docker(&p, &here, &ctx, &["buildx", "build", "--platform", "linux/amd64,linux/arm64", "-t", &image, "--push", "."]);
    let text = docker(&p, &here, &ctx, &["buildx", "imagetools", "inspect", &image]);
    assert!(text.contains("Platform:  linux/amd64") && text.contains("Platform:  linux/arm64"), "{text}");
    let raw = docker(&p, &here, &ctx, &["buildx", "imagetools", "inspect", "--raw", &image]);
    let index: Value = serde_json::from_str(raw.trim()).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64"], "{index}");

    // 4. `docker run --platform` of each platform: the right machine.
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = local.ok(&["run", "--rm", "--network", "none", "--platform", platform, &image]);
        assert_eq!(out.trim(), arch, "{platform}");
    }

    // 5. `--load` and `-o type=docker` into this machine's engine, then run.
    docker(&p, &here, &ctx, &["buildx", "build", "--platform", "linux/arm64", "-t", "hello:arm64", "--load", "."]);
    assert_eq!(local.ok(&["run", "--rm", "--network", "none", "hello:arm64"]).trim(), "aarch64");
    assert_eq!(
        local.ok(&["run", "--rm", "--network", "none", "hello:arm64", "cat", "/built"]).trim(),
        "built for linux/arm64 on aarch64",
        "the RUN step ran as arm64"
    );
    docker(
        &p,
        &here,
        &ctx,
        &["buildx", "build", "--platform", "linux/amd64", "-o", "type=docker,name=hello:amd64", "."],
    );
    assert_eq!(local.ok(&["run", "--rm", "--network", "none", "hello:amd64"]).trim(), "x86_64");

    // 6. Per-architecture images joined by `docker manifest`. Clients
    // before 23 read no OCI manifest there: their users push Docker media
    // types.
    let mut parts = Vec::new();
    for arch in ["amd64", "arm64"] {
        let tag = format!("{}/posts/hello:{arch}", reg.host);
        let platform = format!("linux/{arch}");
        let output = format!("type=registry,name={tag},oci-mediatypes=false");
        let push: Vec<&str> =
            if docker_client_major() >= 23 { vec!["-t", &tag, "--push"] } else { vec!["--output", &output] };
        let mut args = vec!["buildx", "build", "--platform", &platform];
        args.extend(push);
        args.push(".");
        docker(&p, &here, &ctx, &args);
        parts.push(tag);
    }
    let list = format!("{}/posts/hello:manifest", reg.host);
    let mut create = vec!["manifest", "create", "--insecure", &list];
    create.extend(parts.iter().map(String::as_str));
    docker(&p, &here, &ctx, &create);
    docker(&p, &here, &ctx, &["manifest", "annotate", "--arch", "arm64", "--os", "linux", &list, &parts[1]]);
    docker(&p, &here, &ctx, &["manifest", "push", "--insecure", &list]);
    let inspected = docker(&p, &here, &ctx, &["manifest", "inspect", "--insecure", &list]);
    let start = inspected.find('{').unwrap_or_else(|| panic!("{inspected}"));
    let index: Value = serde_json::from_str(&inspected[start..]).unwrap_or_else(|e| panic!("{e}: {inspected}"));
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64"], "{index}");
    let text = docker(&p, &here, &ctx, &["buildx", "imagetools", "inspect", &list]);
    assert!(text.contains("Platform:  linux/arm64"), "{text}");
    let out = local.ok(&["run", "--rm", "--network", "none", "--platform", "linux/arm64", &list]);
    assert_eq!(out.trim(), "aarch64");

    // 7. Removing the builder leaves nothing on either engine.
    docker(&p, &here, &ctx, &["buildx", "rm", "mybuilder"]);
    for engine in [&local, &remote] {
        let containers = engine.ok(&["ps", "-a", "--format", "{{.Names}}"]);
        let left: Vec<&str> = containers.lines().filter(|n| n.starts_with("polyarch_buildkit_")).collect();
        assert!(left.is_empty(), "left on {}: {left:?}", engine.host());
        let volumes = engine.ok(&["volume", "ls", "-q"]);
        assert!(!volumes.contains("polyarch_buildkit_"), "left on {}: {volumes}", engine.host());
    }
}
