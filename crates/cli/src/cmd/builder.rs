//! `polyarch builder`: the local build node and the platforms it runs, in
//! the layout of `docker buildx ls`.

use anyhow::Result;
use clap::{Args, Subcommand};
use polyarch_emu::{host, Arch, Status};
use serde_json::json;

use super::binfmt::{host_status, out, outln, table, StatusFormat};
use super::GlobalArgs;

/// polyarch's version, in the column where buildx shows BuildKit's.
const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// List builders and their platforms (as `docker buildx ls`).
    Ls(LsArgs),
}

#[derive(Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: StatusFormat,
}

pub fn run(_global: &GlobalArgs, cmd: BuilderCommand) -> Result<u8> {
    match cmd {
        BuilderCommand::Ls(a) => ls(a),
    }
}

/// The node's platforms: native ones first (the host's first), then
/// emulated ones. amd64 stands for its microarchitecture levels too,
/// which the table folds into `(+N)` as buildx does.
fn node_platforms(s: &Status, amd64_level: u8) -> (Vec<String>, Vec<String>) {
    let mut table = Vec::new();
    let mut all = Vec::new();
    for arch in s.native().into_iter().chain(s.emulated()) {
        for p in arch.platforms() {
            let f = p.format();
            if arch == Arch::Amd64 && amd64_level > 1 {
                table.push(format!("{f} (+{})", amd64_level - 1));
                all.push(f.clone());
                all.extend((2..=amd64_level).map(|v| format!("{f}/v{v}")));
            } else {
                table.push(f.clone());
                all.push(f);
            }
        }
    }
    (table, all)
}

fn ls(args: LsArgs) -> Result<u8> {
    let s = host_status(None)?;
    let level = if s.native().contains(&Arch::Amd64) { host::host_amd64_level() } else { 1 };
    let (shown, all) = node_platforms(&s, level);
    if args.format == StatusFormat::Json {
        let doc = json!([{
            "name": "default",
            "driver": "polyarch",
            "current": true,
            "nodes": [{
                "name": "default",
                "endpoint": "local",
                "status": "running",
                "version": VERSION,
                "platforms": all,
            }],
        }]);
        outln(&serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    let rows = vec![
        ["NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "POLYARCH", "PLATFORMS"].map(String::from).to_vec(),
        ["default*", "polyarch", "", "", ""].map(String::from).to_vec(),
        [" \\_ default", " \\_ local", "running", VERSION, &shown.join(", ")].map(String::from).to_vec(),
    ];
    out(&table(&rows));
    Ok(0)
}
