//! Known operating systems and architectures, and the normalisation of
//! their spellings, as in containerd/platforms `database.go`.

/// Whether `os` (already normalised) is an operating system Go knows.
pub(crate) fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
    )
}

/// Whether `arch` (already normalised) is an architecture Go knows.
pub(crate) fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

/// Architectures Go has no name for that Linux distributions build for
/// (Debian's ports), most of which QEMU emulates: accepted where a user
/// names a platform.
const DISTRIBUTION_ARCHS: [&str; 6] = ["riscv32", "m68k", "alpha", "hppa", "sh4", "ia64"];

/// Every architecture a user may name in a platform: Go's, then
/// [`DISTRIBUTION_ARCHS`].
pub const KNOWN_ARCHS: [&str; 30] = [
    "amd64",
    "arm64",
    "arm",
    "386",
    "ppc64le",
    "s390x",
    "riscv64",
    "mips64le",
    "mips64",
    "loong64",
    "mips",
    "mipsle",
    "ppc64",
    "ppc",
    "sparc64",
    "sparc",
    "amd64p32",
    "armbe",
    "arm64be",
    "mips64p32",
    "mips64p32le",
    "riscv",
    "s390",
    "wasm",
    "riscv32",
    "m68k",
    "alpha",
    "hppa",
    "sh4",
    "ia64",
];

/// Whether `arch` (already normalised) is one a user may name.
pub(crate) fn is_user_arch(arch: &str) -> bool {
    is_known_arch(arch) || DISTRIBUTION_ARCHS.contains(&arch)
}

/// The candidate closest to `input` by edit distance (a swap of two
/// neighbours counts once, so `amd46` is one step from `amd64`), if it is
/// close enough to be a typo: at most 2 steps, and fewer than half the
/// input's length.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    let limit = 2.min(input.chars().count().saturating_sub(1) / 2).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(&input, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and transpositions of neighbours.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Lower-cases `os` and maps `macos` to `darwin`; an empty OS is the
/// running machine's.
pub(crate) fn normalize_os(os: &str) -> String {
    if os.is_empty() {
        return host_os();
    }
    let os = os.to_lowercase();
    if os == "macos" {
        "darwin".to_string()
    } else {
        os
    }
}

/// Lower-cases an architecture and its variant and maps their other
/// spellings to the canonical ones (`aarch64` → `arm64`, `armhf` → `arm/v7`,
/// `x86_64` → `amd64`...). The returned variant is empty when absent.
pub(crate) fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_lowercase();
    let mut variant = variant.to_lowercase();
    let arch = match arch.as_str() {
        "i386" => {
            variant.clear();
            "386".to_string()
        }
        "x86_64" | "x86-64" | "amd64" => {
            if variant == "v1" {
                variant.clear();
            }
            "amd64".to_string()
        }
        "aarch64" | "arm64" => {
            match variant.as_str() {
                "8" | "v8" | "v8.0" => variant.clear(),
                "9" | "9.0" | "v9.0" => variant = "v9".to_string(),
                _ => {}
            }
            "arm64".to_string()
        }
        "armhf" => {
            variant = "v7".to_string();
            "arm".to_string()
        }
        "armel" => {
            variant = "v6".to_string();
            "arm".to_string()
        }
        "arm" => {
            match variant.as_str() {
                "" | "7" => variant = "v7".to_string(),
                "5" | "6" | "8" => variant = format!("v{variant}"),
                _ => {}
            }
            arch
        }
        _ => arch,
    };
    (arch, variant)
}

/// The running machine's operating system, spelled as Go spells it.
pub(crate) fn host_os() -> String {
    match std::env::consts::OS {
        "macos" => "darwin".to_string(),
        other => other.to_string(),
    }
}

/// The running machine's architecture, spelled as Go's `GOARCH`.
pub(crate) fn host_arch() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "loongarch64" => "loong64",
        "powerpc" => "ppc",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "sparc64" => "sparc64",
        "wasm32" => "wasm",
        other => other,
    };
    arch.to_string()
}

/// The running machine's CPU variant as containerd's `cpuVariant` reports
/// it: read from the kernel on ARM, empty elsewhere.
pub(crate) fn host_variant() -> String {
    if cfg!(target_arch = "aarch64") {
        // An arm64 kernel always reports "CPU architecture: 8".
        return "v8".to_string();
    }
    if cfg!(target_arch = "arm") {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        // The kernel's machine name, as `uname -m` prints it.
        let machine = std::fs::read_to_string("/proc/sys/kernel/arch").unwrap_or_default();
        return arm_variant_from_cpuinfo(&cpuinfo, machine.trim(), "arm");
    }
    String::new()
}

/// The value of the first `/proc/cpuinfo` line whose key is `key`
/// (case-insensitively), as containerd's `getCPUInfo`.
fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let mut parts = line.split(':');
        let k = parts.next()?;
        let v = parts.next()?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// The ARM version in a machine name such as `armv7l` or `aarch64`, as
/// containerd's `getCPUVariantFromArch`; `None` for other names.
pub(crate) fn arm_version_from_machine(machine: &str) -> Option<&'static str> {
    let machine = machine.to_lowercase();
    if machine == "aarch64" {
        return Some("8");
    }
    if !machine.starts_with("armv") || machine.len() < 5 {
        return None;
    }
    Some(match machine.get(3..5).unwrap_or("") {
        "v8" => "8",
        "v7" => "7",
        "v6" => "6",
        "v5" => "5",
        "v4" => "4",
        "v3" => "3",
        _ => "unknown",
    })
}

/// The ARM variant (`v3`...`v8`, or `unknown`) that containerd derives from
/// `/proc/cpuinfo`, or when that has no `CPU architecture` line from the
/// kernel's machine name, on a machine whose Go architecture is `goarch`.
/// Empty when neither tells.
pub(crate) fn arm_variant_from_cpuinfo(cpuinfo: &str, machine: &str, goarch: &str) -> String {
    let mut variant = match cpuinfo_field(cpuinfo, "Cpu architecture") {
        Some(v) => v.to_string(),
        None => match arm_version_from_machine(machine) {
            Some(v) => v.to_string(),
            None => return String::new(),
        },
    };
    // Raspberry Pi ARMv6 boards report "CPU architecture: 7" (a kernel quirk).
    if goarch == "arm" && variant == "7" {
        let model = cpuinfo_field(cpuinfo, "model name").unwrap_or("");
        if model.to_lowercase().starts_with("armv6-compatible") {
            variant = "6".to_string();
        }
    }
    let v = match variant.to_lowercase().as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    };
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_arch_table() {
        let cases = [
            (("i386", "v2"), ("386", "")),
            (("x86_64", ""), ("amd64", "")),
            (("x86-64", "v1"), ("amd64", "")),
            (("AMD64", "V3"), ("amd64", "v3")),
            (("aarch64", ""), ("arm64", "")),
            (("arm64", "8"), ("arm64", "")),
            (("arm64", "v8"), ("arm64", "")),
            (("arm64", "v8.0"), ("arm64", "")),
            (("arm64", "v8.2"), ("arm64", "v8.2")),
            (("arm64", "9"), ("arm64", "v9")),
            (("arm64", "9.0"), ("arm64", "v9")),
            (("arm64", "v9.0"), ("arm64", "v9")),
            (("armhf", ""), ("arm", "v7")),
            (("armhf", "v6"), ("arm", "v7")),
            (("armel", ""), ("arm", "v6")),
            (("arm", ""), ("arm", "v7")),
            (("arm", "7"), ("arm", "v7")),
            (("arm", "5"), ("arm", "v5")),
            (("arm", "6"), ("arm", "v6")),
            (("arm", "8"), ("arm", "v8")),
            (("arm", "v4"), ("arm", "v4")),
            (("i686", ""), ("i686", "")),
            (("s390x", ""), ("s390x", "")),
        ];
        for ((arch, variant), (want_arch, want_variant)) in cases {
            assert_eq!(
                normalize_arch(arch, variant),
                (want_arch.to_string(), want_variant.to_string()),
                "{arch}/{variant}"
            );
        }
    }

    #[test]
    fn normalize_os_table() {
        assert_eq!(normalize_os("Linux"), "linux");
        assert_eq!(normalize_os("macOS"), "darwin");
        assert_eq!(normalize_os("windows"), "windows");
        assert_eq!(normalize_os(""), host_os());
    }

    #[test]
    fn arm_cpuinfo() {
        let v7 = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant_from_cpuinfo(v7, "", "arm"), "v7");
        let pi = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant_from_cpuinfo(pi, "", "arm"), "v6");
        assert_eq!(arm_variant_from_cpuinfo(pi, "", "arm64"), "v7");
        assert_eq!(arm_variant_from_cpuinfo("CPU architecture: 8\n", "", "arm64"), "v8");
        assert_eq!(arm_variant_from_cpuinfo("CPU architecture: 5TEJ\n", "", "arm"), "v5");
        assert_eq!(arm_variant_from_cpuinfo("CPU architecture: 9\n", "", "arm"), "unknown");
        assert_eq!(arm_variant_from_cpuinfo("", "", "arm"), "");
        assert_eq!(arm_variant_from_cpuinfo("processor: 0\n", "armv6l", "arm"), "v6");
        assert_eq!(arm_variant_from_cpuinfo("", "aarch64", "arm"), "v8");
        assert_eq!(arm_variant_from_cpuinfo("", "armv9", "arm"), "unknown");
    }

    /// containerd's TestGetCPUVariantFromArch.
    #[test]
    fn machine_names() {
        let cases = [
            ("aarch64", Some("8")),
            ("Armv8", Some("8")),
            ("armv7", Some("7")),
            ("armv6", Some("6")),
            ("armv5", Some("5")),
            ("armv4", Some("4")),
            ("armv3", Some("3")),
            ("armv9", Some("unknown")),
            ("armxxxx", None),
            ("armv", None),
            ("arm", None),
        ];
        for (machine, want) in cases {
            assert_eq!(arm_version_from_machine(machine), want, "{machine}");
        }
    }

    #[test]
    fn known_lists() {
        assert!(is_known_os("linux") && is_known_os("windows") && !is_known_os("arm64"));
        assert!(is_known_arch("arm64") && is_known_arch("riscv64") && !is_known_arch("linux"));
    }
}
