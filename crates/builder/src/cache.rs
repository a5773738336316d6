//! The build cache: a step's key is the digest of its parent's key, the
//! normalised instruction, the arguments and environment that reach it,
//! the platform and the content of the files it reads. Records map keys to
//! the layer the step produced and live beside the store's content, so a
//! record whose blob was pruned is a miss.
//!
//! Builds running at the same time in one process (the platforms of a
//! multi-platform build) share work through an in-flight map: the first
//! build that misses a key claims it, and another build asking for the same
//! key waits until the claim is settled and then reads the record, so a
//! step whose key is the same for several platforms runs once (as
//! BuildKit's solver merges equal vertices, bk/solver/scheduler.go).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use polyarch_oci::{Digest, Platform};
use polyarch_store::{BlobSource, Store};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::fs::{Kind, MemFs};
use crate::layer::Layer;

/// Bumped whenever what a step produces for the same key changes.
const VERSION: &str = "polyarch.build.cache.v1";

/// Builds a cache key from parts; each part is length-prefixed so that
/// `("ab","c")` and `("a","bc")` differ.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    hash: Sha256,
}

impl KeyBuilder {
    /// Starts a key below `parent` for `platform`.
    pub fn new(parent: &str, platform: &Platform) -> KeyBuilder {
        let mut k = KeyBuilder { hash: Sha256::new() };
        k.part(VERSION).part(parent).part(&platform.format());
        k
    }

    /// Adds one part.
    pub fn part(&mut self, s: &str) -> &mut KeyBuilder {
        self.bytes(s.as_bytes())
    }

    /// Adds one binary part.
    pub fn bytes(&mut self, b: &[u8]) -> &mut KeyBuilder {
        self.hash.update((b.len() as u64).to_le_bytes());
        self.hash.update(b);
        self
    }

    /// The key.
    pub fn finish(&self) -> String {
        format!("sha256:{}", hex::encode(self.hash.clone().finalize()))
    }
}

/// The digest of a tree's content: paths, types, modes, owners, link
/// targets, file bytes, extended attributes and which files are hard links
/// of an earlier path; times are left out, as BuildKit's content checksums
/// do. A tree without attributes or hard links digests as it always did.
/// File contents are hashed by streaming (once per content).
pub fn content_digest(fs: &MemFs) -> Result<String> {
    let mut h = Sha256::new();
    let mut firsts: std::collections::HashMap<u64, &str> = std::collections::HashMap::new();
    for (p, n) in fs.iter() {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(format!("{:o}:{}:{}", n.mode, n.uid, n.gid).as_bytes());
        match &n.kind {
            Kind::Dir => h.update(b"d"),
            Kind::Symlink(t) => {
                h.update(b"l");
                h.update(t.as_bytes());
            }
            Kind::File(d) => {
                h.update(b"f");
                h.update(d.sha256()?);
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
            h.update([0]);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update([0]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The layer, or `None` when the step changed nothing.
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

/// How long a build waits for another build's claim before doing the work
/// itself; claims are released when their build ends, so this only bounds
/// the cost of an unforeseen wait cycle.
const CLAIM_WAIT: Duration = Duration::from_secs(15 * 60);

/// Keys some build is computing: (cache directory, key) → owner.
struct InFlight {
    claims: Mutex<HashMap<(PathBuf, String), u64>>,
    settled: Condvar,
}

fn in_flight() -> &'static InFlight {
    static MAP: OnceLock<InFlight> = OnceLock::new();
    MAP.get_or_init(|| InFlight { claims: Mutex::new(HashMap::new()), settled: Condvar::new() })
}

/// One build's identity in the in-flight map; its claims are released when
/// the last handle of its cache is dropped (the build ended, failed or not).
#[derive(Debug)]
struct Owner(u64);

impl Drop for Owner {
    fn drop(&mut self) {
        let f = in_flight();
        if let Ok(mut claims) = f.claims.lock() {
            claims.retain(|_, owner| *owner != self.0);
        }
        f.settled.notify_all();
    }
}

/// Blocks the current thread without starving an async runtime: on a
/// multi-thread runtime the worker hands its other tasks to another thread.
fn block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Cache records under `<store root>/build-cache`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    store: Store,
    owner: Arc<Owner>,
    /// Keeps `prune` from removing what this build reads or writes until
    /// the build ends (`None` if the lock file could not be opened).
    _lease: Arc<Option<polyarch_store::Lease>>,
    /// The hit log, opened at the first hit.
    uses: Arc<Mutex<Option<std::fs::File>>>,
    /// Imported records and the build's notes (`--cache-from`, `--cache-to`).
    io: Option<Arc<crate::cacheio::CacheIo>>,
}

impl Cache {
    /// The cache of `store`, for one build.
    pub fn new(store: &Store) -> Cache {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Cache {
            dir: store.root().join("build-cache"),
            store: store.clone(),
            owner: Arc::new(Owner(NEXT.fetch_add(1, Ordering::Relaxed))),
            _lease: Arc::new(store.lease().ok()),
            uses: Arc::new(Mutex::new(None)),
            io: None,
        }
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

    /// The record for `key`, if it and its blob are present.
    ///
    /// On a miss the key is claimed for this build until [`Cache::put`] or
    /// the end of the build; while another build holds the claim this
    /// waits for it and then reads its record.
    pub fn get(&self, key: &str) -> Option<Record> {
        let deadline = Instant::now() + CLAIM_WAIT;
        loop {
            if let Some(rec) = self.read(key).or_else(|| self.import(key)) {
                return Some(rec);
            }
            let f = in_flight();
            let slot = (self.dir.clone(), key.to_string());
            let Ok(mut claims) = f.claims.lock() else { return None };
            match claims.get(&slot) {
                Some(owner) if *owner != self.owner.0 && Instant::now() < deadline => {
                    let waited = block(|| f.settled.wait_timeout(claims, Duration::from_millis(500)));
                    drop(waited);
                }
                Some(_) => return None,
                None => {
                    // The record may have been written (and its claim
                    // released) since the read above: look again under
                    // the lock before claiming the work.
                    if let Some(rec) = self.read(key) {
                        return Some(rec);
                    }
                    claims.insert(slot, self.owner.0);
                    return None;
                }
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

    /// Stores the record for `key` (atomically) and settles its claim.
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
        let written = self.write(key, &stored);
        let f = in_flight();
        if let Ok(mut claims) = f.claims.lock() {
            let slot = (self.dir.clone(), key.to_string());
            if claims.get(&slot) == Some(&self.owner.0) {
                claims.remove(&slot);
            }
        }
        f.settled.notify_all();
        written
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

/// A digest as a cache-key part.
pub fn digest_part(d: &Digest) -> String {
    d.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::file_node;

    #[test]
    fn keys_depend_on_every_part() {
        let p = Platform::new("linux", "amd64", None);
        let a = KeyBuilder::new("root", &p).part("COPY a b").finish();
        assert_eq!(a, KeyBuilder::new("root", &p).part("COPY a b").finish());
        assert_ne!(a, KeyBuilder::new("root2", &p).part("COPY a b").finish());
        assert_ne!(a, KeyBuilder::new("root", &Platform::new("linux", "arm64", None)).part("COPY a b").finish());
        assert_ne!(
            KeyBuilder::new("r", &p).part("ab").part("c").finish(),
            KeyBuilder::new("r", &p).part("a").part("bc").finish()
        );
    }

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

    #[test]
    fn a_second_build_waits_for_the_first_claim() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let first = Cache::new(&store);
        let second = Cache::new(&store);
        assert!(first.get("sha256:aa").is_none(), "a miss claims the key");
        let waiter = std::thread::spawn(move || second.get("sha256:aa"));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "the second build waits for the claim");
        first.put("sha256:aa", &Record { layer: None, created: Some(7) }).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(Record { layer: None, created: Some(7) }));
    }

    #[test]
    fn claims_end_with_their_build() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let first = Cache::new(&store);
        let second = Cache::new(&store);
        assert!(first.get("sha256:bb").is_none());
        let waiter = std::thread::spawn(move || second.get("sha256:bb"));
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        assert_eq!(waiter.join().unwrap(), None, "the claim passes to the waiter, which finds no record");
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
