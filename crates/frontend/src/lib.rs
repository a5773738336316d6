//! `polyarch-frontend`: a Dockerfile and build options → one
//! [`polyarch_solver::Graph`] for every target platform, as BuildKit's
//! dockerfile2llb turns a Dockerfile into LLB.
//!
//! [`plan`] walks the stages the target needs once per platform and adds
//! their vertices to one graph; what the platforms share (a stage `FROM
//! --platform=$BUILDPLATFORM`, a COPY of the context) has equal digests
//! and is one vertex. Beside the graph a [`Plan`] holds each platform's
//! image config ([`ImageConfig`]): the metadata that is not a vertex.
//!
//! - `convert`: stages, ARGs, ONBUILD, step names, WORKDIR; `meta`: the
//!   instructions that only change the config; `exec`: RUN and its mounts;
//!   `copy`: COPY and ADD; `prefetch`: base images resolved at once.
//! - [`config`]: the image config model.
//! - [`resolve`]: the [`Resolver`] the caller implements for base images.
//!
//! Planning does no I/O but the resolver's.

pub mod config;
mod convert;
mod copy;
mod error;
mod exec;
pub mod label;
pub mod meta;
mod prefetch;
pub mod resolve;

use std::collections::BTreeMap;

use polyarch_oci::Platform;
use polyarch_solver::{Graph, VertexId};
use serde_json::json;

pub use config::ImageConfig;
pub use copy::{copy_history, git_source};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use polyarch_solver::op::Network;
pub use resolve::{ResolvedImage, Resolver, LAYOUT_REFERENCE};

/// A named context (`--build-context NAME=VALUE`) as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// Files (a directory, a Git checkout, a download): a context source of
    /// that name.
    Files,
    /// `docker-image://REF`: that image, resolved as a base image is.
    Image(String),
    /// `oci-layout://DIR[:TAG][@DIGEST]`: an image of an OCI layout
    /// directory, resolved through [`Resolver::resolve_layout`].
    Layout(Layout),
}

/// Where an image of an OCI layout is: `oci-layout://DIR[:TAG][@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The layout directory.
    pub dir: std::path::PathBuf,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// The manifest or index digest.
    pub digest: Option<polyarch_oci::Digest>,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci-layout://{}", self.dir.display())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The name a named context is known by: the familiar form of the
/// reference without `:latest`, as buildx's `ParseContextNames` and
/// BuildKit's `NamedContext` normalize both sides (`busybox`,
/// `docker.io/library/busybox` and `busybox:latest` are one name).
pub fn context_name(name: &str) -> std::result::Result<String, String> {
    let r = polyarch_oci::Reference::parse_normalized(name)
        .map_err(|e| format!("invalid build context name {name:?}: {e}"))?;
    let s = r.familiar_string();
    Ok(s.strip_suffix(":latest").map(String::from).unwrap_or(s))
}

/// What to plan: the options of `polyarch build` that shape the graph.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--target`: the stage to build (the last one when `None`).
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// The target platforms (the build platform when empty).
    pub platforms: Vec<Platform>,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// `--label`: set on the target's config.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`: every vertex ignores the cache.
    pub no_cache: bool,
    /// `--no-cache-filter`: the file-system steps of these stages ignore it.
    pub no_cache_filter: Vec<String>,
    /// `.dockerignore` patterns, left out of the context.
    pub context_excludes: Vec<String>,
    /// The network of RUN steps without `--network`.
    pub network: Network,
    /// `SOURCE_DATE_EPOCH`: the time of files that COPY and WORKDIR make.
    pub source_date_epoch: Option<i64>,
    /// `--add-host`: extra `/etc/hosts` entries of RUN steps, name → address.
    pub extra_hosts: BTreeMap<String, String>,
    /// `--ulimit`: resource limits of RUN steps.
    pub ulimits: Vec<polyarch_solver::op::Ulimit>,
    /// `--shm-size`: the size of `/dev/shm` of RUN steps.
    pub shm_size: Option<u64>,
    /// `--cgroup-parent`: the cgroup RUN steps are placed under.
    pub cgroup_parent: Option<String>,
    /// `--build-context`: named contexts by [`context_name`]; one named
    /// like a stage replaces the stage, one named like an image replaces
    /// the image wherever the Dockerfile reads it.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

impl Options {
    /// Options for the build platform `build_platform` and one target, that
    /// same platform.
    pub fn new(build_platform: Platform) -> Options {
        Options {
            target: None,
            build_args: BTreeMap::new(),
            platforms: Vec::new(),
            build_platform,
            labels: BTreeMap::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            context_excludes: Vec::new(),
            network: Network::Sandbox,
            source_date_epoch: None,
            extra_hosts: BTreeMap::new(),
            ulimits: Vec::new(),
            shm_size: None,
            cgroup_parent: None,
            named_contexts: BTreeMap::new(),
        }
    }

    /// Sets the target stage.
    pub fn with_target(mut self, target: impl Into<String>) -> Options {
        self.target = Some(target.into());
        self
    }

    /// Sets a build argument.
    pub fn with_build_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Options {
        self.build_args.insert(key.into(), value.into());
        self
    }

    /// Sets the target platforms.
    pub fn with_platforms(mut self, platforms: impl IntoIterator<Item = Platform>) -> Options {
        self.platforms = platforms.into_iter().collect();
        self
    }

    /// Sets a label of the result.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Options {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets whether every vertex ignores the cache.
    pub fn with_no_cache(mut self, no_cache: bool) -> Options {
        self.no_cache = no_cache;
        self
    }

    /// Adds a stage whose file-system steps ignore the cache.
    pub fn with_no_cache_filter(mut self, stage: impl Into<String>) -> Options {
        self.no_cache_filter.push(stage.into());
        self
    }

    /// Sets the `.dockerignore` patterns of the context.
    pub fn with_context_excludes(mut self, patterns: impl IntoIterator<Item = String>) -> Options {
        self.context_excludes = patterns.into_iter().collect();
        self
    }

    /// Sets the network of RUN steps without `--network`.
    pub fn with_network(mut self, network: Network) -> Options {
        self.network = network;
        self
    }

    /// Sets `SOURCE_DATE_EPOCH`.
    pub fn with_source_date_epoch(mut self, epoch: Option<i64>) -> Options {
        self.source_date_epoch = epoch;
        self
    }

    /// The target platforms, normalised; the build platform when none is given.
    pub(crate) fn targets(&self) -> Vec<Platform> {
        let mut out: Vec<Platform> = Vec::new();
        for p in &self.platforms {
            let p = p.normalize();
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            out.push(self.build_platform.normalize());
        }
        out
    }
}

/// The result of one target platform.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformImage {
    /// The platform it is for.
    pub platform: Platform,
    /// The vertex whose result is its root file system; `None` for a
    /// target with no file-system step (`FROM scratch` and config only).
    pub vertex: Option<VertexId>,
    /// Its image config.
    pub config: ImageConfig,
}

/// A build's plan: one graph for every platform, the target vertex and the
/// image config of each.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The graph; its targets are the platforms' vertices.
    pub graph: Graph,
    /// Per target platform, in the order asked for.
    pub images: Vec<PlatformImage>,
}

impl Plan {
    /// The plan as JSON (`polyarch debug plan`): the graph's vertices (index,
    /// digest, type, op, inputs, names), each with `platforms`, the target
    /// platforms it serves ([`Plan::serves`]), and `built_for`, the
    /// platforms its op is built for ([`Graph::platforms`]: the build
    /// platform for a `--platform=$BUILDPLATFORM` stage); the targets; and
    /// the image config of each platform.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.graph.to_json();
        let serves = self.serves();
        if let Some(vertices) = v["vertices"].as_array_mut() {
            for (vertex, platforms) in vertices.iter_mut().zip(&serves) {
                let names: Vec<String> = platforms.iter().map(Platform::format).collect();
                vertex["built_for"] = vertex["platforms"].take();
                vertex["platforms"] = json!(names);
            }
        }
        let images: Vec<serde_json::Value> = self
            .images
            .iter()
            .map(|i| {
                json!({
                    "platform": i.platform.format(),
                    "vertex": i.vertex.map(VertexId::index),
                    "config": i.config,
                })
            })
            .collect();
        v["images"] = serde_json::Value::Array(images);
        v
    }

    /// Per vertex (by index), the target platforms whose result reads it.
    /// A vertex of a stage on the build platform is built for that one
    /// platform ([`Graph::platforms`]) but serves every target that copies
    /// from it.
    pub fn serves(&self) -> Vec<Vec<Platform>> {
        let mut out: Vec<Vec<Platform>> = vec![Vec::new(); self.graph.len()];
        for image in &self.images {
            let Some(top) = image.vertex else { continue };
            let mut seen = vec![false; self.graph.len()];
            let mut todo = vec![top];
            while let Some(id) = todo.pop() {
                if std::mem::replace(&mut seen[id.index()], true) {
                    continue;
                }
                out[id.index()].push(image.platform.clone());
                if let Ok(v) = self.graph.get(id) {
                    todo.extend(v.inputs().iter().copied());
                }
            }
        }
        out
    }

    /// The graph in Graphviz's DOT language; each vertex's label also says
    /// how many target platforms it serves.
    pub fn to_dot(&self) -> String {
        let serves = self.serves();
        let mut out = String::new();
        for line in self.graph.to_dot().lines() {
            let node = line.trim_start().strip_prefix('v').and_then(|r| r.split_once(" [label=\""));
            match (node.and_then(|(i, _)| i.parse::<usize>().ok()), line.strip_suffix("\"];")) {
                (Some(i), Some(head)) if i < serves.len() => {
                    let list: Vec<String> = serves[i].iter().map(Platform::format).collect();
                    out.push_str(&format!("{head}\\nserves {}: {}\"];\n", list.len(), list.join(", ")));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Plans the build of `dockerfile` (its bytes; `name` is how errors name
/// it, e.g. `Dockerfile`) for every platform of `options`, resolving base
/// images through `resolver`.
pub async fn plan<R: Resolver>(dockerfile: &[u8], name: &str, options: &Options, resolver: &R) -> Result<Plan> {
    convert::Converter::new(dockerfile, name, options, resolver)?.convert().await
}

/// The vertices of the contexts the client sends (the build context and
/// each named context of files) as [`plan`] makes them, with the same
/// digests and names: a build shows them before its plan is made.
pub fn context_vertices(options: &Options) -> Result<Graph> {
    convert::context_vertices(options)
}

#[cfg(test)]
mod tests;
