//! Trees written from image data: a root file system (`type=local`) and
//! OCI layout directories (`type=oci,tar=false`), only through the
//! snapshot crate's rooted writer.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use polyarch_oci::Descriptor;
use polyarch_snapshot::Root;
use polyarch_store::{BlobSource, Store};
use rustix::fs::FileType;

use crate::error::{Error, Result};
use crate::fs::{Kind, MemFs, Node};

/// An OCI image layout as a directory, written through the rooted writer
/// like every tree (see [`write_tree`]).
pub(super) fn layout_dir(store: &Store, index_json: &[u8], blobs: &[Descriptor], dest: &Path) -> Result<()> {
    let root = Root::create(dest).map_err(|e| snapshot_err(dest, e))?;
    let write = |name: &str, data: &mut dyn Read| -> Result<()> {
        let slot = root.slot(name.as_bytes()).map_err(|e| snapshot_err(dest, e))?;
        slot.write_file(data).and_then(|_| slot.set_mode(0o644)).map_err(|e| snapshot_err(dest, e))
    };
    write("oci-layout", &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..])?;
    write("index.json", &mut &index_json[..])?;
    for d in blobs {
        write(&super::blob_path(d), &mut store.open(d)?)?;
    }
    Ok(())
}

/// The snapshot crate's error as ours; `dest` names the tree for the
/// errors that carry no path.
fn snapshot_err(dest: &Path, e: polyarch_snapshot::Error) -> Error {
    match e {
        polyarch_snapshot::Error::Io { path, source } => Error::Io { path, source },
        other => Error::io(dest, std::io::Error::other(other.to_string())),
    }
}

/// Writes `tree` below `dest` (made if missing). Every entry goes through
/// the snapshot crate's rooted writer: its parents resolve inside `dest`
/// (a symlink in the tree, absolute or climbing with `..`, is followed as
/// if `dest` were `/`), and nothing follows the entry's own name, so no
/// write lands outside `dest` whatever the tree's links say. Owners are
/// set when running as root; modes, xattrs and times are set.
pub(crate) fn write_tree(tree: &MemFs, dest: &Path) -> Result<()> {
    let err = |e| snapshot_err(dest, e);
    let root = Root::create(dest).map_err(err)?;
    let owners = crate::fs::is_root();
    let mut firsts: HashMap<u64, (&str, &Node)> = HashMap::new();
    for (path, node) in tree.iter() {
        let slot = root.slot(path.as_bytes()).map_err(err)?;
        let first = node.link.and_then(|g| firsts.get(&g)).filter(|(_, f)| f.same_inode(node));
        // Should linking fail, the member is written as a file of its own.
        if first.is_some_and(|(first, _)| root.slot(first.as_bytes()).and_then(|t| slot.hard_link(&t)).is_ok()) {
            continue;
        }
        if let Some(g) = node.link {
            firsts.entry(g).or_insert((path, node));
        }
        match &node.kind {
            Kind::Dir => slot.make_dir().map_err(err)?,
            Kind::File(content) => {
                slot.write_file(&mut content.open()?).map_err(err)?;
            }
            Kind::Symlink(t) => slot.symlink(t.as_bytes()).map_err(err)?,
            Kind::Fifo => slot.make_node(FileType::Fifo, 0).map_err(err)?,
            // A device node can only be made by root; elsewhere it is left out.
            Kind::Device { .. } if !owners => continue,
            Kind::Device { block, major, minor } => {
                let ft = if *block { FileType::BlockDevice } else { FileType::CharacterDevice };
                slot.make_node(ft, rustix::fs::makedev(*major, *minor)).map_err(err)?
            }
        }
        if owners {
            let _ = slot.set_owner(node.uid as u32, node.gid as u32);
        }
        if !matches!(node.kind, Kind::Symlink(_)) {
            slot.set_mode(node.mode).map_err(err)?;
        }
        // After the owner: changing it clears `security.capability`. Best
        // effort, as a file system or an unprivileged process may refuse
        // some namespaces.
        for (k, v) in &node.xattrs {
            let _ = slot.set_xattr(k, v);
        }
    }
    // Times last, deepest first, so that writing children does not change
    // a directory's time again.
    let all: Vec<(&String, &Node)> = tree.iter().collect();
    for (path, node) in all.into_iter().rev() {
        if matches!(node.kind, Kind::Symlink(_)) {
            continue;
        }
        if let Ok(slot) = root.slot(path.as_bytes()) {
            let _ = slot.set_mtime(node.mtime.max(0));
        }
    }
    Ok(())
}
