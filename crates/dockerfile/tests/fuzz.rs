//! Fuzzing the Dockerfile parser, word expansion and `.dockerignore`
//! patterns: any input gives a value or an error with a place, never a
//! panic, within time and memory linear in the input.

use std::path::{Path, PathBuf};

use polyarch_dockerfile::ignore::{read_all, PatternMatcher};
use polyarch_dockerfile::{instructions, Env, Lex};
use polyarch_fuzzing::{Counting, Fuzz};

#[global_allocator]
static A: Counting = Counting;

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The golden Dockerfiles, positive and negative, as extra seeds.
fn with_golden(mut f: Fuzz) -> Fuzz {
    for set in ["testdata", "testdata-negative"] {
        let Ok(rd) = std::fs::read_dir(dir(set)) else { continue };
        for e in rd.filter_map(Result::ok) {
            if let Ok(bytes) = std::fs::read(e.path().join("Dockerfile")) {
                f = f.with_seed(format!("{set}/{}", e.file_name().to_string_lossy()), bytes);
            }
        }
    }
    f
}

fn env() -> Env {
    Env::from_slice(&["A=abc", "B=x y", "EMPTY=", "C=***", "LONG=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])
}

#[test]
fn fuzz_dockerfile() {
    let dict = [
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ARG ",
        "ENV ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "SHELL ",
        " AS ",
        "--from=",
        "--mount=",
        "--platform=",
        "<<EOF\n",
        "<<-EOF\n",
        "\nEOF\n",
        "\\\n",
        "`\n",
        "# escape=`\n",
        "# syntax=x\n",
        "[\"",
        "\"]",
        "${",
        "}",
        "=",
        ",",
        "\n",
        " ",
    ];
    let fuzz = with_golden(Fuzz::new("dockerfile", dir("testdata/fuzz/dockerfile")))
        .with_dict(&dict)
        .with_max_len(8192)
        .with_memory(1 << 20, 1024);
    let report = fuzz.run(|input| {
        let Ok(ast) = polyarch_dockerfile::parse(input) else { return };
        let _ = (polyarch_dockerfile::debug_json(&ast), polyarch_dockerfile::dump(&ast));
        let Ok(df) = instructions::parse(&ast) else { return };
        let _ = (df.check_cycles(), df.target(None), df.target(Some("a")));
        let lex = Lex::new(ast.escape);
        for s in &df.stages {
            let _ = lex.process_word(&s.base, &env());
            if let Some(p) = &s.platform {
                let _ = lex.process_words(p, &env());
            }
        }
    });
    eprintln!("dockerfile: {report:?}");
}

#[test]
fn fuzz_expand() {
    let dict = [
        "$", "${", "}", ":-", ":+", ":?", "-", "+", "?", "#", "##", "%", "%%", "*", "\\", "'", "\"", "A", "B", "EMPTY",
        "LONG", "C", "UNSET", "[", "]",
    ];
    let mut fuzz = Fuzz::new("expand", dir("testdata/fuzz/expand")).with_dict(&dict).with_max_len(2048);
    for (i, line) in include_str!("../src/shell/testdata/envVarTest").lines().enumerate() {
        if let Some(src) = line.split('|').nth(1).filter(|_| !line.starts_with('#')) {
            fuzz = fuzz.with_seed(format!("envVarTest:{}", i + 1), src.trim());
        }
    }
    let env = env();
    let report = fuzz.run(|input| {
        let word = String::from_utf8_lossy(input);
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
    });
    eprintln!("expand: {report:?}");
}

#[test]
fn fuzz_dockerignore() {
    let dict = ["**", "*", "?", "[", "]", "[^", "!", "/", "\\", "..", "#", "\n", "a-z"];
    let fuzz = Fuzz::new("dockerignore", dir("testdata/fuzz/dockerignore")).with_dict(&dict).with_max_len(1024);
    let report = fuzz.run(|input| {
        let text = String::from_utf8_lossy(input);
        let patterns = read_all(&text);
        let Ok(m) = PatternMatcher::new(&patterns) else { return };
        for file in ["target/keep", "a/b/c.o", "x", "aa/b", "[x]/y", ".."] {
            let _ = (m.matches_or_parent_matches(file), m.matches_exact(file), m.matches_single_parent(file));
        }
    });
    eprintln!("dockerignore: {report:?}");
}
