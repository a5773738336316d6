//! The garbage collection settings of polyarch's config file, in
//! buildkitd.toml's shape:
//!
//! ```toml
//! [worker.oci]
//! gc = true                  # collect after every build (default)
//! gckeepstorage = "10GB"     # cap of the cache (BuildKit's older keepBytes)
//! reservedSpace = "10%"      # never collect below this
//! maxUsedSpace = "60%"       # bring the cache under this
//! minFreeSpace = "20%"       # or until the disk has this much free
//!
//! [[worker.oci.gcpolicy]]    # replaces the default policies
//! all = false
//! filters = ["type==source.local"]
//! keepDuration = "48h"
//! maxUsedSpace = "512MB"
//! ```
//!
//! Sizes are bytes or strings with units (`512MB`, `1GiB`) or a share of
//! the store's disk (`10%`); durations are seconds or Go durations (`48h`).

use anyhow::{bail, Context as _, Result};
use polyarch_store::retention::{self, DiskStat, Filters, Policy};
use toml::Value;

/// The policies `text` (the config file, maybe empty) sets; `None` when GC
/// is off.
pub fn policies(text: &str, disk: DiskStat) -> Result<Option<Vec<Policy>>> {
    let doc: toml::Table = toml::from_str(text).context("invalid TOML")?;
    let oci = doc.get("worker").and_then(|w| w.get("oci")).cloned().unwrap_or(Value::Table(Default::default()));
    let Value::Table(oci) = oci else { bail!("[worker.oci] is not a table") };
    if let Some(gc) = oci.get("gc") {
        match gc.as_bool() {
            Some(false) => return Ok(None),
            Some(true) => {}
            None => bail!("gc = {gc}: expected true or false"),
        }
    }
    if let Some(list) = oci.get("gcpolicy") {
        let Some(list) = list.as_array() else { bail!("gcpolicy: expected [[worker.oci.gcpolicy]] tables") };
        return list
            .iter()
            .enumerate()
            .map(|(i, p)| policy(p, disk).with_context(|| format!("gcpolicy #{}", i + 1)))
            .collect::<Result<Vec<_>>>()
            .map(Some);
    }
    let mut limits = Policy {
        reserved_space: size(&oci, "reservedSpace", disk)?.unwrap_or(0),
        max_used_space: size(&oci, "maxUsedSpace", disk)?.or(size(&oci, "gckeepstorage", disk)?).unwrap_or(0),
        min_free_space: size(&oci, "minFreeSpace", disk)?.unwrap_or(0),
        ..Policy::default()
    };
    if limits == Policy::default() {
        limits = retention::default_limits(disk);
    }
    Ok(Some(retention::default_policies(&limits)))
}

fn policy(v: &Value, disk: DiskStat) -> Result<Policy> {
    let Some(t) = v.as_table() else { bail!("expected a table") };
    let mut filters = Filters::default();
    for f in t.get("filters").and_then(Value::as_array).into_iter().flatten() {
        let Some(s) = f.as_str() else { bail!("filters: {f} is not a string") };
        filters.add(s).with_context(|| format!("filters: {s:?}"))?;
    }
    if let Some(d) = t.get("keepDuration") {
        filters.until = Some(match d {
            Value::Integer(n) if *n >= 0 => std::time::Duration::from_secs(*n as u64),
            Value::String(s) => retention::parse_duration(s).context("keepDuration")?,
            _ => bail!("keepDuration = {d}: expected seconds or a duration such as \"48h\""),
        });
    }
    Ok(Policy {
        all: t.get("all").and_then(Value::as_bool).unwrap_or(false),
        filters,
        reserved_space: size(t, "reservedSpace", disk)?.unwrap_or(0),
        max_used_space: size(t, "maxUsedSpace", disk)?.or(size(t, "keepBytes", disk)?).unwrap_or(0),
        min_free_space: size(t, "minFreeSpace", disk)?.unwrap_or(0),
    })
}

fn size(t: &toml::Table, key: &str, disk: DiskStat) -> Result<Option<u64>> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::Integer(n)) if *n >= 0 => Ok(Some(*n as u64)),
        Some(Value::String(s)) => Ok(Some(retention::parse_size(s, disk).with_context(|| key.to_string())?)),
        Some(v) => bail!("{key} = {v}: expected bytes or a size such as \"10GB\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: DiskStat = DiskStat { total: 100_000_000_000, free: 50_000_000_000 };

    #[test]
    fn defaults_and_limits() {
        let p = policies("", DISK).unwrap().unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[3].reserved_space, 10_000_000_000);
        assert_eq!(p[3].max_used_space, 60_000_000_000);
        let p = policies("[worker.oci]\ngckeepstorage = \"1MB\"\n", DISK).unwrap().unwrap();
        assert_eq!((p[2].max_used_space, p[2].reserved_space), (1_000_000, 0));
        assert!(policies("[worker.oci]\ngc = false\n", DISK).unwrap().is_none());
        let p = policies("[[worker.oci.gcpolicy]]\nall = true\nkeepDuration = 3600\nkeepBytes = \"10%\"\n", DISK)
            .unwrap()
            .unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].all);
        assert_eq!(p[0].max_used_space, 10_000_000_000);
        assert_eq!(p[0].filters.until, Some(std::time::Duration::from_secs(3600)));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = format!("{:#}", policies("[worker.oci]\ngckeepstorage = \"lots\"\n", DISK).unwrap_err());
        assert!(err.contains("gckeepstorage") && err.contains("\"lots\""), "{err}");
        let err = format!("{:#}", policies("[[worker.oci.gcpolicy]]\nfilters = [\"type==nope\"]\n", DISK).unwrap_err());
        assert!(err.contains("gcpolicy #1") && err.contains("type==nope"), "{err}");
        assert!(policies("[worker.oci]\ngc = 3\n", DISK).is_err());
    }
}
