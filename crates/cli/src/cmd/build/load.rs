//! `--load` and `-o type=docker` without `dest`: into the Docker engine the
//! docker CLI would use when one answers, as buildx's docker driver does,
//! else into the local store; either way the build says which.

use anyhow::Result;
use polyarch_builder::export::{self, Built};
use polyarch_builder::BuildResult;
use polyarch_index::Annotation;
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

/// Loads `built` under `names`. An index goes whole into an engine with
/// the containerd image store (an OCI archive); into one without it, one
/// platform (the host's if built, else the first), the others named as not
/// loaded.
pub(super) fn load(store: &Store, built: &Built, names: &[String], annotations: &[Annotation]) -> Result<()> {
    let Some(to) = engine_or_store()? else {
        return Ok(export::tag(store, built, names)?);
    };
    let one = match built {
        Built::Image(_) => built.clone(),
        Built::Index(_) if to.info.containerd_store() => {
            let lines = engine::load_docker_archive(&to.engine, |w| {
                Ok(export::write_oci_tar(store, built, names, annotations, w)?)
            })?;
            report(lines);
            return Ok(());
        }
        Built::Index(_) => {
            let results = built.images();
            let Some(chosen) = pick(&results, &Platform::host()) else {
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
            Built::Image(Box::new((*chosen).clone()))
        }
    };
    let lines =
        engine::load_docker_archive(&to.engine, |w| Ok(export::write_docker_tar(store, &one, names, w).map(|_| ())?))?;
    report(lines);
    Ok(())
}

/// The host's platform if it was built, else the first.
fn pick<'a>(results: &[&'a BuildResult], host: &Platform) -> Option<&'a BuildResult> {
    results.iter().find(|r| host.only().matches(&r.platform)).or(results.first()).copied()
}
