//! The fuzz target of layer unpacking, shared by `tests/fuzz.rs` (bounded,
//! under `cargo test`) and the cargo-fuzz targets under `fuzz/`.

use std::path::{Path, PathBuf};

use polyarch_snapshot::{unpack_compressed, UnpackOptions};

/// Names the structured entries are made of; an entry that escaped its
/// root would land at one of `/a`, `/b`, `/c` or beside the root.
const PARTS: [&str; 8] = ["a", "b", "..", ".", "c", ".wh.a", ".wh..wh..opq", ""];

fn path_of(byte: u8, byte2: u8, absolute: bool) -> String {
    let mut s = String::from(if absolute { "/" } else { "" });
    let bits = u16::from(byte) | u16::from(byte2) << 8;
    for i in 0..1 + (bits >> 12) as usize % 4 {
        if i > 0 {
            s.push('/');
        }
        s.push_str(PARTS[(bits >> (3 * i)) as usize & 7]);
    }
    s
}

fn octal(field: &mut [u8], v: u64) {
    let n = field.len() - 1;
    let s = format!("{v:0n$o}");
    let b = s.as_bytes();
    field[..n].copy_from_slice(&b[b.len() - n..]);
    field[n] = 0;
}

fn header(name: &[u8], kind: u8, size: usize, link: &[u8], mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    checksum(&mut h);
    h
}

fn checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u64 = h[..512].iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
}

fn push(out: &mut Vec<u8>, h: [u8; 512], data: &[u8]) {
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Builds a tar from 7-byte entry records: kind, two name bytes, link
/// bytes, content length, content byte, mode.
pub fn structured(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in input.chunks(7) {
        let b = |i: usize| r.get(i).copied().unwrap_or(0);
        let name = path_of(b(1), b(2), b(6) & 0x80 != 0);
        let link = path_of(b(3), b(2), b(6) & 0x40 != 0);
        let data = vec![b(5); b(4) as usize];
        let mode = u32::from(b(6)) << 3 | 0o400;
        let h = match b(0) % 9 {
            0 => header(name.as_bytes(), b'0', data.len(), b"", mode),
            1 => header(name.as_bytes(), b'5', 0, b"", mode),
            2 => header(name.as_bytes(), b'2', 0, link.as_bytes(), mode),
            3 => header(name.as_bytes(), b'1', 0, link.as_bytes(), mode),
            4 => header(format!("{name}/.wh.{}", PARTS[b(3) as usize & 7]).as_bytes(), b'0', 0, b"", mode),
            5 => header(format!("{name}/.wh..wh..opq").as_bytes(), b'0', 0, b"", mode),
            6 => header(name.as_bytes(), b'6', 0, b"", mode),
            7 => {
                let rec = format!(" SCHILY.xattr.user.{}={}\n", PARTS[b(3) as usize & 7], link);
                let rec = format!("{}{rec}", rec.len() + (rec.len() + 2).to_string().len());
                push(&mut out, header(b"pax", b'x', rec.len(), b"", 0o644), rec.as_bytes());
                header(name.as_bytes(), b'0', data.len(), b"", mode)
            }
            _ => {
                let long = format!("{}/{}", name, "n".repeat(b(4) as usize));
                push(
                    &mut out,
                    header(b"././@LongLink", b'L', long.len() + 1, b"", 0o644),
                    &[long.as_bytes(), b"\0"].concat(),
                );
                header(b"placeholder", b'0', data.len(), b"", mode)
            }
        };
        push(&mut out, h, &data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Rewrites the checksum of every header block a reader would meet.
pub fn fix_checksums(mut v: Vec<u8>) -> Vec<u8> {
    let mut at = 0;
    while at + 512 <= v.len() {
        let block = &v[at..at + 512];
        if block.iter().all(|b| *b == 0) {
            at += 512;
            continue;
        }
        let size = std::str::from_utf8(&block[124..135])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok())
            .unwrap_or(0);
        checksum(&mut v[at..at + 512]);
        at += 512 + (size.min(1 << 20) as usize).div_ceil(512) * 512;
    }
    v
}

pub fn escaped_names() -> Vec<PathBuf> {
    ["a", "b", "c"].iter().map(|n| Path::new("/").join(n)).collect()
}

/// Tokens for tar headers.
pub const UNPACK_DICT: &[&str] =
    &["ustar\0", "00", "././@LongLink", ".wh.", ".wh..wh..opq", "../", "/", "SCHILY.xattr.", "path="];

/// Unpacks a raw or structured input (see the test file's docs) into a
/// fresh directory; panics if anything lands outside it.
pub fn unpack(input: &[u8]) {
    let outside: Vec<PathBuf> = escaped_names().into_iter().filter(|p| p.symlink_metadata().is_err()).collect();
    let opts = UnpackOptions::new().with_special_files(false).with_same_owner(false);
    let tar = match input.strip_prefix(b"S") {
        Some(rest) => structured(rest),
        None => fix_checksums(input.to_vec()),
    };
    // In memory when possible: thousands of cases, each a fresh tree.
    let shm = Path::new("/dev/shm");
    let case = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("tempdir");
    let root = case.path().join("root");
    std::fs::create_dir(&root).expect("root");
    let _ = unpack_compressed(&tar[..], &root, &opts);
    let beside: Vec<_> = std::fs::read_dir(case.path()).expect("case dir").filter_map(Result::ok).collect();
    assert_eq!(beside.len(), 1, "an entry was written beside the root: {beside:?}");
    for p in &outside {
        assert!(p.symlink_metadata().is_err(), "an entry escaped to {}", p.display());
    }
}
