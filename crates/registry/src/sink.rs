//! A repository as the sink of blob copies: a blob is put in by a `HEAD`
//! (nothing to do when the repository has it), else a cross-repository
//! mount from a repository of the same registry known to hold it, else a
//! streamed upload of a [`PushSource`] verified against the descriptor's
//! size and digest as it goes, reopened from the start when an attempt
//! fails. Every push of a blob (from the store, from another repository)
//! goes through [`RepoSink::put_blob`], and every push of an image or
//! an index (from the store, from other repositories) through
//! [`push_tree`], which keeps children before the tags that name them.

use futures_util::{stream, StreamExt, TryStreamExt};
use polyarch_oci::{media_type as mt, Descriptor, RawManifest, Reference};

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

/// Where the blobs of a push are read from: the local store, or another
/// repository.
pub trait BlobOrigin: Send + Sync {
    /// A re-openable source of the blob's bytes.
    fn source<'a>(&'a self, desc: &Descriptor) -> Result<Box<dyn PushSource + 'a>, Error>;

    /// Whether the blob can be read here: a non-distributable layer that
    /// cannot is left to its URLs.
    fn has(&self, desc: &Descriptor) -> bool;

    /// Repositories of the registry `domain` known to hold the blob, to
    /// mount it from.
    fn mounts(&self, desc: &Descriptor, domain: &str) -> Vec<String>;

    /// Called once the repository `repo` holds the blob.
    fn stored(&self, _desc: &Descriptor, _repo: &Reference) {}

    /// Whether a manifest the target repository already has is left as it
    /// is, its blobs unchecked (a copy between repositories, as
    /// `imagetools create`); else every manifest is written again after
    /// its blobs were checked (a push from the store).
    fn trusts_present_manifests(&self) -> bool {
        false
    }
}

/// What a push writes: the manifest the tags name (an index, or an image
/// manifest), and the manifests below it, children before the indexes
/// that list them, each with the descriptor it is listed by.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The manifest the tags point at.
    pub root: RawManifest,
    /// The manifests below it (and, for an image, the image itself).
    pub manifests: Vec<(Descriptor, RawManifest)>,
}

impl Tree {
    /// Every blob of `images`, each once, in order.
    fn blobs<'a>(images: impl Iterator<Item = &'a RawManifest>, origin: &dyn BlobOrigin) -> Vec<Descriptor> {
        let mut blobs: Vec<Descriptor> = Vec::new();
        for image in images.filter_map(|m| m.as_image()) {
            for b in std::iter::once(&image.config).chain(&image.layers) {
                let foreign = mt::is_non_distributable(&b.media_type) && !origin.has(b);
                if !foreign && !blobs.iter().any(|x| x.digest == b.digest) {
                    blobs.push(b.clone());
                }
            }
        }
        blobs
    }

    /// The entries of an index root that are blobs, not manifests (a
    /// BuildKit-style cache index lists its layers and config so).
    fn loose(&self) -> Vec<Descriptor> {
        let Some(index) = self.root.as_index() else { return Vec::new() };
        index
            .manifests
            .iter()
            .filter(|d| !mt::is_index(&d.media_type) && !mt::is_image_manifest(&d.media_type))
            .cloned()
            .collect()
    }

    /// What to write into `sink`'s repository: every manifest, or when
    /// `trust` those below the root it does not have (asked with a `HEAD`)
    /// and the root when it is an image.
    async fn missing(
        &self,
        client: &Client,
        sink: &RepoSink,
        trust: bool,
    ) -> Result<Vec<&(Descriptor, RawManifest)>, Error> {
        let root = self.root.digest();
        let mut out = Vec::new();
        for m in &self.manifests {
            if !trust || m.0.digest == *root || client.head_manifest(&sink.at(&m.0)).await?.is_none() {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// A step of [`push_tree`], for progress.
#[derive(Debug)]
pub enum Pushing<'a> {
    /// The blob's bytes start going up.
    Upload(&'a Descriptor),
    /// The blob is in the repository, as `Put` says.
    Blob(&'a Descriptor, &'a Put),
    /// A manifest was written.
    Manifest(&'a Descriptor),
}

/// Pushes `tree` under every reference of `tags` (a tag, or a digest):
/// into each repository they name, for each manifest (or only those it
/// lacks, when the origin trusts what is there), every blob, `parallel` at a time,
/// through [`RepoSink::put_blob`] (mounted where `origin` says a
/// repository of that registry holds it, else streamed from `origin`),
/// then those manifests by digest, in order; only once every
/// repository holds all of it is the root written under each tag, so no
/// tag ever names missing content. Returns what became of each blob.
pub async fn push_tree(
    client: &Client,
    origin: &dyn BlobOrigin,
    tree: &Tree,
    tags: &[Reference],
    parallel: usize,
    seen: &(dyn Fn(Pushing<'_>) + Send + Sync),
) -> Result<Vec<Put>, Error> {
    let mut repos: Vec<RepoSink> = Vec::new();
    for t in tags {
        if !repos.iter().any(|r| r.repo() == &t.trimmed()) {
            repos.push(RepoSink::new(client, t));
        }
    }
    let mut missing = Vec::new();
    let mut jobs: Vec<(&RepoSink, Descriptor)> = Vec::new();
    for sink in &repos {
        let lacking = tree.missing(client, sink, origin.trusts_present_manifests()).await?;
        jobs.extend(Tree::blobs(lacking.iter().map(|(_, m)| m), origin).into_iter().map(|b| (sink, b)));
        jobs.extend(tree.loose().into_iter().map(|b| (sink, b)));
        missing.push((sink, lacking));
    }
    let puts: Vec<Put> = stream::iter(jobs)
        .map(|(sink, desc)| async move {
            let source = origin.source(&desc)?;
            let mounts = origin.mounts(&desc, &sink.repo().domain);
            let put = sink.put_blob(&desc, &mounts, &*source, &|| seen(Pushing::Upload(&desc))).await?;
            origin.stored(&desc, sink.repo());
            seen(Pushing::Blob(&desc, &put));
            Ok::<_, Error>(put)
        })
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await?;
    let root = tree.root.descriptor();
    for (sink, lacking) in &missing {
        for (d, m) in lacking.iter().filter(|(d, _)| d.digest != root.digest) {
            client.put_manifest(&sink.at(d), m).await?;
            seen(Pushing::Manifest(d));
        }
    }
    for t in tags {
        client.put_manifest(t, &tree.root).await?;
        seen(Pushing::Manifest(&root));
    }
    Ok(puts)
}
