//! Publishing: copying every child of an index (manifests, configs, layers)
//! into the target repository before the index itself is written.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use futures_util::{stream, StreamExt, TryStreamExt};
use polyarch_oci::{Descriptor, Digest, RawManifest, Reference};
use polyarch_registry::{push_tree, BlobOrigin, Client, Error as RegistryError, PushSource, SourceFn, Tree};

use crate::Error;

/// How many blobs or manifests move at once.
const PARALLEL: usize = 8;

fn at_digest(repo: &Reference, desc: &Descriptor) -> Reference {
    Reference { domain: repo.domain.clone(), path: repo.path.clone(), tag: None, digest: Some(desc.digest.clone()) }
}

/// One child of an index to publish and where it can be read from.
#[derive(Debug, Clone)]
pub struct Child {
    pub source: Reference,
    pub manifest: RawManifest,
}

/// Publishes `index` under every reference in `tags`: the registry's
/// one push ([`polyarch_registry::push_tree`]): first every child (the
/// children of a child that is an index too) with its blobs into every
/// distinct target repository, mounted from the child's repository when
/// it is on the same registry, else streamed from it; then the index
/// under each tag. If any child fails, no tag is written. Returns the
/// index digest.
pub async fn publish_index(
    client: &Client,
    index: &RawManifest,
    children: &[Child],
    tags: &[Reference],
) -> Result<polyarch_oci::Digest, Error> {
    let mut manifests = Vec::new();
    let mut origin = FromRepos { client: client.clone(), repos: HashMap::new() };
    for child in children {
        expand(client, &child.source, &child.manifest, &mut manifests, &mut origin).await?;
    }
    let tree = Tree { root: index.clone(), manifests };
    push_tree(client, &origin, &tree, tags, PARALLEL, &|_| {}).await?;
    Ok(index.digest().clone())
}

/// Adds `manifest` (in `source`'s repository) to `out` after what it
/// lists, and notes where its blobs are.
async fn expand(
    client: &Client,
    source: &Reference,
    manifest: &RawManifest,
    out: &mut Vec<(Descriptor, RawManifest)>,
    origin: &mut FromRepos,
) -> Result<(), Error> {
    if let Some(idx) = manifest.as_index() {
        for d in &idx.manifests {
            let child = client.get_manifest(&at_digest(source, d)).await?;
            Box::pin(expand(client, source, &child, out, origin)).await?;
        }
    } else if let Some(image) = manifest.as_image() {
        for b in std::iter::once(&image.config).chain(&image.layers) {
            origin.repos.entry(b.digest.clone()).or_insert_with(|| source.trimmed());
        }
    }
    if !out.iter().any(|(d, _)| d.digest == *manifest.digest()) {
        out.push((manifest.descriptor(), manifest.clone()));
    }
    Ok(())
}

/// Blobs read from the repositories the children came from.
struct FromRepos {
    client: Client,
    repos: HashMap<Digest, Reference>,
}

impl BlobOrigin for FromRepos {
    fn source<'a>(&'a self, desc: &Descriptor) -> Result<Box<dyn PushSource + 'a>, RegistryError> {
        let src = self.repos.get(&desc.digest).cloned().ok_or_else(|| RegistryError::Source {
            reference: format!("blob {}", desc.digest),
            reason: "no source repository lists it".into(),
        })?;
        let (client, desc) = (self.client.clone(), desc.clone());
        Ok(Box::new(SourceFn(move || {
            let (client, src, desc) = (client.clone(), src.clone(), desc.clone());
            let open: BoxFuture<'static, _> = Box::pin(async move { Ok(client.get_blob(&src, &desc).await?.boxed()) });
            open
        })))
    }

    fn has(&self, desc: &Descriptor) -> bool {
        // Foreign layers with URLs stay where their URLs say.
        desc.urls.is_none()
    }

    fn mounts(&self, desc: &Descriptor, domain: &str) -> Vec<String> {
        self.repos.get(&desc.digest).filter(|r| r.domain == domain).map(|r| vec![r.path.clone()]).unwrap_or_default()
    }

    fn trusts_present_manifests(&self) -> bool {
        true
    }
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
