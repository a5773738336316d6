//! `polyarch debug reference`: how polyarch (following
//! distribution/reference) reads image references.

use std::io::Write;

use anyhow::Result;
use polyarch_oci::Reference;
use serde_json::{Map, Value};

/// Arguments of `polyarch debug reference`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image references, e.g. `busybox`, `ghcr.io/org/app:1.2@sha256:...`.
    #[arg(required = true, value_name = "REF")]
    pub inputs: Vec<String>,
}

/// Prints one JSON object per input; exit code 0 when every input parses.
pub fn run(args: Args) -> Result<u8> {
    let mut out = crate::report::Stdout;
    let mut code = 0;
    for input in &args.inputs {
        let mut m = Map::new();
        m.insert("input".into(), input.as_str().into());
        match Reference::parse_normalized(input) {
            Ok(r) => {
                m.insert("name".into(), r.name().into());
                m.insert("domain".into(), r.domain.as_str().into());
                m.insert("path".into(), r.path.as_str().into());
                m.insert("tag".into(), r.tag.clone().map_or(Value::Null, Value::from));
                m.insert("digest".into(), r.digest.as_ref().map_or(Value::Null, |d| d.to_string().into()));
                m.insert("familiar".into(), r.familiar_string().into());
            }
            Err(e) => {
                code = 1;
                m.insert("error".into(), e.to_string().into());
            }
        }
        writeln!(out, "{}", Value::Object(m))?;
    }
    Ok(code)
}
