//! `polyarch debug plan`: the graph of a cross-compiling Dockerfile for six
//! platforms against the real registry fixture (docker.io mirrored to it),
//! as JSON and as Graphviz dot, and failures located in the Dockerfile.

use serde_json::Value;

use crate::util::{api, context, mirrored, s, Env};

const SIX: &str = "linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x,linux/386";

const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
                     WORKDIR /src\n\
                     COPY main.txt .\n\
                     RUN cat main.txt > /common\n\
                     ARG TARGETARCH\n\
                     RUN echo \"$TARGETARCH\" > /out\n\
                     FROM busybox\n\
                     COPY --from=build /out /out\n\
                     CMD [\"cat\", \"/out\"]\n";

/// Vertices whose names contain `text`.
fn named<'a>(plan: &'a Value, text: &str) -> Vec<&'a Value> {
    let vertices = plan["vertices"].as_array().expect("vertices");
    vertices
        .iter()
        .filter(|v| v["names"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains(text)))
        .collect()
}

/// The registry's manifest digest of busybox for each `os/arch[/variant]`.
fn busybox_children(reg: &crate::util::Registry) -> std::collections::HashMap<String, String> {
    let (status, body) = api::get(reg, "GET", "library/busybox/manifests/latest");
    assert_eq!(status, 200);
    let index: Value = serde_json::from_slice(&body).unwrap();
    let mut out = std::collections::HashMap::new();
    for m in index["manifests"].as_array().expect("busybox is an index") {
        let p = &m["platform"];
        let mut name = format!("{}/{}", p["os"].as_str().unwrap(), p["architecture"].as_str().unwrap());
        if let Some(v) = p["variant"].as_str().filter(|v| !v.is_empty() && *v != "v8") {
            name.push('/');
            name.push_str(v);
        }
        out.insert(name, m["digest"].as_str().unwrap().to_string());
    }
    out
}

#[test]
fn json_plan_of_six_platforms_shares_the_build_stage() {
    let Some((env, reg)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", CROSS), ("main.txt", "main\n")]);
    let out = env.ok(&["debug", "plan", "--platform", SIX, s(&ctx)]);
    let plan: Value = serde_json::from_str(&out).expect("plan JSON");
    let six: Vec<&str> = SIX.split(',').collect();
    // The build stage's platform-independent steps: once, serving all six.
    for text in ["WORKDIR /src", "COPY main.txt", "RUN cat main.txt"] {
        let v = named(&plan, text);
        assert_eq!(v.len(), 1, "{text}: {v:?}");
        let served: Vec<&str> = v[0]["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(served, six, "{text}: {}", v[0]);
        assert_eq!(v[0]["built_for"], serde_json::json!(["linux/amd64"]), "{text} runs on the build platform");
    }
    assert_eq!(named(&plan, "load build context").len(), 1);
    // The step that reads $TARGETARCH, the base and the copy: one per platform.
    for text in ["RUN echo", "COPY --from=build"] {
        let v = named(&plan, text);
        assert_eq!(v.len(), 6, "{text}");
        let mut served: Vec<&str> = v.iter().map(|v| v["platforms"][0].as_str().unwrap()).collect();
        served.sort();
        let mut want = six.clone();
        want.sort();
        assert_eq!(served, want, "{text}");
    }
    let arm = named(&plan, "RUN echo \"arm64\"");
    assert_eq!(arm.len(), 1, "the TARGETARCH of each platform is expanded in its step's name");
    assert_eq!(arm[0]["type"], "exec");
    assert!(arm[0]["op"]["exec"]["env"].as_array().unwrap().contains(&Value::from("TARGETARCH=arm64")));
    // Images are pinned to the registry's manifest of each platform.
    let children = busybox_children(reg);
    let images: Vec<&Value> =
        plan["vertices"].as_array().unwrap().iter().filter(|v| v["type"] == "source.image").collect();
    assert_eq!(images.len(), 6, "busybox once per target; the build stage's is linux/amd64's");
    for v in &images {
        let platform = v["built_for"][0].as_str().unwrap();
        let resolved = v["op"]["source"]["image"]["resolved"].as_str().unwrap();
        assert_eq!(Some(&resolved.to_string()), children.get(platform), "{platform}");
        assert_eq!(v["op"]["source"]["image"]["reference"], "docker.io/library/busybox:latest");
    }
    assert_eq!(plan["targets"].as_array().unwrap().len(), 6);
    let images = plan["images"].as_array().unwrap();
    assert_eq!(images.len(), 6);
    for img in images {
        let c = &img["config"];
        assert_eq!(c["config"]["Cmd"], serde_json::json!(["cat", "/out"]), "{img}");
        let env: Vec<&str> = c["config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert!(env.iter().any(|e| e.starts_with("PATH=")), "the base image's ENV: {env:?}");
        let p = img["platform"].as_str().unwrap();
        assert!(p.contains(c["architecture"].as_str().unwrap()), "{p}: {c}");
    }
}

#[test]
fn dot_plan_draws_every_vertex_and_edge() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", CROSS), ("main.txt", "main\n")]);
    let out = env.ok(&["debug", "plan", "--format", "dot", "--platform", "linux/amd64,linux/arm64", s(&ctx)]);
    assert!(out.starts_with("digraph polyarch {") && out.trim_end().ends_with('}'), "{out}");
    let nodes = out.lines().filter(|l| l.trim_start().starts_with('v') && l.contains("[label=")).count();
    let json: Value =
        serde_json::from_str(&env.ok(&["debug", "plan", "--platform", "linux/amd64,linux/arm64", s(&ctx)])).unwrap();
    assert_eq!(nodes, json["vertices"].as_array().unwrap().len(), "{out}");
    assert!(out.contains("serves 2: linux/amd64, linux/arm64"), "{out}");
    assert!(out.contains(" -> t0;") && out.contains(" -> t1;"), "{out}");
    let edges: usize = json["vertices"].as_array().unwrap().iter().map(|v| v["inputs"].as_array().unwrap().len()).sum();
    assert_eq!(out.lines().filter(|l| l.contains(" -> v")).count(), edges, "{out}");
}

#[test]
fn an_unknown_stage_fails_with_its_line() {
    let env = Env::new();
    let df = "FROM busybox\nRUN true\nCOPY --from=7 /x /y\n";
    let ctx = context(&env, "bad", &[("Dockerfile", df)]);
    let err = env.fails(&["debug", "plan", s(&ctx)]);
    assert!(err.contains("Dockerfile:3:1: invalid stage index 7"), "{err}");
    assert!(err.contains("   3 | COPY --from=7 /x /y"), "the line is shown: {err}");
    let err = env.fails(&["debug", "plan", "--target", "nope", s(&ctx)]);
    assert!(err.contains("target stage \"nope\" could not be found"), "{err}");
    let ctx = context(&env, "flag", &[("Dockerfile", "FROM scratch\n\nRUN --mount=type=bind,src=a true\n")]);
    let err = env.fails(&["debug", "plan", s(&ctx)]);
    assert!(err.contains("Dockerfile:3:") && err.contains("mount type bind requires a target"), "{err}");
}

#[test]
fn an_image_neither_place_has_fails_at_its_from_line() {
    let env = Env::new();
    let df = "FROM scratch AS a\nCOPY x /x\n\nFROM 127.0.0.1:1/none/base:1\nCOPY --from=a /x /x\n";
    let ctx = context(&env, "none", &[("Dockerfile", df), ("x", "x")]);
    let err = env.fails(&["debug", "plan", "--platform", "linux/arm64", s(&ctx)]);
    assert!(err.contains("Dockerfile:4:6: failed to resolve source metadata for 127.0.0.1:1/none/base:1"), "{err}");
    assert!(err.contains("not in the local store"), "the store was asked first: {err}");
    assert_eq!(err.matches("not in the local store").count(), 1, "the reason is told once: {err}");
}

#[test]
fn stdin_dockerfile_target_and_build_args() {
    use std::io::Write as _;
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("x", "x"), (".dockerignore", "secret.txt\n")]);
    let df = "ARG V=1\nFROM scratch AS a\nARG V\nWORKDIR /w-$V\nCOPY x .\nFROM scratch AS b\nCOPY x /b\n";
    let mut child = env
        .cmd(&["debug", "plan", "-f", "-", "--target", "a", "--build-arg", "V=2", "--label", "k=v", s(&ctx)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(df.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vertices = plan["vertices"].as_array().unwrap();
    let types: Vec<&str> = vertices.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["mkdir", "source.context", "copy"], "stage b is not planned: {plan}");
    assert_eq!(vertices[0]["op"]["mkdir"]["path"], "/w-2");
    assert_eq!(vertices[1]["op"]["source"]["context"]["exclude"], serde_json::json!(["secret.txt"]));
    assert_eq!(vertices[2]["op"]["copy"]["dest_path"], "/w-2/");
    assert_eq!(vertices[2]["names"], serde_json::json!(["[a 2/2] COPY x ."]));
    let config = &plan["images"][0]["config"]["config"];
    assert_eq!((&config["WorkingDir"], &config["Labels"]["k"]), (&Value::from("/w-2"), &Value::from("v")));
}

/// A plan resolves base images as BuildKit's "load metadata" does: the
/// index, the platform's manifest and its config, and no layer. A build
/// afterwards fetches the layers it needs.
#[test]
fn a_plan_fetches_no_layer() {
    let Some((env, reg)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "f\n")]);
    env.ok(&["debug", "plan", "--platform", "linux/amd64,linux/arm64", s(&ctx)]);
    let blob = |d: &str| env.root().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let children = busybox_children(reg);
    let mut layers = Vec::new();
    for p in ["linux/amd64", "linux/arm64"] {
        let (status, body) = api::get(reg, "GET", &format!("library/busybox/manifests/{}", children[p]));
        assert_eq!(status, 200);
        let m: Value = serde_json::from_slice(&body).unwrap();
        let config = m["config"]["digest"].as_str().unwrap();
        assert!(blob(config).exists(), "{p}: the config {config} was read");
        for l in m["layers"].as_array().unwrap() {
            let d = l["digest"].as_str().unwrap().to_string();
            assert!(!blob(&d).exists(), "{p}: layer {d} was fetched by the plan");
            layers.push(d);
        }
    }
    assert!(!layers.is_empty());
    env.ok(&["build", "--platform", "linux/amd64,linux/arm64", "-t", "planned:1", s(&ctx)]);
    for d in &layers {
        assert!(blob(d).exists(), "the build fetched layer {d}");
    }
}

/// The build runs what the plan shares once and names its steps as the
/// plan does: a COPY onto the empty tree of a `FROM scratch` stage is one
/// vertex for every platform, and executes once; the cross stage's steps
/// carry BuildKit's `linux/amd64->ARCH` label in both.
#[test]
fn the_build_runs_shared_file_steps_once_and_names_steps_as_the_plan() {
    let Some((env, reg)) = mirrored() else { return };
    let three = "linux/amd64,linux/arm64,linux/s390x";
    let dockerfile = "FROM scratch AS files\nCOPY main.txt /main.txt\n\
                      FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETARCH\n\
                      RUN echo \"$TARGETARCH\" > /arch\n\
                      FROM busybox\nCOPY --from=files /main.txt /main.txt\nCOPY --from=build /arch /arch\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile), ("main.txt", "main\n")]);
    let plan: Value =
        serde_json::from_str(&env.ok(&["debug", "plan", "--platform", three, s(&ctx)])).expect("plan JSON");
    let shared = named(&plan, "COPY main.txt /main.txt");
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(shared[0]["platforms"].as_array().unwrap().len(), 3, "{}", shared[0]);
    let (_, stderr) = crate::util::build_ok(&env, &["--platform", three, s(&ctx)]);
    // Executed: the shared COPY once; per platform the RUN and the two
    // final COPYs. The two other platforms take the shared COPY's result.
    assert_eq!(crate::util::counts(&stderr), (1 + 3 * 3, 2), "{stderr}");
    let shown: Vec<&str> =
        stderr.lines().filter_map(|l| l.strip_prefix('#')?.split_once(' ').map(|(_, n)| n)).collect();
    for arch in ["arm64", "s390x"] {
        let name = format!("[linux/amd64->{arch} build 2/2] RUN echo \"{arch}\" > /arch");
        assert_eq!(named(&plan, &name).len(), 1, "the plan names it {name}");
        assert!(shown.contains(&name.as_str()), "the build names it {name}:\n{stderr}");
    }
    let from = named(&plan, "[linux/arm64 stage-2 1/3] FROM docker.io/library/busybox:latest@sha256:");
    let from_name = from[0]["names"][0].as_str().unwrap();
    assert!(shown.contains(&from_name), "the build names its FROM {from_name}:\n{stderr}");
    // As BuildKit: by the digest the tag resolved to, the index's, the
    // same for every platform.
    let index = crate::util::skopeo_raw(&format!("{}/library/busybox:latest", reg.host));
    let index = polyarch_oci::Digest::sha256(&index);
    for p in ["linux/amd64", "linux/arm64", "linux/s390x"] {
        let name = format!("[{p} stage-2 1/3] FROM docker.io/library/busybox:latest@{index}");
        assert!(shown.contains(&name.as_str()), "the build names it {name}:\n{stderr}");
        assert_eq!(named(&plan, &name).len(), 1, "the plan names it {name}");
    }
}

/// The plan's image config is the one the build writes: the same config
/// fields and the same history texts (COPY without `--from`, RUN with its
/// ARGs once, HEALTHCHECK as Go's `%q`). A file-system step that changes
/// nothing (`RUN true`, a WORKDIR that exists) has a layer all the same,
/// BuildKit's empty one, so the plan's history is the build's.
#[test]
fn the_plans_image_config_is_the_builds() {
    let Some((env, _reg)) = mirrored() else { return };
    if !crate::util::require(crate::util::have("skopeo"), "skopeo") {
        return;
    }
    let df = "ARG BASE=busybox\nFROM $BASE AS src\nARG V=1\nARG W\nARG V=2\nRUN echo \"$V\" > /v\n\
              FROM busybox\nARG APP=/app\nENV APP=$APP PATH=/opt/bin:$PATH\nWORKDIR $APP\n\
              RUN true\nWORKDIR /tmp\nWORKDIR /\nWORKDIR $APP\nCOPY --from=src --chown=1:2 /v ./v\nCOPY --chmod=0640 main.txt <<EOT ./\nhello\nEOT\n\
              LABEL a=1 \"b c\"=\"d e\"\nEXPOSE 80 53/udp\nVOLUME /data\nUSER 1000\nSTOPSIGNAL SIGTERM\n\
              HEALTHCHECK --interval=5s CMD true\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD echo $APP\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df), ("main.txt", "main\n")]);
    let plan: Value = serde_json::from_str(&env.ok(&["debug", "plan", s(&ctx)])).expect("plan JSON");
    let planned = &plan["images"][0]["config"];
    let oci = env.dir.path().join("out.tar");
    crate::util::build_ok(&env, &["-o", &format!("type=oci,dest={}", oci.display()), s(&ctx)]);
    let built = crate::util::image::raw_config(&oci);
    assert_eq!(planned["config"], built["config"], "config fields");
    let texts = |c: &Value| -> Vec<(String, bool)> {
        c["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["created_by"].as_str().unwrap().to_string(), h["empty_layer"].as_bool().unwrap_or(false)))
            .collect()
    };
    assert_eq!(texts(planned), texts(&built), "history");
    let built_texts = texts(&built);
    let has = |t: &str| built_texts.iter().any(|(x, _)| x == t);
    assert!(has("COPY --chown=1:2 /v ./v # buildkit"), "{built_texts:?}");
    assert!(has("COPY --chmod=0640 main.txt <<EOT ./ # buildkit"), "{built_texts:?}");
    assert!(has(r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x00'}"#), "{built_texts:?}");
    // RUN true, WORKDIR /tmp and the second WORKDIR $APP: BuildKit's empty
    // layer (an empty tar); WORKDIR / has none.
    let empty_tar = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    let diff_ids = built["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.iter().filter(|d| *d == empty_tar).count(), 3, "{diff_ids:?}");
    assert_eq!(diff_ids.len(), built_texts.iter().filter(|(_, empty)| !empty).count(), "one layer per entry");
    assert!(built_texts.contains(&("WORKDIR /".to_string(), true)), "{built_texts:?}");
    let layers = crate::util::image::manifest_of(&oci)["layers"].clone();
    let empty = layers.as_array().unwrap().iter().filter(|l| l["size"] == 32).collect::<Vec<_>>();
    assert_eq!(empty.len(), 3, "{layers}");
    for l in empty {
        assert_eq!(l["digest"], "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1", "{l}");
    }
}

/// The RUN flags of `build` shape the plan's exec ops as they shape the
/// build's: extra hosts, resource limits, /dev/shm size, cgroup parent.
#[test]
fn run_flags_shape_the_exec_ops() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nRUN true\n")]);
    let args = ["--add-host", "db:127.0.0.2", "--ulimit", "nofile=512:1024", "--shm-size", "128m"];
    let mut argv = vec!["debug", "plan", "--cgroup-parent", "/polyarch-test"];
    argv.extend(args);
    argv.push(s(&ctx));
    let plan: Value = serde_json::from_str(&env.ok(&argv)).expect("plan JSON");
    let exec = plan["vertices"].as_array().unwrap().iter().find(|v| v["type"] == "exec").expect("an exec");
    let op = &exec["op"]["exec"];
    assert_eq!(op["extra_hosts"], serde_json::json!({"db": "127.0.0.2"}), "{op}");
    assert_eq!(op["ulimits"], serde_json::json!([{"name": "nofile", "soft": 512, "hard": 1024}]), "{op}");
    assert_eq!(op["shm_size"], 128 * 1024 * 1024, "{op}");
    assert_eq!(op["cgroup_parent"], "/polyarch-test", "{op}");
    assert_eq!(op["hostname"], "", "the default host name is the executor's: {op}");
    let named = env.ok(&["debug", "plan", "--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=box", s(&ctx)]);
    let plan: Value = serde_json::from_str(&named).expect("plan JSON");
    let exec = plan["vertices"].as_array().unwrap().iter().find(|v| v["type"] == "exec").expect("an exec");
    assert_eq!(exec["op"]["exec"]["hostname"], "box", "{exec}");
    let err = env.fails(&["debug", "plan", "--ulimit", "bogus", s(&ctx)]);
    assert!(err.contains("--ulimit: invalid ulimit argument: bogus"), "{err}");
}

/// Named contexts shape the plan as they shape the build: one named like a
/// stage replaces it (its steps are gone), one named like an image stands
/// for it wherever the Dockerfile reads it, and a directory is a context
/// source of its own.
#[test]
fn named_contexts_replace_stages_images_and_sources() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM busybox AS replaced\nRUN echo never\nFROM golang AS app\nCOPY --from=tools /t /t\n\
              COPY --from=replaced /bin/busybox /bb\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let tools = context(&env, "tools", &[("t", "tool\n")]);
    let tools_arg = format!("tools={}", s(&tools));
    let args = [
        "debug",
        "plan",
        "--build-context",
        "replaced=docker-image://busybox",
        "--build-context",
        "golang=docker-image://busybox:latest",
        "--build-context",
        &tools_arg,
        s(&ctx),
    ];
    // golang is not in the registry: only its context's image is resolved.
    let plan: Value = serde_json::from_str(&env.ok(&args)).expect("plan JSON");
    assert!(named(&plan, "echo never").is_empty(), "the replaced stage's steps are gone: {plan}");
    // A named context's vertex is named as BuildKit names it; the stage's
    // steps count it as their first.
    let from = named(&plan, "[context golang] busybox:latest");
    assert_eq!(from.len(), 1, "{plan}");
    assert!(from[0]["op"]["source"]["image"]["resolved"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{plan}");
    assert_eq!(named(&plan, "[app 2/3] COPY --from=tools /t /t").len(), 1, "{plan}");
    assert_eq!(named(&plan, "[context tools] load from client").len(), 1, "{plan}");
    let sources: Vec<&Value> =
        plan["vertices"].as_array().unwrap().iter().filter(|v| v["type"] == "source.context").collect();
    assert!(sources.iter().any(|v| v["op"]["source"]["context"]["name"] == "tools"), "{sources:?}");
    let not_layout = format!("tools=oci-layout://{}", s(&tools));
    let mut args = args.to_vec();
    args[7] = &not_layout;
    let err = env.fails(&args);
    assert!(err.contains("not an OCI layout directory"), "{err}");
}

#[test]
fn an_oci_layout_context_is_planned_as_the_build_names_it() {
    let Some((env, _reg)) = mirrored() else { return };
    // An OCI layout of two platforms, tagged v1, made with no emulation.
    let src = context(&env, "src", &[("Dockerfile", "FROM busybox\nCOPY t /t\n"), ("t", "tool\n")]);
    let dir = env.dir.path().join("layout");
    let out = format!("type=oci,dest={},tar=false", s(&dir));
    env.ok(&["build", "-q", "-t", "lay:v1", "--platform", "linux/amd64,linux/arm64", "-o", &out, s(&src)]);
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM base\nCOPY --from=base /t /t2\n")]);
    let base = format!("base=oci-layout://{}:v1", s(&dir));
    let args = ["debug", "plan", "--build-context", &base, "--platform", "linux/amd64,linux/arm64", s(&ctx)];
    let plan: Value = serde_json::from_str(&env.ok(&args)).expect("plan JSON");
    // Each platform's manifest of the layout's index is the stage's base.
    let json = |p: std::path::PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let index = json(dir.join("index.json"));
    let top = index["manifests"][0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let children = json(dir.join("blobs/sha256").join(&top));
    for m in children["manifests"].as_array().unwrap() {
        let arch = m["platform"]["architecture"].as_str().unwrap();
        let digest = m["digest"].as_str().unwrap();
        let from: Vec<&Value> = named(&plan, "[context base] OCI load from client")
            .into_iter()
            .filter(|v| v["op"]["source"]["image"]["resolved"] == digest)
            .collect();
        assert_eq!(from.len(), 1, "{arch}: {plan}");
        assert_eq!(from[0]["op"]["source"]["image"]["reference"], "docker.io/oci-layout/context", "{plan}");
        assert_eq!(named(&plan, &format!("[linux/{arch} stage-0 2/2] COPY --from=base /t /t2")).len(), 1, "{plan}");
    }
    // The build names the same steps.
    let build = env.run(&[
        "build",
        "--progress",
        "plain",
        "--build-context",
        &base,
        "--platform",
        "linux/amd64,linux/arm64",
        s(&ctx),
    ]);
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{stderr}");
    for v in plan["vertices"].as_array().unwrap() {
        let name = v["names"][0].as_str().unwrap();
        assert!(stderr.contains(name), "{name} not in the build's output:\n{stderr}");
    }
    // A tag the layout lacks is an error naming the context.
    let missing = format!("base=oci-layout://{}:v2", s(&dir));
    let err = env.fails(&["debug", "plan", "--build-context", &missing, s(&ctx)]);
    assert!(err.contains(&format!("oci-layout://{}:v2: no such image in the layout", s(&dir))), "{err}");
}

/// A build's progress names its steps by the plan's vertex digests: in
/// `--progress rawjson`, every vertex of the plan (a shared one once) is a
/// vertex of the stream with the plan's digest and inputs (in the order
/// the build reads them), whatever the
/// context's `.dockerignore` and named contexts; steps the plan has no
/// vertex for (loading metadata, exporting) keep digests of their own.
#[test]
fn build_progress_carries_the_plans_vertex_digests() {
    let Some((env, _reg)) = mirrored() else { return };
    let two = "linux/amd64,linux/arm64";
    let dockerfile = "FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETARCH\n\
                      RUN echo \"$TARGETARCH\" > /arch\nCOPY main.txt /main.txt\n\
                      FROM busybox\nCOPY --from=build /arch /arch\nCOPY --from=docs / /docs\nWORKDIR /app\n";
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", dockerfile), ("main.txt", "main\n"), (".dockerignore", "*.log\n"), ("x.log", "x\n")],
    );
    let docs = context(&env, "docs", &[("readme", "docs\n")]);
    let docs_arg = format!("docs={}", docs.display());
    let args = ["--platform", two, "--build-context", &docs_arg];
    let plan: Value = serde_json::from_str(&env.ok(&[&["debug", "plan"][..], &args, &[s(&ctx)]].concat())).unwrap();
    let out = env.run(&[&["build", "--progress", "rawjson"][..], &args, &[s(&ctx)]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    // Every vertex record of the stream: digest → (names, inputs).
    let mut shown: std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> = Default::default();
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap();
        for x in v["vertexes"].as_array().into_iter().flatten() {
            let e = shown.entry(x["digest"].as_str().unwrap().to_string()).or_default();
            if let Some(n) = x["name"].as_str().filter(|n| !e.0.iter().any(|m| m == n)) {
                e.0.push(n.to_string());
            }
            if let Some(i) = x["inputs"].as_array() {
                e.1 = i.iter().map(|d| d.as_str().unwrap().to_string()).collect();
            }
        }
    }
    let vertices = plan["vertices"].as_array().unwrap();
    let digest_of = |i: &Value| vertices[i.as_u64().unwrap() as usize]["digest"].as_str().unwrap().to_string();
    for v in vertices {
        let d = v["digest"].as_str().unwrap();
        let names: Vec<String> = v["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().into()).collect();
        let (shown_names, inputs) =
            shown.get(d).unwrap_or_else(|| panic!("plan vertex {d} {names:?} not shown:\n{stderr}"));
        for n in shown_names {
            assert!(names.contains(n), "{n} shown as plan vertex {d} {names:?}");
        }
        let mut planned: Vec<String> = v["inputs"].as_array().unwrap().iter().map(digest_of).collect();
        let mut inputs = inputs.clone();
        planned.sort();
        inputs.sort();
        assert_eq!(inputs, planned, "inputs of {names:?}");
    }
    let planned: Vec<&str> = vertices.iter().map(|v| v["digest"].as_str().unwrap()).collect();
    for (d, (names, inputs)) in &shown {
        for i in inputs {
            assert!(shown.contains_key(i), "input {i} of {names:?} is no vertex of the stream");
        }
        if !planned.contains(&d.as_str()) {
            assert!(
                names.iter().all(|n| n.contains("load metadata for")
                    || n.starts_with("exporting")
                    || n.contains("load build definition")),
                "{names:?} ({d}) is a step of the plan but not shown with its digest"
            );
        }
    }
    assert!(named(&plan, "[internal] load build context").len() == 1 && named(&plan, "[context docs]").len() == 1);
}
