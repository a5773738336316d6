//! `du` and `prune` of the store and its build cache, as `docker buildx du`
//! and `docker buildx prune` (with the image store's totals of `docker
//! system df` in `du --format json`), and the garbage collection after
//! every build, configured as buildkitd's `[worker.oci]` `gc`,
//! `gckeepstorage`, `reservedSpace`, `maxUsedSpace`, `minFreeSpace` and
//! `[[worker.oci.gcpolicy]]` in polyarch's config file.

use anyhow::{Context as _, Result};
use clap::Args;
use polyarch_builder::prune::{self, CacheRecord};
use polyarch_store::retention::{self, DiskStat, Entry, Filters, Policy};
use polyarch_store::Store;
use serde_json::{json, Value};

use super::images::{emit, human_duration, human_size, open_store, table};
use super::GlobalArgs;
use crate::template::{self, Format};

#[derive(Args)]
pub struct DuArgs {
    /// `table`, `json` or a Go template over the JSON (`{{.ReclaimableBytes}}`,
    /// `{{range .Records}}{{.ID}} {{end}}`).
    #[arg(long, default_value = "table", value_parser = template::format_arg)]
    format: Format,
    /// Every cache record in full (as `docker buildx du --verbose`).
    #[arg(long)]
    verbose: bool,
    /// Only the records that match (`type=regular`, `until=24h`, `id=…`,
    /// `description~=…`, `shared`, `private`); repeatable.
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Accepted for compatibility: prune never asks.
    #[arg(short, long)]
    force: bool,
    /// Records an image in the store shares too (as `--all`: internal data).
    #[arg(short, long)]
    all: bool,
    /// Only the records that match (`until=24h`: unused for 24 hours;
    /// `type=regular|source.local|exec.cachemount|...`); repeatable.
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Keep the most recently used records up to this size (`512MB`).
    #[arg(long, value_name = "SIZE")]
    keep_storage: Option<String>,
    /// Bring the cache under this size (`10GB`, `20%` of the disk).
    #[arg(long, value_name = "SIZE")]
    max_used_space: Option<String>,
    /// Never bring the cache below this size.
    #[arg(long, value_name = "SIZE")]
    reserved_space: Option<String>,
    /// Remove records until the disk has this much free.
    #[arg(long, value_name = "SIZE")]
    min_free_space: Option<String>,
    /// Every removed record in full.
    #[arg(long)]
    verbose: bool,
}

fn filters(list: &[String]) -> Result<Filters> {
    let mut f = Filters::default();
    for s in list {
        f.add(s).with_context(|| format!("--filter {s:?}"))?;
    }
    Ok(f)
}

fn size(flag: &str, v: &Option<String>, disk: DiskStat) -> Result<u64> {
    match v {
        Some(s) => retention::parse_size(s, disk).with_context(|| format!("--{flag}")),
        None => Ok(0),
    }
}

fn disk_of(store: &Store) -> Result<DiskStat> {
    DiskStat::of(store.root()).context("measuring the store's file system")
}

pub fn prune(global: &GlobalArgs, a: PruneArgs) -> Result<u8> {
    let _ = a.force;
    let store = open_store(global)?;
    let disk = disk_of(&store)?;
    let keep = size("keep-storage", &a.keep_storage, disk)?;
    let max = size("max-used-space", &a.max_used_space, disk)?;
    let policy = Policy {
        all: a.all,
        filters: filters(&a.filters)?,
        reserved_space: size("reserved-space", &a.reserved_space, disk)?,
        max_used_space: [max, keep].into_iter().filter(|x| *x > 0).min().unwrap_or(0),
        min_free_space: size("min-free-space", &a.min_free_space, disk)?,
    };
    // Waits for running builds and pulls, so nothing they use goes.
    let gc = store.gc_lock().context("locking the store for pruning")?;
    let pruned = prune::prune(&store, &gc, &[policy], disk, now(), true).context("pruning the build cache")?;
    let stored = polyarch_builder::materialize::present_diff_ids(&store).context("reading the stored images")?;
    let (dirs, unpacked) =
        polyarch_builder::reclaim::prune_layers(store.root(), &stored).context("pruning unpacked layers")?;
    drop(gc);
    let mut out = String::new();
    if a.verbose {
        out.push_str(&verbose_blocks(&pruned.records));
    } else if !pruned.records.is_empty() {
        out.push_str(&record_table(&pruned.records));
    }
    let loose: Vec<_> = pruned.blobs.removed.iter().collect();
    if !loose.is_empty() {
        out.push_str("Deleted blobs:\n");
        for d in loose {
            out.push_str(&format!("deleted: {d}\n"));
        }
        out.push('\n');
    }
    if dirs > 0 {
        out.push_str(&format!("Deleted unpacked layers: {dirs} ({})\n\n", human_size(unpacked)));
    }
    // Cache mounts are no blobs: the sweep does not count them.
    let mounts: u64 =
        pruned.records.iter().filter(|e| e.record_type == retention::RecordType::ExecCachemount).map(|e| e.size).sum();
    let total = pruned.blobs.bytes + unpacked + mounts;
    out.push_str(&format!("Total:\t{}\n", human_size(total)));
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(total)));
    emit(&out)?;
    Ok(0)
}

/// Nanoseconds since the epoch, as cache records' times.
fn now() -> i64 {
    retention::now_nanos()
}

/// A record's time in whole seconds since the epoch.
fn secs(t: i64) -> i64 {
    t.div_euclid(retention::NANOS)
}

fn last_accessed(e: &Entry) -> String {
    e.last_used
        .map(|t| format!("{} ago", human_duration(secs(now().saturating_sub(t)).max(0) as u64)))
        .unwrap_or_default()
}

/// buildx's `ID RECLAIMABLE SIZE LAST ACCESSED` table.
fn record_table(records: &[Entry]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|e| vec![e.id.clone(), (!e.in_use).to_string(), human_size(e.size), last_accessed(e)])
        .collect();
    table(&["ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED"], &rows)
}

/// A key and its value as buildx's tabwriter aligns them (tabs to column 16).
fn field(key: &str, value: impl std::fmt::Display) -> String {
    let tabs = if key.len() < 8 { "\t\t" } else { "\t" };
    format!("{key}{tabs}{value}\n")
}

/// Go's `time.Time` printing of a UTC time: `2025-01-02 03:04:05 +0000 UTC`.
fn go_time(secs: i64) -> String {
    let t = polyarch_builder::config::rfc3339(secs);
    format!("{} +0000 UTC", t.trim_end_matches('Z').replacen('T', " ", 1))
}

/// buildx's `du --verbose` blocks, one per record.
fn verbose_blocks(records: &[Entry]) -> String {
    let mut out = String::new();
    for e in records {
        out.push_str(&field("ID:", &e.id));
        if let Some(c) = e.created {
            out.push_str(&field("Created at:", go_time(secs(c))));
        }
        out.push_str(&field("Mutable:", false));
        out.push_str(&field("Reclaimable:", !e.in_use));
        out.push_str(&field("Shared:", e.shared));
        out.push_str(&field("Size:", human_size(e.size)));
        if !e.description.is_empty() {
            out.push_str(&field("Description:", &e.description));
        }
        out.push_str(&field("Usage count:", e.usage_count));
        if e.last_used.is_some() {
            out.push_str(&field("Last used:", last_accessed(e)));
        }
        out.push_str(&field("Type:", e.record_type.as_str()));
        out.push('\n');
    }
    out
}

fn record_json(e: &Entry) -> Value {
    json!({
        "ID": e.id,
        "Mutable": false,
        "Reclaimable": !e.in_use,
        "Shared": e.shared,
        "Size": e.size,
        "Description": e.description,
        "UsageCount": e.usage_count,
        "CreatedAt": e.created.map(|t| polyarch_builder::config::rfc3339(secs(t))),
        "LastUsedAt": e.last_used.map(|t| polyarch_builder::config::rfc3339(secs(t))),
        "Type": e.record_type.as_str(),
        "InUse": e.in_use,
    })
}

/// buildx's `Shared:`, `Private:`, `Reclaimable:` and `Total:` lines.
fn summary(records: &[Entry]) -> String {
    let sum = |f: &dyn Fn(&Entry) -> bool| records.iter().filter(|e| f(e)).map(|e| e.size).sum::<u64>();
    let shared = sum(&|e| e.shared);
    let mut out = String::new();
    out.push_str(&field("Shared:", human_size(shared)));
    out.push_str(&field("Private:", human_size(sum(&|e| !e.shared))));
    out.push_str(&field("Reclaimable:", human_size(sum(&|e| !e.in_use))));
    out.push_str(&field("Total:", human_size(sum(&|_| true))));
    out
}

pub fn du(global: &GlobalArgs, a: DuArgs) -> Result<u8> {
    let store = open_store(global)?;
    let f = filters(&a.filters)?;
    let cutoff = f.until.map(|d| now().saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
    let records: Vec<Entry> = prune::records(&store)
        .context("reading the build cache")?
        .into_iter()
        .map(|r: CacheRecord| r.entry)
        .filter(|e| f.matches(e) && cutoff.is_none_or(|c| e.last_used.or(e.created).is_none_or(|u| u <= c)))
        .collect();
    if !matches!(a.format, Format::Default) {
        let mut v = super::images::store_usage(&store)?;
        v["Records"] = Value::Array(records.iter().map(record_json).collect());
        match a.format {
            Format::Template { template, table } => emit(&template::render_rows(&template, table, &[v], &[])?)?,
            _ => emit(&format!("{v}\n"))?,
        }
        return Ok(0);
    }
    let mut out = if a.verbose { verbose_blocks(&records) } else { record_table(&records) };
    if !a.verbose {
        out.push('\n');
    }
    out.push_str(&summary(&records));
    emit(&out)?;
    Ok(0)
}

/// The GC policies of the config file: `None` when `[worker.oci] gc =
/// false`, the `[[worker.oci.gcpolicy]]` list when given, else BuildKit's
/// default policies with the configured limits or buildkitd's defaults for
/// the store's disk.
pub fn gc_policies(global: &GlobalArgs, disk: DiskStat) -> Result<Option<Vec<Policy>>> {
    let path = global.config.clone().or_else(polyarch_registry::config::default_path);
    let text = match &path {
        Some(p) if global.config.is_some() || p.exists() => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        _ => String::new(),
    };
    let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    super::gcconfig::policies(&text, disk).with_context(|| format!("{shown}: [worker.oci]"))
}

/// A lease on the store for a whole build (steps, export, tags), so that
/// a prune started meanwhile waits for it; `None` if the store cannot be
/// opened (the build then says why).
pub fn build_lease(global: &GlobalArgs) -> Option<polyarch_store::Lease> {
    Store::open(super::context::data_root(global)).ok()?.lease().ok()
}

/// After a build: applies the GC policies when the store is over a limit
/// (checked by measuring `blobs/` and `cache-mounts/`, without reading any
/// record), unless another build or a prune holds the store. Problems are
/// warnings: the build has succeeded.
pub fn after_build(global: &GlobalArgs) {
    if let Err(e) = collect(global) {
        eprintln!("WARNING: build cache garbage collection: {}", crate::report::Chain(&e));
    }
}

/// The hit log's size past which a build folds it into the records.
const USES_LOG_LIMIT: u64 = 1 << 20;

fn collect(global: &GlobalArgs) -> Result<()> {
    let store = Store::open(super::context::data_root(global)).context("opening the store")?;
    let disk = disk_of(&store)?;
    let Some(policies) = gc_policies(global, disk)? else { return Ok(()) };
    if prune::uses_log_bytes(&store) > USES_LOG_LIMIT {
        if let Some(gc) = store.try_gc_lock()? {
            prune::compact(&store, &gc)?;
        }
    }
    let used = prune::quick_usage(&store);
    let under = |p: &Policy| {
        let keep = retention::keep_bytes(used, disk, p);
        keep != 0 && keep >= used
    };
    if policies.iter().all(under) {
        global.debug(|| format!("gc: {} used, under every policy's limit", human_size(used)));
        return Ok(());
    }
    let Some(gc) = store.try_gc_lock()? else { return Ok(()) };
    let pruned = prune::prune(&store, &gc, &policies, disk, now(), false)?;
    if !pruned.records.is_empty() {
        let stored = polyarch_builder::materialize::present_diff_ids(&store)?;
        polyarch_builder::reclaim::prune_layers(store.root(), &stored)?;
    }
    global
        .debug(|| format!("gc: removed {} record(s), {} freed", pruned.records.len(), human_size(pruned.blobs.bytes)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_align_as_buildx() {
        assert_eq!(field("ID:", "x"), "ID:\t\tx\n");
        assert_eq!(field("Usage count:", 2), "Usage count:\t2\n");
        assert_eq!(field("Private:", "1B"), "Private:\t1B\n");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
