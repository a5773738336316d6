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
    /// Assemble, inspect and push local manifest lists (as `docker manifest`).
    #[command(subcommand)]
    Manifest(cmd::manifest::ManifestCommand),
    /// Create and inspect indexes in registries (as `docker buildx imagetools`).
    #[command(subcommand)]
    Imagetools(cmd::imagetools::ImagetoolsCommand),
    /// Store credentials for a registry in the docker config.
    Login(cmd::login::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(cmd::login::LogoutArgs),
    /// Troubleshooting commands that print JSON.
    #[command(subcommand)]
    Debug(cmd::debug::DebugCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    let result = match cli.command {
        Command::Manifest(c) => cmd::manifest::run(g, c),
        Command::Imagetools(c) => cmd::imagetools::run(g, c),
        Command::Login(a) => cmd::login::login(g, a),
        Command::Logout(a) => cmd::login::logout(a),
        Command::Debug(c) => cmd::debug::run(g, c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
