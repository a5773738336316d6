//! `polyarch debug ...`: troubleshooting commands that print one JSON object
//! per input.

use anyhow::Result;
use clap::Subcommand;

use super::GlobalArgs;

#[derive(Subcommand)]
pub enum DebugCommand {
}

pub fn run(_global: &GlobalArgs, cmd: DebugCommand) -> Result<u8> {
    match cmd {}
}
