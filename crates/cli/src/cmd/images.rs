//! Images in the local store: `images`, `inspect`, `tag`, `rmi`, with
//! Docker's flags and output layouts (`docker images`, `docker image
//! inspect`, `docker tag`, `docker rmi`); `du` and `prune` are in `cache`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use polyarch_dockerfile::ignore::PatternMatcher;
use polyarch_oci::{Descriptor, Platform, Reference};
use polyarch_store::Store;
use polyarch_transfer::local;
use serde_json::{json, Value};

use super::context::{self, parse_tagged};
use super::output::json_indented;
use super::GlobalArgs;
use crate::template::{self, Format};

/// Docker's column headers for the fields of `polyarch images`.
const IMAGES_HEADERS: &[(&str, &str)] = &[("ID", "IMAGE ID"), ("CreatedSince", "CREATED"), ("CreatedAt", "CREATED AT")];

#[derive(Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// `table`, `json` or a Go template (`{{.Repository}}:{{.Tag}}`,
    /// `table {{.ID}}\t{{.Size}}`), as `docker images --format`.
    #[arg(long, default_value = "table", value_parser = template::format_arg)]
    format: Format,
    /// Show only images of this repository (`busybox`, `busybox:1`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,
    /// Filter as `docker images --filter`: `reference=PATTERN` (`app*`,
    /// `*/me/*:1`), `label=KEY[=VALUE]`, `before=IMAGE`, `since=IMAGE`,
    /// `dangling=true|false` (repeatable; all must hold, values of one key
    /// are alternatives).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Show the digest each name points at (a DIGEST column).
    #[arg(long)]
    digests: bool,
    /// Don't truncate output: full image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Accepted for Docker compatibility: the store keeps no intermediate images.
    #[arg(short, long)]
    all: bool,
}

/// `docker images --filter` terms: a row matches one of the `reference`
/// patterns (if any) and every `label`, `before` and `since` term.
#[derive(Default)]
struct Filters {
    /// Go-style wildcard patterns (`*` never crosses `/`), the one
    /// matcher COPY's wildcards use too.
    reference: Vec<PatternMatcher>,
    label: Vec<(String, Option<String>)>,
    before: Vec<i64>,
    since: Vec<i64>,
    dangling: Option<bool>,
}

impl Filters {
    fn parse(store: &Store, terms: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for t in terms {
            let Some((key, value)) = t.split_once('=') else { bail!("bad format of filter (expected name=value)") };
            match key.trim().to_lowercase().as_str() {
                "reference" => f.reference.push(
                    PatternMatcher::new(&[value]).with_context(|| format!("invalid filter 'reference={value}'"))?,
                ),
                "label" => f.label.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                }),
                k @ ("before" | "since") => {
                    let (name, desc) = lookup(store, value)?;
                    let image = local::image_for(store, &name, &desc, None).ok();
                    let Some(t) = created_of(image.as_ref()).as_deref().and_then(parse_rfc3339) else {
                        bail!("{k}={value}: the image has no creation time")
                    };
                    if k == "before" {
                        f.before.push(t)
                    } else {
                        f.since.push(t)
                    }
                }
                "dangling" => match value.to_lowercase().as_str() {
                    "true" | "1" => f.dangling = Some(true),
                    "false" | "0" => f.dangling = Some(false),
                    _ => bail!("invalid filter 'dangling={value}'"),
                },
                _ => bail!("invalid filter '{key}'"),
            }
        }
        Ok(f)
    }

    fn keeps(&self, r: &Row) -> bool {
        // Every stored image has a name: none is dangling.
        if self.dangling == Some(true) {
            return false;
        }
        // As docker's `FamiliarMatch`: the familiar name, then without its tag.
        let (familiar_name, untagged) = (familiar(&r.name), repo_and_tag(&r.name).0);
        let reference_ok = self.reference.is_empty()
            || self.reference.iter().any(|m| m.matches_exact(&familiar_name) || m.matches_exact(&untagged));
        let label_ok = self.label.iter().all(|(k, v)| match (r.labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        });
        let created = r.created.as_deref().and_then(parse_rfc3339);
        let before_ok = self.before.iter().all(|b| created.is_some_and(|c| c < *b));
        let since_ok = self.since.iter().all(|b| created.is_some_and(|c| c > *b));
        reference_ok && label_ok && before_ok && since_ok
    }
}

#[derive(Args)]
pub struct InspectArgs {
    /// For an index, the platform whose image to show (default: the host's,
    /// else the first one present).
    #[arg(long)]
    platform: Option<String>,
    /// What to inspect, as `docker inspect --type`: only `image` (the
    /// store holds no containers, networks or volumes).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// `json` or a Go template run for each image (`{{.Architecture}}`,
    /// `{{json .Config}}`), as `docker image inspect --format`.
    #[arg(short, long, value_parser = template::format_arg)]
    format: Option<Format>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE")]
    source: String,
    #[arg(value_name = "TARGET_IMAGE")]
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Untag every name of an image given by ID.
    #[arg(short, long)]
    force: bool,
    /// Accepted for Docker compatibility: removing a name never removes
    /// content here; `prune` frees the space.
    #[arg(long = "no-prune")]
    no_prune: bool,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

/// Opens the store under `--root` and takes back what killed polyarch
/// processes left in it (containers, mounts, directories, snapshots, temp
/// files), so that whatever command comes next after a kill cleans up.
pub fn open_store(global: &GlobalArgs) -> Result<Store> {
    open_store_with(global, None)
}

/// [`open_store`], stopping leftover containers with `runtime` (default
/// runc, else crun).
pub fn open_store_with(global: &GlobalArgs, runtime: Option<&str>) -> Result<Store> {
    let root = context::data_root(global);
    let store = Store::open(&root).with_context(|| format!("opening the store at {}", root.display()))?;
    let done = polyarch_builder::reclaim::reclaim(&store, runtime);
    for (path, why) in done.failed {
        eprintln!("warning: cannot remove {} left by a killed polyarch process: {why}", path.display());
    }
    Ok(store)
}

/// The stored names `input` stands for: a name as given, a name as Docker
/// would expand it (`busybox` → `docker.io/library/busybox:latest`), or an
/// image ID (a digest prefix). Every name returned points at the same
/// descriptor.
pub fn lookup_all(store: &Store, input: &str) -> Result<Vec<(String, Descriptor)>> {
    if let Some(d) = store.resolve(input)? {
        return Ok(vec![(input.to_string(), d)]);
    }
    if let Ok(r) = parse_tagged(input) {
        let full = r.to_string();
        if let Some(d) = store.resolve(&full)? {
            return Ok(vec![(full, d)]);
        }
    }
    let by_id = local::find_by_id(store, input)?;
    let digests: BTreeSet<_> = by_id.iter().map(|(_, d)| d.digest.clone()).collect();
    match digests.len() {
        0 => bail!("no such image: {input}"),
        1 => Ok(by_id),
        _ => bail!("image ID {input} is ambiguous: it matches {}", digests.len()),
    }
}

/// The one stored name `input` stands for, and what it points at.
pub fn lookup(store: &Store, input: &str) -> Result<(String, Descriptor)> {
    let mut all = lookup_all(store, input)?;
    Ok(all.remove(0))
}

/// `docker.io/library/busybox:latest` → `busybox:latest`.
pub fn familiar(name: &str) -> String {
    Reference::parse_normalized(name).map(|r| r.familiar_string()).unwrap_or_else(|_| name.to_string())
}

fn repo_and_tag(name: &str) -> (String, String) {
    match Reference::parse_normalized(name) {
        Ok(r) => (r.familiar_name(), r.tag.clone().unwrap_or_else(|| "<none>".to_string())),
        Err(_) => (name.to_string(), "<none>".to_string()),
    }
}

/// `sha256:` stripped, 12 hex digits, as Docker's short image ID.
pub fn short_id(d: &Descriptor) -> String {
    short_id_of(d.digest.hex())
}

/// Docker's `stringid.TruncateID`: an algorithm prefix dropped, then at
/// most 12 characters (`<missing>` stays as it is).
pub fn short_id_of(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// `v` with `prec` significant digits and trailing zeros removed, as Go's `%.<prec>g`.
fn significant(v: f64, prec: i32) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (prec - 1 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn size_with_precision(bytes: u64, prec: i32) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", significant(v, prec), UNITS[i])
}

/// Decimal size with 3 significant digits, as `docker images` (`4.26MB`).
pub fn human_size(bytes: u64) -> String {
    size_with_precision(bytes, 3)
}

/// go-units' `HumanDuration`, as in Docker's "CREATED" column.
pub fn human_duration(secs: u64) -> String {
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as u64;
    match () {
        _ if secs < 1 => "Less than a second".to_string(),
        _ if secs == 1 => "1 second".to_string(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2025-01-01T00:00:00Z`,
/// fractions and offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, sec) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let rest = s.get(19..)?;
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600 + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = polyarch_builder::config::days_from_civil(y, mo, d);
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// "2 weeks ago", or "N/A".
fn created_since(created: Option<&str>) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => ago(t),
        None => "N/A".to_string(),
    }
}

/// "2 weeks ago" for a time in seconds since the epoch.
pub fn ago(t: i64) -> String {
    format!("{} ago", human_duration(now().saturating_sub(t).max(0) as u64))
}

/// Rows aligned like Docker's tabwriter (min width 10, padding 3).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let all: Vec<Vec<String>> = std::iter::once(header).chain(rows.iter().cloned()).collect();
    super::output::columns(&all)
}

struct Row {
    name: String,
    desc: Descriptor,
    /// The image ID: the config digest of a one-platform image.
    id: Descriptor,
    created: Option<String>,
    size: u64,
    platforms: Vec<String>,
    labels: BTreeMap<String, String>,
}

/// The `created` time of an image's config, as written.
fn created_of(img: Option<&local::LocalImage>) -> Option<String> {
    img?.config.extra.get("created").and_then(Value::as_str).map(str::to_string)
}

fn row(store: &Store, name: &str, desc: &Descriptor) -> Result<Row> {
    let img = local::image_for(store, name, desc, None).ok();
    let created = created_of(img.as_ref());
    let labels = img
        .as_ref()
        .and_then(|img| img.config.extra.get("config")?.get("Labels")?.as_object().cloned())
        .map(|m| m.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string()))).collect())
        .unwrap_or_default();
    let platforms = local::present_images(store, name, desc)
        .map(|v| v.iter().map(|(_, p)| p.format()).collect())
        .unwrap_or_default();
    let id = Descriptor::new("", local::image_id(store, desc).unwrap_or_else(|_| desc.digest.clone()), 0);
    Ok(Row {
        name: name.to_string(),
        desc: desc.clone(),
        id,
        created,
        size: local::image_size(store, desc)?,
        platforms,
        labels,
    })
}

fn matches_filter(name: &str, filter: &str) -> bool {
    let Ok(r) = Reference::parse_normalized(name) else { return name == filter };
    let Ok(f) = Reference::parse_normalized(filter) else { return false };
    r.domain == f.domain && r.path == f.path && (f.tag.is_none() || f.tag == r.tag)
}

pub fn images(global: &GlobalArgs, a: ImagesArgs) -> Result<u8> {
    let store = open_store(global)?;
    let filters = Filters::parse(&store, &a.filters)?;
    let mut rows = Vec::new();
    for (name, desc) in store.list()? {
        if a.filter.as_deref().is_some_and(|f| !matches_filter(&name, f)) {
            continue;
        }
        let r = row(&store, &name, &desc).with_context(|| format!("reading image {name}"))?;
        if filters.keeps(&r) {
            rows.push(r);
        }
    }
    let id_of = |r: &Row| if a.no_trunc { r.id.digest.to_string() } else { short_id(&r.id) };
    if a.quiet {
        let mut seen = BTreeSet::new();
        for r in &rows {
            if seen.insert(r.id.digest.clone()) {
                emit(&format!("{}\n", id_of(r)))?;
            }
        }
        return Ok(0);
    }
    match a.format {
        Format::Json => {
            for r in &rows {
                emit(&format!("{}\n", row_json(r, a.no_trunc)))?;
            }
        }
        Format::Template { template, table } => {
            let values: Vec<Value> = rows.iter().map(|r| row_json(r, a.no_trunc)).collect();
            emit(&template::render_rows(&template.with_type("ImageSummary"), table, &values, IMAGES_HEADERS)?)?;
        }
        Format::Default => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let (repo, tag) = repo_and_tag(&r.name);
                    let mut row = vec![repo, tag];
                    if a.digests {
                        row.push(r.desc.digest.to_string());
                    }
                    row.extend([
                        id_of(r),
                        created_since(r.created.as_deref()),
                        human_size(r.size),
                        r.platforms.join(","),
                    ]);
                    row
                })
                .collect();
            let mut header = vec!["REPOSITORY", "TAG"];
            if a.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE", "PLATFORMS"]);
            emit(&table(&header, &body))?;
        }
    }
    Ok(0)
}

/// A row as `docker images --format json` prints it (and templates see it).
fn row_json(r: &Row, no_trunc: bool) -> Value {
    let (repo, tag) = repo_and_tag(&r.name);
    json!({
        "Containers": "N/A",
        "CreatedAt": r.created.clone().unwrap_or_default(),
        "CreatedSince": created_since(r.created.as_deref()),
        "Digest": r.desc.digest.to_string(),
        "ID": if no_trunc { r.id.digest.to_string() } else { short_id(&r.id) },
        "Name": r.name,
        "Platforms": r.platforms,
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": human_size(r.size),
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(r.size),
    })
}

fn inspect_one(store: &Store, input: &str, platform: Option<&Platform>) -> Result<Value> {
    let (name, desc) = lookup(store, input)?;
    let img = local::image_for(store, &name, &desc, platform).with_context(|| format!("inspecting {name}"))?;
    let names: Vec<String> =
        store.list()?.into_iter().filter(|(_, d)| d.digest == desc.digest).map(|(n, _)| n).collect();
    let repo_digests: Vec<String> = names
        .iter()
        .filter_map(|n| Reference::parse_normalized(n).ok())
        .map(|r| format!("{}@{}", r.familiar_name(), desc.digest))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let manifest: Value = serde_json::from_slice(img.manifest.bytes())?;
    let config: Value = serde_json::from_slice(&img.config_bytes)?;
    let platform = img.platform();
    let mut top = desc.clone();
    top.annotations = None;
    let mut v = json!({
        "Id": desc.digest.to_string(),
        "RepoTags": names.iter().map(|n| familiar(n)).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Name": name,
        "Descriptor": top,
        "Created": config.get("created").cloned().unwrap_or(Value::Null),
        "Architecture": platform.architecture,
        "Os": platform.os,
    });
    if let Some(variant) = &platform.variant {
        v["Variant"] = json!(variant);
    }
    v["Size"] = json!(local::image_size(store, &img.descriptor)?);
    v["Platforms"] =
        json!(local::present_images(store, &name, &desc)?.iter().map(|(_, p)| p.format()).collect::<Vec<_>>());
    let mut mdesc = img.descriptor.clone();
    mdesc.annotations = None;
    v["ManifestDescriptor"] = serde_json::to_value(&mdesc)?;
    v["Manifest"] = manifest;
    v["Config"] = config;
    Ok(v)
}

pub fn inspect(global: &GlobalArgs, a: InspectArgs) -> Result<u8> {
    if let Some(kind) = a.kind.as_deref().filter(|k| *k != "image") {
        bail!("--type {kind:?}: polyarch inspects images only (it keeps no containers, networks or volumes)");
    }
    let store = open_store(global)?;
    let platform = a.platform.as_deref().map(|p| Platform::parse(p).map_err(anyhow::Error::from)).transpose()?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for input in &a.images {
        match inspect_one(&store, input, platform.as_ref()) {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e),
        }
    }
    match a.format {
        Some(Format::Template { template, .. }) => {
            let template = template.with_type("ImageInspect");
            // Every image is rendered before anything is printed: an error prints nothing.
            let text = out
                .iter()
                .map(|v| Ok(format!("{}\n", template.execute(&docker_view(v))?)))
                .collect::<Result<String>>()?;
            emit(&text)?;
        }
        _ => emit(&format!("{}\n", json_indented(&out, b"    ")?))?,
    }
    report(errors)
}

/// What `docker image inspect -f` templates read beyond the JSON: the
/// fields docker's type always has (`Variant` empty when there is none),
/// the runtime config's fields (`Env`, `Cmd`, `Labels`, ...) on `.Config`
/// as docker's `.Config` has them, and `.RootFS.Layers`.
fn docker_view(v: &Value) -> Value {
    let mut v = v.clone();
    let Some(o) = v.as_object_mut() else { return v };
    o.entry("Variant").or_insert(json!(""));
    let config = o.get("Config").cloned().unwrap_or(Value::Null);
    for key in ["Author", "Comment"] {
        o.entry(key).or_insert_with(|| config.get(key.to_lowercase()).cloned().unwrap_or(json!("")));
    }
    if let Some(rootfs) = config.get("rootfs") {
        let layers = rootfs.get("diff_ids").cloned().unwrap_or(json!([]));
        o.entry("RootFS")
            .or_insert(json!({"Type": rootfs.get("type").cloned().unwrap_or(json!("layers")), "Layers": layers}));
    }
    if let (Some(Value::Object(runtime)), Some(Value::Object(c))) = (config.get("config").cloned(), o.get_mut("Config"))
    {
        for (k, val) in runtime {
            if !c.keys().any(|existing| existing.eq_ignore_ascii_case(&k)) {
                c.insert(k, val);
            }
        }
    }
    v
}

/// Writes to stdout; a closed pipe (`polyarch images | head`) is not an error.
pub fn emit(s: &str) -> Result<()> {
    let mut out = crate::report::Stdout;
    Ok(out.write_all(s.as_bytes()).and_then(|()| out.flush())?)
}

/// Prints every error; exit 1 if there was one.
fn report(errors: Vec<anyhow::Error>) -> Result<u8> {
    let failed = !errors.is_empty();
    for e in errors {
        eprintln!("error: {}", crate::report::Chain(&e));
    }
    Ok(u8::from(failed))
}

pub fn tag(global: &GlobalArgs, a: TagArgs) -> Result<u8> {
    let store = open_store(global)?;
    // The new name is checked first, as docker's client does.
    let target = parse_tagged(&a.target)?.to_string();
    let (_, desc) = lookup(&store, &a.source)?;
    let entry = Descriptor::new(desc.media_type.clone(), desc.digest.clone(), desc.size);
    store.tag(&target, &entry).with_context(|| format!("tagging {} as {target}", a.source))?;
    Ok(0)
}

pub fn rmi(global: &GlobalArgs, a: RmiArgs) -> Result<u8> {
    let store = open_store(global)?;
    let mut errors = Vec::new();
    for input in &a.images {
        if let Err(e) = rmi_one(&store, input, a.force) {
            errors.push(e);
        }
    }
    report(errors)
}

/// Untags a name, or every name of an image given by ID (with `force`
/// when there are several, as `docker rmi` asks).
fn rmi_one(store: &Store, input: &str, force: bool) -> Result<()> {
    let names = match lookup_by_name(store, input)? {
        Some(n) => vec![n],
        None => {
            let (_, desc) = lookup(store, input)?;
            store.list()?.into_iter().filter(|(_, d)| d.digest == desc.digest).map(|(n, _)| n).collect()
        }
    };
    if names.len() > 1 && !force {
        bail!(
            "unable to remove {input} (use --force): it is referenced by {} names: {}",
            names.len(),
            names.iter().map(|n| familiar(n)).collect::<Vec<_>>().join(", ")
        );
    }
    for n in names {
        store.untag(&n).with_context(|| format!("removing {n}"))?;
        crate::outln!("Untagged: {}", familiar(&n))?;
    }
    Ok(())
}

/// The name `input` stands for as a name (not an ID), if stored.
fn lookup_by_name(store: &Store, input: &str) -> Result<Option<String>> {
    if store.resolve(input)?.is_some() {
        return Ok(Some(input.to_string()));
    }
    match parse_tagged(input) {
        Ok(r) if store.resolve(&r.to_string())?.is_some() => Ok(Some(r.to_string())),
        _ => Ok(None),
    }
}

/// The image store's totals (blobs, temp files, unpacked layers, run
/// snapshots), as `du --format json` gives them.
pub fn store_usage(store: &Store) -> Result<Value> {
    let du = store.du().context("measuring the store")?;
    let images = store.list()?.len();
    let stored = polyarch_builder::materialize::stored_diff_ids(store).context("reading the stored images")?;
    let snaps = polyarch_builder::reclaim::snapshot_usage(store.root(), &stored);
    // Everything else on disk: state of running work, temp directories,
    // cache mounts, what a killed process left; none of it is an image.
    let other = du.total_bytes.saturating_sub(du.bytes + du.ingest_bytes + snaps.layer_bytes + snaps.bytes);
    Ok(json!({
        "Images": images,
        "Blobs": du.blobs,
        "Bytes": du.bytes,
        "ReferencedBlobs": du.referenced_blobs,
        "ReferencedBytes": du.referenced_bytes,
        "ReclaimableBytes": du.reclaimable_bytes(),
        "TempFiles": du.ingest_files,
        "TempBytes": du.ingest_bytes,
        "UnpackedLayers": snaps.layers,
        "UnpackedBytes": snaps.layer_bytes,
        "UnpackedReclaimableBytes": snaps.unused_layer_bytes,
        "RunSnapshots": snaps.snapshots,
        "RunSnapshotBytes": snaps.bytes,
        "RunSnapshotReclaimableBytes": snaps.bytes,
        "OtherBytes": other,
        "TotalBytes": du.total_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_patterns_match_as_gos_path_match() {
        let m = |p: &str, n: &str| PatternMatcher::new(&[p]).is_ok_and(|m| m.matches_exact(n));
        assert!(m("busybox", "busybox"));
        assert!(m("busy*", "busybox"));
        assert!(m("*/me/*", "127.0.0.1:5400/me/app"));
        assert!(!m("*", "me/app"), "* does not cross /");
        assert!(m("app:?", "app:1"));
        // Go negates a class with `^` only: `!` is a member.
        assert!(m("app:[0-9]", "app:7") && !m("app:[^0-9]", "app:7") && m("app:[^a]", "app:b"));
        assert!(m("app:[!0-9]", "app:!") && m("app:[!0-9]", "app:7"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(!m("app", "app:1") && !m("[", "x"));
    }

    #[test]
    fn sizes_as_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(2_000_000), "2MB");
        assert_eq!(human_size(1_500), "1.5kB");
    }

    #[test]
    fn durations_as_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(100 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-01-01T00:00:00Z"), Some(1_735_689_600));
        assert_eq!(parse_rfc3339("2025-01-01T01:00:00.5+01:00"), Some(1_735_689_600));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn table_layout() {
        let t = table(&["A", "BB"], &[vec!["x".into(), "y".into()]]);
        assert_eq!(t, "A         BB\nx         y\n");
    }
}
