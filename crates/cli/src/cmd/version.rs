//! `polyarch version`: the version and commit, as `docker buildx version`
//! prints them (`polyarch v0.1.0 2f45c26`), or JSON or a Go template.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::template::{self, Format};

#[derive(Args)]
pub struct VersionArgs {
    /// `json` or a Go template over it (`{{.Version}}`, `{{.Commit}}`).
    #[arg(short, long, value_parser = template::format_arg)]
    format: Option<Format>,
}

/// `v` and the crate's version (`v0.1.0`).
pub fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

fn info() -> Value {
    let host = polyarch_oci::Platform::host().format();
    json!({
        "Name": "polyarch",
        "Version": version(),
        "Commit": env!("POLYARCH_COMMIT"),
        "Rustc": env!("POLYARCH_RUSTC"),
        "Platform": host,
    })
}

pub fn run(a: VersionArgs) -> Result<u8> {
    let v = info();
    let text = match a.format {
        Some(Format::Json) => format!("{v}\n"),
        Some(Format::Template { template, table }) => template::render_rows(&template, table, &[v], &[])?,
        Some(Format::Default) | None => format!("polyarch {} {}\n", version(), env!("POLYARCH_COMMIT")),
    };
    super::images::emit(&text)?;
    Ok(0)
}
