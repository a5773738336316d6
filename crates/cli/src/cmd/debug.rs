//! `polyarch debug ...`: troubleshooting commands that print one JSON object
//! per input.

use anyhow::Result;
use clap::Subcommand;

use super::GlobalArgs;

#[derive(Subcommand)]
pub enum DebugCommand {
    /// How a Dockerfile is parsed (as BuildKit), as JSON.
    Dockerfile(super::debug_dockerfile::Args),
    /// How Dockerfile variables in a string expand (as BuildKit's shell lexer).
    Expand(super::debug_expand::Args),
    /// Whether paths are excluded by .dockerignore patterns.
    Ignore(super::debug_ignore::Args),
    /// The build graph of a Dockerfile for every platform at once, as JSON or Graphviz dot.
    Plan(Box<super::debug_plan::Args>),
    /// How platform strings are read (as containerd) and what they match.
    Platform(super::debug_platform::Args),
    /// How image references are read (as distribution/reference).
    Reference(super::debug_reference::Args),
}

pub fn run(global: &GlobalArgs, cmd: DebugCommand) -> Result<u8> {
    match cmd {
        DebugCommand::Dockerfile(args) => super::debug_dockerfile::run(args),
        DebugCommand::Expand(args) => super::debug_expand::run(args),
        DebugCommand::Ignore(args) => super::debug_ignore::run(args),
        DebugCommand::Plan(args) => super::debug_plan::run(global, *args),
        DebugCommand::Platform(args) => super::debug_platform::run(args),
        DebugCommand::Reference(args) => super::debug_reference::run(args),
    }
}
