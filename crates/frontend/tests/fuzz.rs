//! Fuzzing the frontend (the target is in `fuzz_targets/`): any Dockerfile
//! gives a plan or a located error, never a panic, in bounded time and
//! memory.

mod fuzz_targets;

use std::path::{Path, PathBuf};

use polyarch_fuzzing::{Counting, Fuzz};

#[global_allocator]
static A: Counting = Counting;

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn fuzz_plan() {
    let mut fuzz = Fuzz::new("plan", dir("testdata/fuzz/plan"))
        .with_dict(fuzz_targets::PLAN_DICT)
        .with_max_len(4096)
        .with_memory(4 << 20, 4096);
    for e in std::fs::read_dir(dir("testdata")).unwrap().filter_map(Result::ok) {
        if let Ok(bytes) = std::fs::read(e.path().join("Dockerfile")) {
            fuzz = fuzz.with_seed(e.file_name().to_string_lossy().into_owned(), bytes);
        }
    }
    eprintln!("plan: {:?}", fuzz.run(fuzz_targets::plan));
}
