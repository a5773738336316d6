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
    /// For an image: the annotations its entry in the index gets (from a
    /// descriptor the user gave for it).
    pub annotations: Option<BTreeMap<String, String>>,
}

pub use crate::annotation::{Annotation, AnnotationTarget};

/// Options of a merge.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Index media type; by default Docker when every source is Docker, else OCI.
    pub format: Option<IndexFormat>,
    pub annotations: Vec<Annotation>,
    /// Keep only the images of these platforms (and the attestations about
    /// them), as `imagetools create --platform`; none: keep all.
    pub platforms: Vec<Platform>,
    /// One image as the only source is copied as it is, not put in an
    /// index (`imagetools create --prefer-index=false`).
    pub keep_single_image: bool,
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
        if !only.manifest.is_index() && opts.keep_single_image && opts.annotations.is_empty() {
            if !opts.platforms.is_empty() && !only.platform.as_ref().is_some_and(|p| wanted(&opts.platforms, p)) {
                return Err(Error::NoPlatformLeft);
            }
            return Ok(Merged { index: only.manifest.clone(), origins: vec![0], warnings: vec![], verbatim: true });
        }
        if only.manifest.is_index()
            && opts.annotations.is_empty()
            && opts.platforms.is_empty()
            && only.manifest.media_type() == format.media_type()
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
            None => {
                let mut d = src.manifest.descriptor().with_platform(src.platform.clone());
                d.annotations = src.annotations.clone();
                vec![d]
            }
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
    if !opts.platforms.is_empty() {
        entries.retain(|(d, _)| d.is_attestation() || d.platform.as_ref().is_some_and(|p| wanted(&opts.platforms, p)));
        if !entries.iter().any(|(d, _)| !d.is_attestation()) {
            return Err(Error::NoPlatformLeft);
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

/// Whether `p` is one of `platforms`, in any of its spellings (containerd's
/// `platforms.Any`).
fn wanted(platforms: &[Platform], p: &Platform) -> bool {
    platforms.iter().any(|w| w.only_strict().matches(p))
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
            annotations: None,
        }
    }

    #[test]
    fn platforms_filter_the_images_and_their_attestations() {
        let opts = |ps: &[&str]| MergeOptions {
            platforms: ps.iter().map(|p| Platform::parse(p).unwrap()).collect(),
            ..Default::default()
        };
        let all = [src(1, "linux/amd64"), src(2, "linux/arm64"), src(3, "linux/arm/v7")];
        let m = merge(&all, &opts(&["linux/arm64/v8", "linux/arm/v7"])).unwrap();
        let idx = m.index.as_index().unwrap();
        let kept: Vec<String> = idx.manifests.iter().map(|d| d.platform.as_ref().unwrap().format()).collect();
        assert_eq!(kept, ["linux/arm64", "linux/arm/v7"]);
        assert_eq!(m.origins, vec![1, 2]);
        // An index as the only source is filtered, not copied as it is.
        let whole = merge(&all, &Default::default()).unwrap();
        let one = Source { name: "i".into(), manifest: whole.index.clone(), platform: None, annotations: None };
        let m = merge(std::slice::from_ref(&one), &opts(&["linux/amd64"])).unwrap();
        assert!(!m.verbatim);
        assert_eq!(m.index.as_index().unwrap().manifests.len(), 1);
        let err = merge(&[one], &opts(&["linux/s390x"])).unwrap_err();
        assert!(matches!(err, Error::NoPlatformLeft), "{err}");
    }

    #[test]
    fn one_image_is_copied_as_it_is_when_no_index_is_preferred() {
        let keep = MergeOptions { keep_single_image: true, ..Default::default() };
        let m = merge(&[src(1, "linux/amd64")], &keep).unwrap();
        assert!(m.verbatim && !m.index.is_index());
        assert_eq!(m.index.digest(), image(1, false).digest());
        // By default, and with several sources, an index.
        assert!(merge(&[src(1, "linux/amd64")], &Default::default()).unwrap().index.is_index());
        assert!(merge(&[src(1, "linux/amd64"), src(2, "linux/arm64")], &keep).unwrap().index.is_index());
        let mut annotated = src(1, "linux/amd64");
        annotated.annotations = Some([("a".to_string(), "b".to_string())].into());
        let m = merge(&[annotated], &Default::default()).unwrap();
        assert_eq!(m.index.as_index().unwrap().manifests[0].annotation("a"), Some("b"));
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
            annotations: None,
        };
        let b = Source {
            name: "b".into(),
            manifest: image(2, true),
            platform: Some(Platform::new("linux", "arm64", None)),
            annotations: None,
        };
        let m = merge(&[a, b], &Default::default()).unwrap();
        assert_eq!(m.index.media_type(), mt::DOCKER_MANIFEST_LIST);
        let again = merge(
            &[Source { name: "i".into(), manifest: m.index.clone(), platform: None, annotations: None }],
            &Default::default(),
        )
        .unwrap();
        assert!(again.verbatim);
        assert_eq!(again.index.digest(), m.index.digest());
        let oci = merge(
            &[Source { name: "i".into(), manifest: m.index.clone(), platform: None, annotations: None }],
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
            &MergeOptions { annotations: vec![a, d], ..Default::default() },
        )
        .unwrap();
        let idx = m.index.as_index().unwrap();
        assert_eq!(idx.annotations.as_ref().unwrap()["org.opencontainers.image.title"], "x=y");
        assert!(idx.manifests[0].annotations.is_none());
        assert_eq!(idx.manifests[1].annotation("k"), Some("v"));
        let err = merge(
            &[src(1, "linux/amd64")],
            &MergeOptions {
                format: Some(IndexFormat::Docker),
                annotations: vec![Annotation::parse("a=b").unwrap()],
                ..Default::default()
            },
        );
        assert!(err.is_err());
    }
}
