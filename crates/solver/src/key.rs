//! Cache keys, as BuildKit's `CacheMap` (bk/solver/types.go): the sha256
//! of a canonical JSON document (object keys sorted, no spaces, serde's
//! escaping) of the op's version tag, the op normalised (fields that do not
//! change the result cleared), the platform where the op's result depends
//! on it, the keys of its inputs with a checksum of the content it reads
//! from them when the caller's [`crate::ContentChecksum`] gives one, and a
//! source's content checksum.
//!
//! What normalisation clears, per op:
//! - exec: proxy variables and the addresses of extra hosts (as
//!   BuildKit's ExecOp); a secret has only an id, never a value;
//! - copy: the directories of the source paths, when the content read from
//!   the source is checksummed (BuildKit keeps `path.Base(src)`), unless
//!   `parents` keeps those directories in the result;
//! - image: the reference, once a digest is resolved;
//! - context: its name (the checksum covers its files);
//! - git: the branch or tag, once a commit is resolved;
//! - http: the URL, when the op carries the body's checksum;
//! - every op: the vertex's progress name and cache options, and the
//!   platform of ops whose result does not depend on it.

use polyarch_oci::{Digest, Platform};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::graph::Vertex;
use crate::op::{Op, Source};

/// Version tag of the document that joins an op's map with its inputs.
const KEY_VERSION: &str = "polyarch.cachekey.v0";

/// One input's part of a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DepKey {
    /// The input's cache key.
    pub key: Digest,
    /// The checksum of the content the op reads from it, when computed.
    pub checksum: Option<Digest>,
}

impl DepKey {
    /// An input known by its key alone.
    pub fn new(key: Digest) -> DepKey {
        DepKey { key, checksum: None }
    }

    /// Adds the checksum of the content read from the input.
    pub fn with_checksum(mut self, checksum: Option<Digest>) -> DepKey {
        self.checksum = checksum;
        self
    }
}

/// Version tag of a key with the solver's salt mixed in.
const SALTED_VERSION: &str = "polyarch.salted.v0";

/// `key` with `salt` mixed in; `key` itself when `salt` is empty.
pub fn salted(key: Digest, salt: &str) -> Result<Digest> {
    if salt.is_empty() {
        return Ok(key);
    }
    digest_of(&json!({ "type": SALTED_VERSION, "key": key, "salt": salt }), "salted key")
}

/// The canonical JSON encoding of `value`: object keys sorted by their
/// bytes at every level, no whitespace. Independent of map insertion order
/// (serde_json keeps insertion order in this workspace).
pub fn canonical_json(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>> {
    let v = serde_json::to_value(value).map_err(|source| Error::Encode { what, source })?;
    let mut out = Vec::new();
    write_canonical(&v, &mut out).map_err(|source| Error::Encode { what, source })?;
    Ok(out)
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (k, (name, value)) in entries.into_iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, name)?;
                out.push(b':');
                write_canonical(value, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// The sha256 of the canonical encoding of `value`.
pub fn digest_of(value: &impl Serialize, what: &'static str) -> Result<Digest> {
    Ok(Digest::sha256(&canonical_json(value, what)?))
}

/// A platform as keys, digests, events and errors spell it (normalised,
/// with OS version and features: `linux/arm/v7`, `windows(10.0.1)/amd64`).
pub fn platform_string(p: &Platform) -> String {
    p.normalize().format_all()
}

/// Whether two platforms are the same once normalised.
pub fn same_platform(a: &Platform, b: &Platform) -> bool {
    platform_string(a) == platform_string(b)
}

/// The base name of a slash path, as Go's `path.Base`.
fn base_name(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// `op` with the fields that do not change its result cleared.
/// `source_checksummed` says whether the content a copy reads from its
/// source input is in the key; `content` whether a source's content is.
pub fn normalize(op: &Op, source_checksummed: bool, content: bool) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Exec(e) => {
            e.proxy_env.clear();
            e.extra_hosts.values_mut().for_each(String::clear);
        }
        Op::Copy(c) if source_checksummed && !c.parents => {
            c.paths = c.paths.iter().map(|p| base_name(p)).collect();
        }
        Op::Source(Source::Image(i)) if i.resolved.is_some() => i.reference.clear(),
        Op::Source(Source::Context(c)) if content => c.name.clear(),
        Op::Source(Source::Git(g)) if g.commit.is_some() => g.reference.clear(),
        Op::Source(Source::Http(h)) if h.checksum.is_some() => h.url.clear(),
        _ => {}
    }
    op
}

/// The cache key of `op` for `platform` as a step of a build that is not
/// solved as one [`crate::Graph`] (the Dockerfile interpreter of
/// polyarch-builder): the same key as [`Vertex::cache_key`] of a vertex
/// of `op` whose inputs have the keys `deps`. `name` names the step in
/// errors.
pub fn op_key(op: &Op, platform: &Platform, name: &str, deps: &[DepKey], content: Option<&Digest>) -> Result<Digest> {
    let needed = op.input_uses().iter().map(|u| u.input + 1).max().unwrap_or(0);
    if deps.len() < needed {
        return Err(Error::InputKeys { vertex: name.to_string(), given: deps.len(), inputs: needed });
    }
    check_resolved(op, name, &platform_string(platform), content)?;
    map_and_deps(op, platform, deps, content)
}

fn map_and_deps(op: &Op, platform: &Platform, deps: &[DepKey], content: Option<&Digest>) -> Result<Digest> {
    let uses = op.input_uses();
    let source_checksummed = match op {
        Op::Copy(c) => deps.get(c.source).is_some_and(|d| d.checksum.is_some()),
        _ => false,
    };
    let op = normalize(op, source_checksummed, content.is_some());
    let platform = op.platform_matters().then(|| platform_string(platform));
    let map = json!({ "type": op.cache_version(), "op": op, "platform": platform, "content": content });
    let map = digest_of(&map, "cache map")?;
    let deps: Vec<Value> = deps
        .iter()
        .enumerate()
        .map(|(i, d)| {
            // A checksum counts only where the op reads content by it.
            let by_content = uses.iter().any(|u| u.input == i && u.content_based);
            json!({ "key": d.key, "checksum": d.checksum.as_ref().filter(|_| by_content) })
        })
        .collect();
    digest_of(&json!({ "type": KEY_VERSION, "map": map, "deps": deps }), "cache key")
}

/// `key` with a typed extension mixed in, under the extension's own
/// version tag `version`: for what a caller keys besides the op (how a
/// build writes a step's result as a layer, say). Like [`salted`], but the
/// extension is a serde value, so renaming a Rust field or variant that
/// is not renamed for serde cannot move a key unnoticed by the golden tests.
pub fn extended(key: Digest, version: &'static str, ext: &impl Serialize) -> Result<Digest> {
    let ext = serde_json::to_value(ext).map_err(|source| Error::Encode { what: "key extension", source })?;
    digest_of(&json!({ "type": version, "key": key, "ext": ext }), "extended key")
}

impl Vertex {
    /// The cache key of this vertex given its inputs' parts (one per input,
    /// in order) and, for a context or an http source without a checksum,
    /// the checksum of the source's content.
    pub fn cache_key(&self, platforms: &str, deps: &[DepKey], content: Option<&Digest>) -> Result<Digest> {
        if deps.len() != self.inputs().len() {
            let (vertex, given, inputs) = (self.name().to_string(), deps.len(), self.inputs().len());
            return Err(Error::InputKeys { vertex, given, inputs });
        }
        check_resolved(self.op(), self.name(), platforms, content)?;
        map_and_deps(self.op(), self.platform(), deps, content)
    }
}

/// Sources whose key would not pin their content are refused.
fn check_resolved(op: &Op, name: &str, platforms: &str, content: Option<&Digest>) -> Result<()> {
    let unresolved = |what: String, needed| Error::Unresolved {
        vertex: name.to_string(),
        platform: platforms.to_string(),
        what,
        needed,
    };
    let missing =
        |what: String| Error::MissingChecksum { vertex: name.to_string(), platform: platforms.to_string(), what };
    match op {
        Op::Source(Source::Image(i)) if i.resolved.is_none() => {
            Err(unresolved(format!("image {}", i.reference), "digest"))
        }
        Op::Source(Source::Git(g)) if g.commit.is_none() => {
            Err(unresolved(format!("git {}#{}", g.remote, g.reference), "commit"))
        }
        Op::Source(Source::Context(c)) if content.is_none() => Err(missing(format!("context {:?}", c.name))),
        Op::Source(Source::Http(h)) if h.checksum.is_none() && content.is_none() => {
            Err(missing(format!("download {}", h.url)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
