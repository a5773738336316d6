//! `polyarch debug expand`: Dockerfile variable expansion of one string, as
//! BuildKit's shell lexer does it.

use std::io::Write;

use anyhow::{bail, Result};
use polyarch_dockerfile::{Env, Lex};
use serde_json::json;

/// Arguments of `polyarch debug expand`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A variable, `KEY=VALUE` (or `KEY` for an empty value); repeatable.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The escape character: `\` (default) or a backtick.
    #[arg(long, value_name = "C", default_value = "\\")]
    pub escape: String,
    /// Split the result into words, as for exec-form arguments.
    #[arg(long)]
    pub words: bool,
    /// The text to expand.
    #[arg(value_name = "STRING", allow_hyphen_values = true)]
    pub input: String,
}

/// Prints `{"result": ...}`, `{"words": [...]}` or `{"error": ...}`.
pub fn run(args: Args) -> Result<u8> {
    let escape = match args.escape.as_str() {
        "\\" => '\\',
        "`" => '`',
        other => bail!("invalid escape token '{other}' does not match ` or \\"),
    };
    let lex = Lex::new(escape);
    let env = Env::from_slice(&args.env);
    let out = if args.words {
        lex.process_words(&args.input, &env).map(|w| json!({ "words": w }))
    } else {
        lex.process_word(&args.input, &env).map(|r| json!({ "result": r }))
    };
    let mut stdout = crate::report::Stdout;
    match out {
        Ok(v) => {
            writeln!(stdout, "{v}")?;
            Ok(0)
        }
        Err(e) => {
            writeln!(stdout, "{}", json!({ "error": e.to_string() }))?;
            eprintln!("error: {e}");
            Ok(1)
        }
    }
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
    fn parses_arguments() {
        let cli = Cli::parse_from(["x", "--env", "A=1", "--escape", "`", "--words", "-$A"]);
        assert_eq!(cli.args.env, vec!["A=1"]);
        assert_eq!(cli.args.escape, "`");
        assert!(cli.args.words);
        assert_eq!(cli.args.input, "-$A");
    }
}
