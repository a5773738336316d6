use super::*;

fn run_with(src: &str, opts: &Options) -> Vec<String> {
    let ast = crate::parse(src.as_bytes()).unwrap();
    lint(&ast, opts).unwrap().warnings.iter().map(Warning::short).collect()
}

/// Lints with every base image's environment known to be `PATH` only.
fn run(src: &str) -> Vec<String> {
    let env = |_: usize| Some(vec!["PATH=/usr/bin:/bin".to_string()]);
    let builtins: HashMap<String, String> =
        [("TARGETPLATFORM", "linux/amd64"), ("TARGETARCH", "amd64"), ("BUILDPLATFORM", "linux/amd64")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    run_with(src, &Options { base_env: Some(&env), builtins, ..Options::default() })
}

#[test]
fn stage_name_casing() {
    assert_eq!(run("FROM busybox AS Build\n"), ["StageNameCasing: Stage name 'Build' should be lowercase (line 1)"]);
    assert!(run("FROM busybox AS build\n").is_empty());
}

#[test]
fn from_as_casing() {
    assert_eq!(
        run("FROM busybox as build\n"),
        ["FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"]
    );
    assert_eq!(
        run("from busybox AS build\n"),
        ["FromAsCasing: 'AS' and 'from' keywords' casing do not match (line 1)"]
    );
}

#[test]
fn no_empty_continuation() {
    // At the instruction's last line, as BuildKit's parser places it.
    assert_eq!(run("FROM busybox\nRUN echo a \\\n\n  b\n"), ["NoEmptyContinuation: Empty continuation line (line 4)"]);
}

#[test]
fn consistent_instruction_casing() {
    assert_eq!(
        run("FROM busybox\nrun true\nRUN true\n"),
        ["ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase) (line 2)"]
    );
    assert_eq!(
        run("from busybox\nRun true\nrun true\n"),
        ["ConsistentInstructionCasing: Command 'Run' should match the case of the command majority (lowercase) (line 2)"]
    );
}

#[test]
fn duplicate_and_reserved_stage_names() {
    assert_eq!(
        run("FROM busybox AS a\nFROM busybox AS a\n"),
        ["DuplicateStageName: Duplicate stage name \"a\", stage names should be unique (line 2)"]
    );
    assert_eq!(
        run("FROM busybox AS scratch\n"),
        ["ReservedStageName: Stage name should not use the same name as reserved stage \"scratch\" (line 1)"]
    );
}

#[test]
fn json_args_and_multiple_instructions() {
    assert_eq!(
        run("FROM busybox\nCMD echo a\nCMD [\"b\"]\n"),
        [
            "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)",
            "MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used (line 2)",
        ]
    );
    assert!(run("FROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nENTRYPOINT echo a\n").is_empty());
}

#[test]
fn maintainer_deprecated() {
    assert_eq!(
        run("FROM busybox\nMAINTAINER me\n"),
        ["MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)"]
    );
}

#[test]
fn undefined_arg_in_from() {
    assert_eq!(
        run("ARG VERSION=1\nFROM busybox:$VERSON\n"),
        [
            "InvalidDefaultArgInFrom: Default value for ARG busybox:$VERSON results in empty or invalid base image name (line 2)",
            "UndefinedArgInFrom: FROM argument 'VERSON' is not declared (did you mean VERSION?) (line 2)",
        ]
    );
    assert!(run("ARG V\nFROM busybox${V:+:$V}\n").is_empty());
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        run("FROM busybox\nWORKDIR app\nWORKDIR sub\n"),
        ["WorkdirRelativePath: Relative workdir \"app\" can have unexpected results if the base image changes (line 2)"]
    );
    assert!(run("FROM busybox\nWORKDIR /app\nWORKDIR sub\n").is_empty());
}

#[test]
fn undefined_var() {
    assert_eq!(
        run("FROM busybox\nARG FOO=1\nCOPY $FOOO /x\nENV P=$PATH\n"),
        ["UndefinedVar: Usage of undefined variable '$FOOO' (did you mean $FOO?) (line 3)"]
    );
    assert_eq!(
        run("FROM busybox\nRUN --mount=type=cache,target=/c/$DIRR true\n"),
        ["UndefinedVar: Usage of undefined variable '$DIRR' (line 2)"]
    );
    // Declared without a value counts as defined; RUN is left to the shell.
    assert!(run("FROM busybox\nARG X\nLABEL a=$X\nRUN echo $NOPE\n").is_empty());
    // A stage based on another sees its variables.
    assert!(run("FROM busybox AS a\nENV A=1\nFROM a\nLABEL x=$A\n").is_empty());
    // Nothing is said where the base image's variables are unknown.
    let ast = crate::parse(b"FROM busybox\nLABEL x=$NOPE\n").unwrap();
    assert!(lint(&ast, &Options::default()).unwrap().warnings.is_empty());
}

#[test]
fn legacy_key_value_format() {
    assert_eq!(
        run("FROM busybox\nENV A 1\nLABEL b 2\n"),
        [
            "LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 2)",
            "LegacyKeyValueFormat: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format (line 3)",
        ]
    );
}

#[test]
fn redundant_target_platform_and_const_platform() {
    assert_eq!(
        run("FROM --platform=$TARGETPLATFORM busybox\n"),
        ["RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior (line 1)"]
    );
    assert_eq!(
        run("FROM --platform=linux/arm64 busybox AS build\n"),
        ["FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value \"linux/arm64\" (line 1)"]
    );
    assert!(run("FROM --platform=linux/arm64 busybox AS build-arm64\n").is_empty());
    assert!(run("FROM --platform=$BUILDPLATFORM busybox\n").is_empty());
}

#[test]
fn secrets_used_in_arg_or_env() {
    assert_eq!(
        run("FROM busybox\nARG GITHUB_TOKEN\nENV api_key=x\nARG PUBLIC_KEY\nARG KEYBOARD\n"),
        [
            "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\") (line 2)",
            "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"api_key\") (line 3)",
        ]
    );
}

#[test]
fn invalid_default_arg_in_from() {
    assert_eq!(
        run("ARG IMAGE\nFROM $IMAGE\n"),
        ["InvalidDefaultArgInFrom: Default value for ARG $IMAGE results in empty or invalid base image name (line 2)"]
    );
    assert!(run("ARG IMAGE=busybox\nFROM $IMAGE\n").is_empty());
    assert!(run("ARG TAG=latest\nFROM busybox:${TAG}\n").is_empty());
}

#[test]
fn copy_ignored_file() {
    let m = crate::ignore::PatternMatcher::new(&["secret.txt", "build"]).unwrap();
    let env = |_: usize| Some(Vec::new());
    let opts = Options { ignore: Some(&m), base_env: Some(&env), ..Options::default() };
    assert_eq!(
        run_with("FROM busybox\nCOPY secret.txt ok.txt /\nADD build/x /x\nCOPY --from=busybox secret.txt /\n", &opts),
        [
            "CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore (line 2)",
            "CopyIgnoredFile: Attempting to Add file \"build/x\" that is excluded by .dockerignore (line 3)",
        ]
    );
    // The context root is only "ignored" by a pattern excluding everything.
    let dot = |pats: &[&str]| {
        let m = crate::ignore::PatternMatcher::new(pats).unwrap();
        run_with("FROM scratch\nCOPY . .\n", &Options { ignore: Some(&m), ..Options::default() })
    };
    assert!(dot(&[".*"]).is_empty());
    assert_eq!(
        dot(&["*"]),
        ["CopyIgnoredFile: Attempting to Copy file \".\" that is excluded by .dockerignore (line 2)"]
    );
    let m = crate::ignore::PatternMatcher::new(&["secret.txt", "!keep"]).unwrap();
    let opts = Options { ignore: Some(&m), ..Options::default() };
    assert!(run_with("FROM busybox\nCOPY secret.txt /\n", &opts).is_empty());
}

#[test]
fn invalid_definition_description_is_experimental() {
    let src =
        "# check=experimental=InvalidDefinitionDescription\nFROM busybox\n# some text\nARG A=1\n# A2 the a\nARG A2=1\n";
    assert_eq!(
        run(src),
        ["InvalidDefinitionDescription: Comment for ARG should follow the format: `# A <description>` (line 4)"]
    );
    assert!(run("FROM busybox\n# some text\nARG A=1\n").is_empty());
}

#[test]
fn expose_rules() {
    assert_eq!(
        run("FROM busybox\nEXPOSE 80/TCP 127.0.0.1:8080:80\n"),
        // EXPOSE sorts its ports, as BuildKit's `parseExpose`.
        [
            "ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:8080:80' (line 2)",
            "ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase (line 2)",
        ]
    );
}

#[test]
fn check_directive_and_comments() {
    assert!(run("# check=skip=all\nFROM busybox as b\n").is_empty());
    assert!(run("# check=skip=FromAsCasing,MaintainerDeprecated\nFROM busybox as b\nMAINTAINER x\n").is_empty());
    assert_eq!(run("FROM busybox\n# check=skip=MaintainerDeprecated\nMAINTAINER x\nMAINTAINER y\n").len(), 1);
    let ast = crate::parse(b"# check=error=true\nFROM busybox as b\n").unwrap();
    let rep = lint(&ast, &Options::default()).unwrap();
    assert_eq!(rep.error().as_deref(), Some("lint violation found for rules: FromAsCasing"));
    // The build argument replaces the directive.
    let opts = Options { config: Some(Config::parse("skip=FromAsCasing").unwrap()), ..Options::default() };
    assert!(lint(&ast, &opts).unwrap().error().is_none());
}

#[test]
fn config_errors() {
    assert_eq!(Config::parse("skip").unwrap_err().to_string(), "invalid check option \"skip\"");
    assert_eq!(Config::parse("foo=bar").unwrap_err().to_string(), "invalid check option \"foo\"");
    assert!(Config::parse("error=maybe").is_err());
    assert!(Config::parse(" skip = A , B ; error = 1 ").unwrap().error);
    assert_eq!(rules::ALL.iter().filter(|r| r.url.ends_with(&format!("{}/", kebab(r.name)))).count(), 22);
}

fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        let prev_upper = i > 0 && name.chars().nth(i - 1).is_some_and(|p| p.is_ascii_uppercase());
        if c.is_ascii_uppercase() && i > 0 && !prev_upper {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out.replace("jsonargs", "json-args")
}

#[test]
fn render_as_buildx_check() {
    let src = "FROM busybox as b\nRUN true\nRUN true\nRUN true\nRUN true\nRUN true\nMAINTAINER me\n";
    let ast = crate::parse(src.as_bytes()).unwrap();
    let rep = lint(&ast, &Options::default()).unwrap();
    let want = "
WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/
'as' and 'FROM' keywords' casing do not match
Dockerfile:1
--------------------
   1 | >>> FROM busybox as b
   2 |     RUN true
   3 |     RUN true
--------------------

WARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/
Maintainer instruction is deprecated in favor of using label
Dockerfile:7
--------------------
   5 |     RUN true
   6 |     RUN true
   7 | >>> MAINTAINER me
   8 |     
--------------------
";
    assert_eq!(render(&rep.warnings, "Dockerfile", src), want);
}

#[test]
fn only_dispatched_stages_have_their_instructions_checked() {
    let src = "FROM busybox AS a\nCMD echo a\nFROM busybox AS B\nCMD echo b\n";
    let ast = crate::parse(src.as_bytes()).unwrap();
    let opts = Options { stages: Some(vec![0]), ..Options::default() };
    let got: Vec<String> = lint(&ast, &opts).unwrap().warnings.iter().map(Warning::short).collect();
    // The name rule checks every stage; CMD only in the stage built.
    assert_eq!(
        got,
        [
            "StageNameCasing: Stage name 'B' should be lowercase (line 3)",
            "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)",
        ]
    );
}

#[test]
fn parent_triggers_are_checked_in_the_child() {
    assert_eq!(
        run("FROM busybox AS p\nONBUILD CMD echo hi\nFROM p\n"),
        ["JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)"]
    );
}

#[test]
fn invalid_base_image_platform() {
    let platform =
        |i: usize| (i == 1).then(|| ("busybox".to_string(), "linux/arm64".to_string(), "linux/amd64".to_string()));
    let opts = Options { base_platform: Some(&platform), ..Options::default() };
    let ast = crate::parse(b"FROM scratch AS a\nFROM busybox\nCOPY --from=a / /\n").unwrap();
    let rep = lint(&ast, &opts).unwrap();
    let w: Vec<_> = rep.warnings.iter().filter(|w| w.rule == "InvalidBaseImagePlatform").collect();
    assert_eq!(w.len(), 1, "{:?}", rep.warnings);
    assert_eq!(
        w[0].message,
        "Base image busybox was pulled with platform \"linux/amd64\", expected \"linux/arm64\" for current build"
    );
    assert_eq!(w[0].url, "https://docs.docker.com/go/dockerfile/rule/invalid-base-image-platform/");
    assert_eq!((w[0].start_line, w[0].end_line), (2, 2));
    let skipped = crate::parse(b"# check=skip=InvalidBaseImagePlatform\nFROM scratch AS a\nFROM busybox\n").unwrap();
    let opts = Options {
        base_platform: Some(&|i| (i == 1).then(|| ("b".into(), "x".into(), "y".into()))),
        ..Options::default()
    };
    assert!(lint(&skipped, &opts).unwrap().warnings.is_empty());
}
