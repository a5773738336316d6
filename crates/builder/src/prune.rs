//! The build cache as `du` and `prune` see it: a step's records
//! (`build-cache/`, type `regular`) and the cache mounts (`cache-mounts/`,
//! type `exec.cachemount`), each with a size, when it was made and last
//! used; and removing the ones [`polyarch_store::retention::select`]
//! picks, under the store's gc lock (which waits for running builds, so a
//! prune never removes what a build is using).
//!
//! A step record goes blob first, then its file (a record without its blob
//! is a miss); a cache mount is renamed to a `.tmp` name first, so that no
//! build sees it half-removed (reclaim removes what a kill left).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polyarch_oci::Digest;
use polyarch_store::retention::{self, DiskStat, Entry, Policy, RecordType};
use polyarch_store::{BlobSource, GcGuard, PruneOptions, PruneReport, Store};

use crate::cache::{write_stored, Stored, USES};
use crate::error::{Error, Result};

/// How many hex digits of a record's key or a mount's name its ID shows
/// (as long as BuildKit's IDs).
const ID_LEN: usize = 25;

/// One record of the build cache.
#[derive(Debug, Clone)]
pub struct CacheRecord {
    /// What a prune sees.
    pub entry: Entry,
    path: PathBuf,
    blob: Option<Digest>,
}

/// Every record of the cache in `store`, most recently used first.
pub fn records(store: &Store) -> Result<Vec<CacheRecord>> {
    let referenced = store.referenced_blobs()?;
    let mut out = step_records(store, &referenced);
    out.extend(mount_records(store));
    out.sort_by_key(|r| std::cmp::Reverse(r.entry.last_used));
    Ok(out)
}

/// The hits the log holds: key hex → (last, count).
fn read_uses(dir: &Path) -> std::collections::HashMap<String, (i64, u64)> {
    let mut uses = std::collections::HashMap::new();
    let text = std::fs::read_to_string(dir.join(USES)).unwrap_or_default();
    for line in text.lines() {
        let Some((hex, t)) = line.split_once(' ') else { continue };
        let Ok(t) = t.parse::<i64>().map(nanos) else { continue };
        let u = uses.entry(hex.to_string()).or_insert((t, 0));
        u.0 = u.0.max(t);
        u.1 += 1;
    }
    uses
}

/// Each record file with the hits of the log folded in.
fn stored_records(dir: &Path) -> Vec<(String, Stored)> {
    let uses = read_uses(dir);
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == USES {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        let Ok(mut stored) = serde_json::from_slice::<Stored>(&bytes) else { continue };
        stored.made = stored.made.map(nanos);
        stored.last_used = stored.last_used.map(nanos);
        if stored.last_used.is_none() {
            stored.last_used = mtime(&e.path());
        }
        if let Some((t, n)) = uses.get(&name) {
            stored.last_used = stored.last_used.max(Some(*t));
            stored.usage_count = stored.usage_count.max(1) + n;
        }
        out.push((name, stored));
    }
    out
}

/// Folds the hit log into the record files and empties it. Only under the
/// gc lock: no build is appending meanwhile.
pub fn compact(store: &Store, _gc: &GcGuard) -> Result<()> {
    let dir = store.root().join("build-cache");
    if read_uses(&dir).is_empty() {
        return Ok(());
    }
    let used = read_uses(&dir);
    for (name, stored) in stored_records(&dir).into_iter().filter(|(n, _)| used.contains_key(n)) {
        write_stored(&dir, &dir.join(&name), &stored)?;
    }
    let log = dir.join(USES);
    std::fs::remove_file(&log).map_err(|e| Error::io(&log, e))
}

/// The bytes of the hit log (to compact it when it grows).
pub fn uses_log_bytes(store: &Store) -> u64 {
    std::fs::metadata(store.root().join("build-cache").join(USES)).map_or(0, |m| m.len())
}

fn step_records(store: &Store, referenced: &BTreeSet<Digest>) -> Vec<CacheRecord> {
    let dir = store.root().join("build-cache");
    let mut out = Vec::new();
    for (name, stored) in stored_records(&dir) {
        let path = dir.join(&name);
        let modified = mtime(&path);
        let blob = stored.rec.layer.as_ref().map(|l| l.desc.digest.clone());
        let present = blob.as_ref().is_none_or(|d| store.exists(d).unwrap_or(false));
        let size = stored.rec.layer.as_ref().filter(|_| present).map_or(0, |l| l.desc.size);
        let entry = Entry {
            id: name.chars().take(ID_LEN).collect(),
            size,
            created: stored.made.or(modified),
            last_used: stored.last_used,
            usage_count: stored.usage_count.max(1),
            record_type: RecordType::Regular,
            shared: blob.as_ref().is_some_and(|d| referenced.contains(d)),
            in_use: false,
            description: stored.description,
        };
        out.push(CacheRecord { entry, path, blob });
    }
    out
}

fn mount_records(store: &Store) -> Vec<CacheRecord> {
    let dir = store.root().join("cache-mounts");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let used = newest_mtime(&e.path());
        let entry = Entry {
            id: name.chars().take(ID_LEN).collect(),
            size: polyarch_store::gc::tree_bytes(&e.path()),
            created: used,
            last_used: used,
            usage_count: 1,
            record_type: RecordType::ExecCachemount,
            shared: false,
            in_use: false,
            description: "cached mount".into(),
        };
        out.push(CacheRecord { entry, path: e.path(), blob: None });
    }
    out
}

/// A time as records hold it, in nanoseconds since the epoch; a store
/// written before they were kept in nanoseconds holds seconds.
fn nanos(t: i64) -> i64 {
    if (0..1 << 40).contains(&t) {
        t.saturating_mul(retention::NANOS)
    } else {
        t
    }
}

fn mtime(p: &Path) -> Option<i64> {
    let m = std::fs::symlink_metadata(p).ok()?.modified().ok()?;
    i64::try_from(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos()).ok()
}

/// The latest change in a cache mount: its directory or any entry one
/// level below (where builds' writes land first).
fn newest_mtime(dir: &Path) -> Option<i64> {
    let below = std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| mtime(&e.path()));
    below.chain(mtime(dir)).max()
}

/// What [`prune`] removed.
#[derive(Debug, Default)]
pub struct Pruned {
    /// The records, in the order they went.
    pub records: Vec<Entry>,
    /// The blobs no image nor kept record needs any more.
    pub blobs: PruneReport,
}

/// Applies `policies` in turn (each to what the ones before left) at `now`,
/// removes the records they pick, then (when some went, or `sweep`) every
/// blob that no image and no record left needs.
pub fn prune(
    store: &Store,
    gc: &GcGuard,
    policies: &[Policy],
    disk: DiskStat,
    now: i64,
    sweep: bool,
) -> Result<Pruned> {
    compact(store, gc)?;
    let mut left = records(store)?;
    let mut gone: Vec<CacheRecord> = Vec::new();
    for policy in policies {
        let entries: Vec<Entry> = left.iter().map(|r| r.entry.clone()).collect();
        let mut picked = retention::select(&entries, policy, now, disk);
        picked.sort_unstable_by(|a, b| b.cmp(a));
        let mut batch: Vec<CacheRecord> = picked.into_iter().map(|i| left.remove(i)).collect();
        batch.reverse();
        gone.extend(batch);
    }
    let mut keep: BTreeSet<Digest> = left.iter().filter_map(|r| r.blob.clone()).collect();
    let referenced = store.referenced_blobs()?;
    let mut pruned = Pruned::default();
    for r in gone {
        remove(store, &r, |d| keep.contains(d) || referenced.contains(d))?;
        pruned.records.push(r.entry);
    }
    if sweep || !pruned.records.is_empty() {
        let kept: Vec<Entry> = left.iter().map(|r| r.entry.clone()).collect();
        keep.extend(loose_kept(store, &keep, &referenced, &kept, policies, now, disk)?);
        pruned.blobs = store.prune_locked(gc, &PruneOptions { keep, ..PruneOptions::default() })?;
    }
    Ok(pruned)
}

/// The blobs no image and no kept record holds (what builds pulled for
/// their base images, mostly) that the `policies` keep, each seen as a
/// private `regular` record of its size last used when a build last used
/// it (its file's modification time, see [`Store::touch`]), as BuildKit's pulled layers are records: a
/// prune with `until`, a type filter or a size limit keeps the base images
/// that builds used lately, as it keeps their steps. The `records` kept
/// count against a size limit, and stay.
fn loose_kept(
    store: &Store,
    keep: &BTreeSet<Digest>,
    referenced: &BTreeSet<Digest>,
    records: &[Entry],
    policies: &[Policy],
    now: i64,
    disk: DiskStat,
) -> Result<BTreeSet<Digest>> {
    let mut left: Vec<(Digest, Entry)> = store
        .blobs()?
        .into_iter()
        .filter(|b| !keep.contains(&b.digest) && !referenced.contains(&b.digest))
        .map(|b| {
            let used = mtime(&store.blob_path(&b.digest));
            let entry = Entry {
                id: b.digest.hex().chars().take(ID_LEN).collect(),
                size: b.size,
                created: used,
                last_used: used,
                usage_count: 1,
                record_type: RecordType::Regular,
                shared: false,
                in_use: false,
                description: "pulled content".into(),
            };
            (b.digest, entry)
        })
        .collect();
    let staying = records.iter().map(|e| Entry { in_use: true, ..e.clone() });
    let staying: Vec<Entry> = staying.collect();
    for policy in policies {
        let mut entries = staying.clone();
        entries.extend(left.iter().map(|(_, e)| e.clone()));
        let mut picked: Vec<usize> = retention::select(&entries, policy, now, disk)
            .into_iter()
            .filter_map(|i| i.checked_sub(staying.len()))
            .collect();
        picked.sort_unstable_by(|a, b| b.cmp(a));
        for i in picked {
            left.remove(i);
        }
    }
    Ok(left.into_iter().map(|(d, _)| d).collect())
}

fn remove(store: &Store, r: &CacheRecord, needed: impl Fn(&Digest) -> bool) -> Result<()> {
    if r.entry.record_type == RecordType::ExecCachemount {
        let name = r.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let doomed = r.path.with_file_name(format!(".tmp-pruned-{name}"));
        std::fs::rename(&r.path, &doomed).map_err(|e| Error::io(&r.path, e))?;
        return std::fs::remove_dir_all(&doomed).map_err(|e| Error::io(&doomed, e));
    }
    if let Some(d) = r.blob.as_ref().filter(|d| !needed(d)) {
        match store.delete_blob(d) {
            Ok(()) => {}
            Err(e) if e.kind() == polyarch_store::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    match std::fs::remove_file(&r.path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&r.path, e)),
        _ => Ok(()),
    }
}

/// The bytes the cache takes: its records' sizes, shared ones included,
/// without reading the records (for the check after every build).
pub fn quick_usage(store: &Store) -> u64 {
    polyarch_store::gc::tree_bytes(&store.root().join("blobs"))
        + polyarch_store::gc::tree_bytes(&store.root().join("cache-mounts"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, Record};
    use crate::layer::Layer;

    fn record(store: &Store, cache: &Cache, key: &str, data: &[u8]) -> Digest {
        let desc = store.put_bytes(polyarch_oci::media_type::OCI_LAYER_GZIP, data).unwrap();
        let layer = Layer { desc: desc.clone(), diff_id: Digest::sha256(data) };
        cache.put_described(key, &Record { layer: Some(layer), created: Some(1) }, &format!("RUN {key}")).unwrap();
        desc.digest
    }

    #[test]
    fn records_track_use_and_prune_removes_blob_then_record() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let (a, b) = {
            let cache = Cache::new(&store);
            let a = record(&store, &cache, "sha256:aa", b"first layer");
            let b = record(&store, &cache, "sha256:bb", b"second");
            assert!(cache.get("sha256:aa").is_some());
            assert!(cache.get("sha256:bb").is_some());
            (a, b)
        };
        let recs = records(&store).unwrap();
        assert_eq!(recs.len(), 2);
        let ra = recs.iter().find(|r| r.entry.id == "aa").unwrap();
        assert_eq!((ra.entry.usage_count, ra.entry.size, ra.entry.description.as_str()), (2, 11, "RUN sha256:aa"));
        let gc = store.gc_lock().unwrap();
        let mut p = Policy::default();
        p.filters.add("id=aa").unwrap();
        let pruned = prune(&store, &gc, &[p], DiskStat::default(), cache_now(), true).unwrap();
        assert_eq!(pruned.records.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["aa"]);
        assert!(!store.exists(&a).unwrap() && store.exists(&b).unwrap(), "the kept record keeps its blob");
        assert!(!store.root().join("build-cache").join(USES).exists(), "the log was folded in");
        let left = records(&store).unwrap();
        assert_eq!((left.len(), left[0].entry.usage_count), (1, 2), "folded once: {left:?}");
    }

    #[test]
    fn pulled_blobs_follow_the_policy_as_records_would() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let put = |data: &[u8], age: std::time::Duration| {
            let desc = store.put_bytes(polyarch_oci::media_type::OCI_LAYER_GZIP, data).unwrap();
            let f = std::fs::File::options().write(true).open(store.blob_path(&desc.digest)).unwrap();
            f.set_modified(std::time::SystemTime::now() - age).unwrap();
            desc.digest
        };
        let old = put(b"a base layer pulled two hours ago", std::time::Duration::from_secs(7200));
        let recent = put(b"a base layer used a minute ago", std::time::Duration::from_secs(60));
        let gc = store.gc_lock().unwrap();
        let run = |p: Policy| {
            prune(&store, &gc, &[p], DiskStat::default(), cache_now(), true).unwrap();
            (store.exists(&old).unwrap(), store.exists(&recent).unwrap())
        };
        let mut other_type = Policy::default();
        other_type.filters.add("type=exec.cachemount").unwrap();
        assert_eq!(run(other_type), (true, true), "a type filter that is not theirs keeps them");
        assert_eq!(run(Policy { max_used_space: 1 << 20, ..Policy::default() }), (true, true), "under the limit");
        let mut until = Policy::default();
        until.filters.add("until=1h").unwrap();
        assert_eq!(run(until), (false, true), "only what was not used within the hour");
        // Touched by a build: used now.
        store.touch(&[&recent]);
        assert!(mtime(&store.blob_path(&recent)).unwrap() > cache_now() - 5 * retention::NANOS);
        assert_eq!(run(Policy::default()), (false, false), "no filter, no limit: everything unused");
    }

    #[test]
    fn within_one_second_the_record_made_last_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        {
            let cache = Cache::new(&store);
            record(&store, &cache, "sha256:b0", &[1u8; 100]);
            // b is used twice, then a is made: a is the most recent one.
            assert!(cache.get("sha256:b0").is_some());
            record(&store, &cache, "sha256:a0", &[2u8; 100]);
        }
        let gc = store.gc_lock().unwrap();
        let p = Policy { max_used_space: 150, ..Policy::default() };
        let pruned = prune(&store, &gc, &[p], DiskStat::default(), cache_now(), true).unwrap();
        assert_eq!(pruned.records.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["b0"]);
    }

    #[test]
    fn a_store_with_times_in_seconds_still_reads() {
        assert_eq!(nanos(1_700_000_000), 1_700_000_000 * retention::NANOS);
        assert_eq!(nanos(1_700_000_000 * retention::NANOS), 1_700_000_000 * retention::NANOS);
    }

    #[test]
    fn cache_mounts_are_records_and_go_whole() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m = store.root().join("cache-mounts").join("ab".repeat(32));
        std::fs::create_dir_all(m.join("x")).unwrap();
        std::fs::write(m.join("x/f"), vec![1u8; 5000]).unwrap();
        let recs = records(&store).unwrap();
        assert_eq!(recs[0].entry.record_type, RecordType::ExecCachemount);
        assert!(recs[0].entry.size >= 5000);
        let gc = store.gc_lock().unwrap();
        let mut p = Policy::default();
        p.filters.add("type=regular").unwrap();
        assert!(prune(&store, &gc, &[p], DiskStat::default(), cache_now(), true).unwrap().records.is_empty());
        let pruned = prune(&store, &gc, &[Policy::default()], DiskStat::default(), cache_now(), true).unwrap();
        assert_eq!(pruned.records.len(), 1);
        assert_eq!(std::fs::read_dir(store.root().join("cache-mounts")).unwrap().count(), 0);
    }

    fn cache_now() -> i64 {
        crate::cache::now()
    }
}
