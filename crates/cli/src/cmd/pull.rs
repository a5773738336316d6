//! `polyarch pull` and `polyarch push`: images between registries and the
//! local store, with Docker's flags and final lines (`docker pull`,
//! `docker push`). Progress goes to stderr. `docker-daemon:NAME` names an
//! image in a Docker engine instead (see [`super::engine`]).

use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use polyarch_oci::Platform;
use polyarch_registry::Client;
use polyarch_transfer::{PlatformSelection, PushOptions};

use super::context::{self, parse_tagged};
use super::engine;
use super::images::{familiar, open_store};
use super::GlobalArgs;
use crate::progress::{Progress, Verb};

#[derive(Args)]
pub struct PullArgs {
    /// Pull the image for this platform from an index (default: the host's).
    #[arg(long, conflicts_with = "all_platforms")]
    platform: Option<String>,
    /// Pull every platform of an index.
    #[arg(short = 'a', long = "all-platforms")]
    all_platforms: bool,
    /// Allow plain HTTP and unverified TLS.
    #[arg(long)]
    insecure: bool,
    /// Suppress progress; print only the image name.
    #[arg(short, long)]
    quiet: bool,
    /// The image: `NAME[:TAG|@DIGEST]` in a registry, or
    /// `docker-daemon:NAME[:TAG]` in the Docker engine.
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    reference: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Push the whole index; fail if any platform's content is missing.
    #[arg(long = "all-platforms", conflicts_with = "platform")]
    all_platforms: bool,
    /// Push only this platform's image manifest from an index.
    #[arg(long)]
    platform: Option<String>,
    /// Allow plain HTTP and unverified TLS.
    #[arg(long)]
    insecure: bool,
    /// Suppress progress; print only the digest line.
    #[arg(short, long)]
    quiet: bool,
    /// Push every stored tag of the repository named (as `docker push -a`).
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// The stored image; pushed to its own name's registry unless a
    /// destination is given.
    #[arg(value_name = "NAME[:TAG]")]
    reference: String,
    /// `docker-daemon:NAME[:TAG]`: load the image into the Docker engine
    /// (`DOCKER_HOST`, the docker context or the default socket) under NAME.
    #[arg(value_name = "DESTINATION")]
    destination: Option<String>,
}

fn parse_platform(p: &str) -> Result<Platform> {
    Platform::parse(p).map_err(anyhow::Error::from)
}

/// A registry client whose byte counts feed `progress`.
fn client_with_progress(global: &GlobalArgs, insecure: bool, progress: Arc<Progress>) -> Result<Client> {
    let builder = context::client_builder(context::registry_config(global)?, insecure)?;
    Ok(builder.with_progress(move |e| progress.registry(&e)).build()?)
}

pub fn pull(global: &GlobalArgs, a: PullArgs) -> Result<u8> {
    if let Some(name) = engine::daemon_name(&a.reference) {
        if a.all_platforms {
            bail!("--all-platforms: an image in the Docker engine is one platform");
        }
        return engine::pull(&open_store(global)?, name, a.quiet);
    }
    let reference = parse_tagged(&a.reference)?;
    let selection = match (&a.platform, a.all_platforms) {
        (Some(p), _) => PlatformSelection::One(parse_platform(p)?),
        (None, true) => PlatformSelection::All,
        (None, false) => PlatformSelection::Host,
    };
    let store = open_store(global)?;
    let progress = Progress::new(Verb::Pull, a.quiet);
    let client = client_with_progress(global, a.insecure, progress.clone())?;
    let rt = context::runtime()?;
    let quiet = a.quiet;
    let p = progress.clone();
    let sink = move |e: polyarch_transfer::Event| {
        if !quiet {
            p.transfer(&e)
        }
    };
    let res = rt.block_on(polyarch_transfer::pull(&client, &store, &reference, &selection, &sink));
    progress.finish();
    let pulled = res?;
    if a.quiet {
        crate::outln!("{}", pulled.name)?;
        return Ok(0);
    }
    crate::outln!("Digest: {}", pulled.descriptor.digest)?;
    let short = familiar(&pulled.name);
    if pulled.up_to_date() {
        crate::outln!("Status: Image is up to date for {short}")?;
    } else {
        crate::outln!("Status: Downloaded newer image for {short}")?;
    }
    crate::outln!("{}", pulled.name)?;
    Ok(0)
}

pub fn push(global: &GlobalArgs, a: PushArgs) -> Result<u8> {
    let daemon = match a.destination.as_deref() {
        Some(d) => match engine::daemon_name(d) {
            Some(n) => Some((a.reference.as_str(), n)),
            None => bail!("destination {d:?}: want docker-daemon:NAME[:TAG] (a registry push takes one NAME)"),
        },
        None => engine::daemon_name(&a.reference).map(|n| (n, n)),
    };
    if let Some((source, dest)) = daemon {
        if a.all_platforms {
            bail!("--all-platforms: the Docker engine takes one platform of {source}");
        }
        let platform = a.platform.as_deref().map(parse_platform).transpose()?;
        return engine::push(&open_store(global)?, source, dest, platform.as_ref(), a.quiet);
    }
    let opts = PushOptions {
        all_platforms: a.all_platforms,
        platform: a.platform.as_deref().map(parse_platform).transpose()?,
    };
    if a.all_tags {
        let repo = context::parse_ref(&a.reference)?;
        if repo.tag.is_some() || repo.digest.is_some() {
            bail!("tag can't be used with --all-tags/-a");
        }
        let store = open_store(global)?;
        let mut tags: Vec<polyarch_oci::Reference> = store
            .list()?
            .into_iter()
            .filter_map(|(n, _)| polyarch_oci::Reference::parse_normalized(&n).ok())
            .filter(|r| r.in_same_repo(&repo) && r.tag.is_some() && r.digest.is_none())
            .collect();
        tags.sort_by(|x, y| x.tag.cmp(&y.tag));
        if tags.is_empty() {
            bail!("no such image: {} has no tag in the store", repo.familiar_name());
        }
        if !a.quiet {
            eprintln!("The push refers to repository [{}/{}]", repo.domain, repo.path);
        }
        for t in tags {
            push_one(global, &store, &t, &opts, a.insecure, a.quiet)?;
        }
        return Ok(0);
    }
    let target = parse_tagged(&a.reference)?;
    if target.digest.is_some() && target.tag.is_none() {
        bail!("cannot push to {target}: give a tag, not a digest");
    }
    let store = open_store(global)?;
    if store.resolve(&target.to_string())?.is_none() {
        bail!("no such image: {} (tag a stored image with `polyarch tag` first)", a.reference);
    }
    push_one(global, &store, &target, &opts, a.insecure, a.quiet)?;
    Ok(0)
}

/// Pushes the stored image named `target` to it, with progress, and
/// prints docker's `TAG: digest: D size: N` line.
fn push_one(
    global: &GlobalArgs,
    store: &polyarch_store::Store,
    target: &polyarch_oci::Reference,
    opts: &PushOptions,
    insecure: bool,
    quiet: bool,
) -> Result<()> {
    let name = target.to_string();
    let progress = Progress::new(Verb::Push, quiet);
    let client = client_with_progress(global, insecure, progress.clone())?;
    let rt = context::runtime()?;
    let p = progress.clone();
    let sink = move |e: polyarch_transfer::Event| {
        if !quiet || matches!(e, polyarch_transfer::Event::Note { .. }) {
            p.transfer(&e)
        }
    };
    let res = rt.block_on(polyarch_transfer::push(&client, store, &name, target, opts, &sink));
    progress.finish();
    let pushed = res?;
    let tag = target.tag.as_deref().unwrap_or("latest");
    crate::outln!("{tag}: digest: {} size: {}", pushed.descriptor.digest, pushed.descriptor.size)?;
    Ok(())
}
