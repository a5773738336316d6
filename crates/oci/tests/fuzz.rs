//! Fuzzing what polyarch reads from users and registries: references,
//! platform specifiers, manifests, indexes and image configs (the targets
//! are in `fuzz_targets/`). Any input gives a value or an error, never a
//! panic, within time and memory linear in the input.

mod fuzz_targets;

use std::path::{Path, PathBuf};

use fuzz_targets as t;
use polyarch_fuzzing::{Counting, Fuzz};

#[global_allocator]
static A: Counting = Counting;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz").join(target)
}

#[test]
fn fuzz_reference() {
    let report =
        Fuzz::new("reference", corpus("reference")).with_dict(t::REFERENCE_DICT).with_max_len(600).run(t::reference);
    eprintln!("reference: {report:?}");
}

#[test]
fn fuzz_platform() {
    let report =
        Fuzz::new("platform", corpus("platform")).with_dict(t::PLATFORM_DICT).with_max_len(300).run(t::platform);
    eprintln!("platform: {report:?}");
}

#[test]
fn fuzz_manifest() {
    let report = Fuzz::new("manifest", corpus("manifest"))
        .with_dict(t::MANIFEST_DICT)
        .with_memory(1 << 20, 512)
        .run(t::manifest);
    eprintln!("manifest: {report:?}");
}
