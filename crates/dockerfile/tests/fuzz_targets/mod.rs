//! The fuzz targets of `polyarch-dockerfile`, shared by `tests/fuzz.rs`
//! (bounded, under `cargo test`) and the cargo-fuzz targets under `fuzz/`.

use polyarch_dockerfile::ignore::{read_all, PatternMatcher};
use polyarch_dockerfile::{instructions, Env, Lex};

/// Tokens for Dockerfiles.
#[rustfmt::skip]
pub const DOCKERFILE_DICT: &[&str] = &[
    "FROM ", "RUN ", "COPY ", "ADD ", "ARG ", "ENV ", "ONBUILD ", "HEALTHCHECK ", "SHELL ", " AS ", "--from=",
    "--mount=", "--platform=", "<<EOF\n", "<<-EOF\n", "\nEOF\n", "\\\n", "`\n", "# escape=`\n", "# syntax=x\n",
    "[\"", "\"]", "${", "}", "=", ",", "\n", " ",
];

fn env() -> Env {
    Env::from_slice(&["A=abc", "B=x y", "EMPTY=", "C=***", "LONG=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])
}

/// A Dockerfile through the parser, the typed instructions, the stage
/// graph and the expansion of its FROM lines.
pub fn dockerfile(input: &[u8]) {
    let Ok(ast) = polyarch_dockerfile::parse(input) else { return };
    let _ = (polyarch_dockerfile::debug_json(&ast), polyarch_dockerfile::dump(&ast));
    let Ok(df) = instructions::parse(&ast) else { return };
    let _ = (df.check_cycles(), df.target(None), df.target(Some("a")));
    let lex = Lex::new(ast.escape);
    let env = env();
    for s in &df.stages {
        let _ = lex.process_word(&s.base, &env);
        if let Some(p) = &s.platform {
            let _ = lex.process_words(p, &env);
        }
    }
}

/// Tokens for words.
#[rustfmt::skip]
pub const EXPAND_DICT: &[&str] = &[
    "$", "${", "}", ":-", ":+", ":?", "-", "+", "?", "#", "##", "%", "%%", "*", "\\", "'", "\"", "A", "B", "EMPTY",
    "LONG", "C", "UNSET", "[", "]",
];

/// A word expanded with both escape characters and every lexer option.
pub fn expand(input: &[u8]) {
    let word = String::from_utf8_lossy(input);
    let env = env();
    for escape in ['\\', '`'] {
        let mut lex = Lex::new(escape);
        let _ = lex.process(&word, &env);
        lex.raw_quotes = true;
        lex.skip_unset_env = true;
        let _ = lex.process_words(&word, &env);
        lex.skip_process_quotes = true;
        lex.raw_escapes = true;
        let _ = lex.process_word(&word, &env);
    }
}

/// Tokens for `.dockerignore` files.
pub const DOCKERIGNORE_DICT: &[&str] = &["**", "*", "?", "[", "]", "[^", "!", "/", "\\", "..", "#", "\n", "a-z"];

/// A `.dockerignore` file compiled and matched against a few paths.
pub fn dockerignore(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let patterns = read_all(&text);
    let Ok(m) = PatternMatcher::new(&patterns) else { return };
    for file in ["target/keep", "a/b/c.o", "x", "aa/b", "[x]/y", ".."] {
        let _ = (m.matches_or_parent_matches(file), m.matches_exact(file), m.matches_single_parent(file));
    }
}
