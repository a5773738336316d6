//! Where results are kept by cache key: a trait the builder implements on
//! its store, and an in-memory implementation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use polyarch_oci::Digest;

use crate::error::BoxError;

/// Results by cache key. Calls may block (they run on tokio's blocking
/// pool). A record that cannot be used any more (its content was pruned)
/// is a miss, not an error.
pub trait CacheStore<R>: Send + Sync {
    /// The result recorded for `key`, if any.
    fn lookup(&self, key: &Digest) -> Result<Option<R>, BoxError>;
    /// Records `result` as the result of `key`.
    fn record(&self, key: &Digest, result: &R) -> Result<(), BoxError>;
}

/// A cache store in memory, counting lookups, hits and records.
#[derive(Debug, Default)]
pub struct MemoryCache<R> {
    entries: Mutex<HashMap<Digest, R>>,
    lookups: AtomicUsize,
    hits: AtomicUsize,
    records: AtomicUsize,
}

impl<R> MemoryCache<R> {
    /// An empty cache.
    pub fn new() -> MemoryCache<R> {
        MemoryCache {
            entries: Mutex::new(HashMap::new()),
            lookups: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            records: AtomicUsize::new(0),
        }
    }

    /// How many keys are recorded.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is recorded.
    pub fn contains(&self, key: &Digest) -> bool {
        self.entries.lock().map(|e| e.contains_key(key)).unwrap_or(false)
    }

    /// (lookups, hits, records) so far.
    pub fn stats(&self) -> (usize, usize, usize) {
        (self.lookups.load(Ordering::SeqCst), self.hits.load(Ordering::SeqCst), self.records.load(Ordering::SeqCst))
    }
}

/// The in-memory cache's lock was poisoned by a panic.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory cache's lock was poisoned")]
pub struct Poisoned;

impl<R: Clone + Send> CacheStore<R> for MemoryCache<R> {
    fn lookup(&self, key: &Digest) -> Result<Option<R>, BoxError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.entries.lock().map_err(|_| Poisoned)?.get(key).cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
        Ok(found)
    }

    fn record(&self, key: &Digest, result: &R) -> Result<(), BoxError> {
        self.records.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().map_err(|_| Poisoned)?.insert(key.clone(), result.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_by_key() {
        let c: MemoryCache<u32> = MemoryCache::new();
        let (a, b) = (Digest::sha256(b"a"), Digest::sha256(b"b"));
        assert_eq!(c.lookup(&a).unwrap(), None);
        c.record(&a, &7).unwrap();
        assert_eq!(c.lookup(&a).unwrap(), Some(7));
        assert_eq!(c.lookup(&b).unwrap(), None);
        assert_eq!(c.stats(), (3, 1, 1));
        assert!(c.contains(&a) && c.len() == 1);
    }
}
