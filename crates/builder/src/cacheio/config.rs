//! The cache config: the key graph of exported records, as the config
//! blob of a cache manifest or index (media type
//! [`CONFIG_MEDIA_TYPE`], BuildKit's) or, base64-encoded, under
//! [`INLINE_KEY`] of an image config. Versioned by its one top-level key,
//! [`VERSION_KEY`]; anything else (another version, BuildKit's own
//! `layers`/`records` document) is [`Unreadable`], which an import turns
//! into a warning.

use base64::Engine as _;
use polyarch_oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use crate::layer::Layer;

/// The config blob's media type, as BuildKit's.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.buildkit.cacheconfig.v0";
/// The key of this format's document.
pub const VERSION_KEY: &str = "polyarch.cache.v1";
/// The image config key of an inline cache, as BuildKit's.
pub const INLINE_KEY: &str = "moby.buildkit.cache.v0";

/// A cache config document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The graph.
    #[serde(rename = "polyarch.cache.v1")]
    pub graph: Graph,
}

/// Records by key, each with its parent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Graph {
    /// Sorted by key, each key once.
    pub records: Vec<Entry>,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The step's cache key.
    pub key: String,
    /// The key of the state it started from: another entry's key, or the
    /// key of a base (an image's, `scratch`'s, a named context's; see
    /// `polyarch_builder::cache::keys`). Keys are opaque here: a key made
    /// another way (by an older polyarch) is only a miss.
    pub parent: String,
    /// The platform of the step.
    pub platform: String,
    /// The layer it made; `None` for a step that had no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<EntryLayer>,
    /// When it ran (seconds since the epoch), kept by a hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

/// A record's layer: the blob (one of the manifest's layers) and its
/// uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryLayer {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// `sha256` of the uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
}

impl EntryLayer {
    /// The layer of a record.
    pub fn of(l: &Layer) -> EntryLayer {
        EntryLayer {
            digest: l.desc.digest.clone(),
            media_type: l.desc.media_type.clone(),
            size: l.desc.size,
            diff_id: l.diff_id.clone(),
        }
    }

    /// The layer as the build uses it.
    pub fn layer(&self) -> Layer {
        Layer {
            desc: Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size),
            diff_id: self.diff_id.clone(),
        }
    }
}

/// Why a document is not a cache this build can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreadable {
    /// Not JSON, or JSON of another shape.
    #[error("the cache config is not valid: {0}")]
    Invalid(String),
    /// A later (or earlier) version of this format.
    #[error("the cache config is of version {0:?}, this polyarch reads {VERSION_KEY:?}")]
    Version(String),
    /// Another tool's cache (BuildKit's records and layers).
    #[error("the cache was written by another tool (BuildKit's format), polyarch reads only its own")]
    Foreign,
}

impl CacheConfig {
    /// A config over `records`, sorted by key and without duplicates.
    pub fn new(mut records: Vec<Entry>) -> CacheConfig {
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records.dedup_by(|a, b| a.key == b.key);
        CacheConfig { graph: Graph { records } }
    }

    /// Compact JSON (the blob's bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a config blob.
    pub fn parse(bytes: &[u8]) -> Result<CacheConfig, Unreadable> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Unreadable::Invalid(e.to_string()))?;
        let Some(obj) = v.as_object() else { return Err(Unreadable::Invalid("not a JSON object".into())) };
        if !obj.contains_key(VERSION_KEY) {
            if let Some(other) = obj.keys().find(|k| k.starts_with("polyarch.cache.")) {
                return Err(Unreadable::Version(other.clone()));
            }
            if obj.contains_key("layers") || obj.contains_key("records") {
                return Err(Unreadable::Foreign);
            }
            return Err(Unreadable::Invalid(format!("no {VERSION_KEY:?} key")));
        }
        serde_json::from_value(v).map_err(|e| Unreadable::Invalid(e.to_string()))
    }

    /// The value of [`INLINE_KEY`]: the document in base64 (as Go
    /// marshals BuildKit's bytes).
    pub fn to_inline(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    /// Reads an [`INLINE_KEY`] value.
    pub fn from_inline(value: &serde_json::Value) -> Result<CacheConfig, Unreadable> {
        let Some(s) = value.as_str() else {
            return Err(Unreadable::Invalid("the inline cache is not a string".into()));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| Unreadable::Invalid(format!("the inline cache is not base64: {e}")))?;
        CacheConfig::parse(&bytes)
    }

    /// Every distinct layer, in record order (the manifest's layers).
    pub fn layers(&self) -> Vec<Descriptor> {
        let mut out: Vec<Descriptor> = Vec::new();
        for l in self.graph.records.iter().filter_map(|r| r.layer.as_ref()) {
            if !out.iter().any(|d| d.digest == l.digest) {
                out.push(l.layer().desc);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CacheConfig {
        let d = |c: &str| format!("sha256:{}", c.repeat(64)).parse::<Digest>().unwrap();
        CacheConfig::new(vec![
            Entry {
                key: d("b").to_string(),
                parent: d("a").to_string(),
                platform: "linux/arm64".into(),
                layer: None,
                created: Some(1_700_000_000),
            },
            Entry {
                key: d("a").to_string(),
                parent: format!("image:{}", d("c")),
                platform: "linux/arm64".into(),
                layer: Some(EntryLayer {
                    digest: d("d"),
                    media_type: polyarch_oci::media_type::OCI_LAYER_GZIP.into(),
                    size: 42,
                    diff_id: d("e"),
                }),
                created: Some(1_700_000_000),
            },
        ])
    }

    fn golden() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cacheio/config.golden.json")
    }

    #[test]
    fn the_config_matches_its_golden_file_both_ways() {
        let c = sample();
        let mut text = serde_json::to_string_pretty(&c).unwrap();
        text.push('\n');
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden().parent().unwrap()).unwrap();
            std::fs::write(golden(), &text).unwrap();
        }
        let want = std::fs::read_to_string(golden()).unwrap();
        assert_eq!(text, want, "UPDATE_GOLDEN=1 rewrites {}", golden().display());
        assert_eq!(CacheConfig::parse(want.as_bytes()).unwrap(), c);
        assert_eq!(CacheConfig::parse(&c.to_bytes()).unwrap(), c);
        assert_eq!(c.graph.records[0].key, format!("sha256:{}", "a".repeat(64)), "sorted by key");
        assert_eq!(c.layers().len(), 1);
    }

    #[test]
    fn inline_values_round_trip() {
        let c = sample();
        assert_eq!(CacheConfig::from_inline(&serde_json::Value::String(c.to_inline())).unwrap(), c);
        assert!(matches!(CacheConfig::from_inline(&serde_json::json!(3)), Err(Unreadable::Invalid(_))));
        assert!(matches!(CacheConfig::from_inline(&serde_json::json!("%%%")), Err(Unreadable::Invalid(_))));
    }

    #[test]
    fn other_versions_and_tools_are_unreadable() {
        assert_eq!(
            CacheConfig::parse(br#"{"polyarch.cache.v2":{"records":[]}}"#),
            Err(Unreadable::Version("polyarch.cache.v2".into()))
        );
        let buildkit = br#"{"layers":[{"blob":"sha256:aa","parent":-1}],"records":[{"digest":"sha256:bb"}]}"#;
        assert_eq!(CacheConfig::parse(buildkit), Err(Unreadable::Foreign));
        assert!(matches!(CacheConfig::parse(b"not json"), Err(Unreadable::Invalid(_))));
        assert!(matches!(CacheConfig::parse(b"[]"), Err(Unreadable::Invalid(_))));
        assert!(matches!(
            CacheConfig::parse(br#"{"polyarch.cache.v1":{"records":[{"key":1}]}}"#),
            Err(Unreadable::Invalid(_))
        ));
    }
}
