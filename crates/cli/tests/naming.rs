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
        r#"[stage-0 2/5] RUN i=5; echo "[$i]" '$V' "7" 7"#,
        r#"[stage-0 3/5] RUN --mount=type=tmpfs,target=/t     echo "$NOPE"       && echo hi"#,
        "[stage-0 4/5] RUN <<EOT (echo a...)",
        r#"[stage-0 5/5] RUN x=3; echo "failing with $x"; exit "$x""#,
    ] {
        assert!(err.lines().any(|l| l.starts_with('#') && l.ends_with(want)), "{want:?} should name a step in:\n{err}");
    }
    let error = err.lines().find(|l| l.contains("did not complete successfully")).unwrap_or_else(|| panic!("{err}"));
    assert!(error.contains(r#"([stage-0 5/5] RUN x=3; echo "failing with $x"; exit "$x", linux/"#), "{error}");
    assert!(err.contains("failing with 3"), "the command itself still expands: {err}");
    assert!(!err.contains(r#"echo "[]""#), "{err}");

    let ok = DOCKERFILE.lines().take(3).collect::<Vec<_>>().join("\n");
    let ctx = context(&env, "ok", &[("Dockerfile", &ok)]);
    let out = env.run(&["build", "--progress", "tty", "-o", "type=image,name=named", s(&ctx)]);
    let tty = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains(r#"[stage-0 2/2] RUN i=5; echo "[$i]" '$V' "7" 7"#), "{tty}");
}
