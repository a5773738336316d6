//! `--chown` and WORKDIR owners: `user[:group]` by name or id, names
//! looked up in the target's `/etc/passwd` and `/etc/group`.

use crate::fs::MemFs;

/// Resolves `spec` against the tree. A user without a group uses the same
/// numeric id for the group, as the Dockerfile reference says.
pub fn resolve(fs: &MemFs, spec: &str) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u64>() {
        Ok(n) => n,
        Err(_) => lookup(fs, "etc/passwd", user)
            .ok_or_else(|| format!("unable to find user {user}: no matching entries in passwd file"))?,
    };
    let gid = match group {
        None | Some("") => uid,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => lookup(fs, "etc/group", g)
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

/// The id (third field) of `name` in a passwd or group file.
fn lookup(fs: &MemFs, file: &str, name: &str) -> Option<u64> {
    let data = fs.read(file)?;
    let text = String::from_utf8_lossy(&data);
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.trim().parse().ok()
    })
}

/// The owner for directories WORKDIR creates: the USER's ids when they can
/// be resolved, else root.
pub fn workdir_owner(fs: &MemFs, user: &str) -> (u64, u64) {
    if user.is_empty() {
        return (0, 0);
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u.parse().ok().or_else(|| lookup(fs, "etc/passwd", u)).unwrap_or(0);
    let gid = match g {
        Some(g) => g.parse().ok().or_else(|| lookup(fs, "etc/group", g)).unwrap_or(0),
        None => primary_gid(fs, u).unwrap_or(0),
    };
    (uid, gid)
}

fn primary_gid(fs: &MemFs, user: &str) -> Option<u64> {
    let data = fs.read("etc/passwd")?;
    let text = String::from_utf8_lossy(&data);
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && (f[0] == user || f[2] == user)).then(|| f[3].parse().ok()).flatten()
    })
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
        assert_eq!(resolve(&fs, "www"), Ok((33, 33)));
        assert_eq!(resolve(&fs, "www:staff"), Ok((33, 50)));
        assert_eq!(resolve(&fs, "1000:staff"), Ok((1000, 50)));
        assert_eq!(resolve(&fs, "10:20"), Ok((10, 20)));
        assert_eq!(resolve(&fs, "7"), Ok((7, 7)));
        assert!(resolve(&fs, "nobody").unwrap_err().contains("unable to find user nobody"));
        assert!(resolve(&fs, "www:nogroup").unwrap_err().contains("unable to find group nogroup"));
        assert!(resolve(&MemFs::new(), "www").is_err());
        assert_eq!(workdir_owner(&fs, "www"), (33, 34));
        assert_eq!(workdir_owner(&fs, ""), (0, 0));
    }
}
