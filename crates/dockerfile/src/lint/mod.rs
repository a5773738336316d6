//! Build checks: BuildKit's Dockerfile linter (`frontend/dockerfile/linter`
//! and the checks of `dockerfile2llb`), with its rule names, messages and
//! links, the `# check=` directive and per-instruction `# check=` comments.
//!
//! [`lint`] walks the Dockerfile once, as BuildKit's dispatcher does, and
//! returns every [`Warning`] the configuration does not skip.

mod check;
mod render;
pub mod rules;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use render::{render, render_expanded};
pub use rules::Rule;

use crate::parser::ParseResult;

/// One build check warning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The rule name, e.g. `FromAsCasing`.
    pub rule: &'static str,
    /// The rule's description.
    pub description: &'static str,
    /// The rule's documentation link.
    pub url: &'static str,
    /// The message for this occurrence.
    pub message: String,
    /// First line of the instruction, 1-based.
    pub start_line: usize,
    /// Last line of the instruction.
    pub end_line: usize,
}

impl Warning {
    /// buildx's one-line form: `Rule: message (line N)`.
    pub fn short(&self) -> String {
        if self.start_line > 0 {
            format!("{}: {} (line {})", self.rule, self.message, self.start_line)
        } else {
            format!("{}: {}", self.rule, self.message)
        }
    }
}

/// The `check` options (`# check=skip=A,B;error=true;experimental=C`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `skip=all`.
    pub skip_all: bool,
    /// `skip=A,B`.
    pub skip: Vec<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `experimental=A,B`.
    pub experimental: Vec<String>,
    /// `error=true`: warnings fail the build.
    pub error: bool,
}

/// A malformed `check` option, with BuildKit's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses the value of a `check` directive or of the
    /// `BUILDKIT_DOCKERFILE_CHECK` build argument (BuildKit's `ParseLintOptions`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(c);
        }
        for part in text.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(ConfigError(format!("invalid check option {}", crate::go_quote(part))));
            };
            let v = v.trim();
            let list = || v.split(',').map(|r| r.trim().to_string()).collect::<Vec<_>>();
            match k.trim() {
                "skip" if v == "all" => c.skip_all = true,
                "skip" => c.skip = list(),
                "experimental" if v == "all" => c.experimental_all = true,
                "experimental" => c.experimental = list(),
                "error" => {
                    c.error = parse_go_bool(v).ok_or_else(|| {
                        ConfigError(format!(
                            "failed to parse check option {}: strconv.ParseBool: parsing {}: invalid syntax",
                            crate::go_quote(part),
                            crate::go_quote(v)
                        ))
                    })?
                }
                other => return Err(ConfigError(format!("invalid check option {}", crate::go_quote(other)))),
            }
        }
        Ok(c)
    }

    /// This configuration with `other` merged in (BuildKit's `WithMergedConfig`).
    pub fn merged(&self, other: &Config) -> Config {
        let mut c = self.clone();
        c.skip_all |= other.skip_all;
        c.experimental_all |= other.experimental_all;
        c.skip.extend(other.skip.iter().cloned());
        c.experimental.extend(other.experimental.iter().cloned());
        c
    }

    /// Whether a warning of `rule` is reported.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.iter().any(|r| r == rule.name)
        } else {
            !self.skip_all && !self.skip.iter().any(|r| r == rule.name)
        }
    }

    /// The config of an instruction with `# check=` comments above it:
    /// the first such comment is merged in.
    pub fn with_comments(&self, comments: &[String]) -> Config {
        for c in comments {
            let Some((name, value)) = crate::parser::match_directive(c) else { continue };
            if !name.eq_ignore_ascii_case("check") {
                continue;
            }
            let value = value.split(' ').next().unwrap_or("");
            return match Config::parse(value) {
                Ok(other) => self.merged(&other),
                Err(_) => self.clone(),
            };
        }
        self.clone()
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A base image of another platform than asked for: the image, the
/// expected and the actual platform.
pub type PlatformMismatch = (String, String, String);

/// What the linter knows beyond the Dockerfile.
#[derive(Default)]
pub struct Options<'a> {
    /// `--build-arg` values.
    pub build_args: HashMap<String, String>,
    /// Predefined platform ARGs (`TARGETPLATFORM`, `BUILDOS`, ...).
    pub builtins: HashMap<String, String>,
    /// The environment (`KEY=value`) of the image stage `i` starts from,
    /// when it is a registry image; `None` leaves UndefinedVar unchecked in
    /// that stage (the image's variables are not known).
    pub base_env: Option<&'a dyn Fn(usize) -> Option<Vec<String>>>,
    /// For a stage `i` whose registry image has another platform than the
    /// one it was asked for: the image, the expected and the actual
    /// platform (InvalidBaseImagePlatform).
    pub base_platform: Option<&'a dyn Fn(usize) -> Option<PlatformMismatch>>,
    /// The `.dockerignore` patterns, for CopyIgnoredFile.
    pub ignore: Option<&'a crate::ignore::PatternMatcher>,
    /// `BUILDKIT_DOCKERFILE_CHECK`: replaces the `# check=` directive.
    pub config: Option<Config>,
    /// The stages whose instructions are checked (those a build of the
    /// target dispatches); `None` checks all, as `--check` without
    /// `--target`. The rules on the FROM lines and names check all stages.
    pub stages: Option<Vec<usize>>,
}

/// The outcome of [`lint`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The warnings, in the order BuildKit reports them.
    pub warnings: Vec<Warning>,
    /// The configuration in effect (`error=true` fails a build).
    pub config: Config,
}

impl Report {
    /// BuildKit's `lint violation found for rules: A, B` when `error=true`
    /// and there are warnings.
    pub fn error(&self) -> Option<String> {
        if !self.config.error || self.warnings.is_empty() {
            return None;
        }
        let mut rules: Vec<&str> = Vec::new();
        for w in &self.warnings {
            if !rules.contains(&w.rule) {
                rules.push(w.rule);
            }
        }
        Some(format!("lint violation found for rules: {}", rules.join(", ")))
    }
}

/// Runs every build check over a parsed Dockerfile.
pub fn lint(ast: &ParseResult, opts: &Options) -> Result<Report, crate::Error> {
    let config = match &opts.config {
        Some(c) => c.clone(),
        None => Config::parse(ast.directive("check").unwrap_or(""))
            .map_err(|e| crate::Error::Stage { message: format!("failed to parse check options: {e}"), line: 0 })?,
    };
    let warnings = check::Checker::new(ast, opts, &config).run()?;
    Ok(Report { warnings, config })
}
