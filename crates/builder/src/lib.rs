//! `polyarch-builder`: Dockerfile builds for one platform without a daemon,
//! with BuildKit's semantics.
//!
//! - [`context`]: the build context, filtered by `.dockerignore`.
//! - [`dispatch`]: stages and instructions → image config and layers.
//! - [`copy`]: COPY/ADD path rules.
//! - [`config`]: the image config as BuildKit writes it.
//! - [`layer`], [`compress`], [`fs`]: deterministic layers and trees.
//! - [`cache`]: content-keyed step cache; [`cacheio`]: its import and
//!   export (`--cache-from`, `--cache-to`).
//! - [`process`], [`materialize`]: RUN steps: secrets, cache mounts,
//!   commands, output; trees on disk and their differences.
//! - [`settings`], [`ssh`]: RUN process settings of the build
//!   (`--add-host`, `--ulimit`, `--allow`, `--ssh`...).
//! - [`multi`]: several platforms at once, one scheduler; [`slots`]:
//!   its limits per kind of work.
//! - [`output`], [`export`]: outputs (store, OCI/Docker archives, tar,
//!   local, registry), parsed from `--output` and applied to one image or
//!   an index.
//!
//! RUN processes go through a [`polyarch_exec::Executor`]: runc by
//! default, or the one given to [`Builder::with_executor`] (a recording
//! fake in tests, see `testing` behind the `testing` feature).
//!
//! The library never prints: progress goes to an [`Event`] sink
//! ([`event`]: typed steps and the one step numbering).

pub mod archcheck;
pub mod base;
pub mod cache;
pub mod cacheio;
pub mod check;
pub mod compress;
pub mod config;
pub mod content;
pub mod context;
pub mod copy;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod export;
mod fetched;
pub mod fs;
pub mod git;
mod graph;
pub mod layer;
pub mod materialize;
pub mod multi;
pub mod named;
pub mod output;
pub mod process;
pub mod prune;
pub mod reclaim;
mod remote;
pub mod settings;
pub mod slots;
pub mod ssh;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod users;

use std::collections::BTreeMap;
use std::sync::Arc;

use polyarch_oci::{Descriptor, Platform};

pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventSink, Status, StepNumbers, Stream, Vertex};
pub use fs::MemFs;
pub use layer::{Compression, Encoding, Layer};

/// What to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// Its name as shown in errors (`Dockerfile`).
    pub dockerfile_name: String,
    /// The context, already filtered by `.dockerignore`.
    pub context: Arc<MemFs>,
    /// `--target`.
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// The target platform.
    pub platform: Platform,
    /// `--no-cache`.
    pub no_cache: bool,
    /// Layer compression.
    pub compression: Compression,
    /// `compression-level=`: the level new layers are compressed at
    /// (checked with [`Encoding::new`]); not in any cache key.
    pub compression_level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// Clamp file times in new layers to `SOURCE_DATE_EPOCH`.
    pub rewrite_timestamp: bool,
    /// The network of RUN steps without `--network` (`--network`).
    pub network: polyarch_exec::NetworkMode,
    /// Secrets for `RUN --mount=type=secret`, by id (`--secret`).
    pub secrets: BTreeMap<String, process::SecretSource>,
    /// The OCI runtime for RUN steps, by name or path (default runc).
    pub runtime: Option<String>,
    /// How RUN steps get their root file system (`--snapshotter`).
    pub snapshotter: process::SnapshotterKind,
    /// Stages whose RUN steps ignore the cache (`--no-cache-filter`).
    pub no_cache_filter: Vec<String>,
    /// Where named images are looked for (`--pull`).
    pub resolve_mode: base::ResolveMode,
    /// How RUN processes are set up (`--add-host`, `--ulimit`,
    /// `--shm-size`, `--cgroup-parent`, `--allow`, `--ssh`).
    pub run: settings::RunSettings,
    /// Contexts that replace stages and images by name (`--build-context`).
    pub named_contexts: named::NamedContexts,
}

impl BuildOptions {
    /// Options for `dockerfile` with an empty context, the host platform
    /// and no arguments.
    pub fn new(dockerfile: impl Into<Vec<u8>>) -> BuildOptions {
        BuildOptions {
            dockerfile: dockerfile.into(),
            dockerfile_name: "Dockerfile".into(),
            context: Arc::new(MemFs::new()),
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            platform: Platform::host(),
            no_cache: false,
            compression: Compression::Gzip,
            compression_level: None,
            source_date_epoch: None,
            rewrite_timestamp: false,
            network: polyarch_exec::NetworkMode::Host,
            secrets: BTreeMap::new(),
            runtime: None,
            snapshotter: process::SnapshotterKind::default(),
            no_cache_filter: Vec::new(),
            resolve_mode: base::ResolveMode::default(),
            run: settings::RunSettings::default(),
            named_contexts: named::NamedContexts::new(),
        }
    }

    /// Sets the context.
    pub fn with_context(mut self, context: MemFs) -> Self {
        self.context = Arc::new(context);
        self
    }

    /// Sets a build argument.
    pub fn with_build_arg(mut self, key: &str, value: &str) -> Self {
        self.build_args.insert(key.into(), value.into());
        self
    }

    /// Sets the platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// How the build's new layers are written: its compression at its
    /// level.
    pub fn encoding(&self) -> Encoding {
        Encoding { compression: self.compression, level: self.compression_level }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image manifest in the store.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// The config as built.
    pub image: config::Image,
    /// Every layer, base first.
    pub layers: Vec<Layer>,
    /// The platform built for.
    pub platform: Platform,
    /// Filesystem steps that ran.
    pub executed: usize,
    /// Filesystem steps served from the cache.
    pub cached: usize,
    /// Programs of another architecture than the platform's in the layers
    /// the build made (see [`archcheck`]).
    pub foreign: Vec<archcheck::ForeignProgram>,
}

pub use dispatch::Builder;
