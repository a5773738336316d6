//! `polyarch worker`: what a build node runs on behalf of another machine's
//! polyarch. `--probe` reports the node's version and the platforms it
//! executes, as one JSON line, for `builder create --bootstrap`.

use anyhow::{bail, Result};
use clap::Args;
use polyarch_emu::{Arch, Status};

use super::binfmt::{host_status, outln};
use super::GlobalArgs;
use crate::builders::{Probe, VERSION};

#[derive(Args)]
pub struct WorkerArgs {
    /// Print this node's version and native and emulated platforms as JSON.
    #[arg(long)]
    probe: bool,
}

pub fn run(_global: &GlobalArgs, args: WorkerArgs) -> Result<u8> {
    if !args.probe {
        bail!("nothing to do: `polyarch worker` needs --probe");
    }
    outln(&serde_json::to_string(&local_probe()?)?);
    Ok(0)
}

/// This machine's probe: platforms that run natively (the host's first),
/// then those that run through an emulator.
pub fn local_probe() -> Result<Probe> {
    Ok(probe_from(&host_status(None)?))
}

fn probe_from(s: &Status) -> Probe {
    let formats = |archs: Vec<Arch>| archs.into_iter().flat_map(|a| a.platforms()).map(|p| p.format()).collect();
    Probe { version: VERSION.to_string(), native: formats(s.native()), emulated: formats(s.emulated()) }
}
