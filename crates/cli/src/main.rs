//! `polyarch`: build, assemble, check and ship multi-architecture container
//! images, with no daemon.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "polyarch", version, about = "Build, assemble, check and ship multi-architecture container images, with no daemon")]
struct Cli {
    #[command(flatten)]
    global: cmd::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Troubleshooting commands that print JSON.
    #[command(subcommand)]
    Debug(cmd::debug::DebugCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(c) => cmd::debug::run(&cli.global, c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
