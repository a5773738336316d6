//! What a killed polyarch process leaves in a store, and taking it back.
//!
//! Every piece of per-process work in a store is named after its owner:
//! `pa-PID-START-SEQ` (the pid and its start time from `/proc/PID/stat`,
//! so that a reused pid is not taken for the owner) for runtime
//! containers and bundles (`exec/`), mount points (`exec/mnt/`), temp
//! directories of builds (`run/`, `run-layers/`) and the active snapshots
//! of `polyarch run` (`run-pa-…`); snapshots being unpacked are
//! `extract-PID-NANOS-…` (the pid and when they were made); blob temp
//! files in `ingest/` are locked by their writer for as long as it lives.
//! A clean exit removes its own work; [`reclaim`], run whenever a command
//! opens the store, removes the work of owners that are gone: a runtime
//! still starting one of their containers is stopped, containers are
//! killed and deleted, mounts detached, then directories, snapshots
//! and temp files removed. What has no owner in its name (temp files of
//! atomic writes, snapshot directories a snapshotter had not recorded
//! yet) goes once it is older than any live write of it can be.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polyarch_exec::runtime::Runtime;
use polyarch_exec::state::{self, State};
use polyarch_exec::sys::{Linux, Syscalls};
use polyarch_snapshot::{Kind, NaiveSnapshotter, OverlaySnapshotter, Snapshotter};
use polyarch_store::Store;

/// What [`reclaim`] removed, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Containers killed and deleted.
    pub containers: Vec<String>,
    /// Mounts detached.
    pub mounts: Vec<PathBuf>,
    /// Directories removed (bundles, mount points, temp directories).
    pub dirs: Vec<PathBuf>,
    /// Snapshots removed, by key.
    pub snapshots: Vec<String>,
    /// Temp files removed, and the bytes of those that were blobs being
    /// written.
    pub temp_files: (usize, u64),
    /// What could not be removed (left for a later attempt), with why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Reclaimed {
    /// Whether nothing was left to reclaim.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.mounts.is_empty()
            && self.dirs.is_empty()
            && self.snapshots.is_empty()
            && self.temp_files.0 == 0
    }

    fn absorb(&mut self, c: polyarch_exec::Cleanup) {
        self.containers.extend(c.containers);
        self.mounts.extend(c.mounts);
        self.dirs.extend(c.dirs);
        self.failed.extend(c.failed);
    }
}

/// Removes what polyarch processes that are gone left in `store`; see the
/// module docs. `runtime` is the OCI runtime their containers ran under
/// (default runc, else crun); without one, containers stay but the rest
/// is still removed. Failures are reported, never fatal: they concern the
/// dead processes' work, not the caller's.
pub fn reclaim(store: &Store, runtime: Option<&str>) -> Reclaimed {
    reclaim_with(store, runtime, &Linux)
}

fn reclaim_with(store: &Store, runtime: Option<&str>, sys: &dyn Syscalls) -> Reclaimed {
    let mut done = Reclaimed::default();
    let root = store.root();
    let exec_dir = root.join("exec");
    if exec_dir.exists() {
        match State::open(&exec_dir) {
            Ok(st) => {
                let rt = locate(runtime, &st.runtime_root());
                match st.cleanup_stale(rt.as_ref(), sys) {
                    Ok(c) => done.absorb(c),
                    Err(e) => done.failed.push((exec_dir.clone(), e.to_string())),
                }
            }
            Err(e) => done.failed.push((exec_dir.clone(), e.to_string())),
        }
    }
    for dir in [root.join("run"), root.join(LEGACY_LAYERS)] {
        match state::remove_stale_in(&dir, sys) {
            Ok(c) => done.absorb(c),
            Err(e) => done.failed.push((dir, e.to_string())),
        }
    }
    for (kind, dir) in snapshot_roots(root) {
        reclaim_snapshots(kind, &dir, sys, &mut done);
    }
    for dir in [root.join("build-cache"), root.join("cache-mounts"), root.to_path_buf()] {
        remove_old_temps(&dir, &mut done);
    }
    match store.reclaim_ingest(Duration::ZERO) {
        Ok((n, bytes)) => {
            done.temp_files.0 += n;
            done.temp_files.1 += bytes;
        }
        Err(e) => done.failed.push((root.join("ingest"), e.to_string())),
    }
    // The step locks of killed builds (crate::cache::lock).
    done.temp_files.0 += crate::cache::lock::remove_stale(&root.join("build-cache").join("locks"));
    if let Err(e) = store.reclaim_index_temps() {
        done.failed.push((root.join("index.json"), e.to_string()));
    }
    done
}

fn locate(runtime: Option<&str>, root: &Path) -> Option<Runtime> {
    match runtime {
        Some(name) => Runtime::locate(name, root).ok(),
        None => Runtime::locate("runc", root).or_else(|_| Runtime::locate("crun", root)).ok(),
    }
}

/// The snapshotter roots under `root` that exist: the overlay one (the
/// layers builds and runs share, see [`crate::materialize::layer_cache`])
/// and the naive one of `polyarch run --snapshotter naive`.
pub fn snapshot_roots(root: &Path) -> Vec<(&'static str, PathBuf)> {
    ["overlay", "naive"].into_iter().map(|k| (k, root.join("snapshots").join(k))).filter(|(_, d)| d.is_dir()).collect()
}

/// Opens the snapshotter of `kind` at `dir`.
pub fn open_snapshotter(kind: &str, dir: &Path) -> polyarch_snapshot::Result<Box<dyn Snapshotter>> {
    Ok(match kind {
        "overlay" => Box::new(OverlaySnapshotter::new(dir)?),
        _ => Box::new(NaiveSnapshotter::new(dir)?),
    })
}

/// The chain ids of every layer prefix of `stored` (the diff_ids of the
/// store's images, see [`crate::materialize::stored_diff_ids`]): the
/// committed snapshots (unpacked layers) that stored images use.
pub fn kept_chains(stored: &[Vec<String>]) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    for ids in stored {
        let mut parent: Option<String> = None;
        for id in ids {
            let Ok(d) = id.parse::<polyarch_oci::Digest>() else { break };
            let c = polyarch_snapshot::chain_id(parent.as_deref(), &d);
            keep.insert(c.clone());
            parent = Some(c);
        }
    }
    keep
}

/// What the snapshots under the store root (`snapshots/overlay` and
/// `snapshots/naive`) take on disk. Committed snapshots are the unpacked
/// layers, one cache for builds and runs; the others are the trees of
/// running containers and unpacks under way (or what a killed process left).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotUsage {
    /// Committed snapshots: unpacked layers.
    pub layers: usize,
    /// Their bytes.
    pub layer_bytes: u64,
    /// Those no stored image's chain of layers uses ([`prune_layers`]
    /// removes them).
    pub unused_layers: usize,
    /// Their bytes.
    pub unused_layer_bytes: u64,
    /// Other snapshots: active and views.
    pub snapshots: usize,
    /// Bytes under `snapshots/` that are no committed layer.
    pub bytes: u64,
}

/// Measures the snapshots under the store root against the images in
/// `stored`.
pub fn snapshot_usage(root: &Path, stored: &[Vec<String>]) -> SnapshotUsage {
    let keep = kept_chains(stored);
    let mut u = SnapshotUsage::default();
    for (kind, dir) in snapshot_roots(root) {
        let Ok(s) = open_snapshotter(kind, &dir) else { continue };
        for info in s.list().unwrap_or_default() {
            if info.kind != Kind::Committed {
                u.snapshots += 1;
                continue;
            }
            let size = s.usage(&info.key).map(|x| x.size).unwrap_or(0);
            u.layers += 1;
            u.layer_bytes += size;
            if !keep.contains(&info.key) {
                u.unused_layers += 1;
                u.unused_layer_bytes += size;
            }
        }
    }
    u.bytes = polyarch_store::gc::tree_bytes(&root.join("snapshots")).saturating_sub(u.layer_bytes);
    u
}

/// Where layers were unpacked before they became committed snapshots;
/// [`prune_layers`] removes what an older polyarch left there.
const LEGACY_LAYERS: &str = "run-layers";

/// The one garbage collector of unpacked layers: removes the committed
/// snapshots (of either snapshotter) that are no chain of the layers of
/// `stored` (the diff_ids of the store's images, see
/// [`crate::materialize::stored_diff_ids`]), leaves first; snapshots of
/// running containers stay. Call it under the store's gc lock. Returns how
/// many went and their bytes.
pub fn prune_layers(root: &Path, stored: &[Vec<String>]) -> polyarch_snapshot::Result<(usize, u64)> {
    let keep = kept_chains(stored);
    let (mut removed, mut bytes) = (0, 0);
    let legacy = root.join(LEGACY_LAYERS);
    if legacy.is_dir() {
        let size = polyarch_store::gc::tree_bytes(&legacy);
        if std::fs::remove_dir_all(&legacy).is_ok() {
            bytes += size;
        }
    }
    for (kind, dir) in snapshot_roots(root) {
        let s = open_snapshotter(kind, &dir)?;
        // A parent goes once its children have: repeat while that helps.
        loop {
            let all = s.list()?;
            let parents: BTreeSet<String> = all.iter().filter_map(|i| i.parent.clone()).collect();
            let leaves: Vec<String> = all
                .iter()
                .filter(|i| i.kind == Kind::Committed)
                .filter(|i| !keep.contains(&i.key) && !parents.contains(&i.key))
                .map(|i| i.key.clone())
                .collect();
            let before = removed;
            for k in leaves {
                let size = s.usage(&k).map(|u| u.size).unwrap_or(0);
                if s.remove(&k).is_ok() {
                    removed += 1;
                    bytes += size;
                }
            }
            if removed == before {
                break;
            }
        }
    }
    Ok((removed, bytes))
}

/// Removes the active snapshots of dead owners: those of runs
/// (`run-pa-PID-START-SEQ`) and those being unpacked
/// (`extract-PID-NANOS-SEQ-CHAIN`), then what a snapshotter killed
/// half-way through a change left with no record.
fn reclaim_snapshots(kind: &str, dir: &Path, sys: &dyn Syscalls, done: &mut Reclaimed) {
    let s = match open_snapshotter(kind, dir) {
        Ok(s) => s,
        Err(e) => return done.failed.push((dir.to_path_buf(), e.to_string())),
    };
    let Ok(all) = s.list() else { return };
    let ids = record_ids(dir);
    for info in all.iter().filter(|i| i.kind != Kind::Committed) {
        if !snapshot_is_stale(&info.key, sys) {
            continue;
        }
        // A commit killed between writing the committed record and
        // dropping the active one leaves both naming one directory: only
        // the stale record goes then.
        let id = ids.iter().find(|r| r.0 == info.key).map(|r| &r.1);
        let shared = id.is_some_and(|id| ids.iter().any(|r| r.0 != info.key && &r.1 == id));
        let removed = if shared {
            let meta =
                dir.join("metadata").join(format!("{}.json", polyarch_oci::Digest::sha256(info.key.as_bytes()).hex()));
            std::fs::remove_file(&meta).map_err(|e| e.to_string())
        } else {
            match s.remove(&info.key) {
                // Another command took it back first.
                Err(e) if e.kind() == polyarch_snapshot::ErrorKind::NotFound => continue,
                r => r.map_err(|e| e.to_string()),
            }
        };
        match removed {
            Ok(()) => done.snapshots.push(info.key.clone()),
            Err(e) => done.failed.push((dir.join(&info.key), e)),
        }
    }
    remove_orphans(dir, &record_ids(dir), done);
}

/// `(key, id)` of every snapshot record (`metadata/*.json`, see
/// `polyarch_snapshot`'s records).
fn record_ids(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("metadata")).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap_or_default()) else {
            continue;
        };
        if let (Some(k), Some(id)) = (v["key"].as_str(), v["id"].as_str()) {
            out.push((k.to_string(), id.to_string()));
        }
    }
    out
}

/// Snapshot directories no record names and record temp files, older than
/// [`ORPHAN_GRACE`] (a snapshotter makes the directory, then its record,
/// at once; removes the record, then the directory).
fn remove_orphans(dir: &Path, ids: &[(String, String)], done: &mut Reclaimed) {
    let old = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= ORPHAN_GRACE))
    };
    for e in std::fs::read_dir(dir.join("snapshots")).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if ids.iter().any(|r| r.1 == name) || !old(&p) {
            continue;
        }
        match std::fs::remove_dir_all(&p) {
            Ok(()) => done.dirs.push(p),
            Err(e) => done.failed.push((p, e.to_string())),
        }
    }
    for e in std::fs::read_dir(dir.join("metadata")).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") && old(&p) && std::fs::remove_file(&p).is_ok() {
            done.temp_files.0 += 1;
        }
    }
}

/// Temp files and directories (`.tmp…`, made by a write or a check that is
/// renamed or removed at once when it ends) older than [`ORPHAN_GRACE`]:
/// what a process killed in the middle left.
fn remove_old_temps(dir: &Path, done: &mut Reclaimed) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".tmp") || name.starts_with("overlay-check")) {
            continue;
        }
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.modified().ok().and_then(|t| t.elapsed().ok()).is_none_or(|age| age < ORPHAN_GRACE) {
            continue;
        }
        if meta.is_dir() {
            match state::remove_tree(&p, &Linux) {
                Ok(c) => done.absorb(c),
                Err(e) => done.failed.push((p, e.to_string())),
            }
            continue;
        }
        match std::fs::remove_file(&p) {
            Ok(()) => done.temp_files.0 += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => done.failed.push((p, e.to_string())),
        }
    }
}

/// How old a snapshot directory without a record must be to be taken for
/// one a killed snapshotter left.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// Whether an active snapshot's key names an owner that is gone. Keys of
/// other forms are never stale.
pub fn snapshot_is_stale(key: &str, sys: &dyn Syscalls) -> bool {
    if let Some(rest) = key.strip_prefix("extract-") {
        let mut parts = rest.split('-');
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let made = parts.next().and_then(|n| n.parse::<u128>().ok());
        return match (pid, made) {
            (Some(pid), Some(made)) => state::is_stale_since(pid, made, sys),
            _ => false,
        };
    }
    key.starts_with("run-pa-") && state::is_stale(key, sys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_exec::sys::Recording;

    #[test]
    fn stale_snapshot_keys() {
        let sys = Recording::new().with_process(10, 100);
        assert!(snapshot_is_stale("run-pa-20-200-0", &sys));
        assert!(!snapshot_is_stale("run-pa-10-100-0", &sys));
        assert!(snapshot_is_stale("extract-20-5-0-sha256:aa", &sys), "no process 20");
        assert!(!snapshot_is_stale("sha256:aa", &sys));
        assert!(!snapshot_is_stale("extract-x-5-0-sha256:aa", &sys));
        let me = std::process::id();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        assert!(!snapshot_is_stale(&format!("extract-{me}-{now}-0-sha256:aa"), &Linux));
    }

    #[test]
    fn reclaims_dead_owners_work_only() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("root")).unwrap();
        let root = store.root();
        let (dead, live) = ("pa-20-200-0", "pa-10-100-0");
        for d in ["run", "run-layers"] {
            for id in [dead, live] {
                std::fs::create_dir_all(root.join(d).join(id).join("x")).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("run/other")).unwrap();
        std::fs::write(root.join(".index.json.x1"), b"{").unwrap();
        let s = open_snapshotter("naive", &root.join("snapshots/naive")).unwrap();
        for key in ["run-pa-20-200-1", "run-pa-10-100-1", "extract-20-5-0-sha256:aa"] {
            s.prepare(key, None).unwrap();
        }
        // A commit of extract-20-6 killed half-way: two records, one directory.
        s.prepare("extract-20-6-0-sha256:bb", None).unwrap();
        s.commit("sha256:bb", "extract-20-6-0-sha256:bb").unwrap();
        let ids = record_ids(&root.join("snapshots/naive"));
        let id = ids.iter().find(|r| r.0 == "sha256:bb").unwrap().1.clone();
        let meta = |k: &str| {
            root.join("snapshots/naive/metadata")
                .join(format!("{}.json", polyarch_oci::Digest::sha256(k.as_bytes()).hex()))
        };
        let half = serde_json::json!({"key": "extract-20-6-0-sha256:bb", "id": id, "kind": "active", "parent": null});
        std::fs::write(meta("extract-20-6-0-sha256:bb"), serde_json::to_vec(&half).unwrap()).unwrap();
        let sys = Recording::new().with_process(10, 100);
        let done = reclaim_with(&store, Some("/nonexistent/runtime"), &sys);
        assert!(root.join("snapshots/naive/snapshots").join(&id).is_dir(), "the committed snapshot keeps its tree");
        assert!(done.failed.is_empty(), "{done:?}");
        assert_eq!(done.dirs, [root.join("run").join(dead), root.join("run-layers").join(dead)]);
        let mut gone = done.snapshots.clone();
        gone.sort();
        assert_eq!(gone, ["extract-20-5-0-sha256:aa", "extract-20-6-0-sha256:bb", "run-pa-20-200-1"]);
        assert!(root.join("run").join(live).exists() && root.join("run/other").exists());
        let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["run-pa-10-100-1", "sha256:bb"]);
        assert!(!root.join(".index.json.x1").exists());
        assert!(reclaim_with(&store, None, &sys).is_empty());
    }

    #[test]
    fn old_snapshot_directories_without_a_record_go() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("root")).unwrap();
        let dir = store.root().join("snapshots/naive");
        let s = open_snapshotter("naive", &dir).unwrap();
        s.prepare("kept", None).unwrap();
        let (orphan, young, tmp) =
            (dir.join("snapshots/sorphan"), dir.join("snapshots/syoung"), dir.join("metadata/.tmp1"));
        std::fs::create_dir_all(orphan.join("big")).unwrap();
        std::fs::create_dir_all(&young).unwrap();
        std::fs::write(&tmp, b"{").unwrap();
        let record_tmp = store.root().join("build-cache/.tmpX");
        std::fs::create_dir_all(record_tmp.parent().unwrap()).unwrap();
        std::fs::write(&record_tmp, b"{").unwrap();
        let mount_tmp = store.root().join("cache-mounts/.tmpY");
        std::fs::create_dir_all(mount_tmp.join("sub")).unwrap();
        let young_tmp = store.root().join("cache-mounts/.tmpZ");
        std::fs::create_dir_all(&young_tmp).unwrap();
        for p in [&orphan, &tmp, &record_tmp, &mount_tmp] {
            let ok = std::process::Command::new("touch").args(["-d", "2000-01-01"]).arg(p).status().unwrap();
            assert!(ok.success());
        }
        let done = reclaim_with(&store, None, &Recording::new());
        assert_eq!(done.dirs, [orphan.clone(), mount_tmp.clone()]);
        assert!(!orphan.exists() && !tmp.exists() && young.exists());
        assert!(!record_tmp.exists() && !mount_tmp.exists() && young_tmp.exists());
        assert_eq!(s.list().unwrap().len(), 1);
        assert!(s.mounts("kept").is_ok());
    }
}
