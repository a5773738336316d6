//! A stage's tree on disk for a RUN step, and back. [`Root`] is either the
//! tree written to a directory (naive) or an overlay of the stage's layers,
//! each unpacked once per diff_id under the store root and shared by every
//! later step and build (overlay); after the run
//! [`Root::finish_keeping_upper`] gives the new tree, read whole or from
//! the overlay's upper directory, whose file contents refer to the files
//! there (kept by the returned [`Upper`]). [`apply_stored`] applies a
//! stored layer to a tree with contents in its unpacked directory. [`diff`]
//! compares it with the tree the step started from and [`layer_entries`]
//! turns the difference into layer entries with OCI whiteouts for
//! deletions, parents included as containerd's archive writer does.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use polyarch_exec::MountPoint;
use polyarch_snapshot::{Change, Mount, MountGuard, OverlaySnapshotter, UnpackOptions};
use polyarch_store::{BlobSource, Store};
use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::fs::{base, join, parent, Backing, Content, Inodes, Kind, MemFs, Node, Spill, TarApply};
use crate::layer::Layer;

/// The longest overlay option string: the kernel reads one page.
const MAX_OVERLAY_OPTIONS: usize = 4000;

/// A RUN step's root file system on disk; removed (and unmounted) on drop.
pub enum Root {
    /// The whole tree, written out.
    Naive(TempDir),
    /// Layers below, the step's changes in `upper`.
    Overlay {
        /// The mount, undone before the upper directory is read.
        guard: Option<MountGuard>,
        /// Where it is mounted.
        target: MountPoint,
        /// Upper and work directories.
        dirs: TempDir,
    },
}

impl Root {
    /// Writes `tree` below a new directory in `tmp`.
    pub fn naive(tree: &MemFs, tmp: &Path) -> Result<Root> {
        let dir = temp_in(tmp)?;
        tree.write_to_dir(&dir.path().join("rootfs"))?;
        Ok(Root::Naive(dir))
    }

    /// Mounts `layers` (each unpacked once under the store root, through
    /// the merged view of the layers below it) with a new upper directory
    /// in `tmp` at `target`.
    pub fn overlay(store: &Store, layers: &[Layer], tmp: &Path, target: MountPoint) -> Result<Root> {
        // Nearest first, as `lowerdir` lists them.
        let mut lowers = layer_dirs(store, layers)?;
        let dirs = temp_in(tmp)?;
        let (upper, work) = (dirs.path().join("upper"), dirs.path().join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).map_err(|e| Error::io(d, e))?;
        }
        if lowers.is_empty() {
            let empty = dirs.path().join("empty");
            std::fs::create_dir(&empty).map_err(|e| Error::io(&empty, e))?;
            lowers.push(empty);
        }
        let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let options = vec![
            format!("lowerdir={}", lowerdir.join(":")),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ];
        if options.iter().map(|o| o.len() + 1).sum::<usize>() > MAX_OVERLAY_OPTIONS {
            return Err(Error::io(target.path(), std::io::Error::other("too many layers for one overlay mount")));
        }
        let m = Mount { kind: "overlay".into(), source: "overlay".into(), options };
        let guard = m.mount(target.path()).map_err(|e| snapshot_error(target.path(), e))?;
        Ok(Root::Overlay { guard: Some(guard), target, dirs })
    }

    /// The directory to run in.
    pub fn path(&self) -> PathBuf {
        match self {
            Root::Naive(d) => d.path().join("rootfs"),
            Root::Overlay { target, .. } => target.path().to_path_buf(),
        }
    }

    /// The tree after the run: `before` with what the run changed, and
    /// the directory its new contents are in, which must be kept while the
    /// tree is read; an overlay's upper directory can become the unpacked
    /// form of the step's layer ([`Upper::install`]).
    pub fn finish_keeping_upper(mut self, before: &MemFs) -> Result<(MemFs, Upper)> {
        match &mut self {
            Root::Naive(d) => {
                let mut tree = read_tree(&d.path().join("rootfs"))?;
                if !crate::fs::is_root() {
                    restore_owners(&mut tree, before);
                }
                let Root::Naive(dirs) = self else { unreachable!() };
                Ok((tree, Upper { dirs, overlay: false }))
            }
            Root::Overlay { guard, dirs, target } => {
                if let Some(g) = guard.take() {
                    g.unmount().map_err(|e| snapshot_error(target.path(), e))?;
                }
                let tree = apply_upper(before, &dirs.path().join("upper"))?;
                let Root::Overlay { dirs, .. } = self else { unreachable!() };
                Ok((tree, Upper { dirs, overlay: true }))
            }
        }
    }
}

/// Without root, a naive tree is written with the caller's own uid and
/// gid (owners cannot be set); read back, an entry owned so has the
/// owner it had before, or root when new, as a rootless builder maps its
/// user to root. Other owners are kept.
fn restore_owners(tree: &mut MemFs, before: &MemFs) {
    let uid = u64::from(rustix::process::geteuid().as_raw());
    let gid = u64::from(rustix::process::getegid().as_raw());
    let fixed: Vec<(String, Node)> = tree
        .iter()
        .filter(|(_, n)| n.uid == uid || n.gid == gid)
        .map(|(p, n)| {
            let was = before.get(p);
            let mut n = n.clone();
            if n.uid == uid {
                n.uid = was.map_or(0, |w| w.uid);
            }
            if n.gid == gid {
                n.gid = was.map_or(0, |w| w.gid);
            }
            (p.clone(), n)
        })
        .collect();
    for (p, n) in fixed {
        tree.insert(p, n);
    }
}

/// A run's directory after the run: an overlay's upper directory (what the
/// step changed, with overlay whiteouts) or the naive root. Removed on
/// drop unless installed.
pub struct Upper {
    dirs: TempDir,
    overlay: bool,
}

impl Upper {
    /// Makes this directory the unpacked form of the last layer of `chain`
    /// (whose entries are `entries`) for later overlay mounts, as Docker's overlay2 driver turns
    /// a container's upper directory into an image layer, instead of
    /// unpacking the layer again: what the layer does not hold (runtime
    /// stubs, mount targets, copied-up files that did not change, special
    /// files) is removed first. Returns whether it was installed; when the
    /// layer is already unpacked, or anything is unexpected, it is not, and
    /// the layer is unpacked from its blob when needed.
    pub fn install(self, store: &Store, chain: &[Layer], entries: &[(String, Node)]) -> bool {
        let (Some(name), true) = (chain_name(chain), self.overlay) else { return false };
        let Ok(cache) = layer_cache(store) else { return false };
        if cache.layer_dirs(&name).is_ok() {
            return false;
        }
        let upper = self.dirs.path().join("upper");
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut whiteouts: BTreeSet<String> = BTreeSet::new();
        for (p, _) in entries {
            match base(p).strip_prefix(".wh.") {
                Some(name) if name != ".wh..opq" => {
                    whiteouts.insert(join(parent(p), name));
                }
                _ => {
                    keep.insert(p.clone());
                }
            }
        }
        if prune_upper(&upper, "", &keep, &whiteouts).is_err() {
            return false;
        }
        // The layers below are committed (the run mounted them); `adopt`
        // refuses otherwise.
        let below = chain_name(&chain[..chain.len() - 1]);
        cache.adopt(&name, below.as_deref(), &upper).is_ok()
    }
}

/// Removes from the upper directory `root` what is neither an entry to
/// keep nor a whiteout (a 0/0 character device) of a deleted path.
fn prune_upper(root: &Path, rel: &str, keep: &BTreeSet<String>, whiteouts: &BTreeSet<String>) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = join(rel, &name);
        let ft = e.file_type()?;
        let whiteout = ft.is_char_device() && e.metadata()?.rdev() == 0;
        let kept = if whiteout { whiteouts.contains(&path) } else { keep.contains(&path) };
        match (kept, ft.is_dir()) {
            (true, true) => prune_upper(root, &path, keep, whiteouts)?,
            (true, false) => {}
            (false, true) => std::fs::remove_dir_all(e.path())?,
            (false, false) => std::fs::remove_file(e.path())?,
        }
    }
    Ok(())
}

/// Marks `dir` as the top of directory hierarchies for ext4's Orlov
/// allocator (`chattr +T`), so that each step's directory below it goes to
/// a block group of its own instead of the parent's. Creating a file scans
/// the inodes of its directory's group that were freed in the last few
/// minutes on an ext4 without a journal (`recently_deleted` in
/// `find_inode_bit`), so a RUN creating thousands of files next to what
/// earlier builds deleted paid for every one of them, in the kernel.
/// Other file systems refuse or ignore the flag; nothing depends on it.
fn spread(dir: &Path) {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, open, IFlags, Mode, OFlags};
    let Ok(fd) = open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return };
    if let Ok(flags) = ioctl_getflags(&fd) {
        if !flags.contains(IFlags::TOPDIR) {
            let _ = ioctl_setflags(&fd, flags | IFlags::TOPDIR);
        }
    }
}

/// A new directory in `dir` named after this process, `pa-PID-START-SEQ`
/// as the executor names its state, so that [`cleanup_stale`] can tell
/// when its owner is gone.
pub fn temp_in(dir: &Path) -> Result<TempDir> {
    use polyarch_exec::sys::Syscalls as _;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    spread(dir);
    let pid = std::process::id();
    let start = polyarch_exec::sys::Linux.process_start_time(pid).unwrap_or(0);
    let name = format!("pa-{pid}-{start}-{}", SEQ.fetch_add(1, Ordering::SeqCst));
    tempfile::Builder::new().prefix(&name).rand_bytes(0).tempdir_in(dir).map_err(|e| Error::io(dir, e))
}

/// Removes the directories in `tmp` (the store's `run/`) whose owning
/// polyarch process is gone, as a killed build leaves them, detaching
/// anything mounted below first; names of other forms and of live
/// processes are kept. Returns what was removed. See
/// [`crate::reclaim`], which does this for every directory of the store.
pub fn cleanup_stale(tmp: &Path) -> Vec<PathBuf> {
    polyarch_exec::state::remove_stale_in(tmp, &polyarch_exec::sys::Linux).map(|c| c.dirs).unwrap_or_default()
}

fn snapshot_error(path: &Path, e: polyarch_snapshot::Error) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

/// The chain id of `chain`'s last layer (the name of its snapshot).
fn chain_name(chain: &[Layer]) -> Option<String> {
    let mut parent: Option<String> = None;
    for l in chain {
        parent = Some(polyarch_snapshot::chain_id(parent.as_deref(), &l.diff_id));
    }
    parent
}

/// The one cache of unpacked layers: the overlay snapshotter under the
/// store root (`snapshots/overlay`), whose committed snapshots, named by
/// chain id, are the lower directories of RUN steps' roots and of
/// `polyarch run`'s containers alike, with one garbage collector
/// ([`crate::reclaim::prune_layers`]).
pub fn layer_cache(store: &Store) -> Result<OverlaySnapshotter> {
    let root = layer_cache_root(store.root());
    OverlaySnapshotter::new(&root).map_err(|e| snapshot_error(&root, e))
}

/// Where [`layer_cache`] lives under a store root.
pub fn layer_cache_root(root: &Path) -> PathBuf {
    root.join("snapshots").join("overlay")
}

/// The directory of `chain`'s last layer when it is unpacked already.
fn unpacked_dir(store: &Store, chain: &[Layer]) -> Option<PathBuf> {
    let name = chain_name(chain)?;
    if !layer_cache_root(store.root()).join("metadata").is_dir() {
        return None;
    }
    layer_cache(store).ok()?.layer_dirs(&name).ok()?.into_iter().next()
}

/// Applies the stored `layer` (over the layers `below` it) to `fs`, file
/// contents referring to the layer's unpacked directory (shared with
/// overlay mounts; unpacked now when `unpack` and not yet there).
/// Otherwise, or when it cannot be unpacked here, contents are spilled
/// under the store's `run/`.
pub fn apply_stored(fs: &mut MemFs, store: &Store, below: &[Layer], layer: &Layer, unpack: bool) -> Result<()> {
    let chain: Vec<Layer> = below.iter().chain([layer]).cloned().collect();
    let dir = match unpacked_dir(store, &chain) {
        Some(dir) => Ok(dir),
        None if unpack => layer_dirs(store, &chain)
            .and_then(|mut d| d.drain(..1).next().ok_or_else(|| Error::Option("no layer".into()))),
        None => Err(Error::Option("not unpacked".into())),
    };
    match dir {
        Ok(dir) => {
            let dir = Arc::new(dir);
            fs.apply_tar(store.open(&layer.desc)?, &TarApply::layer(Backing::Dir(&dir)))?;
        }
        Err(_) => {
            let spill = Spill::new(store.root().join("run"));
            fs.apply_tar(store.open(&layer.desc)?, &TarApply::layer(Backing::Spill(&spill)))?;
        }
    }
    Ok(())
}

/// The unpacked directories of every layer of `chain` (each unpacked into
/// the [`layer_cache`] when missing, through the merged view of the
/// layers below it, its tar checked against its diff_id), nearest first,
/// as `lowerdir` lists them.
fn layer_dirs(store: &Store, chain: &[Layer]) -> Result<Vec<PathBuf>> {
    let Some(top) = chain_name(chain) else { return Ok(Vec::new()) };
    let cache = layer_cache(store)?;
    if let Ok(dirs) = cache.layer_dirs(&top) {
        return Ok(dirs);
    }
    let mut parent: Option<String> = None;
    for layer in chain {
        let name = polyarch_snapshot::chain_id(parent.as_deref(), &layer.diff_id);
        if cache.layer_dirs(&name).is_ok() {
            // Unpacked already: its blob is not even opened.
            parent = Some(name);
            continue;
        }
        let blob = store.open(&layer.desc)?;
        let mut tar =
            polyarch_snapshot::decompress(blob).map_err(|e| Error::LayerIo { what: "decompressing", source: e })?;
        let name =
            polyarch_snapshot::apply_layer(&cache, parent.as_deref(), &layer.diff_id, &mut tar, &UnpackOptions::new())
                .map_err(|e| layer_error(&layer.desc.digest, e))?;
        parent = Some(name);
    }
    cache.layer_dirs(&top).map_err(|e| snapshot_error(store.root(), e))
}

fn layer_error(digest: &polyarch_oci::Digest, e: polyarch_snapshot::Error) -> Error {
    Error::Layer(format!("unpacking {digest}: {e}"))
}

/// The `rootfs.diff_ids` of every image config reachable from the store's
/// references, one list per config, base layer first.
pub fn stored_diff_ids(store: &Store) -> Result<Vec<Vec<String>>> {
    diff_ids_of(store, store.referenced_blobs()?)
}

/// The `rootfs.diff_ids` of every image config the store holds, named or
/// not: after a prune, the unpacked layers of the base images it kept
/// (their blobs were used lately) stay with them.
pub fn present_diff_ids(store: &Store) -> Result<Vec<Vec<String>>> {
    diff_ids_of(store, store.blobs()?.into_iter().map(|b| b.digest))
}

fn diff_ids_of(store: &Store, blobs: impl IntoIterator<Item = polyarch_oci::Digest>) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for d in blobs {
        let Ok(info) = store.stat(&d) else { continue };
        if info.size > 4 << 20 {
            continue;
        }
        let desc = polyarch_oci::Descriptor::new("application/octet-stream", d, info.size);
        let Ok(bytes) = store.read_bytes(&desc, info.size) else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
        if let Some(ids) = v["rootfs"]["diff_ids"].as_array() {
            out.push(ids.iter().filter_map(|x| x.as_str().map(String::from)).collect());
        }
    }
    Ok(out)
}

/// `before` with an overlay upper directory's changes applied.
pub fn apply_upper(before: &MemFs, upper: &Path) -> Result<MemFs> {
    let mut tree = before.clone();
    let changes = polyarch_snapshot::changes_overlay_upper(upper).map_err(|e| snapshot_error(upper, e))?;
    let mut inodes = Inodes::new(Arc::new(upper.to_path_buf()));
    for c in changes {
        match c {
            Change::Delete(p) => tree.remove_tree(&p.to_string_lossy()),
            Change::Opaque(p) => {
                let p = p.to_string_lossy().into_owned();
                let below: Vec<String> = tree.children(&p).map(|(k, _)| k.clone()).collect();
                for k in below {
                    tree.remove_tree(&k);
                }
            }
            Change::Add(p) => {
                let rel = p.to_string_lossy().into_owned();
                if let Some(node) = node_at(&upper.join(&p), &rel, &mut inodes)? {
                    tree.insert(rel, node);
                }
            }
            _ => {}
        }
    }
    Ok(tree)
}

/// The entry at `full` (`rel` below the root `inodes` reads), `None` for
/// sockets; files with several links read in one pass share a hard-link
/// group.
fn node_at(full: &Path, rel: &str, inodes: &mut Inodes) -> Result<Option<Node>> {
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::symlink_metadata(full).map_err(|e| Error::io(full, e))?;
    let ft = md.file_type();
    let mut link = None;
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        let t = std::fs::read_link(full).map_err(|e| Error::io(full, e))?;
        Kind::Symlink(t.to_string_lossy().into_owned())
    } else if ft.is_file() {
        let (data, group) = inodes.file(rel, &md);
        link = group;
        Kind::File(data)
    } else if ft.is_char_device() || ft.is_block_device() {
        let dev = md.rdev();
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        Kind::Device { block: ft.is_block_device(), major, minor }
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        return Ok(None);
    };
    let node = Node::new(kind, md.mode() & 0o7777, md.uid().into(), md.gid().into(), md.mtime());
    Ok(Some(Node { xattrs: crate::fs::read_xattrs(full), link, ..node }))
}

/// Reads the tree below `root` with modes, owners and times; contents
/// refer to the files there. Sockets are left out, as tar leaves them.
pub fn read_tree(root: &Path) -> Result<MemFs> {
    let mut fs = MemFs::new();
    read_into(&mut fs, root, "", &mut Inodes::new(Arc::new(root.to_path_buf())))?;
    Ok(fs)
}

fn read_into(fs: &mut MemFs, root: &Path, rel: &str, inodes: &mut Inodes) -> Result<()> {
    for name in crate::fs::sorted_names(&root.join(rel))? {
        let path = join(rel, &name);
        let full = root.join(&path);
        let Some(node) = node_at(&full, &path, inodes)? else {
            continue;
        };
        let is_dir = node.is_dir();
        fs.insert(path.clone(), node);
        if is_dir {
            read_into(fs, root, &path, inodes)?;
        }
    }
    Ok(())
}

/// What a step changed: new or modified entries and deleted paths (only
/// the topmost of a deleted subtree).
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// Added or modified entries, with their new metadata.
    pub changed: MemFs,
    /// Deleted paths.
    pub deleted: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty()
    }
}

/// Whether two entries differ in what a layer records. A symbolic link's
/// own time is left out: writing a tree cannot set it.
fn differs(a: &Node, b: &Node) -> bool {
    if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.xattrs != b.xattrs {
        return true;
    }
    match (&a.kind, &b.kind) {
        (Kind::Symlink(x), Kind::Symlink(y)) => x != y,
        (Kind::File(x), Kind::File(y)) => a.mtime != b.mtime || !x.same(y),
        (Kind::Dir, Kind::Dir) | (Kind::Fifo, Kind::Fifo) => a.mtime != b.mtime,
        (Kind::Device { .. }, Kind::Device { .. }) => a.mtime != b.mtime || a.kind != b.kind,
        _ => true,
    }
}

/// The changes from `before` to `after`. A hard-link group is kept whole:
/// when one of its paths changed (a link made to a file of a lower layer,
/// one of two links rewritten), its other paths are in the changes too, so
/// the layer links them again (as overlayfs copies up a link's target and
/// BuildKit's differ writes both).
pub fn diff(before: &MemFs, after: &MemFs) -> Changes {
    let mut out = Changes::default();
    let mut groups = BTreeSet::new();
    for (p, n) in after.iter() {
        if before.get(p).is_none_or(|old| differs(old, n)) {
            out.changed.insert(p.clone(), n.clone());
            groups.extend(n.link);
        }
    }
    if !groups.is_empty() {
        let partners: Vec<(String, Node)> = after
            .iter()
            .filter(|(p, n)| n.link.is_some_and(|g| groups.contains(&g)) && out.changed.get(p).is_none())
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        for (p, n) in partners {
            out.changed.insert(p, n);
        }
    }
    for (p, _) in before.iter() {
        if after.get(p).is_some() {
            continue;
        }
        let par = parent(p);
        // Below a deleted (or replaced) directory only the top counts.
        if par.is_empty() || after.get(par).is_some_and(Node::is_dir) && before.get(par).is_some_and(Node::is_dir) {
            out.deleted.push(p.clone());
        }
    }
    out
}

/// Removes the empty files and directories the runtime created as mount
/// points (`paths`, and their parents up to what existed before), and puts
/// back the times of directories that only changed because of them (also
/// when the runtime removed its stubs itself), as BuildKit removes its
/// mount stubs.
pub fn remove_stubs(before: &MemFs, after: &mut MemFs, paths: &[String]) {
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for p in paths {
        let mut cur = p.clone();
        while !cur.is_empty() && before.get(&cur).is_none() {
            // A stub the runtime already removed still touched its parent.
            let empty = match after.get(&cur).map(|n| &n.kind) {
                None => true,
                Some(Kind::Dir) => after.children(&cur).next().is_none(),
                Some(Kind::File(d)) => d.is_empty(),
                Some(_) => false,
            };
            if !empty {
                break;
            }
            after.remove_tree(&cur);
            cur = parent(&cur).to_string();
            touched.insert(cur.clone());
        }
    }
    for dir in touched {
        if let (Some(old), Some(now)) = (before.get(&dir), after.get(&dir).cloned()) {
            let same_children = names(before, &dir) == names(after, &dir);
            if same_children && now.is_dir() && old.is_dir() {
                after.insert(dir.clone(), Node { mtime: old.mtime, ..now });
            }
        }
    }
}

fn names(fs: &MemFs, dir: &str) -> BTreeSet<String> {
    let depth = if dir.is_empty() { 0 } else { dir.matches('/').count() + 1 };
    fs.children(dir).filter(|(k, _)| k.matches('/').count() == depth).map(|(k, _)| k.clone()).collect()
}

/// The entries of the layer for `changes` on top of `before`, giving
/// `after`: changed entries, `.wh.` files for deletions, and every parent
/// directory of either with its metadata in `after`. Sorted by path.
pub fn layer_entries(changes: &Changes, after: &MemFs, whiteout_mtime: i64) -> Vec<(String, Node)> {
    let mut out: BTreeMap<String, Node> = BTreeMap::new();
    let add_parents = |out: &mut BTreeMap<String, Node>, p: &str| {
        let mut q = parent(p);
        while !q.is_empty() && !out.contains_key(q) {
            let node = after.get(q).cloned().unwrap_or_else(|| Node::dir(0o755, 0, 0, 0));
            out.insert(q.to_string(), node);
            q = parent(q);
        }
    };
    for (p, n) in changes.changed.iter() {
        out.insert(p.clone(), n.clone());
        add_parents(&mut out, p);
    }
    for p in &changes.deleted {
        let wh = join(parent(p), &format!(".wh.{}", base(p)));
        let node = Node::new(Kind::File(Content::bytes(Vec::new())), 0, 0, 0, whiteout_mtime);
        out.insert(wh.clone(), node);
        add_parents(&mut out, &wh);
    }
    out.into_iter().collect()
}

/// The entries below `dir` (a clean path; `""` for the root), re-rooted.
pub fn subtree(fs: &MemFs, dir: &str) -> MemFs {
    if dir.is_empty() {
        return fs.clone();
    }
    let mut out = MemFs::new();
    let prefix = format!("{dir}/");
    for (k, n) in fs.children(dir) {
        if let Some(rel) = k.strip_prefix(&prefix) {
            out.insert(rel.to_string(), n.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
