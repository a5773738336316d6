//! Merging images and indexes into one index (`imagetools create`,
//! `manifest push`): each platform once, a later source winning.

use std::collections::BTreeMap;

use polyarch_oci::descriptor::ANNOTATION_REFERENCE_DIGEST;
use polyarch_oci::{media_type as mt, Descriptor, IndexManifest, Platform, RawManifest};

use crate::Error;

/// The media-type family of the index to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexFormat {
    /// `application/vnd.oci.image.index.v1+json`
    Oci,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    Docker,
}

impl IndexFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            IndexFormat::Oci => mt::OCI_INDEX,
            IndexFormat::Docker => mt::DOCKER_MANIFEST_LIST,
        }
    }
}

/// One input of a merge: an image (with the platform its config declares)
/// or an index.
#[derive(Debug, Clone)]
pub struct Source {
    /// How the source was named, for messages.
    pub name: String,
    pub manifest: RawManifest,
    /// For an image: the platform of its config (or as annotated).
    pub platform: Option<Platform>,
}

pub use crate::annotation::{Annotation, AnnotationTarget};

/// Options of a merge.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Index media type; by default Docker when every source is Docker, else OCI.
    pub format: Option<IndexFormat>,
    pub annotations: Vec<Annotation>,
}

/// The result of a merge.
#[derive(Debug, Clone)]
pub struct Merged {
    pub index: RawManifest,
    /// For each child of the index, the position of the source it came from.
    pub origins: Vec<usize>,
    /// Platforms replaced by a later source, and similar notes.
    pub warnings: Vec<String>,
    /// True when a single index source was kept byte for byte.
    pub verbatim: bool,
}

/// The key under which a platform appears once in an index.
pub fn platform_key(p: &Platform) -> String {
    let n = p.normalize();
    match n.os_version.as_deref() {
        Some(v) if !v.is_empty() => format!("{}({v})", n.format()),
        _ => n.format(),
    }
}

fn is_docker(m: &RawManifest) -> bool {
    m.media_type() == mt::DOCKER_MANIFEST || m.media_type() == mt::DOCKER_MANIFEST_LIST
}

/// Merges sources into one index.
pub fn merge(sources: &[Source], opts: &MergeOptions) -> Result<Merged, Error> {
    if sources.is_empty() {
        return Err(Error::NoSources);
    }
    let format = opts.format.unwrap_or(if sources.iter().all(|s| is_docker(&s.manifest)) {
        IndexFormat::Docker
    } else {
        IndexFormat::Oci
    });
    if format == IndexFormat::Docker && !opts.annotations.is_empty() {
        return Err(Error::AnnotationsNeedOci { what: "--annotation".to_string() });
    }
    if let [only] = sources {
        if only.manifest.is_index() && opts.annotations.is_empty() && only.manifest.media_type() == format.media_type()
        {
            let n = only.manifest.as_index().map(|i| i.manifests.len()).unwrap_or(0);
            return Ok(Merged { index: only.manifest.clone(), origins: vec![0; n], warnings: vec![], verbatim: true });
        }
    }

    let mut entries: Vec<(Descriptor, usize)> = Vec::new();
    let mut by_platform: BTreeMap<String, usize> = BTreeMap::new(); // key -> position in `entries`
    let mut warnings = Vec::new();
    let mut index_annotations: BTreeMap<String, String> = BTreeMap::new();
    for (si, src) in sources.iter().enumerate() {
        let descs: Vec<Descriptor> = match src.manifest.as_index() {
            Some(index) => {
                if let Some(a) = &index.annotations {
                    index_annotations.extend(a.clone());
                }
                index.manifests.clone()
            }
            None => vec![src.manifest.descriptor().with_platform(src.platform.clone())],
        };
        for d in descs {
            if entries.iter().any(|(e, _)| e.digest == d.digest) {
                continue;
            }
            if !d.is_attestation() {
                if let Some(p) = &d.platform {
                    let key = platform_key(p);
                    if let Some(&pos) = by_platform.get(&key) {
                        let (old, old_src) = &entries[pos];
                        warnings.push(format!(
                            "{key}: {} ({}) replaces {} ({})",
                            src.name, d.digest, sources[*old_src].name, old.digest
                        ));
                        entries[pos] = (d, si);
                        continue;
                    }
                    by_platform.insert(key, entries.len());
                }
            }
            entries.push((d, si));
        }
    }
    // An attestation stays only while the image it is about stays.
    let present: Vec<String> = entries.iter().map(|(d, _)| d.digest.to_string()).collect();
    entries.retain(|(d, _)| match d.annotation(ANNOTATION_REFERENCE_DIGEST) {
        Some(target) if d.is_attestation() => present.iter().any(|p| p == target),
        _ => true,
    });

    for a in &opts.annotations {
        match &a.target {
            AnnotationTarget::Manifest(_) | AnnotationTarget::IndexDescriptor => {
                return Err(Error::InvalidAnnotation {
                    input: a.to_string(),
                    reason: "imagetools create supports only index and manifest-descriptor annotations".into(),
                })
            }
            AnnotationTarget::Index => {
                index_annotations.insert(a.key.clone(), a.value.clone());
            }
            AnnotationTarget::ManifestDescriptor(platform) => {
                for (d, _) in entries.iter_mut().filter(|(d, _)| !d.is_attestation()) {
                    if crate::annotation::selects(platform.as_ref(), d.platform.as_ref()) {
                        d.annotations.get_or_insert_with(Default::default).insert(a.key.clone(), a.value.clone());
                    }
                }
            }
        }
    }

    let mut index = IndexManifest::new(format.media_type());
    if format == IndexFormat::Oci && !index_annotations.is_empty() {
        index.annotations = Some(index_annotations);
    }
    let origins = entries.iter().map(|(_, s)| *s).collect();
    index.manifests = entries.into_iter().map(|(d, _)| d).collect();
    Ok(Merged { index: RawManifest::from_index(&index)?, origins, warnings, verbatim: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_oci::Digest;

    fn image(n: u8, docker: bool) -> RawManifest {
        let (m, c) = if docker { (mt::DOCKER_MANIFEST, mt::DOCKER_CONFIG) } else { (mt::OCI_MANIFEST, mt::OCI_CONFIG) };
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{m}","config":{{"mediaType":"{c}","digest":"{}","size":{n}}},"layers":[]}}"#,
            Digest::sha256(&[n])
        );
        RawManifest::from_bytes(body.into_bytes(), None).unwrap()
    }

    fn src(n: u8, platform: &str) -> Source {
        Source {
            name: format!("img:{n}"),
            manifest: image(n, false),
            platform: Some(Platform::parse(platform).unwrap()),
        }
    }

    #[test]
    fn later_source_wins_per_platform() {
        let m =
            merge(&[src(1, "linux/amd64"), src(2, "linux/arm64"), src(3, "linux/amd64")], &Default::default()).unwrap();
        let idx = m.index.as_index().unwrap();
        assert_eq!(idx.manifests.len(), 2);
        assert_eq!(idx.manifests[0].digest, image(3, false).digest().clone());
        assert_eq!(m.origins, vec![2, 1]);
        assert_eq!(m.warnings.len(), 1);
        assert!(m.warnings[0].contains("linux/amd64"), "{:?}", m.warnings);
        assert_eq!(m.index.media_type(), mt::OCI_INDEX);
    }

    #[test]
    fn docker_sources_give_a_docker_list_and_single_index_is_verbatim() {
        let a = Source {
            name: "a".into(),
            manifest: image(1, true),
            platform: Some(Platform::new("linux", "amd64", None)),
        };
        let b = Source {
            name: "b".into(),
            manifest: image(2, true),
            platform: Some(Platform::new("linux", "arm64", None)),
        };
        let m = merge(&[a, b], &Default::default()).unwrap();
        assert_eq!(m.index.media_type(), mt::DOCKER_MANIFEST_LIST);
        let again =
            merge(&[Source { name: "i".into(), manifest: m.index.clone(), platform: None }], &Default::default())
                .unwrap();
        assert!(again.verbatim);
        assert_eq!(again.index.digest(), m.index.digest());
        let oci = merge(
            &[Source { name: "i".into(), manifest: m.index.clone(), platform: None }],
            &MergeOptions { format: Some(IndexFormat::Oci), ..Default::default() },
        )
        .unwrap();
        assert!(!oci.verbatim);
        assert_eq!(oci.index.media_type(), mt::OCI_INDEX);
    }

    #[test]
    fn annotations() {
        let a = Annotation::parse("org.opencontainers.image.title=x=y").unwrap();
        assert_eq!(
            (a.target.clone(), a.key.as_str(), a.value.as_str()),
            (AnnotationTarget::Index, "org.opencontainers.image.title", "x=y")
        );
        let d = Annotation::parse("manifest-descriptor[linux/arm64]:k=v").unwrap();
        assert!(matches!(d.target, AnnotationTarget::ManifestDescriptor(Some(_))));
        assert!(Annotation::parse("manifest:k=v").is_err());
        assert!(Annotation::parse("novalue").is_err());
        let m = merge(
            &[src(1, "linux/amd64"), src(2, "linux/arm64")],
            &MergeOptions { format: None, annotations: vec![a, d] },
        )
        .unwrap();
        let idx = m.index.as_index().unwrap();
        assert_eq!(idx.annotations.as_ref().unwrap()["org.opencontainers.image.title"], "x=y");
        assert!(idx.manifests[0].annotations.is_none());
        assert_eq!(idx.manifests[1].annotation("k"), Some("v"));
        let err = merge(
            &[src(1, "linux/amd64")],
            &MergeOptions { format: Some(IndexFormat::Docker), annotations: vec![Annotation::parse("a=b").unwrap()] },
        );
        assert!(err.is_err());
    }
}
