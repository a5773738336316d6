//! Dockerfile semantics as BuildKit's: variable scoping of ENV, LABEL and
//! ARG, stages based on stages (ARGs and ONBUILD triggers), WORKDIR as
//! stored, `COPY --from` stage indexes, ADD URL names, and build checks
//! (`--check`, `--call`, the warnings of a build, `# check=` directives).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::util::build_ok as build;
use crate::util::image::{raw_config, skopeo_config};
use crate::util::*;

/// Builds `df` into an OCI archive and returns its config.
fn config_of(env: &Env, df: &str, files: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec![("Dockerfile", df)];
    all.extend_from_slice(files);
    let ctx = context(env, "ctx", &all);
    let oci = env.dir.path().join("out.tar");
    build(env, &["-o", &format!("type=oci,dest={}", oci.display()), s(&ctx)]);
    skopeo_config(&oci)
}

fn env_of(cfg: &serde_json::Value) -> Vec<String> {
    cfg["config"]["Env"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[test]
fn env_and_label_pairs_expand_with_the_environment_before_the_instruction() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM busybox\nENV a=1\nENV a=10 d=$a\nARG p=2 q=$p\nLABEL a=$a d=$d q=$q\nLABEL m=5 n=${m:-unset}\n";
    let cfg = config_of(&env, df, &[]);
    let vars = env_of(&cfg);
    assert!(vars.contains(&"a=10".to_string()) && vars.contains(&"d=1".to_string()), "{vars:?}");
    let labels = &cfg["config"]["Labels"];
    assert_eq!(labels["a"], "10");
    assert_eq!(labels["d"], "1");
    // ARG pairs are sequential: the second sees the first.
    assert_eq!(labels["q"], "2");
    assert_eq!(labels["m"], "5");
    assert_eq!(labels["n"], "unset", "{labels}");
}

#[test]
fn a_stage_based_on_a_stage_inherits_its_args_and_runs_its_onbuild_triggers() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM busybox AS parent\nARG V=from-parent\nONBUILD LABEL trig=$V\nONBUILD ENV T=1\n\
              FROM parent AS child\nLABEL v=$V\nARG V\nLABEL again=$V\n";
    let cfg = config_of(&env, df, &[]);
    let labels = &cfg["config"]["Labels"];
    assert_eq!(labels["v"], "from-parent", "{cfg}");
    assert_eq!(labels["trig"], "from-parent", "{cfg}");
    // Declared again without a value, it keeps the value in scope.
    assert_eq!(labels["again"], "from-parent", "{cfg}");
    assert!(env_of(&cfg).contains(&"T=1".to_string()), "{cfg}");
    assert!(cfg["config"]["OnBuild"].is_null(), "triggers do not carry over: {}", cfg["config"]);
    // The parent itself does not run its own triggers.
    let cfg = config_of(&env, "FROM busybox AS parent\nONBUILD LABEL trig=1\n", &[]);
    assert!(cfg["config"]["Labels"]["trig"].is_null(), "{cfg}");
    let raw = raw_config(&env.dir.path().join("out.tar"));
    assert_eq!(raw["config"]["OnBuild"][0], "LABEL trig=1", "{raw}");
}

#[test]
fn run_in_a_child_stage_sees_the_parents_args() {
    let Some((env, _reg)) = mirrored_for_run() else { return };
    let df = "FROM busybox AS parent\nARG V=from-parent\nONBUILD RUN echo \"t=$V\" > /t.txt\n\
              FROM parent\nRUN echo \"v=$V\" > /v.txt\n";
    let ctx = context(&env, "run", &[("Dockerfile", df)]);
    let out = env.dir.path().join("local");
    let (_, stderr) = build(&env, &["-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    assert_eq!(std::fs::read_to_string(out.join("v.txt")).unwrap(), "v=from-parent\n");
    assert_eq!(std::fs::read_to_string(out.join("t.txt")).unwrap(), "t=from-parent\n");
    // The trigger's step is named as BuildKit names it.
    assert!(stderr.contains("[stage-1 1/2] ONBUILD RUN echo \"t=from-parent\" > /t.txt"), "{stderr}");
}

#[test]
fn workdir_is_stored_as_buildkit_stores_it() {
    let Some((env, _reg)) = mirrored() else { return };
    // An absolute WORKDIR is kept as written; a relative one joins the
    // previous one and is cleaned (Go's path.Join).
    let cfg = config_of(&env, "FROM busybox\nWORKDIR /a/b/./c/../d/\n", &[]);
    assert_eq!(cfg["config"]["WorkingDir"], "/a/b/./c/../d/");
    let cfg = config_of(&env, "FROM busybox\nWORKDIR /a/b/./c/../d/\nWORKDIR e/../f/\n", &[]);
    assert_eq!(cfg["config"]["WorkingDir"], "/a/b/d/f");
    let cfg = config_of(&env, "FROM busybox\nWORKDIR rel\n", &[]);
    assert_eq!(cfg["config"]["WorkingDir"], "/rel");
}

#[test]
fn copy_from_a_missing_stage_index_fails_with_its_line() {
    let Some((env, _reg)) = mirrored() else { return };
    let ctx = context(&env, "idx", &[("Dockerfile", "FROM busybox AS a\nFROM a\nCOPY --from=5 /x /y\n")]);
    let err = env.fails(&["build", "--progress", "plain", s(&ctx)]);
    assert!(err.contains("invalid stage index 5"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(!err.contains("library/5"), "no image pull: {err}");
    // An index of an existing stage copies from it.
    let df = "FROM busybox AS a\nFROM scratch\nCOPY --from=0 /bin/busybox /b\n";
    let ctx = context(&env, "idx0", &[("Dockerfile", df)]);
    let out = env.dir.path().join("l");
    build(&env, &["-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    assert!(out.join("b").exists());
}

/// Serves `body` for every request on 127.0.0.1 until the test ends.
fn http_server(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Disposition: attachment; filename=\"other.txt\"\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = c.write_all(resp.as_bytes());
        }
    });
    port
}

#[test]
fn add_of_a_url_is_named_by_the_last_segment_of_its_path() {
    let Some((env, _reg)) = mirrored() else { return };
    let port = http_server("served\n");
    let df = format!(
        "FROM scratch\nADD http://127.0.0.1:{port}/path/ /dir/\nADD http://127.0.0.1:{port}/a/file.txt?x=1 /dir/\n\
         ADD http://127.0.0.1:{port}/ /root/\n"
    );
    let ctx = context(&env, "url", &[("Dockerfile", &df)]);
    let out = env.dir.path().join("u");
    build(&env, &["-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    // Content-Disposition is not used: the frontend always names the file.
    assert_eq!(std::fs::read_to_string(out.join("dir/path")).unwrap(), "served\n");
    assert_eq!(std::fs::read_to_string(out.join("dir/file.txt")).unwrap(), "served\n");
    assert!(out.join("root/__unnamed__").exists());
    assert!(!out.join("dir/other.txt").exists());
}

/// Serves `body` on 127.0.0.1, counting the requests in the returned
/// counter.
fn counting_server(body: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = c.write_all(resp.as_bytes());
        }
    });
    (port, hits)
}

#[test]
fn an_add_of_a_url_downloads_once_for_every_platform() {
    let Some((env, _reg)) = mirrored() else { return };
    let (port, hits) = counting_server("fetched\n");
    let df = format!("FROM busybox\nADD http://127.0.0.1:{port}/f.txt /f.txt\n");
    let ctx = context(&env, "url", &[("Dockerfile", &df)]);
    let out = env.dir.path().join("u");
    let three = "linux/amd64,linux/arm64,linux/s390x";
    build(&env, &["--platform", three, "-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "one download for three platforms");
    for p in ["linux_amd64", "linux_arm64", "linux_s390x"] {
        assert_eq!(std::fs::read_to_string(out.join(p).join("f.txt")).unwrap(), "fetched\n", "{p}");
    }
    // Each build downloads again (the source is keyed by what it got).
    build(&env, &["--platform", three, s(&ctx)]);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

fn check(env: &Env, dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    full.push(s(dir));
    let out = env.run(&full);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn check_prints_warnings_with_excerpts_and_exits_1() {
    let env = Env::new();
    let ctx = context(&env, "chk", &[("Dockerfile", "FROM scratch as base\nMAINTAINER me\nCOPY a b\n")]);
    let (code, out) = check(&env, &ctx, &["--check"]);
    assert_eq!(code, Some(1), "{out}");
    let want = "Check complete, 2 warnings have been found!

WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/
'as' and 'FROM' keywords' casing do not match
Dockerfile:1
--------------------
   1 | >>> FROM scratch as base
   2 |     MAINTAINER me
   3 |     COPY a b
--------------------

WARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/
Maintainer instruction is deprecated in favor of using label
Dockerfile:2
--------------------
   1 |     FROM scratch as base
   2 | >>> MAINTAINER me
   3 |     COPY a b
   4 |     
--------------------
";
    assert_eq!(out, want);
    let (code2, out2) = check(&env, &ctx, &["--call=check"]);
    assert_eq!((code2, out2), (code, out));
    // Skipped rules, and the build argument that replaces the directive.
    let (code, out) = check(&env, &ctx, &["--check", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"]);
    assert_eq!((code, out.as_str()), (Some(0), "Check complete, no warnings found.\n"));
    let ok = context(
        &env,
        "ok",
        &[("Dockerfile", "# check=skip=FromAsCasing,MaintainerDeprecated\nFROM scratch as b\nMAINTAINER x\n")],
    );
    let (code, out) = check(&env, &ok, &["--check"]);
    assert_eq!((code, out.as_str()), (Some(0), "Check complete, no warnings found.\n"));
    // With --target only the stages it needs have their instructions checked.
    let two = context(&env, "two", &[("Dockerfile", "FROM scratch AS a\nCMD echo x\nFROM scratch AS b\nCMD echo y\n")]);
    let (code, out) = check(&env, &two, &["--check"]);
    assert_eq!(code, Some(1));
    assert!(out.starts_with("Check complete, 2 warnings have been found!\n"), "{out}");
    let (_, out) = check(&env, &two, &["--check", "--target", "a"]);
    assert!(out.starts_with("Check complete, 1 warning has been found!\n") && out.contains("Dockerfile:2\n"), "{out}");
    // The stages with their description comments, the last the default.
    let df = "# base The base stage\nFROM scratch AS base\n\n# other words\nFROM scratch AS release-build\n";
    let t = context(&env, "targets", &[("Dockerfile", df)]);
    let out = env.ok(&["build", "--call=targets", s(&t)]);
    assert_eq!(
        out,
        "TARGET                  DESCRIPTION\nbase                    The base stage\nrelease-build (default) \n"
    );
    // Another method is refused by name.
    let err = env.fails(&["build", "--call=subrequests.describe", s(&ctx)]);
    assert!(err.contains("--call=subrequests.describe is not supported"), "{err}");
}

#[test]
fn a_build_prints_its_warnings_and_error_true_fails_it() {
    let env = Env::new();
    let ctx = context(&env, "warn", &[("Dockerfile", "FROM scratch AS Base\nCOPY a.txt /\n"), ("a.txt", "a\n")]);
    let out = env.dir.path().join("o");
    let (_, stderr) = build(&env, &["-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    assert!(
        stderr.contains(
            "\n 1 warning found (use docker --debug to expand):\n - StageNameCasing: Stage name 'Base' should be lowercase (line 1)\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("#1 WARN: StageNameCasing: Stage name 'Base' should be lowercase (line 1)\n"), "{stderr}");
    let bad =
        context(&env, "err", &[("Dockerfile", "# check=error=true\nFROM scratch as b\nCOPY a.txt /\n"), ("a.txt", "")]);
    let err =
        env.fails(&["build", "--progress", "plain", "-o", &format!("type=local,dest={}", out.display()), s(&bad)]);
    assert!(err.contains("lint violation found for rules: FromAsCasing"), "{err}");
    assert!(err.contains(" - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)"), "{err}");
    let err = env.fails(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        "BUILDKIT_DOCKERFILE_CHECK=error=true",
        "-o",
        &format!("type=local,dest={}", out.display()),
        s(&ctx),
    ]);
    assert!(err.contains("lint violation found for rules: StageNameCasing"), "{err}");
}

#[test]
fn env_and_label_pairs_match_buildah() {
    use crate::util::image::{buildah_build, buildah_prerequisites};
    let Some((env, reg)) = mirrored() else { return };
    if !buildah_prerequisites() {
        return;
    }
    let df = format!(
        "FROM {} AS parent\nARG V=p\nENV a=1\nENV a=10 d=$a\nLABEL x=$a y=$d\nFROM parent\nLABEL v=$V\n",
        busybox(reg)
    );
    let ctx = context(&env, "bud", &[("Dockerfile", &df)]);
    let oci = env.dir.path().join("ours.tar");
    build(&env, &["-o", &format!("type=oci,dest={}", oci.display()), s(&ctx)]);
    let (theirs, _) = buildah_build(env.dir.path(), &ctx, &[], "sem:1");
    let (ours, theirs) = (skopeo_config(&oci), skopeo_config(&theirs));
    assert_eq!(env_of(&ours), env_of(&theirs));
    for k in ["x", "y"] {
        assert_eq!(
            ours["config"]["Labels"][k], theirs["config"]["Labels"][k],
            "label {k}: ours {ours} theirs {theirs}"
        );
    }
    // buildah (1.28) gives the child an empty V; BuildKit, the reference,
    // inherits the parent's ARG.
    assert_eq!(ours["config"]["Labels"]["v"], "p");
}

#[test]
fn a_parent_trigger_copying_from_a_stage_builds_that_stage_first() {
    let Some((env, _reg)) = mirrored() else { return };
    let df = "FROM busybox AS src\nFROM scratch AS parent\nONBUILD COPY --from=src /bin/busybox /copied\n\
              FROM parent\n";
    let ctx = context(&env, "trig", &[("Dockerfile", df)]);
    let out = env.dir.path().join("t");
    build(&env, &["-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    assert!(out.join("copied").is_file());
}
