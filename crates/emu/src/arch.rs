//! The architectures polyarch can run, with QEMU's name for each, the
//! `binfmt_misc` magic and mask that select its ELF files (as qemu's
//! scripts/qemu-binfmt-conf.sh and tonistiigi/binfmt cmd/binfmt/config.go)
//! and a probe program for it.

use polyarch_oci::Platform;
use serde::Serialize;

use crate::code;
use crate::elf::{self, ElfSpec};
use crate::Error;

/// A CPU architecture, named as Go and OCI platforms name it, or as
/// Debian does where Go has no name (`riscv32`, `m68k`, `alpha`, `hppa`,
/// `sh4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "&'static str")]
pub enum Arch {
    /// `amd64` (`x86_64`).
    Amd64,
    /// `386` (`i386`): native on most amd64 kernels.
    I386,
    /// `arm64` (`aarch64`).
    Arm64,
    /// `arm` (32-bit, EABI): the probe runs on v5, v6 and v7.
    Arm,
    /// `riscv64`.
    Riscv64,
    /// `ppc64le`.
    Ppc64le,
    /// `s390x`.
    S390x,
    /// `mips64le` (`mips64el`, n64 ABI).
    Mips64le,
    /// `mips64` (big-endian, n64 ABI).
    Mips64,
    /// `loong64` (`loongarch64`).
    Loong64,
    /// `mips` (32-bit big-endian, o32 ABI).
    Mips,
    /// `mipsle` (`mipsel`, o32 ABI).
    Mipsle,
    /// `ppc64` (big-endian).
    Ppc64,
    /// `ppc` (32-bit PowerPC).
    Ppc,
    /// `sparc64` (SPARC V9).
    Sparc64,
    /// `sparc` (32-bit).
    Sparc,
    /// `riscv32`.
    Riscv32,
    /// `m68k` (Motorola 680x0).
    M68k,
    /// `alpha`.
    Alpha,
    /// `hppa` (PA-RISC).
    Hppa,
    /// `sh4` (SuperH, little-endian).
    Sh4,
}

impl From<Arch> for &'static str {
    fn from(a: Arch) -> &'static str {
        a.name()
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Masks from qemu-binfmt-conf.sh as tonistiigi/binfmt and Debian use
/// them: the OS ABI byte is ignored, and `e_type` matches both `ET_EXEC`
/// and `ET_DYN`.
const MASK_STRICT_IDENT: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff,
];
/// x86 masks also accept any data encoding and version in `e_ident`.
const MASK_X86: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xfe, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff,
];
/// ppc64le ignores the high byte of `e_machine`.
const MASK_PPC64LE: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0x00,
];
/// Big-endian architectures: `e_type`'s low byte is the second one.
const MASK_STRICT_BE: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff,
    0xff,
];
/// Big-endian, checking the top bits of the ABI version (ppc, sparc).
const MASK_BE_ABI: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff,
    0xff,
];
/// Little-endian, checking the top bits of the ABI version (sh4).
const MASK_LE_ABI: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff,
];
/// mips64el ignores the ABI version byte too.
const MASK_MIPS64LE: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff,
];
/// mips64 is mips64el's mask in big-endian order.
const MASK_MIPS64: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff,
    0xff,
];
/// 32-bit mips reaches into `e_flags` (offset 36) so that n32 programs
/// (`EF_MIPS_ABI2`, 0x20) go to the n32 emulator; big-endian, 40 bytes.
const MASK_MIPS: [u8; 40] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff,
    0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
];
/// The same for little-endian mipsel: 37 bytes.
const MASK_MIPSLE: [u8; 37] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
];
/// loongarch64 keeps only the top bits of the OS ABI byte.
const MASK_LOONG64: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff,
];

/// The names [`Arch::parse`] takes besides Go's and QEMU's.
fn alias(s: &str) -> Option<Arch> {
    Some(match s {
        "x86-64" | "x64" => Arch::Amd64,
        "i686" | "i586" | "i486" | "x86" => Arch::I386,
        "armhf" | "armel" | "armv7" | "armv7l" | "armv6" | "armv6l" | "armv5" => Arch::Arm,
        "ppc64el" => Arch::Ppc64le,
        "powerpc64" => Arch::Ppc64,
        "powerpc" => Arch::Ppc,
        "parisc" => Arch::Hppa,
        _ => return None,
    })
}

impl Arch {
    /// The architectures buildkit and tonistiigi/binfmt emulate: the ones
    /// images are commonly published for.
    pub fn is_common(self) -> bool {
        Arch::ALL[..10].contains(&self)
    }

    /// Every architecture, native candidates first, in buildkit's order
    /// (the [`Arch::is_common`] ones), then the others Debian's
    /// qemu-user-static emulates.
    pub const ALL: [Arch; 21] = [
        Arch::Amd64,
        Arch::Arm64,
        Arch::Riscv64,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::I386,
        Arch::Mips64le,
        Arch::Mips64,
        Arch::Loong64,
        Arch::Arm,
        Arch::Mips,
        Arch::Mipsle,
        Arch::Ppc64,
        Arch::Ppc,
        Arch::Sparc64,
        Arch::Sparc,
        Arch::Riscv32,
        Arch::M68k,
        Arch::Alpha,
        Arch::Hppa,
        Arch::Sh4,
    ];

    /// The platform architecture name (`arm64`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::I386 => "386",
            Arch::Arm64 => "arm64",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Mips64le => "mips64le",
            Arch::Mips64 => "mips64",
            Arch::Loong64 => "loong64",
            Arch::Mips => "mips",
            Arch::Mipsle => "mipsle",
            Arch::Ppc64 => "ppc64",
            Arch::Ppc => "ppc",
            Arch::Sparc64 => "sparc64",
            Arch::Sparc => "sparc",
            Arch::Riscv32 => "riscv32",
            Arch::M68k => "m68k",
            Arch::Alpha => "alpha",
            Arch::Hppa => "hppa",
            Arch::Sh4 => "sh4",
        }
    }

    /// QEMU's name (`aarch64`), as in `qemu-aarch64-static`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm64 => "aarch64",
            Arch::Mips64le => "mips64el",
            Arch::Loong64 => "loongarch64",
            Arch::Mipsle => "mipsel",
            a => a.name(),
        }
    }

    /// The `binfmt_misc` handler name polyarch registers (`qemu-aarch64`),
    /// the same as Debian's and tonistiigi/binfmt's.
    pub fn handler_name(self) -> String {
        format!("qemu-{}", self.qemu_name())
    }

    /// The platforms this architecture runs, most specific first
    /// (`arm` runs `linux/arm/v7` and `linux/arm/v6`, as buildkit lists them).
    pub fn platforms(self) -> Vec<Platform> {
        match self {
            Arch::Arm => vec![Platform::new("linux", "arm", Some("v7")), Platform::new("linux", "arm", Some("v6"))],
            a => vec![Platform::new("linux", a.name(), None)],
        }
    }

    /// Every name [`Arch::parse`] knows, for suggestions.
    fn names() -> impl Iterator<Item = &'static str> {
        Arch::ALL.into_iter().flat_map(|a| [a.name(), a.qemu_name()])
    }

    /// Parses a name: Go's (`arm64`), QEMU's (`aarch64`, `qemu-aarch64`) or
    /// a platform (`linux/arm/v7`). An unknown one is an error that names
    /// the closest known architecture.
    pub fn parse(input: &str) -> Result<Arch, Error> {
        let s = input.trim();
        let s = s.strip_prefix("qemu-").unwrap_or(s);
        let direct = Arch::ALL.into_iter().find(|a| a.name() == s || a.qemu_name() == s);
        let platform = || Platform::parse(s).ok().and_then(|p| Arch::from_platform(&p));
        direct.or_else(|| alias(s)).or_else(platform).ok_or_else(|| Arch::unknown(input))
    }

    /// The error for an architecture (or platform) no emulator is known
    /// for, with the closest known name.
    pub fn unknown(input: &str) -> Error {
        let arch = input.trim().split('/').nth(1).unwrap_or(input.trim());
        let arch = arch.strip_prefix("qemu-").unwrap_or(arch);
        Error::UnknownArch {
            name: input.to_string(),
            suggestion: polyarch_oci::platform::closest(arch, Arch::names()).map(str::to_string),
            known: Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
        }
    }

    /// The architecture that runs `platform`, for Linux platforms.
    pub fn from_platform(platform: &Platform) -> Option<Arch> {
        let p = platform.normalize();
        if p.os != "linux" {
            return None;
        }
        if p.architecture == "arm" && !matches!(p.variant_str(), "" | "v5" | "v6" | "v7") {
            return None;
        }
        Arch::ALL.into_iter().find(|a| a.name() == p.architecture)
    }

    /// The architecture this process was compiled for.
    pub fn host() -> Option<Arch> {
        let little = cfg!(target_endian = "little");
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "x86" => Some(Arch::I386),
            "aarch64" => Some(Arch::Arm64),
            "arm" => Some(Arch::Arm),
            "riscv64" => Some(Arch::Riscv64),
            "riscv32" => Some(Arch::Riscv32),
            "powerpc64" if little => Some(Arch::Ppc64le),
            "powerpc64" => Some(Arch::Ppc64),
            "powerpc" => Some(Arch::Ppc),
            "s390x" => Some(Arch::S390x),
            "mips64" if little => Some(Arch::Mips64le),
            "mips64" => Some(Arch::Mips64),
            "mips" if little => Some(Arch::Mipsle),
            "mips" => Some(Arch::Mips),
            "sparc64" => Some(Arch::Sparc64),
            "sparc" => Some(Arch::Sparc),
            "m68k" => Some(Arch::M68k),
            "loongarch64" => Some(Arch::Loong64),
            _ => None,
        }
    }

    /// Whether a `host` kernel may run this architecture without an
    /// emulator (a 32-bit compat mode); a probe decides.
    pub fn maybe_native_on(self, host: Arch) -> bool {
        use Arch::*;
        self == host
            || matches!(
                (host, self),
                (Amd64, I386) | (Arm64, Arm) | (Ppc64, Ppc) | (Sparc64, Sparc) | (Mips64, Mips) | (Mips64le, Mipsle)
            )
    }

    /// Whether programs of this architecture run here without an emulator:
    /// it is `host`, or a compat architecture of `host` (386 on amd64) that
    /// no enabled handler of `binfmt` claims, so the kernel runs it itself.
    /// A compat architecture the CPU lacks is not told apart here (its
    /// programs fail either way without a handler).
    pub fn runs_natively_on(self, host: Arch, binfmt: &crate::BinfmtMisc) -> bool {
        if self == host {
            return true;
        }
        if !self.maybe_native_on(host) {
            return false;
        }
        let program = self.probe_program();
        match binfmt.handlers() {
            Ok(hs) => !hs.iter().any(|h| h.enabled && h.matches(&program)),
            Err(_) => true,
        }
    }

    /// The bytes `binfmt_misc` compares: `e_ident`, `e_type` (`ET_EXEC`)
    /// and `e_machine` of this architecture, then zeros as far as
    /// [`Arch::mask`] reaches (for 32-bit mips, the n32 bit of `e_flags`
    /// must be clear).
    pub fn magic(self) -> Vec<u8> {
        let mut m = self.probe_program()[..20].to_vec();
        m.resize(self.mask().len(), 0);
        m
    }

    /// Which bits of [`Arch::magic`] must match.
    pub fn mask(self) -> Vec<u8> {
        match self {
            Arch::Amd64 | Arch::I386 => MASK_X86.to_vec(),
            Arch::Arm64 | Arch::Arm | Arch::Riscv64 | Arch::Riscv32 | Arch::Alpha => MASK_STRICT_IDENT.to_vec(),
            Arch::Ppc64le => MASK_PPC64LE.to_vec(),
            Arch::S390x | Arch::M68k | Arch::Hppa => MASK_STRICT_BE.to_vec(),
            Arch::Ppc64 | Arch::Ppc | Arch::Sparc64 | Arch::Sparc => MASK_BE_ABI.to_vec(),
            Arch::Sh4 => MASK_LE_ABI.to_vec(),
            Arch::Mips64le => MASK_MIPS64LE.to_vec(),
            Arch::Mips64 => MASK_MIPS64.to_vec(),
            Arch::Mips => MASK_MIPS.to_vec(),
            Arch::Mipsle => MASK_MIPSLE.to_vec(),
            Arch::Loong64 => MASK_LOONG64.to_vec(),
        }
    }

    /// The probe's ELF identity and code (see [`crate::code`]):
    /// `(ELF64, big-endian, e_machine, e_flags)`.
    pub fn probe_spec(self) -> ElfSpec {
        let (class64, big_endian, machine, flags, code) = match self {
            Arch::Amd64 => (true, false, 62, 0, code::AMD64),
            Arch::I386 => (false, false, 3, 0, code::I386),
            Arch::Arm64 => (true, false, 183, 0, code::ARM64),
            // ARM (not Thumb) state, ARMv4 encodings, EABI version 5.
            Arch::Arm => (false, false, 40, 0x0500_0000, code::ARM),
            Arch::Riscv64 => (true, false, 243, 0, code::RISCV64),
            Arch::Riscv32 => (false, false, 243, 0, code::RISCV32),
            // ELFv2 ABI (e_flags 2): the entry is code, not a function
            // descriptor, in both byte orders.
            Arch::Ppc64le => (true, false, 21, 2, code::PPC64LE),
            Arch::Ppc64 => (true, true, 21, 2, code::PPC64),
            Arch::Ppc => (false, true, 20, 0, code::PPC),
            Arch::S390x => (true, true, 22, 0, code::S390X),
            // n64 ABI, MIPS64r2 (e_flags 0x80000007).
            Arch::Mips64le => (true, false, 8, 0x8000_0007, code::MIPS64LE),
            Arch::Mips64 => (true, true, 8, 0x8000_0007, code::MIPS64),
            // o32 ABI, MIPS32r2 (e_flags 0x70001007, no EF_MIPS_ABI2).
            Arch::Mips => (false, true, 8, 0x7000_1007, code::MIPS),
            Arch::Mipsle => (false, false, 8, 0x7000_1007, code::MIPSLE),
            // LP64D ABI, object ABI v1 (e_flags 0x43).
            Arch::Loong64 => (true, false, 258, 0x43, code::LOONG64),
            Arch::Sparc64 => (true, true, 43, 0, code::SPARC64),
            Arch::Sparc => (false, true, 2, 0, code::SPARC),
            Arch::M68k => (false, true, 4, 0, code::M68K),
            Arch::Alpha => (true, false, 0x9026, 0, code::ALPHA),
            // PA-RISC 1.1 (e_flags 0x210).
            Arch::Hppa => (false, true, 15, 0x210, code::HPPA),
            Arch::Sh4 => (false, false, 42, 0, code::SH4),
        };
        ElfSpec { class64, big_endian, machine, flags, code: code.to_vec() }
    }

    /// A static executable for this architecture that checks `argv[0]`
    /// and re-executes itself (see [`crate::code`]).
    pub fn probe_program(self) -> Vec<u8> {
        elf::build(&self.probe_spec())
    }
}

impl Arch {
    /// The architecture whose programs start with `header` (at least the
    /// first 20 bytes of a file), as binfmt_misc would tell: the one whose
    /// [`Arch::magic`] matches under its [`Arch::mask`]. Executables and
    /// shared objects both match; `None` for anything else.
    pub fn of_elf(header: &[u8]) -> Option<Arch> {
        type Table = Vec<(Arch, Vec<u8>, Vec<u8>)>;
        static MAGIC: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
        let table = MAGIC.get_or_init(|| Arch::ALL.iter().map(|a| (*a, a.magic(), a.mask())).collect());
        if !header.starts_with(b"\x7fELF") {
            return None;
        }
        table.iter().find(|(_, magic, mask)| magic_matches(header, 0, magic, Some(mask))).map(|(a, _, _)| *a)
    }
}

/// Whether `header` matches `magic` under `mask` at `offset`, as the
/// kernel compares them (a missing mask compares every bit).
pub fn magic_matches(header: &[u8], offset: usize, magic: &[u8], mask: Option<&[u8]>) -> bool {
    let Some(window) = header.get(offset..offset + magic.len()) else {
        return false;
    };
    window.iter().zip(magic).enumerate().all(|(i, (&b, &m))| {
        let k = mask.and_then(|mk| mk.get(i).copied()).unwrap_or(0xff);
        b & k == m & k
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architectures_programs_are_told_apart() {
        for a in Arch::ALL {
            assert_eq!(Arch::of_elf(&a.probe_program()), Some(a), "{a:?}");
        }
        // A shared object (ET_DYN) is the architecture's too.
        let mut dyn_obj = Arch::Arm64.probe_program();
        dyn_obj[16] = 3;
        assert_eq!(Arch::of_elf(&dyn_obj), Some(Arch::Arm64));
        assert_eq!(Arch::of_elf(b"#!/bin/sh\necho not a program\n"), None);
        assert_eq!(Arch::of_elf(b"\x7fELF"), None, "too short to tell");
    }

    /// The magic strings of tonistiigi/binfmt's config.go, decoded.
    const REFERENCE_MAGIC: [(Arch, &str); 10] = [
        (Arch::Amd64, "7f454c4602010100000000000000000002003e00"),
        (Arch::Arm64, "7f454c460201010000000000000000000200b700"),
        (Arch::Arm, "7f454c4601010100000000000000000002002800"),
        (Arch::S390x, "7f454c4602020100000000000000000000020016"),
        (Arch::Ppc64le, "7f454c4602010100000000000000000002001500"),
        (Arch::Riscv64, "7f454c460201010000000000000000000200f300"),
        (Arch::I386, "7f454c4601010100000000000000000002000300"),
        (Arch::Mips64le, "7f454c4602010100000000000000000002000800"),
        (Arch::Mips64, "7f454c4602020100000000000000000000020008"),
        (Arch::Loong64, "7f454c4602010100000000000000000002000201"),
    ];

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn a_compat_architecture_runs_natively_unless_a_handler_claims_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let binfmt = crate::BinfmtMisc::new(dir.path());
        assert!(Arch::Amd64.runs_natively_on(Arch::Amd64, &binfmt));
        assert!(Arch::I386.runs_natively_on(Arch::Amd64, &binfmt));
        assert!(!Arch::Arm64.runs_natively_on(Arch::Amd64, &binfmt));
        assert!(!Arch::I386.runs_natively_on(Arch::Arm64, &binfmt));
        let handler = |state: &str| {
            format!(
                "{state}\ninterpreter /usr/libexec/qemu-binfmt/i386-binfmt-P\nflags: POCF\noffset 0\nmagic {}\nmask {}\n",
                hex(&Arch::I386.magic()),
                hex(&Arch::I386.mask())
            )
        };
        std::fs::write(dir.path().join("qemu-i386"), handler("enabled")).unwrap();
        assert!(!Arch::I386.runs_natively_on(Arch::Amd64, &binfmt), "an enabled qemu-i386 handler runs 386 programs");
        std::fs::write(dir.path().join("qemu-i386"), handler("disabled")).unwrap();
        assert!(Arch::I386.runs_natively_on(Arch::Amd64, &binfmt));
    }

    /// Magic and mask of Debian 12's qemu-user-static handlers
    /// (/proc/sys/fs/binfmt_misc/qemu-*) for the architectures
    /// tonistiigi/binfmt does not register.
    const DEBIAN: [(Arch, &str, &str); 11] = [
        (
            Arch::Mips,
            "7f454c46010201000000000000000000000200080000000000000000000000000000000000000000",
            "ffffffffffffff00fefffffffffffffffffeffff0000000000000000000000000000000000000020",
        ),
        (
            Arch::Mipsle,
            "7f454c46010101000000000000000000020008000000000000000000000000000000000000",
            "ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020",
        ),
        (Arch::Ppc64, "7f454c4602020100000000000000000000020015", "fffffffffffffffcfffffffffffffffffffeffff"),
        (Arch::Ppc, "7f454c4601020100000000000000000000020014", "fffffffffffffffcfffffffffffffffffffeffff"),
        (Arch::Sparc64, "7f454c460202010000000000000000000002002b", "fffffffffffffffcfffffffffffffffffffeffff"),
        (Arch::Sparc, "7f454c4601020100000000000000000000020002", "fffffffffffffffcfffffffffffffffffffeffff"),
        (Arch::Riscv32, "7f454c460101010000000000000000000200f300", "ffffffffffffff00fffffffffffffffffeffffff"),
        (Arch::M68k, "7f454c4601020100000000000000000000020004", "ffffffffffffff00fffffffffffffffffffeffff"),
        (Arch::Alpha, "7f454c4602010100000000000000000002002690", "ffffffffffffff00fffffffffffffffffeffffff"),
        (Arch::Hppa, "7f454c460102010000000000000000000002000f", "ffffffffffffff00fffffffffffffffffffeffff"),
        (Arch::Sh4, "7f454c4601010100000000000000000002002a00", "fffffffffffffffcfffffffffffffffffeffffff"),
    ];

    #[test]
    fn magic_is_the_reference_table() {
        for (a, m) in REFERENCE_MAGIC {
            assert_eq!(hex(&a.magic()), m, "{a}");
        }
        for (a, m, k) in DEBIAN {
            assert_eq!((hex(&a.magic()), hex(&a.mask())), (m.to_string(), k.to_string()), "{a}");
        }
    }

    #[test]
    fn every_probe_fits_before_its_path() {
        for a in Arch::ALL {
            let spec = a.probe_spec();
            let header = if spec.class64 { 64 + 56 } else { 52 + 32 };
            assert!(header + spec.code.len() <= crate::elf::PATH_OFFSET as usize, "{a}");
            assert!(spec.code.len() % 2 == 0 || a == Arch::Amd64 || a == Arch::I386 || a == Arch::M68k, "{a}");
        }
    }

    #[test]
    fn each_probe_matches_only_its_own_handler() {
        for a in Arch::ALL {
            let probe = a.probe_program();
            for b in Arch::ALL {
                let hit = magic_matches(&probe, 0, &b.magic(), Some(&b.mask()));
                assert_eq!(hit, a == b, "probe {a} vs handler {b}");
            }
        }
    }

    #[test]
    fn debian_masks_also_match_probes() {
        // /proc/sys/fs/binfmt_misc/qemu-aarch64 and qemu-mips64el as Debian
        // 12's qemu-user-static registers them.
        let m = |s: &str| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
        let aarch64: (Vec<u8>, Vec<u8>) =
            (m("7f454c460201010000000000000000000200b700"), m("ffffffffffffff00fffffffffffffffffeffffff"));
        assert!(magic_matches(&Arch::Arm64.probe_program(), 0, &aarch64.0, Some(&aarch64.1)));
        let mips: (Vec<u8>, Vec<u8>) =
            (m("7f454c4602010100000000000000000002000800"), m("ffffffffffffff00fefffffffffffffffeffffff"));
        assert!(magic_matches(&Arch::Mips64le.probe_program(), 0, &mips.0, Some(&mips.1)));
        assert!(!magic_matches(&Arch::Mips64.probe_program(), 0, &mips.0, Some(&mips.1)));
    }

    #[test]
    fn parse_names() {
        assert_eq!(Arch::parse("arm64").unwrap(), Arch::Arm64);
        assert_eq!(Arch::parse("aarch64").unwrap(), Arch::Arm64);
        assert_eq!(Arch::parse("qemu-aarch64").unwrap(), Arch::Arm64);
        assert_eq!(Arch::parse("linux/arm/v7").unwrap(), Arch::Arm);
        assert_eq!(Arch::parse("linux/arm/v5").unwrap(), Arch::Arm);
        assert_eq!(Arch::parse("386").unwrap(), Arch::I386);
        assert_eq!(Arch::parse("x86_64").unwrap(), Arch::Amd64);
        assert_eq!(Arch::parse("mips64el").unwrap(), Arch::Mips64le);
        assert_eq!(Arch::parse("loongarch64").unwrap(), Arch::Loong64);
        assert_eq!(Arch::parse("linux/ppc64le").unwrap(), Arch::Ppc64le);
        assert_eq!(Arch::parse("sparc64").unwrap(), Arch::Sparc64);
        assert_eq!(Arch::parse("mipsel").unwrap(), Arch::Mipsle);
        assert_eq!(Arch::parse("qemu-hppa").unwrap(), Arch::Hppa);
        assert_eq!(Arch::parse("linux/sh4").unwrap(), Arch::Sh4);
        let err = Arch::parse("amd46").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        assert!(err.to_string().contains("did you mean \"amd64\"?"), "{err}");
        assert!(err.to_string().contains("riscv64"), "{err}");
        let err = Arch::parse("linux/arm65").unwrap_err();
        assert!(err.to_string().contains("\"linux/arm65\"") && err.to_string().contains("\"arm64\""), "{err}");
        assert!(Arch::from_platform(&Platform::new("windows", "amd64", None)).is_none());
        assert!(Arch::from_platform(&Platform::new("linux", "arm", Some("v8"))).is_none());
    }

    #[test]
    fn platforms_and_handler_names() {
        let arm: Vec<String> = Arch::Arm.platforms().iter().map(|p| p.format()).collect();
        assert_eq!(arm, ["linux/arm/v7", "linux/arm/v6"]);
        assert_eq!(Arch::Arm64.platforms()[0].format(), "linux/arm64");
        assert_eq!(Arch::Mips64le.handler_name(), "qemu-mips64el");
        assert!(Arch::I386.maybe_native_on(Arch::Amd64));
        assert!(!Arch::Arm64.maybe_native_on(Arch::Amd64));
        assert!(Arch::Arm.is_common() && Arch::Loong64.is_common() && !Arch::Sparc64.is_common());
    }
}
