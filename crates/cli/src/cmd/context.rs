//! What commands share: the data directory, the registry client, reference
//! parsing with messages that name the input.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use polyarch_oci::Reference;
use polyarch_registry::{Client, ClientBuilder, DockerConfig, RegistryConfig, Timeouts};

use super::GlobalArgs;

/// polyarch's data directory: `--root`, `POLYARCH_ROOT`, `/var/lib/polyarch`
/// for root, else `$XDG_DATA_HOME/polyarch`.
pub fn data_root(global: &GlobalArgs) -> PathBuf {
    global.root.clone().unwrap_or_else(polyarch_store::default_root)
}

/// [`data_root`], made (if missing) and kept readable by its owner only,
/// as the store keeps it: for commands that write below it without
/// opening the store.
pub fn private_data_root(global: &GlobalArgs) -> Result<PathBuf> {
    let root = data_root(global);
    polyarch_store::private_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

/// The registry configuration of `--config`/`POLYARCH_CONFIG` or the default file.
pub fn registry_config(global: &GlobalArgs) -> Result<RegistryConfig> {
    RegistryConfig::load(global.config.as_deref()).context("reading the polyarch config")
}

/// `base` with a builder's `--config` on top (the keys it sets win), as
/// every node of the builder applies it.
pub fn with_builder_config(base: RegistryConfig, builder: &str, text: Option<&str>) -> Result<RegistryConfig> {
    let Some(text) = text else { return Ok(base) };
    let over = RegistryConfig::parse(text).map_err(|e| anyhow::anyhow!("builder {builder}: invalid config: {e}"))?;
    Ok(base.overlay(&over))
}

/// A registry client for this command.
pub fn client(global: &GlobalArgs, insecure: bool) -> Result<Client> {
    client_with(registry_config(global)?, insecure)
}

/// A registry client with the given configuration and the docker config's
/// credentials.
pub fn client_with(config: RegistryConfig, insecure: bool) -> Result<Client> {
    Ok(client_builder(config, insecure)?.build()?)
}

/// The builder of [`client_with`], for callers that add a progress sink.
pub fn client_builder(config: RegistryConfig, insecure: bool) -> Result<ClientBuilder> {
    let docker = DockerConfig::load().context("reading the docker config")?;
    Ok(ClientBuilder::new()
        .with_config(config)
        .with_docker_config(docker)
        .with_insecure(insecure)
        .with_timeouts(timeouts()?)
        .with_user_agent(concat!("polyarch/", env!("CARGO_PKG_VERSION"))))
}

/// The network timeouts: `POLYARCH_REGISTRY_TIMEOUT` seconds without a byte
/// from a registry (and at most that to connect), else the defaults.
pub fn timeouts() -> Result<Timeouts> {
    const VAR: &str = "POLYARCH_REGISTRY_TIMEOUT";
    let Some(raw) = std::env::var_os(VAR).filter(|v| !v.is_empty()) else { return Ok(Timeouts::default()) };
    let text = raw.to_string_lossy();
    let secs = text.trim().trim_end_matches('s').parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0);
    match secs {
        Some(s) => Ok(Timeouts::with_read(std::time::Duration::from_secs_f64(s.min(86_400.0)))),
        None => anyhow::bail!("{VAR}={text:?}: expected a positive number of seconds"),
    }
}

/// Parses a reference as docker does (docker.io default, `library/`).
pub fn parse_ref(input: &str) -> Result<Reference> {
    Ok(Reference::parse_normalized(input)?)
}

/// Parses a reference and adds the `latest` tag when it has neither tag nor digest.
pub fn parse_tagged(input: &str) -> Result<Reference> {
    Ok(parse_ref(input)?.with_default_tag())
}

/// A tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
