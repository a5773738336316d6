//! Pushing a stored image to a registry, as `docker push` does with the
//! containerd image store:
//!
//! - an image manifest is pushed with its config and layers;
//! - an index whose content is all in the store is pushed whole, children
//!   first, so its digest is unchanged;
//! - an index pulled for one platform (see [`crate::pull`]) cannot be
//!   pushed whole: with one platform present that image manifest is pushed
//!   alone under the tag (Docker prints "Not all multiplatform-content is
//!   present and only the available single-platform image was pushed"; an
//!   [`Event::Note`] says so here); with several present it is an error
//!   asking for a platform (moby/moby#48731); with `all_platforms` any
//!   missing content is an error naming the missing platforms;
//! - with an explicit platform, only that platform's image manifest is
//!   pushed (`docker push --platform`).
//!
//! Every push, of a stored name, a build's image or index, or a node's
//! images, is [`push_content`]: each blob goes through the registry's
//! [`RepoSink`] (a `HEAD` first; a mount from another repository of the
//! same registry that the store notes holds it, such as the repository
//! a base image was pulled from; else a streamed, verified upload from the
//! store), a few at a time, then the image manifests, then the tags.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, StreamExt};
use polyarch_oci::{media_type as mt, Descriptor, Digest, Platform, RawManifest, Reference};
use polyarch_registry::{push_tree, BlobOrigin, ByteStream, Client, CopyOutcome, Direction, PushSource, Pushing, Tree};
use polyarch_store::{BlobSource, Store};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::{local, select, PARALLEL};

/// How to push an index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Require every child of an index to be present and push it whole.
    pub all_platforms: bool,
    /// Push only the image manifest for this platform.
    pub platform: Option<Platform>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// The reference written, e.g. `localhost:5000/app:latest`.
    pub reference: String,
    /// What the tag now points at in the registry.
    pub descriptor: Descriptor,
    /// The platforms of the image manifests pushed (empty for a single
    /// image whose index entry named none).
    pub platforms: Vec<Platform>,
    /// Blobs uploaded.
    pub uploaded_blobs: usize,
    /// Blobs mounted from another repository of the same registry.
    pub mounted_blobs: usize,
    /// Blobs the registry already had.
    pub existing_blobs: usize,
}

/// Pushes the stored image `name` to `target` (`latest` when it has
/// neither tag nor digest). See the module docs for what is pushed of an
/// index.
pub async fn push(
    client: &Client,
    store: &Store,
    name: &str,
    target: &Reference,
    opts: &PushOptions,
    events: EventSink<'_>,
) -> Result<Pushed> {
    let target = target.with_default_tag();
    let desc = local::resolve(store, name)?;
    let (root, images) = plan(store, name, &desc, opts, events)?;
    let content = Content { root, images };
    push_content(client, store, &content, std::slice::from_ref(&target), events).await
}

/// What a push sends: image manifests (with their platforms) and the
/// manifest the tags name, an index over them or one of them.
#[derive(Debug, Clone)]
pub struct Content {
    /// The manifest the tags point at.
    pub root: RawManifest,
    /// The image manifests whose blobs are pushed, each with the
    /// descriptor the index lists it by.
    pub images: Vec<(Descriptor, RawManifest)>,
}

impl Content {
    /// One image manifest, tagged itself.
    pub fn image(desc: Descriptor, manifest: RawManifest) -> Content {
        Content { root: manifest.clone(), images: vec![(desc, manifest)] }
    }

    /// The stored manifest `desc` (an image, or an index whose children
    /// are all stored).
    pub fn stored(store: &Store, desc: &Descriptor) -> Result<Content> {
        let root = store.get_manifest(desc)?;
        let images = match root.as_index() {
            None => vec![(desc.clone(), root.clone())],
            Some(index) => {
                index.manifests.iter().map(|c| Ok((c.clone(), store.get_manifest(c)?))).collect::<Result<_>>()?
            }
        };
        Ok(Content { root, images })
    }

    /// Every distributable blob, each once (foreign layers the store
    /// lacks are left to their URLs).
    fn blobs(&self, store: &Store) -> Result<Vec<Descriptor>> {
        let mut blobs: Vec<Descriptor> = Vec::new();
        // An index may list blobs (a cache index's layers and config).
        if let Some(index) = self.root.as_index() {
            let loose = index
                .manifests
                .iter()
                .filter(|d| !mt::is_index(&d.media_type) && !mt::is_image_manifest(&d.media_type));
            blobs.extend(loose.cloned());
        }
        for (_, m) in &self.images {
            let Some(image) = m.as_image() else { continue };
            for b in std::iter::once(&image.config).chain(&image.layers) {
                let foreign = mt::is_non_distributable(&b.media_type) && !store.exists(&b.digest)?;
                if !foreign && !blobs.iter().any(|x| x.digest == b.digest) {
                    blobs.push(b.clone());
                }
            }
        }
        Ok(blobs)
    }
}

/// Pushes `content` from the store under every reference of `tags` (a
/// tag, or a digest for a push by digest): the registry's
/// [`polyarch_registry::push_tree`], [`PARALLEL`] blobs at a time, each
/// mounted from another repository of the same registry the store notes
/// holds it (such as the one a base image was pulled from), else streamed
/// from the store; the tags are written only once every repository holds
/// every child.
pub async fn push_content(
    client: &Client,
    store: &Store,
    content: &Content,
    tags: &[Reference],
    events: EventSink<'_>,
) -> Result<Pushed> {
    let root_desc = content.root.descriptor();
    for t in tags {
        events(Event::Resolved {
            reference: t.to_string(),
            digest: root_desc.digest.clone(),
            media_type: root_desc.media_type.clone(),
        });
    }
    for b in content.blobs(store)? {
        if !store.exists(&b.digest)? {
            return Err(polyarch_store::Error::BlobNotFound { digest: b.digest.clone() }.into());
        }
    }
    let tree = Tree { root: content.root.clone(), manifests: content.images.clone() };
    let seen = |step: Pushing<'_>| events(event(step));
    let puts = push_tree(client, &StoreOrigin { store }, &tree, tags, PARALLEL, &seen).await?;
    let descriptor = match content.images.as_slice() {
        [(d, _)] if d.digest == root_desc.digest => d.clone(),
        _ => root_desc,
    };
    let count = |o: CopyOutcome| puts.iter().filter(|p| p.outcome == o).count();
    Ok(Pushed {
        reference: tags.first().map(|t| t.to_string()).unwrap_or_default(),
        descriptor,
        platforms: content.images.iter().filter_map(|(d, _)| d.platform.clone()).collect(),
        uploaded_blobs: count(CopyOutcome::Uploaded),
        mounted_blobs: count(CopyOutcome::Mounted),
        existing_blobs: count(CopyOutcome::Existed),
    })
}

/// A push step as a transfer event.
fn event(step: Pushing<'_>) -> Event {
    match step {
        Pushing::Upload(d) => {
            Event::BlobStarted { digest: d.digest.clone(), size: d.size, direction: Direction::Upload }
        }
        Pushing::Blob(d, put) => {
            let (digest, size) = (d.digest.clone(), d.size);
            match put.outcome {
                CopyOutcome::Existed => Event::BlobExists { digest, size },
                CopyOutcome::Mounted => Event::BlobMounted { digest, size, from: put.from.clone().unwrap_or_default() },
                CopyOutcome::Uploaded => Event::BlobDone { digest, size },
            }
        }
        Pushing::Manifest(d) => Event::Manifest { digest: d.digest.clone(), platform: d.platform.clone() },
    }
}

/// The store as the origin of a push: blobs are read from their files,
/// mounted from the repositories the store notes hold them, and noted in
/// the repositories they were pushed to.
struct StoreOrigin<'a> {
    store: &'a Store,
}

impl BlobOrigin for StoreOrigin<'_> {
    fn source<'a>(&'a self, desc: &Descriptor) -> Result<Box<dyn PushSource + 'a>, polyarch_registry::Error> {
        Ok(Box::new(StoreBlob { path: self.store.blob_path(&desc.digest), digest: desc.digest.clone() }))
    }

    fn has(&self, desc: &Descriptor) -> bool {
        self.store.exists(&desc.digest).unwrap_or(false)
    }

    fn mounts(&self, desc: &Descriptor, domain: &str) -> Vec<String> {
        self.store.sources_on(&desc.digest, domain).unwrap_or_default()
    }

    fn stored(&self, desc: &Descriptor, repo: &Reference) {
        // A lost note only costs a later mount.
        let _ = self.store.add_source(&desc.digest, &repo.domain, &repo.path);
    }
}

type Plan = (RawManifest, Vec<(Descriptor, RawManifest)>);

/// What to push: the manifest to tag and the image manifests under it.
fn plan(store: &Store, name: &str, desc: &Descriptor, opts: &PushOptions, events: EventSink<'_>) -> Result<Plan> {
    let top = store.get_manifest(desc)?;
    let Some(index) = top.as_index() else {
        if let Some(p) = &opts.platform {
            local::image_for(store, name, desc, Some(p))?;
        }
        return Ok((top.clone(), vec![(desc.clone(), top)]));
    };
    if let Some(p) = &opts.platform {
        let img = local::image_for(store, name, desc, Some(p))?;
        return Ok((img.manifest.clone(), vec![(img.descriptor, img.manifest)]));
    }
    let mut missing = Vec::new();
    for child in &index.manifests {
        if !store.exists(&child.digest)? {
            missing.push(child);
        }
    }
    if missing.is_empty() {
        let mut images = Vec::new();
        for child in &index.manifests {
            images.push((child.clone(), store.get_manifest(child)?));
        }
        return Ok((top.clone(), images));
    }
    if opts.all_platforms {
        let missing = missing
            .iter()
            .map(|d| match &d.platform {
                Some(p) if !d.is_attestation() => p.format(),
                _ => d.digest.to_string(),
            })
            .collect();
        return Err(Error::MissingContent { name: name.to_string(), missing });
    }
    let present = local::present_images(store, name, desc)?;
    match present.as_slice() {
        [(child, p)] => {
            events(Event::Note {
                message: format!(
                    "not all multi-platform content of {name} is present: only the {} image ({}) is pushed",
                    p.format(),
                    child.digest
                ),
            });
            Ok((store.get_manifest(child)?, vec![(child.clone(), store.get_manifest(child)?)]))
        }
        [] => Err(Error::MissingContent { name: name.to_string(), missing: select::offered(&index.manifests) }),
        several => Err(Error::AmbiguousPlatform {
            name: name.to_string(),
            candidates: several.iter().map(|(_, p)| p.format()).collect(),
        }),
    }
}

/// A stored blob as a re-openable upload source, read in 256 KiB chunks.
struct StoreBlob {
    path: std::path::PathBuf,
    digest: Digest,
}

const CHUNK: usize = 256 * 1024;

impl PushSource for StoreBlob {
    fn open(&self) -> BoxFuture<'_, Result<ByteStream, polyarch_registry::Error>> {
        Box::pin(async move {
            let source_err = |e: std::io::Error| polyarch_registry::Error::Source {
                reference: format!("blob {} ({})", self.digest, self.path.display()),
                reason: e.to_string(),
            };
            let file = tokio::fs::File::open(&self.path).await.map_err(source_err)?;
            let reference = format!("blob {}", self.digest);
            let s = stream::unfold(Some(file), move |state| {
                let reference = reference.clone();
                async move {
                    let mut file = state?;
                    let mut buf = vec![0u8; CHUNK];
                    match file.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), Some(file)))
                        }
                        Err(e) => {
                            Some((Err(polyarch_registry::Error::Source { reference, reason: e.to_string() }), None))
                        }
                    }
                }
            });
            Ok(s.boxed())
        })
    }
}
