//! Two machines (two stores in different directories, each with its own
//! secret file and cache mounts) build the same Dockerfile: their keys are
//! the same, and another, given the first's exported cache, runs nothing
//! and makes the same image.

use std::sync::Arc;

use polyarch_registry::Client;
use polyarch_store::Store;

use super::*;
use crate::copy::file_node;
use crate::fs::MemFs;
use crate::process::{SecretSource, SnapshotterKind};
use crate::testing::RecordingExecutor;
use crate::{BuildOptions, BuildResult, Builder};

const DOCKERFILE: &str = "FROM scratch AS tools
COPY tool.sh /tool.sh
FROM scratch
WORKDIR /work
COPY app.txt ./
RUN --mount=type=bind,source=app.txt,target=/src/app.txt \
    --mount=type=cache,target=/cache --mount=type=secret,id=token make-it
COPY --from=tools /tool.sh /bin/tool.sh
RUN <<EOF
finish-it
EOF
";

struct Machine {
    dir: tempfile::TempDir,
    store: Store,
    exec: Arc<RecordingExecutor>,
}

impl Machine {
    fn new(name: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(name)).unwrap();
        let exec = RecordingExecutor::new()
            .on("make-it", |s| {
                s.write("/work/made", b"made")?;
                Ok(0)
            })
            .on("/dev/pipes/", |s| {
                s.write("/work/finished", b"done")?;
                Ok(0)
            });
        Machine { dir, store, exec }
    }

    fn options(&self) -> BuildOptions {
        let mut ctx = MemFs::new();
        ctx.insert("app.txt".into(), file_node(b"app", 0o644, 1));
        ctx.insert("tool.sh".into(), file_node(b"#!/bin/sh\n", 0o755, 1));
        let mut o = BuildOptions::new(DOCKERFILE).with_context(ctx);
        o.snapshotter = SnapshotterKind::Naive;
        o.source_date_epoch = Some(1_700_000_000);
        o.rewrite_timestamp = true;
        // A secret file of this machine: its path is never part of a key.
        let secret = self.dir.path().join("token");
        std::fs::write(&secret, b"s3cret").unwrap();
        o.secrets.insert("token".into(), SecretSource::File(secret));
        o
    }

    fn build(&self, io: &Arc<CacheIo>) -> BuildResult {
        let b = Builder::new(self.store.clone()).with_executor(self.exec.clone()).with_cache_io(io.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(b.build(&self.options())).unwrap()
    }
}

fn keys(c: &CacheConfig) -> Vec<(String, String)> {
    c.graph.records.iter().map(|e| (e.key.clone(), e.parent.clone())).collect()
}

#[test]
fn a_second_machine_computes_the_same_keys_and_runs_nothing_from_the_first_ones_cache() {
    let a = Machine::new("store-a");
    let io_a = Arc::new(CacheIo::new(false));
    let built_a = a.build(&io_a);
    assert_eq!(a.exec.count(), 2);
    let max = io_a.gather(Mode::Max);
    assert_eq!(max.graph.records.len(), 6, "COPY tool.sh, WORKDIR, COPY, RUN, COPY --from, RUN");
    assert_eq!(io_a.gather(Mode::Min).graph.records.len(), 5, "the tools stage is not in the result's chain");
    let opts = ExportOptions { mode: Mode::Max, ..ExportOptions::default() };
    let artifact = export::artifact(&a.store, &max, &opts).unwrap();
    let dir = a.dir.path().join("cache");
    export::write_local(&a.store, &artifact, &dir).unwrap();

    // Without the cache, machine B computes the same keys.
    let b = Machine::new("other/store");
    let io_plain = Arc::new(CacheIo::new(false));
    let built_plain = b.build(&io_plain);
    assert_eq!(keys(&io_plain.gather(Mode::Max)), keys(&max));
    assert_eq!(built_plain.manifest.digest, built_a.manifest.digest);

    // A third machine with the cache runs nothing and makes the same image.
    let c = Machine::new("third");
    let io_c = Arc::new(CacheIo::new(false));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let from = CacheFrom::Local { src: dir, digest: None };
    let added = rt.block_on(import::import(&io_c, &Client::builder().build().unwrap(), &from)).unwrap();
    assert_eq!(added, 6);
    let built_c = c.build(&io_c);
    assert_eq!(c.exec.count(), 0, "no RUN executes");
    assert_eq!((built_c.executed, built_c.cached), (0, 6), "the tools stage is taken from the cache too");
    assert_eq!(built_c.manifest.digest, built_a.manifest.digest);
    assert!(io_c.take_warnings().is_empty());
}

#[test]
fn min_follows_result_chains_and_max_takes_everything() {
    let io = CacheIo::new(false);
    let p = polyarch_oci::Platform::new("linux", "arm64", None);
    let rec = Record { layer: None, created: Some(5) };
    io.used("image:x", "k1", &p, &rec);
    io.used("k1", "k2", &p, &rec);
    io.used("image:y", "other-stage", &p, &rec);
    io.finished("k2");
    let keys = |c: CacheConfig| c.graph.records.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(keys(io.gather(Mode::Min)), ["k1", "k2"]);
    assert_eq!(keys(io.gather(Mode::Max)), ["k1", "k2", "other-stage"]);
    assert_eq!(io.chain("k2")[0].parent, "k1");
}

struct Gone;

impl Fetch for Gone {
    fn fetch(&self, _: &Store, _: &polyarch_oci::Descriptor) -> std::result::Result<(), String> {
        Err("404 blob unknown".into())
    }
    fn name(&self) -> String {
        "r/cache:1".into()
    }
}

#[test]
fn a_blob_that_cannot_be_fetched_is_a_warning_and_a_miss() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let io = CacheIo::new(false);
    let layer = EntryLayer {
        digest: polyarch_oci::Digest::sha256(b"gone"),
        media_type: polyarch_oci::media_type::OCI_LAYER_GZIP.into(),
        size: 4,
        diff_id: polyarch_oci::Digest::sha256(b"x"),
    };
    let entry = Entry {
        key: "k".into(),
        parent: "scratch".into(),
        platform: "linux/amd64".into(),
        layer: Some(layer),
        created: None,
    };
    let empty = Entry { key: "e".into(), layer: None, ..entry.clone() };
    assert_eq!(io.add(CacheConfig::new(vec![entry, empty]), Arc::new(Gone)), 2);
    assert_eq!(io.lookup("e", &store), Some(Record { layer: None, created: None }));
    assert_eq!(io.lookup("k", &store), None);
    let w = io.take_warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].to_string().contains("r/cache:1") && w[0].to_string().contains("404"), "{}", w[0]);
    assert_eq!(io.lookup("k", &store), None, "dropped after the failure");
    assert!(io.take_warnings().is_empty());
}

#[test]
fn inline_caches_go_after_the_configs_own_keys() {
    let out = with_inline(br#"{"architecture":"amd64"}"#, &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["architecture"], "amd64");
    assert_eq!(CacheConfig::from_inline(&v[config::INLINE_KEY]).unwrap(), CacheConfig::new(Vec::new()));
    let empty = with_inline(b"{}", &[]).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&empty).is_ok());
    assert!(with_inline(b"[]", &[]).is_err());
}
