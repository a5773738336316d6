//! `polyarch debug ignore`: whether paths are left out of the build context
//! by `.dockerignore` patterns.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use polyarch_dockerfile::ignore::{read_all, PatternMatcher};
use serde_json::json;

/// Orders `--file` and `--pattern` values as they appear on the command line.
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A `--file` or `--pattern` value with its position on the command line.
#[derive(Clone, Debug)]
pub struct Ordered<T> {
    seq: usize,
    value: T,
}

fn ordered_file(s: &str) -> Result<Ordered<PathBuf>, String> {
    Ok(Ordered { seq: SEQ.fetch_add(1, Ordering::SeqCst), value: PathBuf::from(s) })
}

fn ordered_pattern(s: &str) -> Result<Ordered<String>, String> {
    Ok(Ordered { seq: SEQ.fetch_add(1, Ordering::SeqCst), value: s.to_string() })
}

/// Arguments of `polyarch debug ignore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A `.dockerignore` file to read patterns from; repeatable.
    #[arg(long = "file", value_name = "PATH", value_parser = ordered_file)]
    pub files: Vec<Ordered<PathBuf>>,
    /// One pattern, as a line of `.dockerignore`; repeatable.
    #[arg(long = "pattern", value_name = "P", value_parser = ordered_pattern, allow_hyphen_values = true)]
    pub patterns: Vec<Ordered<String>>,
    /// Paths relative to the context root, slash-separated.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

/// Prints `{"path", "excluded"}` per PATH; exit code 1 on a bad pattern.
pub fn run(args: Args) -> Result<u8> {
    let mut sources: Vec<(usize, Vec<String>)> = Vec::new();
    for f in &args.files {
        let text = std::fs::read_to_string(&f.value).with_context(|| format!("reading {}", f.value.display()))?;
        sources.push((f.seq, read_all(&text)));
    }
    for p in &args.patterns {
        sources.push((p.seq, read_all(&p.value)));
    }
    sources.sort_by_key(|(seq, _)| *seq);
    let patterns: Vec<String> = sources.into_iter().flat_map(|(_, p)| p).collect();
    let pm = match PatternMatcher::new(&patterns) {
        Ok(pm) => pm,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let mut out = crate::report::Stdout;
    for path in &args.paths {
        let clean = polyarch_dockerfile::clean(path.trim_start_matches('/'));
        let excluded = clean != "." && pm.matches_or_parent_matches(&clean);
        writeln!(out, "{}", json!({ "path": path, "excluded": excluded }))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn keeps_command_line_order() {
        let cli = Cli::parse_from(["x", "--pattern", "a", "--file", "f", "--pattern", "!b", "p"]);
        let a = &cli.args;
        assert!(a.patterns[0].seq < a.files[0].seq);
        assert!(a.files[0].seq < a.patterns[1].seq);
        assert_eq!(a.patterns[1].value, "!b");
        assert_eq!(a.paths, vec!["p"]);
    }
}
