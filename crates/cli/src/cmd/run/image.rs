//! Which image `polyarch run` runs: a stored name or ID, a manifest of the
//! store by digest (a child of a stored index), or a reference pulled as
//! `--pull` says.
//!
//! With `--platform` the image must be for that platform. Without it, as
//! `docker run` does, the host's platform is preferred, but an image that
//! holds only foreign platforms still runs (under emulation) after
//! Docker's warning.

use anyhow::{bail, Context as _, Result};
use polyarch_oci::{Descriptor, Platform};
use polyarch_store::Store;
use polyarch_transfer::local::{self, LocalImage};
use polyarch_transfer::PlatformSelection;

use super::super::context::{self, parse_ref, parse_tagged};
use super::super::images::{familiar, lookup};
use super::super::GlobalArgs;
use super::PullPolicy;

/// The image `input` names for `requested` (the host's, preferred, when
/// `None`), stored or pulled as `pull` says; warns on stderr when no
/// platform was requested and the image is not the host's.
pub fn find(
    global: &GlobalArgs,
    store: &Store,
    rt: &tokio::runtime::Runtime,
    input: &str,
    requested: Option<&Platform>,
    pull: PullPolicy,
) -> Result<LocalImage> {
    let image = find_or_pull(global, store, rt, input, requested, pull)?;
    if requested.is_none() {
        if let Some(warning) = platform_warning(&image.platform(), &Platform::host()) {
            eprintln!("WARNING: {warning}");
        }
    }
    Ok(image)
}

/// Docker's warning for an image whose platform the host does not run
/// natively, when no platform was asked for.
pub fn platform_warning(image: &Platform, host: &Platform) -> Option<String> {
    if host.only().matches(image) {
        return None;
    }
    Some(format!(
        "The requested image's platform ({}) does not match the detected host platform ({}) and no specific \
         platform was requested",
        image.format(),
        host.format()
    ))
}

fn find_or_pull(
    global: &GlobalArgs,
    store: &Store,
    rt: &tokio::runtime::Runtime,
    input: &str,
    requested: Option<&Platform>,
    pull: PullPolicy,
) -> Result<LocalImage> {
    let wanted = || requested.cloned().unwrap_or_else(Platform::host).format();
    if pull != PullPolicy::Always {
        if let Some(img) = stored(store, input, requested)? {
            return Ok(img);
        }
        if pull == PullPolicy::Never {
            bail!("no such image for {}: {input} (and --pull never)", wanted());
        }
    }
    // Not stored (nor an image ID): a name that cannot be pulled fails
    // before anything is said about pulling it.
    let reference = parse_tagged(input)?;
    if pull != PullPolicy::Always {
        eprintln!("Unable to find image '{input}' locally");
    }
    let client = context::client(global, false)?;
    let selection = requested.map_or(PlatformSelection::Host, |p| PlatformSelection::One(p.clone()));
    let pulled = rt
        .block_on(polyarch_transfer::pull(&client, store, &reference, &selection, &polyarch_transfer::event::ignore))
        .with_context(|| format!("{input} for {} is not in the local store, and pulling it failed", wanted()))?;
    eprintln!("Digest: {}", pulled.descriptor.digest);
    eprintln!("Status: Downloaded newer image for {}", familiar(&pulled.name));
    Ok(local::image_for(store, &pulled.name, &pulled.descriptor, requested)?)
}

/// The stored image for `requested`: by name or ID, else by the digest of
/// a reference (`NAME@sha256:...`) when the store holds that manifest.
/// `None` when the store lacks it or has it only for other platforms.
fn stored(store: &Store, input: &str, requested: Option<&Platform>) -> Result<Option<LocalImage>> {
    let Some((name, desc)) = stored_manifest(store, input)? else { return Ok(None) };
    match local::image_for(store, &name, &desc, requested) {
        Ok(img) => Ok(Some(img)),
        Err(e) if is_elsewhere(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The stored image's answer says only that it lacks the platform.
fn is_elsewhere(e: &polyarch_transfer::Error) -> bool {
    e.kind() == polyarch_transfer::ErrorKind::NotFound || matches!(e, polyarch_transfer::Error::PlatformMismatch { .. })
}

fn stored_manifest(store: &Store, input: &str) -> Result<Option<(String, Descriptor)>> {
    if let Ok(found) = lookup(store, input) {
        return Ok(Some(found));
    }
    let Some(digest) = parse_ref(input).ok().and_then(|r| r.digest) else { return Ok(None) };
    Ok(local::manifest_by_digest(store, &digest)?.map(|d| (input.to_string(), d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_is_dockers_and_only_for_foreign_platforms() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let i386 = Platform::parse("linux/386").unwrap();
        assert_eq!(
            platform_warning(&arm64, &amd64).unwrap(),
            "The requested image's platform (linux/arm64) does not match the detected host platform (linux/amd64) \
             and no specific platform was requested"
        );
        assert!(platform_warning(&amd64, &amd64).is_none());
        assert!(platform_warning(&i386, &amd64).is_none(), "amd64 machines run 386 natively");
    }
}
