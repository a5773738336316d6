//! RUN semantics with the recording executor: no root, no runc (the naive
//! root is a plain directory; nothing is mounted or chowned).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use polyarch_exec::{NetworkMode, Resource, SecurityMode};
use polyarch_store::{BlobSource, Store};

use crate::copy::file_node;
use crate::fs::{MemFs, Node};
use crate::process::{SecretSource, SnapshotterKind};
use crate::testing::{Call, RecordingExecutor};
use crate::{BuildOptions, BuildResult, Builder, Result};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1001:\n";

/// A context with `/etc/passwd`, `/etc/group` and `/etc/old`.
fn context() -> MemFs {
    let mut ctx = MemFs::new();
    ctx.insert("etc".into(), Node::dir(0o755, 0, 0, 1));
    ctx.insert("etc/passwd".into(), file_node(PASSWD.as_bytes(), 0o644, 1));
    ctx.insert("etc/group".into(), file_node(GROUP.as_bytes(), 0o644, 1));
    ctx.insert("etc/old".into(), file_node(b"old", 0o644, 1));
    ctx
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        Fixture { _dir: dir, store }
    }

    fn options(&self, df: &str) -> BuildOptions {
        let mut o = BuildOptions::new(format!("FROM scratch\nCOPY . /\n{df}")).with_context(context());
        o.snapshotter = SnapshotterKind::Naive;
        o
    }

    fn build(&self, exec: &Arc<RecordingExecutor>, opts: &BuildOptions) -> Result<BuildResult> {
        let b = Builder::new(self.store.clone()).with_executor(exec.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(b.build(opts))
    }

    fn run(&self, exec: &Arc<RecordingExecutor>, df: &str) -> BuildResult {
        self.build(exec, &self.options(df)).unwrap()
    }

    /// The paths of a layer's tar entries, whiteouts included.
    fn layer_paths(&self, r: &BuildResult, index: usize) -> Vec<String> {
        let mut gz = Vec::new();
        self.store.open(&r.layers[index].desc).unwrap().read_to_end(&mut gz).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut out: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_string())
            .collect();
        out.sort();
        out
    }
}

fn calls(exec: &RecordingExecutor) -> Vec<Call> {
    exec.calls()
}

#[test]
fn environment_from_env_args_build_args_and_proxies() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    let mut o = f.options("ARG A=1\nENV B=2 A=shadowed\nARG C\nARG D=4\nRUN env\n");
    o.build_args = BTreeMap::from([("C".into(), "3".into()), ("HTTP_PROXY".into(), "http://proxy:3128".into())]);
    f.build(&exec, &o).unwrap();
    let call = exec.last().unwrap();
    assert_eq!(call.env("B"), Some("2"));
    assert_eq!(call.env("A"), Some("shadowed"), "an ENV shadows the ARG of the same name");
    assert_eq!(call.env("C"), Some("3"));
    assert_eq!(call.env("D"), Some("4"));
    assert_eq!(call.env("HTTP_PROXY"), Some("http://proxy:3128"), "proxy args need no ARG");
    // A proxy change does not invalidate the step (BuildKit keys no ProxyEnv).
    o.build_args.insert("HTTP_PROXY".into(), "http://other:3128".into());
    let again = f.build(&exec, &o).unwrap();
    assert_eq!((exec.count(), again.executed), (1, 0));
}

#[test]
fn user_by_name_and_by_ids_from_the_tree() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    f.run(&exec, "USER app\nRUN id\nUSER 1234:5678\nRUN id -u\nUSER root\nRUN whoami\n");
    let c = calls(&exec);
    assert_eq!((c[0].process.user.as_str(), c[0].user.clone()), ("app", Ok((1000, 1001))));
    assert_eq!((c[1].process.user.as_str(), c[1].user.clone()), ("1234:5678", Ok((1234, 5678))));
    assert_eq!(c[2].user, Ok((0, 0)));
    let exec = RecordingExecutor::new();
    f.run(&exec, "USER nobody\nRUN id\n");
    let err = exec.last().unwrap().user.unwrap_err();
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn workdir_shell_and_command_forms() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    let df = "WORKDIR /src\nWORKDIR app\nRUN make\nRUN [\"echo\", \"a b\"]\n\
              SHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nRUN echo $HOME\nWORKDIR /\nRUN pwd\n";
    f.run(&exec, df);
    let c = calls(&exec);
    assert_eq!(c[0].process.cwd, "/src/app");
    assert_eq!(c[0].process.args, ["/bin/sh", "-c", "make"]);
    assert_eq!(c[1].process.args, ["echo", "a b"], "exec form runs as written");
    assert_eq!(c[2].process.args, ["/bin/bash", "-eu", "-c", "echo $HOME"]);
    assert_eq!(c[3].process.cwd, "/");
}

#[test]
fn heredocs_as_scripts_and_as_files() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("/dev/pipes/", |s| {
        let script = s.read("/dev/pipes/EOF").unwrap_or_default();
        s.note(String::from_utf8_lossy(&script).into_owned());
        Ok(0)
    });
    f.run(&exec, "RUN <<EOF\necho a\necho b\nEOF\nRUN <<EOF\n#!/bin/sh\necho c\nEOF\n");
    let c = calls(&exec);
    assert_eq!(c[0].process.args, ["/bin/sh", "-c", "echo a\necho b\n"]);
    assert_eq!(c[1].process.args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    assert_eq!(c[1].mount("/dev/pipes").map(|m| m.kind.as_str()), Some("bind"));
    assert_eq!(c[1].notes, ["#!/bin/sh\necho c\n"], "the script is a file in the step");
}

#[test]
fn cache_mounts_are_shared_by_id_and_stay_out_of_layers() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new()
        .on("fill", |s| {
            s.write("/cache/a", b"from the first step")?;
            Ok(0)
        })
        .on("look", |s| {
            let seen = s.read("/other/a").map(|b| String::from_utf8_lossy(&b).into_owned());
            s.note(seen.unwrap_or_else(|| "missing".into()));
            s.write("/made", b"x")?;
            Ok(0)
        });
    let df = "RUN --mount=type=cache,target=/cache fill\n\
              RUN --mount=type=cache,target=/other,id=/cache,sharing=locked look\n\
              RUN --mount=type=cache,target=/cache,sharing=private private-step\n";
    let r = f.run(&exec, df);
    let c = calls(&exec);
    assert_eq!(c[1].notes, ["from the first step"], "the same id is the same directory");
    assert_eq!(c[0].mount("/cache").unwrap().source, c[2].mount("/cache").unwrap().source);
    assert_eq!(c[0].mount("/cache").unwrap().options, ["rbind", "rw"]);
    assert_eq!(c[0].mount("/cache").unwrap().source, c[1].mount("/other").unwrap().source);
    assert_eq!(f.layer_paths(&r, 2), ["made"], "the cache mount's files are not in the layer");
    assert_eq!(r.layers.len(), 4, "{:?}", r.layers);
    for i in [1, 3] {
        assert_eq!(r.layers[i].desc.size, 32, "a step that changed nothing has BuildKit's empty layer");
        assert!(f.layer_paths(&r, i).is_empty());
    }
    let bad = f.build(&exec, &f.options("RUN --mount=type=cache,target=/c,sharing=weird x\n")).unwrap_err();
    assert!(bad.to_string().contains("unsupported sharing value \"weird\""), "{bad}");
}

#[test]
fn secrets_reach_the_step_but_not_the_layer_or_the_key() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, b"s3cr3t").unwrap();
    let exec = RecordingExecutor::new().on("use-secret", |s| {
        let v = s.read("/run/secrets/tok").unwrap_or_default();
        s.note(String::from_utf8_lossy(&v).into_owned());
        s.write("/out", b"built")?;
        Ok(0)
    });
    let mut o = f.options(
        "RUN --mount=type=secret,id=tok use-secret\nRUN --mount=type=secret,id=tok,env=TOKEN,required=true env\n",
    );
    o.secrets = BTreeMap::from([("tok".into(), SecretSource::File(file.clone()))]);
    let r = f.build(&exec, &o).unwrap();
    let c = calls(&exec);
    assert_eq!(c[0].notes, ["s3cr3t"]);
    assert_eq!(c[0].mount("/run/secrets/tok").unwrap().options, ["rbind", "ro"]);
    assert_eq!(f.layer_paths(&r, 1), ["out"], "no secret file, no stub in the layer");
    assert_eq!(c[1].env("TOKEN"), Some("s3cr3t"));
    assert!(c[1].mount("/run/secrets/tok").is_none(), "env= alone mounts no file");
    assert!(!r.image.config.env.iter().any(|e| e.contains("s3cr3t")));
    std::fs::write(&file, b"rotated").unwrap();
    let again = f.build(&exec, &o).unwrap();
    assert_eq!((exec.count(), again.executed), (2, 0), "a secret's value is not keyed");
    let mut missing = f.options("RUN --mount=type=secret,id=nope,required=true x\n");
    missing.secrets.clear();
    let e = f.build(&exec, &missing).unwrap_err().to_string();
    assert!(e.contains("secret nope not found") && e.contains("Dockerfile:3"), "{e}");
}

#[test]
fn bind_mounts_from_a_stage_and_tmpfs() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("read-bind", |s| {
        let v = s.read("/m/etc/old").unwrap_or_default();
        s.note(String::from_utf8_lossy(&v).into_owned());
        s.write("/m/written", b"discarded")?;
        s.write("/t/scratch", b"gone")?;
        Ok(0)
    });
    let mut o = BuildOptions::new(
        "FROM scratch AS src\nCOPY . /\nFROM scratch\nCOPY etc/passwd /etc/passwd\n\
         RUN --mount=type=bind,from=src,target=/m,rw --mount=type=tmpfs,target=/t,size=1m read-bind\n",
    )
    .with_context(context());
    o.snapshotter = SnapshotterKind::Naive;
    let r = f.build(&exec, &o).unwrap();
    let c = exec.last().unwrap();
    assert_eq!(c.notes, ["old"]);
    let tmpfs = c.mount("/t").unwrap();
    assert_eq!(tmpfs.kind, "tmpfs");
    assert!(tmpfs.options.contains(&"size=1m".to_string()), "{:?}", tmpfs.options);
    assert_eq!(r.layers.len(), 2);
    assert!(f.layer_paths(&r, 1).is_empty(), "writes to a bind mount and a tmpfs leave an empty layer");
}

#[test]
fn networks_and_entitlements() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    f.run(&exec, "RUN --network=none a\nRUN b\n");
    let c = calls(&exec);
    assert_eq!((c[0].process.network, c[1].process.network), (NetworkMode::None, NetworkMode::Host));
    let mut none = f.options("RUN --network=host x\n");
    none.network = NetworkMode::None;
    f.build(&exec, &none).unwrap();
    assert_eq!(exec.last().unwrap().process.network, NetworkMode::Host, "as Docker Engine's builder: no entitlement");
    let e = f.build(&exec, &f.options("RUN --security=insecure x\n")).unwrap_err().to_string();
    assert!(e.contains("security.insecure is not allowed") && e.contains("Dockerfile:3"), "{e}");
    let e = f.build(&exec, &f.options("RUN --security=unconfined x\n")).unwrap_err().to_string();
    assert!(e.contains("unsupported security mode \"unconfined\""), "{e}");
    let mut o = f.options("RUN --network=host --security=insecure y\n");
    o.run.allow.grant("network.host,security.insecure").unwrap();
    f.build(&exec, &o).unwrap();
    let last = exec.last().unwrap();
    assert_eq!((last.process.network, last.process.security), (NetworkMode::Host, SecurityMode::Insecure));
    assert_eq!(calls(&exec)[1].process.security, SecurityMode::Sandbox);
    assert_eq!(exec.count(), 4, "refused steps never reach the executor");
}

#[test]
fn a_deleted_file_is_a_whiteout() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("rm", |s| {
        s.remove("/etc/old")?;
        s.write("/etc/new", b"n")?;
        Ok(0)
    });
    let r = f.run(&exec, "RUN rm /etc/old\n");
    assert_eq!(f.layer_paths(&r, 1), ["etc", "etc/.wh.old", "etc/new"]);
}

#[test]
fn a_failing_command_names_its_exit_code_line_and_output() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("explode", |s| {
        s.print("working\nboom\n");
        Ok(3)
    });
    let e = f.build(&exec, &f.options("RUN true\nRUN explode now\n")).unwrap_err().to_string();
    assert!(e.contains("Dockerfile:4"), "{e}");
    assert!(e.contains("did not complete successfully: exit code: 3"), "{e}");
    assert!(e.contains("boom"), "{e}");
    assert!(e.contains("/bin/sh -c explode now"), "{e}");
}

#[test]
fn cached_steps_do_not_run_again_and_no_cache_runs_them() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("gen", |s| {
        s.write("/gen", b"1")?;
        Ok(0)
    });
    let df = "RUN gen\nRUN other\n";
    let first = f.run(&exec, df);
    assert_eq!((exec.count(), first.executed, first.cached), (2, 3, 0));
    let second = f.run(&exec, df);
    assert_eq!((exec.count(), second.executed, second.cached), (2, 0, 3));
    assert_eq!(first.manifest.digest, second.manifest.digest);
    let changed = f.run(&exec, "RUN gen\nRUN other --changed\n");
    assert_eq!(exec.count(), 3, "only the changed step runs");
    assert_eq!(changed.cached, 2);
    let mut o = f.options(df);
    o.no_cache = true;
    f.build(&exec, &o).unwrap();
    assert_eq!(exec.count(), 5, "--no-cache runs every RUN");
}

#[test]
fn a_step_after_cached_runs_sees_their_files() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new()
        .on("gen", |s| {
            s.write("/gen", b"1")?;
            Ok(0)
        })
        .on("check", |s| Ok(if s.exists("/gen") && s.exists("/etc/old") { 0 } else { 1 }));
    f.run(&exec, "RUN gen\nRUN other\n");
    // The hit's tree is read from the layers only when the next step
    // needs it: a RUN that runs, or a COPY.
    let r = f.run(&exec, "RUN gen\nRUN check\n");
    assert_eq!((r.executed, r.cached), (1, 2));
    let r = f.run(&exec, "RUN gen\nCOPY etc/old /copied\nRUN check --again\n");
    assert_eq!((r.executed, r.cached), (2, 2));
    assert_eq!(exec.count(), 4);
}

#[test]
fn cached_steps_read_no_layer_until_a_step_needs_the_tree() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new()
        .on("gen", |s| {
            s.write("/gen", b"1")?;
            Ok(0)
        })
        .on("check", |s| {
            let seen = (s.read("/gen"), s.read("/etc/old"));
            s.note(format!("{seen:?}"));
            Ok(0)
        });
    let first = f.run(&exec, "RUN gen\n");
    assert_eq!(first.layers.len(), 2);
    // A fully cached build reads none of its layers: with the blobs
    // unreadable (still present, as a record needs) it gives the same image.
    let saved: Vec<Vec<u8>> =
        first.layers.iter().map(|l| std::fs::read(f.store.blob_path(&l.desc.digest)).unwrap()).collect();
    for l in &first.layers {
        std::fs::write(f.store.blob_path(&l.desc.digest), b"not a layer").unwrap();
    }
    let again = f.run(&exec, "RUN gen\n");
    assert_eq!((exec.count(), again.cached, again.manifest.digest.clone()), (1, 2, first.manifest.digest.clone()));
    for (l, bytes) in first.layers.iter().zip(&saved) {
        std::fs::write(f.store.blob_path(&l.desc.digest), bytes).unwrap();
    }
    // A step that misses reads the tree with the cached layers in it.
    let r = f.run(&exec, "RUN gen\nRUN check\n");
    assert_eq!((exec.count(), r.cached), (2, 2));
    assert_eq!(exec.last().unwrap().notes, [format!("{:?}", (Some(b"1".to_vec()), Some(b"old".to_vec())))]);
}

#[test]
fn run_settings_reach_the_process_and_the_key() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    let mut o = f.options("RUN x\n");
    o.run.extra_hosts.push(crate::settings::parse_add_host("db:10.0.0.5").unwrap());
    o.run.extra_hosts.push(crate::settings::parse_add_host("gw=host-gateway").unwrap());
    o.run.ulimits.push(crate::settings::parse_ulimit("nofile=1024:2048").unwrap());
    o.run.shm_size = Some(128 << 20);
    o.run.cgroup_parent = Some("ci".into());
    f.build(&exec, &o).unwrap();
    let p = exec.last().unwrap().process;
    assert_eq!(p.extra_hosts, [("db".to_string(), "10.0.0.5".to_string()), ("gw".into(), "127.0.0.1".into())]);
    assert_eq!(p.rlimits.len(), 1);
    assert_eq!((p.rlimits[0].resource, p.rlimits[0].soft, p.rlimits[0].hard), (Resource::Nofile, 1024, 2048));
    assert_eq!((p.shm_size, p.cgroup_parent.as_deref()), (Some(128 << 20), Some("ci")));
    f.build(&exec, &o).unwrap();
    assert_eq!(exec.count(), 1, "same settings: cached");
    o.run.shm_size = Some(256 << 20);
    f.build(&exec, &o).unwrap();
    assert_eq!(exec.count(), 2, "a setting is part of the key");
}

#[test]
fn ssh_mounts_forward_an_agent_socket() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    let exec = RecordingExecutor::new().on("ssh-add", |s| {
        let sock = s.host_path("/run/buildkit/ssh_agent.0");
        s.note(format!("{}", std::os::unix::net::UnixStream::connect(&sock).is_ok()));
        Ok(0)
    });
    let mut o =
        f.options("RUN --mount=type=ssh ssh-add -l\nRUN --mount=type=ssh,id=other,target=/s --mount=type=ssh x\n");
    o.run.ssh = BTreeMap::from([("default".into(), agent.clone())]);
    f.build(&exec, &o).unwrap();
    let c = calls(&exec);
    assert_eq!(c[0].env("SSH_AUTH_SOCK"), Some("/run/buildkit/ssh_agent.0"));
    assert_eq!(c[0].notes, ["true"], "the step's socket reaches the agent");
    let m = c[0].mount("/run/buildkit/ssh_agent.0").unwrap();
    assert!(!m.source.exists(), "the step's socket is gone after it");
    assert!(c[1].mount("/s").is_none(), "an optional id without agent is skipped");
    assert!(c[1].mount("/run/buildkit/ssh_agent.1").is_some());
    assert_eq!(c[1].env("SSH_AUTH_SOCK"), Some("/s"), "the first ssh mount's target");
    let e = f.build(&exec, &f.options("RUN --mount=type=ssh,required=true y\n")).unwrap_err().to_string();
    assert!(e.contains("no SSH key \"default\" forwarded") && e.contains("Dockerfile:3"), "{e}");
}

#[test]
fn a_cross_compiling_build_for_six_platforms_runs_its_build_stage_once() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("compile", |s| {
        let target = s.process().env.iter().find(|e| e.starts_with("TARGETARCH=")).cloned().unwrap_or_default();
        s.write("/out/app", target.as_bytes())?;
        Ok(0)
    });
    let df = "FROM --platform=$BUILDPLATFORM scratch AS build\nCOPY . /\nRUN compile\n\
              FROM scratch\nCOPY --from=build /out /out\n";
    let mut o = BuildOptions::new(df).with_context(context());
    o.snapshotter = SnapshotterKind::Naive;
    let targets: Vec<polyarch_oci::Platform> =
        ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x", "linux/ppc64le", "linux/riscv64"]
            .iter()
            .map(|p| polyarch_oci::Platform::parse(p).unwrap().normalize())
            .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let multi = crate::multi::MultiBuilder::new(f.store.clone()).with_executor(exec.clone()).with_jobs(3);
    let r = rt.block_on(multi.build(&o, &targets)).unwrap();
    assert_eq!(r.images.len(), 6);
    assert_eq!(exec.count(), 1, "the build stage's RUN is shared by every platform");
    assert_eq!(exec.last().unwrap().env("TARGETARCH"), None, "no ARG TARGETARCH in the stage");
    let again = rt.block_on(multi.build(&o, &targets)).unwrap();
    assert_eq!((exec.count(), again.executed()), (1, 0));
}

#[test]
fn a_shared_step_that_fails_fails_every_platform_once() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new().on("compile", |_| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(3)
    });
    let df = "FROM --platform=$BUILDPLATFORM scratch AS build\nCOPY . /\nRUN compile\n\
              FROM scratch\nCOPY --from=build /out /out\n";
    let mut o = BuildOptions::new(df).with_context(context());
    o.snapshotter = SnapshotterKind::Naive;
    let targets: Vec<polyarch_oci::Platform> = ["linux/amd64", "linux/arm64", "linux/s390x"]
        .iter()
        .map(|p| polyarch_oci::Platform::parse(p).unwrap().normalize())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let multi = crate::multi::MultiBuilder::new(f.store.clone()).with_executor(exec.clone()).with_jobs(3);
    let e = rt.block_on(multi.build(&o, &targets)).unwrap_err().to_string();
    assert!(e.contains("exit code: 3"), "{e}");
    assert_eq!(exec.count(), 1, "the platforms awaiting the shared step get its failure, not a run of their own");
}

#[test]
fn a_private_cache_in_use_gives_the_step_a_directory_of_its_own() {
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    f.run(&exec, "RUN --mount=type=cache,target=/p,sharing=private first\n");
    let shared = exec.last().unwrap().mount("/p").unwrap().source.clone();
    let held = crate::process::CacheLock::acquire(&shared).unwrap();
    f.run(&exec, "RUN --mount=type=cache,target=/p,sharing=private second\n");
    let own = exec.last().unwrap().mount("/p").unwrap().source.clone();
    assert_ne!(own, shared, "a private cache held by another step is not shared");
    assert!(!own.exists(), "the step's own directory goes with the step");
    drop(held);
    f.run(&exec, "RUN --mount=type=cache,target=/p,sharing=private third\n");
    assert_eq!(exec.last().unwrap().mount("/p").unwrap().source, shared, "free again: the cache itself");
}

/// A RUN step waiting for its run slot is not running: it starts when it
/// has the slot (the wait is not shown as running time), and a step whose
/// result is cached starts and ends without one.
#[test]
fn a_run_step_starts_when_it_gets_its_slot() {
    use crate::slots::{Class, Slots};
    use crate::Event;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};
    let f = Fixture::new();
    let exec = RecordingExecutor::new();
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let e = events.clone();
    let slots = Slots::new(1);
    let b = Builder::new(f.store.clone())
        .with_executor(exec.clone())
        .with_slots(slots.clone())
        .with_events(Arc::new(move |ev| e.lock().unwrap().push(ev)));
    let mut opts = BuildOptions::new("FROM scratch\nRUN waits for the slot\n");
    opts.snapshotter = SnapshotterKind::Naive;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (held, released) = rt.block_on(async {
        let held = slots.acquire(slots.exec_class(&opts.platform)).await;
        let build = tokio::spawn({
            let (b, opts) = (b.clone(), opts.clone());
            async move { b.build(&opts).await }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(exec.count(), 0, "the step waits for the slot");
        let released = SystemTime::now();
        drop(held);
        build.await.unwrap().unwrap();
        (slots.free(Class::Cpu), released)
    });
    assert_eq!(held, 1);
    let run_events = |events: &[Event]| -> Vec<(String, SystemTime)> {
        let run = |e: &Event| e.vertex().text.starts_with("RUN");
        let kind = |e: &Event| format!("{e:?}").split(' ').next().unwrap_or_default().to_string();
        events.iter().filter(|e| run(e)).map(|e| (kind(e), e.at())).collect()
    };
    let got = run_events(&events.lock().unwrap());
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["Started", "Done"], "{got:?}");
    assert!(got[0].1 >= released, "started {:?} before its slot was free at {released:?}", got[0].1);

    // Cached: started and done while another step holds the only slot.
    events.lock().unwrap().clear();
    let again = rt.block_on(async {
        let _held = slots.acquire(slots.exec_class(&opts.platform)).await;
        tokio::time::timeout(Duration::from_secs(10), b.build(&opts)).await
    });
    assert_eq!(again.expect("a cached step needs no slot").unwrap().cached, 1);
    let kinds: Vec<String> = run_events(&events.lock().unwrap()).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["Started", "Cached", "Done"]);
}
