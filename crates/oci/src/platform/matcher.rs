//! Matching and ranking platforms, as containerd/platforms `compare.go`
//! (`Only`, `OnlyStrict`, `Ordered`, `Any`, `All`) and the Windows OS
//! version rules of `platform_windows_compat.go`.

use std::cmp::Ordering;

use super::Platform;

/// A Windows version `major.minor.build`, as containerd reads it from an
/// OS version prefix; all zero when it cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct WindowsVersion {
    major: u8,
    minor: u8,
    build: u16,
}

/// Windows Server 2022 (ltsc2022).
const V21H2_SERVER: u16 = 20348;

/// Stable-ABI LTSC releases, ascending.
const COMPAT_LTSC_RELEASES: &[u16] = &[V21H2_SERVER];

impl WindowsVersion {
    fn parse(v: &str) -> WindowsVersion {
        if v.matches('.').count() < 2 {
            return WindowsVersion::default();
        }
        let mut it = v.splitn(4, '.');
        let (major, minor, build) = (it.next(), it.next(), it.next());
        let num = |s: Option<&str>| {
            s.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse::<u64>().ok())
        };
        match (num(major), num(minor), num(build)) {
            (Some(major), Some(minor), Some(build)) => {
                match (u8::try_from(major), u8::try_from(minor), u16::try_from(build)) {
                    (Ok(major), Ok(minor), Ok(build)) => WindowsVersion { major, minor, build },
                    _ => WindowsVersion::default(),
                }
            }
            _ => WindowsVersion::default(),
        }
    }

    fn is_empty(&self) -> bool {
        *self == WindowsVersion::default()
    }

    /// Whether a container of version `ctr` runs on a host of version `self`.
    fn runs(&self, ctr: &WindowsVersion) -> bool {
        if self.major != ctr.major || self.minor != ctr.minor {
            return false;
        }
        if self.build < V21H2_SERVER {
            return self.build == ctr.build;
        }
        let supported = COMPAT_LTSC_RELEASES.iter().rev().find(|&&r| self.build >= r).copied().unwrap_or(0);
        ctr.build >= supported && ctr.build <= self.build
    }
}

/// containerd's `NewMatcher`: one normalised platform, matched on OS,
/// architecture and variant; candidates' OS features must be a subset of
/// its own. For Windows, OS versions must be compatible and the `win32k`
/// feature is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Single {
    platform: Platform,
    windows: Option<WindowsVersion>,
}

impl Single {
    fn new(p: &Platform) -> Single {
        let windows = (p.os == "windows").then(|| WindowsVersion::parse(p.os_version_str()));
        Single { platform: p.normalize(), windows }
    }

    fn matches(&self, candidate: &Platform) -> bool {
        let mut candidate = candidate.clone();
        if self.windows.is_some() {
            if let Some(f) = candidate.os_features.as_mut() {
                f.retain(|f| f != "win32k");
            }
        }
        let n = candidate.normalize();
        let m = &self.platform;
        if m.os != n.os || m.architecture != n.architecture || m.variant_str() != n.variant_str() {
            return false;
        }
        if let Some(host) = &self.windows {
            let v = candidate.os_version_str();
            if !(host.is_empty() || v.is_empty() || host.runs(&WindowsVersion::parse(v))) {
                return false;
            }
        }
        features_subset(n.os_features_slice(), m.os_features_slice())
    }
}

/// Whether the sorted `want` is a subset of the sorted `have`.
fn features_subset(want: &[String], have: &[String]) -> bool {
    if want.is_empty() {
        return true;
    }
    if have.len() < want.len() {
        return false;
    }
    let mut j = 0;
    for feature in want {
        let mut found = false;
        while j < have.len() {
            if *feature == have[j] {
                found = true;
                j += 1;
                break;
            }
            if *feature < have[j] {
                return false;
            }
            j += 1;
        }
        if !found {
            return false;
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ordered(Vec<Single>),
    Any(Vec<Single>),
    All,
}

/// containerd's `MatchComparer`: decides which platforms are acceptable
/// and which of two is preferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    kind: Kind,
}

impl Matcher {
    /// containerd's `Ordered`: matches any of `platforms`, preferring them
    /// in the order given.
    pub fn ordered(platforms: &[Platform]) -> Matcher {
        Matcher { kind: Kind::Ordered(platforms.iter().map(Single::new).collect()) }
    }

    /// containerd's `Any`: matches any of `platforms`, with no preference
    /// between them.
    pub fn any(platforms: &[Platform]) -> Matcher {
        Matcher { kind: Kind::Any(platforms.iter().map(Single::new).collect()) }
    }

    /// containerd's `All`: matches every platform, with no preference.
    pub fn all() -> Matcher {
        Matcher { kind: Kind::All }
    }

    /// Whether `p` is acceptable.
    pub fn matches(&self, p: &Platform) -> bool {
        match &self.kind {
            Kind::Ordered(ms) | Kind::Any(ms) => ms.iter().any(|m| m.matches(p)),
            Kind::All => true,
        }
    }

    /// containerd's `Less`: whether `a` is preferred over `b`.
    pub fn less(&self, a: &Platform, b: &Platform) -> bool {
        match &self.kind {
            Kind::Ordered(ms) => ordered_less(ms, a, b),
            Kind::Any(ms) => any_less(ms, a, b),
            Kind::All => false,
        }
    }

    /// The ordering [`Matcher::less`] induces, for sorting best first.
    pub fn compare(&self, a: &Platform, b: &Platform) -> Ordering {
        if self.less(a, b) {
            Ordering::Less
        } else if self.less(b, a) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }

    /// Sorts `platforms` best first (stably).
    pub fn sort(&self, platforms: &mut [Platform]) {
        platforms.sort_by(|a, b| self.compare(a, b));
    }

    /// The acceptable platforms among `candidates`, best first.
    pub fn filter_sorted(&self, candidates: &[Platform]) -> Vec<Platform> {
        let mut out: Vec<Platform> = candidates.iter().filter(|p| self.matches(p)).cloned().collect();
        self.sort(&mut out);
        out
    }
}

fn without_features(p: &Platform) -> Platform {
    Platform { os_features: None, ..p.clone() }
}

fn ordered_less(ms: &[Single], a: &Platform, b: &Platform) -> bool {
    for m in ms {
        let (am, bm) = (m.matches(a), m.matches(b));
        if am && !bm {
            return true;
        }
        if am || bm {
            if am && bm && a.os_features_slice().len() != b.os_features_slice().len() {
                // Prefer the one with more OS features.
                return a.os_features_slice().len() > b.os_features_slice().len();
            }
            return false;
        }
    }
    if !a.os_features_slice().is_empty() || !b.os_features_slice().is_empty() {
        return ordered_less(ms, &without_features(a), &without_features(b));
    }
    false
}

fn any_less(ms: &[Single], a: &Platform, b: &Platform) -> bool {
    let (mut am, mut bm) = (false, false);
    for m in ms {
        am = am || m.matches(a);
        bm = bm || m.matches(b);
        if am && bm {
            let (fa, fb) = (a.os_features_slice().len(), b.os_features_slice().len());
            if fa != fb {
                return fa > fb;
            }
            break;
        }
    }
    if !am && !bm && (!a.os_features_slice().is_empty() || !b.os_features_slice().is_empty()) {
        return any_less(ms, &without_features(a), &without_features(b));
    }
    am && !bm
}

/// Go's `strconv.Atoi` for the small numbers in variants: an optional
/// sign and at least one digit.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

fn sibling(p: &Platform, arch: &str, variant: &str) -> Platform {
    Platform {
        architecture: arch.to_string(),
        os: p.os.clone(),
        os_version: p.os_version.clone(),
        os_features: p.os_features.clone(),
        variant: (!variant.is_empty()).then(|| variant.to_string()),
        features: None,
    }
}

/// The highest amd64 micro-architecture level (`v4`) and arm version (`v8`)
/// there are. containerd counts down from whatever number a variant says,
/// so `linux/arm/v99999999` would list a hundred million platforms; lower
/// variants are listed from these down instead.
const AMD64_TOP_LEVEL: i64 = 4;
const ARM_TOP_VERSION: i64 = 8;

/// containerd's `platformVector`: `p` followed by the platforms it can also
/// run, best first.
pub(crate) fn platform_vector(p: &Platform) -> Vec<Platform> {
    let mut vector = vec![p.clone()];
    let variant = p.variant_str();
    match p.architecture.as_str() {
        "amd64" => {
            if let Some(level) = atoi(variant.strip_prefix('v').unwrap_or(variant)).filter(|&l| l > 1) {
                for l in (1..level.min(AMD64_TOP_LEVEL + 1)).rev() {
                    vector.push(sibling(p, "amd64", &format!("v{l}")));
                }
            }
            vector.push(sibling(p, "386", ""));
        }
        "arm" => {
            if let Some(version) = atoi(variant.strip_prefix('v').unwrap_or(variant)).filter(|&v| v > 5) {
                for v in (5..version.min(ARM_TOP_VERSION + 1)).rev() {
                    vector.push(sibling(p, "arm", &format!("v{v}")));
                }
            }
        }
        "arm64" => arm64_vector(p, &mut vector),
        _ => {}
    }
    vector
}

fn arm64_vector(p: &Platform, vector: &mut Vec<Platform>) {
    let mut variant = if p.variant_str().is_empty() { "v8".to_string() } else { p.variant_str().to_string() };
    let (major_s, minor_s) = match variant.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (variant.as_str(), None),
    };
    if let Some(mut major) = atoi(major_s.strip_prefix('v').unwrap_or(major_s)).filter(|&m| m >= 8) {
        let mut minor = 0;
        if variant.len() == 4 {
            if let Some(m) = minor_s.and_then(atoi) {
                minor = m;
            }
        }
        let name = |major: i64, minor: i64| if minor == 0 { format!("v{major}") } else { format!("v{major}.{minor}") };
        if major == 9 {
            for m in (0..minor).rev() {
                vector.push(sibling(p, "arm64", &name(major, m)));
            }
            // v9.0 diverged from v8.5: v9.x runs v8.{x+5}.
            minor += 5;
            major = 8;
            vector.push(sibling(p, "arm64", &format!("v8.{minor}")));
        }
        for m in (0..minor).rev() {
            vector.push(sibling(p, "arm64", &name(major, m)));
        }
    }
    if variant.starts_with("v8.") || variant.starts_with("v9.") {
        variant = "v8".to_string();
    }
    vector.extend(platform_vector(&sibling(p, "arm", &variant)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse_with_host(s, &Platform::new("linux", "amd64", None)).unwrap()
    }

    /// Runs a table of (platform, should match, should not match).
    fn run(make: fn(&Platform) -> Matcher, name: &str, table: &[(&str, &[&str], &[&str])]) {
        for (platform, yes, no) in table {
            let m = make(&p(platform));
            for c in *yes {
                assert!(m.matches(&p(c)), "{name}({platform}) should match {c}");
            }
            for c in *no {
                assert!(!m.matches(&p(c)), "{name}({platform}) should not match {c}");
            }
        }
    }

    /// containerd's TestOnly.
    #[test]
    fn only() {
        let arm64_true: &[&str] = &[
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "linux/arm64/v8",
        ];
        let arm64v9_true: &[&str] = &[
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm64",
            "linux/arm64/v8",
            "linux/arm64/v8.1",
            "linux/arm64/v8.2",
            "linux/arm64/v8.3",
            "linux/arm64/v8.4",
            "linux/arm64/v8.5",
            "linux/arm64/v9",
            "linux/arm64/v9.0",
        ];
        run(
            Platform::only,
            "Only",
            &[
                (
                    "linux/amd64",
                    &["linux/amd64", "linux/386"],
                    &["linux/amd64/v2", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
                ),
                (
                    "linux/amd64/v2",
                    &["linux/amd64", "linux/amd64/v1", "linux/amd64/v2", "linux/386"],
                    &[
                        "linux/amd64/v3",
                        "linux/amd64/v4",
                        "linux/arm/v7",
                        "linux/arm64",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
                (
                    "linux/386",
                    &["linux/386"],
                    &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
                ),
                (
                    "windows/amd64",
                    &["windows/amd64", "windows(10.0.17763)/amd64"],
                    &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
                ),
                (
                    "linux/arm/v8",
                    &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"],
                    &["linux/amd64", "linux/arm/v4", "linux/arm64", "windows/amd64", "windows/arm"],
                ),
                (
                    "linux/arm/v7",
                    &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
                    &["linux/amd64", "linux/arm/v4", "linux/arm/v8", "linux/arm64", "windows/amd64", "windows/arm"],
                ),
                (
                    "linux/arm/v6",
                    &["linux/arm/v5", "linux/arm/v6"],
                    &[
                        "linux/amd64",
                        "linux/arm",
                        "linux/arm/v4",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/arm64",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
                (
                    "linux/arm/v5",
                    &["linux/arm/v5"],
                    &[
                        "linux/amd64",
                        "linux/arm",
                        "linux/arm/v4",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/arm64",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
                (
                    "linux/arm/v4",
                    &["linux/arm/v4"],
                    &[
                        "linux/amd64",
                        "linux/arm",
                        "linux/arm/v5",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/arm64",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
                (
                    "linux/arm64/v9",
                    arm64v9_true,
                    &["linux/amd64", "linux/arm/v4", "windows/amd64", "windows/arm", "linux/arm64/v8.6"],
                ),
                (
                    "linux/arm64/v8.1",
                    &[
                        "linux/arm",
                        "linux/arm/v5",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/arm64",
                        "linux/arm64/v8",
                        "linux/arm64/v8.1",
                    ],
                    &["linux/amd64", "linux/arm/v4", "linux/arm/v9", "linux/arm64/v9", "windows/amd64", "windows/arm"],
                ),
                (
                    "linux/arm64",
                    arm64_true,
                    &["linux/amd64", "linux/arm/v4", "linux/arm/v9", "linux/arm64/v9", "windows/amd64", "windows/arm"],
                ),
            ],
        );
    }

    /// containerd's TestOnlyStrict.
    #[test]
    fn only_strict() {
        let arm_all: &[&str] = &[
            "linux/arm",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
            "linux/arm/v4",
            "linux/arm/v9",
        ];
        let others: &[&str] = &["linux/amd64", "linux/arm64", "windows/amd64", "windows/arm"];
        let except = |keep: &[&str]| -> Vec<&'static str> {
            arm_all.iter().chain(others.iter()).filter(|s| !keep.contains(s)).copied().collect()
        };
        let v8 = except(&["linux/arm/v8"]);
        let v7 = except(&["linux/arm", "linux/arm/v7"]);
        let v6 = except(&["linux/arm/v6"]);
        let v5 = except(&["linux/arm/v5"]);
        let v4 = except(&["linux/arm/v4"]);
        run(
            Platform::only_strict,
            "OnlyStrict",
            &[
                (
                    "linux/amd64",
                    &["linux/amd64"],
                    &["linux/386", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
                ),
                (
                    "linux/386",
                    &["linux/386"],
                    &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
                ),
                (
                    "windows/amd64",
                    &["windows/amd64", "windows(10.0.17763)/amd64"],
                    &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
                ),
                (
                    "windows(10.0.17763)/amd64",
                    &["windows/amd64", "windows(10.0.17763)/amd64"],
                    &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
                ),
                ("linux/arm/v8", &["linux/arm/v8"], &v8),
                ("linux/arm/v7", &["linux/arm", "linux/arm/v7"], &v7),
                ("linux/arm/v6", &["linux/arm/v6"], &v6),
                ("linux/arm/v5", &["linux/arm/v5"], &v5),
                ("linux/arm/v4", &["linux/arm/v4"], &v4),
                (
                    "linux/arm64/v9",
                    &["linux/arm64/v9", "linux/arm64/v9.0"],
                    &[
                        "linux/arm",
                        "linux/arm/v5",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/amd64",
                        "linux/arm/v4",
                        "linux/arm/v9",
                        "linux/arm64/v8",
                        "linux/arm64/v8.1",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
                (
                    "linux/arm64/v8.1",
                    &["linux/arm64/v8.1"],
                    &[
                        "linux/arm",
                        "linux/arm/v5",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/amd64",
                        "linux/arm/v4",
                        "linux/arm/v9",
                        "linux/arm64/v8",
                        "linux/arm64/v9",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
                (
                    "linux/arm64",
                    &["linux/arm64", "linux/arm64/v8"],
                    &[
                        "linux/arm",
                        "linux/arm/v5",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm/v8",
                        "linux/amd64",
                        "linux/arm/v4",
                        "linux/arm/v9",
                        "linux/arm64/v9",
                        "windows/amd64",
                        "windows/arm",
                    ],
                ),
            ],
        );
    }

    fn formats(v: &[Platform]) -> Vec<String> {
        v.iter().map(Platform::format).collect()
    }

    #[test]
    fn vectors() {
        let cases: &[(&str, &[&str])] = &[
            ("linux/amd64", &["linux/amd64", "linux/386"]),
            ("linux/amd64/v3", &["linux/amd64/v3", "linux/amd64/v2", "linux/amd64/v1", "linux/386"]),
            ("linux/arm/v7", &["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
            ("linux/arm64", &["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
            (
                "linux/arm64/v8.2",
                &[
                    "linux/arm64/v8.2",
                    "linux/arm64/v8.1",
                    "linux/arm64/v8",
                    "linux/arm/v8",
                    "linux/arm/v7",
                    "linux/arm/v6",
                    "linux/arm/v5",
                ],
            ),
            (
                "linux/arm64/v9.1",
                &[
                    "linux/arm64/v9.1",
                    "linux/arm64/v9",
                    "linux/arm64/v8.6",
                    "linux/arm64/v8.5",
                    "linux/arm64/v8.4",
                    "linux/arm64/v8.3",
                    "linux/arm64/v8.2",
                    "linux/arm64/v8.1",
                    "linux/arm64/v8",
                    "linux/arm/v8",
                    "linux/arm/v7",
                    "linux/arm/v6",
                    "linux/arm/v5",
                ],
            ),
            ("linux/s390x", &["linux/s390x"]),
            // Variants past the last real one list the real ones below them.
            (
                "linux/arm/v88888888",
                &["linux/arm/v88888888", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
            ),
            (
                "linux/amd64/v4000000000",
                &[
                    "linux/amd64/v4000000000",
                    "linux/amd64/v4",
                    "linux/amd64/v3",
                    "linux/amd64/v2",
                    "linux/amd64/v1",
                    "linux/386",
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(formats(&platform_vector(&p(input).normalize())), *want, "{input}");
        }
    }

    #[test]
    fn only_orders_best_first() {
        let m = p("linux/arm64").only();
        let candidates: Vec<Platform> = ["linux/arm/v5", "linux/amd64", "linux/arm/v7", "linux/arm64", "linux/arm/v6"]
            .iter()
            .map(|s| p(s))
            .collect();
        assert_eq!(
            formats(&m.filter_sorted(&candidates)),
            ["linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
        );
        let m = p("linux/amd64/v3").only();
        let candidates: Vec<Platform> =
            ["linux/386", "linux/amd64", "linux/amd64/v2", "linux/amd64/v4", "linux/amd64/v3"]
                .iter()
                .map(|s| p(s))
                .collect();
        assert_eq!(
            formats(&m.filter_sorted(&candidates)),
            ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]
        );
        assert!(m.less(&p("linux/amd64"), &p("linux/386")));
        assert!(!m.less(&p("linux/386"), &p("linux/amd64")));
        assert!(!m.less(&p("linux/amd64"), &p("linux/amd64")));
        assert!(m.less(&p("linux/386"), &p("windows/amd64")));
    }

    #[test]
    fn ordered_prefers_more_os_features() {
        let host = p("windows(10.0.20348+win32k)/amd64");
        let m = Matcher::ordered(&[host]);
        let with = p("windows(10.0.20348+win32k)/amd64");
        let without = p("windows(10.0.20348)/amd64");
        assert!(m.matches(&with) && m.matches(&without));
        assert!(m.less(&with, &without));
        assert!(!m.less(&without, &with));
    }

    #[test]
    fn os_features_subset() {
        let m = Matcher::ordered(&[p("linux(+erofs+gpu)/amd64")]);
        assert!(m.matches(&p("linux/amd64")));
        assert!(m.matches(&p("linux(+gpu)/amd64")));
        assert!(m.matches(&p("linux(+gpu+erofs)/amd64")));
        assert!(!m.matches(&p("linux(+simd)/amd64")));
        let bare = Matcher::ordered(&[p("linux/amd64")]);
        assert!(!bare.matches(&p("linux(+gpu)/amd64")));
        // win32k is not considered on Windows.
        let win = Matcher::ordered(&[p("windows/amd64")]);
        assert!(win.matches(&p("windows(10.0.17763+win32k)/amd64")));
    }

    #[test]
    fn windows_versions() {
        let cases = [
            ("10.0.17763", "10.0.17763", true),
            ("10.0.17763", "10.0.17763.1234", true),
            ("10.0.17763", "10.0.20348", false),
            ("10.0.20348", "10.0.17763", false),
            ("10.0.20348", "10.0.20348", true),
            ("10.0.22621", "10.0.20348", true),
            ("10.0.22621", "10.0.22621", true),
            ("10.0.20348", "10.0.22621", false),
            ("10.0.20348", "6.3.9600", false),
            ("10.0.17763", "", true),
            ("", "10.0.17763", true),
            ("10.0", "10.0.20348", true),
        ];
        for (host, image, want) in cases {
            let mut h = Platform::new("windows", "amd64", None);
            h.os_version = Some(host.to_string()).filter(|s| !s.is_empty());
            let mut i = Platform::new("windows", "amd64", None);
            i.os_version = Some(image.to_string()).filter(|s| !s.is_empty());
            assert_eq!(h.only().matches(&i), want, "host {host} image {image}");
        }
        assert_eq!(WindowsVersion::parse("10.0.x"), WindowsVersion::default());
        assert_eq!(WindowsVersion::parse("10.0.+1"), WindowsVersion::default());
        assert_eq!(WindowsVersion::parse("300.0.1"), WindowsVersion::default());
        assert_eq!(WindowsVersion::parse("10.0.17763.1"), WindowsVersion { major: 10, minor: 0, build: 17763 });
    }

    #[test]
    fn any_and_all() {
        let m = Matcher::any(&[p("linux/amd64"), p("linux/arm64")]);
        assert!(m.matches(&p("linux/arm64")) && m.matches(&p("linux/amd64")));
        assert!(!m.matches(&p("linux/386")));
        assert!(!m.less(&p("linux/arm64"), &p("linux/amd64")));
        assert!(!m.less(&p("linux/amd64"), &p("linux/arm64")));
        assert!(m.less(&p("linux/arm64"), &p("linux/386")));
        let all = Matcher::all();
        assert!(all.matches(&p("plan9/386")));
        assert!(!all.less(&p("linux/amd64"), &p("linux/386")));
        let ordered = Matcher::ordered(&[p("linux/arm64"), p("linux/amd64")]);
        assert!(ordered.less(&p("linux/arm64"), &p("linux/amd64")));
        assert_eq!(ordered.compare(&p("linux/amd64"), &p("linux/arm64")), Ordering::Greater);
    }

    #[test]
    fn go_atoi() {
        assert_eq!(atoi("7"), Some(7));
        assert_eq!(atoi("+7"), Some(7));
        assert_eq!(atoi("-1"), Some(-1));
        assert_eq!(atoi(""), None);
        assert_eq!(atoi("8.1"), None);
    }
}
