//! Step keys: every key of a build is the key of a typed op of
//! [`polyarch_solver::op`] (the op the frontend makes for the step, its
//! inputs the step's parent and what it reads), computed by the solver's
//! key code ([`polyarch_solver::key::op_key`], the key of a vertex of that
//! op), with what the op does not say mixed in as one typed extension
//! ([`Layering`]: the platform, how the result is written as a layer, the
//! addresses of extra hosts). No part of a key is Rust `Debug` output, so
//! renaming a field or variant cannot move a persisted key unseen; the
//! golden file `testdata/step-keys.golden` pins one key of each kind.

use std::net::IpAddr;

use polyarch_oci::{Digest, Platform};
use polyarch_solver::key::{extended, op_key, platform_string};
use polyarch_solver::op::{ContextSource, Id, ImageSource, Merge, Op, Owner, Source};
use polyarch_solver::DepKey;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layer::Compression;

/// Version tag of a step's extension; bumped whenever what a step writes
/// for the same op and extension changes.
const STEP_VERSION: &str = "polyarch.build.step.v0";

/// What a build's step keys cover besides the op: the platform where the
/// op's result depends on it (an exec, as BuildKit's `ExecOp` keys it; a
/// file op gives every platform the same files, so the platforms of a
/// build share it as they share its vertex in the plan) and how the build
/// writes a result as a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layering {
    platform: Platform,
    compression: Compression,
    source_date_epoch: Option<i64>,
    rewrite_timestamp: bool,
}

/// The extension as keys spell it.
#[derive(Serialize)]
struct Extension<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    compression: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_date_epoch: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    rewrite_timestamp: bool,
    #[serde(skip_serializing_if = "<[Host<'_>]>::is_empty")]
    hosts: &'a [Host<'a>],
}

/// An extra `/etc/hosts` entry of a RUN, with its address (the solver's
/// normalisation keys an exec's hosts by name only; a build keeps the
/// address in the key, as it always did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host<'a> {
    /// Host name.
    pub name: &'a str,
    /// Address.
    pub address: String,
}

impl<'a> Host<'a> {
    /// The hosts of `--add-host`, in order.
    pub fn all(hosts: &'a [(String, IpAddr)]) -> Vec<Host<'a>> {
        hosts.iter().map(|(name, addr)| Host { name, address: addr.to_string() }).collect()
    }
}

impl Layering {
    /// The keys of a build for `platform` writing layers this way.
    pub fn new(
        platform: &Platform,
        compression: Compression,
        source_date_epoch: Option<i64>,
        rewrite_timestamp: bool,
    ) -> Layering {
        Layering { platform: platform.clone(), compression, source_date_epoch, rewrite_timestamp }
    }

    /// The key of a step that runs `op` on inputs keyed `deps` (the
    /// step's `name` only names it in errors).
    pub fn step(&self, op: &Op, name: &str, deps: &[DepKey], hosts: &[Host<'_>]) -> Result<Digest> {
        let key = self.op(op, name, deps, None)?;
        let ext = Extension {
            platform: op.platform_matters().then(|| platform_string(&self.platform)),
            compression: self.compression.name(),
            source_date_epoch: self.source_date_epoch,
            rewrite_timestamp: self.rewrite_timestamp,
            hosts,
        };
        extended(key, STEP_VERSION, &ext).map_err(Error::key)
    }

    /// The key of an op that a step reads (a here-document, a download,
    /// the sources of a COPY merged) on this platform: the op's own key.
    pub fn op(&self, op: &Op, name: &str, deps: &[DepKey], content: Option<&Digest>) -> Result<Digest> {
        op_key(op, &self.platform, name, deps, content).map_err(Error::key)
    }
}

/// The key of `FROM scratch`: the empty tree (a merge of nothing).
pub fn scratch() -> Result<Digest> {
    let op = Op::Merge(Merge { inputs: Vec::new() });
    op_key(&op, &Platform::new("linux", "amd64", None), "scratch", &[], None).map_err(Error::key)
}

/// The key of an image's root file system: its manifest for `platform`.
pub fn image(reference: &str, manifest: &Digest, platform: &Platform) -> Result<Digest> {
    let op = Op::Source(Source::Image(ImageSource { reference: reference.into(), resolved: Some(manifest.clone()) }));
    op_key(&op, platform, reference, &[], None).map_err(Error::key)
}

/// The key of files of a context (the build context, a named one) as a
/// step reads them: by the checksum of their content.
pub fn context(name: &str, content: &Digest) -> Result<Digest> {
    let op = Op::Source(Source::Context(ContextSource { name: name.into(), ..ContextSource::default() }));
    op_key(&op, &Platform::new("linux", "amd64", None), name, &[], Some(content)).map_err(Error::key)
}

/// Where a step reads files from (a COPY's source, a bind mount's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The build context.
    Context,
    /// A named context of files.
    Named(String),
    /// A stage or an image, by its key.
    State(Digest),
}

impl Origin {
    /// The input of a step that reads the content checksummed `checksum`
    /// from here: a context is keyed by that content, a state by its key.
    pub fn dep(&self, checksum: &Digest) -> Result<DepKey> {
        let key = match self {
            Origin::Context => context("context", checksum)?,
            Origin::Named(name) => context(name, checksum)?,
            Origin::State(key) => key.clone(),
        };
        Ok(dep(&key, Some(checksum)))
    }
}

/// A numeric id as ops hold it (ids past `u32` as `u32::MAX`).
pub fn id(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A resolved owner (uid, gid) as ops name it.
pub fn owner((uid, gid): (u64, u64)) -> Owner {
    Owner { user: Id::Id(id(uid)), group: Some(Id::Id(id(gid))) }
}

/// A state's key as a step's input, with the checksum of what the step
/// reads from it when it reads by content.
pub fn dep(key: &Digest, checksum: Option<&Digest>) -> DepKey {
    DepKey::new(key.clone()).with_checksum(checksum.cloned())
}

#[cfg(test)]
mod tests;
