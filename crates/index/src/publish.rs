//! Publishing: copying every child of an index (manifests, configs, layers)
//! into the target repository before the index itself is written.

use futures_util::{stream, StreamExt, TryStreamExt};
use polyarch_oci::{media_type as mt, Descriptor, RawManifest, Reference};
use polyarch_registry::Client;

use crate::Error;

/// How many blobs or manifests move at once.
const PARALLEL: usize = 8;

fn at_digest(repo: &Reference, desc: &Descriptor) -> Reference {
    Reference { domain: repo.domain.clone(), path: repo.path.clone(), tag: None, digest: Some(desc.digest.clone()) }
}

fn same_repo(a: &Reference, b: &Reference) -> bool {
    a.domain == b.domain && a.path == b.path
}

/// Copies `manifest` (which lives in `src`'s repository) and everything it
/// references into `dst`'s repository, children first, and writes the
/// manifest there by digest. Content already present is skipped; blobs on
/// the same registry are mounted.
pub async fn copy_tree(client: &Client, src: &Reference, dst: &Reference, manifest: &RawManifest) -> Result<(), Error> {
    if same_repo(src, dst) {
        return Ok(());
    }
    let target = at_digest(dst, &manifest.descriptor());
    if client.head_manifest(&target).await?.is_some() {
        return Ok(());
    }
    if let Some(index) = manifest.as_index() {
        stream::iter(index.manifests.iter().map(Ok::<_, Error>))
            .try_for_each_concurrent(PARALLEL, |child| async move {
                let child_ref = at_digest(src, child);
                let child_manifest = client.get_manifest(&child_ref).await?;
                Box::pin(copy_tree(client, src, dst, &child_manifest)).await
            })
            .await?;
    } else if let Some(image) = manifest.as_image() {
        let blobs: Vec<&Descriptor> = std::iter::once(&image.config)
            .chain(image.layers.iter().filter(|l| !mt::is_non_distributable(&l.media_type) || l.urls.is_none()))
            .collect();
        stream::iter(blobs.into_iter().map(Ok::<_, Error>))
            .try_for_each_concurrent(PARALLEL, |blob| async move {
                client.copy_blob(src, dst, blob).await?;
                Ok(())
            })
            .await?;
    }
    client.put_manifest(&target, manifest).await?;
    Ok(())
}

/// One child of an index to publish and where it can be read from.
#[derive(Debug, Clone)]
pub struct Child {
    pub source: Reference,
    pub manifest: RawManifest,
}

/// Publishes `index` under every reference in `tags`: first every child into
/// every distinct target repository, then the index under each tag. If any
/// child fails, no tag is written. Returns the index digest.
pub async fn publish_index(
    client: &Client,
    index: &RawManifest,
    children: &[Child],
    tags: &[Reference],
) -> Result<polyarch_oci::Digest, Error> {
    let mut repos: Vec<&Reference> = Vec::new();
    for t in tags {
        if !repos.iter().any(|r| same_repo(r, t)) {
            repos.push(t);
        }
    }
    let jobs: Vec<(&Child, &Reference)> = repos.iter().flat_map(|r| children.iter().map(move |c| (c, *r))).collect();
    stream::iter(jobs.into_iter().map(Ok::<_, Error>))
        .try_for_each_concurrent(PARALLEL, |(child, repo)| async move {
            copy_tree(client, &child.source, repo, &child.manifest).await
        })
        .await?;
    // Every tag gets the same bytes, hence the same digest.
    for t in tags {
        client.put_manifest(t, index).await?;
    }
    Ok(index.digest().clone())
}

/// Loads the children of an index from the repository of `source`.
pub async fn load_children(client: &Client, source: &Reference, index: &RawManifest) -> Result<Vec<Child>, Error> {
    let Some(idx) = index.as_index() else {
        return Ok(vec![]);
    };
    stream::iter(idx.manifests.iter())
        .map(|d| async move {
            let r = at_digest(source, d);
            let m = client.get_manifest(&r).await?;
            Ok::<_, Error>(Child { source: r, manifest: m })
        })
        .buffered(PARALLEL)
        .try_collect()
        .await
}
