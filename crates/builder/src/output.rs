//! `--output`/`-o` of a build, parsed from buildx's syntax into one typed
//! value: `type=image|registry|oci|docker|local|tar|cacheonly` with `dest=`,
//! `name=`, `push=`, `tar=`, `compression=`, `oci-mediatypes=`,
//! `rewrite-timestamp=`, `platform-split=` and BuildKit's `annotation.*`
//! attributes; `-o DIR` and `-o -` as shorthands. [`Output::write`]
//! applies a file output to what the build made ([`Built`]).

use std::io::Write;
use std::path::Path;

use polyarch_index::annotation::Annotation;

use crate::error::{Error, Result};
use crate::export::{self, Built, Loaded};
use crate::layer::{Compression, Encoding};
use polyarch_store::Store;

/// The kinds of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// The local store, and a registry with `push=true` (`type=registry`).
    Image,
    /// An OCI image layout: a tar, or a directory with `tar=false`.
    Oci,
    /// A `docker load` archive.
    Docker,
    /// The root file system as a tar.
    Tar,
    /// The root file system in a directory.
    Local,
    /// Nothing: the result stays in the build cache only (BuildKit's
    /// `cacheonly` exporter).
    CacheOnly,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// What is written.
    pub kind: OutputKind,
    /// Where: a file (`-` for stdout) or directory; required for the file
    /// kinds.
    pub dest: Option<String>,
    /// `name=`: the names (default: the build's `-t` tags).
    pub names: Vec<String>,
    /// `push=true`: push to the registry too.
    pub push: bool,
    /// `tar=false` writes an OCI layout as a directory.
    pub tar: bool,
    /// `compression=`: the layer compression.
    pub compression: Option<Compression>,
    /// `force-compression=true`: the base image's layers are compressed
    /// as `compression` too (else they keep theirs, as in BuildKit).
    pub force_compression: bool,
    /// `compression-level=N`: the level new layers (and those
    /// `force-compression` converts) are compressed at.
    pub compression_level: Option<i32>,
    /// `rewrite-timestamp=true`: clamp file times to `SOURCE_DATE_EPOCH`.
    pub rewrite_timestamp: bool,
    /// `oci-mediatypes`: `Some(false)` asks for Docker media types.
    pub oci_mediatypes: Option<bool>,
    /// `platform-split`: each platform in its own directory (the default
    /// for `local` and `tar` of several platforms).
    pub platform_split: Option<bool>,
    /// `annotation.*` attributes, as `--annotation` values.
    pub annotations: Vec<Annotation>,
    /// `push-by-digest=true`: push the manifest by its digest only, no
    /// tag moved (each platform from its own machine, joined later by
    /// `imagetools create` of the digests).
    pub push_by_digest: bool,
    /// `name-canonical=true`: with `push-by-digest`, `NAME@DIGEST` is one
    /// of the names the metadata file gives too.
    pub name_canonical: bool,
}

impl Default for Output {
    fn default() -> Output {
        Output::of(OutputKind::Image)
    }
}

fn parse_bool(k: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::Option(format!("invalid value {v:?} for {k}: want true or false"))),
    }
}

impl Output {
    /// An output of `kind` with every attribute at its default.
    pub fn of(kind: OutputKind) -> Output {
        Output {
            kind,
            dest: None,
            names: Vec::new(),
            push: false,
            tar: true,
            compression: None,
            force_compression: false,
            compression_level: None,
            rewrite_timestamp: false,
            oci_mediatypes: None,
            platform_split: None,
            annotations: Vec::new(),
            push_by_digest: false,
            name_canonical: false,
        }
    }

    /// Parses buildx's `--output` syntax.
    pub fn parse(s: &str) -> Result<Output> {
        if !s.contains('=') {
            // buildx: `-` is a tar on stdout, anything else a local directory.
            let kind = if s == "-" { OutputKind::Tar } else { OutputKind::Local };
            return Ok(Output { dest: Some(s.into()), ..Output::of(kind) });
        }
        let mut o = Output::default();
        let mut kind = None;
        for field in polyarch_dockerfile::values::csv_fields(s) {
            let (k, v) = field.split_once('=').unwrap_or((&field, ""));
            match k.trim() {
                "type" => kind = Some(v.to_string()),
                "dest" => o.dest = Some(v.to_string()),
                // Several names are one quoted CSV field, comma-separated
                // (`"name=a,b"`), as BuildKit's image exporter splits them.
                "name" | "names" => {
                    o.names.extend(v.split([',', ';']).map(str::trim).filter(|n| !n.is_empty()).map(String::from))
                }
                "push" => o.push = parse_bool(k, v)?,
                "tar" => o.tar = parse_bool(k, v)?,
                "compression" => o.compression = Some(parse_compression(v)?),
                "rewrite-timestamp" => o.rewrite_timestamp = parse_bool(k, v)?,
                "oci-mediatypes" => o.oci_mediatypes = Some(parse_bool(k, v)?),
                "platform-split" => o.platform_split = Some(parse_bool(k, v)?),
                a if a.starts_with("annotation") => o.annotations.extend(parse_annotation(a, v)?),
                "push-by-digest" => o.push_by_digest = parse_bool(k, v)?,
                "name-canonical" => o.name_canonical = parse_bool(k, v)?,
                "force-compression" => o.force_compression = parse_bool(k, v)?,
                "compression-level" => {
                    o.compression_level = Some(v.trim().parse().map_err(|_| {
                        Error::Option(format!("non-int value {v:?} specified for compression-level in {s:?}"))
                    })?)
                }
                "unpack" | "store" => {}
                other => return Err(Error::Option(format!("unknown output attribute {other:?} in {s:?}"))),
            }
        }
        o.kind = match kind.as_deref() {
            None | Some("") => return Err(Error::Option(format!("--output {s:?}: type is required"))),
            Some("image") => OutputKind::Image,
            Some("registry") => {
                o.push = true;
                OutputKind::Image
            }
            Some("oci") => OutputKind::Oci,
            Some("docker") => OutputKind::Docker,
            Some("tar") => OutputKind::Tar,
            Some("local") => OutputKind::Local,
            Some("cacheonly") => OutputKind::CacheOnly,
            Some(other) => {
                return Err(Error::Option(format!(
                    "unknown output type {other:?} (want image, registry, oci, docker, tar, local or cacheonly)"
                )))
            }
        };
        Encoding::new(o.compression.unwrap_or_default(), o.compression_level)
            .map_err(|e| Error::Option(format!("--output {s:?}: {e}")))?;
        // Without dest, `type=docker` loads into the Docker engine.
        if !matches!(o.kind, OutputKind::Image | OutputKind::Docker | OutputKind::CacheOnly) && o.dest.is_none() {
            return Err(Error::Option(format!("--output type={}: dest is required", kind.unwrap_or_default())));
        }
        Ok(o)
    }

    /// Writes a file output (every kind but [`OutputKind::Image`], which
    /// is the store's and the registry's: see [`export::tag`] and
    /// [`export::push`]) for `built` under `names`. A `dest` of `-` goes
    /// to `stdout`; a file is written beside its place and renamed there
    /// once complete. Returns, for `type=docker`, what each platform is
    /// loaded as.
    pub fn write(
        &self,
        store: &Store,
        built: &Built,
        names: &[String],
        annotations: &[Annotation],
        stdout: &mut dyn Write,
    ) -> Result<Loaded> {
        let dest = self.dest.as_deref().unwrap_or("");
        let split = self.platform_split.unwrap_or(true);
        let mut loaded = Vec::new();
        match self.kind {
            OutputKind::Image | OutputKind::CacheOnly => {}
            OutputKind::Oci if !self.tar => export::write_oci_dir(store, built, names, annotations, Path::new(dest))?,
            OutputKind::Oci => to_dest(dest, stdout, |w| export::write_oci_tar(store, built, names, annotations, w))?,
            OutputKind::Docker => to_dest(dest, stdout, |w| {
                loaded = export::write_docker_tar(store, built, names, w)?;
                Ok(())
            })?,
            OutputKind::Tar => to_dest(dest, stdout, |w| export::write_rootfs_tar(store, built, split, w).map(|_| ()))?,
            OutputKind::Local => export::write_local(store, built, split, Path::new(dest))?,
        }
        Ok(loaded)
    }
}

/// How a build with `outputs` writes its layers: the first `compression=`
/// (gzip without one) at the first `compression-level=`.
pub fn encoding_of(outputs: &[Output]) -> Encoding {
    Encoding {
        compression: outputs.iter().find_map(|o| o.compression).unwrap_or_default(),
        level: outputs.iter().find_map(|o| o.compression_level),
    }
}

fn parse_compression(v: &str) -> Result<Compression> {
    match v {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "uncompressed" => Ok(Compression::Uncompressed),
        other => Err(Error::Option(format!("unsupported compression {other:?} (want gzip, zstd or uncompressed)"))),
    }
}

/// BuildKit's `annotation[PLATFORM].KEY`, `annotation-TYPE.KEY` and
/// `annotation-TYPE[PLATFORM].KEY` attributes (default type `manifest`).
fn parse_annotation(attr: &str, value: &str) -> Result<Vec<Annotation>> {
    let rest = &attr["annotation".len()..];
    let (typ, key) = match rest.strip_prefix('-') {
        Some(typed) => typed.split_once('.').map(|(t, k)| (t.to_string(), k)),
        None => rest.split_once('.').map(|(p, k)| (format!("manifest{p}"), k)),
    }
    .ok_or_else(|| Error::Option(format!("invalid output attribute {attr:?}: want annotation.KEY=VALUE")))?;
    Annotation::parse_build(&format!("{typ}:{key}={value}")).map_err(|e| Error::Option(e.to_string()))
}

/// Runs `f` on a writer for `dest`: `stdout` for `-`; else an
/// [`polyarch_store::AtomicFile`] (its directory made if missing), renamed
/// into place once `f` succeeded, removed when it failed.
fn to_dest(dest: &str, stdout: &mut dyn Write, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if dest == "-" {
        f(stdout)?;
        return stdout.flush().map_err(|e| Error::io(Path::new("<stdout>"), e));
    }
    let path = Path::new(dest);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut file = polyarch_store::AtomicFile::create(path).map_err(|e| Error::io(path, e))?;
    f(&mut file)?;
    file.commit().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_index::AnnotationTarget;

    #[test]
    fn output_specs() {
        let o = Output::parse("type=oci,dest=out.tar,compression=zstd").unwrap();
        assert_eq!(
            (o.kind, o.dest.as_deref(), o.compression),
            (OutputKind::Oci, Some("out.tar"), Some(Compression::Zstd))
        );
        // CSV as buildx reads it: a quoted field holds several names.
        let o = Output::parse("type=image,\"name=r/a:1,r/b:1\",push=true").unwrap();
        assert_eq!((o.names.clone(), o.push), (vec!["r/a:1".to_string(), "r/b:1".to_string()], true));
        let o = Output::parse("type=local,\"dest=/tmp/a,b\"").unwrap();
        assert_eq!(o.dest.as_deref(), Some("/tmp/a,b"));
        let o = Output::parse("type=registry,name=r/x:1").unwrap();
        assert_eq!((o.kind, o.push, o.names.clone()), (OutputKind::Image, true, vec!["r/x:1".to_string()]));
        assert_eq!(Output::parse("outdir").unwrap().kind, OutputKind::Local);
        assert_eq!(Output::parse("-").unwrap().kind, OutputKind::Tar);
        assert!(!Output::parse("type=oci,dest=d,tar=false").unwrap().tar);
        assert!(Output::parse("type=docker").unwrap().dest.is_none());
        assert_eq!(Output::parse("type=local,dest=d,platform-split=false").unwrap().platform_split, Some(false));
        let o = Output::parse("type=image,compression=uncompressed,force-compression=true").unwrap();
        assert_eq!((o.compression, o.force_compression), (Some(Compression::Uncompressed), true));
        assert!(!Output::parse("type=image,compression=zstd").unwrap().force_compression);
        let o = Output::parse("type=cacheonly").unwrap();
        assert_eq!((o.kind, o.dest.as_deref()), (OutputKind::CacheOnly, None));
        // zstd takes any level (clamped when written), uncompressed ignores it.
        let zstd = Output::parse("type=image,compression=zstd,compression-level=19").unwrap();
        assert_eq!(zstd.compression_level, Some(19));
        assert!(Output::parse("type=image,compression=zstd,compression-level=30").is_ok());
        assert!(Output::parse("type=image,compression=uncompressed,compression-level=99").is_ok());
        let plain = Output::parse("type=oci,dest=o.tar,compression-level=0").unwrap();
        assert_eq!(
            encoding_of(&[plain.clone(), zstd.clone()]),
            Encoding { compression: Compression::Zstd, level: Some(0) }
        );
        assert_eq!(encoding_of(&[Output::default()]), Encoding::from(Compression::Gzip));
        for (bad, why) in [
            ("type=oci", "type=oci: dest is required"),
            ("type=nope,dest=x", "unknown output type \"nope\""),
            ("type=local,dest=x,bogus=1", "unknown output attribute \"bogus\""),
            ("dest=x", "type is required"),
            ("type=image,push=maybe", "invalid value \"maybe\" for push"),
            ("type=oci,dest=x,compression=lz4", "unsupported compression \"lz4\""),
            ("type=image,compression-level=high", "non-int value \"high\" specified for compression-level"),
            ("type=image,compression-level=10", "compression-level=10 is out of range for gzip"),
            ("type=image,compression=gzip,compression-level=-2", "compression-level=-2 is out of range for gzip"),
        ] {
            let err = Output::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn push_by_digest_and_canonical_names_are_read() {
        let o = Output::parse("type=image,name=r/app,push-by-digest=true,name-canonical=true,push=true").unwrap();
        assert!(o.push && o.push_by_digest && o.name_canonical);
        let o = Output::parse("type=registry,name=r/app").unwrap();
        assert!(o.push && !o.push_by_digest && !o.name_canonical);
        assert!(Output::parse("type=image,push-by-digest=maybe").is_err());
    }

    #[test]
    fn a_file_output_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.tar");
        let d = dest.to_str().unwrap();
        let failed = to_dest(d, &mut Vec::new(), |w| {
            w.write_all(b"half").unwrap();
            Err(Error::Option("stopped".into()))
        });
        assert!(failed.is_err());
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 0, "no temporary file is left");
        to_dest(d, &mut Vec::new(), |w| w.write_all(b"whole").map_err(|e| Error::io(Path::new("x"), e))).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        let mut out = Vec::new();
        to_dest("-", &mut out, |w| w.write_all(b"to stdout").map_err(|e| Error::io(Path::new("x"), e))).unwrap();
        assert_eq!(out, b"to stdout");
    }

    #[test]
    fn annotation_attributes_as_buildkit() {
        let o = Output::parse(
            "type=image,annotation.a=1,annotation[linux/arm64].b=2,annotation-index.c=3,annotation-manifest-descriptor[linux/amd64].d=4",
        )
        .unwrap();
        let got: Vec<(String, &str)> = o.annotations.iter().map(|a| (a.to_string(), a.value.as_str())).collect();
        assert_eq!(
            got,
            [
                ("manifest:a=1".to_string(), "1"),
                ("manifest[linux/arm64]:b=2".to_string(), "2"),
                ("index:c=3".to_string(), "3"),
                ("manifest-descriptor[linux/amd64]:d=4".to_string(), "4"),
            ]
        );
        assert_eq!(o.annotations[2].target, AnnotationTarget::Index);
        assert!(Output::parse("type=image,annotation-layer.k=v").is_err());
    }
}
