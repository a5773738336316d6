//! A cancellation token: cancelling it stops a solve and tells every
//! worker call of it to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    notify: Notify,
    parent: Option<CancelToken>,
}

/// A cheap, cloneable cancellation flag that can be awaited.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

impl CancelToken {
    /// A token not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// A token cancelled with this one, or on its own.
    pub fn child(&self) -> CancelToken {
        CancelToken { inner: Arc::new(Inner { parent: Some(self.clone()), ..Inner::default() }) }
    }

    /// Cancels the token (and its children); idempotent.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether the token (or a parent) is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst) || self.inner.parent.as_ref().is_some_and(|p| p.is_cancelled())
    }

    /// Completes once the token (or a parent) is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let own = self.inner.notify.notified();
            tokio::pin!(own);
            own.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            match &self.inner.parent {
                Some(p) => {
                    tokio::select! {
                        _ = own => {}
                        _ = Box::pin(p.cancelled()) => return,
                    }
                }
                None => own.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn children_follow_their_parent_and_not_the_other_way() {
        let parent = CancelToken::new();
        let child = parent.child();
        let other = parent.child();
        child.cancel();
        assert!(child.is_cancelled() && !parent.is_cancelled() && !other.is_cancelled());
        let waiter = tokio::spawn({
            let other = other.clone();
            async move { other.cancelled().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        parent.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(other.is_cancelled());
        // Already cancelled: returns at once.
        tokio::time::timeout(Duration::from_secs(5), child.cancelled()).await.unwrap();
    }
}
