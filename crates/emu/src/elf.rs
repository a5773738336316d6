//! Minimal ELF executables and ELF inspection.
//!
//! A probe is the smallest file the kernel (or QEMU) will execute: an ELF
//! header, one program header, a few instructions (see [`crate::code`])
//! and the path they re-execute. The whole file is mapped read+execute at
//! [`LOAD_ADDR`]:
//!
//! ```text
//! offset 0            ELF header      (52 bytes for ELF32, 64 for ELF64)
//! offset ehsize       PT_LOAD header  (32 bytes for ELF32, 56 for ELF64)
//! offset ehsize+phsz  machine code    (entry point = LOAD_ADDR + offset)
//! offset PATH_OFFSET  "/proc/self/exe\0" (at PATH_ADDR)
//! ```
//!
//! Both header sizes are multiples of 4, so the code is aligned for every
//! instruction set used here.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::Error;

/// Where probes are loaded: above `vm.mmap_min_addr`, and a multiple of
/// every page size in use (4 KiB, 16 KiB on loongarch64, 64 KiB on ppc64le).
pub const LOAD_ADDR: u64 = 0x40_0000;

/// Where the path the probes re-execute starts in the file.
pub const PATH_OFFSET: u64 = 0x100;
/// Its address once loaded: the constant the probes' code loads.
pub const PATH_ADDR: u64 = LOAD_ADDR + PATH_OFFSET;
/// The path, NUL-terminated.
const PATH: &[u8] = b"/proc/self/exe\0";

/// `ET_EXEC`.
const ET_EXEC: u16 = 2;
/// `PT_LOAD`.
const PT_LOAD: u32 = 1;
/// `PT_INTERP`.
const PT_INTERP: u32 = 3;
/// `PF_R | PF_X`.
const PF_RX: u32 = 4 | 1;
/// Segment alignment: the largest page size of the architectures above.
const SEGMENT_ALIGN: u64 = 0x1_0000;

/// What varies between the probes: the ELF identity and the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSpec {
    /// ELF64 (`ELFCLASS64`) rather than ELF32.
    pub class64: bool,
    /// Big-endian (`ELFDATA2MSB`) rather than little-endian.
    pub big_endian: bool,
    /// `e_machine` (`EM_AARCH64` = 183...).
    pub machine: u16,
    /// `e_flags` (the ABI, e.g. ARM EABI version 5 or the ppc64 ELFv2 ABI).
    pub flags: u32,
    /// The machine code run at the entry point.
    pub code: Vec<u8>,
}

/// Appends integers in one byte order.
struct Out {
    buf: Vec<u8>,
    big: bool,
}

impl Out {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    /// An address-sized field: 4 bytes in ELF32, 8 in ELF64.
    fn addr(&mut self, class64: bool, v: u64) {
        if class64 {
            self.u64(v);
        } else {
            // Every value written here is below 4 GiB.
            self.u32(v as u32);
        }
    }
}

/// `(e_ehsize, e_phentsize, e_shentsize)` for a class.
fn sizes(class64: bool) -> (u16, u16, u16) {
    if class64 {
        (64, 56, 64)
    } else {
        (52, 32, 40)
    }
}

/// Builds an executable from `spec`, laid out as described in the module
/// documentation; code that would overlap the path is cut short there
/// (a unit test keeps every probe well below).
pub fn build(spec: &ElfSpec) -> Vec<u8> {
    let (ehsize, phentsize, shentsize) = sizes(spec.class64);
    let code_off = u64::from(ehsize) + u64::from(phentsize);
    let total = PATH_OFFSET + PATH.len() as u64;
    let mut o = Out { buf: Vec::with_capacity(total as usize), big: spec.big_endian };
    // e_ident: magic, class, data, EV_CURRENT, ELFOSABI_SYSV, ABI version 0, padding.
    o.buf.extend_from_slice(b"\x7fELF");
    o.buf.push(if spec.class64 { 2 } else { 1 });
    o.buf.push(if spec.big_endian { 2 } else { 1 });
    o.buf.push(1);
    o.buf.extend_from_slice(&[0; 9]);
    o.u16(ET_EXEC); // e_type
    o.u16(spec.machine); // e_machine
    o.u32(1); // e_version
    o.addr(spec.class64, LOAD_ADDR + code_off); // e_entry
    o.addr(spec.class64, u64::from(ehsize)); // e_phoff: right after this header
    o.addr(spec.class64, 0); // e_shoff: no sections
    o.u32(spec.flags); // e_flags
    o.u16(ehsize); // e_ehsize
    o.u16(phentsize); // e_phentsize
    o.u16(1); // e_phnum
    o.u16(shentsize); // e_shentsize
    o.u16(0); // e_shnum
    o.u16(0); // e_shstrndx (SHN_UNDEF)
              // The one program header: the whole file, read+execute, at LOAD_ADDR.
              // ELF64 moves p_flags up to the second field.
    o.u32(PT_LOAD);
    if spec.class64 {
        o.u32(PF_RX);
    }
    o.addr(spec.class64, 0); // p_offset
    o.addr(spec.class64, LOAD_ADDR); // p_vaddr
    o.addr(spec.class64, LOAD_ADDR); // p_paddr
    o.addr(spec.class64, total); // p_filesz
    o.addr(spec.class64, total); // p_memsz
    if !spec.class64 {
        o.u32(PF_RX);
    }
    o.addr(spec.class64, SEGMENT_ALIGN); // p_align
    o.buf.extend_from_slice(&spec.code);
    o.buf.resize(PATH_OFFSET as usize, 0);
    o.buf.extend_from_slice(PATH);
    o.buf
}

/// What [`inspect`] learns about an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// ELF64 rather than ELF32.
    pub class64: bool,
    /// Big-endian.
    pub big_endian: bool,
    /// `e_type`.
    pub file_type: u16,
    /// `e_machine`.
    pub machine: u16,
    /// `e_entry`.
    pub entry: u64,
    /// The program interpreter (`PT_INTERP`), `None` for a static binary.
    pub interpreter: Option<String>,
}

impl ElfInfo {
    /// Whether the file runs without a dynamic loader, which the `F` flag
    /// needs to work inside a container's root file system.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
    }
}

/// Reads integers in the file's byte order.
struct In<'a> {
    b: &'a [u8],
    big: bool,
}

impl In<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let a: [u8; 2] = self.b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let a: [u8; 4] = self.b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let a: [u8; 8] = self.b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
    fn addr(&self, class64: bool, at: usize) -> Option<u64> {
        if class64 {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
}

/// The fixed fields of an ELF header, and where the program headers are.
struct Header {
    info: ElfInfo,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
}

fn parse_header(b: &[u8]) -> Result<Header, String> {
    if b.len() < 52 || &b[..4] != b"\x7fELF" {
        return Err("no ELF magic".to_string());
    }
    let class64 = match b[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let big = match b[5] {
        1 => false,
        2 => true,
        d => return Err(format!("unknown ELF data encoding {d}")),
    };
    let r = In { b, big };
    let short = || "truncated ELF header".to_string();
    let (phoff, phentsize, phnum) = if class64 {
        (r.u64(32).ok_or_else(short)?, r.u16(54).ok_or_else(short)?, r.u16(56).ok_or_else(short)?)
    } else {
        (u64::from(r.u32(28).ok_or_else(short)?), r.u16(42).ok_or_else(short)?, r.u16(44).ok_or_else(short)?)
    };
    let info = ElfInfo {
        class64,
        big_endian: big,
        file_type: r.u16(16).ok_or_else(short)?,
        machine: r.u16(18).ok_or_else(short)?,
        entry: r.addr(class64, 24).ok_or_else(short)?,
        interpreter: None,
    };
    Ok(Header { info, phoff, phentsize, phnum })
}

/// Reads an ELF file's header and program headers (not the whole file:
/// emulators are several megabytes) and finds its `PT_INTERP`.
pub fn inspect(path: &Path) -> Result<ElfInfo, Error> {
    let bad = |reason: String| Error::Elf { path: path.to_path_buf(), reason };
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(64);
    (&mut f).take(64).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    let h = parse_header(&head).map_err(bad)?;
    let (class64, big) = (h.info.class64, h.info.big_endian);
    let min = if class64 { 56 } else { 32 };
    if h.phnum > 0 && usize::from(h.phentsize) < min {
        return Err(bad(format!("program header size {} too small", h.phentsize)));
    }
    let len = usize::from(h.phentsize) * usize::from(h.phnum);
    let mut ph = vec![0; len];
    f.seek(SeekFrom::Start(h.phoff)).and_then(|_| f.read_exact(&mut ph)).map_err(|e| Error::io(path, e))?;
    let r = In { b: &ph, big };
    let mut info = h.info;
    for i in 0..usize::from(h.phnum) {
        let at = i * usize::from(h.phentsize);
        let short = || bad("truncated program header".to_string());
        if r.u32(at).ok_or_else(short)? != PT_INTERP {
            continue;
        }
        let (off, size) = if class64 {
            (r.u64(at + 8).ok_or_else(short)?, r.u64(at + 32).ok_or_else(short)?)
        } else {
            (u64::from(r.u32(at + 4).ok_or_else(short)?), u64::from(r.u32(at + 16).ok_or_else(short)?))
        };
        let mut s = Vec::new();
        f.seek(SeekFrom::Start(off))
            .and_then(|_| (&mut f).take(size.min(4096)).read_to_end(&mut s))
            .map_err(|e| Error::io(path, e))?;
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        info.interpreter = Some(String::from_utf8_lossy(&s[..end]).into_owned());
        break;
    }
    Ok(info)
}

/// Parses the ELF header of in-memory bytes (no program header walk).
pub fn header_info(bytes: &[u8]) -> Option<ElfInfo> {
    parse_header(bytes).ok().map(|h| h.info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(class64: bool, big_endian: bool) -> ElfSpec {
        ElfSpec { class64, big_endian, machine: 0x1234, flags: 0x0500_0000, code: vec![1, 2, 3, 4, 5, 6] }
    }

    #[test]
    fn elf64_layout() {
        let b = build(&spec(true, false));
        assert_eq!(b.len(), 0x100 + 15);
        assert_eq!(&b[..8], b"\x7fELF\x02\x01\x01\x00");
        assert_eq!(&b[16..20], &[2, 0, 0x34, 0x12]);
        let info = header_info(&b).expect("header");
        assert_eq!(info.entry, LOAD_ADDR + 120);
        assert!(info.class64 && !info.big_endian);
        // p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz.
        assert_eq!(u32::from_le_bytes(b[64..68].try_into().unwrap()), PT_LOAD);
        assert_eq!(u32::from_le_bytes(b[68..72].try_into().unwrap()), PF_RX);
        assert_eq!(u64::from_le_bytes(b[72..80].try_into().unwrap()), 0);
        assert_eq!(u64::from_le_bytes(b[80..88].try_into().unwrap()), LOAD_ADDR);
        assert_eq!(u64::from_le_bytes(b[96..104].try_into().unwrap()), b.len() as u64);
        assert_eq!(u64::from_le_bytes(b[104..112].try_into().unwrap()), b.len() as u64);
        assert_eq!(&b[120..126], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&b[0x100..], b"/proc/self/exe\0");
    }

    #[test]
    fn elf32_big_endian_layout() {
        let b = build(&spec(false, true));
        assert_eq!(b.len(), 0x100 + 15);
        assert_eq!(&b[..8], b"\x7fELF\x01\x02\x01\x00");
        assert_eq!(&b[16..20], &[0, 2, 0x12, 0x34]);
        assert_eq!(u32::from_be_bytes(b[24..28].try_into().unwrap()), (LOAD_ADDR + 84) as u32);
        assert_eq!(u32::from_be_bytes(b[36..40].try_into().unwrap()), 0x0500_0000);
        // p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags.
        assert_eq!(u32::from_be_bytes(b[52..56].try_into().unwrap()), PT_LOAD);
        assert_eq!(u32::from_be_bytes(b[60..64].try_into().unwrap()), LOAD_ADDR as u32);
        assert_eq!(u32::from_be_bytes(b[68..72].try_into().unwrap()), b.len() as u32);
        assert_eq!(u32::from_be_bytes(b[76..80].try_into().unwrap()), PF_RX);
    }

    #[test]
    fn inspect_finds_no_interpreter_in_a_probe() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("probe");
        std::fs::write(&p, build(&spec(true, true))).unwrap();
        let info = inspect(&p).unwrap();
        assert!(info.is_static());
        assert_eq!(info.machine, 0x1234);
        assert!(info.big_endian);
    }

    #[test]
    fn inspect_finds_the_interpreter_of_a_dynamic_binary() {
        // The test binary itself is dynamically linked on glibc hosts.
        let exe = std::env::current_exe().unwrap();
        let info = inspect(&exe).unwrap();
        let ld = info.interpreter.as_deref();
        assert!(ld.is_some_and(|s| s.starts_with('/') && s.contains("ld")), "{info:?}");
    }

    #[test]
    fn inspect_rejects_non_elf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        let err = inspect(&p).unwrap_err();
        assert!(err.to_string().contains("no ELF magic"), "{err}");
    }
}
