//! `--annotation` values, as buildx reads them: `[TYPE[PLATFORM],...:]KEY=VALUE`
//! with the types `manifest` (each image manifest), `index` (the index),
//! `manifest-descriptor` (each image's entry in the index) and
//! `index-descriptor` (the index's entry in an OCI layout's `index.json`),
//! a platform selector limiting `manifest` and `manifest-descriptor` to
//! the images of one platform (`manifest[linux/arm64]:k=v`), and several
//! types at once (`index,manifest:k=v`). Without a type, `imagetools
//! create` annotates the index, and a build each image manifest.

use std::collections::BTreeMap;
use std::fmt;

use polyarch_oci::Platform;

use crate::merge::platform_key;
use crate::Error;

/// Where an annotation goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AnnotationTarget {
    /// The index itself (`index:KEY=VALUE`).
    Index,
    /// Each child descriptor, or only those of one platform
    /// (`manifest-descriptor[linux/amd64]:KEY=VALUE`).
    ManifestDescriptor(Option<Platform>),
    /// Each image manifest, or only the one of a platform
    /// (`manifest[linux/amd64]:KEY=VALUE`).
    Manifest(Option<Platform>),
    /// The index's descriptor in an OCI layout (`index-descriptor:`).
    IndexDescriptor,
}

impl AnnotationTarget {
    /// The type as written before the colon.
    pub fn name(&self) -> &'static str {
        match self {
            AnnotationTarget::Index => "index",
            AnnotationTarget::ManifestDescriptor(_) => "manifest-descriptor",
            AnnotationTarget::Manifest(_) => "manifest",
            AnnotationTarget::IndexDescriptor => "index-descriptor",
        }
    }

    fn platform(&self) -> Option<&Platform> {
        match self {
            AnnotationTarget::ManifestDescriptor(p) | AnnotationTarget::Manifest(p) => p.as_ref(),
            _ => None,
        }
    }
}

/// An `--annotation` value.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub target: AnnotationTarget,
    pub key: String,
    pub value: String,
}

impl fmt::Display for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target.platform() {
            Some(p) => write!(f, "{}[{}]:{}={}", self.target.name(), p.format(), self.key, self.value),
            None => write!(f, "{}:{}={}", self.target.name(), self.key, self.value),
        }
    }
}

/// Whether an annotation for `selector` (none: every platform) applies to
/// an image of `platform`.
pub fn selects(selector: Option<&Platform>, platform: Option<&Platform>) -> bool {
    match (selector, platform) {
        (None, _) => true,
        (Some(want), Some(p)) => platform_key(want) == platform_key(p),
        (Some(_), None) => false,
    }
}

impl Annotation {
    /// Parses one value of `imagetools create --annotation`: the index
    /// when no type is given; only `index` and `manifest-descriptor`.
    pub fn parse(input: &str) -> Result<Annotation, Error> {
        let mut all = parse_all(input, AnnotationTarget::Index)?;
        if all.iter().any(|a| matches!(a.target, AnnotationTarget::Manifest(_) | AnnotationTarget::IndexDescriptor)) {
            return Err(invalid(input, "imagetools create supports only index and manifest-descriptor annotations"));
        }
        match all.len() {
            1 => Ok(all.remove(0)),
            _ => Err(invalid(input, "imagetools create takes one annotation type per value")),
        }
    }

    /// Parses one value of `build --annotation`: each image manifest when
    /// no type is given; one annotation per type listed.
    pub fn parse_build(input: &str) -> Result<Vec<Annotation>, Error> {
        parse_all(input, AnnotationTarget::Manifest(None))
    }
}

fn invalid(input: &str, reason: &str) -> Error {
    Error::InvalidAnnotation { input: input.to_string(), reason: reason.to_string() }
}

/// `[TYPE[PLATFORM],...:]KEY=VALUE`, as buildx's `ParseAnnotations`: the
/// key ends at the first `=`, the types at the first `:` before it.
fn parse_all(input: &str, default: AnnotationTarget) -> Result<Vec<Annotation>, Error> {
    let (k, value) = input.split_once('=').ok_or_else(|| invalid(input, "expected KEY=VALUE"))?;
    let (types, key) = match k.split_once(':') {
        Some((types, key)) => (Some(types), key),
        None => (None, k),
    };
    if key.is_empty() {
        return Err(invalid(input, "empty key"));
    }
    let mut targets = Vec::new();
    match types {
        None | Some("") => targets.push(default),
        Some(types) => {
            for typ in split_types(types) {
                targets.push(parse_type(input, typ)?);
            }
        }
    }
    Ok(targets
        .into_iter()
        .map(|target| Annotation { target, key: key.to_string(), value: value.to_string() })
        .collect())
}

/// The comma-separated types, commas inside `[...]` kept.
fn split_types(types: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in types.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&types[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&types[start..]);
    out
}

fn parse_type(input: &str, typ: &str) -> Result<AnnotationTarget, Error> {
    let (name, platform) = match typ.find('[') {
        Some(open) => {
            let inner = typ[open + 1..]
                .strip_suffix(']')
                .ok_or_else(|| invalid(input, "unclosed '[' in the annotation type"))?;
            let p = Platform::parse(inner).map_err(|e| invalid(input, &format!("bad platform {inner:?}: {e}")))?;
            (&typ[..open], Some(p))
        }
        None => (typ, None),
    };
    let target = match name {
        "manifest" => AnnotationTarget::Manifest(platform),
        "manifest-descriptor" => AnnotationTarget::ManifestDescriptor(platform),
        "index" | "index-descriptor" if platform.is_some() => {
            return Err(invalid(input, &format!("{name} annotations take no platform")))
        }
        "index" => AnnotationTarget::Index,
        "index-descriptor" => AnnotationTarget::IndexDescriptor,
        other => {
            return Err(invalid(
                input,
                &format!(
                    "unknown annotation type {other:?} (want manifest, index, manifest-descriptor or index-descriptor)"
                ),
            ))
        }
    };
    Ok(target)
}

/// The annotations of `list` for one place: `target_name` is the type,
/// `platform` the image's (for the per-platform types).
pub fn for_target(list: &[Annotation], target_name: &str, platform: Option<&Platform>) -> BTreeMap<String, String> {
    list.iter()
        .filter(|a| a.target.name() == target_name && selects(a.target.platform(), platform))
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn build_annotations_default_to_manifests() {
        let a = Annotation::parse_build("org.opencontainers.image.title=x=y").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].target, AnnotationTarget::Manifest(None));
        assert_eq!((a[0].key.as_str(), a[0].value.as_str()), ("org.opencontainers.image.title", "x=y"));
        let a = Annotation::parse_build("index,manifest[linux/arm64],manifest-descriptor:k=v:w").unwrap();
        let targets: Vec<_> = a.iter().map(|a| a.target.clone()).collect();
        assert_eq!(
            targets,
            [
                AnnotationTarget::Index,
                AnnotationTarget::Manifest(Some(p("linux/arm64"))),
                AnnotationTarget::ManifestDescriptor(None)
            ]
        );
        assert!(a.iter().all(|a| a.key == "k" && a.value == "v:w"));
        let d = Annotation::parse_build("index-descriptor:k=v").unwrap();
        assert_eq!(d[0].target, AnnotationTarget::IndexDescriptor);
        assert_eq!(d[0].to_string(), "index-descriptor:k=v");
    }

    #[test]
    fn bad_annotations_name_the_value() {
        for (bad, why) in [
            ("novalue", "expected KEY=VALUE"),
            ("manifest:=v", "empty key"),
            ("layer:k=v", "unknown annotation type \"layer\""),
            ("index[linux/amd64]:k=v", "index annotations take no platform"),
            ("manifest[linux/amd64:k=v", "unclosed"),
            ("manifest[linux/amd64/x/y]:k=v", "bad platform"),
        ] {
            let err = Annotation::parse_build(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")) && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn imagetools_annotations_default_to_the_index() {
        let a = Annotation::parse("k=v").unwrap();
        assert_eq!(a.target, AnnotationTarget::Index);
        let d = Annotation::parse("manifest-descriptor[linux/arm64]:k=v").unwrap();
        assert_eq!(d.target, AnnotationTarget::ManifestDescriptor(Some(p("linux/arm64"))));
        for bad in ["manifest:k=v", "index-descriptor:k=v", "novalue"] {
            assert!(Annotation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selection_by_platform() {
        let list = Annotation::parse_build("manifest[linux/arm64]:a=1")
            .unwrap()
            .into_iter()
            .chain(Annotation::parse_build("b=2").unwrap())
            .chain(Annotation::parse_build("index:c=3").unwrap())
            .collect::<Vec<_>>();
        let arm = for_target(&list, "manifest", Some(&p("linux/arm64/v8")));
        assert_eq!(arm.into_iter().collect::<Vec<_>>(), [("a".into(), "1".into()), ("b".into(), "2".into())]);
        let amd = for_target(&list, "manifest", Some(&p("linux/amd64")));
        assert_eq!(amd.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(for_target(&list, "index", None).keys().collect::<Vec<_>>(), ["c"]);
    }
}
