//! `polyarch-dockerfile`: Dockerfile bytes → AST with spans → typed
//! instructions, with BuildKit's semantics.
//!
//! - [`parser`]: the AST ([`parse`]), directives, heredocs, warnings.
//! - [`shell`]: word expansion ([`Lex`]).
//! - [`instructions`]: typed instructions, stages, `--target`, cycles, FROM args.
//! - [`ignore`]: `.dockerignore` reading and matching.

mod compat;
mod error;
pub mod ignore;
pub mod instructions;
mod json;
pub mod parser;
mod re;
pub mod shell;

pub use compat::{clean, go_quote};
pub use error::{Diagnostic, Error, ErrorKind};
pub use json::{debug_json, dump};
pub use parser::{parse, Heredoc, Node, ParseResult, Warning};
pub use shell::{Env, EnvGetter, Lex};
