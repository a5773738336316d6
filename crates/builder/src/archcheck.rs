//! Programs of another architecture in an image: an `arm64` image whose
//! `/usr/local/bin/app` is an x86-64 binary (copied from a
//! `--platform=$BUILDPLATFORM` stage that forgot `GOARCH`, downloaded for
//! the wrong machine) carries the right label and cannot run. After a
//! build, the layers it made (not its base images') are read for
//! executable ELF files, each told apart by the binfmt_misc magic of
//! [`polyarch_emu::Arch::of_elf`]; the ones of another architecture than
//! the image's are reported (a warning, never a failure).
//!
//! Shared objects (`*.so`, `*.so.N`) are left out: cross toolchains keep
//! other architectures' libraries on purpose. Reading stops after
//! [`READ_LIMIT`] bytes of layer content, so a huge layer costs a bounded
//! time.

use std::collections::HashSet;
use std::io::Read;

use polyarch_emu::Arch;
use polyarch_oci::{Digest, Platform};
use polyarch_store::{BlobSource, Store};

use crate::layer::Layer;

/// How much uncompressed layer content one image's check reads at most.
pub const READ_LIMIT: u64 = 64 << 20;

/// How many programs one image's report names at most.
const MAX_FOUND: usize = 20;

/// A program of another architecture than its image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignProgram {
    /// Its path in the image (`usr/local/bin/app`, no leading `/`).
    pub path: String,
    /// The architecture it is for.
    pub arch: Arch,
}

/// The executable ELF files of another architecture than `platform`'s in
/// `layers`, leaving out the layers in `skip` (the base images'). Nothing
/// for a platform polyarch does not know; a layer that cannot be read is
/// left out.
pub fn foreign_programs(
    store: &Store,
    layers: &[Layer],
    skip: &HashSet<Digest>,
    platform: &Platform,
) -> Vec<ForeignProgram> {
    let Some(expected) = Arch::from_platform(platform) else { return Vec::new() };
    let mut found = Vec::new();
    let mut budget = READ_LIMIT;
    for layer in layers.iter().filter(|l| !skip.contains(&l.desc.digest)) {
        if budget == 0 || found.len() >= MAX_FOUND {
            break;
        }
        // A layer that cannot be read here (not fetched, say) is not
        // checked: the check is a hint, never a reason to fail.
        let Ok(blob) = store.open(&layer.desc) else { continue };
        let Ok(reader) = crate::compress::decompress(blob) else { continue };
        let mut limited = reader.take(budget);
        let _ = scan(&mut limited, expected, &mut found);
        budget = limited.limit();
    }
    found.truncate(MAX_FOUND);
    found
}

/// Whether a path names a shared object (`libc.so.6`, `x.so`).
fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

fn scan(r: &mut dyn Read, expected: Arch, found: &mut Vec<ForeignProgram>) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries()? {
        let mut entry = match entry {
            Ok(e) => e,
            // The read limit was reached, or the layer ends early: what
            // was read is what is reported.
            Err(_) => break,
        };
        let header = entry.header();
        if header.entry_type() != tar::EntryType::Regular || header.mode().unwrap_or(0) & 0o111 == 0 {
            continue;
        }
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        if is_shared_object(&path) {
            continue;
        }
        let mut head = [0u8; 20];
        let mut n = 0;
        while n < head.len() {
            match entry.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        match Arch::of_elf(&head[..n]) {
            Some(arch) if arch != expected && !same_machine(arch, expected) => {
                found.push(ForeignProgram { path, arch });
                if found.len() >= MAX_FOUND {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Architectures whose programs run on each other's machines here: a
/// 386 program in an amd64 image runs (as Docker runs 386 images natively).
fn same_machine(found: Arch, expected: Arch) -> bool {
    matches!((found, expected), (Arch::I386, Arch::Amd64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{MemFs, Node};

    fn layer(store: &Store, files: &[(&str, Vec<u8>, u32)]) -> Layer {
        let mut fs = MemFs::new();
        for dir in ["bin", "usr", "usr/lib"] {
            fs.insert(dir.into(), Node::dir(0o755, 0, 0, 1));
        }
        for (p, data, mode) in files {
            fs.insert(p.to_string(), crate::copy::file_node(data, *mode, 1));
        }
        let tar = crate::layer::tar_entries(fs.iter().map(|(k, n)| (k.as_str(), n))).unwrap();
        crate::layer::store_layer(store, &tar, crate::layer::Compression::Gzip).unwrap()
    }

    #[test]
    fn programs_of_another_architecture_are_found_in_the_built_layers_only() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let amd64 = Arch::Amd64.probe_program();
        let arm64 = Arch::Arm64.probe_program();
        let base = layer(&store, &[("bin/tool", amd64.clone(), 0o755)]);
        let built = layer(
            &store,
            &[
                ("usr/app", amd64.clone(), 0o755),
                ("usr/native", arm64.clone(), 0o755),
                ("usr/data.bin", amd64.clone(), 0o644),
                ("usr/lib/libx.so.1", amd64.clone(), 0o755),
                ("usr/script", b"#!/bin/sh\n".to_vec(), 0o755),
            ],
        );
        let arm = Platform::parse("linux/arm64").unwrap();
        let skip: HashSet<Digest> = [base.desc.digest.clone()].into();
        let found = foreign_programs(&store, &[base.clone(), built.clone()], &skip, &arm);
        assert_eq!(found, [ForeignProgram { path: "usr/app".into(), arch: Arch::Amd64 }]);
        // The same layers in an amd64 image: the arm64 program is the foreign one.
        let amd = Platform::parse("linux/amd64").unwrap();
        let found = foreign_programs(&store, std::slice::from_ref(&built), &HashSet::new(), &amd);
        assert_eq!(found, [ForeignProgram { path: "usr/native".into(), arch: Arch::Arm64 }]);
        // 386 programs run in an amd64 image; unknown platforms are not checked.
        let i386 = layer(&store, &[("usr/old", Arch::I386.probe_program(), 0o755)]);
        assert!(foreign_programs(&store, &[i386], &HashSet::new(), &amd).is_empty());
        let odd = Platform::parse("linux/ia64").unwrap();
        assert!(foreign_programs(&store, &[built], &HashSet::new(), &odd).is_empty());
        // A layer whose blob is not here is left out, not an error.
        let gone = polyarch_oci::Descriptor::new("application/x", Digest::sha256(b"gone"), 4);
        let gone = Layer { desc: gone, diff_id: Digest::sha256(b"g") };
        assert!(foreign_programs(&store, &[gone], &HashSet::new(), &arm).is_empty());
    }
}
