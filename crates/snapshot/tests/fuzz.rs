//! Fuzzing layer unpacking: any archive is applied or refused with an
//! error, never a panic, within bounded time and memory, and nothing is
//! written outside the target directory.
//!
//! Inputs are raw layers (tar, gzip, zstd; header checksums are fixed up
//! after mutation so the mutations reach past the header check) or, when
//! they start with `S`, entry lists built into a well-formed tar, so that
//! links, `..`, whiteouts and long names meet in every order.

mod fuzz_targets;

use std::path::Path;

use fuzz_targets as t;
use polyarch_fuzzing::{Counting, Fuzz};
use polyarch_snapshot::{unpack_compressed, UnpackOptions};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn fuzz_unpack() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/unpack");
    let report = Fuzz::new("unpack", corpus)
        .with_max_len(16 * 1024)
        .with_memory(4 << 20, 256)
        // Disk time varies with the machine's load; the bound is for hangs.
        .with_case_time(std::time::Duration::from_secs(15))
        .with_dict(t::UNPACK_DICT)
        .run(t::unpack);
    eprintln!("unpack: {report:?}");
}

#[test]
fn structured_inputs_are_well_formed_layers() {
    let seed = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/unpack/structured-basic"))
        .expect("seed");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = UnpackOptions::new().with_special_files(false).with_same_owner(false);
    let stats = unpack_compressed(&t::structured(&seed[1..])[..], dir.path(), &opts).expect("unpacks");
    assert!(stats.entries >= 3 && stats.dirs >= 1 && stats.symlinks >= 1, "{stats:?}");
    // A mutated header still passes the checksum check.
    let mut raw = t::structured(&seed[1..]);
    raw[0] = b'z';
    let stats = unpack_compressed(&t::fix_checksums(raw)[..], dir.path(), &opts).expect("unpacks");
    assert!(stats.entries >= 3, "{stats:?}");
}
