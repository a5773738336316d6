//! `--load` and `-o type=docker` without `dest`: into the Docker engine the
//! docker CLI would use when one answers, as buildx's docker driver does,
//! else into the local store; either way the build says which.

use anyhow::Result;
use polyarch_builder::export::{self, IndexImage};
use polyarch_builder::BuildResult;
use polyarch_oci::Platform;
use polyarch_store::Store;

use crate::cmd::engine::{self, Reachable};

/// The engine to load into, or `None` after saying that the store is used.
fn engine_or_store() -> Result<Option<Reachable>> {
    match engine::find()? {
        Ok(r) => {
            eprintln!("loading into the Docker engine at {}", r.engine.endpoint());
            Ok(Some(r))
        }
        Err(why) => {
            eprintln!("no Docker engine reachable ({why}): loading into polyarch's local store instead");
            Ok(None)
        }
    }
}

fn report(lines: Vec<String>) {
    for l in lines {
        eprintln!("{l}");
    }
}

/// Loads a one-platform result under `names`.
pub(super) fn single(store: &Store, r: &BuildResult, names: &[String]) -> Result<()> {
    let Some(to) = engine_or_store()? else {
        return Ok(export::tag(store, r, names)?);
    };
    let lines =
        engine::load_docker_archive(&to.engine, |w| Ok(export::write_docker_tar(store, r, names, w).map(|_| ())?))?;
    report(lines);
    Ok(())
}

/// Loads a multi-platform result: the whole index into an engine with the
/// containerd image store (an OCI archive), else one platform (the
/// host's if built, else the first) with the others named as not loaded.
pub(super) fn index(store: &Store, results: &[BuildResult], img: &IndexImage, names: &[String]) -> Result<()> {
    let Some(to) = engine_or_store()? else {
        return Ok(export::tag_index(store, img, names)?);
    };
    if to.info.containerd_store() {
        let lines = engine::load_docker_archive(&to.engine, |w| {
            Ok(export::write_oci_index_tar(store, img, names, w).map(|_| ())?)
        })?;
        report(lines);
        return Ok(());
    }
    let Some(chosen) = pick(results, &Platform::host()) else {
        return Ok(());
    };
    let rest: Vec<String> =
        results.iter().filter(|r| r.platform != chosen.platform).map(|r| r.platform.format()).collect();
    eprintln!(
        "the Docker engine at {} has no containerd image store, which multi-platform images need: \
         loading {} only; not loaded: {} (push them with --push, or enable the containerd image store)",
        to.engine.endpoint(),
        chosen.platform.format(),
        rest.join(", ")
    );
    let lines =
        engine::load_docker_archive(
            &to.engine,
            |w| Ok(export::write_docker_tar(store, chosen, names, w).map(|_| ())?),
        )?;
    report(lines);
    Ok(())
}

/// The host's platform if it was built, else the first.
fn pick<'a>(results: &'a [BuildResult], host: &Platform) -> Option<&'a BuildResult> {
    results.iter().find(|r| host.only().matches(&r.platform)).or(results.first())
}
