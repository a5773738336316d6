//! Resolving `USER` strings against the rootfs' `/etc/passwd` and
//! `/etc/group`, with BuildKit's rules (`executor/oci/user.go`, on top of
//! moby/sys/user's `GetExecUser`):
//!
//! - `uid:gid`, both numeric: taken as is, no supplementary groups, no
//!   file read.
//! - `name` or `uid`: the first passwd entry with that name (or uid, when
//!   numeric) gives uid, gid and home; a numeric uid with no entry is
//!   accepted with gid 0; an unknown name is an error. Supplementary
//!   groups are the groups that list the user's name.
//! - `user:group`: as above for the user; the group is the first group
//!   entry with that name (or gid, when numeric), or a numeric gid with no
//!   entry; there are no supplementary groups.
//! - empty: root (0:0).

use std::path::Path;

use crate::error::{io_at, Error, Result};
use crate::rootfs;

/// A user resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// The home directory from passwd (`/` when unknown).
    pub home: String,
}

impl User {
    /// Root with moby's defaults (home `/`).
    fn root() -> User {
        User { uid: 0, gid: 0, additional_gids: Vec::new(), home: "/".into() }
    }
}

/// Resolves `spec` for the rootfs at `root`.
pub fn resolve(root: &Path, spec: &str) -> Result<User> {
    if spec.is_empty() {
        // Root still gets its home from passwd when the image has one.
        return from_files(spec, &read(root, "/etc/passwd")?, &read(root, "/etc/group")?);
    }
    if let Some((u, g)) = spec.split_once(':') {
        if let (Ok(uid), Ok(gid)) = (u.parse::<u32>(), g.parse::<u32>()) {
            return Ok(User { uid, gid, additional_gids: Vec::new(), home: "/".into() });
        }
    }
    from_files(spec, &read(root, "/etc/passwd")?, &read(root, "/etc/group")?)
}

/// A file of the rootfs, empty when missing.
fn read(root: &Path, path: &str) -> Result<String> {
    let host = rootfs::resolve(root, path)?;
    match std::fs::read(&host) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_at(&host)(e)),
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(text).filter_map(|f| {
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    records(text).filter_map(|f| {
        Some(GroupEntry {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default(),
        })
    })
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.split(':').collect())
}

/// The resolution rules on the text of passwd and group.
pub fn from_files(spec: &str, passwd: &str, group: &str) -> Result<User> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid_arg = user_arg.parse::<u32>().ok();
    let mut user = User::root();
    let found = passwd_entries(passwd).find(|e| match (user_arg.is_empty(), uid_arg) {
        (true, _) => e.uid == 0,
        (false, Some(uid)) => e.uid == uid,
        (false, None) => e.name == user_arg,
    });
    let matched_name = match found {
        Some(e) => {
            user.uid = e.uid;
            user.gid = e.gid;
            if !e.home.is_empty() {
                user.home = e.home.to_string();
            }
            Some(e.name)
        }
        None if user_arg.is_empty() => None,
        None => {
            user.uid = uid_arg.ok_or_else(|| Error::UserNotFound { user: user_arg.to_string() })?;
            None
        }
    };
    match group_arg {
        Some(g) => {
            let gid_arg = g.parse::<u32>().ok();
            let hit = group_entries(group).find(|e| match gid_arg {
                Some(gid) => e.gid == gid,
                None => e.name == g,
            });
            user.gid = match (hit, gid_arg) {
                (Some(e), _) => e.gid,
                (None, Some(gid)) => gid,
                (None, None) => return Err(Error::GroupNotFound { group: g.to_string() }),
            };
        }
        None => {
            if let Some(name) = matched_name {
                user.additional_gids =
                    group_entries(group).filter(|e| e.members.contains(&name)).map(|e| e.gid).collect();
            }
        }
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:app,daemon
app:x:1000:
docker:x:999:app
nogroup:x:65534:
";

    fn user(spec: &str) -> Result<User> {
        from_files(spec, PASSWD, GROUP)
    }

    #[test]
    fn names_give_ids_home_and_supplementary_groups() {
        let u = user("app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(u.additional_gids, [10, 999]);
        let d = user("daemon").unwrap();
        assert_eq!((d.uid, d.gid, d.additional_gids.clone()), (1, 1, vec![10]));
    }

    #[test]
    fn numeric_uids_match_entries_or_stand_alone() {
        let u = user("1000").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone()), (1000, 1000, vec![10, 999]));
        let lone = user("4242").unwrap();
        assert_eq!((lone.uid, lone.gid, lone.home.as_str()), (4242, 0, "/"));
        assert!(lone.additional_gids.is_empty());
    }

    #[test]
    fn explicit_groups_replace_supplementary_ones() {
        let u = user("app:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert!(u.additional_gids.is_empty());
        let n = user("app:4321").unwrap();
        assert_eq!(n.gid, 4321);
        let by_gid = user("nobody:999").unwrap();
        assert_eq!((by_gid.uid, by_gid.gid), (65534, 999));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(matches!(user("ghost"), Err(Error::UserNotFound { user }) if user == "ghost"));
        assert!(matches!(user("app:ghosts"), Err(Error::GroupNotFound { group }) if group == "ghosts"));
        assert!(user("ghost").unwrap_err().to_string().contains("unable to find user ghost"));
    }

    #[test]
    fn empty_means_root_and_missing_files_are_empty() {
        let r = user("").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let t = tempfile::tempdir().unwrap();
        assert_eq!(resolve(t.path(), "").unwrap(), User::root());
        assert_eq!(resolve(t.path(), "12:34").unwrap().gid, 34);
        assert!(resolve(t.path(), "app").is_err());
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(t.path().join("etc/group"), GROUP).unwrap();
        assert_eq!(resolve(t.path(), "app").unwrap().additional_gids, [10, 999]);
    }
}
