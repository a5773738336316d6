//! `polyarch debug ...`: troubleshooting commands that print one JSON object
//! per input.

use anyhow::Result;
use clap::Subcommand;

use super::GlobalArgs;

#[derive(Subcommand)]
pub enum DebugCommand {
    /// How platform strings are read (as containerd) and what they match.
    Platform(super::debug_platform::Args),
    /// How image references are read (as distribution/reference).
    Reference(super::debug_reference::Args),
}

pub fn run(_global: &GlobalArgs, cmd: DebugCommand) -> Result<u8> {
    match cmd {
        DebugCommand::Platform(args) => super::debug_platform::run(args),
        DebugCommand::Reference(args) => super::debug_reference::run(args),
    }
}
