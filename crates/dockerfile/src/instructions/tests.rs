use std::collections::HashMap;

use super::*;
use crate::parser::parse as parse_ast;

fn df(s: &str) -> Result<Dockerfile, Error> {
    parse(&parse_ast(s.as_bytes())?)
}

fn msg(s: &str) -> String {
    df(s).unwrap_err().to_string()
}

fn first(s: &str) -> Instruction {
    let d = df(&format!("FROM a\n{s}")).unwrap_or_else(|e| panic!("{s}: {e}"));
    d.stages[0].commands[0].instruction.clone()
}

#[test]
fn argument_count_errors() {
    assert_eq!(msg("FROM"), "FROM requires either one or three arguments");
    assert_eq!(msg("FROM a b"), "FROM requires either one or three arguments");
    assert_eq!(
        msg("FROM a AS 1x"),
        "invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        msg("FROM a\nCOPY x"),
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined."
    );
    assert_eq!(msg("FROM a\nENV"), "ENV requires at least one argument");
    assert_eq!(msg("FROM a\nUSER"), "USER requires exactly one argument");
    assert_eq!(msg("FROM a\nWORKDIR"), "WORKDIR requires exactly one argument");
    assert_eq!(msg("FROM a\nEXPOSE"), "EXPOSE requires at least one argument");
    assert_eq!(msg("FROM a\nVOLUME []"), "VOLUME requires at least one argument");
    assert_eq!(msg("FROM a\nVOLUME [\"\"]"), "VOLUME specified can not be an empty string");
    assert_eq!(msg("FROM a\nARG =x"), "ARG names can not be blank");
    assert_eq!(msg("FROM a\nENV =x"), "ENV names can not be blank");
    assert_eq!(msg("FROM a\nSHELL sh -c"), "SHELL requires the arguments to be in JSON form");
    assert_eq!(msg("FROM a\nONBUILD ONBUILD RUN x"), "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    assert_eq!(msg("FROM a\nONBUILD FROM b"), "FROM isn't allowed as an ONBUILD trigger");
    assert_eq!(msg("FROM a\nHEALTHCHECK NONE x"), "HEALTHCHECK NONE takes no arguments");
    assert_eq!(msg("FROM a\nHEALTHCHECK CMD"), "Missing command after HEALTHCHECK CMD");
    assert_eq!(msg("FROM a\nHEALTHCHECK FOO x"), "Unknown type \"FOO\" in HEALTHCHECK (try CMD)");
    assert_eq!(msg("FROM a\nHEALTHCHECK --interval=1us CMD x"), "Interval \"interval\" cannot be less than 1ms");
    assert_eq!(msg("FROM a\nHEALTHCHECK --retries=0 CMD x"), "--retries must be at least 1 (not 0)");
    assert_eq!(msg("RUN x"), "no build stage in current context");
    assert_eq!(msg("FROM a\nCOPY a <<EOF\nx\nEOF"), "COPY cannot accept a heredoc as a destination");
}

#[test]
fn unknown_things() {
    assert_eq!(msg("FORM a"), "unknown instruction: FORM (did you mean FROM?)");
    assert_eq!(msg("FROM a\nfoo bar"), "unknown instruction: foo (did you mean from?)");
    assert_eq!(msg("FROM a\nbogus bar"), "unknown instruction: bogus");
    assert_eq!(msg("FROM a\nCOPY --chwon=1 a b"), "unknown flag: chwon (did you mean chown?)");
    assert_eq!(msg("FROM a\nENV --x=1 a=b"), "unknown flag: x");
    assert_eq!(msg("FROM a\nADD --from=a b c"), "unknown flag: from");
    assert_eq!(msg("FROM a\nRUN --network=bridge x"), "unsupported network mode \"bridge\"");
    assert_eq!(msg("FROM a\nRUN --security=foo x"), "unsupported security mode \"foo\"");
    assert_eq!(msg("FROM --platform a"), "missing a value on flag: platform");
    let e = df("FROM a\nCOPY --chwon=1 a b").unwrap_err();
    assert_eq!(e.lines(), Some((2, 2)));
    let r = e.diagnostic("Dockerfile", "FROM a\nCOPY --chwon=1 a b").render();
    assert_eq!(
        r,
        "Dockerfile:2:6: unknown flag: chwon (did you mean chown?)\n   2 | COPY --chwon=1 a b\n     |      ^^^^^^^"
    );
}

#[test]
fn copy_and_add_flags() {
    let Instruction::Copy(c) =
        first("COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=x a b /dst/")
    else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!((c.chown.as_deref(), c.chmod.as_deref()), (Some("1:2"), Some("755")));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, vec!["*.md", "x"]);
    assert_eq!((c.sources.clone(), c.dest.as_str()), (vec!["a".to_string(), "b".to_string()], "/dst/"));
    let Instruction::Add(a) =
        first("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.git /src")
    else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert!(a.keep_git_dir);
    assert_eq!(a.unpack, Some(false));
    let Instruction::Copy(c) = first("COPY <<-EOF /etc/x\n\t\thello $X\n\tEOF") else { panic!() };
    assert_eq!(c.contents[0].data, "hello $X\n");
    assert!(c.contents[0].expand);
    assert!(c.sources.is_empty());
}

#[test]
fn run_cmd_entrypoint() {
    let Instruction::Run(r) = first("RUN --mount=type=cache,target=/c --network=none --security=insecure make") else {
        panic!()
    };
    assert_eq!(r.mounts[0].r#type, "cache");
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(r.security.as_deref(), Some("insecure"));
    assert_eq!(r.cmd.args, vec!["make"]);
    assert!(r.cmd.prepend_shell);
    let Instruction::Run(r) = first("RUN <<EOF\necho $HOME\nEOF") else { panic!() };
    assert_eq!(r.cmd.files[0].data, "echo $HOME\n");
    let Instruction::Cmd(c) = first("CMD [\"a\", \"b\"]") else { panic!() };
    assert_eq!((c.args.len(), c.prepend_shell), (2, false));
    let Instruction::Entrypoint(c) = first("ENTRYPOINT exec x") else { panic!() };
    assert_eq!((c.args, c.prepend_shell), (vec!["exec x".to_string()], true));
    let Instruction::Shell(s) = first("SHELL [\"pwsh\", \"-c\"]") else { panic!() };
    assert_eq!(s, vec!["pwsh", "-c"]);
}

#[test]
fn env_label_arg() {
    let Instruction::Env(e) = first("ENV A=1 B=\"two words\"") else { panic!() };
    assert_eq!(e[1], KeyValue { key: "B".into(), value: "\"two words\"".into(), legacy: false });
    let Instruction::Env(e) = first("ENV A  one two") else { panic!() };
    assert_eq!(e, vec![KeyValue { key: "A".into(), value: "one two".into(), legacy: true }]);
    let Instruction::Label(l) = first("LABEL a=b c=d") else { panic!() };
    assert_eq!(l.len(), 2);
    let Instruction::Arg(a) = first("ARG A B=2 C=") else { panic!() };
    assert_eq!(a[0], ArgDef { key: "A".into(), value: None });
    assert_eq!(a[1].value.as_deref(), Some("2"));
    assert_eq!(a[2].value.as_deref(), Some(""));
}

#[test]
fn simple_instructions() {
    assert_eq!(first("EXPOSE 80/tcp 443"), Instruction::Expose(vec!["443".into(), "80/tcp".into()]));
    assert_eq!(first("VOLUME /a /b"), Instruction::Volume(vec!["/a".into(), "/b".into()]));
    assert_eq!(first("USER app:app"), Instruction::User("app:app".into()));
    assert_eq!(first("WORKDIR /src dir"), Instruction::Workdir("/src dir".into()));
    assert_eq!(first("STOPSIGNAL SIGTERM"), Instruction::Stopsignal("SIGTERM".into()));
    assert_eq!(first("MAINTAINER me <me@x>"), Instruction::Maintainer("me <me@x>".into()));
    assert_eq!(first("onbuild run echo hi"), Instruction::Onbuild("run echo hi".into()));
    let Instruction::Healthcheck(h) = first(
        "HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=3 CMD curl -f x",
    ) else {
        panic!()
    };
    assert_eq!(h.test, vec!["CMD-SHELL", "curl -f x"]);
    assert_eq!((h.interval, h.timeout, h.start_period, h.retries), (30_000_000_000, 5_000_000_000, 60_000_000_000, 3));
    let Instruction::Healthcheck(h) = first("HEALTHCHECK --whatever NONE") else { panic!() };
    assert_eq!(h.test, vec!["NONE"]);
    let Instruction::Healthcheck(h) = first("HEALTHCHECK CMD [\"true\"]") else { panic!() };
    assert_eq!(h.test, vec!["CMD", "true"]);
}

#[test]
fn stages_and_targets() {
    let d = df("ARG BASE=alpine\nFROM $BASE AS build\nRUN x\nFROM scratch\nCOPY --from=build /a /b\n").unwrap();
    assert_eq!(d.meta_args[0].key, "BASE");
    assert_eq!(d.stages.len(), 2);
    assert_eq!(d.target(None).unwrap(), 1);
    assert_eq!(d.target(Some("BUILD")).unwrap(), 0);
    assert_eq!(
        d.target(Some("nope")).unwrap_err().to_string(),
        "target stage \"nope\" could not be found (stages: build, 1)"
    );
    assert_eq!(d.dependencies(1), vec![(0, 5)]);
    d.check_cycles().unwrap();
}

#[test]
fn cycles() {
    let d = df("FROM a AS one\nCOPY --from=two /x /y\nFROM one AS two\n").unwrap();
    let e = d.check_cycles().unwrap_err();
    assert_eq!(e.to_string(), "circular dependency detected on stage: one (one -> two -> one)");
    let d = df("FROM a AS s\nRUN --mount=from=s,target=/x true\n").unwrap();
    assert!(d.check_cycles().is_err());
    let d = df("FROM a\nCOPY --from=0 /x /y\n").unwrap();
    assert_eq!(d.check_cycles().unwrap_err().to_string(), "circular dependency detected on stage: 0 (0 -> 0)");
}

#[test]
fn from_expansion() {
    let d = df("ARG REG=docker.io\nARG IMG=${REG}/library/alpine\nARG PLAT\nFROM --platform=$PLAT ${IMG}:${TAG:-3}\nFROM $UNSET\n")
        .unwrap();
    let mut build_args = HashMap::new();
    build_args.insert("PLAT".to_string(), "linux/arm64".to_string());
    let e = expand_from(&d, '\\', &build_args, &HashMap::new()).unwrap_err();
    assert_eq!(e.to_string(), "base name ($UNSET) should not be blank");
    let d = df("ARG REG=docker.io\nARG IMG=${REG}/library/alpine\nARG PLAT\nFROM --platform=$PLAT ${IMG}:${TAG:-3}\nFROM ${BUILDPLATFORM}\n").unwrap();
    let mut builtins = HashMap::new();
    builtins.insert("BUILDPLATFORM".to_string(), "linux/amd64".to_string());
    let f = expand_from(&d, '\\', &build_args, &builtins).unwrap();
    assert_eq!(f[0], ExpandedFrom { base: "docker.io/library/alpine:3".into(), platform: Some("linux/arm64".into()) });
    assert_eq!(f[1].base, "linux/amd64");
    assert!(PROXY_ARGS.contains(&"no_proxy"));
}

#[test]
fn serializes() {
    let d = df("ARG A=1\nFROM a AS b\nENV X=1\nRUN --mount=type=cache,target=/c make\nEXPOSE 80\nHEALTHCHECK NONE\n")
        .unwrap();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["stages"][0]["commands"][0]["instruction"]["env"][0]["key"], "X");
    assert_eq!(v["stages"][0]["commands"][1]["instruction"]["run"]["mounts"][0]["type"], "cache");
    assert_eq!(v["meta_args"][0]["value"], "1");
}

// Ported from BuildKit instructions/parse_test.go.

fn node_err(src: &str) -> String {
    let ast = parse_ast(src.as_bytes()).unwrap();
    parse_instruction(&ast.nodes[0]).unwrap_err().to_string()
}

#[test]
fn bk_exactly_one_argument() {
    for c in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
        assert_eq!(node_err(c), format!("{c} requires exactly one argument"));
    }
}

#[test]
fn bk_at_least_one_argument() {
    for c in ["ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME"] {
        assert_eq!(node_err(c), format!("{c} requires at least one argument"));
    }
}

#[test]
fn bk_no_destination_argument() {
    for c in ["ADD", "COPY"] {
        assert_eq!(
            node_err(&format!("{c} arg1")),
            format!(
                "{c} requires at least two arguments, but only one was provided. Destination could not be determined."
            )
        );
    }
}

#[test]
fn bk_error_cases() {
    assert!(node_err("COPY\t\n\t\tquux \\\n      bar").starts_with("COPY requires at least two arguments"));
    assert_eq!(node_err("ONBUILD FROM scratch"), "FROM isn't allowed as an ONBUILD trigger");
    assert_eq!(node_err("ONBUILD MAINTAINER docker.io"), "MAINTAINER isn't allowed as an ONBUILD trigger");
    assert_eq!(node_err("MAINTAINER --boo joe@example.com"), "unknown flag: boo");
    assert_eq!(node_err("ONBUILD ONBUILD RUN touch foobar"), "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    assert_eq!(node_err("foo bar"), "unknown instruction: foo (did you mean from?)");
}

#[test]
fn bk_healthcheck_cmd_and_interval() {
    let Instruction::Healthcheck(h) = first("HEALTHCHECK CMD hello world") else { panic!() };
    assert_eq!(h.test, vec!["CMD-SHELL", "hello world"]);
    assert!(node_err("HEALTHCHECK --interval=50ns CMD x").contains("cannot be less than 1ms"));
    assert!(df("FROM a\nHEALTHCHECK --interval=1ms CMD x").is_ok());
}

#[test]
fn steps_name_their_stage_unless_the_build_has_one() {
    let names = |s: &str| df(s).unwrap().names_stages();
    assert!(!names("FROM busybox\nRUN true\nCOPY a /a\n"));
    assert!(!names("FROM scratch\nCOPY --chown=1 a /a\n"));
    assert!(names("FROM busybox AS a\nFROM a\n"), "two stages");
    // The image a --from names is a stage of its own, as in BuildKit.
    assert!(names("FROM busybox\nCOPY --from=alpine /x /x\n"));
    assert!(names("FROM busybox\nRUN --mount=type=bind,from=tools,target=/t true\n"));
    assert!(!names("FROM busybox\nRUN --mount=type=cache,target=/c true\n"));
}
