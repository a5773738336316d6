//! Entry metadata (owner, mode, mtime, xattrs) and the `*at` calls that set
//! it without following the entry's own name if it is a symlink.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::OwnedFd;

use rustix::fs::{self as rfs, AtFlags, Mode, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{Error, Result};

/// The PAX record prefix that carries extended attributes.
pub(crate) const PAX_XATTR: &str = "SCHILY.xattr.";

/// Where a PAX record's extended attribute came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrRecord {
    /// `SCHILY.xattr.NAME` (GNU tar, Go's archive/tar): the raw value.
    Schily,
    /// `LIBARCHIVE.xattr.NAME` (bsdtar): the name percent-encoded, the value
    /// base64; a `SCHILY` record of the same name wins over it.
    Libarchive,
}

/// The extended attribute a PAX record carries, if it carries one.
pub fn pax_xattr(key: &str, value: &[u8]) -> Option<(String, Vec<u8>, XattrRecord)> {
    use base64::Engine as _;
    if let Some(name) = key.strip_prefix(PAX_XATTR) {
        return Some((name.to_string(), value.to_vec(), XattrRecord::Schily));
    }
    let name = percent_decode(key.strip_prefix("LIBARCHIVE.xattr.")?)?;
    // Padded or not: the padding is dropped before decoding.
    let text = value.trim_ascii();
    let end = text.iter().rposition(|c| *c != b'=').map_or(0, |i| i + 1);
    let value = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text[..end]).ok()?;
    Some((name, value, XattrRecord::Libarchive))
}

/// `%XX` escapes decoded; `None` for a malformed escape or a name that is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What an entry says about itself beyond type and content.
#[derive(Debug, Default)]
pub(crate) struct EntryMeta {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    /// Reads the header, letting PAX records override it.
    pub(crate) fn read<R: Read>(entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<EntryMeta> {
        let h = entry.header();
        let old = h.as_old();
        let mut m = EntryMeta {
            mode: u32::try_from(field(&old.mode, h.mode().map(u64::from), raw)?).unwrap_or(0),
            uid: id(field(&old.uid, h.uid(), raw)?, raw)?,
            gid: id(field(&old.gid, h.gid(), raw)?, raw)?,
            mtime: i64::try_from(field(&old.mtime, h.mtime(), raw)?).unwrap_or(i64::MAX),
            xattrs: Vec::new(),
        };
        let Some(pax) = entry.pax_extensions().map_err(|_| Error::entry(raw, "malformed PAX header"))? else {
            return Ok(m);
        };
        for ext in pax {
            let ext = ext.map_err(|_| Error::entry(raw, "malformed PAX record"))?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            match key {
                "uid" => m.uid = id(parse_num(value, raw)?, raw)?,
                "gid" => m.gid = id(parse_num(value, raw)?, raw)?,
                "mtime" => m.mtime = parse_secs(value, raw)?,
                k => {
                    if let Some((name, value, from)) = pax_xattr(k, value) {
                        let known = m.xattrs.iter().position(|(n, _)| *n == name);
                        match (known, from) {
                            (None, _) => m.xattrs.push((name, value)),
                            (Some(i), XattrRecord::Schily) => m.xattrs[i].1 = value,
                            (Some(_), XattrRecord::Libarchive) => {}
                        }
                    }
                }
            }
        }
        Ok(m)
    }
}

/// A numeric header field; an empty one (all NUL or spaces) is 0, as Go's
/// archive/tar reads it.
fn field(bytes: &[u8], parsed: std::io::Result<u64>, raw: &[u8]) -> Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if bytes.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(_) => Err(Error::entry(raw, "malformed header field")),
    }
}

fn id(v: u64, raw: &[u8]) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::entry(raw, "owner id out of range"))
}

fn parse_num(v: &[u8], raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::entry(raw, "malformed PAX number"))
}

/// A PAX time: seconds with an optional fraction, which is dropped.
fn parse_secs(v: &[u8], raw: &[u8]) -> Result<i64> {
    let s = std::str::from_utf8(v).map_err(|_| Error::entry(raw, "malformed PAX time"))?;
    let whole = s.trim().split('.').next().unwrap_or_default();
    whole.parse().map_err(|_| Error::entry(raw, "malformed PAX time"))
}

/// Sets access and modification time to `mtime` (seconds).
pub(crate) fn set_mtime(dir: &OwnedFd, name: &OsStr, mtime: i64) -> std::result::Result<(), Errno> {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    let times = Timestamps { last_access: t, last_modification: t };
    rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
}

/// The file type of a device or FIFO entry.
pub(crate) fn node_type(kind: EntryType) -> rfs::FileType {
    match kind {
        EntryType::Char => rfs::FileType::CharacterDevice,
        EntryType::Block => rfs::FileType::BlockDevice,
        _ => rfs::FileType::Fifo,
    }
}

/// The device number a header describes (0 when it has none).
pub(crate) fn device(h: &tar::Header) -> u64 {
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    rfs::makedev(major, minor)
}

/// Writes an overlayfs whiteout: a character device 0/0.
pub(crate) fn overlay_whiteout(dir: &OwnedFd, name: &OsStr) -> std::result::Result<(), Errno> {
    rfs::mknodat(dir, name, rfs::FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0))
}
