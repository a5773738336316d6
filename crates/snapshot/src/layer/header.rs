//! One layer entry and its ustar header plus PAX records.

use std::io;

use super::Meta;
use crate::unpack::meta::PAX_XATTR;

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink { target: Vec<u8> },
    Hardlink { target: Vec<u8> },
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Fifo,
}

impl EntryKind {
    pub(crate) fn size(&self) -> u64 {
        match self {
            EntryKind::File { size } => *size,
            _ => 0,
        }
    }
}

/// A layer entry: a relative path without `./` or a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarEntry {
    pub(crate) path: Vec<u8>,
    pub(crate) kind: EntryKind,
    pub(crate) meta: Meta,
}

impl TarEntry {
    /// An empty regular file named `dir/.wh.name` that deletes `dir/name`.
    pub(crate) fn whiteout(path: Vec<u8>) -> TarEntry {
        TarEntry { path, kind: EntryKind::File { size: 0 }, meta: Meta::file().with_mode(0) }
    }
}

/// Largest value a 12-byte octal ustar field holds.
const MAX_OCTAL_11: u64 = 0o77777777777;
/// Largest value an 8-byte octal ustar field holds.
const MAX_OCTAL_7: u64 = 0o7777777;

type Pax = Vec<(String, Vec<u8>)>;

/// The header for `e` with `mtime`, and the PAX records it needs.
pub(crate) fn build(e: &TarEntry, mtime: i64) -> io::Result<(tar::Header, Pax)> {
    let mut h = tar::Header::new_ustar();
    let mut pax: Pax = Vec::new();
    let mut name = e.path.clone();
    if e.kind == EntryKind::Dir {
        name.push(b'/');
    }
    if !set_name(&mut h, &name) {
        pax.push(("path".into(), name.clone()));
        set_name(&mut h, truncate(&name, 100));
    }
    h.set_entry_type(match e.kind {
        EntryKind::Dir => tar::EntryType::Directory,
        EntryKind::File { .. } => tar::EntryType::Regular,
        EntryKind::Symlink { .. } => tar::EntryType::Symlink,
        EntryKind::Hardlink { .. } => tar::EntryType::Link,
        EntryKind::Char { .. } => tar::EntryType::Char,
        EntryKind::Block { .. } => tar::EntryType::Block,
        EntryKind::Fifo => tar::EntryType::Fifo,
    });
    if let EntryKind::Symlink { target } | EntryKind::Hardlink { target } = &e.kind {
        if target.len() > 100 {
            pax.push(("linkpath".into(), target.clone()));
            h.set_link_name_literal(truncate(target, 100))?;
        } else {
            h.set_link_name_literal(target)?;
        }
    }
    if let EntryKind::Char { major, minor } | EntryKind::Block { major, minor } = e.kind {
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
    }
    h.set_mode(e.meta.mode & 0o7777);
    for (key, id) in [("uid", e.meta.uid), ("gid", e.meta.gid)] {
        let v = u64::from(id);
        if v > MAX_OCTAL_7 {
            pax.push((key.into(), v.to_string().into_bytes()));
        }
        let v = v.min(MAX_OCTAL_7);
        if key == "uid" {
            h.set_uid(v)
        } else {
            h.set_gid(v)
        }
    }
    let size = e.kind.size();
    if size > MAX_OCTAL_11 {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    h.set_size(size);
    let mtime = mtime.max(0) as u64;
    if mtime > MAX_OCTAL_11 {
        pax.push(("mtime".into(), mtime.to_string().into_bytes()));
    }
    h.set_mtime(mtime.min(MAX_OCTAL_11));
    for (k, v) in &e.meta.xattrs {
        pax.push((format!("{PAX_XATTR}{k}"), v.clone()));
    }
    h.set_cksum();
    Ok((h, pax))
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

/// Stores `name` in the ustar name field, splitting it into prefix and
/// name at a `/` when it is longer than 100 bytes. False when it does not
/// fit, or is not ASCII (PAX carries those exactly).
fn set_name(h: &mut tar::Header, name: &[u8]) -> bool {
    let Some(u) = h.as_ustar_mut() else { return false };
    u.name.fill(0);
    u.prefix.fill(0);
    if !name.is_ascii() {
        return false;
    }
    if name.len() <= u.name.len() {
        u.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // The split point: a '/' with at most 155 bytes before it and at
    // most 100 after.
    let limit = u.prefix.len().min(name.len());
    let Some(split) = (0..=limit).rev().find(|&i| i < name.len() && name[i] == b'/') else { return false };
    let (prefix, rest) = (&name[..split], &name[split + 1..]);
    if rest.len() > u.name.len() || rest.is_empty() || prefix.is_empty() {
        return false;
    }
    u.prefix[..prefix.len()].copy_from_slice(prefix);
    u.name[..rest.len()].copy_from_slice(rest);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> TarEntry {
        TarEntry { path: path.as_bytes().to_vec(), kind, meta: Meta::file() }
    }

    #[test]
    fn short_and_split_names_fit_ustar() {
        let (h, pax) = build(&entry("a/b", EntryKind::Dir), 0).unwrap();
        assert_eq!(&*h.path_bytes(), b"a/b/");
        assert!(pax.is_empty());
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let (h, pax) = build(&entry(&long, EntryKind::File { size: 1 }), 0).unwrap();
        assert_eq!(&*h.path_bytes(), long.as_bytes());
        assert!(pax.is_empty());
    }

    #[test]
    fn long_names_and_ids_go_to_pax() {
        let long = "x".repeat(300);
        let mut e = entry(&long, EntryKind::Symlink { target: long.clone().into_bytes() });
        e.meta.uid = 1 << 24;
        e.meta.xattrs.insert("user.k".into(), b"v".to_vec());
        let (h, pax) = build(&e, 7).unwrap();
        let keys: Vec<&str> = pax.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["path", "linkpath", "uid", "SCHILY.xattr.user.k"]);
        assert_eq!(h.mtime().unwrap(), 7);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
    }
}
