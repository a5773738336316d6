//! The keys of every kind of step, for fixed inputs, pinned by
//! `testdata/step-keys.golden` (rewritten with `UPDATE_GOLDEN=1`): a key
//! that moves is a visible, deliberate change (bump a version tag when what
//! a step makes for a key changes).

use std::sync::Arc;

use polyarch_oci::{Digest, Platform};

use super::*;
use crate::cacheio::{CacheIo, Mode};
use crate::copy::file_node;
use crate::fs::{MemFs, Node};
use crate::process::SnapshotterKind;
use crate::testing::RecordingExecutor;
use crate::{BuildOptions, Builder};

fn files() -> MemFs {
    let mut ctx = MemFs::new();
    ctx.insert("src".into(), Node::dir(0o755, 0, 0, 1));
    ctx.insert("src/main.c".into(), file_node(b"int main(void) { return 0; }\n", 0o644, 1));
    ctx.insert("src/README".into(), file_node(b"read me\n", 0o644, 1));
    ctx.insert("etc".into(), Node::dir(0o755, 0, 0, 1));
    ctx.insert("etc/passwd".into(), file_node(b"root:x:0:0:root:/root:/bin/sh\n", 0o644, 1));
    ctx.insert("etc/group".into(), file_node(b"root:x:0:\n", 0o644, 1));
    ctx
}

/// The steps of each case, after `FROM scratch` and `COPY etc /etc`.
const CASES: &[(&str, &str)] = &[
    ("workdir", "WORKDIR /app"),
    ("copy", "COPY --chmod=0600 src/main.c /app/"),
    ("copy-link", "COPY --link src /src"),
    ("copy-from", "FROM scratch AS base\nCOPY src /src\nFROM scratch\nCOPY --from=base /src/README /r"),
    ("add", "ADD --chown=0:0 src/ /add/"),
    ("heredoc", "COPY <<one <<two /h/\n1\none\n2\ntwo"),
    ("run", "RUN echo hi"),
    (
        "run-mounts",
        "RUN --mount=type=bind,source=src,target=/s --mount=type=cache,target=/c,id=c1,sharing=locked \
         --mount=type=tmpfs,target=/t,size=1m --mount=type=secret,id=tok --network=none make",
    ),
    ("run-heredoc", "RUN <<EOF\n#!/bin/sh\necho script\nEOF"),
];

/// The keys of the target's steps, from the first to the last.
fn chain(df: &str) -> Vec<String> {
    let d = tempfile::tempdir().unwrap();
    let store = polyarch_store::Store::open(d.path()).unwrap();
    let df = if df.starts_with("FROM ") { df.to_string() } else { format!("FROM scratch\nCOPY etc /etc\n{df}") };
    let mut opts = BuildOptions::new(df).with_context(files());
    opts.snapshotter = SnapshotterKind::Naive;
    opts.platform = Platform::new("linux", "arm64", None);
    opts.source_date_epoch = Some(1_700_000_000);
    let io = Arc::new(CacheIo::new(false));
    let b = Builder::new(store).with_executor(RecordingExecutor::new()).with_cache_io(io.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(b.build(&opts)).unwrap();
    let records = io.gather(Mode::Min).graph.records;
    let mut out = Vec::new();
    let mut at = records.iter().find(|e| !records.iter().any(|o| o.key == e.parent)).map(|e| e.parent.clone());
    while let Some(parent) = at {
        out.push(parent.clone());
        at = records.iter().find(|e| e.parent == parent).map(|e| e.key.clone());
    }
    out
}

#[test]
fn step_keys_match_the_golden_file() {
    let p = Platform::new("linux", "arm64", None);
    let manifest = Digest::sha256(b"manifest");
    let mut text = String::from("# case: keys from the base to the last step (regenerate with UPDATE_GOLDEN=1)\n");
    text.push_str(&format!("base.scratch: {}\n", scratch().unwrap()));
    text.push_str(&format!("base.image: {}\n", image("busybox:1.36", &manifest, &p).unwrap()));
    text.push_str(&format!("base.named: {}\n", super::context("files", &Digest::sha256(b"layer")).unwrap()));
    for (name, df) in CASES {
        text.push_str(&format!("{name}: {}\n", chain(df).join(" ")));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/step-keys.golden");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(text, golden, "step keys changed: bump a version tag, then run with UPDATE_GOLDEN=1");
}

#[test]
fn the_base_of_a_chain_is_the_scratch_key() {
    let keys = chain("WORKDIR /w");
    assert_eq!(keys.len(), 3, "FROM scratch, COPY, WORKDIR: {keys:?}");
    assert_eq!(keys[0], scratch().unwrap().to_string());
}

#[test]
fn layer_options_platform_and_hosts_are_keyed() {
    let p = Platform::new("linux", "arm64", None);
    let amd64 = Layering::new(&Platform::new("linux", "amd64", None), Compression::Gzip, None, false);
    let op = Op::Merge(Merge { inputs: vec![0] });
    let deps = [dep(&Digest::sha256(b"parent"), None)];
    let base = Layering::new(&p, Compression::Gzip, None, false);
    let k = base.step(&op, "s", &deps, &[]).unwrap();
    assert_eq!(k, base.step(&op, "other name", &deps, &[]).unwrap(), "names do not count");
    // A file op's result is the same on every platform; an exec's is not.
    assert_eq!(amd64.step(&op, "s", &deps, &[]).unwrap(), k, "a merge of the same inputs");
    let exec = Op::Exec(polyarch_solver::op::Exec { args: vec!["true".into()], ..Default::default() });
    assert_ne!(amd64.step(&exec, "s", &deps, &[]).unwrap(), base.step(&exec, "s", &deps, &[]).unwrap());
    for other in [
        Layering::new(&p, Compression::Zstd, None, false),
        Layering::new(&p, Compression::Gzip, Some(1), false),
        Layering::new(&p, Compression::Gzip, None, true),
    ] {
        assert_ne!(other.step(&op, "s", &deps, &[]).unwrap(), k, "{other:?}");
    }
    let hosts = [("db".to_string(), "10.0.0.5".parse().unwrap())];
    let moved = [("db".to_string(), "10.0.0.6".parse().unwrap())];
    let with = base.step(&op, "s", &deps, &Host::all(&hosts)).unwrap();
    assert_ne!(with, k);
    assert_ne!(with, base.step(&op, "s", &deps, &Host::all(&moved)).unwrap(), "addresses are keyed");
}
