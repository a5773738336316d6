//! Base images: the images a build names (`FROM`, `COPY --from`,
//! `RUN --mount=from`), resolved for a platform from the local store or a
//! registry as the [`ResolveMode`] says, pulled into the store (mirrors
//! apply through the registry client), and read back as a config plus
//! layers.
//!
//! A stored image is found by name (as `polyarch build -t`, `pull` or
//! `load` stored it) or by the digest of any stored manifest; in an index
//! each platform takes its own child (as `polyarch_transfer::local`
//! chooses it for `run` and the other commands).

use polyarch_oci::{media_type as mt, Descriptor, Digest, Platform, Reference};
use polyarch_registry::Client;
use polyarch_store::{BlobSource, Store};

use crate::config::Image;
use crate::error::{Error, Result};
use crate::layer::Layer;

/// Where images named by a build are looked for, as BuildKit's
/// `image-resolve-mode` with Docker's engine: `default` (and `local`) use
/// the stored image when it has the wanted platform and ask the registry
/// otherwise; `pull` (buildx `--pull`) always asks the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResolveMode {
    /// The stored image when it has the platform, else the registry.
    #[default]
    PreferLocal,
    /// The registry, always (the image is fetched again if it changed).
    Pull,
}

impl std::str::FromStr for ResolveMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ResolveMode, String> {
        match s {
            "default" | "local" => Ok(ResolveMode::PreferLocal),
            "pull" => Ok(ResolveMode::Pull),
            other => Err(format!("invalid image resolve mode {other:?} (want default, pull or local)")),
        }
    }
}

/// The image `reference` names for `platform`: from the store unless
/// `mode` is [`ResolveMode::Pull`] or the store lacks it for the platform,
/// else from the registry through `client` (none: no registry access),
/// with its layers in the store ([`resolve_metadata`], then
/// [`fetch_layers`]). When both fail, the error says why each did.
pub async fn resolve(
    client: Option<&Client>,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    mode: ResolveMode,
) -> Result<BaseImage> {
    let img = resolve_metadata(client, store, reference, platform, mode).await?;
    fetch_layers(client, store, &img, &polyarch_transfer::event::ignore).await?;
    Ok(img)
}

/// As [`resolve`], with only the manifest and config of a registry image
/// put into the store, no layer fetched: what a build's "load metadata"
/// step, a plan and a check need.
pub async fn resolve_metadata(
    client: Option<&Client>,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    mode: ResolveMode,
) -> Result<BaseImage> {
    let local = match mode {
        ResolveMode::Pull => None,
        ResolveMode::PreferLocal => match stored(store, reference, platform)? {
            Ok((top, desc)) => {
                let img = from_store(store, &desc, reference.with_digest(desc.digest.clone()))?;
                let img = img.with_top(reference.with_digest(top));
                touch(store, &img);
                return Ok(img);
            }
            Err(why) => Some(why),
        },
    };
    let remote = match client {
        Some(client) => metadata(client, store, reference, platform).await,
        None => Err(Error::Option("no registry access configured".into())),
    };
    match (remote, local) {
        (Ok(img), _) => {
            touch(store, &img);
            Ok(img)
        }
        (Err(e), None) => Err(e),
        (Err(e), Some(local)) => Err(Error::NotFound {
            reference: reference.to_string(),
            platform: platform.format(),
            local,
            registry: Box::new(e),
        }),
    }
}

/// Marks the blobs of `img` (its index, manifest, config and layers) as
/// used by this build, for the prunes that keep what was used lately.
fn touch(store: &Store, img: &BaseImage) {
    let config = store.get_manifest(&img.manifest).ok().and_then(|m| m.as_image().map(|i| i.config.digest.clone()));
    let mut blobs: Vec<&Digest> = vec![&img.manifest.digest];
    blobs.extend(img.top.digest.as_ref());
    blobs.extend(config.as_ref());
    blobs.extend(img.layers.iter().map(|l| &l.desc.digest));
    store.touch(&blobs);
}

/// Fetches the blobs of `img` the store lacks (its layers, after a
/// [`resolve_metadata`]) from its registry repository, reporting each
/// blob's moves to `events`; nothing is asked of the registry when the
/// store has them all.
pub async fn fetch_layers(
    client: Option<&Client>,
    store: &Store,
    img: &BaseImage,
    events: polyarch_transfer::EventSink<'_>,
) -> Result<()> {
    if missing_layers(store, img)?.is_empty() {
        return Ok(());
    }
    let Some(client) = client else {
        return Err(Error::Option(format!("{}: layers not stored and no registry access configured", img.pinned)));
    };
    let raw = store.get_manifest(&img.manifest)?;
    polyarch_transfer::fetch_image(client, store, &img.pinned, &img.manifest, &raw, events)
        .await
        .map_err(|e| transfer_error(&img.pinned.to_string(), e))
}

/// The layers of `img` the store does not have.
pub fn missing_layers<'a>(store: &Store, img: &'a BaseImage) -> Result<Vec<&'a Layer>> {
    let mut out = Vec::new();
    for l in &img.layers {
        if !store.exists(&l.desc.digest)? {
            out.push(l);
        }
    }
    Ok(out)
}

/// The stored image manifest of `reference` for `platform`, or why there
/// is none (an error only when the store itself fails).
fn stored(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
) -> Result<std::result::Result<(Digest, Descriptor), String>> {
    use polyarch_transfer::{local, Error as T};
    let name = reference.to_string();
    let top = match (store.resolve(&name)?, &reference.digest) {
        (Some(d), _) => d,
        (None, Some(digest)) => match local::manifest_by_digest(store, digest).map_err(Error::local)? {
            Some(d) => d,
            None => return Ok(Err(format!("no manifest {digest}"))),
        },
        (None, None) => return Ok(Err("no image of that name".into())),
    };
    let image = match local::image_for(store, &name, &top, Some(platform)) {
        Ok(image) => image,
        Err(T::NoMatchingPlatform { available, .. }) => {
            return Ok(Err(format!("it is stored for {} only", available.join(", "))))
        }
        Err(T::PlatformMismatch { actual, .. }) => return Ok(Err(format!("it is stored for {actual} only"))),
        Err(T::MissingContent { .. }) => return Ok(Err(format!("its {} image is not stored", platform.format()))),
        Err(e) => return Err(Error::local(e)),
    };
    let manifest = image.manifest.as_image().map(|m| m.layers.clone()).unwrap_or_default();
    for layer in &manifest {
        if !store.exists(&layer.digest)? {
            return Ok(Err(format!("its layer {} is not stored", layer.digest)));
        }
    }
    Ok(Ok((top.digest, image.descriptor)))
}

/// Images refuse configs larger than this.
const MAX_CONFIG: u64 = 8 * 1024 * 1024;

/// A pulled base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference with the resolved manifest digest.
    pub pinned: Reference,
    /// The reference with the digest it resolved to at the top: an
    /// index's for a multi-platform image, else the manifest's. BuildKit
    /// names the FROM step with it.
    pub top: Reference,
    /// The platform manifest.
    pub manifest: Descriptor,
    /// Its config.
    pub image: Image,
    /// Its layers, with diff ids from the config.
    pub layers: Vec<Layer>,
}

impl BaseImage {
    /// The same image, resolved at the top to `top`.
    pub fn with_top(mut self, top: Reference) -> BaseImage {
        self.top = top;
        self
    }
}

/// Resolves `reference` for `platform` and makes sure the manifest, config
/// and layers are in `store`: `polyarch_transfer`'s pull of one platform
/// (verified streaming writers, a few blobs at a time), with the
/// builder's errors.
pub async fn pull(client: &Client, store: &Store, reference: &Reference, platform: &Platform) -> Result<BaseImage> {
    let img = metadata(client, store, reference, platform).await?;
    fetch_layers(Some(client), store, &img, &polyarch_transfer::event::ignore).await?;
    Ok(img)
}

/// The manifest and config of `reference` for `platform` from the
/// registry, into the store (no layer).
async fn metadata(client: &Client, store: &Store, reference: &Reference, platform: &Platform) -> Result<BaseImage> {
    let name = reference.to_string();
    let resolved =
        polyarch_transfer::resolve_platform(client, store, reference, platform, &polyarch_transfer::event::ignore)
            .await;
    let (desc, _, top) = resolved.map_err(|e| transfer_error(&name, e))?;
    Ok(from_store(store, &desc, reference.with_digest(desc.digest.clone()))?.with_top(reference.with_digest(top)))
}

/// A transfer's error as the builder's, for image `name`.
fn transfer_error(name: &str, e: polyarch_transfer::Error) -> Error {
    use polyarch_transfer::Error as T;
    match e {
        T::NoMatchingPlatform { platform, available, .. } => {
            Error::NoPlatform { reference: name.to_string(), platform, offered: available }
        }
        T::Registry(e) => Error::registry(format!("resolving {name}"), e),
        e => Error::local(e),
    }
}

/// Reads a manifest already in the store as a base image (used when the
/// registry is not needed, e.g. for images built before).
pub fn from_store(store: &Store, manifest: &Descriptor, pinned: Reference) -> Result<BaseImage> {
    let raw = store.get_manifest(manifest)?;
    let Some(m) = raw.as_image() else {
        return Err(Error::NoPlatform {
            reference: pinned.to_string(),
            platform: "(not an image)".into(),
            offered: Vec::new(),
        });
    };
    let config = store.read_bytes(&m.config, MAX_CONFIG)?;
    let image = Image::from_base(&config)?;
    if image.diff_ids.len() != m.layers.len() {
        return Err(Error::Layer(format!("{pinned}: {} layers but {} diff ids", m.layers.len(), image.diff_ids.len())));
    }
    let layers = m
        .layers
        .iter()
        .zip(&image.diff_ids)
        .map(|(d, id)| {
            let mut desc = d.clone();
            // The layers of a Docker image go into OCI manifests.
            match desc.media_type.as_str() {
                mt::DOCKER_LAYER_GZIP => desc.media_type = mt::OCI_LAYER_GZIP.into(),
                mt::DOCKER_LAYER_TAR => desc.media_type = mt::OCI_LAYER_TAR.into(),
                _ => {}
            }
            Layer { desc, diff_id: id.clone() }
        })
        .collect();
    Ok(BaseImage { top: pinned.clone(), pinned, manifest: raw.descriptor(), image, layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_store::testsuite::{random_index, temp_store};

    fn platform(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn resolve_modes_parse_as_buildkits() {
        assert_eq!("default".parse::<ResolveMode>(), Ok(ResolveMode::PreferLocal));
        assert_eq!("local".parse::<ResolveMode>(), Ok(ResolveMode::PreferLocal));
        assert_eq!("pull".parse::<ResolveMode>(), Ok(ResolveMode::Pull));
        assert!("always".parse::<ResolveMode>().unwrap_err().contains("always"));
    }

    #[test]
    fn each_platform_finds_its_own_stored_child() {
        let (_d, store) = temp_store();
        let idx = random_index(&store, 2, 1, 5).unwrap();
        store.tag("example.com/a:1", &idx).unwrap();
        let children = store.get_manifest(&idx).unwrap().as_index().unwrap().manifests.clone();
        let r = Reference::parse_normalized("example.com/a:1").unwrap();
        for (child, p) in children.iter().zip(["linux/amd64", "linux/arm64"]) {
            let (top, found) = stored(&store, &r, &platform(p)).unwrap().unwrap();
            assert_eq!(
                (top, found.digest),
                (idx.digest.clone(), child.digest.clone()),
                "{p}: the index, then its child"
            );
        }
        let why = stored(&store, &r, &platform("linux/s390x")).unwrap().unwrap_err();
        assert_eq!(why, "it is stored for linux/amd64, linux/arm64 only");
        let unknown = Reference::parse_normalized("example.com/b:1").unwrap();
        assert_eq!(stored(&store, &unknown, &platform("linux/amd64")).unwrap().unwrap_err(), "no image of that name");
        // By digest, a child no name points at.
        let by_digest = unknown.with_digest(children[1].digest.clone());
        let (top, found) = stored(&store, &by_digest, &platform("linux/arm64")).unwrap().unwrap();
        assert_eq!((top, found.digest), (children[1].digest.clone(), children[1].digest.clone()));
        // A child whose manifest is gone is not stored for its platform.
        store.delete_blob(&children[0].digest).unwrap();
        let why = stored(&store, &r, &platform("linux/amd64")).unwrap().unwrap_err();
        assert_eq!(why, "its linux/amd64 image is not stored");
    }

    #[test]
    fn with_neither_place_the_error_says_both() {
        let (_d, store) = temp_store();
        let r = Reference::parse_normalized("example.com/none:1").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = rt.block_on(resolve(None, &store, &r, &platform("linux/arm64"), ResolveMode::PreferLocal));
        let text = err.unwrap_err().to_string();
        assert_eq!(
            text,
            "example.com/none:1 for linux/arm64 is not in the local store (no image of that name), and the \
             registry answered: no registry access configured"
        );
        let err = rt.block_on(resolve(None, &store, &r, &platform("linux/arm64"), ResolveMode::Pull)).unwrap_err();
        assert_eq!(err.to_string(), "no registry access configured");
    }
}
