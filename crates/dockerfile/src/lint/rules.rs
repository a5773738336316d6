//! BuildKit's linter rules (`frontend/dockerfile/linter/ruleset.go`):
//! names, descriptions, documentation links and message formats.

/// One build check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The rule name, e.g. `FromAsCasing`.
    pub name: &'static str,
    /// What the rule checks.
    pub description: &'static str,
    /// The documentation link (empty for rules without one).
    pub url: &'static str,
    /// Reported only when enabled with `experimental=`.
    pub experimental: bool,
}

macro_rules! rule {
    ($id:ident, $name:literal, $slug:literal, $desc:literal) => {
        rule!($id, $name, $slug, $desc, false);
    };
    ($id:ident, $name:literal, $slug:literal, $desc:literal, $exp:literal) => {
        #[doc = concat!("`", $name, "`: ", $desc)]
        pub const $id: Rule = Rule {
            name: $name,
            description: $desc,
            url: concat!("https://docs.docker.com/go/dockerfile/rule/", $slug, "/"),
            experimental: $exp,
        };
    };
}

rule!(STAGE_NAME_CASING, "StageNameCasing", "stage-name-casing", "Stage names should be lowercase");
rule!(FROM_AS_CASING, "FromAsCasing", "from-as-casing", "The 'as' keyword should match the case of the 'from' keyword");
rule!(
    NO_EMPTY_CONTINUATION,
    "NoEmptyContinuation",
    "no-empty-continuation",
    "Empty continuation lines will become errors in a future release"
);
rule!(
    CONSISTENT_INSTRUCTION_CASING,
    "ConsistentInstructionCasing",
    "consistent-instruction-casing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)"
);
rule!(DUPLICATE_STAGE_NAME, "DuplicateStageName", "duplicate-stage-name", "Stage names should be unique");
rule!(
    RESERVED_STAGE_NAME,
    "ReservedStageName",
    "reserved-stage-name",
    "Reserved words should not be used as stage names"
);
rule!(
    JSON_ARGS_RECOMMENDED,
    "JSONArgsRecommended",
    "json-args-recommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals"
);
rule!(
    MAINTAINER_DEPRECATED,
    "MaintainerDeprecated",
    "maintainer-deprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author"
);
rule!(UNDEFINED_ARG_IN_FROM, "UndefinedArgInFrom", "undefined-arg-in-from", "FROM command must use declared ARGs");
rule!(
    WORKDIR_RELATIVE_PATH,
    "WorkdirRelativePath",
    "workdir-relative-path",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes"
);
rule!(UNDEFINED_VAR, "UndefinedVar", "undefined-var", "Variables should be defined before their use");
rule!(
    MULTIPLE_INSTRUCTIONS_DISALLOWED,
    "MultipleInstructionsDisallowed",
    "multiple-instructions-disallowed",
    "Multiple instructions of the same type should not be used in the same stage"
);
rule!(
    LEGACY_KEY_VALUE_FORMAT,
    "LegacyKeyValueFormat",
    "legacy-key-value-format",
    "Legacy key/value format with whitespace separator should not be used"
);
rule!(
    REDUNDANT_TARGET_PLATFORM,
    "RedundantTargetPlatform",
    "redundant-target-platform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior"
);
rule!(
    SECRETS_USED_IN_ARG_OR_ENV,
    "SecretsUsedInArgOrEnv",
    "secrets-used-in-arg-or-env",
    "Sensitive data should not be used in the ARG or ENV commands"
);
rule!(
    INVALID_DEFAULT_ARG_IN_FROM,
    "InvalidDefaultArgInFrom",
    "invalid-default-arg-in-from",
    "Default value for global ARG results in an empty or invalid base image name"
);
rule!(
    FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    "FromPlatformFlagConstDisallowed",
    "from-platform-flag-const-disallowed",
    "FROM --platform flag should not use a constant value"
);
rule!(
    COPY_IGNORED_FILE,
    "CopyIgnoredFile",
    "copy-ignored-file",
    "Attempting to Copy file that is excluded by .dockerignore"
);
rule!(
    INVALID_DEFINITION_DESCRIPTION,
    "InvalidDefinitionDescription",
    "invalid-definition-description",
    "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
    true
);
rule!(
    EXPOSE_PROTO_CASING,
    "ExposeProtoCasing",
    "expose-proto-casing",
    "Protocol in EXPOSE instruction should be lowercase"
);
rule!(
    EXPOSE_INVALID_FORMAT,
    "ExposeInvalidFormat",
    "expose-invalid-format",
    "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release"
);
rule!(
    INVALID_BASE_IMAGE_PLATFORM,
    "InvalidBaseImagePlatform",
    "invalid-base-image-platform",
    "Base image platform does not match expected target platform"
);

/// Every rule, in BuildKit's order.
pub const ALL: [Rule; 22] = [
    STAGE_NAME_CASING,
    FROM_AS_CASING,
    NO_EMPTY_CONTINUATION,
    CONSISTENT_INSTRUCTION_CASING,
    DUPLICATE_STAGE_NAME,
    RESERVED_STAGE_NAME,
    JSON_ARGS_RECOMMENDED,
    MAINTAINER_DEPRECATED,
    UNDEFINED_ARG_IN_FROM,
    WORKDIR_RELATIVE_PATH,
    UNDEFINED_VAR,
    MULTIPLE_INSTRUCTIONS_DISALLOWED,
    LEGACY_KEY_VALUE_FORMAT,
    REDUNDANT_TARGET_PLATFORM,
    SECRETS_USED_IN_ARG_OR_ENV,
    INVALID_DEFAULT_ARG_IN_FROM,
    FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    COPY_IGNORED_FILE,
    INVALID_DEFINITION_DESCRIPTION,
    EXPOSE_PROTO_CASING,
    EXPOSE_INVALID_FORMAT,
    INVALID_BASE_IMAGE_PLATFORM,
];

/// `'as' and 'FROM' keywords' casing do not match`.
pub fn from_as_casing(from: &str, r#as: &str) -> String {
    format!("'{as}' and '{from}' keywords' casing do not match", as = r#as)
}

/// `Stage name 'Build' should be lowercase`.
pub fn stage_name_casing(name: &str) -> String {
    format!("Stage name '{name}' should be lowercase")
}

/// `Command 'copy' should match the case of the command majority (uppercase)`.
pub fn consistent_casing(cmd: &str, casing: &str) -> String {
    format!("Command '{cmd}' should match the case of the command majority ({casing})")
}

/// `Duplicate stage name "a", stage names should be unique`.
pub fn duplicate_stage_name(name: &str) -> String {
    format!("Duplicate stage name {}, stage names should be unique", crate::go_quote(name))
}

/// `Stage name should not use the same name as reserved stage "scratch"`.
pub fn reserved_stage_name(name: &str) -> String {
    format!("Stage name should not use the same name as reserved stage {}", crate::go_quote(name))
}

/// `JSON arguments recommended for CMD to prevent ...`.
pub fn json_args(instruction: &str) -> String {
    format!("JSON arguments recommended for {instruction} to prevent unintended behavior related to OS signals")
}

/// `FROM argument 'X' is not declared (did you mean Y?)`.
pub fn undefined_arg_in_from(arg: &str, suggest: Option<&str>) -> String {
    let mut out = format!("FROM argument '{arg}' is not declared");
    if let Some(s) = suggest {
        out.push_str(&format!(" (did you mean {s}?)"));
    }
    out
}

/// `Relative workdir "a" can have unexpected results if the base image changes`.
pub fn workdir_relative(path: &str) -> String {
    format!("Relative workdir {} can have unexpected results if the base image changes", crate::go_quote(path))
}

/// `Usage of undefined variable '$X' (did you mean $Y?)`.
pub fn undefined_var(var: &str, suggest: Option<&str>) -> String {
    let mut out = format!("Usage of undefined variable '${var}'");
    if let Some(s) = suggest {
        out.push_str(&format!(" (did you mean ${s}?)"));
    }
    out
}

/// `Multiple CMD instructions should not be used in the same stage ...`.
pub fn multiple_instructions(name: &str) -> String {
    format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used")
}

/// `"ENV key=value" should be used instead of legacy "ENV key value" format`.
pub fn legacy_key_value(cmd: &str) -> String {
    format!("\"{cmd} key=value\" should be used instead of legacy \"{cmd} key value\" format")
}

/// `Setting platform to predefined $TARGETPLATFORM in FROM is redundant ...`.
pub fn redundant_target_platform(var: &str) -> String {
    format!("Setting platform to predefined {var} in FROM is redundant as this is the default behavior")
}

/// `Do not use ARG or ENV instructions for sensitive data (ARG "TOKEN")`.
pub fn secrets(instruction: &str, key: &str) -> String {
    format!("Do not use ARG or ENV instructions for sensitive data ({instruction} {})", crate::go_quote(key))
}

/// `Default value for ARG ${BASE} results in empty or invalid base image name`.
pub fn invalid_default_arg(base: &str) -> String {
    format!("Default value for ARG {base} results in empty or invalid base image name")
}

/// `FROM --platform flag should not use constant value "linux/amd64"`.
pub fn const_platform(platform: &str) -> String {
    format!("FROM --platform flag should not use constant value {}", crate::go_quote(platform))
}

/// `Attempting to Copy file "x" that is excluded by .dockerignore`.
pub fn copy_ignored(cmd: &str, file: &str) -> String {
    format!("Attempting to {cmd} file {} that is excluded by .dockerignore", crate::go_quote(file))
}

/// ``Comment for ARG should follow the format: `# NAME <description>` ``.
pub fn invalid_description(instruction: &str, name: &str) -> String {
    format!("Comment for {instruction} should follow the format: `# {name} <description>`")
}

/// `Defined protocol '80/TCP' in EXPOSE instruction should be lowercase`.
pub fn expose_proto_casing(port: &str) -> String {
    format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase")
}

/// `EXPOSE instruction should not define an IP address or host-port mapping, found '80:80'`.
pub fn expose_invalid_format(port: &str) -> String {
    format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'")
}

/// `Base image busybox was pulled with platform "linux/amd64", expected "linux/arm64" for current build`.
pub fn invalid_base_platform(image: &str, expected: &str, actual: &str) -> String {
    format!(
        "Base image {image} was pulled with platform {}, expected {} for current build",
        crate::go_quote(actual),
        crate::go_quote(expected)
    )
}

/// Whether an ARG or ENV name looks like a secret (BuildKit's
/// `getSecretsRegex`: a denied token as the whole name or its first or
/// last `_` word, unless an allowed one is too).
pub fn is_secret_name(key: &str) -> bool {
    const DENY: [&str; 10] =
        ["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    let lower = key.to_lowercase();
    let has = |tokens: &[&str]| {
        tokens.iter().any(|t| {
            lower == *t
                || lower.starts_with(&format!("{t}_"))
                || lower.ends_with(&format!("_{t}"))
                || lower.contains(&format!("_{t}_"))
        })
    };
    has(&DENY) && !has(&ALLOW)
}
