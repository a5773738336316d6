//! Steps run once across processes: while a polyarch process runs a step,
//! it holds an exclusive `flock` on `build-cache/locks/<key>`; another
//! process that misses the same key waits for the lock, then looks for the
//! record again, and runs the step only if the first one left none (it
//! failed or was killed: the kernel drops a dead process's lock). So two
//! builds on one store at once (one per platform, as BuildKit users start
//! them) share what they have in common, as one BuildKit daemon merges
//! equal vertices of concurrent solves.
//!
//! Within a process the merge table does this already, and builds with
//! tables of their own do not wait for each other: a key some table of
//! this process holds is not locked again.
//!
//! A holder removes the file before it lets go of it, after the record is
//! written, so the files do not pile up: a waiter that then gets the lock
//! of the removed file opens the path again, and whoever locks the file
//! the path names looks for the record first. Locking is an optimisation:
//! when the file cannot be made, the step runs unlocked, as before, and
//! the store's atomic writes settle the race.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::FlockOperation;

/// Lock files (a store's key) some table of this process holds.
static HELD: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// How often a waiter tries the lock again.
const POLL: Duration = Duration::from_millis(50);

fn with_held<T>(f: impl FnOnce(&mut HashSet<PathBuf>) -> T) -> T {
    let mut guard = HELD.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashSet::new))
}

/// The lock of one key, held until dropped (the file removed first).
#[derive(Debug)]
pub(crate) struct Held {
    path: PathBuf,
    file: File,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only the file this lock is on: the path may name a newer one.
        if let (Ok(ours), Ok(now)) = (self.file.metadata(), std::fs::metadata(&self.path)) {
            if ours.ino() == now.ino() && ours.dev() == now.dev() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        with_held(|h| h.remove(&self.path));
        // The file closes after this body: the lock goes with it.
    }
}

/// Waits until no other process runs `key` and takes its lock: `None`
/// when this process holds it already (another table runs it) or the lock
/// file cannot be made. The future may be dropped (a cancelled build).
pub(crate) async fn acquire(dir: &Path, key: &str) -> Option<Held> {
    let path = dir.join(key.trim_start_matches("sha256:"));
    if with_held(|h| h.contains(&path)) {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    loop {
        let file =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).mode(0o600).open(&path).ok()?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Its last holder may have removed it meanwhile: lock the
                // file the path names now.
                let same = match (file.metadata(), std::fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if !same {
                    continue;
                }
                // A table of this process may have taken it while we waited.
                if !with_held(|h| h.insert(path.clone())) {
                    return None;
                }
                return Some(Held { path, file });
            }
            Err(rustix::io::Errno::WOULDBLOCK) => tokio::time::sleep(POLL).await,
            Err(_) => return None,
        }
    }
}

/// Removes the lock files under `dir` that no process holds (a killed
/// holder's); returns how many went. A file is removed while this holds
/// its lock, so a waiter that gets it next opens the path again.
pub fn remove_stale(dir: &Path) -> usize {
    let mut removed = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(file) = File::open(e.path()) else { continue };
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_held_once_per_process_and_its_file_goes_with_it() {
        let d = tempfile::tempdir().unwrap();
        let held = acquire(d.path(), "sha256:aa").await.expect("the lock");
        let path = d.path().join("aa");
        assert!(path.exists());
        assert!(acquire(d.path(), "sha256:aa").await.is_none(), "this process holds it: no second lock");
        let other = acquire(d.path(), "sha256:bb").await.expect("another key");
        drop(held);
        assert!(!path.exists(), "the holder removes its file");
        assert!(acquire(d.path(), "sha256:aa").await.is_some(), "free again");
        // A killed holder's file goes; a held one stays.
        std::fs::write(d.path().join("ff"), b"").unwrap();
        assert_eq!(remove_stale(d.path()), 1);
        assert!(d.path().join("bb").exists() && !d.path().join("ff").exists());
        drop(other);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_when_another_holder_lets_go() {
        let d = tempfile::tempdir().unwrap();
        // Another process's lock: an flock on the file from another open
        // file description, not registered in this process's set.
        let path = d.path().join("cc");
        let theirs = OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
        rustix::fs::flock(&theirs, FlockOperation::LockExclusive).unwrap();
        let dir = d.path().to_path_buf();
        let waiter = tokio::spawn(async move { acquire(&dir, "sha256:cc").await.is_some() });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "it waits while the other holds the lock");
        std::fs::remove_file(&path).unwrap();
        drop(theirs);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap());
    }
}
