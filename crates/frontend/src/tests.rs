//! Plans of a corpus of Dockerfiles against golden files
//! (`testdata/<case>/{Dockerfile,options,plan.json}`; `UPDATE_GOLDEN=1`
//! rewrites them), the sharing of a cross-compiling build's vertices, its
//! execution through the solver with a recording worker, and errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polyarch_oci::{Digest, Platform, Reference};
use polyarch_solver::op::{MountKind, Op, Source};
use polyarch_solver::{BoxError, ContentChecksum, Job, MemoryCache, Solver, Vertex, Worker};

use super::*;

/// A resolver with made-up images: a digest per reference and platform, a
/// config per repository, and `library/missing` that no registry has.
#[derive(Default)]
pub(crate) struct FakeResolver {
    calls: Mutex<Vec<String>>,
}

impl FakeResolver {
    fn config(reference: &Reference, platform: &Platform) -> serde_json::Value {
        let mut config = serde_json::json!({ "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"] });
        match reference.path.as_str() {
            "library/golang" => {
                config["Env"] = serde_json::json!(["PATH=/usr/local/go/bin:/usr/bin:/bin", "GOPATH=/go"]);
                config["WorkingDir"] = "/go".into();
            }
            "library/withonbuild" => {
                config["OnBuild"] = serde_json::json!(["ARG SUFFIX=ob", "COPY . /app/src", "RUN echo built-$SUFFIX"]);
                config["WorkingDir"] = "/app".into();
                config["User"] = "app".into();
            }
            _ => {}
        }
        let mut v = serde_json::json!({
            "architecture": platform.architecture, "os": platform.os, "config": config,
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [{ "created_by": format!("base {}", reference.path) }],
        });
        if let Some(variant) = &platform.variant {
            v["variant"] = variant.clone().into();
        }
        v
    }
}

impl Resolver for FakeResolver {
    async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage, BoxError> {
        let key = format!("{reference}|{}", platform.format());
        self.calls.lock().unwrap().push(key.clone());
        if reference.path == "library/missing" {
            return Err("manifest unknown".into());
        }
        let pinned = reference.with_digest(Digest::sha256(key.as_bytes()));
        let config = serde_json::to_vec(&FakeResolver::config(reference, platform))?;
        Ok(ResolvedImage::new(pinned, config))
    }

    async fn resolve_git(&self, remote: &str, reference: &str) -> Result<Option<String>, BoxError> {
        if remote.contains("missing") {
            return Err("repository not found".into());
        }
        let d = Digest::sha256(format!("{remote}#{reference}").as_bytes());
        Ok(Some(d.hex()[..40].to_string()))
    }
}

const SIX: [&str; 6] = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/386"];

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap().normalize()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn plan_text(dockerfile: &str, options: &Options) -> Result<Plan> {
    block(plan(dockerfile.as_bytes(), "Dockerfile", options, &FakeResolver::default()))
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// A case's options: `platform=a,b`, `build-arg=K=V`, `target=T`,
/// `label=K=V`, `no-cache-filter=S` lines.
fn case_options(dir: &Path) -> Options {
    let mut o = Options::new(p("linux/amd64"));
    let text = std::fs::read_to_string(dir.join("options")).unwrap_or_default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{}: bad option line {line:?}", dir.display()));
        let kv = || v.split_once('=').map(|(a, b)| (a.to_string(), b.to_string())).unwrap();
        o = match k {
            "platform" => o.with_platforms(v.split(',').map(p)),
            "build-arg" => o.with_build_arg(kv().0, kv().1),
            "label" => o.with_label(kv().0, kv().1),
            "target" => o.with_target(v),
            "no-cache-filter" => o.with_no_cache_filter(v),
            _ => panic!("{}: unknown option {k}", dir.display()),
        };
    }
    o
}

#[test]
fn golden_plans() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "the corpus is {} cases", cases.len());
    let mut failed = Vec::new();
    for dir in &cases {
        let df = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let plan = plan_text(&df, &case_options(dir)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let got = serde_json::to_string_pretty(&plan.to_json()).unwrap() + "\n";
        let golden = dir.join("plan.json");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failed.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(failed.is_empty(), "plans differ from their golden files (UPDATE_GOLDEN=1 rewrites them): {failed:?}");
}

fn cross_compile() -> (Plan, Options) {
    let dir = testdata().join("cross-compile");
    let df = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let opts = case_options(&dir);
    assert_eq!(opts.platforms.len(), 6);
    (plan_text(&df, &opts).unwrap(), opts)
}

/// The vertices whose names contain `text`.
fn named<'a>(plan: &'a Plan, text: &str) -> Vec<&'a Arc<Vertex>> {
    plan.graph.vertices().filter(|v| plan.graph.names(v.id()).iter().any(|n| n.contains(text))).collect()
}

#[test]
fn a_build_platform_stage_is_shared_by_six_platforms() {
    let (plan, _) = cross_compile();
    let serves = plan.serves();
    let six: Vec<Platform> = SIX.iter().map(|s| p(s)).collect();
    // Platform-independent vertices of the build stage: once, serving all six.
    for text in ["FROM docker.io/library/golang:1.22", "WORKDIR /src", "COPY go.mod", "go mod download", "COPY . ."] {
        let v = named(&plan, text);
        assert_eq!(v.len(), 1, "{text}: {v:?}");
        assert_eq!(serves[v[0].id().index()], six, "{text}");
        assert_eq!(plan.graph.platform_list(v[0].id()), "linux/amd64", "{text} is built on the build platform");
    }
    // Per-platform ones: six, one each.
    for text in ["go build", "FROM docker.io/library/busybox", "COPY --from=build"] {
        let v = named(&plan, text);
        assert_eq!(v.len(), 6, "{text}: {:?}", v.iter().map(|v| v.name()).collect::<Vec<_>>());
        let mut served: Vec<Platform> = v.iter().flat_map(|v| serves[v.id().index()].clone()).collect();
        served.sort_by_key(Platform::format);
        let mut want = six.clone();
        want.sort_by_key(Platform::format);
        assert_eq!(served, want, "{text}");
    }
    let go_build = named(&plan, "go build");
    let Op::Exec(e) = go_build[0].op() else { panic!("not an exec") };
    assert!(e.env.iter().any(|x| x.starts_with("TARGETARCH=")), "{:?}", e.env);
    assert!(go_build.iter().all(|v| v.platform() == &p("linux/amd64")), "the compiler runs on the build platform");
    assert!(go_build[1].name().starts_with("[linux/amd64->arm64 build"), "{}", go_build[1].name());
    assert_eq!(plan.graph.len(), 5 + 1 + 3 * 6, "golang, workdir, context, 2 copies, 1 run; then 3 per platform");
    assert_eq!(plan.images.len(), 6);
    assert_eq!(plan.graph.targets().len(), 6);
    for img in &plan.images {
        assert_eq!(img.config.platform.format(), img.platform.format());
        assert_eq!(img.config.config.entrypoint, ["/app"]);
    }
}

/// Counts executions per vertex digest.
#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<Digest, usize>>,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Worker for Recorder {
    type Output = String;
    type Error = Never;

    async fn exec(&self, job: Job<String>) -> Result<String, Never> {
        *self.runs.lock().unwrap().entry(job.vertex.digest().clone()).or_default() += 1;
        Ok(job.vertex.digest().to_string())
    }
}

/// Gives the context a fixed checksum, as a builder digests its files.
struct ContextSum;

impl ContentChecksum<String> for ContextSum {
    fn source(&self, v: &Vertex) -> Result<Option<Digest>, BoxError> {
        Ok(matches!(v.op(), Op::Source(Source::Context(_))).then(|| Digest::sha256(b"context")))
    }

    fn selection(
        &self,
        _: &Vertex,
        _: usize,
        _: &String,
        _: &polyarch_solver::op::Selector,
    ) -> Result<Option<Digest>, BoxError> {
        Ok(None)
    }
}

#[test]
fn the_solver_runs_shared_vertices_once_and_per_platform_ones_per_platform() {
    let (plan, _) = cross_compile();
    let worker = Arc::new(Recorder::default());
    let solver = Solver::new(worker.clone(), Arc::new(MemoryCache::new())).with_checksum(Arc::new(ContextSum));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let solution = rt.block_on(solver.solve(&plan.graph)).unwrap();
    assert_eq!(solution.targets().len(), 6);
    let runs = worker.runs.lock().unwrap();
    let count = |text: &str| -> (usize, usize) {
        let v = named(&plan, text);
        (v.len(), v.iter().map(|v| runs.get(v.digest()).copied().unwrap_or(0)).sum())
    };
    assert_eq!(count("go mod download"), (1, 1), "the shared RUN runs once");
    assert_eq!(count("COPY . ."), (1, 1));
    assert_eq!(count("FROM docker.io/library/golang"), (1, 1), "the build image is pulled once");
    assert_eq!(count("go build"), (6, 6), "the per-platform RUN runs once per platform");
    assert_eq!(count("COPY --from=build"), (6, 6));
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
    assert_eq!(solution.executed(), plan.graph.len());
}

#[test]
fn each_image_is_resolved_once_per_platform() {
    let resolver = FakeResolver::default();
    let df = "FROM busybox AS a\nFROM busybox AS b\nCOPY --from=busybox /bin/sh /sh\nCOPY --from=a / /a\n";
    let opts = Options::new(p("linux/amd64")).with_platforms([p("linux/amd64"), p("linux/arm64")]);
    let plan = block(plan(df.as_bytes(), "Dockerfile", &opts, &resolver)).unwrap();
    let mut calls = resolver.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].starts_with("docker.io/library/busybox:latest|linux/amd64"), "{calls:?}");
    assert_eq!(plan.images.len(), 2);
}

#[test]
fn mounts_become_exec_mounts_with_inputs() {
    let df = "FROM busybox AS src\nRUN touch /x\nFROM busybox\nWORKDIR /w\n\
              RUN --mount=type=bind,from=src,source=/x,target=rel \
              --mount=type=cache,target=/c,id=cc,sharing=locked,mode=0700,uid=5 \
              --mount=type=tmpfs,target=/t,size=1m --mount=type=secret,id=tok,env=TOKEN \
              --mount=type=ssh,required --network=none --security=insecure true\n";
    let plan = plan_text(df, &Options::new(p("linux/amd64"))).unwrap();
    let v = named(&plan, "[stage-1 3/3] RUN");
    let Op::Exec(e) = v[0].op() else { panic!() };
    let targets: Vec<&str> = e.mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/", "/w/rel", "/c", "/t", "", "/run/buildkit/ssh_agent.0"]);
    assert!(matches!(&e.mounts[1].kind, MountKind::Input { input: 1, selector, readonly: true } if selector == "/x"));
    let src_run = named(&plan, "touch /x")[0].id();
    assert_eq!(v[0].inputs()[1], src_run, "the bind mount reads the src stage");
    assert!(matches!(&e.mounts[2].kind, MountKind::Cache { id, mode: 0o700, uid: 5, .. } if id == "cc"));
    assert!(matches!(e.mounts[3].kind, MountKind::Tmpfs { size: Some(1048576) }));
    assert!(
        matches!(&e.mounts[4].kind, MountKind::Secret { id, env: Some(env), mode: 0o400, .. } if id == "tok" && env == "TOKEN")
    );
    assert!(matches!(&e.mounts[5].kind, MountKind::Ssh { id, required: true, .. } if id == "default"));
    assert_eq!(e.network, polyarch_solver::op::Network::None);
    assert_eq!(e.security, polyarch_solver::op::Security::Insecure);
    assert_eq!(e.cwd, "/w");
}

fn error_of(df: &str, opts: &Options) -> Error {
    plan_text(df, opts).expect_err("the plan should fail")
}

#[test]
fn errors_name_the_line_and_column() {
    let o = Options::new(p("linux/amd64"));
    let e = error_of("FROM busybox\nRUN true\nCOPY --from=4 /a /b\n", &o);
    assert_eq!((e.kind(), e.line()), (ErrorKind::Dockerfile, Some(3)));
    assert!(e.to_string().starts_with("Dockerfile:3:1: invalid stage index 4"), "{e}");
    let e = error_of("FROM busybox AS a\n", &o.clone().with_target("nope"));
    assert!(e.to_string().contains("target stage \"nope\" could not be found (stages: a)"), "{e}");
    let e = error_of("FROM busybox\nCOPY --chwon=1 a b\n", &o);
    assert!(e.to_string().starts_with("Dockerfile:2:6: unknown flag: chwon"), "{e}");
    let e = error_of("FROM busybox\nRUN --mount=type=cahce,target=/x true\n", &o);
    assert!(e.to_string().contains("did you mean cache?"), "{e}");
    let e = error_of("FROM busybox\n\nFROM missing:1 AS m\n", &o.clone().with_target("m"));
    assert_eq!((e.kind(), e.line()), (ErrorKind::Resolve, Some(3)));
    assert!(
        e.to_string().contains("failed to resolve source metadata for docker.io/library/missing:1: manifest unknown"),
        "{e}"
    );
    assert!(e.to_string().starts_with("Dockerfile:3:6:"), "{e}");
    let e = error_of("FROM --platform=linux/nope/x/y busybox\n", &o);
    assert_eq!((e.kind(), e.line()), (ErrorKind::Invalid, Some(1)));
    let e = error_of("FROM busybox\nCOPY --chmod=9 a /b\n", &o);
    assert!(e.to_string().contains("invalid chmod parameter: '9'"), "{e}");
    let e = error_of("FROM busybox\nCOPY a b /c\n", &o);
    assert!(e.to_string().contains("the destination must be a directory"), "{e}");
    let e = error_of("FROM busybox\nCOPY https://example.com/x /c\n", &o);
    assert!(e.to_string().contains("source can't be a URL for COPY"), "{e}");
    let e = error_of("FROM a\nFROM b AS b\nCOPY --from=c / /\nFROM b AS c\nCOPY --from=b / /\nFROM busybox AS z\nCOPY --from=c / /\n", &o);
    assert!(e.to_string().contains("circular dependency") || e.kind() == ErrorKind::Dockerfile, "{e}");
    let e = error_of("FROM busybox\nRUN --mount=type=bind true\n", &o);
    assert!(e.to_string().contains("mount type bind requires a target"), "{e}");
    let e = error_of("FROM busybox\nRUN --network=bridge true\n", &o);
    assert!(e.to_string().contains("unsupported network mode"), "{e}");
}

#[test]
fn only_stages_the_target_reaches_are_planned() {
    let resolver = FakeResolver::default();
    let df = "FROM missing AS unused\nRUN never\n\
              FROM busybox AS base\nRUN echo base\n\
              FROM scratch AS meta\nENV A=1\n\
              FROM base AS app\nCOPY --from=meta / /\nRUN echo app\n\
              FROM missing\n";
    let opts = Options::new(p("linux/amd64")).with_target("app");
    let plan = block(plan(df.as_bytes(), "Dockerfile", &opts, &resolver)).unwrap();
    let calls = resolver.calls.lock().unwrap().clone();
    assert_eq!(calls, ["docker.io/library/busybox:latest|linux/amd64"], "the unused stages' images are not resolved");
    assert!(named(&plan, "never").is_empty());
    assert_eq!(named(&plan, "echo base").len(), 1);
    let app = named(&plan, "echo app");
    assert_eq!(plan.images[0].vertex, Some(app[0].id()));
    assert_eq!(plan.graph.targets()[0].vertex, app[0].id());
    // A config-only target has no vertex, and its config is still planned.
    let opts = Options::new(p("linux/amd64")).with_target("meta").with_label("k", "v");
    let plan = block(super::plan(df.as_bytes(), "Dockerfile", &opts, &resolver)).unwrap();
    assert_eq!((plan.images[0].vertex, plan.graph.len(), plan.graph.targets().len()), (None, 0, 0));
    assert!(plan.images[0].config.config.env.contains(&"A=1".to_string()));
    assert_eq!(plan.images[0].config.config.labels["k"], "v");
    assert_eq!(plan.to_json()["images"][0]["vertex"], serde_json::Value::Null);
}

#[test]
fn json_platforms_are_the_targets_a_vertex_serves() {
    let (plan, _) = cross_compile();
    let json = plan.to_json();
    let v = named(&plan, "go mod download")[0].id().index();
    assert_eq!(json["vertices"][v]["platforms"], serde_json::json!(SIX));
    assert_eq!(json["vertices"][v]["built_for"], serde_json::json!(["linux/amd64"]));
    let dot = plan.to_dot();
    assert!(dot.contains(&format!("serves 6: {}\"];", SIX.join(", "))), "{dot}");
    assert_eq!(dot.matches("label=").count(), plan.graph.len() + 6, "a box per vertex, an oval per target");
}

/// A resolver that takes a while and records how many resolves overlap.
#[derive(Default)]
struct SlowResolver {
    inner: FakeResolver,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Resolver for SlowResolver {
    async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage, BoxError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.running.fetch_sub(1, SeqCst);
        self.inner.resolve(reference, platform).await
    }
}

#[test]
fn images_of_every_platform_are_resolved_at_once() {
    let dir = testdata().join("cross-compile");
    let df = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let resolver = SlowResolver::default();
    let plan = block(plan(df.as_bytes(), "Dockerfile", &case_options(&dir), &resolver)).unwrap();
    assert_eq!(plan.images.len(), 6);
    let calls = resolver.inner.calls.lock().unwrap().len();
    assert_eq!(calls, 7, "golang once for the build platform, busybox for each target");
    let most = resolver.most.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 7, "every resolve is in flight at once");
}

/// The environment of the exec named with `text`.
fn exec_env(plan: &Plan, text: &str) -> Vec<String> {
    let v = named(plan, text);
    assert_eq!(v.len(), 1, "{text}: {v:?}");
    match v[0].op() {
        Op::Exec(e) => e.env.clone(),
        other => panic!("{text}: not an exec: {other:?}"),
    }
}

#[test]
fn args_are_scoped_as_buildkit_scopes_them() {
    let df = "ARG GLOBAL=g\nARG OVER=default\nFROM busybox AS parent\nARG GLOBAL\nARG LOCAL=l-$GLOBAL\n\
              RUN echo parent\n\
              FROM parent AS child\nARG OVER\nARG TARGETARCH\nARG NOVALUE\nRUN echo child\n\
              FROM busybox\nRUN echo last\n";
    let opts = Options::new(p("linux/amd64")).with_platforms([p("linux/arm64")]).with_build_arg("OVER", "given");
    let plan = plan_text(df, &opts.clone().with_target("child")).unwrap();
    let parent = exec_env(&plan, "echo parent");
    assert!(parent.contains(&"GLOBAL=g".into()) && parent.contains(&"LOCAL=l-g".into()), "{parent:?}");
    assert!(!parent.iter().any(|e| e.starts_with("OVER=")), "a global ARG is not in scope unless declared: {parent:?}");
    let child = exec_env(&plan, "echo child");
    for want in ["GLOBAL=g", "LOCAL=l-g", "OVER=given", "TARGETARCH=arm64"] {
        assert!(child.contains(&want.to_string()), "{want} in {child:?}");
    }
    assert!(!child.iter().any(|e| e.starts_with("NOVALUE")), "an ARG without a value is unset: {child:?}");
    let plan = plan_text(df, &opts).unwrap();
    let last = exec_env(&plan, "echo last");
    assert!(!last.iter().any(|e| e.starts_with("GLOBAL=")), "{last:?}");
}

#[test]
fn onbuild_triggers_run_in_the_child_only() {
    let df = "FROM busybox AS parent\nONBUILD RUN echo trigger\nRUN echo parent\n\
              FROM parent AS child\nRUN echo child\n\
              FROM child AS grandchild\nRUN echo grandchild\n\
              FROM withonbuild:2 AS image\n";
    let o = Options::new(p("linux/amd64"));
    let plan = plan_text(df, &o.clone().with_target("grandchild")).unwrap();
    let trigger = named(&plan, "echo trigger");
    assert_eq!(trigger.len(), 1, "the trigger runs once, in the child");
    assert_eq!(plan.graph.names(trigger[0].id()), ["[child 1/2] ONBUILD RUN echo trigger"]);
    assert_eq!(named(&plan, "echo child")[0].inputs(), [trigger[0].id()], "after the trigger");
    assert!(plan.images[0].config.config.on_build.is_empty(), "triggers do not carry over");
    let plan = plan_text(df, &o.with_target("image")).unwrap();
    assert_eq!(named(&plan, "ONBUILD COPY . /app/src").len(), 1, "a base image's triggers run: {:?}", plan.to_json());
    assert_eq!(named(&plan, "ONBUILD RUN echo built-ob").len(), 1);
    let config = &plan.images[0].config.config;
    assert!(config.on_build.is_empty() && config.working_dir == "/app" && config.user == "app", "{config:?}");
}

#[test]
fn no_cache_filter_marks_only_its_stage() {
    let df = "FROM busybox AS deps\nRUN echo deps\nFROM busybox\nCOPY --from=deps /x /x\nRUN echo app\n";
    let plan = plan_text(df, &Options::new(p("linux/amd64")).with_no_cache_filter("DEPS")).unwrap();
    let ignores = |text: &str| plan.graph.ignores_cache(named(&plan, text)[0].id());
    assert!(ignores("echo deps"));
    assert!(!ignores("echo app") && !ignores("COPY --from=deps"));
    let plan = plan_text(df, &Options::new(p("linux/amd64")).with_no_cache(true)).unwrap();
    assert!(plan.graph.vertices().all(|v| plan.graph.ignores_cache(v.id())), "--no-cache marks every vertex");
}

#[test]
fn a_long_chain_of_stages_is_no_deep_recursion() {
    let mut df = String::from("FROM scratch AS s0\n");
    for i in 0..600 {
        df.push_str(&format!("FROM s{i} AS s{}\nRUN echo {i}\n", i + 1));
    }
    // Test threads have small stacks: a recursion per stage would overflow.
    let plan = plan_text(&df, &Options::new(p("linux/amd64"))).unwrap();
    assert_eq!(plan.graph.len(), 601, "an empty tree, then a RUN per stage");
    assert_eq!(plan.images[0].vertex.map(|v| v.index()), Some(600));
}

/// Gives every source a checksum, as a builder digests a context's files
/// or a download's body.
struct SourceSum;

impl ContentChecksum<String> for SourceSum {
    fn source(&self, v: &Vertex) -> Result<Option<Digest>, BoxError> {
        Ok(Some(Digest::sha256(v.digest().to_string().as_bytes())))
    }

    fn selection(
        &self,
        _: &Vertex,
        _: usize,
        _: &String,
        _: &polyarch_solver::op::Selector,
    ) -> Result<Option<Digest>, BoxError> {
        Ok(None)
    }
}

#[test]
fn every_golden_plan_is_solved_with_each_vertex_run_once() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for e in std::fs::read_dir(testdata()).unwrap().filter_map(Result::ok) {
        let Ok(df) = std::fs::read_to_string(e.path().join("Dockerfile")) else { continue };
        let plan = plan_text(&df, &case_options(&e.path())).unwrap();
        let worker = Arc::new(Recorder::default());
        let solver = Solver::new(worker.clone(), Arc::new(MemoryCache::new())).with_checksum(Arc::new(SourceSum));
        let solution =
            rt.block_on(solver.solve(&plan.graph)).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        let runs = worker.runs.lock().unwrap();
        assert_eq!(runs.len(), plan.graph.len(), "{}: every vertex runs", e.path().display());
        assert!(runs.values().all(|n| *n == 1), "{}: {runs:?}", e.path().display());
        let with_vertex = plan.images.iter().filter(|i| i.vertex.is_some()).count();
        assert_eq!(solution.targets().len(), with_vertex, "{}", e.path().display());
    }
}

#[test]
fn git_sources_are_pinned_by_the_resolver() {
    let df = "FROM scratch\nADD https://example.com/r.git#v1:sub /src\n";
    let plan = plan_text(df, &Options::new(p("linux/amd64"))).unwrap();
    let git = plan.graph.vertices().find(|v| v.op().type_name() == "source.git").expect("a git vertex");
    let Op::Source(Source::Git(g)) = git.op() else { panic!() };
    assert_eq!(
        (g.remote.as_str(), g.reference.as_str(), g.subdir.as_str()),
        ("https://example.com/r.git", "v1", "sub")
    );
    assert_eq!(g.commit.as_ref().map(String::len), Some(40));
    let e = error_of("FROM scratch\n\nADD git@example.com:missing.git#main /src\n", &Options::new(p("linux/amd64")));
    assert_eq!((e.kind(), e.line()), (ErrorKind::Resolve, Some(3)));
    assert!(
        e.to_string().contains("failed to resolve git git@example.com:missing.git#main: repository not found"),
        "{e}"
    );
}

/// Resolves as [`FakeResolver`], with every image behind one index.
struct IndexResolver(FakeResolver);

impl Resolver for IndexResolver {
    async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage, BoxError> {
        let found = self.0.resolve(reference, platform).await?;
        let index = reference.with_digest(Digest::sha256(format!("index of {reference}").as_bytes()));
        Ok(found.with_top(index))
    }
}

/// As BuildKit, a FROM is named by the digest its reference resolved to
/// (a multi-platform image's index), the same for every platform, while
/// each platform's source vertex holds its own manifest digest.
#[test]
fn a_from_is_named_by_the_index_digest_and_keyed_by_the_manifest() {
    let opts = Options::new(p("linux/amd64")).with_platforms(["linux/amd64", "linux/arm64"].map(p));
    let resolver = IndexResolver(FakeResolver::default());
    let plan = block(plan(b"FROM busybox\nRUN true\n", "Dockerfile", &opts, &resolver)).unwrap();
    let index = Digest::sha256(b"index of docker.io/library/busybox:latest");
    let froms = named(&plan, "] FROM docker.io/library/busybox");
    assert_eq!(froms.len(), 2, "one source vertex per platform");
    for v in &froms {
        let names = plan.graph.names(v.id());
        assert!(
            names.iter().all(|n| n.ends_with(&format!("FROM docker.io/library/busybox:latest@{index}"))),
            "{names:?}"
        );
        let Op::Source(Source::Image(img)) = v.op() else { panic!("not an image source: {:?}", v.op()) };
        assert_ne!(img.resolved.as_ref(), Some(&index), "the op holds the platform's manifest");
    }
}

#[test]
fn context_vertices_are_the_plans() {
    let mut opts = Options::new(p("linux/amd64"))
        .with_platforms([p("linux/arm64"), p("linux/s390x")])
        .with_context_excludes(["*.log".to_string()]);
    opts.named_contexts.insert("docs".into(), NamedContext::Files);
    opts.named_contexts.insert("base".into(), NamedContext::Image("docker.io/library/alpine".into()));
    let df = "FROM busybox\nCOPY a /a\nCOPY --from=docs / /docs\n";
    let plan = plan_text(df, &opts).unwrap();
    let sources = context_vertices(&opts).unwrap();
    let names: Vec<&str> = sources.vertices().map(|v| v.name()).collect();
    assert_eq!(names, ["[internal] load build context", "[context docs] load from client"]);
    for v in sources.vertices() {
        let found = plan.graph.find(v.digest()).unwrap_or_else(|| panic!("{} is not in the plan", v.name()));
        assert_eq!(plan.graph.names(found), [v.name().to_string()]);
    }
    let other = context_vertices(&opts.clone().with_context_excludes(Vec::new())).unwrap();
    assert_ne!(other.vertices().next().unwrap().digest(), sources.vertices().next().unwrap().digest());
}
