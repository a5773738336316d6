//! A cache that travels: `--cache-to` and `--cache-from`.
//!
//! A build given a [`CacheIo`] notes every step it took from the cache or
//! ran (key, parent key, platform, record). After the build, [`CacheIo::gather`]
//! picks the records of one mode (`min`: the chain of each platform's
//! result; `max`: every stage's) over all platforms into one
//! [`CacheConfig`], which [`export`] writes as an OCI artifact in
//! BuildKit's layout (an index listing the layer blobs and the config
//! blob, or with `image-manifest=true` an image manifest whose config is
//! the cache config) to a registry through the one tree push, or as an
//! OCI layout directory; `type=inline` puts it in the result's image
//! config instead.
//!
//! Before the build, [`import`] reads every `--cache-from` into a lookup
//! table. On a local miss for key K the build's [`crate::cache::Cache`]
//! asks the table: an entry gives the record, whose layer blob is fetched
//! (verified) into the store then, and the hit counts as cached. A cache
//! that is missing, unreadable, of another version or another tool's, and
//! a record whose blob is gone, are [`CacheWarning`]s: the build goes on
//! without them. The library prints nothing; the command shows the
//! warnings.

pub mod config;
pub mod export;
pub mod import;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use polyarch_oci::{Descriptor, Platform};
use polyarch_store::{BlobSource as _, Store};

pub use config::{CacheConfig, Entry, EntryLayer, Unreadable};
pub use spec::{parse_cache_from, parse_cache_to, CacheFrom, CacheTo, ExportOptions, Mode};

use crate::cache::Record;

/// Something the build should know but that does not stop it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheWarning {
    /// A `--cache-from` could not be read at all.
    #[error("failed to import cache {source_name}: {reason}")]
    Import {
        /// The reference or directory.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A `--cache-from` is not a cache this build reads.
    #[error("cache {source_name} is not usable: {reason}")]
    Unreadable {
        /// The reference or directory.
        source_name: String,
        /// Why.
        reason: Unreadable,
    },
    /// A record's layer could not be fetched: the step is built.
    #[error("cache {source_name}: layer {digest} of a cached step could not be fetched ({reason}); the step is built")]
    Blob {
        /// The reference or directory.
        source_name: String,
        /// The layer.
        digest: String,
        /// Why.
        reason: String,
    },
    /// An export failed and `ignore-error=true` was given.
    #[error("failed to export cache to {target}: {reason}")]
    Export {
        /// The reference or directory.
        target: String,
        /// Why.
        reason: String,
    },
    /// What a builder node said of the cache its build used.
    #[error("node {node}: {message}")]
    Node {
        /// The node.
        node: String,
        /// Its warning.
        message: String,
    },
    /// An export option that cannot be applied.
    #[error("cache {target}: {reason}")]
    Option {
        /// The reference or directory.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Where an imported record's blob comes from.
pub(crate) trait Fetch: Send + Sync {
    /// Copies the blob `desc` into `store`, verified.
    fn fetch(&self, store: &Store, desc: &Descriptor) -> std::result::Result<(), String>;
    /// The reference or directory, for messages.
    fn name(&self) -> String;
}

#[derive(Clone)]
struct Imported {
    entry: Entry,
    from: Arc<dyn Fetch>,
}

/// The cache traffic of one build (all its platforms): the imported
/// records, what the build used, and warnings.
#[derive(Default)]
pub struct CacheIo {
    imported: Mutex<HashMap<String, Imported>>,
    used: Mutex<BTreeMap<String, Entry>>,
    finals: Mutex<Vec<String>>,
    inline: bool,
    warnings: Mutex<Vec<CacheWarning>>,
}

impl std::fmt::Debug for CacheIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheIo").field("inline", &self.inline).finish_non_exhaustive()
    }
}

impl CacheIo {
    /// An empty table; with `inline`, each result's config carries the
    /// records of its chain (`--cache-to type=inline`).
    pub fn new(inline: bool) -> CacheIo {
        CacheIo { inline, ..CacheIo::default() }
    }

    /// Whether results carry an inline cache.
    pub fn inline(&self) -> bool {
        self.inline
    }

    /// How many records were imported.
    pub fn imported(&self) -> usize {
        self.imported.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Adds imported records; the first source to give a key keeps it.
    pub(crate) fn add(&self, config: CacheConfig, from: Arc<dyn Fetch>) -> usize {
        let Ok(mut table) = self.imported.lock() else { return 0 };
        let mut added = 0;
        for entry in config.graph.records {
            if !table.contains_key(&entry.key) {
                added += 1;
                table.insert(entry.key.clone(), Imported { entry, from: from.clone() });
            }
        }
        added
    }

    /// Adds a warning.
    pub fn warn(&self, w: CacheWarning) {
        if let Ok(mut ws) = self.warnings.lock() {
            ws.push(w);
        }
    }

    /// The warnings so far, taken.
    pub fn take_warnings(&self) -> Vec<CacheWarning> {
        self.warnings.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
    }

    /// The imported record of `key`, its layer blob fetched into `store`
    /// when missing; a failed fetch is a warning and the entry is dropped,
    /// so the step is built.
    pub(crate) fn lookup(&self, key: &str, store: &Store) -> Option<Record> {
        let found = self.imported.lock().ok()?.get(key).cloned()?;
        let layer = found.entry.layer.as_ref().map(EntryLayer::layer);
        if let Some(l) = &layer {
            if !store.exists(&l.desc.digest).unwrap_or(false) {
                if let Err(reason) = found.from.fetch(store, &l.desc) {
                    if let Ok(mut t) = self.imported.lock() {
                        t.remove(key);
                    }
                    self.warn(CacheWarning::Blob {
                        source_name: found.from.name(),
                        digest: l.desc.digest.to_string(),
                        reason,
                    });
                    return None;
                }
            }
        }
        Some(Record { layer, created: found.entry.created })
    }

    /// Notes that the build took `key` (from `parent`) from the cache or
    /// made it.
    pub(crate) fn used(&self, parent: &str, key: &str, platform: &Platform, rec: &Record) {
        let entry = Entry {
            key: key.to_string(),
            parent: parent.to_string(),
            platform: platform.format(),
            layer: rec.layer.as_ref().map(EntryLayer::of),
            created: rec.created,
        };
        if let Ok(mut used) = self.used.lock() {
            used.insert(entry.key.clone(), entry);
        }
    }

    /// Notes the key of a platform's result.
    pub(crate) fn finished(&self, key: &str) {
        if let Ok(mut f) = self.finals.lock() {
            f.push(key.to_string());
        }
    }

    /// The keys of the platforms' results so far.
    pub fn finals(&self) -> Vec<String> {
        self.finals.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Adds what a build elsewhere used (a builder node's records and the
    /// keys of its results), as if this build had noted them.
    pub fn absorb(&self, records: Vec<Entry>, finals: Vec<String>) {
        if let Ok(mut used) = self.used.lock() {
            for e in records {
                used.insert(e.key.clone(), e);
            }
        }
        if let Ok(mut f) = self.finals.lock() {
            f.extend(finals);
        }
    }

    /// The records of the chain that ends at `key`, the result first.
    pub(crate) fn chain(&self, key: &str) -> Vec<Entry> {
        let Ok(used) = self.used.lock() else { return Vec::new() };
        let mut out = Vec::new();
        let mut at = key.to_string();
        while let Some(e) = used.get(&at) {
            if out.len() > used.len() {
                break;
            }
            at = e.parent.clone();
            out.push(e.clone());
        }
        out
    }

    /// What an export of `mode` holds: with `min` the chains of every
    /// platform's result, with `max` every record the build used.
    pub fn gather(&self, mode: Mode) -> CacheConfig {
        match mode {
            Mode::Max => CacheConfig::new(self.used.lock().map(|u| u.values().cloned().collect()).unwrap_or_default()),
            Mode::Min => {
                let finals = self.finals.lock().map(|f| f.clone()).unwrap_or_default();
                CacheConfig::new(finals.iter().flat_map(|k| self.chain(k)).collect())
            }
        }
    }
}

/// `config` (an image config's JSON) with `records` under
/// [`config::INLINE_KEY`], after the config's own keys.
pub(crate) fn with_inline(config: &[u8], records: &[Entry]) -> crate::Result<Vec<u8>> {
    let value = CacheConfig::new(records.to_vec()).to_inline();
    let text = std::str::from_utf8(config).ok().map(str::trim_end).filter(|t| t.ends_with('}'));
    let Some(text) = text else { return Err(crate::Error::Layer("the image config is not a JSON object".into())) };
    let head = &text[..text.len() - 1];
    let sep = if head.trim_end().ends_with('{') { "" } else { "," };
    let key = serde_json::to_string(config::INLINE_KEY).unwrap_or_default();
    Ok(format!("{head}{sep}{key}:\"{value}\"}}").into_bytes())
}

#[cfg(test)]
mod tests;
