//! `--cache-to` and `--cache-from` values, parsed as buildx parses them
//! (comma-separated `key=value` attributes, docs/reference/buildx_build.md):
//! `type=registry,ref=REPO:TAG[,mode=min|max][,oci-mediatypes=BOOL]
//! [,image-manifest=BOOL][,compression=gzip|zstd|uncompressed]
//! [,ignore-error=BOOL]`, `type=local,dest=DIR[,...]`,
//! `type=local,src=DIR[,digest=sha256:...]`, `type=inline`, and for
//! `--cache-from` a plain image reference (= `type=registry,ref=REF`).

use std::path::PathBuf;

use polyarch_oci::{Digest, Reference};

use crate::error::{Error, Result};

/// Which records an export holds (`mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The steps of the result's layers only (BuildKit's default).
    #[default]
    Min,
    /// The steps of every stage.
    Max,
}

/// How a cache is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// `mode=`.
    pub mode: Mode,
    /// `oci-mediatypes=` (default true): OCI media types, else Docker's
    /// manifest list for the index.
    pub oci_mediatypes: bool,
    /// `image-manifest=` (default false): an image manifest whose config
    /// is the cache config, instead of an index listing the blobs.
    pub image_manifest: bool,
    /// `compression=` (`gzip`, `zstd`, `uncompressed`): the layers are
    /// the build's own, shared with the image by digest, so a compression
    /// other than the build's is not applied (a warning says so).
    pub compression: Option<&'static str>,
    /// `ignore-error=`: a failed export is a warning.
    pub ignore_error: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            mode: Mode::Min,
            oci_mediatypes: true,
            image_manifest: false,
            compression: None,
            ignore_error: false,
        }
    }
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    /// A registry repository and tag.
    Registry {
        /// Where.
        reference: Reference,
        /// How.
        options: ExportOptions,
    },
    /// An OCI layout directory.
    Local {
        /// The directory (replaced as a whole).
        dest: PathBuf,
        /// How.
        options: ExportOptions,
    },
    /// The image config of the result (`moby.buildkit.cache.v0`).
    Inline,
}

impl CacheTo {
    /// The export options (inline: min, as BuildKit's).
    pub fn options(&self) -> ExportOptions {
        match self {
            CacheTo::Registry { options, .. } | CacheTo::Local { options, .. } => options.clone(),
            CacheTo::Inline => ExportOptions::default(),
        }
    }
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    /// A cache manifest, cache index or image with inline cache.
    Registry {
        /// Where.
        reference: Reference,
    },
    /// An OCI layout directory.
    Local {
        /// The directory.
        src: PathBuf,
        /// The manifest to read (default: the one tagged `latest`, else
        /// the only one).
        digest: Option<Digest>,
    },
}

impl std::fmt::Display for CacheFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheFrom::Registry { reference } => write!(f, "{reference}"),
            CacheFrom::Local { src, .. } => write!(f, "{}", src.display()),
        }
    }
}

/// The attributes of one value, in order; a value without `=` is `ref`
/// for `--cache-from` (buildx's shorthand).
fn attributes(flag: &'static str, value: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in polyarch_dockerfile::values::csv_fields(value) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), v.trim().to_string()),
            None if flag == "--cache-from" && !value.contains('=') => ("ref".into(), part.to_string()),
            None => return Err(bad(flag, value, format!("{part:?} is not KEY=VALUE"))),
        };
        if out.iter().any(|(o, _)| *o == k) {
            return Err(bad(flag, value, format!("key {k:?} is given twice")));
        }
        out.push((k, v));
    }
    if out.is_empty() {
        return Err(bad(flag, value, "empty value".into()));
    }
    if flag == "--cache-from" && !out.iter().any(|(k, _)| k == "type") && out.iter().any(|(k, _)| k == "ref") {
        out.insert(0, ("type".into(), "registry".into()));
    }
    Ok(out)
}

fn bad(flag: &'static str, value: &str, reason: String) -> Error {
    Error::CacheSpec { flag, value: value.to_string(), reason }
}

fn boolean(flag: &'static str, value: &str, key: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(bad(flag, value, format!("invalid value {v:?} for {key}: want true or false"))),
    }
}

fn reference(flag: &'static str, value: &str, r: &str) -> Result<Reference> {
    Reference::parse_normalized(r)
        .map(|r| r.with_default_tag())
        .map_err(|e| bad(flag, value, format!("invalid ref {r:?}: {e}")))
}

fn kind<'a>(flag: &'static str, value: &str, attrs: &'a [(String, String)]) -> Result<&'a str> {
    let t = attrs.iter().find(|(k, _)| k == "type").map(|(_, v)| v.as_str());
    match t {
        Some(t @ ("registry" | "local" | "inline")) => Ok(t),
        Some(t @ ("gha" | "s3" | "azblob")) => Err(bad(flag, value, format!("cache type {t:?} is not supported"))),
        Some(t) => Err(bad(flag, value, format!("unknown cache type {t:?}: want registry, local or inline"))),
        None => Err(bad(flag, value, "type is required (type=registry, type=local or type=inline)".into())),
    }
}

/// Parses one `--cache-to` value.
pub fn parse_cache_to(value: &str) -> Result<CacheTo> {
    const FLAG: &str = "--cache-to";
    let attrs = attributes(FLAG, value)?;
    let t = kind(FLAG, value, &attrs)?;
    let mut options = ExportOptions::default();
    let (mut target, mut dest) = (None, None);
    for (k, v) in &attrs {
        match (t, k.as_str()) {
            (_, "type") => {}
            ("registry", "ref") => target = Some(reference(FLAG, value, v)?),
            ("local", "dest") => dest = Some(PathBuf::from(v)),
            ("registry" | "local", "mode") => {
                options.mode = match v.as_str() {
                    "min" => Mode::Min,
                    "max" => Mode::Max,
                    _ => return Err(bad(FLAG, value, format!("invalid value {v:?} for mode: want min or max"))),
                }
            }
            ("registry" | "local", "oci-mediatypes") => options.oci_mediatypes = boolean(FLAG, value, k, v)?,
            ("registry" | "local", "image-manifest") => options.image_manifest = boolean(FLAG, value, k, v)?,
            ("registry" | "local", "ignore-error") => options.ignore_error = boolean(FLAG, value, k, v)?,
            ("registry" | "local", "compression") => {
                options.compression = Some(match v.as_str() {
                    "gzip" => "gzip",
                    "zstd" => "zstd",
                    "uncompressed" => "uncompressed",
                    _ => {
                        let msg = format!("invalid value {v:?} for compression: want gzip, zstd or uncompressed");
                        return Err(bad(FLAG, value, msg));
                    }
                })
            }
            // Accepted as BuildKit does; levels are the build's.
            ("registry" | "local", "compression-level" | "force-compression") => {}
            _ => return Err(bad(FLAG, value, format!("unknown key {k:?} for type={t}"))),
        }
    }
    if options.image_manifest && !options.oci_mediatypes {
        return Err(bad(FLAG, value, "image-manifest=true needs oci-mediatypes=true".into()));
    }
    match t {
        "registry" => match target {
            Some(reference) => Ok(CacheTo::Registry { reference, options }),
            None => Err(bad(FLAG, value, "ref is required for type=registry".into())),
        },
        "local" => match dest {
            Some(dest) if !dest.as_os_str().is_empty() => Ok(CacheTo::Local { dest, options }),
            _ => Err(bad(FLAG, value, "dest is required for type=local".into())),
        },
        _ => Ok(CacheTo::Inline),
    }
}

/// Parses one `--cache-from` value.
pub fn parse_cache_from(value: &str) -> Result<CacheFrom> {
    const FLAG: &str = "--cache-from";
    let attrs = attributes(FLAG, value)?;
    let t = kind(FLAG, value, &attrs)?;
    let (mut target, mut src, mut digest) = (None, None, None);
    for (k, v) in &attrs {
        match (t, k.as_str()) {
            (_, "type") => {}
            ("registry", "ref") => target = Some(reference(FLAG, value, v)?),
            ("local", "src") => src = Some(PathBuf::from(v)),
            ("local", "digest") => {
                digest = Some(v.parse::<Digest>().map_err(|e| bad(FLAG, value, format!("invalid digest {v:?}: {e}")))?)
            }
            // BuildKit's local cache names its manifest by tag too.
            ("local", "tag") if v == "latest" => {}
            _ => return Err(bad(FLAG, value, format!("unknown key {k:?} for type={t}"))),
        }
    }
    match t {
        "registry" => match target {
            Some(reference) => Ok(CacheFrom::Registry { reference }),
            None => Err(bad(FLAG, value, "ref is required for type=registry".into())),
        },
        "local" => match src {
            Some(src) if !src.as_os_str().is_empty() => Ok(CacheFrom::Local { src, digest }),
            _ => Err(bad(FLAG, value, "src is required for type=local".into())),
        },
        _ => Err(bad(FLAG, value, "type=inline is for --cache-to; import an inline cache by its image ref".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_to(v: &str) -> String {
        parse_cache_to(v).unwrap_err().to_string()
    }

    fn err_from(v: &str) -> String {
        parse_cache_from(v).unwrap_err().to_string()
    }

    #[test]
    fn registry_exports_with_every_option() {
        let got = parse_cache_to(
            "type=registry,ref=localhost:5000/app:cache,mode=max,oci-mediatypes=true,image-manifest=true,\
             compression=zstd,ignore-error=true",
        )
        .unwrap();
        let CacheTo::Registry { reference, options } = got else { panic!("{got:?}") };
        assert_eq!(reference.to_string(), "localhost:5000/app:cache");
        assert_eq!(
            options,
            ExportOptions {
                mode: Mode::Max,
                oci_mediatypes: true,
                image_manifest: true,
                compression: Some("zstd"),
                ignore_error: true
            }
        );
        let CacheTo::Registry { reference, options } = parse_cache_to("type=registry,ref=example.com/app").unwrap()
        else {
            panic!()
        };
        assert_eq!(reference.to_string(), "example.com/app:latest");
        assert_eq!(options, ExportOptions::default());
    }

    #[test]
    fn local_and_inline() {
        assert_eq!(
            parse_cache_to("type=local,dest=/tmp/c,mode=min").unwrap(),
            CacheTo::Local { dest: "/tmp/c".into(), options: ExportOptions::default() }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheTo::Inline);
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            parse_cache_from(&format!("type=local,src=/tmp/c,digest={d}")).unwrap(),
            CacheFrom::Local { src: "/tmp/c".into(), digest: Some(d.parse().unwrap()) }
        );
    }

    #[test]
    fn a_plain_reference_is_a_registry_import() {
        assert_eq!(
            parse_cache_from("localhost:5000/app:1").unwrap(),
            CacheFrom::Registry { reference: Reference::parse_normalized("localhost:5000/app:1").unwrap() }
        );
        assert_eq!(
            parse_cache_from("ref=localhost:5000/app:1").unwrap(),
            parse_cache_from("type=registry,ref=localhost:5000/app:1").unwrap()
        );
    }

    #[test]
    fn errors_name_the_flag_the_key_and_the_value() {
        let e = err_to("type=registry,ref=r/a:1,mode=medium");
        assert!(e.contains("--cache-to") && e.contains("\"medium\"") && e.contains("mode"), "{e}");
        let e = err_to("type=registry,ref=r/a:1,colour=blue");
        assert!(e.contains("unknown key \"colour\""), "{e}");
        let e = err_to("type=registry,ref=r/a:1,oci-mediatypes=maybe");
        assert!(e.contains("\"maybe\"") && e.contains("oci-mediatypes"), "{e}");
        let e = err_to("type=registry,ref=r/a:1,compression=lz4");
        assert!(e.contains("\"lz4\"") && e.contains("compression"), "{e}");
        assert!(err_to("type=registry").contains("ref is required"));
        assert!(err_to("type=local").contains("dest is required"));
        assert!(err_to("type=registry,ref=UPPER/Case").contains("invalid ref \"UPPER/Case\""));
        assert!(err_to("type=gha").contains("\"gha\" is not supported"));
        assert!(err_to("type=floppy,dest=a").contains("unknown cache type \"floppy\""));
        assert!(err_to("ref=r/a:1").contains("type is required"));
        assert!(err_to("registry").contains("\"registry\" is not KEY=VALUE"));
        assert!(err_to("type=local,dest=a,dest=b").contains("\"dest\" is given twice"));
        assert!(err_to("type=registry,ref=r/a,image-manifest=true,oci-mediatypes=false").contains("image-manifest"));
        assert!(err_to("type=inline,mode=max").contains("unknown key \"mode\" for type=inline"));
        let e = err_from("type=local");
        assert!(e.contains("--cache-from") && e.contains("src is required"), "{e}");
        assert!(err_from("type=local,src=a,digest=sha256:zz").contains("invalid digest \"sha256:zz\""));
        assert!(err_from("type=local,dest=a").contains("unknown key \"dest\" for type=local"));
        assert!(err_from("type=inline").contains("--cache-to"));
        assert!(err_from("").contains("empty value"));
    }
}
