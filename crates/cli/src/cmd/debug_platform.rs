//! `polyarch debug platform`: how polyarch (following containerd) reads
//! platform strings, and which candidates each one accepts.

use std::io::Write;

use anyhow::{Context, Result};
use polyarch_oci::platform::parse_warning;
use polyarch_oci::Platform;
use serde_json::{Map, Value};

/// Arguments of `polyarch debug platform`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The platform standing in for this machine where a STRING leaves
    /// parts out (default: this machine).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub host: Option<String>,
    /// Comma-separated platforms; for each STRING, print those it accepts
    /// (as containerd's `Only`), best first.
    #[arg(long, value_name = "P1,P2,...", value_delimiter = ',')]
    pub candidates: Vec<String>,
    /// Platform strings, e.g. `linux/arm64`, `armhf`, `windows(10.0.17763)/amd64`.
    #[arg(required = true, value_name = "STRING")]
    pub inputs: Vec<String>,
}

/// Prints one JSON object per input; exit code 0 when every input parses.
pub fn run(args: Args) -> Result<u8> {
    let host = match &args.host {
        Some(h) => Platform::parse(h).with_context(|| format!("--host {h:?}"))?,
        None => Platform::host(),
    };
    let candidates = args
        .candidates
        .iter()
        .map(|c| {
            Platform::parse_with_host(c, &host).map(|p| (c.as_str(), p)).with_context(|| format!("--candidates {c:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = crate::report::Stdout;
    let mut code = 0;
    for input in &args.inputs {
        if let Some(w) = parse_warning(input) {
            eprintln!("warning: {w}");
        }
        let line = match Platform::parse_with_host(input, &host) {
            Ok(p) => describe(input, &p, &candidates, args.candidates.is_empty()),
            Err(e) => {
                code = 1;
                let mut m = Map::new();
                m.insert("input".into(), input.as_str().into());
                m.insert("error".into(), e.to_string().into());
                m
            }
        };
        writeln!(out, "{}", Value::Object(line))?;
    }
    Ok(code)
}

fn describe(input: &str, p: &Platform, candidates: &[(&str, Platform)], no_candidates: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("input".into(), input.into());
    m.insert("os".into(), p.os.as_str().into());
    m.insert("architecture".into(), p.architecture.as_str().into());
    m.insert("variant".into(), p.variant_str().into());
    m.insert("os_version".into(), p.os_version_str().into());
    m.insert("os_features".into(), p.os_features_slice().iter().map(|f| Value::from(f.as_str())).collect());
    m.insert("normalized".into(), p.normalize().format_all().into());
    if !no_candidates {
        let matcher = p.only();
        let mut accepted: Vec<&(&str, Platform)> = candidates.iter().filter(|(_, c)| matcher.matches(c)).collect();
        accepted.sort_by(|a, b| matcher.compare(&a.1, &b.1));
        m.insert("matches".into(), accepted.iter().map(|(s, _)| Value::from(*s)).collect());
    }
    m
}
