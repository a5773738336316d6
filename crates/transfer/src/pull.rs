//! Pulling an image or index from a registry into the store.
//!
//! For an index and one platform (`--platform`, or the host's), polyarch
//! does what `nerdctl pull --platform` does: it keeps the index itself,
//! unchanged (so its digest is the one the registry serves), plus the
//! content of the one matching image; the name points at the index. The
//! store tolerates the missing children (`prune` keeps what is there,
//! `images` shows only the present platforms). Pulling another platform
//! later adds its content to the same index. With all platforms, every
//! child is fetched, attestation manifests included, as
//! `docker pull --all-platforms` does with the containerd store.

use std::io::Write as _;

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use polyarch_oci::{media_type as mt, Descriptor, Digest, Platform, RawManifest, Reference};
use polyarch_registry::{Client, Direction};
use polyarch_store::{BlobSink, BlobSource, BlobWriter, Store};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::local::MAX_CONFIG_SIZE;
use crate::{select, PARALLEL};

/// Which platforms of an index to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformSelection {
    /// The best match for this platform (containerd's `Only` ordering).
    One(Platform),
    /// The best match for the running machine.
    Host,
    /// Every entry of the index, attestations included.
    All,
}

impl PlatformSelection {
    /// The platform wanted, or `None` for all.
    pub fn platform(&self) -> Option<Platform> {
        match self {
            PlatformSelection::One(p) => Some(p.clone()),
            PlatformSelection::Host => Some(Platform::host()),
            PlatformSelection::All => None,
        }
    }
}

/// One image manifest a pull stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledImage {
    /// The image manifest (with the platform the index gives it).
    pub descriptor: Descriptor,
    /// That platform, when the image came from an index.
    pub platform: Option<Platform>,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// The name the image is stored under, e.g.
    /// `docker.io/library/busybox:latest`.
    pub name: String,
    /// What the name points at: the index or image manifest the registry
    /// served for the reference.
    pub descriptor: Descriptor,
    /// The image manifests stored.
    pub images: Vec<PulledImage>,
    /// Blobs downloaded.
    pub fetched_blobs: usize,
    /// Bytes downloaded.
    pub fetched_bytes: u64,
    /// Blobs the store already had.
    pub existing_blobs: usize,
    /// Whether the name pointed elsewhere (or nowhere) before.
    pub retagged: bool,
}

impl Pulled {
    /// Whether nothing new was stored, as Docker's "Image is up to date".
    pub fn up_to_date(&self) -> bool {
        self.fetched_blobs == 0 && !self.retagged
    }
}

/// `repo@digest` of a descriptor in the reference's repository.
pub(crate) fn at_digest(repo: &Reference, desc: &Descriptor) -> Reference {
    Reference { domain: repo.domain.clone(), path: repo.path.clone(), tag: None, digest: Some(desc.digest.clone()) }
}

/// Pulls `reference` (`latest` when it has neither tag nor digest) into
/// `store` and names it with the full reference. See the module docs for
/// what is kept of an index.
pub async fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    selection: &PlatformSelection,
    events: EventSink<'_>,
) -> Result<Pulled> {
    let reference = reference.with_default_tag();
    let name = reference.to_string();
    let (top, top_desc) = resolve(client, &reference, &name, events).await?;
    let _lease = store.lease()?;
    let images = match top.as_index() {
        Some(index) => fetch_children(client, store, &reference, &name, &index.manifests, selection).await?,
        None => {
            if let PlatformSelection::One(want) = selection {
                check_platform(client, &reference, &name, &top, want).await?;
            }
            vec![(top_desc.clone(), top.clone())]
        }
    };
    let fetched = fetch_blobs(client, store, &reference, &images, events).await?;
    for (desc, m) in &images {
        if desc.digest != top_desc.digest {
            store.put_manifest(m)?;
            events(Event::Manifest { digest: desc.digest.clone(), platform: desc.platform.clone() });
        }
    }
    store.put_manifest(&top)?;
    events(Event::Manifest { digest: top_desc.digest.clone(), platform: None });
    let old = store.tag(&name, &top_desc)?;
    Ok(Pulled {
        name,
        descriptor: top_desc.clone(),
        images: images
            .iter()
            .map(|(d, _)| PulledImage { descriptor: d.clone(), platform: d.platform.clone() })
            .collect(),
        fetched_blobs: fetched.iter().flatten().count(),
        fetched_bytes: fetched.iter().flatten().sum(),
        existing_blobs: fetched.iter().filter(|f| f.is_none()).count(),
        retagged: old.is_none_or(|o| o.digest != top_desc.digest),
    })
}

/// Downloads the config and layers of `images` that the store lacks,
/// [`PARALLEL`] at a time; per blob, `Some(size)` when it was downloaded.
async fn fetch_blobs(
    client: &Client,
    store: &Store,
    reference: &Reference,
    images: &[(Descriptor, RawManifest)],
    events: EventSink<'_>,
) -> Result<Vec<Option<u64>>> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    for (_, m) in images {
        if let Some(image) = m.as_image() {
            for b in std::iter::once(&image.config).chain(&image.layers) {
                // Foreign layers are fetched from their URLs on use, as containerd does.
                let foreign = mt::is_non_distributable(&b.media_type) && b.urls.is_some();
                if !foreign && !blobs.iter().any(|x| x.digest == b.digest) {
                    blobs.push(b.clone());
                }
            }
        }
    }
    // Owned items: a closure over borrowed ones makes a future that is
    // not `Send` for every lifetime (rust-lang/rust#102211).
    stream::iter(blobs)
        .map(|b| async move { fetch_blob(client, store, reference, &b, events).await })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await
}

/// The image of `reference` for `platform`, into the store without a
/// name, as a build takes its base images: from an index the best match
/// (the index itself is not stored), else the image manifest whatever its
/// config says (the caller decides about a mismatch). Returns the image
/// manifest's descriptor, with the platform an index gives it, and the
/// manifest. [`resolve_platform`] then [`fetch_image`].
pub async fn pull_platform(
    client: &Client,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    events: EventSink<'_>,
) -> Result<(Descriptor, RawManifest)> {
    let (desc, m, _) = resolve_platform(client, store, reference, platform, events).await?;
    fetch_image(client, store, reference, &desc, &m, events).await?;
    Ok((desc, m))
}

/// The manifest `reference` names (tagged already) and its descriptor,
/// noted as resolved.
async fn resolve(
    client: &Client,
    reference: &Reference,
    name: &str,
    events: EventSink<'_>,
) -> Result<(RawManifest, Descriptor)> {
    let top = client.get_manifest(reference).await?;
    let desc = top.descriptor();
    events(Event::Resolved {
        reference: name.to_string(),
        digest: desc.digest.clone(),
        media_type: desc.media_type.clone(),
    });
    Ok((top, desc))
}

/// The image [`pull_platform`] would pull, with only its manifest and
/// config put into the store: no layer is fetched (what planning a build
/// or checking its Dockerfile needs, as BuildKit's "load metadata").
/// Also returns the digest `reference` resolved to at the top (an index's,
/// for a multi-platform image), which BuildKit names a FROM with.
pub async fn resolve_platform(
    client: &Client,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    events: EventSink<'_>,
) -> Result<(Descriptor, RawManifest, Digest)> {
    let reference = reference.with_default_tag();
    let name = reference.to_string();
    let (top, top_desc) = resolve(client, &reference, &name, events).await?;
    let top_digest = top_desc.digest.clone();
    let _lease = store.lease()?;
    let selection = PlatformSelection::One(platform.clone());
    let (desc, m) = match top.as_index() {
        Some(index) => fetch_children(client, store, &reference, &name, &index.manifests, &selection).await?.remove(0),
        None => (top_desc, top),
    };
    if let Some(image) = m.as_image() {
        fetch_blob(client, store, &reference, &image.config, events).await?;
    }
    store.put_manifest(&m)?;
    Ok((desc, m, top_digest))
}

/// Downloads what the store lacks of image manifest `m` of `reference`'s
/// repository (its config and layers, a few at a time), then stores the
/// manifest: the rest of a [`resolve_platform`].
pub async fn fetch_image(
    client: &Client,
    store: &Store,
    reference: &Reference,
    desc: &Descriptor,
    m: &RawManifest,
    events: EventSink<'_>,
) -> Result<()> {
    let _lease = store.lease()?;
    let images = [(desc.clone(), m.clone())];
    fetch_blobs(client, store, reference, &images, events).await?;
    store.put_manifest(m)?;
    events(Event::Manifest { digest: desc.digest.clone(), platform: desc.platform.clone() });
    Ok(())
}

/// The entries of an index to pull, per `selection`, and their manifests
/// (verified against the index's digests): a manifest the store already
/// holds is read from it (the store verifies its digest and size), the
/// others are asked of the registry.
async fn fetch_children(
    client: &Client,
    store: &Store,
    reference: &Reference,
    name: &str,
    children: &[Descriptor],
    selection: &PlatformSelection,
) -> Result<Vec<(Descriptor, RawManifest)>> {
    let chosen: Vec<&Descriptor> = match selection.platform() {
        None => children.iter().collect(),
        Some(want) => match select::best_match(children, &want) {
            Some(d) => vec![d],
            None => {
                return Err(Error::NoMatchingPlatform {
                    reference: name.to_string(),
                    platform: want.format(),
                    available: select::offered(children),
                })
            }
        },
    };
    stream::iter(chosen.into_iter().cloned().collect::<Vec<_>>())
        .map(|d| async move {
            let m = match store.get_manifest(&d) {
                Ok(m) => m,
                Err(_) => client.get_manifest(&at_digest(reference, &d)).await?,
            };
            if !m.is_index() && m.as_image().is_none() {
                return Err(Error::UnsupportedManifest {
                    reference: at_digest(reference, &d).to_string(),
                    media_type: m.media_type().to_string(),
                });
            }
            Ok((d, m))
        })
        .buffered(PARALLEL)
        .try_collect()
        .await
}

/// For a single-platform image pulled with an explicit platform: fails
/// unless its config is for that platform, as `docker pull --platform`.
async fn check_platform(
    client: &Client,
    reference: &Reference,
    name: &str,
    m: &RawManifest,
    want: &Platform,
) -> Result<()> {
    let Some(image) = m.as_image() else { return Ok(()) };
    let bytes = client.get_blob_bytes(reference, &image.config, MAX_CONFIG_SIZE).await?;
    let config = polyarch_oci::ImageConfig::from_slice(&bytes).map_err(|e| Error::InvalidConfig {
        reference: name.to_string(),
        digest: image.config.digest.clone(),
        reason: e.to_string(),
    })?;
    let actual = config.platform();
    if want.only().matches(&actual) {
        Ok(())
    } else {
        Err(Error::PlatformMismatch { reference: name.to_string(), wanted: want.format(), actual: actual.format() })
    }
}

/// Downloads one blob into the store unless it is there (noting the
/// repository as its source, for mounts); `Some(size)`
/// when it was downloaded. The body is streamed to a blocking writer
/// through a small channel, so memory stays bounded; the writer verifies
/// size and digest before the blob becomes visible.
pub async fn fetch_blob(
    client: &Client,
    store: &Store,
    repo: &Reference,
    desc: &Descriptor,
    events: EventSink<'_>,
) -> Result<Option<u64>> {
    let fetched = download(client, store, repo, desc, events).await?;
    store.add_source(&desc.digest, &repo.domain, &repo.path)?;
    Ok(fetched)
}

async fn download(
    client: &Client,
    store: &Store,
    repo: &Reference,
    desc: &Descriptor,
    events: EventSink<'_>,
) -> Result<Option<u64>> {
    let exists = Event::BlobExists { digest: desc.digest.clone(), size: desc.size };
    if store.exists(&desc.digest)? {
        events(exists);
        return Ok(None);
    }
    let writer = match store.writer(desc) {
        Ok(w) => w,
        Err(e) if e.is_already_exists() => {
            events(exists);
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    events(Event::BlobStarted { digest: desc.digest.clone(), size: desc.size, direction: Direction::Download });
    let mut body = client.get_blob(repo, desc).await?;
    // `None` tells the writer to give up without committing.
    let (tx, rx) = mpsc::channel::<Option<Bytes>>(8);
    let d = desc.clone();
    let task = tokio::task::spawn_blocking(move || write_blob(writer, rx, &d));
    let mut failure = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => {
                if tx.send(Some(chunk)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                let _ = tx.send(None).await;
                break;
            }
        }
    }
    drop(tx);
    let written = task.await.map_err(|e| Error::Writer { digest: desc.digest.clone(), reason: e.to_string() })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    written?;
    events(Event::BlobDone { digest: desc.digest.clone(), size: desc.size });
    Ok(Some(desc.size))
}

fn write_blob(mut w: BlobWriter, mut rx: mpsc::Receiver<Option<Bytes>>, desc: &Descriptor) -> Result<()> {
    while let Some(msg) = rx.blocking_recv() {
        let Some(chunk) = msg else { return Ok(()) };
        w.write_all(&chunk).map_err(|source| {
            Error::Store(polyarch_store::Error::Io { path: format!("<blob {}>", desc.digest).into(), source })
        })?;
    }
    match w.commit(desc.size, &desc.digest) {
        Err(e) if e.is_already_exists() => Ok(()),
        r => r.map_err(Error::from),
    }
}
