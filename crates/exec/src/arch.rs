//! Whether the kernel can execute a program: natively (the ELF machine of
//! this very binary, plus i386 on x86_64) or through a binfmt_misc
//! handler whose magic and mask match the file's first bytes, as the
//! kernel's `fs/binfmt_misc.c` checks.
//!
//! runc 1.1 reports a failed `execve` only on the container's stderr, not
//! in its log, so the executor asks this module when a run exits non-zero
//! without a runtime error: a program nothing here can execute never ran,
//! which is an exec format error.

use std::path::{Path, PathBuf};

use crate::rootfs;

/// `e_machine` of x86_64 and of i386.
const EM_X86_64: u16 = 62;
const EM_386: u16 = 3;

/// The ELF machine of a file header, `None` if it is not ELF.
pub fn elf_machine(header: &[u8]) -> Option<u16> {
    if header.len() < 20 || header[..4] != [0x7f, b'E', b'L', b'F'] {
        return None;
    }
    let bytes = [header[18], header[19]];
    Some(match header[5] {
        2 => u16::from_be_bytes(bytes),
        _ => u16::from_le_bytes(bytes),
    })
}

/// A magic-type binfmt_misc registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Where the magic starts in the file.
    pub offset: usize,
    /// The bytes to match.
    pub magic: Vec<u8>,
    /// Which bits of them count (all when empty).
    pub mask: Vec<u8>,
}

impl Handler {
    /// Parses `/proc/sys/fs/binfmt_misc/NAME`; `None` for disabled or
    /// extension-type entries.
    pub fn parse(text: &str) -> Option<Handler> {
        let mut lines = text.lines();
        if lines.next()? != "enabled" {
            return None;
        }
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
        Some(Handler {
            offset: field("offset ").and_then(|o| o.parse().ok()).unwrap_or(0),
            magic: hex(field("magic ")?)?,
            mask: field("mask ").and_then(hex).unwrap_or_default(),
        })
    }

    /// Whether the file starting with `header` matches.
    pub fn matches(&self, header: &[u8]) -> bool {
        let Some(window) = header.get(self.offset..self.offset + self.magic.len()) else { return false };
        window.iter().zip(&self.magic).enumerate().all(|(i, (b, m))| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            b & mask == m & mask
        })
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The machines this host runs without emulation.
pub fn native_machines() -> Vec<u16> {
    let own = header(Path::new("/proc/self/exe")).and_then(|b| elf_machine(&b));
    match own {
        Some(EM_X86_64) => vec![EM_X86_64, EM_386],
        Some(m) => vec![m],
        None => Vec::new(),
    }
}

/// The registered, enabled binfmt_misc magic handlers.
pub fn handlers() -> Vec<Handler> {
    let Ok(rd) = std::fs::read_dir("/proc/sys/fs/binfmt_misc") else { return Vec::new() };
    rd.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).filter_map(|t| Handler::parse(&t)).collect()
}

/// Whether the file starting with `header` is an ELF program that neither
/// the host nor any handler can execute. Non-ELF files and unknown cases
/// answer `false`.
pub fn unexecutable(header: &[u8], native: &[u16], handlers: &[Handler]) -> bool {
    match elf_machine(header) {
        Some(m) => !native.contains(&m) && !handlers.iter().any(|h| h.matches(header)),
        None => false,
    }
}

/// The file `program` names in the rootfs: as given when it holds a `/`,
/// else the first match in the `PATH` of `env`.
pub fn find_program(root: &Path, program: &str, env: &[String]) -> Option<PathBuf> {
    if program.contains('/') {
        return rootfs::resolve(root, program).ok().filter(|p| p.is_file());
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(crate::spec::DEFAULT_PATH);
    let path = path.strip_prefix("PATH=").unwrap_or(path);
    path.split(':')
        .filter(|d| !d.is_empty())
        .filter_map(|d| rootfs::resolve(root, &format!("{d}/{program}")).ok())
        .find(|p| p.is_file())
}

/// The first bytes of a file (up to 128, what binfmt_misc looks at).
pub fn header(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 128];
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\nflags: PF\noffset 0\n\
        magic 7f454c4602020100000000000000000000020016\nmask fffffffffffffffcfffffffffffffffffffeffff\n";

    fn elf(class_data: [u8; 2], machine: u16, big: bool) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(&[0x7f, b'E', b'L', b'F']);
        h[4] = class_data[0];
        h[5] = class_data[1];
        h[6] = 1;
        let (t, m) =
            if big { (2u16.to_be_bytes(), machine.to_be_bytes()) } else { (2u16.to_le_bytes(), machine.to_le_bytes()) };
        h[16..18].copy_from_slice(&t);
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn binfmt_entries_parse_and_match_like_the_kernel() {
        let h = Handler::parse(S390X).unwrap();
        assert_eq!(h.offset, 0);
        assert_eq!(h.magic.len(), 20);
        let s390x = elf([2, 2], 22, true);
        assert_eq!(elf_machine(&s390x), Some(22));
        assert!(h.matches(&s390x));
        assert!(!h.matches(&elf([2, 1], 183, false)));
        assert!(!h.matches(&s390x[..10]), "too short to match");
        assert_eq!(Handler::parse(&S390X.replace("enabled", "disabled")), None);
        assert_eq!(Handler::parse("enabled\ninterpreter /x\nflags: \nextension .exe\n"), None);
    }

    #[test]
    fn unexecutable_only_when_nothing_serves_the_machine() {
        let handlers = [Handler::parse(S390X).unwrap()];
        let native = [EM_X86_64, EM_386];
        assert!(!unexecutable(&elf([2, 1], EM_X86_64, false), &native, &handlers));
        assert!(!unexecutable(&elf([1, 1], EM_386, false), &native, &handlers));
        assert!(!unexecutable(&elf([2, 2], 22, true), &native, &handlers));
        assert!(unexecutable(&elf([2, 1], 183, false), &native, &handlers), "arm64 without a handler");
        assert!(!unexecutable(b"#!/bin/sh\n", &native, &handlers), "scripts are not judged");
        assert!(native_machines().contains(&elf_machine(&header(Path::new("/proc/self/exe")).unwrap()).unwrap()));
    }

    #[test]
    fn programs_are_found_in_the_rootfs_path() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), b"x").unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        assert_eq!(find_program(r, "tool", &[]), Some(r.join("usr/bin/tool")));
        assert_eq!(find_program(r, "/bin/tool", &[]), Some(r.join("usr/bin/tool")));
        assert_eq!(find_program(r, "tool", &["PATH=/opt".to_string()]), None);
        assert_eq!(find_program(r, "missing", &[]), None);
    }
}
