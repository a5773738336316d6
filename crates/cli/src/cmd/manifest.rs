//! `polyarch manifest create|annotate|inspect|push|rm`: local manifest lists
//! assembled from per-architecture images, as `docker manifest` does.

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use polyarch_index::publish::{self, Child};
use polyarch_index::resolve;
use polyarch_index::{ListEntry, ListStore, LocalList};
use polyarch_oci::{media_type as mt, IndexManifest, Platform, RawManifest};
use serde_json::json;

use super::context::{self, parse_ref, parse_tagged};
use super::output::{json_indented, reindent};
use super::GlobalArgs;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Create a local manifest list from images in registries.
    Create(CreateArgs),
    /// Set the platform of an image in a local manifest list.
    Annotate(AnnotateArgs),
    /// Show a manifest or manifest list (local first, then the registry).
    Inspect(InspectArgs),
    /// Push a local manifest list: every image first, then the list.
    Push(PushArgs),
    /// Delete local manifest lists.
    Rm(RmArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Add to an existing local list.
    #[arg(short, long)]
    amend: bool,
    /// Allow plain HTTP and unverified TLS for the registries involved.
    #[arg(long)]
    insecure: bool,
    /// For an IMAGE that is an index, take its platform entries.
    #[arg(long)]
    flatten: bool,
    #[arg(value_name = "LIST")]
    list: String,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct AnnotateArgs {
    /// Set the operating system (`linux`, `windows`, ...).
    #[arg(long)]
    os: Option<String>,
    /// Set the architecture (`amd64`, `arm64`, `arm`, ...; not `x86_64`).
    #[arg(long)]
    arch: Option<String>,
    /// Set the architecture variant (`v7` for arm, `v8` for arm64).
    #[arg(long)]
    variant: Option<String>,
    /// Set the operating system version.
    #[arg(long = "os-version")]
    os_version: Option<String>,
    /// Comma-separated OS features.
    #[arg(long = "os-features", value_delimiter = ',')]
    os_features: Option<Vec<String>>,
    #[arg(value_name = "LIST")]
    list: String,
    #[arg(value_name = "IMAGE")]
    image: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Show each image's reference, descriptor and manifest.
    #[arg(short, long)]
    verbose: bool,
    #[arg(long)]
    insecure: bool,
    /// A local list and, optionally, one image in it.
    #[arg(value_name = "REF", required = true, num_args = 1..=2)]
    refs: Vec<String>,
}

#[derive(Args)]
pub struct PushArgs {
    /// Delete the local list after a successful push.
    #[arg(short, long)]
    purge: bool,
    #[arg(long)]
    insecure: bool,
    #[arg(value_name = "LIST")]
    list: String,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(value_name = "LIST", required = true)]
    lists: Vec<String>,
}

pub fn run(global: &GlobalArgs, cmd: ManifestCommand) -> Result<u8> {
    let lists = ListStore::new(context::private_data_root(global)?.join("manifests"));
    match cmd {
        ManifestCommand::Create(a) => create(global, &lists, a),
        ManifestCommand::Annotate(a) => annotate(&lists, a),
        ManifestCommand::Inspect(a) => inspect(global, &lists, a),
        ManifestCommand::Push(a) => push(global, &lists, a),
        ManifestCommand::Rm(a) => rm(&lists, a),
    }
}

fn create(global: &GlobalArgs, lists: &ListStore, a: CreateArgs) -> Result<u8> {
    let name = parse_tagged(&a.list)?.to_string();
    let mut list = match lists.get(&name)? {
        Some(_) if !a.amend => return Err(polyarch_index::Error::ListExists { name }.into()),
        Some(l) => l,
        None => LocalList::new(name.clone()),
    };
    let refs = a.images.iter().map(|i| parse_tagged(i)).collect::<Result<Vec<_>>>()?;
    let client = context::client(global, a.insecure)?;
    let rt = context::runtime()?;
    let fetched = rt.block_on(async {
        futures_util::future::try_join_all(refs.iter().map(|r| resolve::fetch(&client, r))).await
    })?;
    for f in fetched {
        let source = f.reference.to_string();
        match f.manifest.as_index() {
            Some(index) if !a.flatten => {
                return Err(polyarch_index::Error::SourceIsIndex {
                    reference: source,
                    count: index.manifests.iter().filter(|d| !d.is_attestation()).count(),
                }
                .into())
            }
            Some(_) => {
                let children = rt.block_on(publish::load_children(&client, &f.reference, &f.manifest))?;
                let descs = f.manifest.as_index().map(|i| i.manifests.clone()).unwrap_or_default();
                for (d, child) in descs.into_iter().zip(children) {
                    if d.is_attestation() || child.manifest.is_index() {
                        continue;
                    }
                    list.upsert(ListEntry {
                        source: child.source.to_string(),
                        descriptor: d,
                        manifest: child.manifest,
                    });
                }
            }
            None => {
                let platform =
                    f.platform.ok_or_else(|| polyarch_index::Error::NoPlatform { reference: source.clone() })?;
                let descriptor = f.manifest.descriptor().with_platform(Some(platform));
                list.upsert(ListEntry { source, descriptor, manifest: f.manifest });
            }
        }
    }
    lists.put(&list)?;
    crate::outln!("Created manifest list {name}")?;
    Ok(0)
}

/// The os/arch pairs `docker manifest annotate` accepts (docker/cli
/// `cli/command/manifest/util.go`), compared as written: `x86_64` and
/// `aarch64` are names for `amd64` and `arm64` that no registry client
/// matches, so they are refused with the standard name as a hint.
const VALID_OS_ARCH: &[(&str, &str)] = &[
    ("darwin", "386"),
    ("darwin", "amd64"),
    ("darwin", "arm"),
    ("darwin", "arm64"),
    ("dragonfly", "amd64"),
    ("freebsd", "386"),
    ("freebsd", "amd64"),
    ("freebsd", "arm"),
    ("linux", "386"),
    ("linux", "amd64"),
    ("linux", "arm"),
    ("linux", "arm64"),
    ("linux", "ppc64le"),
    ("linux", "mips64"),
    ("linux", "mips64le"),
    ("linux", "riscv64"),
    ("linux", "s390x"),
    ("netbsd", "386"),
    ("netbsd", "amd64"),
    ("netbsd", "arm"),
    ("openbsd", "386"),
    ("openbsd", "amd64"),
    ("openbsd", "arm"),
    ("plan9", "386"),
    ("plan9", "amd64"),
    ("solaris", "amd64"),
    ("windows", "386"),
    ("windows", "amd64"),
];

/// Variants an architecture can have, where the set is fixed.
fn valid_variants(arch: &str) -> Option<&'static [&'static str]> {
    match arch {
        "arm" => Some(&["v5", "v6", "v7", "v8"]),
        "arm64" => Some(&[
            "v8", "v8.0", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9", "v9.0", "v9.1",
            "v9.2", "v9.3", "v9.4", "v9.5",
        ]),
        "amd64" => Some(&["v1", "v2", "v3", "v4"]),
        _ => None,
    }
}

/// Why `p` is not a platform `docker manifest annotate` would write.
fn check_platform(p: &Platform) -> Option<String> {
    if !VALID_OS_ARCH.contains(&(p.os.as_str(), p.architecture.as_str())) {
        let n = p.normalize();
        let hint = if (n.os != p.os || n.architecture != p.architecture)
            && VALID_OS_ARCH.contains(&(n.os.as_str(), n.architecture.as_str()))
        {
            format!("; did you mean {:?}?", format!("{}/{}", n.os, n.architecture))
        } else {
            let arches = VALID_OS_ARCH.iter().filter(|(os, _)| *os == p.os).map(|(_, a)| *a);
            polyarch_oci::platform::closest(&p.architecture, arches)
                .map(|c| format!("; did you mean {c:?}?"))
                .unwrap_or_default()
        };
        return Some(format!("unsupported os/arch combination: {}/{}{hint}", p.os, p.architecture));
    }
    let variant = p.variant.as_deref()?;
    let valid = valid_variants(&p.architecture)?;
    if valid.contains(&variant) {
        return None;
    }
    let trimmed = variant.trim_start_matches(|c: char| c.is_ascii_alphabetic() && c != 'v');
    let hint = if valid.contains(&trimmed) { format!("; did you mean {trimmed:?}?") } else { String::new() };
    Some(format!("unsupported variant {variant:?} for {}/{} (one of {}){hint}", p.os, p.architecture, valid.join(", ")))
}

fn annotate(lists: &ListStore, a: AnnotateArgs) -> Result<u8> {
    let name = parse_tagged(&a.list)?.to_string();
    let mut list = lists.get(&name)?.ok_or_else(|| polyarch_index::Error::ListNotFound { name: name.clone() })?;
    let image_ref = parse_tagged(&a.image)?;
    let image = image_ref.to_string();
    let entry = list
        .entry_mut(&image, image_ref.digest.as_ref())
        .ok_or_else(|| polyarch_index::Error::EntryNotFound { list: name.clone(), image: image.clone() })?;
    let mut p = entry.descriptor.platform.clone().unwrap_or_default();
    if let Some(os) = a.os {
        p.os = os;
    }
    if let Some(arch) = a.arch {
        p.architecture = arch;
    }
    if let Some(v) = a.variant {
        p.variant = Some(v).filter(|v| !v.is_empty());
    }
    if let Some(v) = a.os_version {
        p.os_version = Some(v).filter(|v| !v.is_empty());
    }
    if let Some(f) = a.os_features {
        p.os_features = Some(f).filter(|f| !f.is_empty());
    }
    if let Some(reason) = check_platform(&p) {
        bail!("manifest entry for image {image} in {name} has {reason}");
    }
    if let Some(w) = polyarch_oci::platform::parse_warning(&p.format()) {
        eprintln!("warning: {w}");
    }
    entry.descriptor.platform = Some(p);
    lists.put(&list)?;
    Ok(0)
}

fn list_index(list: &LocalList) -> Result<RawManifest> {
    let all_docker = list.entries.iter().all(|e| e.manifest.media_type() == mt::DOCKER_MANIFEST);
    let mut index = IndexManifest::new(if all_docker { mt::DOCKER_MANIFEST_LIST } else { mt::OCI_INDEX });
    index.manifests = list.entries.iter().map(|e| e.descriptor.clone()).collect();
    Ok(RawManifest::from_index(&index)?)
}

fn verbose_entry(source: &str, desc: &polyarch_oci::Descriptor, m: &RawManifest) -> Result<serde_json::Value> {
    let key = if m.media_type() == mt::DOCKER_MANIFEST { "SchemaV2Manifest" } else { "OCIManifest" };
    let parsed: serde_json::Value = serde_json::from_slice(m.bytes())?;
    let mut v = json!({
        "Ref": source,
        "Descriptor": desc,
        "Raw": base64::engine::general_purpose::STANDARD.encode(m.bytes()),
    });
    v[key] = parsed;
    Ok(v)
}

fn inspect(global: &GlobalArgs, lists: &ListStore, a: InspectArgs) -> Result<u8> {
    let first = parse_tagged(&a.refs[0])?.to_string();
    if let Some(list) = lists.get(&first)? {
        if let Some(image) = a.refs.get(1) {
            let r = parse_tagged(image)?;
            let e = list
                .entries
                .iter()
                .find(|e| e.source == r.to_string() || r.digest.as_ref() == Some(&e.descriptor.digest))
                .ok_or_else(|| polyarch_index::Error::EntryNotFound { list: first.clone(), image: r.to_string() })?;
            if a.verbose {
                crate::outln!("{}", json_indented(&verbose_entry(&e.source, &e.descriptor, &e.manifest)?, b"\t")?)?;
            } else {
                crate::outln!("{}", reindent(e.manifest.bytes(), b"\t")?)?;
            }
            return Ok(0);
        }
        if a.verbose {
            let all = list
                .entries
                .iter()
                .map(|e| verbose_entry(&e.source, &e.descriptor, &e.manifest))
                .collect::<Result<Vec<_>>>()?;
            crate::outln!("{}", json_indented(&all, b"\t")?)?;
        } else {
            crate::outln!("{}", reindent(list_index(&list)?.bytes(), b"   ")?)?;
        }
        return Ok(0);
    }
    if a.refs.len() == 2 {
        bail!("no local manifest list {first}");
    }
    let r = parse_tagged(&a.refs[0])?;
    let client = context::client(global, a.insecure)?;
    let rt = context::runtime()?;
    let m = rt.block_on(client.get_manifest(&r))?;
    if !a.verbose {
        let indent: &[u8] = if m.is_index() { b"   " } else { b"\t" };
        crate::outln!("{}", reindent(m.bytes(), indent)?)?;
        return Ok(0);
    }
    if m.is_index() {
        let children = rt.block_on(publish::load_children(&client, &r, &m))?;
        let descs = m.as_index().map(|i| i.manifests.clone()).unwrap_or_default();
        let all = descs
            .iter()
            .zip(&children)
            .map(|(d, c)| verbose_entry(&c.source.to_string(), d, &c.manifest))
            .collect::<Result<Vec<_>>>()?;
        crate::outln!("{}", json_indented(&all, b"\t")?)?;
    } else {
        let f = rt.block_on(resolve::fetch(&client, &r))?;
        let desc = m.descriptor().with_platform(f.platform);
        crate::outln!("{}", json_indented(&verbose_entry(&r.to_string(), &desc, &m)?, b"\t")?)?;
    }
    Ok(0)
}

fn push(global: &GlobalArgs, lists: &ListStore, a: PushArgs) -> Result<u8> {
    let target = parse_tagged(&a.list)?;
    let name = target.to_string();
    let list = lists.get(&name)?.ok_or_else(|| polyarch_index::Error::ListNotFound { name: name.clone() })?;
    if list.entries.is_empty() {
        bail!("manifest list {name} has no images");
    }
    for e in &list.entries {
        if e.descriptor.platform.as_ref().is_none_or(|p: &Platform| p.os.is_empty() || p.architecture.is_empty()) {
            bail!(
                "{} in {name} has no platform: set one with `polyarch manifest annotate --os .. --arch ..`",
                e.source
            );
        }
    }
    let index = list_index(&list)?;
    let children = list
        .entries
        .iter()
        .map(|e| Ok(Child { source: parse_ref(&e.source)?, manifest: e.manifest.clone() }))
        .collect::<Result<Vec<_>>>()?;
    let client = context::client(global, a.insecure)?;
    let rt = context::runtime()?;
    let digest = rt
        .block_on(publish::publish_index(&client, &index, &children, std::slice::from_ref(&target)))
        .with_context(|| format!("pushing {name}"))?;
    if a.purge {
        lists.remove(&name)?;
    }
    crate::outln!("{digest}")?;
    Ok(0)
}

fn rm(lists: &ListStore, a: RmArgs) -> Result<u8> {
    let mut failed = false;
    for l in &a.lists {
        let name = parse_tagged(l)?.to_string();
        if !lists.remove(&name)? {
            eprintln!("error: no local manifest list {name}");
            failed = true;
        }
    }
    Ok(u8::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(os: &str, arch: &str, variant: Option<&str>) -> Option<String> {
        let p = Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
            ..Default::default()
        };
        check_platform(&p)
    }

    #[test]
    fn platforms_as_docker_validates_them() {
        assert_eq!(check("linux", "amd64", None), None);
        assert_eq!(check("linux", "arm", Some("v7")), None);
        assert_eq!(check("linux", "arm64", Some("v8")), None);
        assert_eq!(check("windows", "amd64", None), None);
        assert_eq!(
            check("linux", "x86_64", None).as_deref(),
            Some("unsupported os/arch combination: linux/x86_64; did you mean \"linux/amd64\"?")
        );
        assert_eq!(
            check("linux", "aarch64", None).as_deref(),
            Some("unsupported os/arch combination: linux/aarch64; did you mean \"linux/arm64\"?")
        );
        assert!(check("linux", "amd46", None).unwrap().ends_with("did you mean \"amd64\"?"));
        assert!(check("windows", "arm64", None).is_some());
        assert!(check("", "amd64", None).is_some());
        assert_eq!(
            check("linux", "arm", Some("armv7")).as_deref(),
            Some("unsupported variant \"armv7\" for linux/arm (one of v5, v6, v7, v8); did you mean \"v7\"?")
        );
        assert!(check("linux", "amd64", Some("v9")).is_some());
        assert_eq!(check("linux", "riscv64", Some("rva22u64")), None);
    }
}
