//! Which build cache records a prune or a garbage collection removes, as
//! BuildKit's cache manager chooses them (bk/cache/manager.go `prune`,
//! bk/cmd/buildkitd/config/gcpolicy.go): filters (`type==regular`,
//! `id==…`, `description~=…`, `inuse`, `shared`, `private`), a keep
//! duration (`until`), and a size to bring the cache under, computed from
//! `reservedSpace`, `maxUsedSpace` and `minFreeSpace` (or the older
//! `keepBytes`/`--keep-storage`). Records to free go oldest-used first.
//!
//! This is selection only: the caller lists its records and removes what
//! [`select`] returns (files before metadata), under [`crate::Store::gc_lock`].

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// BuildKit's record types (`client.UsageRecordType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    /// A step's result.
    Regular,
    /// A build context.
    SourceLocal,
    /// A `RUN --mount=type=cache` directory.
    ExecCachemount,
    /// A git checkout.
    SourceGitCheckout,
    /// Often-used internal data.
    Frequent,
    /// Internal data.
    Internal,
    /// A frontend's image.
    Frontend,
}

impl RecordType {
    const ALL: [RecordType; 7] = [
        RecordType::Regular,
        RecordType::SourceLocal,
        RecordType::ExecCachemount,
        RecordType::SourceGitCheckout,
        RecordType::Frequent,
        RecordType::Internal,
        RecordType::Frontend,
    ];

    /// The name buildx prints and filters take (`exec.cachemount`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Regular => "regular",
            RecordType::SourceLocal => "source.local",
            RecordType::ExecCachemount => "exec.cachemount",
            RecordType::SourceGitCheckout => "source.git.checkout",
            RecordType::Frequent => "frequent",
            RecordType::Internal => "internal",
            RecordType::Frontend => "frontend",
        }
    }

    /// Parses a type name.
    pub fn parse(s: &str) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Nanoseconds in a second: [`Entry`] times are nanoseconds since the epoch.
pub const NANOS: i64 = 1_000_000_000;

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One cache record as a prune sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its ID (as `du` prints it).
    pub id: String,
    /// Bytes removing it frees (when not shared).
    pub size: u64,
    /// When it was made (nanoseconds since the epoch: records made or used
    /// within one second still have an order).
    pub created: Option<i64>,
    /// When a build last used it (nanoseconds since the epoch).
    pub last_used: Option<i64>,
    /// How many builds used it.
    pub usage_count: u64,
    /// Its type.
    pub record_type: RecordType,
    /// Whether a stored image holds its content too (removing it frees nothing).
    pub shared: bool,
    /// Whether a running build uses it (never removed).
    pub in_use: bool,
    /// What made it (`[stage-0 2/3] RUN make`).
    pub description: String,
}

/// One filter term: `key==value`, `key!=value`, `key~=value` or a bare flag.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    key: String,
    op: Op,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Contains,
    Flag,
}

/// The filters of one prune: `--filter` values and a policy's `filters`.
/// Terms on the same key are alternatives; different keys must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    terms: Vec<Term>,
    /// `until=DURATION`: only records unused for at least this long.
    pub until: Option<Duration>,
}

impl Filters {
    /// Adds one filter (`until=24h`, `type=regular`, `type==exec.cachemount`,
    /// `id=abc`, `description~=apt`, `inuse`, `shared`, `private`); several
    /// comma-separated terms may come in one string.
    pub fn add(&mut self, filter: &str) -> Result<()> {
        for part in filter.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            self.add_term(part)?;
        }
        Ok(())
    }

    fn add_term(&mut self, part: &str) -> Result<()> {
        let bad = |reason| Error::InvalidPolicy { what: "filter", input: part.to_string(), reason };
        let (key, op, value) = if let Some((k, v)) = part.split_once("~=") {
            (k, Op::Contains, v)
        } else if let Some((k, v)) = part.split_once("!=") {
            (k, Op::Ne, v)
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            (k, Op::Eq, v)
        } else {
            (part, Op::Flag, "")
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        match (key.as_str(), op) {
            ("until", Op::Eq) => self.until = Some(parse_duration(&value)?),
            ("type", Op::Eq | Op::Ne) if RecordType::parse(&value).is_none() => {
                return Err(bad("the types are regular, source.local, exec.cachemount, source.git.checkout, frequent, internal and frontend"))
            }
            ("type" | "id" | "description", Op::Eq | Op::Ne | Op::Contains) => {}
            ("inuse" | "shared" | "private" | "mutable" | "immutable", Op::Flag) => {}
            _ => return Err(bad("expected until=, type=, id=, description=, inuse, shared or private")),
        }
        if key != "until" {
            self.terms.push(Term { key, op, value });
        }
        Ok(())
    }

    /// Whether `e` passes the filters (`until` aside).
    pub fn matches(&self, e: &Entry) -> bool {
        let mut keys: Vec<&str> = self.terms.iter().map(|t| t.key.as_str()).collect();
        keys.dedup();
        keys.iter().all(|k| self.terms.iter().filter(|t| t.key == *k).any(|t| term_matches(t, e)))
    }
}

fn term_matches(t: &Term, e: &Entry) -> bool {
    let field = match t.key.as_str() {
        "type" => e.record_type.as_str(),
        "id" => e.id.as_str(),
        "description" => e.description.as_str(),
        "inuse" => return e.in_use,
        "shared" => return e.shared,
        "private" => return !e.shared,
        "mutable" => return false,
        _ => return true,
    };
    match t.op {
        Op::Eq if t.key == "id" => field.starts_with(&t.value),
        Op::Eq => field == t.value,
        Op::Ne => field != t.value,
        Op::Contains => field.contains(&t.value),
        Op::Flag => true,
    }
}

/// What one prune (or one GC policy) removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Shared and internal records too (`--all`).
    pub all: bool,
    /// Filters and the keep duration.
    pub filters: Filters,
    /// Never bring the cache below this (`reservedSpace`, `--reserved-space`).
    pub reserved_space: u64,
    /// Bring the cache under this (`maxUsedSpace`, `--max-used-space`;
    /// `keepBytes`, `gckeepstorage`, `--keep-storage`).
    pub max_used_space: u64,
    /// Free records until the disk has this much free (`minFreeSpace`).
    pub min_free_space: u64,
}

/// The file system the cache is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStat {
    /// Its size in bytes.
    pub total: u64,
    /// Bytes free.
    pub free: u64,
}

impl DiskStat {
    /// The file system holding `path`.
    pub fn of(path: &Path) -> Result<DiskStat> {
        let st = rustix::fs::statvfs(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into() })?;
        Ok(DiskStat { total: st.f_blocks * st.f_frsize, free: st.f_bavail * st.f_frsize })
    }
}

/// The size a policy brings the cache's `total` under, as BuildKit's
/// `calculateKeepBytes`; 0 means no size limit.
pub fn keep_bytes(total: u64, disk: DiskStat, p: &Policy) -> u64 {
    if p.max_used_space == 0 && p.min_free_space == 0 {
        return 0;
    }
    let mut keep = p.max_used_space;
    if let Some(excess) = p.min_free_space.checked_sub(disk.free).filter(|e| *e > 0) {
        let room = total.saturating_sub(excess);
        keep = if keep == 0 { room } else { keep.min(room) };
    }
    // 0 here would mean "no limit": keep one byte instead.
    keep.max(p.reserved_space).max(1)
}

/// The indexes of the `entries` that `policy` removes, at `now`
/// (nanoseconds since the epoch): records in use never; shared and internal ones only
/// with `all`; those used within `until` never; with a size limit, the
/// least recently used (then least used) first, until the rest fit.
pub fn select(entries: &[Entry], policy: &Policy, now: i64, disk: DiskStat) -> Vec<usize> {
    let cutoff = policy.filters.until.map(|d| now.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
    let internal = |e: &Entry| matches!(e.record_type, RecordType::Internal | RecordType::Frontend);
    let mut candidates: Vec<usize> = (0..entries.len())
        .filter(|&i| {
            let e = &entries[i];
            !e.in_use
                && (policy.all || !(e.shared || internal(e)))
                && policy.filters.matches(e)
                && match (cutoff, e.last_used.or(e.created)) {
                    (Some(c), Some(used)) => used <= c,
                    _ => true,
                }
        })
        .collect();
    let total: u64 = entries.iter().filter(|e| policy.all || !e.shared).map(|e| e.size).sum();
    let keep = keep_bytes(total, disk, policy);
    if keep == 0 {
        return candidates;
    }
    candidates
        .sort_by_key(|&i| (entries[i].last_used.or(entries[i].created).unwrap_or(i64::MIN), entries[i].usage_count));
    let mut left = total;
    let mut out = Vec::new();
    for i in candidates {
        if left <= keep {
            break;
        }
        left = left.saturating_sub(entries[i].size);
        out.push(i);
    }
    out
}

/// BuildKit's default GC policies (`DefaultGCPolicy`) for a cache limited
/// to `keep` bytes: reproducible data (contexts, cache mounts, checkouts)
/// unused for 48 hours once it passes 512 MB, anything unused for 60 days,
/// then unshared records, then everything, down to `keep`.
pub fn default_policies(keep: &Policy) -> Vec<Policy> {
    let mut reproducible = Filters::default();
    for t in ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"] {
        // The terms are valid by construction.
        let _ = reproducible.add(t);
    }
    reproducible.until = Some(Duration::from_secs(48 * 3600));
    let sized = |all| Policy { all, filters: Filters::default(), ..keep.clone() };
    vec![
        Policy { filters: reproducible, max_used_space: 512_000_000, ..Policy::default() },
        Policy {
            filters: Filters { until: Some(Duration::from_secs(60 * 86400)), ..Filters::default() },
            ..sized(false)
        },
        sized(false),
        sized(true),
    ]
}

/// buildkitd's default limits for a disk (`DetectDefaultGCCap`): reserve
/// 10% of it (at most 10 GB), use at most 60% (at most 100 GB), keep 20% free.
pub fn default_limits(disk: DiskStat) -> Policy {
    Policy {
        reserved_space: (disk.total / 10).min(10_000_000_000),
        max_used_space: (disk.total / 10 * 6).min(100_000_000_000),
        min_free_space: disk.total / 5,
        ..Policy::default()
    }
}

/// Parses a size as buildx and buildkitd do: bytes, or with a unit `kB`,
/// `MB`, `GB`, `TB` (powers of 1000), `KiB`, `MiB`, `GiB`, `TiB` (of 1024),
/// `b`/`k`/`m`/`g` as docker's `RAMInBytes` (of 1024); a percentage of
/// `disk` with `%`.
pub fn parse_size(input: &str, disk: DiskStat) -> Result<u64> {
    let bad = |reason| Error::InvalidPolicy { what: "size", input: input.to_string(), reason };
    let s = input.trim();
    if let Some(p) = s.strip_suffix('%') {
        let pct: f64 = p.trim().parse().map_err(|_| bad("expected a number before %"))?;
        if !(0.0..=100.0).contains(&pct) {
            return Err(bad("a percentage is between 0 and 100"));
        }
        return Ok((disk.total as f64 * pct / 100.0) as u64);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad("expected a number of bytes, such as 512MB or 10GB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        _ => return Err(bad("unknown unit: use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB")),
    };
    Ok((n * mult) as u64)
}

/// Parses a duration as Go's `time.ParseDuration` (`24h`, `1h30m`, `90s`,
/// `500ms`), plus days (`7d`) and bare seconds, as buildkitd's `keepDuration`.
pub fn parse_duration(input: &str) -> Result<Duration> {
    let bad = |reason| Error::InvalidPolicy { what: "duration", input: input.to_string(), reason };
    let s = input.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad("expected a duration such as 24h or 90m"));
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().map_err(|_| bad("expected a duration such as 24h or 90m"))?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad("units are ns, us, ms, s, m, h and d")),
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, size: u64, last_used: i64) -> Entry {
        Entry {
            id: id.into(),
            size,
            created: Some((last_used - 10) * NANOS),
            last_used: Some(last_used * NANOS),
            usage_count: 1,
            record_type: RecordType::Regular,
            shared: false,
            in_use: false,
            description: format!("RUN {id}"),
        }
    }

    fn ids(entries: &[Entry], picked: Vec<usize>) -> Vec<&str> {
        let mut v: Vec<&str> = picked.into_iter().map(|i| entries[i].id.as_str()).collect();
        v.sort();
        v
    }

    const NOW: i64 = 1_000_000;
    const DISK: DiskStat = DiskStat { total: 1 << 40, free: 1 << 39 };

    #[test]
    fn until_keeps_what_was_used_recently() {
        let e = vec![entry("old", 10, NOW - 3 * 86400), entry("new", 10, NOW - 60), entry("day", 10, NOW - 86400)];
        let mut p = Policy::default();
        p.filters.add("until=24h").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["day", "old"]);
        p.filters.add("until=48h").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["old"]);
        assert_eq!(ids(&e, select(&e, &Policy::default(), NOW * NANOS, DISK)), ["day", "new", "old"]);
    }

    #[test]
    fn keep_storage_keeps_the_most_recently_used() {
        let e = vec![
            entry("a", 100, NOW - 400),
            entry("b", 100, NOW - 300),
            entry("c", 100, NOW - 200),
            entry("d", 100, NOW - 100),
        ];
        let p = Policy { max_used_space: 250, ..Policy::default() };
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["a", "b"]);
        let p = Policy { max_used_space: 400, ..Policy::default() };
        assert!(select(&e, &p, NOW * NANOS, DISK).is_empty(), "under the limit nothing goes");
        // Reserved space is a floor under min-free-space.
        let full = DiskStat { total: 1000, free: 0 };
        let p = Policy { min_free_space: 1000, reserved_space: 200, ..Policy::default() };
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, full)), ["a", "b"]);
        // Equal last use: the less used goes first.
        let mut e = vec![entry("x", 100, NOW), entry("y", 100, NOW)];
        e[0].usage_count = 5;
        let p = Policy { max_used_space: 150, ..Policy::default() };
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["y"]);
    }

    #[test]
    fn type_filters_and_shared_records() {
        let mut e = vec![entry("run", 1, NOW), entry("mount", 1, NOW), entry("img", 1, NOW), entry("busy", 1, NOW)];
        e[1].record_type = RecordType::ExecCachemount;
        e[2].shared = true;
        e[3].in_use = true;
        let mut p = Policy::default();
        p.filters.add("type=exec.cachemount").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["mount"]);
        let mut p = Policy::default();
        p.filters.add("type==regular,type==exec.cachemount").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["mount", "run"], "terms on one key are alternatives");
        p.filters.add("description~=mou").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["mount"], "keys combine");
        assert_eq!(
            ids(&e, select(&e, &Policy::default(), NOW * NANOS, DISK)),
            ["mount", "run"],
            "shared kept without all"
        );
        let all = Policy { all: true, ..Policy::default() };
        assert_eq!(ids(&e, select(&e, &all, NOW * NANOS, DISK)), ["img", "mount", "run"], "in use never goes");
        let mut p = Policy::default();
        p.filters.add("type!=regular").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["mount"]);
        let mut p = Policy::default();
        p.filters.add("id=ru").unwrap();
        assert_eq!(ids(&e, select(&e, &p, NOW * NANOS, DISK)), ["run"]);
    }

    #[test]
    fn bad_filters_sizes_and_durations_are_named() {
        let mut f = Filters::default();
        let err = f.add("type=bogus").unwrap_err().to_string();
        assert!(err.contains("\"type=bogus\"") && err.contains("exec.cachemount"), "{err}");
        assert!(f.add("colour=red").unwrap_err().to_string().contains("colour=red"));
        assert!(f.add("until=soon").unwrap_err().to_string().contains("duration \"soon\""));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("120").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_size("512MB", DISK).unwrap(), 512_000_000);
        assert_eq!(parse_size("1GiB", DISK).unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5kB", DISK).unwrap(), 1500);
        assert_eq!(parse_size("10%", DiskStat { total: 1000, free: 0 }).unwrap(), 100);
        assert!(parse_size("ten", DISK).unwrap_err().to_string().contains("size \"ten\""));
        assert!(parse_size("5XB", DISK).is_err());
    }

    #[test]
    fn default_policies_as_buildkitd() {
        let limits = default_limits(DiskStat { total: 1_000_000_000_000, free: 0 });
        assert_eq!(limits.reserved_space, 10_000_000_000);
        assert_eq!(limits.max_used_space, 100_000_000_000);
        let small = default_limits(DiskStat { total: 50_000_000_000, free: 0 });
        assert_eq!((small.reserved_space, small.max_used_space), (5_000_000_000, 30_000_000_000));
        let p = default_policies(&limits);
        assert_eq!(p.len(), 4);
        assert!(!p[0].all && p[3].all);
        assert_eq!(p[1].filters.until, Some(Duration::from_secs(60 * 86400)));
        let mut m = entry("m", 1, NOW - 3 * 86400);
        m.record_type = RecordType::SourceLocal;
        assert!(p[0].filters.matches(&m) && !p[0].filters.matches(&entry("r", 1, NOW)));
    }
}
