//! The build cache: a step's key is the key of the typed op that
//! describes it ([`keys`]): its parent's key, the normalised op, the
//! arguments and environment that reach it, the platform and the content
//! of the files it reads. Records map keys to the layer the step produced
//! and live beside the store's content, so a record whose blob was pruned
//! is a miss.
//!
//! Builds that share a [`Merges`] table (the platforms of one
//! multi-platform build, builds sharing a builder) merge equal steps: the
//! first build that misses a key runs the step, and the others asking for
//! the same key meanwhile await its outcome, a record or the failure,
//! without blocking a thread or a timeout, so a step whose key is the same
//! for several platforms runs once and fails once for all of them (as
//! BuildKit's solver merges equal vertices, bk/solver/scheduler.go). Two
//! processes have two tables; a step one of them runs is locked in the
//! store ([`lock`]), so the other waits for its record instead of running
//! it too.

pub mod keys;
pub(crate) mod lock;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use polyarch_oci::{Algorithm, Digest, Digester, Platform};
use polyarch_store::{BlobSource, Store};
use tokio::sync::watch;

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{Kind, MemFs};
use crate::layer::Layer;

/// The digest of a tree's content: paths, types, modes, owners, link
/// targets, file bytes, extended attributes and which files are hard links
/// of an earlier path; times are left out, as BuildKit's content checksums
/// do. A tree without attributes or hard links digests as it always did.
/// File contents are hashed by streaming (once per content).
pub fn content_digest(fs: &MemFs) -> Result<Digest> {
    let mut h = Digester::new(Algorithm::Sha256);
    let mut firsts: std::collections::HashMap<u64, &str> = std::collections::HashMap::new();
    for (p, n) in fs.iter() {
        h.update(p.as_bytes());
        h.update(&[0]);
        h.update(format!("{:o}:{}:{}", n.mode, n.uid, n.gid).as_bytes());
        match &n.kind {
            Kind::Dir => h.update(b"d"),
            Kind::Symlink(t) => {
                h.update(b"l");
                h.update(t.as_bytes());
            }
            Kind::File(d) => {
                h.update(b"f");
                h.update(&d.sha256()?);
            }
            Kind::Device { block, major, minor } => {
                h.update(if *block { b"b" } else { b"c" });
                h.update(format!("{major}:{minor}").as_bytes());
            }
            Kind::Fifo => h.update(b"p"),
        }
        // Links and attributes follow a `\0/`, which no path starts with.
        if let Some(first) = n.link.map(|g| *firsts.entry(g).or_insert(p.as_str())).filter(|f| *f != p) {
            h.update(b"\0/h");
            h.update(first.as_bytes());
        }
        for (k, v) in &n.xattrs {
            h.update(b"\0/x");
            h.update(k.as_bytes());
            h.update(&[0]);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update(&[0]);
    }
    Ok(h.finish())
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The layer; `None` in records of a step that had no layer.
    pub layer: Option<Layer>,
    /// When the step ran (seconds since the epoch); a cached step keeps
    /// it, so a fully cached rebuild gives the same image.
    #[serde(default)]
    pub created: Option<i64>,
}

/// A record as its file holds it: the record, and what `du` and `prune`
/// read (when it was made and last used, how often, by which step). A hit
/// does not rewrite it: it appends one line to [`USES`] (one `write` on a
/// file opened once per build, not synced: a lost line only makes a record
/// look older), which `prune` folds into the records under its lock.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stored {
    #[serde(flatten)]
    pub(crate) rec: Record,
    /// When it was written (wall clock, unlike `created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) made: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_used: Option<i64>,
    #[serde(default)]
    pub(crate) usage_count: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) description: String,
}

/// The log of hits under `build-cache/`: lines of `HEX NANOSECONDS`.
pub(crate) const USES: &str = "uses.log";

/// Nanoseconds since the epoch, now (records made or used within one
/// second keep their order, for the least-recently-used prune).
pub(crate) fn now() -> i64 {
    polyarch_store::retention::now_nanos()
}

/// The steps being run by the builds that share this table: key → the
/// outcome its first run will give.
#[derive(Debug, Clone, Default)]
pub struct Merges(Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>);

impl Merges {
    /// Removes the entry of `key` if it is still the run `rx` watches
    /// (a later run of the same key may have taken its place).
    fn forget(&self, key: &str, rx: &watch::Receiver<Outcome>) {
        if let Ok(mut table) = self.0.lock() {
            if table.get(key).is_some_and(|r| r.same_channel(rx)) {
                table.remove(key);
            }
        }
    }
}

/// Where a step's first run is.
#[derive(Debug, Clone)]
enum Outcome {
    Running,
    Done(Box<Record>),
    Failed(Failure),
    /// Its build stopped without an outcome (cancelled): the next one to
    /// ask runs it.
    Abandoned,
}

/// A failure as the builds waiting for a step get it.
#[derive(Debug, Clone)]
struct Failure {
    kind: ErrorKind,
    message: String,
    diagnostic: Option<Box<polyarch_dockerfile::Diagnostic>>,
}

impl Failure {
    fn of(e: &Error) -> Failure {
        Failure { kind: e.kind(), message: e.to_string(), diagnostic: e.diagnostic().cloned().map(Box::new) }
    }

    fn error(&self) -> Error {
        Error::Shared { kind: self.kind, message: self.message.clone(), diagnostic: self.diagnostic.clone() }
    }
}

/// Who runs a missed key: another build of the table, or this one.
enum Waiting {
    Other(watch::Receiver<Outcome>),
    Mine(Running),
}

/// What looking a key up gave.
#[derive(Debug)]
pub enum Claim {
    /// The record: found, imported or made by another build meanwhile.
    Hit(Box<Record>),
    /// A miss: this build runs the step, and tells the builds awaiting it
    /// how that went through the [`Running`].
    Run(Running),
}

/// The first run of a step; dropped without [`Running::done`] or
/// [`Running::failed`] (its build was cancelled), it lets the next build
/// asking for the key run the step.
#[derive(Debug)]
pub struct Running {
    key: String,
    merges: Merges,
    tx: Option<watch::Sender<Outcome>>,
    /// Other processes wait while this is held; let go after the outcome
    /// (the record is written by then).
    locked: Option<lock::Held>,
}

impl Running {
    /// Settles `running` (when this build ran the step) with how the
    /// run went.
    pub fn settle(running: Option<Running>, made: &Result<Record>) {
        match (running, made) {
            (Some(r), Ok(rec)) => r.done(rec),
            (Some(r), Err(e)) => r.failed(e),
            (None, _) => {}
        }
    }

    /// The step made `rec` (already stored).
    pub fn done(mut self, rec: &Record) {
        self.finish(Outcome::Done(Box::new(rec.clone())));
    }

    /// The step failed with `e`: the builds awaiting it fail with it too.
    pub fn failed(mut self, e: &Error) {
        self.finish(Outcome::Failed(Failure::of(e)));
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            self.merges.forget(&self.key, &tx.subscribe());
            tx.send_replace(outcome);
        }
        self.locked = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.finish(Outcome::Abandoned);
    }
}

/// Cache records under `<store root>/build-cache`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    store: Store,
    merges: Merges,
    /// Keeps `prune` from removing what this build reads or writes until
    /// the build ends (`None` if the lock file could not be opened).
    _lease: Arc<Option<polyarch_store::Lease>>,
    /// The hit log, opened at the first hit.
    uses: Arc<Mutex<Option<std::fs::File>>>,
    /// Imported records and the build's notes (`--cache-from`, `--cache-to`).
    io: Option<Arc<crate::cacheio::CacheIo>>,
}

impl Cache {
    /// The cache of `store`, for one build, with a merge table of its own.
    pub fn new(store: &Store) -> Cache {
        Cache {
            dir: store.root().join("build-cache"),
            store: store.clone(),
            merges: Merges::default(),
            _lease: Arc::new(store.lease().ok()),
            uses: Arc::new(Mutex::new(None)),
            io: None,
        }
    }

    /// Merges equal steps with the other builds given the same table.
    pub fn with_merges(mut self, merges: Merges) -> Cache {
        self.merges = merges;
        self
    }

    /// Looks up imported records on a miss and notes what the build uses.
    pub fn with_io(mut self, io: Option<Arc<crate::cacheio::CacheIo>>) -> Cache {
        self.io = io;
        self
    }

    /// Notes that the build took `key`, started from `parent`, from the
    /// cache or made it (for `--cache-to`).
    pub fn noted(&self, parent: &str, key: &str, platform: &Platform, rec: &Record) {
        if let Some(io) = &self.io {
            io.used(parent, key, platform, rec);
        }
    }

    /// The imported record of `key`, its blob fetched, recorded here too.
    fn import(&self, key: &str) -> Option<Record> {
        let rec = self.io.as_ref()?.lookup(key, &self.store)?;
        let t = now();
        let stored = Stored {
            rec: rec.clone(),
            made: Some(t),
            last_used: Some(t),
            usage_count: 1,
            description: "imported".into(),
        };
        // A record not written here is only imported again next time.
        let _ = self.write(key, &stored);
        Some(rec)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key.trim_start_matches("sha256:"))
    }

    /// The record for `key`, if it and its blob are present (here or
    /// imported).
    pub fn get(&self, key: &str) -> Option<Record> {
        self.read(key).or_else(|| self.import(key))
    }

    /// The record for `key`; on a miss, the run of the step: this build's
    /// when no build sharing the merge table runs it, else that run's
    /// outcome, awaited (its record, or its failure as an error).
    pub async fn claim(&self, key: &str) -> Result<Claim> {
        loop {
            if let Some(rec) = self.get(key) {
                return Ok(Claim::Hit(Box::new(rec)));
            }
            let waiting = {
                let Ok(mut table) = self.merges.0.lock() else {
                    let merges = self.merges.clone();
                    return Ok(Claim::Run(Running { key: key.into(), merges, tx: None, locked: None }));
                };
                match table.get(key) {
                    Some(rx) => Waiting::Other(rx.clone()),
                    None => {
                        // A run may have ended (its record written, its
                        // entry removed) since the read above.
                        if let Some(rec) = self.read(key) {
                            return Ok(Claim::Hit(Box::new(rec)));
                        }
                        let (tx, rx) = watch::channel(Outcome::Running);
                        table.insert(key.to_string(), rx);
                        let merges = self.merges.clone();
                        Waiting::Mine(Running { key: key.into(), merges, tx: Some(tx), locked: None })
                    }
                }
            };
            let mut rx = match waiting {
                Waiting::Other(rx) => rx,
                Waiting::Mine(mut running) => {
                    // This build runs it, unless another process does: then
                    // its record, once it lets go (the builds of this
                    // table wait on `running` meanwhile).
                    running.locked = lock::acquire(&self.dir.join("locks"), key).await;
                    if running.locked.is_some() {
                        if let Some(rec) = self.read(key) {
                            running.done(&rec);
                            return Ok(Claim::Hit(Box::new(rec)));
                        }
                    }
                    return Ok(Claim::Run(running));
                }
            };
            let outcome = rx.wait_for(|o| !matches!(o, Outcome::Running)).await.map(|o| o.clone());
            match outcome {
                Ok(Outcome::Done(rec)) => {
                    self.note_use(key);
                    return Ok(Claim::Hit(rec));
                }
                Ok(Outcome::Failed(f)) => return Err(f.error()),
                // Abandoned: look again, and run it if nobody does.
                _ => self.merges.forget(key, &rx),
            }
        }
    }

    /// The record of `key` if its blob is there; a hit counts as a use.
    fn read(&self, key: &str) -> Option<Record> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let stored: Stored = serde_json::from_slice(&bytes).ok()?;
        if let Some(l) = &stored.rec.layer {
            if !self.store.exists(&l.desc.digest).unwrap_or(false) {
                return None;
            }
        }
        self.note_use(key);
        Some(stored.rec)
    }

    /// Appends a hit of `key` to the log; a failure only loses the hit.
    fn note_use(&self, key: &str) {
        use std::io::Write as _;
        let Ok(mut log) = self.uses.lock() else { return };
        if log.is_none() {
            *log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(USES)).ok();
        }
        if let Some(f) = log.as_mut() {
            // One write of a short line: appends of several builds do not mix.
            let _ = f.write_all(format!("{} {}\n", key.trim_start_matches("sha256:"), now()).as_bytes());
        }
    }

    /// Stores the record for `key` (atomically).
    pub fn put(&self, key: &str, rec: &Record) -> Result<()> {
        self.put_described(key, rec, "")
    }

    /// [`Cache::put`] with the step that made the record, as `du --verbose`
    /// shows it.
    pub fn put_described(&self, key: &str, rec: &Record, description: &str) -> Result<()> {
        let t = now();
        let stored = Stored {
            rec: rec.clone(),
            made: Some(t),
            last_used: Some(t),
            usage_count: 1,
            description: description.into(),
        };
        self.write(key, &stored)
    }

    fn write(&self, key: &str, rec: &Stored) -> Result<()> {
        write_stored(&self.dir, &self.path(key), rec)
    }
}

/// Writes a record file through a temp file in `dir` and a rename.
pub(crate) fn write_stored(dir: &std::path::Path, path: &std::path::Path, rec: &Stored) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let bytes = serde_json::to_vec(rec).map_err(|source| Error::Json { what: "cache record", source })?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| Error::io(dir, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::file_node;

    #[test]
    fn content_digest_ignores_times_only() {
        let mut a = MemFs::new();
        a.insert("f".into(), file_node(b"x", 0o644, 1));
        let mut b = MemFs::new();
        b.insert("f".into(), file_node(b"x", 0o644, 2));
        assert_eq!(content_digest(&a).unwrap(), content_digest(&b).unwrap());
        b.insert("f".into(), file_node(b"y", 0o644, 2));
        assert_ne!(content_digest(&a).unwrap(), content_digest(&b).unwrap());
        b.insert("f".into(), file_node(b"x", 0o600, 2));
        assert_ne!(content_digest(&a).unwrap(), content_digest(&b).unwrap());
    }

    #[test]
    fn content_digest_covers_links_and_xattrs() {
        let mut a = MemFs::new();
        a.insert("f".into(), file_node(b"x", 0o644, 1));
        a.insert("g".into(), file_node(b"x", 0o644, 1));
        let plain = content_digest(&a).unwrap();
        let mut b = a.clone();
        let g = crate::fs::new_link_group();
        for p in ["f", "g"] {
            b.insert(p.into(), crate::fs::Node { link: Some(g), ..file_node(b"x", 0o644, 1) });
        }
        assert_ne!(content_digest(&b).unwrap(), plain, "g is a hard link of f");
        let mut c = b.clone();
        let other = crate::fs::new_link_group();
        for p in ["f", "g"] {
            c.insert(p.into(), crate::fs::Node { link: Some(other), ..file_node(b"x", 0o644, 1) });
        }
        assert_eq!(
            content_digest(&c).unwrap(),
            content_digest(&b).unwrap(),
            "group ids do not count, only who links to whom"
        );
        let mut x = a.clone();
        let mut n = file_node(b"x", 0o644, 1);
        n.xattrs.insert("user.a".into(), b"1".to_vec());
        x.insert("f".into(), n);
        assert_ne!(content_digest(&x).unwrap(), plain);
    }

    fn shared(store: &Store) -> (Cache, Cache) {
        let merges = Merges::default();
        (Cache::new(store).with_merges(merges.clone()), Cache::new(store).with_merges(merges))
    }

    fn running(c: Claim) -> Running {
        match c {
            Claim::Run(r) => r,
            Claim::Hit(rec) => panic!("a hit: {rec:?}"),
        }
    }

    #[tokio::test]
    async fn a_second_build_awaits_the_first_run() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let (first, second) = shared(&store);
        let run = running(first.claim("sha256:aa").await.unwrap());
        let waiter = tokio::spawn(async move { second.claim("sha256:aa").await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "the second build awaits the run");
        let rec = Record { layer: None, created: Some(7) };
        first.put("sha256:aa", &rec).unwrap();
        run.done(&rec);
        assert!(matches!(waiter.await.unwrap(), Ok(Claim::Hit(r)) if *r == rec));
    }

    #[tokio::test]
    async fn the_waiters_get_the_failure_of_the_first_run() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let (first, second) = shared(&store);
        let run = running(first.claim("sha256:ab").await.unwrap());
        let waiter = tokio::spawn(async move { second.claim("sha256:ab").await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        run.failed(&Error::Option("exit code: 1".into()));
        let e = waiter.await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "exit code: 1");
        assert_eq!(e.kind(), ErrorKind::Invalid, "the failure keeps its kind");
        let again = first.claim("sha256:ab").await.unwrap();
        assert!(matches!(again, Claim::Run(_)), "a later build runs the failed step again");
    }

    #[tokio::test]
    async fn a_run_dropped_without_an_outcome_passes_to_a_waiter() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let (first, second) = shared(&store);
        let run = running(first.claim("sha256:bb").await.unwrap());
        let waiter = tokio::spawn(async move { second.claim("sha256:bb").await.map(running) });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(run);
        let next = waiter.await.unwrap().unwrap();
        let third = tokio::spawn({
            let first = first.clone();
            async move { first.claim("sha256:bb").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the waiter's run is the one others await now");
        next.failed(&Error::Option("x".into()));
        assert!(third.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn builds_with_their_own_tables_do_not_wait() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let (a, b) = (Cache::new(&store), Cache::new(&store));
        let _run = running(a.claim("sha256:cc").await.unwrap());
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), b.claim("sha256:cc")).await;
        assert!(
            matches!(other, Ok(Ok(Claim::Run(_)))),
            "another table of this process runs it too (other processes wait: see cache::lock)"
        );
    }

    #[tokio::test]
    async fn a_step_another_process_runs_is_awaited_and_taken_from_its_record() {
        use rustix::fs::FlockOperation;
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let cache = Cache::new(&store);
        // Another process runs "sha256:dd": it holds the key's lock file.
        let locks = d.path().join("build-cache/locks");
        std::fs::create_dir_all(&locks).unwrap();
        let file = locks.join("dd");
        let theirs = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&file).unwrap();
        rustix::fs::flock(&theirs, FlockOperation::LockExclusive).unwrap();
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.claim("sha256:dd").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "it waits while the other process runs the step");
        // The other process writes its record, removes its file, lets go.
        let rec = Record { layer: None, created: Some(7) };
        Cache::new(&store).put("sha256:dd", &rec).unwrap();
        std::fs::remove_file(&file).unwrap();
        drop(theirs);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
        assert!(matches!(got, Claim::Hit(r) if *r == rec), "the other process's record");

        // When it leaves no record (it failed, or was killed), this one runs it,
        // and the lock file goes when it is done.
        let theirs =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(locks.join("ee")).unwrap();
        rustix::fs::flock(&theirs, FlockOperation::LockExclusive).unwrap();
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.claim("sha256:ee").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(theirs);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
        let Claim::Run(r) = got else { panic!("a miss runs the step") };
        assert!(locks.join("ee").exists(), "held while it runs");
        r.done(&Record { layer: None, created: Some(8) });
        assert!(!locks.join("ee").exists(), "removed when done");
    }

    #[test]
    fn records_need_their_blob() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let cache = Cache::new(&store);
        assert!(cache.get("sha256:00").is_none());
        cache.put("sha256:00", &Record { layer: None, created: None }).unwrap();
        assert_eq!(cache.get("sha256:00"), Some(Record { layer: None, created: None }));
        let desc = store.put_bytes(polyarch_oci::media_type::OCI_LAYER_GZIP, b"blob").unwrap();
        let layer = Layer { desc: desc.clone(), diff_id: Digest::sha256(b"x") };
        cache.put("sha256:01", &Record { layer: Some(layer), created: Some(1) }).unwrap();
        assert!(cache.get("sha256:01").is_some());
        store.delete_blob(&desc.digest).unwrap();
        assert!(cache.get("sha256:01").is_none());
    }
}
