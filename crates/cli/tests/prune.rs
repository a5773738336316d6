//! Cache retention: `prune` filters and limits choose records by their last
//! use, `du` lists records as buildx does, and the default GC policy keeps
//! a store under a configured limit after each build. What a rebuild
//! executes again shows which records went.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::*;

/// A Dockerfile whose one RUN step makes an incompressible 100 kB layer.
fn dockerfile(env: &Env, name: &str) -> PathBuf {
    let df = format!("FROM busybox\nRUN head -c 100000 /dev/urandom > /{name}\n");
    context(env, name, &[("Dockerfile", &df)])
}

/// Builds `ctx` (to a local directory: the image stays untagged, its
/// records private) and returns (executed, cached).
fn build(env: &Env, ctx: &Path) -> (usize, usize) {
    let dest = tempfile::Builder::new().prefix("out-").tempdir_in(env.dir.path()).unwrap().keep();
    let spec = format!("type=local,dest={}", dest.display());
    let (_, stderr) = build_ok(env, &["-o", &spec, s(ctx)]);
    assert_clean_root(&env.root());
    counts(&stderr)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn records(env: &Env) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--format", "json"])).unwrap();
    v["Records"].as_array().unwrap().clone()
}

#[test]
fn prune_until_removes_only_what_was_not_used_since() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let (a, b) = (dockerfile(&env, "a"), dockerfile(&env, "b"));
    assert_eq!(build(&env, &a), (1, 0));
    std::thread::sleep(Duration::from_secs(3));
    let before_b = now();
    assert_eq!(build(&env, &b), (1, 0));
    assert_eq!(records(&env).len(), 2, "one record per RUN");
    let until = now() - before_b + 1;
    let out = env.ok(&["prune", "--filter", &format!("until={until}s")]);
    assert!(out.starts_with("ID") && out.contains("RECLAIMABLE") && out.contains("LAST ACCESSED"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(" true ")).count(), 1, "only a's record went: {out}");
    assert!(out.contains("Total:\t"), "{out}");
    assert_eq!(build(&env, &b), (0, 1), "b's step was used within {until}s: kept");
    assert_eq!(build(&env, &a), (1, 0), "a's step went");
    let err = env.fails(&["prune", "--filter", "until=soon"]);
    assert!(err.contains("--filter \"until=soon\"") && err.contains("duration"), "{err}");
    let err = env.fails(&["prune", "--filter", "type=nonsense"]);
    assert!(err.contains("type=nonsense") && err.contains("exec.cachemount"), "{err}");
    assert_eq!(records(&env).len(), 2, "a failed prune removes nothing");
}

#[test]
fn filtered_prunes_keep_the_base_images_builds_used_lately() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let a = dockerfile(&env, "a");
    assert_eq!(build(&env, &a), (1, 0));
    let blobs = || files(&env.root().join("blobs")).len();
    let before = blobs();
    assert!(before > 1, "the base image's blobs are stored");
    // As BuildKit's pulled layers: used just now, of another type, or under the limit.
    for args in [
        &["prune", "--filter", "until=1h"][..],
        &["prune", "--filter", "type=exec.cachemount"],
        &["prune", "--keep-storage", "1GB"],
    ] {
        env.ok(args);
        assert_eq!(blobs(), before, "{args:?} keeps them");
    }
    assert_eq!(build(&env, &a), (0, 1));
    // No filter and no limit: everything no image holds goes.
    env.ok(&["prune"]);
    assert_eq!(blobs(), 0);
}

#[test]
fn keep_storage_keeps_the_most_recently_used_records() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let ctx: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dockerfile(&env, n)).collect();
    for c in &ctx {
        assert_eq!(build(&env, c), (1, 0));
        std::thread::sleep(Duration::from_millis(1100));
    }
    // A hit is a use: a becomes the most recently used, b the least.
    assert_eq!(build(&env, &ctx[0]), (0, 1));
    let out = env.ok(&["prune", "--keep-storage", "250kB"]);
    assert_eq!(records(&env).len(), 2, "{out}");
    assert_eq!(build(&env, &ctx[1]), (1, 0), "b was the least recently used");
    assert_eq!(build(&env, &ctx[2]), (0, 1));
    assert_eq!(build(&env, &ctx[0]), (0, 1));
    let err = env.fails(&["prune", "--keep-storage", "lots"]);
    assert!(err.contains("--keep-storage") && err.contains("\"lots\""), "{err}");
    // Without a limit or a filter, every private record goes.
    env.ok(&["prune"]);
    assert!(records(&env).is_empty());
}

#[test]
fn du_lists_records_as_buildx() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let a = dockerfile(&env, "a");
    build(&env, &a);
    build(&env, &a);
    let verbose = env.ok(&["du", "--verbose"]);
    for field in [
        "ID:\t\t",
        "Created at:\t",
        "Mutable:\tfalse\n",
        "Reclaimable:\ttrue\n",
        "Shared:\t\tfalse\n",
        "Size:\t\t100kB\n",
        "Description:\tRUN /bin/sh -c head -c 100000 /dev/urandom > /a\n",
        "Usage count:\t2\n",
        "Last used:\t",
        "Type:\t\tregular\n",
        "Shared:\t\t0B\n",
        "Private:\t100kB\n",
        "Reclaimable:\t100kB\n",
        "Total:\t\t100kB\n",
    ] {
        assert!(verbose.contains(field), "{field:?} in {verbose}");
    }
    let table = env.ok(&["du"]);
    assert!(table.starts_with("ID") && table.contains("LAST ACCESSED"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains(" true "), "{table}");
    assert_eq!(env.ok(&["du", "--format", "{{range .Records}}{{.Type}} {{.UsageCount}}{{end}}"]), "regular 2\n");
    assert!(env.ok(&["du", "--filter", "type=exec.cachemount"]).contains("Total:\t\t0B"));
    // A tagged image shares the record: prune keeps it without --all.
    let (_, _) = build_ok(&env, &["-t", "prune/a:1", s(&a)]);
    assert_eq!(records(&env)[0]["Shared"], true);
    env.ok(&["prune"]);
    assert_eq!(records(&env).len(), 1);
    let out = env.ok(&["prune", "--all", "--verbose"]);
    assert!(out.contains("Shared:\t\ttrue\n") && out.contains("Type:\t\tregular\n"), "{out}");
    assert!(records(&env).is_empty());
}

#[test]
fn default_policy_keeps_the_store_under_its_limit() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let mut config = std::fs::read_to_string(env.config_file()).unwrap();
    config.push_str("\n[worker.oci]\ngckeepstorage = \"150kB\"\n");
    std::fs::write(env.config_file(), config).unwrap();
    let (a, b) = (dockerfile(&env, "a"), dockerfile(&env, "b"));
    build(&env, &a);
    assert_eq!(records(&env).len(), 1, "under the limit nothing goes");
    std::thread::sleep(Duration::from_millis(1100));
    build(&env, &b);
    let left = records(&env);
    assert_eq!(left.len(), 1, "the build brought the cache under 150kB: {left:?}");
    assert_eq!(build(&env, &b), (0, 1), "the most recent record stays");
    assert_eq!(build(&env, &a), (1, 0), "the oldest went");
    // Switched off, nothing goes.
    let mut config = std::fs::read_to_string(env.config_file()).unwrap();
    config.push_str("gc = false\n");
    std::fs::write(env.config_file(), config).unwrap();
    build(&env, &b);
    assert_eq!(records(&env).len(), 2);
}

#[test]
fn prune_waits_for_a_running_build() {
    let Some((env, _)) = mirrored_for_run() else { return };
    let df = "FROM busybox\nRUN sleep 3 && head -c 1000 /dev/urandom > /x\n";
    let ctx = context(&env, "slow", &[("Dockerfile", df)]);
    let dest = env.dir.path().join("out");
    let spec = format!("type=local,dest={}", dest.display());
    let build = env
        .cmd(&["build", "--progress", "plain", "-o", &spec, s(&ctx)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the RUN step's container exists: the build holds its cache.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !env.root().join("exec").exists() || std::fs::read_dir(env.root().join("exec")).unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the build never reached its RUN step");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let out = env.ok(&["prune", "--all"]);
    assert!(started.elapsed() > Duration::from_millis(1500), "prune did not wait for the RUN step: {out}");
    let built = build.wait_with_output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert_eq!(std::fs::metadata(dest.join("x")).unwrap().len(), 1000);
    assert!(out.contains("RECLAIMABLE"), "the build's record went once it ended: {out}");
    assert_clean_root(&env.root());
}
