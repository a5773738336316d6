//! Typed instructions built from the AST, with BuildKit's checks and error
//! texts (`instructions/parse.go`), grouped into build stages.

mod bflag;
mod commands;
mod duration;
mod mount;
mod stages;

use serde::Serialize;

pub use bflag::search;
pub use duration::parse_duration;
pub use mount::Mount;
pub use stages::{expand_from, ExpandedFrom, PROXY_ARGS};

use crate::parser::{Node, ParseResult};
use crate::Error;

/// A `KEY=value` pair of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, unexpanded.
    pub key: String,
    /// The value, unexpanded (quotes still present).
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// One ARG name with its optional default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    /// The name.
    pub key: String,
    /// The default, unexpanded.
    pub value: Option<String>,
}

/// A here-document used as a script file (RUN) or copied content (COPY/ADD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// The delimiter word, used as the file name.
    pub name: String,
    /// The content; for COPY/ADD with `<<-` leading tabs are already removed.
    pub data: String,
    /// Whether variables in the content should be expanded.
    pub expand: bool,
    /// Whether it was opened with `<<-`.
    pub chomp: bool,
}

/// The command of RUN, CMD, ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CmdLine {
    /// Exec-form arguments, or the single shell-form string.
    pub args: Vec<String>,
    /// Shell form: run through the SHELL.
    pub prepend_shell: bool,
    /// Here-documents attached to the instruction.
    pub files: Vec<InlineFile>,
}

/// FROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromStage {
    /// The image or stage name, unexpanded.
    pub base: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Source paths (not here-documents).
    pub sources: Vec<String>,
    /// Here-documents used as sources.
    pub contents: Vec<InlineFile>,
    /// The destination.
    pub dest: String,
    /// `--from` (COPY only).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude`, repeatable.
    pub excludes: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD only), if given.
    pub unpack: Option<bool>,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub cmd: CmdLine,
    /// `--mount`, repeatable.
    pub mounts: Vec<Mount>,
    /// `--network`: `default`, `none` or `host`.
    pub network: Option<String>,
    /// `--security`: `sandbox` or `insecure`.
    pub security: Option<String>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` (exec form) or `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    /// `--interval` in nanoseconds (0 when unset).
    pub interval: u64,
    /// `--timeout` in nanoseconds.
    pub timeout: u64,
    /// `--start-period` in nanoseconds.
    pub start_period: u64,
    /// `--start-interval` in nanoseconds.
    pub start_interval: u64,
    /// `--retries` (0 when unset).
    pub retries: i64,
}

/// A typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Instruction {
    /// FROM: starts a stage.
    From(FromStage),
    /// RUN.
    Run(Run),
    /// CMD.
    Cmd(CmdLine),
    /// ENTRYPOINT.
    Entrypoint(CmdLine),
    /// SHELL (JSON form only).
    Shell(Vec<String>),
    /// COPY.
    Copy(Copy),
    /// ADD.
    Add(Copy),
    /// ENV.
    Env(Vec<KeyValue>),
    /// LABEL.
    Label(Vec<KeyValue>),
    /// ARG.
    Arg(Vec<ArgDef>),
    /// EXPOSE.
    Expose(Vec<String>),
    /// VOLUME.
    Volume(Vec<String>),
    /// USER.
    User(String),
    /// WORKDIR.
    Workdir(String),
    /// STOPSIGNAL.
    Stopsignal(String),
    /// MAINTAINER (deprecated).
    Maintainer(String),
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// ONBUILD: the trigger expression, kept as text.
    Onbuild(String),
}

/// An instruction with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    /// What it is.
    pub instruction: Instruction,
    /// First line, 1-based.
    pub start_line: usize,
    /// Last line.
    pub end_line: usize,
    /// The logical source line.
    pub original: String,
}

/// One build stage: a FROM and what follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position among stages (usable as `COPY --from=<index>`).
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// Base image or stage, unexpanded.
    pub base: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// Line of the FROM.
    pub line: usize,
    /// The instructions after FROM.
    pub commands: Vec<Command>,
}

/// A whole Dockerfile in typed form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// ARGs before the first FROM, usable in FROM lines.
    pub meta_args: Vec<ArgDef>,
    /// The stages in order.
    pub stages: Vec<Stage>,
}

/// The instruction names BuildKit knows.
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Converts one AST node into a typed instruction.
pub fn parse_instruction(node: &Node) -> Result<Command, Error> {
    let instruction = commands::parse(node).map_err(|e| Error::Instruction {
        message: e.message,
        start_line: node.start_line,
        end_line: node.end_line,
        token: e.token,
    })?;
    Ok(Command { instruction, start_line: node.start_line, end_line: node.end_line, original: node.original.clone() })
}

/// Converts a parsed Dockerfile into meta ARGs and stages.
pub fn parse(ast: &ParseResult) -> Result<Dockerfile, Error> {
    let mut df = Dockerfile { meta_args: Vec::new(), stages: Vec::new() };
    for node in &ast.nodes {
        let cmd = parse_instruction(node)?;
        match cmd.instruction {
            Instruction::Arg(args) if df.stages.is_empty() => df.meta_args.extend(args),
            Instruction::From(f) => df.stages.push(Stage {
                index: df.stages.len(),
                name: f.name,
                base: f.base,
                platform: f.platform,
                line: cmd.start_line,
                commands: Vec::new(),
            }),
            _ => match df.stages.last_mut() {
                Some(stage) => stage.commands.push(cmd),
                None => {
                    return Err(Error::Instruction {
                        message: "no build stage in current context".into(),
                        start_line: node.start_line,
                        end_line: node.end_line,
                        token: None,
                    })
                }
            },
        }
    }
    Ok(df)
}

#[cfg(test)]
mod tests;
