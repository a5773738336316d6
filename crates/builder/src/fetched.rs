//! What a build fetches for `ADD` (a download, a Git checkout), fetched
//! once for every platform of the build: the plan has one source vertex
//! for such a source whatever the targets, and BuildKit fetches it once.
//! The builds of one multi-platform build share one [`Fetches`]; what it
//! holds (spill files, checkout directories under the store's `run/`)
//! lives until the last of them is done.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::Result;
use crate::fs::MemFs;
use crate::remote::Download;

/// One value per key, made by the first asker; a failed attempt is not
/// kept, so the next asker tries again (and reports its own error).
struct Memo<T>(Mutex<HashMap<String, Arc<OnceCell<Arc<T>>>>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(Mutex::default())
    }
}

impl<T> Memo<T> {
    async fn get<F, Fut>(&self, key: &str, make: F) -> Result<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cell = match self.0.lock() {
            Ok(mut m) => m.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        cell.get_or_try_init(|| async { make().await.map(Arc::new) }).await.cloned()
    }
}

/// A Git repository checked out for an `ADD`: its tree (files read from
/// `dir`, kept as long as this is) and the commit.
pub(crate) struct Checkout {
    pub tree: MemFs,
    pub commit: String,
    pub _dir: tempfile::TempDir,
}

/// The downloads and checkouts of the builds sharing it.
#[derive(Clone, Default)]
pub(crate) struct Fetches {
    downloads: Arc<Memo<Download>>,
    checkouts: Arc<Memo<Checkout>>,
}

impl Fetches {
    /// The download of `url`, fetched by `fetch` if no build sharing this
    /// fetched it yet.
    pub(crate) async fn download<F, Fut>(&self, url: &str, fetch: F) -> Result<Arc<Download>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Download>>,
    {
        self.downloads.get(url, fetch).await
    }

    /// The checkout `key` names (the source as written and its flags),
    /// made by `check_out` if no build sharing this made it yet.
    pub(crate) async fn checkout<F, Fut>(&self, key: &str, check_out: F) -> Result<Arc<Checkout>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Checkout>>,
    {
        self.checkouts.get(key, check_out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_source_is_fetched_once_by_every_build_at_once_and_a_failure_is_not_kept() {
        let memo: Arc<Memo<String>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (memo, calls) = (memo.clone(), calls.clone());
            set.spawn(async move {
                memo.get("k", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Ok("v".to_string())
                })
                .await
                .unwrap()
            });
        }
        while let Some(v) = set.join_next().await {
            assert_eq!(*v.unwrap(), "v");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let failed = memo.get("bad", || async { Err(crate::Error::Option("down".into())) }).await;
        assert!(failed.is_err());
        let again = memo.get("bad", || async { Ok("up".to_string()) }).await.unwrap();
        assert_eq!(*again, "up");
    }
}
