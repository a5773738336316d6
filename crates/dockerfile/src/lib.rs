//! `polyarch-dockerfile`: Dockerfile bytes → AST with spans → typed
//! instructions, with BuildKit's semantics.
//!
//! - [`parser`]: the AST ([`parse`]), directives, heredocs, warnings.
//! - [`shell`]: word expansion ([`Lex`]).
//! - [`instructions`]: typed instructions, stages, `--target`, cycles, FROM args.
//! - [`ignore`]: `.dockerignore` reading and matching.
//! - [`gitref`]: Git references as ADD and contexts take them.
//! - [`lint`]: build checks (BuildKit's linter rules).
//!
//! ```
//! # fn main() -> Result<(), polyarch_dockerfile::Error> {
//! let ast = polyarch_dockerfile::parse(b"ARG V=3.20\nFROM alpine:$V AS build\nRUN echo hi\n")?;
//! let df = polyarch_dockerfile::instructions::parse(&ast)?;
//! assert_eq!(df.stages[0].name.as_deref(), Some("build"));
//! let env = polyarch_dockerfile::Env::from_slice(&["V=3.20"]);
//! let base = polyarch_dockerfile::Lex::new(ast.escape).process_word(&df.stages[0].base, &env)?;
//! assert_eq!(base, "alpine:3.20");
//! let ignore = polyarch_dockerfile::ignore::PatternMatcher::new(&["target", "!target/keep"])?;
//! assert!(ignore.matches_or_parent_matches("target/debug/x"));
//! # Ok(())
//! # }
//! ```

mod compat;
mod error;
pub mod gitref;
pub mod ignore;
pub mod instructions;
mod json;
pub mod lint;
pub mod parser;
mod re;
pub mod shell;
pub mod values;

pub use compat::{clean, go_quote, go_quote_rune};
pub use error::{Diagnostic, Error, ErrorKind};
pub use json::{debug_json, dump};
pub use parser::{parse, Heredoc, Node, ParseResult, Warning};
pub use shell::{Env, EnvGetter, Lex};
