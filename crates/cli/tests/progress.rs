//! `--progress rawjson` read as tools read buildx's: BuildKit's
//! `client.SolveStatus` objects, one per line, for a build of two
//! platforms; and the scheduler's slots seen through it: with one native
//! slot, a native RUN step runs and finishes while an emulated one of
//! another platform still runs. These need root, runc, the registry
//! fixture and an aarch64 binfmt_misc handler; under `CI=true` a missing
//! one fails.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::foreign::aarch64_handler;
use crate::util::{build_ok, context, mirrored, mirrored_for_run, s, Env};

/// What the stream said of one vertex, its updates merged.
#[derive(Debug, Default, Clone)]
struct Seen {
    name: String,
    inputs: Vec<String>,
    started: Option<String>,
    completed: Option<String>,
    cached: bool,
    error: Option<String>,
}

/// A log record: vertex digest, stream, decoded data.
type Log = (String, u64, String);

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// RFC 3339 in UTC as Go writes `time.Time` (`RFC3339Nano`).
fn is_time(t: &str) -> bool {
    let b = t.as_bytes();
    let fixed = b.len() >= 20
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && t.ends_with('Z');
    let frac = &t[19..t.len() - 1];
    fixed && (frac.is_empty() || (frac.starts_with('.') && (2..=10).contains(&frac.len())))
}

/// A time as (seconds part, nanoseconds), which order as the times do.
fn when(t: &Option<String>) -> (String, u32) {
    let t = t.as_deref().unwrap_or_default();
    let frac = t.get(19..t.len().saturating_sub(1)).unwrap_or_default().trim_start_matches('.');
    (t.get(..19).unwrap_or_default().to_string(), format!("{frac:0<9}").parse().unwrap_or(0))
}

/// Parses a rawjson stream: every line one SolveStatus with only its
/// fields; returns the vertices by digest and the logs.
fn solve_status(stderr: &str) -> (BTreeMap<String, Seen>, Vec<Log>) {
    let mut vertices: BTreeMap<String, Seen> = BTreeMap::new();
    let mut logs = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{stderr}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        for k in obj.keys() {
            assert!(["vertexes", "statuses", "logs", "warnings"].contains(&k.as_str()), "field {k} in {line}");
        }
        for x in v["vertexes"].as_array().into_iter().flatten() {
            let digest = x["digest"].as_str().unwrap_or_default().to_string();
            assert!(is_digest(&digest), "vertex digest {digest:?} in {line}");
            let seen = vertices.entry(digest).or_default();
            if let Some(n) = x["name"].as_str() {
                seen.name = n.to_string();
            }
            for (field, slot) in [("started", &mut seen.started), ("completed", &mut seen.completed)] {
                if let Some(t) = x[field].as_str() {
                    assert!(is_time(t), "{field} {t:?} in {line}");
                    *slot = Some(t.to_string());
                }
            }
            if let Some(i) = x["inputs"].as_array() {
                seen.inputs = i.iter().map(|d| d.as_str().unwrap_or_default().to_string()).collect();
            }
            seen.cached |= x["cached"] == true;
            seen.error = x["error"].as_str().map(String::from).or(seen.error.take());
        }
        for l in v["logs"].as_array().into_iter().flatten() {
            let vertex = l["vertex"].as_str().unwrap_or_default().to_string();
            assert!(is_time(l["timestamp"].as_str().unwrap_or_default()), "log timestamp in {line}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(l["data"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("log data is not base64 ({e}): {line}"));
            logs.push((vertex, l["stream"].as_u64().unwrap_or(0), String::from_utf8(data).unwrap()));
        }
    }
    (vertices, logs)
}

/// The vertex whose name starts with `prefix`.
fn named<'a>(vertices: &'a BTreeMap<String, Seen>, prefix: &str) -> (&'a String, &'a Seen) {
    vertices
        .iter()
        .find(|(_, v)| v.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no vertex {prefix:?} in {vertices:#?}"))
}

#[test]
fn rawjson_of_a_two_platform_build_is_buildkits_solve_status() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    let dockerfile = "FROM busybox\nRUN echo out-$(uname -m) && echo err-$(uname -m) >&2\nCOPY f /f\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile), ("f", "f\n")]);
    let args = ["build", "--progress", "rawjson", "--platform", "linux/amd64,linux/arm64", "-t", "raw:1", s(&ctx)];
    let out = env.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let (vertices, logs) = solve_status(&stderr);
    for (d, v) in &vertices {
        assert!(!v.name.is_empty(), "vertex {d} has no name: {v:?}");
        assert!(v.started.is_some() && v.completed.is_some(), "vertex {d} did not start and complete: {v:?}");
        assert!(v.started <= v.completed, "{v:?}");
        assert!(v.error.is_none(), "{v:?}");
        for i in &v.inputs {
            assert!(vertices.contains_key(i), "input {i} of {} is no vertex of the stream", v.name);
        }
    }
    for p in ["linux/amd64", "linux/arm64"] {
        let (_, from) = named(&vertices, &format!("[{p} 1/3] FROM"));
        let (digest, run) = named(&vertices, &format!("[{p} 2/3] RUN echo out-$(uname -m)"));
        assert!(run.inputs.contains(named(&vertices, &format!("[{p} 1/3] FROM")).0), "{run:?} {from:?}");
        let machine = if p == "linux/amd64" { "x86_64" } else { "aarch64" };
        let mine: Vec<&Log> = logs.iter().filter(|l| &l.0 == digest).collect();
        assert!(mine.iter().any(|l| l.1 == 1 && l.2 == format!("out-{machine}\n")), "stdout of {p}: {mine:?}");
        assert!(mine.iter().any(|l| l.1 == 2 && l.2 == format!("err-{machine}\n")), "stderr of {p}: {mine:?}");
        named(&vertices, &format!("[{p} 3/3] COPY f /f"));
        named(&vertices, &format!("[{p} internal] load metadata for docker.io/library/busybox:latest"));
    }
    named(&vertices, "[internal] load build definition from Dockerfile");
    named(&vertices, "exporting to image");

    // Again: the same digests, every step cached.
    let again = env.run(&args);
    let stderr = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success(), "{stderr}");
    let (cached, _) = solve_status(&stderr);
    for p in ["linux/amd64", "linux/arm64"] {
        let (d, v) = named(&cached, &format!("[{p} 2/3] RUN"));
        assert!(v.cached, "{v:?}");
        assert!(vertices.contains_key(d), "the digest of {} is stable", v.name);
    }
}

#[test]
fn an_emulated_run_does_not_hold_the_native_slot() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipping: the native platform of this test is linux/amd64");
        return;
    }
    // The arm64 step runs under QEMU for 8 s; the amd64 one waits 2 s so
    // that both are running at once.
    let dockerfile = "FROM busybox\nARG TARGETARCH\nRUN if [ $TARGETARCH = arm64 ]; then sleep 8; else sleep 2; fi\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let args = ["build", "--progress", "rawjson", "--jobs", "1", "--platform", "linux/arm64,linux/amd64", s(&ctx)];
    let out = env.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let (vertices, _) = solve_status(&stderr);
    let (_, arm) = named(&vertices, "[linux/arm64 2/2] RUN");
    let (_, amd) = named(&vertices, "[linux/amd64 2/2] RUN");
    let (arm_start, arm_end) = (when(&arm.started), when(&arm.completed));
    let (amd_start, amd_end) = (when(&amd.started), when(&amd.completed));
    assert!(amd_start < arm_end && amd_end < arm_end, "the amd64 RUN ran while the arm64 one did: {arm:?} {amd:?}");
    assert!(arm_start < amd_end, "both RUN steps were running at once: {arm:?} {amd:?}");
}

#[test]
fn none_prints_only_errors_and_buildkit_progress_sets_the_default() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "f\n")]);
    let out = env.run(&["build", "--progress", "none", "-t", "none:1", s(&ctx)]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!((text(&out.stdout), text(&out.stderr)), (String::new(), String::new()));

    let out = env.cmd(&["build", "-t", "none:1", s(&ctx)]).env("BUILDKIT_PROGRESS", "rawjson").output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (vertices, _) = solve_status(&stderr);
    assert!(named(&vertices, "[2/2] COPY f /f").1.cached, "{vertices:?}");

    let out = env.cmd(&["build", "--progress", "plain", s(&ctx)]).env("BUILDKIT_PROGRESS", "none").output().unwrap();
    assert!(text(&out.stderr).contains("#1 [internal] load build definition from Dockerfile"), "the flag wins");

    let out = env.cmd(&["build", "-q", s(&ctx)]).env("BUILDKIT_PROGRESS", "plain").output().unwrap();
    assert!(out.status.success(), "-q wins over the variable: {}", text(&out.stderr));
    assert!(text(&out.stdout).trim().starts_with("sha256:") && !text(&out.stderr).contains("#1 "));
    let out = env.cmd(&["build", s(&ctx)]).env("BUILDKIT_PROGRESS", "fancy").output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("BUILDKIT_PROGRESS=\"fancy\""));

    let bad = context(&env, "bad", &[("Dockerfile", "FROM busybox\nCOPY missing /m\n")]);
    let out = env.run(&["build", "--progress", "none", s(&bad)]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("missing") && !stderr.contains("#1 "), "only the error: {stderr}");
}

#[test]
fn steps_stopped_by_a_failing_platform_complete_as_cancelled() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    let dockerfile =
        "FROM busybox\nARG TARGETARCH\nRUN if [ $TARGETARCH = arm64 ]; then sleep 8; else sleep 3; exit 3; fi\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let out = env.run(&["build", "--progress", "rawjson", "--platform", "linux/amd64,linux/arm64", s(&ctx)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    let json: String = stderr.lines().filter(|l| l.starts_with('{')).map(|l| format!("{l}\n")).collect();
    let (vertices, _) = solve_status(&json);
    for (d, v) in &vertices {
        assert!(v.started.is_some() && v.completed.is_some(), "vertex {d} did not complete: {v:?}");
    }
    let (_, failed) = named(&vertices, "[linux/amd64 2/2] RUN");
    assert!(failed.error.as_deref().is_some_and(|e| e.contains("exit code: 3")), "{failed:?}");
    let (_, stopped) = named(&vertices, "[linux/arm64 2/2] RUN");
    assert_eq!(stopped.error.as_deref(), Some("context canceled"), "{stopped:?}");
}

/// The keys BuildKit's `client` types have (`client/graph.go`), by object.
const SOLVE_STATUS: [&str; 4] = ["vertexes", "statuses", "logs", "warnings"];
const VERTEX: [&str; 8] = ["digest", "inputs", "name", "started", "completed", "cached", "error", "progressGroup"];
const VERTEX_STATUS: [&str; 8] = ["id", "vertex", "name", "total", "current", "timestamp", "started", "completed"];
const VERTEX_LOG: [&str; 4] = ["vertex", "stream", "data", "timestamp"];
const VERTEX_WARNING: [&str; 7] = ["vertex", "level", "short", "detail", "url", "sourceInfo", "range"];

/// Asserts that `obj` has only keys of `known` and every one of `needed`.
fn keys_of(obj: &Value, known: &[&str], needed: &[&str], line: &str) {
    let map = obj.as_object().unwrap_or_else(|| panic!("not an object: {obj} in {line}"));
    for k in map.keys() {
        assert!(known.contains(&k.as_str()), "{k} is no key of BuildKit's ({known:?}) in {line}");
    }
    for k in needed {
        assert!(map.contains_key(*k), "{k} missing in {obj} ({line})");
    }
}

/// A status record: its id, vertex, total, current, started, completed.
#[derive(Debug, Clone)]
struct StatusSeen {
    id: String,
    vertex: String,
    total: u64,
    current: u64,
    started: Option<String>,
    completed: Option<String>,
}

/// Every object of a rawjson stream checked against BuildKit's keys; the
/// statuses in the order written.
fn statuses(stderr: &str) -> Vec<StatusSeen> {
    let mut out = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        keys_of(&v, &SOLVE_STATUS, &[], line);
        for x in v["vertexes"].as_array().into_iter().flatten() {
            keys_of(x, &VERTEX, &["digest", "name"], line);
        }
        for l in v["logs"].as_array().into_iter().flatten() {
            keys_of(l, &VERTEX_LOG, &["vertex", "data", "timestamp"], line);
        }
        for w in v["warnings"].as_array().into_iter().flatten() {
            keys_of(w, &VERTEX_WARNING, &[], line);
        }
        for x in v["statuses"].as_array().into_iter().flatten() {
            keys_of(x, &VERTEX_STATUS, &["id", "vertex", "current", "timestamp"], line);
            let time = |f: &str| x[f].as_str().map(String::from);
            for f in ["timestamp", "started", "completed"] {
                assert!(time(f).as_deref().is_none_or(is_time), "{f} in {line}");
            }
            out.push(StatusSeen {
                id: x["id"].as_str().unwrap().to_string(),
                vertex: x["vertex"].as_str().unwrap().to_string(),
                total: x["total"].as_u64().unwrap_or(0),
                current: x["current"].as_u64().unwrap(),
                started: time("started"),
                completed: time("completed"),
            });
        }
    }
    out
}

#[test]
fn rawjson_has_buildkits_keys_and_statuses_for_the_pull() {
    let Some((env, _)) = mirrored_for_run() else { return };
    if !aarch64_handler() {
        return;
    }
    // `as` in lower case: a check warning (FromAsCasing) in the stream.
    let dockerfile = "FROM busybox as base\nRUN echo hi-$(uname -m)\nCOPY f /f\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile), ("f", "f\n")]);
    let args = ["build", "--progress", "rawjson", "--platform", "linux/amd64,linux/arm64", "-t", "keys:1", s(&ctx)];
    let out = env.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let all = statuses(&stderr);
    let (vertices, logs) = solve_status(&stderr);
    for (d, v) in &vertices {
        assert!(v.started.is_some() && when(&v.started) <= when(&v.completed), "vertex {d}: {v:?}");
    }
    for st in &all {
        assert!(vertices.contains_key(&st.vertex), "status {st:?} of no vertex");
        if st.total > 0 {
            assert!(st.current <= st.total, "{st:?}");
        }
        if st.completed.is_some() {
            assert!(when(&st.started) <= when(&st.completed), "{st:?}");
        }
    }
    for p in ["linux/amd64", "linux/arm64"] {
        let (from, _) = named(&vertices, &format!("[{p} 1/3] FROM"));
        let mine: Vec<&StatusSeen> = all.iter().filter(|s| &s.vertex == from).collect();
        let blobs: Vec<&&StatusSeen> = mine.iter().filter(|s| is_digest(&s.id)).collect();
        assert!(!blobs.is_empty(), "{p}: no layer download status on the FROM step: {mine:?}");
        for b in &blobs {
            assert!(b.total > 0, "{b:?}");
        }
        for b in blobs.iter().filter(|b| b.completed.is_some()) {
            assert_eq!(b.current, b.total, "a completed download is whole: {b:?}");
        }
        for id in blobs.iter().map(|b| &b.id) {
            assert!(blobs.iter().any(|b| &b.id == id && b.completed.is_some()), "{id} never completed");
            let extracting = format!("extracting {id}");
            assert!(mine.iter().any(|s| s.id == extracting && s.completed.is_some()), "{p}: no {extracting}");
        }
        let (run, _) = named(&vertices, &format!("[{p} 2/3] RUN"));
        let machine = if p == "linux/amd64" { "x86_64" } else { "aarch64" };
        assert!(logs.iter().any(|l| &l.0 == run && l.2 == format!("hi-{machine}\n")), "{p}: {logs:?}");
        let (copy, _) = named(&vertices, &format!("[{p} 3/3] COPY f /f"));
        assert_eq!(vertices[copy].inputs, [run.clone(), named(&vertices, "[internal] load build context").0.clone()]);
        let meta = format!("[{p} internal] load metadata for docker.io/library/busybox:latest");
        assert_eq!(vertices.values().filter(|v| v.name == meta).count(), 1, "{meta}");
    }
    let (export, _) = named(&vertices, "exporting to image");
    let warnings: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| v["warnings"].as_array().cloned().unwrap_or_default())
        .collect();
    let [w] = warnings.as_slice() else { panic!("one warning: {warnings:?}") };
    assert_eq!(w["sourceInfo"]["filename"], "Dockerfile", "{w}");
    assert_eq!(w["range"][0]["start"]["line"], 1, "{w}");
    assert!(vertices.contains_key(w["vertex"].as_str().unwrap()), "{w}");
    let naming = |s: &StatusSeen| &s.vertex == export && s.id == "naming to docker.io/library/keys:1";
    assert!(all.iter().any(|s| naming(s) && s.completed.is_some()), "{all:?}");
}

#[test]
fn load_metadata_is_shown_once_per_image_and_platform() {
    let Some((env, _)) = mirrored() else { return };
    let host = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => {
            eprintln!("skipping: no busybox of the fixture for {other}");
            return;
        }
    };
    // The same image by another name, too.
    let dockerfile = "FROM --platform=$BUILDPLATFORM busybox AS build\nCOPY f /f\n\
                      FROM busybox\nCOPY --from=build /f /g\n\
                      COPY --from=docker.io/library/busybox:latest /bin/true /t\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile), ("f", "f\n")]);
    let out = env.run(&["build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", s(&ctx)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("load metadata for"))
        .map(|l| l.split_once(' ').map_or(l, |(_, name)| name))
        .collect();
    let mut want: Vec<String> = ["linux/amd64", "linux/arm64"]
        .iter()
        .map(|p| format!("[{p} internal] load metadata for docker.io/library/busybox:latest"))
        .collect();
    let mut got: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "one line per image and platform ({host} is the build stage's too):\n{stderr}");
}

#[test]
fn a_push_is_statuses_of_the_export_step() {
    let Some((env, reg)) = mirrored() else { return };
    // New content, so that the registry lacks the layer and the config.
    let unique = format!("{:?}\n", std::time::SystemTime::now());
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", &unique)]);
    let name = format!("{}/progress/pushed:1", reg.host);
    let platforms = "linux/amd64,linux/arm64";
    let out = env.run(&[
        "build",
        "--progress",
        "rawjson",
        "--platform",
        platforms,
        "-t",
        &name,
        "--push",
        "--insecure",
        s(&ctx),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let all = statuses(&stderr);
    let (vertices, _) = solve_status(&stderr);
    let (export, v) = named(&vertices, "exporting to image");
    let mine: Vec<&StatusSeen> = all.iter().filter(|s| &s.vertex == export).collect();
    let ended = |id: &str| mine.iter().find(|s| s.id == id && s.completed.is_some()).copied();
    let pushing = ended("pushing layers").unwrap_or_else(|| panic!("{mine:?}"));
    assert!(when(&v.started) <= when(&pushing.started) && when(&pushing.completed) <= when(&v.completed), "{v:?}");
    let uploads: Vec<&&StatusSeen> = mine.iter().filter(|s| is_digest(&s.id) && s.completed.is_some()).collect();
    assert!(uploads.len() >= 2, "the new layer and configs were pushed: {mine:?}");
    for u in uploads {
        assert!(u.total > 0 && u.current == u.total, "{u:?}");
        assert!(when(&pushing.started) <= when(&u.started) && when(&u.completed) <= when(&pushing.completed), "{u:?}");
    }
    ended(&format!("naming to {name}")).unwrap_or_else(|| panic!("{mine:?}"));
    let list = mine.iter().find(|s| s.id.starts_with("exporting manifest list sha256:"));
    let list = list.unwrap_or_else(|| panic!("{mine:?}"));
    assert!(list.completed.is_some() && when(&list.completed) <= when(&pushing.started), "{list:?}");
    let manifest = mine.iter().find(|s| s.id.starts_with(&format!("pushing manifest for {name}@sha256:")));
    let manifest = manifest.unwrap_or_else(|| panic!("{mine:?}"));
    assert!(when(&pushing.completed) <= when(&manifest.started), "manifests after the layers: {mine:?}");
    assert!(ended(&manifest.id).is_some(), "{mine:?}");
}

#[test]
fn a_failed_push_fails_the_export_step_and_ends_its_statuses() {
    let Some((env, _)) = mirrored() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "f\n")]);
    let out =
        env.run(&["build", "--progress", "rawjson", "-t", "127.0.0.1:1/none/app:1", "--push", "--insecure", s(&ctx)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    let json: String = stderr.lines().filter(|l| l.starts_with('{')).map(|l| format!("{l}\n")).collect();
    let (vertices, _) = solve_status(&json);
    for (d, v) in &vertices {
        assert!(v.started.is_some() && v.completed.is_some(), "vertex {d} did not complete: {v:?}");
    }
    let (export, v) = named(&vertices, "exporting to image");
    assert!(v.error.as_deref().is_some_and(|e| e.contains("127.0.0.1:1")), "the error names the registry: {v:?}");
    let all = statuses(&json);
    let pushing = all.iter().filter(|s| &s.vertex == export && s.id == "pushing layers");
    assert!(pushing.clone().any(|s| s.completed.is_some()), "{all:?}");
}

/// With one native slot, two RUN steps of independent stages run one after
/// the other, and the stream says so: the second starts when the first has
/// ended, not when it began to wait.
#[test]
fn with_one_job_run_steps_start_when_they_get_the_slot() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let dockerfile = "FROM busybox AS a\nRUN sleep 2 && echo a > /a\n\
                      FROM busybox AS b\nRUN sleep 2 && echo b > /b\n\
                      FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let out = env.run(&["build", "--progress", "rawjson", "--jobs", "1", s(&ctx)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let (vertices, _) = solve_status(&stderr);
    let (_, a) = named(&vertices, "[a 2/2] RUN");
    let (_, b) = named(&vertices, "[b 2/2] RUN");
    let (first, second) = if when(&a.started) <= when(&b.started) { (a, b) } else { (b, a) };
    assert!(when(&first.completed) <= when(&second.started), "the second RUN waited, not ran: {first:?} {second:?}");
}

#[test]
fn plain_shows_a_late_status_under_its_step_as_buildkit_does() {
    let Some((env, _)) = mirrored_for_run() else { return };
    // The base image's layers are read only when the RUN steps need them.
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN true\nRUN true\n")]);
    let out = env.run(&["build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", s(&ctx)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix('#') else { continue };
        let Some((id, text)) = rest.split_once(' ') else { continue };
        if !text.starts_with("extracting sha256:") {
            continue;
        }
        seen += 1;
        // The line before it is of the same step, and the step ends after it.
        let before = lines[..i].iter().rev().find(|b| b.starts_with('#')).unwrap();
        assert!(before.starts_with(&format!("#{id} ")), "{l:?} after {before:?}:\n{stderr}");
        let done = format!("#{id} DONE ");
        assert!(lines[i + 1..].iter().any(|a| a.starts_with(&done)), "{l:?} is not followed by {done:?}:\n{stderr}");
    }
    assert!(seen >= 2, "a base layer extracted per platform:\n{stderr}");
}

/// The export step is named after the exporter, as BuildKit names it.
#[test]
fn the_export_step_is_named_as_buildkits_exporters() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "f\n")]);
    let out = |o: &str| env.dir.path().join(o);
    for (spec, step, status) in [
        (format!("type=local,dest={}", s(&out("dir"))), "exporting to client directory", "copying files"),
        (format!("type=tar,dest={}", s(&out("fs.tar"))), "exporting to client tarball", "sending tarball"),
        (format!("type=oci,dest={}", s(&out("oci.tar"))), "exporting to oci image format", "exporting layers"),
        (format!("type=docker,dest={}", s(&out("d.tar"))), "exporting to docker image format", "exporting layers"),
    ] {
        let (_, err) = build_ok(&env, &["-o", &spec, s(&ctx)]);
        let line = err.lines().find(|l| l.contains(" exporting to ")).unwrap_or_else(|| panic!("{err}"));
        assert!(line.ends_with(step), "{spec}: {err}");
        assert!(err.contains(&format!(" {status} ")), "{spec}: {err}");
    }
    let (_, err) = build_ok(&env, &["-t", "named:1", s(&ctx)]);
    assert!(err.lines().any(|l| l.ends_with(" exporting to image")), "{err}");
}
