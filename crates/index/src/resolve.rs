//! Reading sources from a registry: a manifest and, for an image, the
//! platform its config declares.

use polyarch_oci::{ImageConfig, Platform, RawManifest, Reference};
use polyarch_registry::Client;

use crate::Error;

/// Configs larger than this are refused (they are small JSON documents).
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// A manifest fetched from a registry, with its image platform.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub reference: Reference,
    pub manifest: RawManifest,
    /// For an image: os/arch/variant (and os.version/os.features) of its config.
    pub platform: Option<Platform>,
}

/// Fetches `reference`; for an image, also its config to learn its platform.
pub async fn fetch(client: &Client, reference: &Reference) -> Result<Fetched, Error> {
    let manifest = client.get_manifest(reference).await?;
    let platform = match manifest.as_image() {
        Some(image) => {
            let config = client.get_blob_bytes(reference, &image.config, MAX_CONFIG_SIZE).await?;
            let config = ImageConfig::from_slice(&config)?;
            let p = config.platform();
            if p.os.is_empty() && p.architecture.is_empty() {
                None
            } else {
                Some(p)
            }
        }
        None => None,
    };
    Ok(Fetched { reference: reference.clone(), manifest, platform })
}
