//! How steps are named in progress and error messages: a RUN step shows
//! the instruction as written, as BuildKit names an exec vertex (flags,
//! quotes and shell variables kept, build variables expanded, a lone
//! here-document summarized).

use crate::util::*;

const DOCKERFILE: &str = r#"FROM busybox
ARG V=7
RUN i=5; echo "[$i]" '$V' "$V" ${V}
RUN --mount=type=tmpfs,target=/t \
    echo "$NOPE" \
      && echo hi
RUN <<EOT
echo a
echo b
EOT
RUN x=3; echo "failing with $x"; exit "$x"
"#;

#[test]
fn run_steps_are_shown_as_written() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let ctx = context(&env, "ctx", &[("Dockerfile", DOCKERFILE)]);
    let out = env.run(&["build", "--progress", "plain", "-o", "type=image,name=named", s(&ctx)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the last step fails: {err}");
    for want in [
        r#"[2/5] RUN i=5; echo "[$i]" '$V' "7" 7"#,
        r#"[3/5] RUN --mount=type=tmpfs,target=/t     echo "$NOPE"       && echo hi"#,
        "[4/5] RUN <<EOT (echo a...)",
        r#"[5/5] RUN x=3; echo "failing with $x"; exit "$x""#,
    ] {
        assert!(err.lines().any(|l| l.starts_with('#') && l.ends_with(want)), "{want:?} should name a step in:\n{err}");
    }
    let error = err.lines().find(|l| l.contains("did not complete successfully")).unwrap_or_else(|| panic!("{err}"));
    assert!(error.contains(r#"([5/5] RUN x=3; echo "failing with $x"; exit "$x", linux/"#), "{error}");
    assert!(err.contains("failing with 3"), "the command itself still expands: {err}");
    assert!(!err.contains(r#"echo "[]""#), "{err}");

    let ok = DOCKERFILE.lines().take(3).collect::<Vec<_>>().join("\n");
    let ctx = context(&env, "ok", &[("Dockerfile", &ok)]);
    let out = env.run(&["build", "--progress", "tty", "-o", "type=image,name=named", s(&ctx)]);
    let tty = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains(r#"[2/2] RUN i=5; echo "[$i]" '$V' "7" 7"#), "{tty}");
}

/// COPY, ADD and WORKDIR steps are named as BuildKit names them: the
/// instruction as written with its words processed (quotes removed, unset
/// variables empty), a relative WORKDIR as written; FROM scratch is no step
/// and a build of one stage shows no stage. `debug plan` names them alike.
#[test]
fn copy_and_workdir_steps_are_named_as_buildkit_names_them() {
    let Some((env, _)) = mirrored() else { return };
    let df = "FROM busybox\nARG SET=val\nWORKDIR /etc\nWORKDIR rel\nCOPY [\"a b.txt\", \"/dst/$SET/$UNSET/\"]\n\
              ADD [\"a b.txt\", \"$SET\"]\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df), ("a b.txt", "a\n")]);
    let (_, err) = build_ok(&env, &["--progress", "plain", s(&ctx)]);
    let want =
        ["[2/5] WORKDIR /etc", "[3/5] WORKDIR rel", "[4/5] COPY [a b.txt, /dst/val//]", "[5/5] ADD [a b.txt, val]"];
    for w in want {
        assert!(err.lines().any(|l| l.starts_with('#') && l.ends_with(w)), "{w:?} should name a step in:\n{err}");
    }
    let plan: serde_json::Value = serde_json::from_str(&env.ok(&["debug", "plan", s(&ctx)])).unwrap();
    let names: Vec<&str> = plan["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["names"].as_array().unwrap().iter().filter_map(|n| n.as_str()))
        .collect();
    for w in want {
        assert!(names.contains(&w), "the plan names {w:?}: {names:?}");
    }
    let scratch =
        context(&env, "scratch", &[("Dockerfile", "FROM scratch AS a\nCOPY f /f\nFROM a\nWORKDIR /w\n"), ("f", "f")]);
    let (_, err) = build_ok(&env, &["--progress", "plain", s(&scratch)]);
    assert!(!err.contains("FROM scratch") && !err.contains("] FROM a"), "no FROM step: {err}");
    assert!(err.contains("[a 1/1] COPY f /f") && err.contains("[stage-1 1/1] WORKDIR /w"), "{err}");
}
