//! Several processes share one store: no update to `index.json` is lost,
//! and killing a writer at any moment never leaves it corrupt.
//!
//! Children are this test binary run again with `--exact child`, told what
//! to do through the environment.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use polyarch_store::testsuite::random_image;
use polyarch_store::Store;

const MODE: &str = "POLYARCH_STORE_TEST_CHILD";
const ROOT: &str = "POLYARCH_STORE_TEST_ROOT";

/// The child's body; a no-op when run as an ordinary test.
#[test]
fn child() {
    let (Ok(mode), Ok(root)) = (std::env::var(MODE), std::env::var(ROOT)) else { return };
    let s = Store::open(root).unwrap();
    let img = s.resolve("seed").unwrap().unwrap();
    let parts: Vec<&str> = mode.split(':').collect();
    match parts[..] {
        ["tag", prefix, n] => {
            for i in 0..n.parse::<usize>().unwrap() {
                s.tag(&format!("{prefix}-{i:04}"), &img).unwrap();
            }
        }
        ["loop", prefix] => {
            for i in 0.. {
                s.tag(&format!("{prefix}-{i:06}"), &img).unwrap();
            }
        }
        _ => panic!("unknown child mode {mode}"),
    }
}

fn spawn(root: &Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(ROOT, root)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let img = random_image(&s, 1, 1).unwrap();
    s.tag("seed", &img).unwrap();
    (dir, s)
}

fn names_with(s: &Store, prefix: &str) -> Vec<String> {
    s.list().unwrap().into_iter().map(|(n, _)| n).filter(|n| n.starts_with(prefix)).collect()
}

#[test]
fn many_processes_lose_no_updates() {
    let (_d, s) = seeded();
    let children: Vec<Child> = (0..4).map(|p| spawn(s.root(), &format!("tag:p{p}:40"))).collect();
    // This process writes at the same time, from its own handle.
    let img = s.resolve("seed").unwrap().unwrap();
    for i in 0..40 {
        s.tag(&format!("parent-{i:04}"), &img).unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let all = s.list().unwrap();
    assert_eq!(all.len(), 1 + 5 * 40);
    let names: Vec<_> = all.iter().map(|(n, _)| n.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn killed_writers_never_corrupt_the_index() {
    let (_d, s) = seeded();
    let mut seen_before = BTreeSet::new();
    for round in 0..12u64 {
        let prefix = format!("r{round:02}");
        let mut child = spawn(s.root(), &format!("loop:{prefix}"));
        std::thread::sleep(Duration::from_millis(40 + (round * 37) % 90));
        child.kill().unwrap();
        child.wait().unwrap();
        // index.json parses, and holds exactly the tags that completed, in
        // order: a prefix 0..k of what the child wrote.
        let index = s.read_index().expect("index.json must stay valid after a kill");
        assert!(!index.manifests.is_empty());
        let mine = names_with(&s, &prefix);
        let expected: Vec<String> = (0..mine.len()).map(|i| format!("{prefix}-{i:06}")).collect();
        assert_eq!(mine, expected);
        // Nothing from earlier rounds was lost.
        let now: BTreeSet<String> = s.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(seen_before.is_subset(&now));
        seen_before = now;
    }
    // Leftover temp files of killed writers are cleaned by prune, and the
    // index still works afterwards.
    s.prune().unwrap();
    let leftovers = std::fs::read_dir(s.root())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".index.json."))
        .count();
    assert_eq!(leftovers, 0);
    let img = s.resolve("seed").unwrap().unwrap();
    s.tag("after", &img).unwrap();
}

#[test]
fn partial_temp_index_never_replaces_index_json() {
    let (_d, s) = seeded();
    let before = std::fs::read(s.root().join("index.json")).unwrap();
    // What a writer killed mid-write leaves: a truncated temp file.
    let partial = &before[..before.len() / 2];
    std::fs::write(s.root().join(".index.json.dead01"), partial).unwrap();
    assert_eq!(std::fs::read(s.root().join("index.json")).unwrap(), before);
    assert_eq!(s.list().unwrap().len(), 1);
    let img = s.resolve("seed").unwrap().unwrap();
    s.tag("next", &img).unwrap();
    assert_eq!(s.list().unwrap().len(), 2);
    assert_eq!(std::fs::read(s.root().join(".index.json.dead01")).unwrap(), partial);
}
