//! `polyarch imagetools create|inspect`: indexes in registries, as
//! `docker buildx imagetools` does.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use polyarch_index::merge::{self, Annotation, IndexFormat, MergeOptions, Source};
use polyarch_index::publish::{self, Child};
use polyarch_index::resolve::{self, Fetched};
use polyarch_oci::descriptor::{ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REFERENCE_TYPE};
use polyarch_oci::{Descriptor, Digest, Platform, RawManifest, Reference};
use serde_json::json;

use super::context::{self, parse_ref};
use super::output::{aligned, json_indented};
use super::GlobalArgs;
use crate::template::{self, Format};

/// Image configs are small JSON documents; larger ones are refused.
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

#[derive(Subcommand)]
pub enum ImagetoolsCommand {
    /// Create an index from images and indexes in registries.
    Create(CreateArgs),
    /// Show an image or index in a registry.
    Inspect(InspectArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Oci,
    Docker,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Reference to write (several allowed; all get the same digest); none
    /// is needed with --dry-run.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Read a source from a file: a digest, a reference or an OCI
    /// descriptor as JSON (whose platform and annotations the entry gets).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Add the sources to the index that the first tag names now.
    #[arg(long)]
    append: bool,
    /// Print the index instead of pushing it.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// `KEY=VALUE`, `index:KEY=VALUE` or `manifest-descriptor[PLATFORM]:KEY=VALUE`.
    #[arg(long = "annotation")]
    annotations: Vec<String>,
    /// Keep only the images of these platforms (a comma list, repeatable).
    #[arg(short = 'p', long = "platform", value_name = "PLATFORM[,PLATFORM...]")]
    platforms: Vec<String>,
    /// With one image as the only source, put it in an index (the
    /// default); `--prefer-index=false` copies it as it is.
    #[arg(long = "prefer-index", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    prefer_index: bool,
    /// Write the result's descriptor and digest to this file as JSON.
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Progress output, as buildx's flag (what is pushed is said on stderr).
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "rawjson", "quiet", "none"])]
    progress: String,
    /// Accepted for buildx compatibility: registries are reached from here.
    #[arg(long, value_name = "NAME")]
    builder: Option<String>,
    /// Index media type (default: Docker when every source is Docker, else OCI).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    #[arg(long)]
    insecure: bool,
    /// An image or index: a reference, a digest in the tags' repository, or
    /// an OCI descriptor as JSON.
    #[arg(value_name = "SOURCE")]
    sources: Vec<String>,
}

/// A source as buildx reads it: a reference, or a descriptor (a digest
/// alone, or JSON) of a manifest in the one repository the command names.
#[derive(Debug, Clone, PartialEq)]
enum SourceArg {
    Ref(Reference),
    Desc(GivenDescriptor),
}

/// What a descriptor given as a source says; what it leaves out comes
/// from the registry.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GivenDescriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: Digest,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn parse_source(input: &str) -> Result<SourceArg> {
    let s = input.trim();
    let wrap = |e: anyhow::Error| {
        e.context(format!("failed to parse source {s:?}, valid sources are digests, references and descriptors"))
    };
    if s.starts_with("sha256") {
        let digest = s.parse::<Digest>().map_err(|e| wrap(e.into()))?;
        let d = GivenDescriptor { media_type: None, digest, size: None, platform: None, annotations: None };
        return Ok(SourceArg::Desc(d));
    }
    if s.starts_with('{') {
        let d: GivenDescriptor = serde_json::from_str(s).map_err(|e| wrap(e.into()))?;
        return Ok(SourceArg::Desc(d));
    }
    parse_ref(s).map(|r| SourceArg::Ref(r.with_default_tag())).map_err(wrap)
}

#[derive(Args)]
pub struct InspectArgs {
    /// Print the exact bytes the registry serves.
    #[arg(long)]
    raw: bool,
    /// `json`, or a Go template over buildx's fields: `{{.Name}}`,
    /// `{{json .Manifest}}`, `{{json .Image}}` (the config, or per platform
    /// for an index: `{{json (index .Image "linux/arm64")}}`).
    #[arg(long, value_parser = template::format_arg)]
    format: Option<Format>,
    #[arg(long)]
    insecure: bool,
    #[arg(value_name = "REF")]
    reference: String,
}

pub fn run(global: &GlobalArgs, cmd: ImagetoolsCommand) -> Result<u8> {
    match cmd {
        ImagetoolsCommand::Create(a) => create(global, a),
        ImagetoolsCommand::Inspect(a) => inspect(global, a),
    }
}

fn with_digest(r: &Reference, d: &Descriptor) -> Reference {
    r.trimmed().with_digest(d.digest.clone())
}

fn create(global: &GlobalArgs, a: CreateArgs) -> Result<u8> {
    let tags = a.tags.iter().map(|t| context::parse_tagged(t)).collect::<Result<Vec<_>>>()?;
    let mut inputs = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        inputs.push(text);
    }
    inputs.extend(a.sources.iter().cloned());
    if inputs.is_empty() && !a.append {
        match tags.first() {
            Some(t) => bail!("no sources: give at least one image or index to put in {t}"),
            None => bail!("no sources specified"),
        }
    }
    if tags.is_empty() && !a.dry_run {
        bail!("can't push with no tags specified, please set --tag or --dry-run");
    }
    if a.append && tags.is_empty() {
        bail!("--append needs a --tag: the index it adds to");
    }
    let annotations = a.annotations.iter().map(|s| Annotation::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let platforms = polyarch_builder::multi::parse_platforms(&a.platforms)?;
    let parsed = inputs.iter().map(|s| parse_source(s)).collect::<Result<Vec<_>>>()?;
    // A descriptor names a manifest of the one repository the tags and
    // the references name, as buildx infers it.
    let mut repos: Vec<Reference> = Vec::new();
    for r in tags.iter().chain(parsed.iter().filter_map(|p| match p {
        SourceArg::Ref(r) => Some(r),
        SourceArg::Desc(_) => None,
    })) {
        if !repos.iter().any(|x| x.in_same_repo(r)) {
            repos.push(r.trimmed());
        }
    }
    let mut refs: Vec<(Reference, Option<GivenDescriptor>)> = Vec::new();
    for (p, input) in parsed.into_iter().zip(&inputs) {
        match p {
            SourceArg::Ref(r) => refs.push((r, None)),
            SourceArg::Desc(d) => match repos.as_slice() {
                [repo] => refs.push((repo.with_digest(d.digest.clone()), Some(d))),
                [] => bail!("no repositories specified, please set a reference in tag or source"),
                _ => bail!("multiple repositories specified, cannot infer repository for {:?}", input.trim()),
            },
        }
    }
    let client = context::client(global, a.insecure)?;
    let rt = context::runtime()?;
    let mut fetched: Vec<(Fetched, Option<GivenDescriptor>)> = Vec::new();
    if a.append {
        let existing =
            rt.block_on(resolve::fetch(&client, &tags[0])).with_context(|| format!("--append: reading {}", tags[0]))?;
        fetched.push((existing, None));
    }
    let sources =
        rt.block_on(futures_util::future::try_join_all(refs.iter().map(|(r, _)| resolve::fetch(&client, r))))?;
    fetched.extend(sources.into_iter().zip(refs.into_iter().map(|(_, d)| d)));
    let mut merge_sources: Vec<Source> = Vec::with_capacity(fetched.len());
    for (f, given) in &fetched {
        let mut src = Source {
            name: f.reference.to_string(),
            manifest: f.manifest.clone(),
            platform: f.platform.clone(),
            annotations: None,
        };
        if let Some(d) = given {
            let actual = f.manifest.bytes().len() as u64;
            if let Some(size) = d.size.filter(|s| *s != actual) {
                bail!("invalid size mismatch for {}, {size} != {actual}", d.digest);
            }
            if let Some(mt) = d.media_type.as_deref().filter(|m| *m != f.manifest.media_type()) {
                bail!("{}: the descriptor says {mt}, the registry serves {}", d.digest, f.manifest.media_type());
            }
            if d.platform.is_some() {
                src.platform = d.platform.clone();
            }
            src.annotations = d.annotations.clone().filter(|a| !a.is_empty());
        }
        merge_sources.push(src);
    }
    let format = a.format.map(|f| match f {
        FormatArg::Oci => IndexFormat::Oci,
        FormatArg::Docker => IndexFormat::Docker,
    });
    let opts = MergeOptions { format, annotations, platforms, keep_single_image: !a.prefer_index };
    let merged = merge::merge(&merge_sources, &opts)?;
    for w in &merged.warnings {
        eprintln!("warning: {w}");
    }
    if a.dry_run {
        let v: serde_json::Value = serde_json::from_slice(merged.index.bytes())?;
        crate::outln!("{}", json_indented(&v, b"  ")?)?;
        return Ok(0);
    }
    // Each child and where it can be read from; one image copied as it
    // is, is its own only child.
    let children = match merged.index.as_index() {
        None => {
            let f = &fetched[0].0;
            vec![Child { source: with_digest(&f.reference, &f.manifest.descriptor()), manifest: f.manifest.clone() }]
        }
        Some(index) => rt.block_on(async {
            let mut out = Vec::with_capacity(index.manifests.len());
            for (desc, origin) in index.manifests.iter().zip(&merged.origins) {
                let f = &fetched[*origin].0;
                let manifest = if f.manifest.is_index() {
                    client.get_manifest(&with_digest(&f.reference, desc)).await?
                } else {
                    f.manifest.clone()
                };
                out.push(Child { source: with_digest(&f.reference, desc), manifest });
            }
            Ok::<_, anyhow::Error>(out)
        })?,
    };
    let digest = rt.block_on(publish::publish_index(&client, &merged.index, &children, &tags))?;
    let quiet = matches!(a.progress.as_str(), "quiet" | "none");
    if !quiet {
        for t in &tags {
            eprintln!("pushed {t}@{digest}");
        }
    }
    if let Some(path) = &a.metadata_file {
        let meta = json!({
            "containerimage.descriptor": merged.index.descriptor(),
            "containerimage.digest": digest.to_string(),
            "image.name": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","),
        });
        polyarch_store::AtomicFile::write(path, json_indented(&meta, b"  ")?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    crate::outln!("{digest}")?;
    Ok(0)
}

fn inspect(global: &GlobalArgs, a: InspectArgs) -> Result<u8> {
    let r = parse_ref(&a.reference)?.with_default_tag();
    let client = context::client(global, a.insecure)?;
    let rt = context::runtime()?;
    let m = rt.block_on(client.get_manifest(&r))?;
    if a.raw {
        crate::report::Stdout.write_all(m.bytes())?;
        return Ok(0);
    }
    match a.format {
        Some(Format::Json) => crate::outln!("{}", json_indented(&inspect_json(&r, &m)?, b"  ")?)?,
        Some(Format::Template { template, .. }) => {
            let mut v = inspect_json(&r, &m)?;
            if template.may_read("Image") {
                v["image"] = rt.block_on(image_configs(&client, &r, &m))?;
            }
            let out = template.with_type("imagetools.tplInput").with_json_indent("  ").execute(&v)?;
            super::images::emit(&if out.ends_with('\n') { out } else { format!("{out}\n") })?;
        }
        Some(Format::Default) | None => crate::out!("{}", human(&r, &m))?,
    }
    Ok(0)
}

/// buildx's `.Image`: an image's config, or for an index the config of each
/// platform by its name (`linux/arm64`), or the one config when there is one.
async fn image_configs(
    client: &polyarch_registry::Client,
    r: &Reference,
    m: &RawManifest,
) -> Result<serde_json::Value> {
    let config = |r: Reference, m: RawManifest| async move {
        let Some(image) = m.as_image() else { return Ok::<_, anyhow::Error>(None) };
        let bytes = client.get_blob_bytes(&r, &image.config, MAX_CONFIG_SIZE).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("reading the config of {r}"))?;
        Ok(Some(v))
    };
    let Some(index) = m.as_index() else {
        return Ok(config(r.clone(), m.clone()).await?.unwrap_or_default());
    };
    let mut all = serde_json::Map::new();
    for d in index.manifests.iter().filter(|d| !d.is_attestation()) {
        let child = with_digest(r, d);
        let manifest = client.get_manifest(&child).await?;
        if let Some(v) = config(child, manifest).await? {
            all.insert(d.platform.as_ref().map(|p| p.format()).unwrap_or_else(|| d.digest.to_string()), v);
        }
    }
    if all.len() == 1 {
        return Ok(all.into_iter().next().map(|(_, v)| v).unwrap_or_default());
    }
    Ok(serde_json::Value::Object(all))
}

fn inspect_json(r: &Reference, m: &RawManifest) -> Result<serde_json::Value> {
    let manifest = match m.as_index() {
        Some(i) => json!({
            "schemaVersion": i.schema_version,
            "mediaType": m.media_type(),
            "digest": m.digest(),
            "size": m.size(),
            "manifests": i.manifests,
            "annotations": i.annotations,
        }),
        None => serde_json::to_value(m.descriptor())?,
    };
    Ok(json!({"name": r.to_string(), "manifest": manifest}))
}

/// buildx's human view; attestation manifests are listed under the image
/// they describe rather than as an `unknown/unknown` platform.
fn human(r: &Reference, m: &RawManifest) -> String {
    let mut out = aligned(
        "",
        &[("Name", r.to_string()), ("MediaType", m.media_type().to_string()), ("Digest", m.digest().to_string())],
    );
    let Some(index) = m.as_index() else { return out };
    out.push_str("\nManifests:\n");
    let attestations: Vec<&Descriptor> = index.manifests.iter().filter(|d| d.is_attestation()).collect();
    let mut first = true;
    for d in index.manifests.iter().filter(|d| !d.is_attestation()) {
        if !first {
            out.push('\n');
        }
        first = false;
        let mut rows = vec![("Name", with_digest(r, d).to_string()), ("MediaType", d.media_type.clone())];
        if let Some(p) = &d.platform {
            rows.push(("Platform", p.format()));
            if let Some(v) = p.os_version.as_deref().filter(|v| !v.is_empty()) {
                rows.push(("OSVersion", v.to_string()));
            }
            if let Some(f) = p.os_features.as_ref().filter(|f| !f.is_empty()) {
                rows.push(("OSFeatures", f.join(", ")));
            }
        }
        if let Some(urls) = d.urls.as_ref().filter(|u| !u.is_empty()) {
            rows.push(("URLs", urls.join(", ")));
        }
        let digest = d.digest.to_string();
        for att in attestations.iter().filter(|a| a.annotation(ANNOTATION_REFERENCE_DIGEST) == Some(digest.as_str())) {
            let kind = att.annotation(ANNOTATION_REFERENCE_TYPE).unwrap_or("attestation");
            rows.push(("Attestation", format!("{} ({kind})", with_digest(r, att))));
        }
        let annotated = d.annotations.as_ref().filter(|a| !a.is_empty());
        if annotated.is_some() {
            rows.push(("Annotations", String::new()));
        }
        out.push_str(&aligned("  ", &rows));
        if let Some(ann) = annotated {
            let rows: Vec<(&str, String)> = ann.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            out.push_str(&aligned("    ", &rows));
        }
    }
    // Attestations whose image is not in the index are still shown.
    let orphans: Vec<&&Descriptor> = attestations
        .iter()
        .filter(|a| {
            let target = a.annotation(ANNOTATION_REFERENCE_DIGEST);
            !index.manifests.iter().any(|d| Some(d.digest.to_string().as_str()) == target)
        })
        .collect();
    for att in orphans {
        out.push('\n');
        out.push_str(&aligned(
            "  ",
            &[
                ("Name", with_digest(r, att).to_string()),
                ("MediaType", att.media_type.clone()),
                (
                    "Attestation",
                    format!("of {} (not in this index)", att.annotation(ANNOTATION_REFERENCE_DIGEST).unwrap_or("?")),
                ),
            ],
        ));
    }
    out
}
