//! The architectures polyarch can run, with QEMU's name for each, the
//! `binfmt_misc` magic and mask that select its ELF files (as qemu's
//! scripts/qemu-binfmt-conf.sh and tonistiigi/binfmt cmd/binfmt/config.go)
//! and a probe program for it.

use polyarch_oci::Platform;
use serde::Serialize;

use crate::elf::{self, ElfSpec};
use crate::Error;

/// A CPU architecture, named as Go and OCI platforms name it.
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

/// Masks from qemu-binfmt-conf.sh as tonistiigi/binfmt uses them: the
/// OS ABI byte is ignored, and `e_type` matches both `ET_EXEC` and `ET_DYN`.
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
/// s390x is big-endian: `e_type`'s low byte is the second one.
const MASK_S390X: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff,
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
/// loongarch64 keeps only the top bits of the OS ABI byte.
const MASK_LOONG64: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff,
];

/// Instruction words in the target's byte order.
fn words(words: &[u32], big_endian: bool) -> Vec<u8> {
    words.iter().flat_map(|w| if big_endian { w.to_be_bytes() } else { w.to_le_bytes() }).collect()
}

impl Arch {
    /// Every architecture, native candidates first, in buildkit's order.
    pub const ALL: [Arch; 10] = [
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
    ];

    /// Go's name (`arm64`).
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
        }
    }

    /// QEMU's name (`aarch64`), as in `qemu-aarch64-static`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm64 => "aarch64",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Mips64le => "mips64el",
            Arch::Mips64 => "mips64",
            Arch::Loong64 => "loongarch64",
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

    /// Parses a name: Go's (`arm64`), QEMU's (`aarch64`, `qemu-aarch64`) or
    /// a platform (`linux/arm/v7`).
    pub fn parse(input: &str) -> Result<Arch, Error> {
        let s = input.trim();
        let s = s.strip_prefix("qemu-").unwrap_or(s);
        let direct = Arch::ALL.into_iter().find(|a| a.name() == s || a.qemu_name() == s);
        let alias = || match s {
            "x86-64" | "x64" => Some(Arch::Amd64),
            "i686" | "i586" | "i486" | "x86" => Some(Arch::I386),
            "armhf" | "armel" | "armv7" | "armv7l" | "armv6" | "armv6l" | "armv5" => Some(Arch::Arm),
            "ppc64el" => Some(Arch::Ppc64le),
            _ => None,
        };
        let platform = || Platform::parse(s).ok().and_then(|p| Arch::from_platform(&p));
        direct.or_else(alias).or_else(platform).ok_or_else(|| Error::UnknownArch {
            name: input.to_string(),
            known: Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
        })
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
            "powerpc64" if little => Some(Arch::Ppc64le),
            "s390x" => Some(Arch::S390x),
            "mips64" if little => Some(Arch::Mips64le),
            "mips64" => Some(Arch::Mips64),
            "loongarch64" => Some(Arch::Loong64),
            _ => None,
        }
    }

    /// Whether a `host` kernel may run this architecture without an
    /// emulator (a 32-bit compat mode); a probe decides.
    pub fn maybe_native_on(self, host: Arch) -> bool {
        self == host || matches!((host, self), (Arch::Amd64, Arch::I386) | (Arch::Arm64, Arch::Arm))
    }

    /// The bytes `binfmt_misc` compares: `e_ident`, `e_type` (`ET_EXEC`)
    /// and `e_machine` of this architecture.
    pub fn magic(self) -> [u8; 20] {
        let probe = self.probe_program();
        let mut m = [0; 20];
        m.copy_from_slice(&probe[..20]);
        m
    }

    /// Which bits of [`Arch::magic`] must match.
    pub fn mask(self) -> [u8; 20] {
        match self {
            Arch::Amd64 | Arch::I386 => MASK_X86,
            Arch::Arm64 | Arch::Arm | Arch::Riscv64 => MASK_STRICT_IDENT,
            Arch::Ppc64le => MASK_PPC64LE,
            Arch::S390x => MASK_S390X,
            Arch::Mips64le => MASK_MIPS64LE,
            Arch::Mips64 => MASK_MIPS64,
            Arch::Loong64 => MASK_LOONG64,
        }
    }

    /// The probe's ELF identity and its `exit(0)` code. Each sequence puts
    /// 0 in the first argument register and the `exit` system call number
    /// in the number register, then traps.
    pub fn probe_spec(self) -> ElfSpec {
        let (class64, big_endian, machine, flags, code) = match self {
            // mov eax, 60 (exit); xor edi, edi; syscall
            Arch::Amd64 => (true, false, 62, 0, vec![0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05]),
            // mov eax, 1 (exit); xor ebx, ebx; int 0x80
            Arch::I386 => (false, false, 3, 0, vec![0xb8, 0x01, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80]),
            // movz x0, #0; movz x8, #93 (exit); svc #0
            Arch::Arm64 => (true, false, 183, 0, words(&[0xd280_0000, 0xd280_0ba8, 0xd400_0001], false)),
            // ARM (not Thumb) state, ARMv4 encodings, EABI version 5
            // (e_flags 0x05000000): mov r0, #0; mov r7, #1 (exit); svc #0
            Arch::Arm => (false, false, 40, 0x0500_0000, words(&[0xe3a0_0000, 0xe3a0_7001, 0xef00_0000], false)),
            // addi a0, zero, 0; addi a7, zero, 93 (exit); ecall
            Arch::Riscv64 => (true, false, 243, 0, words(&[0x0000_0513, 0x05d0_0893, 0x0000_0073], false)),
            // ELFv2 ABI (e_flags 2, so the entry is code, not a function
            // descriptor): addi r0, 0, 1 (exit); addi r3, 0, 0; sc
            Arch::Ppc64le => (true, false, 21, 2, words(&[0x3800_0001, 0x3860_0000, 0x4400_0002], false)),
            // lghi %r2, 0; svc 1 (exit): 4 + 2 bytes
            Arch::S390x => (true, true, 22, 0, vec![0xa7, 0x29, 0x00, 0x00, 0x0a, 0x01]),
            // n64 ABI, MIPS64r2 (e_flags 0x80000007):
            // addiu a0, zero, 0; addiu v0, zero, 5058 (exit); syscall
            Arch::Mips64le => (true, false, 8, 0x8000_0007, words(&[0x2404_0000, 0x2402_13c2, 0x0000_000c], false)),
            Arch::Mips64 => (true, true, 8, 0x8000_0007, words(&[0x2404_0000, 0x2402_13c2, 0x0000_000c], true)),
            // LP64D ABI, object ABI v1 (e_flags 0x43):
            // addi.w $a0, $zero, 0; addi.w $a7, $zero, 93 (exit); syscall 0
            Arch::Loong64 => (true, false, 258, 0x43, words(&[0x0280_0004, 0x0281_740b, 0x002b_0000], false)),
        };
        ElfSpec { class64, big_endian, machine, flags, code }
    }

    /// A static executable for this architecture that exits with status 0.
    pub fn probe_program(self) -> Vec<u8> {
        elf::build(&self.probe_spec())
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
    fn magic_is_the_reference_table() {
        for (a, m) in REFERENCE_MAGIC {
            assert_eq!(hex(&a.magic()), m, "{a}");
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
        let err = Arch::parse("sparc").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        assert!(err.to_string().contains("riscv64"), "{err}");
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
    }
}
