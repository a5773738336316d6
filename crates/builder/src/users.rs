//! `--chown` and WORKDIR owners: `user[:group]` by name or id, names
//! looked up in the target's `/etc/passwd` and `/etc/group`.

use crate::fs::MemFs;

/// Resolves `spec` against the tree, as BuildKit's file ops do (`readUser`):
/// a user named without a group takes the group of its passwd entry, a
/// numeric user without a group the same number. A name neither file
/// holds is an error (BuildKit silently uses root's id for it).
pub fn resolve(fs: &MemFs, spec: &str) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, user_gid) = match user.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => passwd_entry(fs, user)
            .ok_or_else(|| format!("unable to find user {user}: no matching entries in passwd file"))?,
    };
    let gid = match group {
        None | Some("") => user_gid,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                group_id(fs, g).ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?
            }
        },
    };
    Ok((uid, gid))
}

/// The user and group ids of `name`'s passwd entry.
fn passwd_entry(fs: &MemFs, name: &str) -> Option<(u64, u64)> {
    let data = fs.read("etc/passwd")?;
    let text = String::from_utf8_lossy(&data);
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].trim().parse().ok()?, f[3].trim().parse().ok()?))).flatten()
    })
}

/// The id of group `name` in `/etc/group`.
fn group_id(fs: &MemFs, name: &str) -> Option<u64> {
    let data = fs.read("etc/group")?;
    let text = String::from_utf8_lossy(&data);
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.trim().parse().ok()
    })
}

/// The owner for directories WORKDIR creates, as BuildKit's mkdir with the
/// USER resolves it (`readUser`): ids as [`resolve`] finds them, but a name
/// neither file holds is root's id (user) or the user's group (group).
pub fn workdir_owner(fs: &MemFs, user: &str) -> (u64, u64) {
    if user.is_empty() {
        return (0, 0);
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, user_gid) = match u.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => passwd_entry(fs, u).unwrap_or((0, 0)),
    };
    let gid = match g {
        Some(g) => g.parse().ok().or_else(|| group_id(fs, g)).unwrap_or(user_gid),
        None => user_gid,
    };
    (uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::file_node;

    fn fs() -> MemFs {
        let mut fs = MemFs::new();
        fs.insert("etc".into(), crate::fs::Node::dir(0o755, 0, 0, 0));
        fs.insert(
            "etc/passwd".into(),
            file_node(b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n", 0o644, 0),
        );
        fs.insert("etc/group".into(), file_node(b"root:x:0:\nstaff:x:50:\n", 0o644, 0));
        fs
    }

    #[test]
    fn names_and_ids() {
        let fs = fs();
        // A name alone takes its passwd entry's group, as BuildKit's.
        assert_eq!(resolve(&fs, "www"), Ok((33, 34)));
        assert_eq!(resolve(&fs, "www:"), Ok((33, 34)));
        assert_eq!(resolve(&fs, "www:staff"), Ok((33, 50)));
        assert_eq!(resolve(&fs, "1000:staff"), Ok((1000, 50)));
        assert_eq!(resolve(&fs, "10:20"), Ok((10, 20)));
        assert_eq!(resolve(&fs, "7"), Ok((7, 7)));
        assert!(resolve(&fs, "nobody").unwrap_err().contains("unable to find user nobody"));
        assert!(resolve(&fs, "www:nogroup").unwrap_err().contains("unable to find group nogroup"));
        assert!(resolve(&MemFs::new(), "www").is_err());
        assert_eq!(workdir_owner(&fs, "www"), (33, 34));
        assert_eq!(workdir_owner(&fs, "33"), (33, 33));
        assert_eq!(workdir_owner(&fs, "www:nogroup"), (33, 34));
        assert_eq!(workdir_owner(&fs, "ghost"), (0, 0));
        assert_eq!(workdir_owner(&fs, ""), (0, 0));
    }
}
