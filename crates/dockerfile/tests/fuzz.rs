//! Fuzzing the Dockerfile parser, word expansion and `.dockerignore`
//! patterns (the targets are in `fuzz_targets/`): any input gives a value
//! or an error with a place, never a panic, within time and memory linear
//! in the input.

mod fuzz_targets;

use std::path::{Path, PathBuf};

use fuzz_targets as t;
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

#[test]
fn fuzz_dockerfile() {
    let fuzz = with_golden(Fuzz::new("dockerfile", dir("testdata/fuzz/dockerfile")))
        .with_dict(t::DOCKERFILE_DICT)
        .with_max_len(8192)
        .with_memory(1 << 20, 1024);
    eprintln!("dockerfile: {:?}", fuzz.run(t::dockerfile));
}

#[test]
fn fuzz_expand() {
    let mut fuzz = Fuzz::new("expand", dir("testdata/fuzz/expand")).with_dict(t::EXPAND_DICT).with_max_len(2048);
    for (i, line) in include_str!("../src/shell/testdata/envVarTest").lines().enumerate() {
        if let Some(src) = line.split('|').nth(1).filter(|_| !line.starts_with('#')) {
            fuzz = fuzz.with_seed(format!("envVarTest:{}", i + 1), src.trim());
        }
    }
    eprintln!("expand: {:?}", fuzz.run(t::expand));
}

#[test]
fn fuzz_dockerignore() {
    let fuzz =
        Fuzz::new("dockerignore", dir("testdata/fuzz/dockerignore")).with_dict(t::DOCKERIGNORE_DICT).with_max_len(1024);
    eprintln!("dockerignore: {:?}", fuzz.run(t::dockerignore));
}
