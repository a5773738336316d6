//! `polyarch debug dockerfile`: the parsed form of a Dockerfile, the way
//! BuildKit's parser reads it.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Arguments of `polyarch debug dockerfile`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only parse; do not check instructions, flags and stages.
    #[arg(long)]
    pub ast_only: bool,
    /// The Dockerfile (`-` for standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Prints the AST as one JSON object; exit code 1 when the file is rejected.
pub fn run(args: Args) -> Result<u8> {
    let (name, src) = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
        ("-".to_string(), buf)
    } else {
        let src = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
        (args.file.display().to_string(), src)
    };
    let text = String::from_utf8_lossy(&src);
    let reject = |e: polyarch_dockerfile::Error| {
        eprintln!("{}", e.diagnostic(&name, &text).render());
        Ok(1)
    };
    let ast = match polyarch_dockerfile::parse(&src) {
        Ok(a) => a,
        Err(e) => return reject(e),
    };
    if !args.ast_only {
        let checked = polyarch_dockerfile::instructions::parse(&ast)
            .and_then(|df| df.check_sources().and_then(|()| df.check_cycles()));
        if let Err(e) = checked {
            return reject(e);
        }
    }
    let mut out = crate::report::Stdout;
    writeln!(out, "{}", polyarch_dockerfile::debug_json(&ast))?;
    Ok(0)
}
