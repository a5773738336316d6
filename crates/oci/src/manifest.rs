//! Image manifests and indexes, kept with the exact bytes they came from.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{media_type as mt, Descriptor, Digest, Error, Platform};

/// Registries (and polyarch) refuse manifests larger than this (4 MiB), as
/// containerd and distribution do.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// An OCI image manifest or Docker schema 2 manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An OCI image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ImageManifest {
    /// A manifest of the given media type over `config` and `layers`.
    pub fn new(media_type: &str, config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
            extra: Default::default(),
        }
    }
}

impl IndexManifest {
    /// An empty index of the given media type.
    pub fn new(media_type: &str) -> IndexManifest {
        IndexManifest {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
            extra: Default::default(),
        }
    }
}

/// The parts of an image config polyarch reads; the rest is kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn from_slice(bytes: &[u8]) -> Result<ImageConfig, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json { what: "image config", source })
    }

    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            features: None,
        }
    }
}

/// A parsed manifest of either kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Box<IndexManifest>),
}

/// A manifest as bytes, with its media type and the digest of those bytes.
/// Immutable: edits make a new value with new bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawManifest {
    media_type: String,
    bytes: Bytes,
    digest: Digest,
    parsed: Manifest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

impl RawManifest {
    /// Parses manifest bytes. `content_type` is what the server said (or the
    /// descriptor's media type); the document's own `mediaType` wins when
    /// the header is missing or generic.
    pub fn from_bytes(bytes: impl Into<Bytes>, content_type: Option<&str>) -> Result<RawManifest, Error> {
        let bytes: Bytes = bytes.into();
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge { size: bytes.len() as u64, limit: MAX_MANIFEST_SIZE });
        }
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|source| Error::Json { what: "manifest", source })?;
        if probe.schema_version == Some(1) || content_type.is_some_and(|c| c != "application/json" && mt::is_schema1(c))
        {
            return Err(Error::UnsupportedMediaType {
                media_type: content_type.unwrap_or(mt::DOCKER_SCHEMA1_MANIFEST).to_string(),
                hint: Some("Docker schema 1 manifests are deprecated and not supported; push the image again with a current client"),
            });
        }
        let header = content_type.map(|c| c.split(';').next().unwrap_or(c).trim()).filter(|c| {
            !c.is_empty() && *c != "application/json" && *c != "text/plain" && *c != "application/octet-stream"
        });
        let media_type = match (probe.media_type.as_deref(), header) {
            (Some(m), _) if !m.is_empty() => m.to_string(),
            (_, Some(h)) => h.to_string(),
            // OCI allows leaving mediaType out: tell by the shape.
            _ if probe.manifests.is_some() => mt::OCI_INDEX.to_string(),
            _ if probe.config.is_some() => mt::OCI_MANIFEST.to_string(),
            _ => {
                return Err(Error::UnsupportedMediaType {
                    media_type: "(none)".to_string(),
                    hint: Some("the document is neither an image manifest nor an index"),
                })
            }
        };
        let parsed = if mt::is_index(&media_type) {
            Manifest::Index(Box::new(
                serde_json::from_slice(&bytes).map_err(|source| Error::Json { what: "index", source })?,
            ))
        } else if mt::is_image_manifest(&media_type) || probe.config.is_some() {
            Manifest::Image(Box::new(
                serde_json::from_slice(&bytes).map_err(|source| Error::Json { what: "image manifest", source })?,
            ))
        } else {
            return Err(Error::UnsupportedMediaType { media_type, hint: None });
        };
        let digest = Digest::sha256(&bytes);
        Ok(RawManifest { media_type, bytes, digest, parsed })
    }

    /// Serialises an image manifest (compact JSON, as BuildKit writes it).
    pub fn from_image(m: &ImageManifest) -> Result<RawManifest, Error> {
        let bytes = serde_json::to_vec(m).map_err(|source| Error::Json { what: "image manifest", source })?;
        let media_type = m.media_type.clone().unwrap_or_else(|| mt::OCI_MANIFEST.to_string());
        RawManifest::from_bytes(bytes, Some(&media_type))
    }

    /// Serialises an index (compact JSON).
    pub fn from_index(m: &IndexManifest) -> Result<RawManifest, Error> {
        let bytes = serde_json::to_vec(m).map_err(|source| Error::Json { what: "index", source })?;
        let media_type = m.media_type.clone().unwrap_or_else(|| mt::OCI_INDEX.to_string());
        RawManifest::from_bytes(bytes, Some(&media_type))
    }

    /// Checks these bytes against an expected digest (of any algorithm).
    pub fn verify(&self, expected: &Digest) -> Result<(), Error> {
        expected.verify(&self.bytes)
    }

    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The sha256 digest of [`Self::bytes`].
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn manifest(&self) -> &Manifest {
        &self.parsed
    }

    pub fn is_index(&self) -> bool {
        matches!(self.parsed, Manifest::Index(_))
    }

    pub fn as_index(&self) -> Option<&IndexManifest> {
        match &self.parsed {
            Manifest::Index(i) => Some(i),
            Manifest::Image(_) => None,
        }
    }

    pub fn as_image(&self) -> Option<&ImageManifest> {
        match &self.parsed {
            Manifest::Image(i) => Some(i),
            Manifest::Index(_) => None,
        }
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exact_bytes() {
        let raw = br#"{ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [], "x-unknown": 1 }"#;
        let m = RawManifest::from_bytes(raw.to_vec(), None).unwrap();
        assert_eq!(m.bytes().as_ref(), raw);
        assert_eq!(m.digest(), &Digest::sha256(raw));
        assert!(m.is_index());
        // Unknown fields survive a round trip through the typed value.
        let again = RawManifest::from_index(m.as_index().unwrap()).unwrap();
        assert!(std::str::from_utf8(again.bytes()).unwrap().contains("x-unknown"));
    }

    #[test]
    fn schema1_refused_clearly() {
        let raw = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let err = RawManifest::from_bytes(raw.to_vec(), None).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn too_large_refused() {
        let raw = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
        assert!(matches!(RawManifest::from_bytes(raw, None), Err(Error::ManifestTooLarge { .. })));
    }

    #[test]
    fn media_type_from_shape() {
        let raw = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let m = RawManifest::from_bytes(raw.to_vec(), None).unwrap();
        assert_eq!(m.media_type(), mt::OCI_MANIFEST);
    }
}
