//! Platforms (`linux/arm64/v8`), following containerd's rules for parsing,
//! normalising, formatting and matching (github.com/containerd/platforms).
//!
//! A specifier is `<os>[(<os options>)]|<arch>|<os>[(<os options>)]/<arch>[/<variant>]`.
//! The os options are an OS version and `+`-prefixed OS features, as in
//! `windows(10.0.17763+win32k)`. A lone OS or architecture is completed from
//! the host platform, which [`Platform::parse_with_host`] lets callers set.

mod database;
mod matcher;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

pub use database::{closest, KNOWN_ARCHS};
pub use matcher::Matcher;

/// An OCI platform. Field names on the wire follow the image spec
/// (`os.version`, `os.features`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture as Go spells it (`amd64`, `arm64`, `arm`...).
    #[serde(default)]
    pub architecture: String,
    /// Operating system as Go spells it (`linux`, `windows`...).
    #[serde(default)]
    pub os: String,
    /// OS version, e.g. `10.0.17763.1879` for Windows images.
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// OS features the image needs, e.g. `win32k`.
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    /// CPU variant, e.g. `v7` for arm or `v2` for amd64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Reserved by the image spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// Characters allowed in the architecture and variant components.
fn is_specifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Characters allowed in the OS name.
fn is_os_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
}

/// Characters allowed in an OS version or OS feature.
fn is_os_option_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%' | '-')
}

const SPECIFIER_RE: &str = "^[A-Za-z0-9_.-]+$";
const OS_RE: &str = r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$";

/// Splits an OS component into its name, version and `+`-separated feature
/// list (with its leading `+`), or `None` when it is malformed.
fn split_os_component(part: &str) -> Option<(&str, &str, &str)> {
    let name_end = part.find(|c: char| !is_os_char(c)).unwrap_or(part.len());
    let (name, rest) = part.split_at(name_end);
    if name.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((name, "", ""));
    }
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    let version_end = inner.find(|c: char| !is_os_option_char(c)).unwrap_or(inner.len());
    let (version, features) = inner.split_at(version_end);
    if !features.is_empty() {
        let body = features.strip_prefix('+')?;
        if !body.split('+').all(|f| !f.is_empty() && f.chars().all(is_os_option_char)) {
            return None;
        }
    }
    Some((name, version, features))
}

/// The value of one ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes an OS version or feature, as Go's `url.PathUnescape`.
/// (The result must also be UTF-8, which Go does not require.)
fn decode_os_option(v: &str) -> Result<String, String> {
    if !v.contains('%') {
        return Ok(v.to_string());
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).copied().and_then(hex_value);
        let lo = bytes.get(i + 2).copied().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            let bad: String = v[i..].chars().take(3).collect();
            return Err(format!("invalid URL escape {bad:?}"));
        };
        out.push(hi << 4 | lo);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| "decodes to invalid UTF-8".to_string())
}

/// Percent-encodes the characters of an OS option that the specifier
/// syntax gives a meaning to.
fn encode_os_option(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '%' => out.push_str("%25"),
            '+' => out.push_str("%2B"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `path.Join`: joins the non-empty elements with `/` and cleans the
/// result lexically.
fn path_join(elems: &[&str]) -> String {
    let joined = elems.iter().filter(|e| !e.is_empty()).copied().collect::<Vec<_>>().join("/");
    if joined.is_empty() {
        return String::new();
    }
    let rooted = joined.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl Platform {
    /// A platform from its parts, as written.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            ..Default::default()
        }
    }

    /// The running machine's platform, as containerd's `DefaultSpec`: Go's
    /// spelling of the OS and architecture, and on ARM the CPU variant the
    /// kernel reports.
    pub fn host() -> Platform {
        Platform {
            os: database::host_os(),
            architecture: database::host_arch(),
            variant: non_empty(database::host_variant()),
            ..Default::default()
        }
    }

    /// The variant, `""` when absent.
    pub fn variant_str(&self) -> &str {
        self.variant.as_deref().unwrap_or("")
    }

    /// The OS version, `""` when absent.
    pub fn os_version_str(&self) -> &str {
        self.os_version.as_deref().unwrap_or("")
    }

    /// The OS features, empty when absent.
    pub fn os_features_slice(&self) -> &[String] {
        self.os_features.as_deref().unwrap_or(&[])
    }

    /// Parses a specifier as a user gives it: containerd's `Parse`,
    /// completing a lone OS or architecture from [`Platform::host`], and
    /// then an architecture no one builds for (`linux/amd46`) is an error
    /// naming the closest known one. [`Platform::parse_with_host`] keeps
    /// containerd's leniency.
    pub fn parse(specifier: &str) -> Result<Platform, Error> {
        let p = Platform::parse_with_host(specifier, &Platform::host())?;
        if database::is_user_arch(&p.architecture) {
            return Ok(p);
        }
        let hint = closest(&p.architecture, KNOWN_ARCHS).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        Err(Error::InvalidPlatform {
            input: specifier.to_string(),
            reason: format!(
                "unknown architecture {:?}{hint} (known: {})",
                p.architecture,
                KNOWN_ARCHS[..16].join(", ")
            ),
        })
    }

    /// Parses a specifier as containerd's `Parse`, with `host` standing in
    /// for the running machine where the specifier leaves parts out.
    pub fn parse_with_host(specifier: &str, host: &Platform) -> Result<Platform, Error> {
        let invalid = |reason: String| Error::InvalidPlatform { input: specifier.to_string(), reason };
        if specifier.contains('*') {
            return Err(invalid("wildcards not yet supported".to_string()));
        }
        let parts: Vec<&str> = specifier.splitn(4, '/').collect();
        let mut p = Platform::default();
        let os_part = parts.first().copied().unwrap_or("");
        let (os, version, features) = split_os_component(os_part).ok_or_else(|| {
            invalid(format!(
                "{os_part:?} is an invalid OS component: OSAndVersion specifier component must match {OS_RE:?}"
            ))
        })?;
        p.os = database::normalize_os(os);
        let version = decode_os_option(version).map_err(|e| invalid(format!("invalid OS version {version:?}: {e}")))?;
        p.os_version = non_empty(version);
        if let Some(raw) = features.strip_prefix('+') {
            let mut decoded = Vec::new();
            for f in raw.split('+') {
                let d = decode_os_option(f)
                    .map_err(|e| invalid(format!("invalid OS features: invalid os feature {f:?}: {e}")))?;
                if !d.is_empty() {
                    decoded.push(d);
                }
            }
            p.os_features = (!decoded.is_empty()).then_some(decoded);
        }
        for part in parts.iter().skip(1) {
            if part.is_empty() || !part.chars().all(is_specifier_char) {
                return Err(invalid(format!(
                    "{part:?} is an invalid component: platform specifier component must match {SPECIFIER_RE:?}"
                )));
            }
        }
        match parts.as_slice() {
            [single] => {
                if database::is_known_os(&p.os) {
                    p.architecture = host.architecture.clone();
                    if p.architecture == "arm" && host.variant_str() != "v7" {
                        p.variant = host.variant.clone().filter(|v| !v.is_empty());
                    }
                    return Ok(p);
                }
                let (arch, variant) = database::normalize_arch(single, "");
                p.architecture = arch;
                p.variant = non_empty(variant).filter(|v| !(p.architecture == "arm" && v == "v7"));
                if database::is_known_arch(&p.architecture) {
                    p.os = host.os.clone();
                    return Ok(p);
                }
                let hint = closest(single, KNOWN_ARCHS).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
                Err(invalid(format!("unknown operating system or architecture{hint}")))
            }
            [_, arch] => {
                let (arch, variant) = database::normalize_arch(arch, "");
                p.architecture = arch;
                p.variant = non_empty(variant).filter(|v| !(p.architecture == "arm" && v == "v7"));
                Ok(p)
            }
            [_, arch, variant] => {
                let (arch, variant) = database::normalize_arch(arch, variant);
                p.variant =
                    if arch == "arm64" && variant.is_empty() { Some("v8".to_string()) } else { non_empty(variant) };
                p.architecture = arch;
                Ok(p)
            }
            _ => Err(invalid("cannot parse platform specifier".to_string())),
        }
    }

    /// containerd's `Normalize`: canonical OS, architecture and variant
    /// spellings, and OS features sorted without duplicates.
    pub fn normalize(&self) -> Platform {
        let mut p = self.clone();
        p.os = database::normalize_os(&self.os);
        let (arch, variant) = database::normalize_arch(&self.architecture, self.variant_str());
        p.architecture = arch;
        p.variant = non_empty(variant);
        if let Some(features) = &self.os_features {
            if !features.is_empty() {
                let mut f = features.clone();
                f.sort();
                f.dedup();
                p.os_features = Some(f);
            }
        }
        p
    }

    /// containerd's `Format`: `os/arch[/variant]`, or `unknown` without an OS.
    pub fn format(&self) -> String {
        if self.os.is_empty() {
            return "unknown".to_string();
        }
        path_join(&[&self.os, &self.architecture, self.variant_str()])
    }

    /// containerd's `FormatAll`: as [`Platform::format`], with the OS version
    /// and sorted OS features in parentheses after the OS, e.g.
    /// `windows(10.0.17763+win32k)/amd64`.
    pub fn format_all(&self) -> String {
        if self.os.is_empty() {
            return "unknown".to_string();
        }
        let version = encode_os_option(self.os_version_str());
        let mut features: Vec<&String> = self.os_features_slice().iter().filter(|f| !f.is_empty()).collect();
        features.sort();
        features.dedup();
        let features = features.iter().map(|f| encode_os_option(f)).collect::<Vec<_>>().join("+");
        if version.is_empty() && features.is_empty() {
            return self.format();
        }
        let mut os = format!("{}({version}", self.os);
        if !features.is_empty() {
            os.push('+');
            os.push_str(&features);
        }
        os.push(')');
        path_join(&[&os, &self.architecture, self.variant_str()])
    }

    /// The matcher containerd's `Only` returns: this platform and the ones it
    /// can also run (older amd64 levels and 386; older arm variants; for
    /// arm64, older arm64 levels and arm), best first.
    pub fn only(&self) -> Matcher {
        Matcher::ordered(&matcher::platform_vector(&self.normalize()))
    }

    /// The matcher containerd's `OnlyStrict` returns: this platform alone,
    /// in any of its spellings.
    pub fn only_strict(&self) -> Matcher {
        Matcher::ordered(std::slice::from_ref(&self.normalize()))
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform, Error> {
        Platform::parse(s)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.format())
    }
}

/// Spellings that other ecosystems read differently from containerd, with
/// what polyarch does about them.
const AMBIGUOUS_ARCHES: &[(&str, &str)] = &[
    ("armhf", "armhf is read as linux/arm/v7 as containerd does; Alpine's armhf is arm/v6: write linux/arm/v6 for it"),
    (
        "armel",
        "armel is read as linux/arm/v6 as containerd does; Debian's armel targets ARMv5: write linux/arm/v5 for it",
    ),
    ("i686", "i686 is not an architecture containerd knows (only i386 becomes 386): write linux/386 for 32-bit x86"),
];

/// A warning for a specifier whose architecture other ecosystems spell or
/// read differently from containerd (whose reading polyarch follows), or
/// `None`. The list is short on purpose: `armhf` (Alpine: arm/v6), `armel`
/// (Debian: ARMv5) and `i686` (not normalised by containerd).
pub fn parse_warning(input: &str) -> Option<String> {
    let parts: Vec<&str> = input.split('/').collect();
    let arch = match parts.as_slice() {
        [single] => single,
        [_, arch, ..] => arch,
        [] => return None,
    };
    let arch = arch.to_lowercase();
    AMBIGUOUS_ARCHES.iter().find(|(a, _)| *a == arch).map(|(_, w)| w.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plat(os: &str, arch: &str, variant: &str) -> Platform {
        Platform::new(os, arch, (!variant.is_empty()).then_some(variant))
    }

    fn with_os(mut p: Platform, version: &str, features: &[&str]) -> Platform {
        p.os_version = (!version.is_empty()).then(|| version.to_string());
        p.os_features = (!features.is_empty()).then(|| features.iter().map(|f| f.to_string()).collect());
        p
    }

    struct Case {
        input: &'static str,
        expected: Platform,
        matches: Vec<Platform>,
        formatted: String,
        v2: bool,
    }

    fn case(input: &'static str, expected: Platform, matches: Vec<Platform>, formatted: &str, v2: bool) -> Case {
        Case { input, expected, matches, formatted: formatted.to_string(), v2 }
    }

    /// containerd's TestParseSelector, with the host fixed.
    fn selector_cases(host: &Platform) -> Vec<Case> {
        let (os, arch) = (host.os.as_str(), host.architecture.as_str());
        let dv = if arch == "arm" && host.variant_str() != "v7" { host.variant_str() } else { "" };
        let d = |o: &str| plat(o, arch, dv);
        let join = |o: &str| path_join(&[o, arch, dv]);
        vec![
            case(
                "linux/arm64",
                plat("linux", "arm64", ""),
                vec![plat("linux", "aarch64", ""), plat("linux", "aarch64", "v8"), plat("linux", "arm64", "v8")],
                "linux/arm64",
                false,
            ),
            case(
                "linux/arm64/v8",
                plat("linux", "arm64", "v8"),
                vec![plat("linux", "aarch64", ""), plat("linux", "aarch64", "v8"), plat("linux", "arm64", "")],
                "linux/arm64/v8",
                false,
            ),
            case(
                "linux/arm",
                plat("linux", "arm", ""),
                vec![plat("linux", "arm", "v7"), plat("linux", "armhf", ""), plat("linux", "arm", "7")],
                "linux/arm",
                false,
            ),
            case("linux/arm/v6", plat("linux", "arm", "v6"), vec![plat("linux", "armel", "")], "linux/arm/v6", false),
            case(
                "linux/arm/v7",
                plat("linux", "arm", "v7"),
                vec![plat("linux", "arm", ""), plat("linux", "armhf", "")],
                "linux/arm/v7",
                false,
            ),
            case("arm", plat(os, "arm", ""), vec![], &path_join(&[os, "arm"]), false),
            case("armel", plat(os, "arm", "v6"), vec![], &path_join(&[os, "arm/v6"]), false),
            case("armhf", plat(os, "arm", ""), vec![], &path_join(&[os, "arm"]), false),
            case("Aarch64", plat(os, "arm64", ""), vec![], &path_join(&[os, "arm64"]), false),
            case("x86_64", plat(os, "amd64", ""), vec![], &path_join(&[os, "amd64"]), false),
            case("Linux/x86_64", plat("linux", "amd64", ""), vec![], "linux/amd64", false),
            case("i386", plat(os, "386", ""), vec![], &path_join(&[os, "386"]), false),
            case("linux", d("linux"), vec![], &join("linux"), false),
            case("s390x", plat(os, "s390x", ""), vec![], &path_join(&[os, "s390x"]), false),
            case("linux/s390x", plat("linux", "s390x", ""), vec![], "linux/s390x", false),
            case("macOS", d("darwin"), vec![], &join("darwin"), false),
            case("windows", d("windows"), vec![], &join("windows"), false),
            case("windows()", d("windows"), vec![], &join("windows"), true),
            case(
                "windows(10.0.17763)",
                with_os(d("windows"), "10.0.17763", &[]),
                vec![],
                &join("windows(10.0.17763)"),
                true,
            ),
            case(
                "windows(10.0.17763+win32k)",
                with_os(d("windows"), "10.0.17763", &["win32k"]),
                vec![],
                &join("windows(10.0.17763+win32k)"),
                true,
            ),
            case("linux(+gpu)", with_os(d("linux"), "", &["gpu"]), vec![], &join("linux(+gpu)"), true),
            case(
                "linux(+gpu+simd)",
                with_os(d("linux"), "", &["gpu", "simd"]),
                vec![],
                &join("linux(+gpu+simd)"),
                true,
            ),
            case(
                "linux(+unsorted+erofs)",
                with_os(d("linux"), "", &["unsorted", "erofs"]),
                vec![],
                &join("linux(+erofs+unsorted)"),
                true,
            ),
            case(
                "windows(10.0.17763%2Bbuild.42)",
                with_os(d("windows"), "10.0.17763+build.42", &[]),
                vec![],
                &join("windows(10.0.17763%2Bbuild.42)"),
                true,
            ),
            case(
                "windows(10.0.17763%2Bbuild.42+win32k)",
                with_os(d("windows"), "10.0.17763+build.42", &["win32k"]),
                vec![],
                &join("windows(10.0.17763%2Bbuild.42+win32k)"),
                true,
            ),
            case(
                "windows(50%25done)",
                with_os(d("windows"), "50%done", &[]),
                vec![],
                &join("windows(50%25done)"),
                true,
            ),
        ]
    }

    fn run_selector_cases(host: &Platform) {
        for c in selector_cases(host) {
            let p = Platform::parse_with_host(c.input, host).unwrap();
            assert_eq!(p, c.expected, "{}", c.input);
            let m = Matcher::ordered(std::slice::from_ref(&p));
            assert!(m.matches(&c.expected), "{} matches its own result", c.input);
            for mc in &c.matches {
                assert!(m.matches(mc), "{} matches {mc:?}", c.input);
            }
            let formatted = if c.v2 { p.format_all() } else { p.format() };
            assert_eq!(formatted, c.formatted, "{}", c.input);
            let reparsed = Platform::parse_with_host(&formatted, host).unwrap();
            let again = if c.v2 { reparsed.format_all() } else { reparsed.format() };
            assert_eq!(again, formatted, "{} round trip", c.input);
        }
    }

    #[test]
    fn parse_selector_amd64_host() {
        run_selector_cases(&plat("linux", "amd64", ""));
    }

    #[test]
    fn parse_selector_arm_hosts() {
        run_selector_cases(&plat("linux", "arm", "v6"));
        run_selector_cases(&plat("linux", "arm", "v7"));
        run_selector_cases(&plat("linux", "arm64", "v8"));
        run_selector_cases(&plat("darwin", "arm64", ""));
    }

    #[test]
    fn parse_selector_real_host() {
        run_selector_cases(&Platform::host());
    }

    #[test]
    fn host_completion() {
        let arm = plat("linux", "arm", "v6");
        assert_eq!(Platform::parse_with_host("linux", &arm).unwrap(), plat("linux", "arm", "v6"));
        let arm7 = plat("linux", "arm", "v7");
        assert_eq!(Platform::parse_with_host("linux", &arm7).unwrap(), plat("linux", "arm", ""));
        let arm64 = plat("linux", "arm64", "v8");
        assert_eq!(Platform::parse_with_host("windows", &arm64).unwrap(), plat("windows", "arm64", ""));
        assert_eq!(Platform::parse_with_host("riscv64", &arm64).unwrap(), plat("linux", "riscv64", ""));
    }

    #[test]
    fn host_is_normalised() {
        let h = Platform::host();
        assert!(!h.os.is_empty() && !h.architecture.is_empty());
        if h.architecture == "amd64" {
            assert_eq!(h.variant, None);
        }
    }

    #[test]
    fn format_all_encoding() {
        let amd64 = |os: &str, v: &str, f: &[&str]| with_os(plat(os, "amd64", ""), v, f);
        let cases = [
            (amd64("windows", "10.0.17763+build.42", &[]), "windows(10.0.17763%2Bbuild.42)/amd64"),
            (amd64("windows", "10.0.17763+build.42", &["win32k"]), "windows(10.0.17763%2Bbuild.42+win32k)/amd64"),
            (amd64("windows", "50%done", &[]), "windows(50%25done)/amd64"),
            (amd64("windows", "1.0(beta)", &[]), "windows(1.0%28beta%29)/amd64"),
            (amd64("windows", "a/b", &[]), "windows(a%2Fb)/amd64"),
            (amd64("windows", "10.0.17763", &[]), "windows(10.0.17763)/amd64"),
            (amd64("linux", "", &["feat+v2"]), "linux(+feat%2Bv2)/amd64"),
            (amd64("linux", "", &["100%gpu"]), "linux(+100%25gpu)/amd64"),
            (amd64("windows", "10.0+build", &["feat+1"]), "windows(10.0%2Bbuild+feat%2B1)/amd64"),
        ];
        for (p, expected) in cases {
            let formatted = p.format_all();
            assert_eq!(formatted, expected);
            let reparsed = Platform::parse(&formatted).unwrap();
            assert_eq!(reparsed.os_version, p.os_version, "{expected}");
            assert_eq!(reparsed.os_features, p.os_features, "{expected}");
        }
    }

    #[test]
    fn format_all_skips_empty_os_features() {
        let p = with_os(plat("linux", "amd64", ""), "", &["", "gpu", "", "simd"]);
        assert_eq!(p.format_all(), "linux(+gpu+simd)/amd64");
    }

    #[test]
    fn format_without_os() {
        assert_eq!(Platform::default().format(), "unknown");
        assert_eq!(Platform::default().format_all(), "unknown");
        assert_eq!(plat("linux", "amd64", "").to_string(), "linux/amd64");
    }

    #[test]
    fn parse_selector_invalid() {
        for input in [
            "",
            "/linux/arm",
            "linux/arm/",
            "linux /arm",
            "linux/&arm",
            "linux/arm/foo/bar",
            "*",
            "linux/*",
            "foo",
            "windows(%zz)/amd64",
            "linux(a)b/amd64",
            "linux(++gpu)/amd64",
            "linux(+gpu+)/amd64",
            "linux((1))/amd64",
        ] {
            let err = Platform::parse(input).unwrap_err();
            assert!(matches!(err, Error::InvalidPlatform { .. }), "{input}: {err}");
        }
    }

    #[test]
    fn parse_error_messages() {
        let err = Platform::parse("linux/&arm").unwrap_err().to_string();
        assert!(err.contains("\"&arm\" is an invalid component"), "{err}");
        let err = Platform::parse("foo").unwrap_err().to_string();
        assert!(err.contains("unknown operating system or architecture"), "{err}");
        let err = Platform::parse("linux/arm/v7/x").unwrap_err().to_string();
        assert!(err.contains("cannot parse platform specifier"), "{err}");
    }

    #[test]
    fn unknown_architectures_name_the_closest_known_one() {
        for (input, close) in [
            ("linux/amd46", "amd64"),
            ("linux/arm65", "arm64"),
            ("linux/ppc64el/x", "ppc64le"),
            ("linux/s309x", "s390x"),
            ("windows/amd46", "amd64"),
            ("amd46", "amd64"),
        ] {
            let err = Platform::parse(input).unwrap_err().to_string();
            assert!(err.contains(&format!("did you mean {close:?}?")), "{input}: {err}");
            assert!(err.starts_with(&format!("invalid platform {input:?}")), "{err}");
        }
        let err = Platform::parse("linux/qwertyuiop").unwrap_err().to_string();
        assert!(err.contains("unknown architecture \"qwertyuiop\"") && !err.contains("did you mean"), "{err}");
        for ok in ["linux/sparc64", "linux/m68k", "linux/riscv32", "linux/aarch64", "linux/x86_64", "linux/armhf"] {
            Platform::parse(ok).unwrap();
        }
        assert_eq!(closest("mipsel", KNOWN_ARCHS), Some("mipsle"));
        assert_eq!(closest("zz", KNOWN_ARCHS), None);
    }

    #[test]
    fn parse_keeps_unknown_pairs() {
        let host = plat("linux", "amd64", "");
        let p = Platform::parse_with_host("linux/i686", &host).unwrap();
        assert_eq!(p, plat("linux", "i686", ""));
        let p = Platform::parse_with_host("freebsd/arm64/v8", &host).unwrap();
        assert_eq!(p, plat("freebsd", "arm64", "v8"));
        let p = Platform::parse_with_host("linux/arm64/8", &host).unwrap();
        assert_eq!(p, plat("linux", "arm64", "v8"));
        let p = Platform::parse_with_host("linux/arm64/v9.0", &host).unwrap();
        assert_eq!(p, plat("linux", "arm64", "v9"));
        let p = Platform::parse_with_host("linux/amd64/v1", &host).unwrap();
        assert_eq!(p, plat("linux", "amd64", ""));
        let p = Platform::parse_with_host("linux/arm/7", &host).unwrap();
        assert_eq!(p, plat("linux", "arm", "v7"));
        let p: Platform = "linux/ppc64le".parse().unwrap();
        assert_eq!(p, plat("linux", "ppc64le", ""));
    }

    #[test]
    fn normalize_table() {
        let cases = [
            (plat("Linux", "x86_64", ""), plat("linux", "amd64", "")),
            (plat("linux", "arm", ""), plat("linux", "arm", "v7")),
            (plat("linux", "armhf", ""), plat("linux", "arm", "v7")),
            (plat("linux", "aarch64", "v8"), plat("linux", "arm64", "")),
            (plat("macos", "arm64", ""), plat("darwin", "arm64", "")),
            (
                with_os(plat("linux", "amd64", ""), "", &["b", "a", "b"]),
                with_os(plat("linux", "amd64", ""), "", &["a", "b"]),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.normalize(), want, "{input:?}");
        }
        assert_eq!(Platform::parse("linux/arm").unwrap().normalize().format_all(), "linux/arm/v7");
    }

    #[test]
    fn warnings() {
        let w = parse_warning("armhf").unwrap();
        assert!(w.contains("linux/arm/v7") && w.contains("linux/arm/v6"), "{w}");
        assert!(parse_warning("linux/ARMHF").is_some());
        assert!(parse_warning("linux/armel").is_some());
        assert!(parse_warning("i686").is_some());
        assert_eq!(parse_warning("linux/arm/v7"), None);
        assert_eq!(parse_warning("linux/amd64"), None);
        assert_eq!(parse_warning(""), None);
    }

    #[test]
    fn os_option_decoding() {
        assert_eq!(decode_os_option("a%2Bb%25c").unwrap(), "a+b%c");
        assert_eq!(decode_os_option("plain").unwrap(), "plain");
        assert_eq!(decode_os_option("%e2%98%83").unwrap(), "\u{2603}");
        assert!(decode_os_option("%").is_err());
        assert!(decode_os_option("%2").is_err());
        assert!(decode_os_option("%zz").is_err());
        assert!(decode_os_option("%ff").is_err());
        assert_eq!(encode_os_option("a+b%c(d)/e"), "a%2Bb%25c%28d%29%2Fe");
    }

    #[test]
    fn go_path_join() {
        assert_eq!(path_join(&["linux", "amd64", ""]), "linux/amd64");
        assert_eq!(path_join(&["linux", "..", ""]), ".");
        assert_eq!(path_join(&["linux", ".", "x"]), "linux/x");
        assert_eq!(path_join(&["", ""]), "");
    }

    #[test]
    fn serde_round_trip() {
        let p = with_os(plat("windows", "amd64", ""), "10.0.17763.1", &["win32k"]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#
        );
        assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
    }
}
