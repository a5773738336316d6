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
//! Every blob is checked with a `HEAD` first; a missing one is mounted
//! when another stored name for the image lives on the same registry (the
//! repository it was pulled from), else uploaded from the store.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, StreamExt, TryStreamExt};
use polyarch_oci::{media_type as mt, Descriptor, Digest, Platform, RawManifest, Reference};
use polyarch_registry::{ByteStream, Client, CopyOutcome, Direction, PushOutcome, PushSource};
use polyarch_store::{BlobSource, Store};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::pull::at_digest;
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
    let root_desc = root.descriptor();
    events(Event::Resolved {
        reference: target.to_string(),
        digest: root_desc.digest.clone(),
        media_type: root_desc.media_type.clone(),
    });
    let mut blobs: Vec<Descriptor> = Vec::new();
    for (_, m) in &images {
        let Some(image) = m.as_image() else { continue };
        for b in std::iter::once(&image.config).chain(&image.layers) {
            let foreign = mt::is_non_distributable(&b.media_type) && !store.exists(&b.digest)?;
            if !foreign && !blobs.iter().any(|x| x.digest == b.digest) {
                blobs.push(b.clone());
            }
        }
    }
    let mount_from = mount_source(store, name, &desc, &target)?;
    let outcomes: Vec<CopyOutcome> = stream::iter(blobs.iter())
        .map(|b| push_blob(client, store, &target, mount_from.as_deref(), b, events))
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    for (d, m) in &images {
        if d.digest != root_desc.digest {
            client.put_manifest(&at_digest(&target, d), m).await?;
            events(Event::Manifest { digest: d.digest.clone(), platform: d.platform.clone() });
        }
    }
    client.put_manifest(&target, &root).await?;
    events(Event::Manifest { digest: root_desc.digest.clone(), platform: None });
    let descriptor = match images.as_slice() {
        [(d, _)] if d.digest == root_desc.digest => d.clone(),
        _ => root_desc,
    };
    Ok(Pushed {
        reference: target.to_string(),
        descriptor,
        platforms: images.iter().filter_map(|(d, _)| d.platform.clone()).collect(),
        uploaded_blobs: outcomes.iter().filter(|o| **o == CopyOutcome::Uploaded).count(),
        mounted_blobs: outcomes.iter().filter(|o| **o == CopyOutcome::Mounted).count(),
        existing_blobs: outcomes.iter().filter(|o| **o == CopyOutcome::Existed).count(),
    })
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

/// A repository of the target's registry that likely has the blobs
/// already: another stored name for the same image on that registry (the
/// one it was pulled from, before `tag`). Blobs are mounted from it.
fn mount_source(store: &Store, name: &str, desc: &Descriptor, target: &Reference) -> Result<Option<String>> {
    for (other, d) in store.list()? {
        if other == name || d.digest != desc.digest {
            continue;
        }
        if let Ok(r) = Reference::parse_normalized(&other) {
            if r.domain == target.domain && r.path != target.path {
                return Ok(Some(r.path));
            }
        }
    }
    Ok(None)
}

async fn push_blob(
    client: &Client,
    store: &Store,
    target: &Reference,
    mount_from: Option<&str>,
    desc: &Descriptor,
    events: EventSink<'_>,
) -> Result<CopyOutcome> {
    if !store.exists(&desc.digest)? {
        return Err(polyarch_store::Error::BlobNotFound { digest: desc.digest.clone() }.into());
    }
    let exists = Event::BlobExists { digest: desc.digest.clone(), size: desc.size };
    if client.blob_exists(target, &desc.digest).await?.is_some() {
        events(exists);
        return Ok(CopyOutcome::Existed);
    }
    // A refused or failed mount is not an error: the blob is uploaded.
    if let Some(from) = mount_from {
        if let Ok(true) = client.mount_blob(target, from, &desc.digest).await {
            events(Event::BlobMounted { digest: desc.digest.clone(), size: desc.size, from: from.to_string() });
            return Ok(CopyOutcome::Mounted);
        }
    }
    let source = StoreBlob { path: store.blob_path(&desc.digest), digest: desc.digest.clone() };
    events(Event::BlobStarted { digest: desc.digest.clone(), size: desc.size, direction: Direction::Upload });
    let outcome = client.push_blob(target, desc, &source).await?;
    events(match outcome {
        PushOutcome::Existed => exists,
        PushOutcome::Uploaded => Event::BlobDone { digest: desc.digest.clone(), size: desc.size },
    });
    Ok(outcome.into())
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
