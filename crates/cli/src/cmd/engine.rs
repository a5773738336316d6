//! Docker engines as a destination and a source: which engine answers
//! (`DOCKER_HOST`, the docker context, the default socket), and
//! `polyarch push SRC docker-daemon:NAME[:TAG]` / `polyarch pull
//! docker-daemon:NAME[:TAG]` (skopeo's transport name) between the local
//! store and that engine.

use anyhow::{bail, Context as _, Result};
use polyarch_engine::{Engine, ErrorKind, Info};
use polyarch_oci::Platform;
use polyarch_store::Store;
use polyarch_transfer::local;

use super::context::parse_tagged;
use super::images::{familiar, lookup};

/// skopeo's name for images in a Docker engine.
pub const TRANSPORT: &str = "docker-daemon:";

/// The image name after `docker-daemon:`, if `s` names one.
pub fn daemon_name(s: &str) -> Option<&str> {
    s.strip_prefix(TRANSPORT)
}

/// An engine that answered `/_ping`, with its `/info`.
pub struct Reachable {
    pub engine: Engine,
    pub info: Info,
}

/// The engine the docker CLI would use, if one answers; else why not (to
/// say so). A malformed or unsupported endpoint is an error.
pub fn find() -> Result<Result<Reachable, String>> {
    let (engine, _) = Engine::from_env()?;
    match engine.ping() {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::Unreachable | ErrorKind::Protocol) => return Ok(Err(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    let info = engine.info()?;
    Ok(Ok(Reachable { engine, info }))
}

/// The engine, which must answer.
fn required() -> Result<Reachable> {
    match find()? {
        Ok(r) => Ok(r),
        Err(why) => bail!("{why}"),
    }
}

/// Streams the `docker save` archive that `write` makes into the engine;
/// returns the engine's `Loaded image...` lines.
pub fn load_docker_archive(
    engine: &Engine,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
) -> Result<Vec<String>> {
    // The engine's errors name it and the call.
    Ok(engine.load(write)?.lines)
}

/// `polyarch push SRC docker-daemon:NAME[:TAG]`: one platform of a stored
/// image (`platform`, else the host's, else the first present) into the
/// engine under NAME.
pub fn push(store: &Store, source: &str, dest: &str, platform: Option<&Platform>, quiet: bool) -> Result<u8> {
    let target = parse_tagged(dest).with_context(|| format!("destination {TRANSPORT}{dest}"))?;
    if target.tag.is_none() {
        bail!("destination {TRANSPORT}{dest}: give a tag, not a digest");
    }
    let (name, desc) = lookup(store, source)?;
    let img = local::image_for(store, &name, &desc, platform).with_context(|| format!("pushing {source}"))?;
    let r = required()?;
    let images = vec![(target.to_string(), img.descriptor.clone())];
    if !quiet {
        eprintln!(
            "loading {} ({}) into the Docker engine at {}",
            familiar(&name),
            img.platform().format(),
            r.engine.endpoint()
        );
    }
    let lines = load_docker_archive(&r.engine, |w| Ok(store.export_docker_archive(&images, w)?))?;
    for l in lines {
        crate::outln!("{l}")?;
    }
    Ok(0)
}

/// `polyarch pull docker-daemon:NAME[:TAG]`: `docker save` of NAME from
/// the engine into the store, verified as any archive load is.
pub fn pull(store: &Store, source: &str, quiet: bool) -> Result<u8> {
    let reference = parse_tagged(source).with_context(|| format!("source {TRANSPORT}{source}"))?;
    let r = required()?;
    let name = familiar(&reference.to_string());
    if !quiet {
        eprintln!("copying {name} from the Docker engine at {}", r.engine.endpoint());
    }
    let loaded = r
        .engine
        .save(&[name.as_str()], |body| store.import_archive(std::io::BufReader::new(body)).map_err(anyhow::Error::from))
        .with_context(|| format!("copying {TRANSPORT}{source} from the Docker engine at {}", r.engine.endpoint()))?;
    let Some((stored, desc)) = loaded.iter().find(|(n, _)| !n.contains('@')).or(loaded.first()) else {
        bail!("the Docker engine at {} sent no image for {name}", r.engine.endpoint());
    };
    if !quiet {
        crate::outln!("Digest: {}", desc.digest)?;
    }
    crate::outln!("{stored}")?;
    Ok(0)
}
