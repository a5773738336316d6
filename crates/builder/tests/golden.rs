//! Golden tests: each `testdata/<case>/Dockerfile` (with an optional
//! `context/`) is built from scratch images with a fixed
//! SOURCE_DATE_EPOCH and rewritten timestamps; the config must equal
//! `testdata/<case>/config.json`. `UPDATE_GOLDEN=1` rewrites the files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polyarch_builder::fs::{Kind, MemFs};
use polyarch_builder::{BuildOptions, Builder, Event};
use polyarch_oci::Platform;
use polyarch_store::{BlobSource, Store};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The context with fixed modes (checkouts differ in umask).
fn context(dir: &Path) -> MemFs {
    if !dir.exists() {
        return MemFs::new();
    }
    let loaded = polyarch_builder::context::from_dir(dir, &[]).unwrap();
    let mut fs = MemFs::new();
    for (p, n) in loaded.iter() {
        let mut n = n.clone();
        n.mode = if matches!(n.kind, Kind::Dir) { 0o755 } else { 0o644 };
        fs.insert(p.clone(), n);
    }
    fs
}

fn options(case: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(std::fs::read(case.join("Dockerfile")).unwrap())
        .with_context(context(&case.join("context")))
        .with_platform(Platform::new("linux", "amd64", None));
    o.source_date_epoch = Some(0);
    o.rewrite_timestamp = true;
    o
}

fn build(store: &Store, opts: &BuildOptions) -> (polyarch_builder::BuildResult, Vec<Event>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let builder = Builder::new(store.clone()).with_events(Arc::new(move |e| sink.lock().unwrap().push(e)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(builder.build(opts)).unwrap();
    let ev = events.lock().unwrap().clone();
    (r, ev)
}

#[test]
fn golden_configs() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4, "{cases:?}");
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (r, _) = build(&store, &options(&case));
        let bytes = store.read_bytes(&r.config, 1 << 20).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap() + "\n";
        let golden = case.join("config.json");
        if update {
            std::fs::write(&golden, &pretty).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        assert_eq!(pretty, want, "{}", case.display());
        // Top-level keys are sorted, as BuildKit's exporter writes them.
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(store.exists(&r.manifest.digest).unwrap());
    }
}

#[test]
fn same_inputs_same_digest_and_cache_counts() {
    let case = testdata().join("copy-layers");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let opts = options(&case);
    let (first, _) = build(&store, &opts);
    assert_eq!((first.executed, first.cached), (6, 0));
    let (again, events) = build(&store, &opts);
    assert_eq!((again.executed, again.cached), (0, 6));
    assert_eq!(again.manifest, first.manifest);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Cached { .. })).count(), 6);
    // Another store, no cache: the same digest.
    let dir2 = tempfile::tempdir().unwrap();
    let (other, _) = build(&Store::open(dir2.path()).unwrap(), &opts);
    assert_eq!(other.manifest, first.manifest);
    // One changed file: the steps from the first that reads it run again.
    let mut changed = (*opts.context).clone();
    let mut node = changed.get("dir/x.txt").unwrap().clone();
    node.kind = Kind::File(polyarch_builder::fs::Content::bytes(&b"y\n"[..]));
    changed.insert("dir/x.txt".into(), node);
    let opts2 = options(&case).with_context(changed);
    let (third, _) = build(&store, &opts2);
    assert_eq!((third.executed, third.cached), (4, 2));
    assert_ne!(third.manifest, first.manifest);
    // zstd layers are other blobs with the same diff ids.
    let mut z = options(&case);
    z.compression = polyarch_builder::Compression::Zstd;
    let (zr, _) = build(&store, &z);
    assert_eq!(zr.image.diff_ids, first.image.diff_ids);
    assert_ne!(zr.layers[0].desc.digest, first.layers[0].desc.digest);
}

#[test]
fn errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let run = |df: &str| {
        let opts = BuildOptions::new(df.as_bytes().to_vec()).with_platform(Platform::new("linux", "amd64", None));
        rt.block_on(Builder::new(store.clone()).build(&opts)).unwrap_err()
    };
    let e = run("FROM scratch\nRUN --security=insecure true\n");
    assert_eq!(e.kind(), polyarch_builder::ErrorKind::Unsupported);
    let d = e.diagnostic().unwrap();
    assert_eq!((d.line, d.column), (2, 16), "{e}");
    assert!(d.message.starts_with("security mode \"insecure\" is not allowed"), "{e}");
    let e = run("FROM scratch\nCOPY missing /x\n");
    assert_eq!(e.kind(), polyarch_builder::ErrorKind::NotFound);
    let d = e.diagnostic().unwrap();
    assert_eq!((d.line, d.column, d.message.as_str()), (2, 6, "\"/missing\": not found"));
    let e = run("FROM scratch\nCOPY --chmod=999 a /x\n");
    assert!(e.to_string().contains("invalid chmod parameter: '999'"), "{e}");
    let e = run("FROM scratch\nSTOPSIGNAL SIGNOPE\n");
    assert!(e.to_string().contains("Invalid signal: SIGNOPE"), "{e}");
    let e = run("FROM scratch\nEXPOSE 80/bogus\n");
    assert!(e.to_string().contains("invalid proto: bogus"), "{e}");
    let e = run("FROM busybox\n");
    assert!(e.to_string().contains("no registry access configured"), "{e}");
}

#[test]
fn entrypoint_resets_inherited_cmd() {
    let case = testdata().join("entrypoint-resets-cmd");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut opts = options(&case);
    opts.target = Some("child".into());
    let (r, _) = build(&store, &opts);
    assert_eq!(r.image.config.entrypoint, ["/bin/sh", "-c", "/child --flag"]);
    assert!(r.image.config.cmd.is_empty(), "CMD from the base stage is reset: {:?}", r.image.config.cmd);
    opts.target = Some("base".into());
    let (r, _) = build(&store, &opts);
    assert_eq!(r.image.config.cmd, ["from-base"], "CMD set in the same stage survives ENTRYPOINT");
}

#[test]
fn workdir_is_created_for_the_user() {
    let mut ctx = MemFs::new();
    ctx.insert("etc".into(), polyarch_builder::fs::Node::dir(0o755, 0, 0, 0));
    ctx.insert(
        "etc/passwd".into(),
        polyarch_builder::copy::file_node(b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n", 0o644, 0),
    );
    let df = "FROM scratch\nCOPY etc /etc\nUSER app\nWORKDIR /home/app/work\nUSER 7:8\nWORKDIR /num\n";
    let opts = BuildOptions::new(df.as_bytes().to_vec())
        .with_context(ctx)
        .with_platform(Platform::new("linux", "amd64", None));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (r, _) = build(&store, &opts);
    let fs = polyarch_builder::export::rootfs(&store, &r).unwrap();
    for p in ["home", "home/app", "home/app/work"] {
        let n = fs.get(p).unwrap();
        assert_eq!((n.uid, n.gid, n.mode), (1000, 1001, 0o755), "{p}");
    }
    let n = fs.get("num").unwrap();
    assert_eq!((n.uid, n.gid), (7, 8));
    assert_eq!(r.image.config.working_dir, "/num");
}
