//! A repository as the sink of blob copies: a blob is put in by a `HEAD`
//! (nothing to do when the repository has it), else a cross-repository
//! mount from a repository of the same registry known to hold it, else a
//! streamed upload of a [`PushSource`] verified against the descriptor's
//! size and digest as it goes, reopened from the start when an attempt
//! fails. Every push of a blob (from the store, from another repository)
//! goes through [`RepoSink::put_blob`].

use polyarch_oci::{Descriptor, Reference};

use crate::blob::CopyOutcome;
use crate::upload::PushSource;
use crate::{Client, Error, Event};

/// One repository of a registry, to copy blobs and manifests into.
#[derive(Clone)]
pub struct RepoSink {
    client: Client,
    repo: Reference,
}

impl std::fmt::Debug for RepoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSink").field("repo", &self.repo.to_string()).finish()
    }
}

impl RepoSink {
    /// The repository of `repo` (its tag or digest is ignored).
    pub fn new(client: &Client, repo: &Reference) -> RepoSink {
        RepoSink { client: client.clone(), repo: repo.trimmed() }
    }

    /// The repository, without tag or digest.
    pub fn repo(&self) -> &Reference {
        &self.repo
    }

    /// `repo@digest` of `desc`.
    pub fn at(&self, desc: &Descriptor) -> Reference {
        self.repo.with_digest(desc.digest.clone())
    }

    /// Puts the blob `desc` into the repository. `mounts` are repository
    /// paths of the same registry that hold it (tried in order; one that
    /// is the target itself is skipped); a refused or failed mount falls
    /// back to uploading `source`, whose bytes are checked against `desc`.
    /// `uploading` is called once when the upload starts.
    pub async fn put_blob(
        &self,
        desc: &Descriptor,
        mounts: &[String],
        source: &dyn PushSource,
        uploading: &(dyn Fn() + Send + Sync),
    ) -> Result<Put, Error> {
        let r = self.at(desc);
        if self.client.blob_exists(&r, &desc.digest).await?.is_some() {
            self.client.inner.emit(Event::Skipped { digest: desc.digest.clone() });
            return Ok(Put { outcome: CopyOutcome::Existed, from: None });
        }
        for from in mounts.iter().filter(|m| **m != self.repo.path) {
            if let Ok(true) = self.client.mount_blob(&r, from, &desc.digest).await {
                return Ok(Put { outcome: CopyOutcome::Mounted, from: Some(from.clone()) });
            }
        }
        uploading();
        let outcome = self.client.upload(&r, desc, source).await?;
        Ok(Put { outcome: outcome.into(), from: None })
    }
}

/// What [`RepoSink::put_blob`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// Nothing, a mount or an upload.
    pub outcome: CopyOutcome,
    /// The repository a mounted blob came from.
    pub from: Option<String>,
}
