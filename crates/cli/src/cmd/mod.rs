//! One module per command group. Each exposes clap argument types and a
//! `run` function that returns the process exit code.

pub mod archive;
pub mod binfmt;
pub mod build;
pub mod builder;
pub mod builder_driver;
pub mod cache;
pub mod completion;
pub mod context;
pub mod debug;
pub mod debug_dockerfile;
pub mod debug_expand;
pub mod debug_ignore;
pub mod debug_plan;
pub mod debug_platform;
pub mod debug_reference;
pub mod doctor;
pub mod engine;
pub mod gcconfig;
pub mod history;
pub mod image;
pub mod images;
pub mod imagetools;
pub mod login;
pub mod manifest;
pub mod output;
pub mod plugin;
pub mod pull;
pub mod run;
pub mod version;
pub mod worker;

use std::path::PathBuf;

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// The polyarch config file (default $XDG_CONFIG_HOME/polyarch/polyarch.toml).
    #[arg(long, global = true, env = "POLYARCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The local store and state directory (default /var/lib/polyarch for root,
    /// $XDG_DATA_HOME/polyarch otherwise).
    #[arg(long, global = true, env = "POLYARCH_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Debug logs on stderr (as buildx's `-D/--debug`; also `BUILDX_DEBUG=1`).
    #[arg(short = 'D', long, global = true, env = "BUILDX_DEBUG", value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,
}

impl GlobalArgs {
    /// Prints a debug log line on stderr with `-D/--debug`.
    pub fn debug(&self, message: impl FnOnce() -> String) {
        if self.debug {
            eprintln!("DEBUG: {}", message());
        }
    }
}
