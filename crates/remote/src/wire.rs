//! The worker protocol: frames over a byte stream.
//!
//! A frame is one kind byte, a big-endian `u32` length and that many bytes.
//! `M` frames hold one JSON [`Msg`]; a [`Msg::Blob`] header is followed by
//! `D` frames carrying exactly `size` bytes of that blob.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

use polyarch_builder::{Event, Stream, Vertex};
use polyarch_oci::{Descriptor, Digest, Platform};
use serde::{Deserialize, Serialize};

/// The protocol's version; both ends must speak the same. 2: failures are
/// typed ([`WireError`]) and started steps carry their platform. 3: every
/// step event carries the step's typed fields ([`WireVertex`]) and its time.
/// 4: a build carries its RUN settings and secrets ([`RunSpec`]) and its
/// cache settings ([`CacheSpec`]); a built reply, what the build used of
/// the cache ([`CacheReport`]); the context, the file trees of named
/// contexts.
pub const PROTOCOL: u32 = 4;
/// A message frame.
pub const FRAME_MSG: u8 = b'M';
/// A blob data frame.
pub const FRAME_DATA: u8 = b'D';
/// The largest data frame written.
pub const CHUNK: usize = 1 << 20;
/// Frames longer than this are refused.
pub const MAX_FRAME: u32 = 64 << 20;

/// One context entry: a file's metadata and content digest, a directory
/// or a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Clean relative path.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time (seconds).
    pub mtime: i64,
    /// A file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// A file's size.
    #[serde(default)]
    pub size: u64,
    /// A symbolic link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Extended attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Hard-link group: entries with the same number were one inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<u64>,
}

/// What a node is asked to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The Dockerfile, sent as a context blob.
    pub dockerfile: Digest,
    /// Its size.
    pub dockerfile_size: u64,
    /// Its name in messages.
    pub dockerfile_name: String,
    /// `--target`.
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// The platforms this node builds.
    pub platforms: Vec<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: base images from the registry, never the node's store.
    #[serde(default)]
    pub pull: bool,
    /// `gzip`, `zstd` or `uncompressed`.
    pub compression: String,
    /// `compression-level=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// `rewrite-timestamp`.
    pub rewrite_timestamp: bool,
    /// `--network`.
    pub network: String,
    /// `--runtime`.
    pub runtime: Option<String>,
    /// `--snapshotter`.
    pub snapshotter: String,
    /// `--no-cache-filter`.
    pub no_cache_filter: Vec<String>,
    /// The builder's registry configuration (TOML), applied on the node.
    pub registry_config: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--jobs` on the node: native steps at once.
    pub jobs: Option<usize>,
    /// The RUN settings and secrets of the build.
    #[serde(default)]
    pub run: RunSpec,
    /// What the node does with build caches.
    #[serde(default)]
    pub cache: CacheSpec,
    /// `--build-context NAME=docker-image://REF` values: the image
    /// references by name (file trees travel with the context).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_images: BTreeMap<String, String>,
    /// `--annotation` values for the image manifests (buildx's syntax);
    /// the node writes them into the manifests it builds, so that the
    /// digests it pushes are the annotated ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
    /// `--build-context NAME=oci-layout://...` values: the named trees of
    /// the context that are OCI layouts, with the image to take.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_layouts: BTreeMap<String, LayoutRef>,
}

/// Which image of an OCI layout: a tag, a digest, both or neither
/// (`latest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRef {
    /// The tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest or index digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// The cache settings of a build on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSpec {
    /// `--cache-from` values the node imports itself (registry caches,
    /// read with the builder's registry configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// `--cache-from type=local` caches: the manifest to read of each
    /// (`None`: the one tagged `latest`, else the only one), in the order
    /// of the context's cache trees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<Option<Digest>>,
    /// Whether the node reports the records its build used, for a
    /// `--cache-to` the client writes.
    #[serde(default)]
    pub report: bool,
    /// `--cache-to type=inline`: the node's image configs carry the cache.
    #[serde(default)]
    pub inline: bool,
}

impl CacheSpec {
    /// Whether the build uses no cache import or export.
    pub fn is_empty(&self) -> bool {
        self.from.is_empty() && self.local.is_empty() && !self.report && !self.inline
    }
}

/// What a node's build used of the cache: every record it made or took
/// (the client picks `min` or `max` from them), the keys of its results,
/// and its cache warnings (an import that failed on the node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Records, each with its layer.
    #[serde(default)]
    pub records: Vec<polyarch_builder::cacheio::Entry>,
    /// The keys of the node's results.
    #[serde(default)]
    pub finals: Vec<String>,
    /// Warnings, as text.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The RUN settings of a build as the wire carries them (`--add-host`,
/// `--ulimit`, `--shm-size`, `--cgroup-parent`, `--allow`) and its
/// `--secret` values, which the client reads and the node holds in memory
/// only (their `Debug` shows lengths, never bytes).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// `/etc/hosts` entries: name and address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// Resource limits: Docker's name, soft and hard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<(String, u64, u64)>,
    /// The size of `/dev/shm` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// The parent cgroup of RUN containers on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// `network.host` granted.
    #[serde(default)]
    pub network_host: bool,
    /// `security.insecure` granted.
    #[serde(default)]
    pub security_insecure: bool,
    /// Secret values by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh` ids: the node serves each with a socket whose connections
    /// reach the client's agent ([`crate::agent`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<String>,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: BTreeMap<&str, String> =
            self.secrets.iter().map(|(k, v)| (k.as_str(), format!("<{} bytes>", v.len()))).collect();
        f.debug_struct("RunSpec")
            .field("extra_hosts", &self.extra_hosts)
            .field("ulimits", &self.ulimits)
            .field("shm_size", &self.shm_size)
            .field("cgroup_parent", &self.cgroup_parent)
            .field("network_host", &self.network_host)
            .field("security_insecure", &self.security_insecure)
            .field("secrets", &secrets)
            .field("ssh", &self.ssh)
            .finish()
    }
}

impl RunSpec {
    /// The spec of `settings` (of its `ssh` sockets, the ids: the node
    /// reaches them through the session) with `secrets`' values.
    pub fn new(settings: &polyarch_builder::settings::RunSettings, secrets: BTreeMap<String, Vec<u8>>) -> RunSpec {
        RunSpec {
            extra_hosts: settings.extra_hosts.clone(),
            ulimits: settings.ulimits.iter().map(|r| (r.resource.name().to_string(), r.soft, r.hard)).collect(),
            shm_size: settings.shm_size,
            cgroup_parent: settings.cgroup_parent.clone(),
            network_host: settings.allow.network_host,
            security_insecure: settings.allow.security_insecure,
            secrets,
            ssh: settings.ssh.keys().cloned().collect(),
        }
    }

    /// The node's RUN settings (without ssh sockets: the node makes its
    /// own for [`RunSpec::ssh`]) and secrets; an unknown limit name is an
    /// error naming it.
    #[allow(clippy::type_complexity)]
    pub fn settings(
        &self,
    ) -> Result<
        (polyarch_builder::settings::RunSettings, BTreeMap<String, polyarch_builder::process::SecretSource>),
        String,
    > {
        use polyarch_exec::rlimit::Resource;
        let mut s = polyarch_builder::settings::RunSettings {
            extra_hosts: self.extra_hosts.clone(),
            shm_size: self.shm_size,
            cgroup_parent: self.cgroup_parent.clone(),
            ..Default::default()
        };
        for (name, soft, hard) in &self.ulimits {
            let resource = Resource::from_name(name).ok_or_else(|| format!("unknown ulimit {name:?}"))?;
            s.ulimits.push(polyarch_exec::Rlimit { resource, soft: *soft, hard: *hard });
        }
        s.allow.network_host = self.network_host;
        s.allow.security_insecure = self.security_insecure;
        let secrets = self
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), polyarch_builder::process::SecretSource::Value(v.clone())))
            .collect();
        Ok((s, secrets))
    }
}

/// A platform image a node built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Built {
    /// The platform.
    pub platform: String,
    /// The image manifest.
    pub manifest: Descriptor,
    /// The config.
    pub config: Descriptor,
    /// Layers with their diff ids, base first.
    pub layers: Vec<(Descriptor, Digest)>,
    /// Steps that ran.
    pub executed: usize,
    /// Steps served from the cache.
    pub cached: usize,
}

/// A step as the wire carries it: the typed fields of a
/// [`polyarch_builder::Vertex`] (the client sets the node and shows the
/// platform; names are computed there, never sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireVertex {
    /// Step number on the node.
    pub id: usize,
    /// The stage of an instruction's step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Position in the stage, from 1.
    #[serde(default)]
    pub index: usize,
    /// Steps of the stage.
    #[serde(default)]
    pub total: usize,
    /// The instruction or what the step does.
    pub text: String,
    /// An ONBUILD trigger's step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub onbuild: bool,
    /// Internal work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// The named context it loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The platform of the build it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The platform its stage runs as, where that is another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_as: Option<String>,
    /// The target platform its environment names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross: Option<String>,
    /// Digests of the steps it starts from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Digest>,
}

impl WireVertex {
    fn from_vertex(v: &Vertex) -> WireVertex {
        WireVertex {
            id: v.id,
            stage: v.stage.clone(),
            index: v.index,
            total: v.total,
            text: v.text.clone(),
            onbuild: v.onbuild,
            internal: v.internal,
            context: v.context.clone(),
            platform: v.platform.as_ref().map(|p| p.format()),
            runs_as: v.runs_as.as_ref().map(|p| p.format()),
            cross: v.cross.as_ref().map(wire_target),
            inputs: v.inputs.clone(),
        }
    }

    fn into_vertex(self) -> Result<Vertex, String> {
        let parse = |p: &Option<String>| match p {
            Some(p) => Platform::parse(p).map(Some).map_err(|e| format!("step {} platform {p:?}: {e}", self.id)),
            None => Ok(None),
        };
        let (platform, runs_as) = (parse(&self.platform)?, parse(&self.runs_as)?);
        let cross = self.cross.as_deref().map(parse_target);
        Ok(Vertex {
            id: self.id,
            stage: self.stage,
            index: self.index,
            total: self.total,
            text: self.text,
            onbuild: self.onbuild,
            internal: self.internal,
            context: self.context,
            platform,
            runs_as,
            cross,
            show_platform: true,
            node: None,
            inputs: self.inputs,
            planned: None,
        })
    }
}

/// A step's target platform on the wire: `OS/ARCH/VARIANT`, any part
/// empty where the step's environment did not name it.
fn wire_target(p: &Platform) -> String {
    format!("{}/{}/{}", p.os, p.architecture, p.variant_str())
}

/// The inverse of [`wire_target`].
fn parse_target(s: &str) -> Platform {
    let mut parts = s.splitn(3, '/');
    let mut part = || parts.next().unwrap_or("").to_string();
    let (os, architecture, variant) = (part(), part(), part());
    Platform { os, architecture, variant: (!variant.is_empty()).then_some(variant), ..Platform::default() }
}

/// An output stream of a step's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A progress event, as [`polyarch_builder::Event`]; `at` is the node's
/// time in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireEvent {
    /// A step started.
    Started {
        /// The step.
        vertex: WireVertex,
        /// When.
        at: u64,
    },
    /// Served from the cache.
    Cached {
        /// The step.
        vertex: WireVertex,
        /// When.
        at: u64,
    },
    /// Finished.
    Done {
        /// The step.
        vertex: WireVertex,
        /// When.
        at: u64,
        /// How long it took, in milliseconds.
        ms: u64,
    },
    /// Failed.
    Failed {
        /// The step.
        vertex: WireVertex,
        /// When.
        at: u64,
        /// Why.
        message: String,
    },
    /// A line of output.
    Log {
        /// The step.
        vertex: WireVertex,
        /// When.
        at: u64,
        /// Which stream.
        stream: WireStream,
        /// The line.
        line: String,
    },
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn time(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

impl WireEvent {
    /// The wire form of a build event; events the protocol does not carry
    /// give `None`.
    pub fn from_event(e: &Event) -> Option<WireEvent> {
        let vertex = WireVertex::from_vertex(e.vertex());
        let at = nanos(e.at());
        Some(match e {
            Event::Started { .. } => WireEvent::Started { vertex, at },
            Event::Cached { .. } => WireEvent::Cached { vertex, at },
            Event::Done { elapsed, .. } => WireEvent::Done { vertex, at, ms: elapsed.as_millis() as u64 },
            Event::Failed { message, .. } => WireEvent::Failed { vertex, at, message: message.clone() },
            Event::Log { stream, line, .. } => {
                let stream = match stream {
                    Stream::Stdout => WireStream::Stdout,
                    Stream::Stderr => WireStream::Stderr,
                };
                WireEvent::Log { vertex, at, stream, line: line.clone() }
            }
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    /// Back to a build event; a platform that does not parse is an error
    /// that names the step.
    pub fn into_event(self) -> Result<Event, String> {
        Ok(match self {
            WireEvent::Started { vertex, at } => Event::Started { vertex: vertex.into_vertex()?, at: time(at) },
            WireEvent::Cached { vertex, at } => Event::Cached { vertex: vertex.into_vertex()?, at: time(at) },
            WireEvent::Done { vertex, at, ms } => {
                Event::Done { vertex: vertex.into_vertex()?, at: time(at), elapsed: Duration::from_millis(ms) }
            }
            WireEvent::Failed { vertex, at, message } => {
                Event::Failed { vertex: vertex.into_vertex()?, at: time(at), message }
            }
            WireEvent::Log { vertex, at, stream, line } => {
                let stream = match stream {
                    WireStream::Stdout => Stream::Stdout,
                    WireStream::Stderr => Stream::Stderr,
                };
                Event::Log { vertex: vertex.into_vertex()?, at: time(at), stream, line }
            }
        })
    }
}

/// A failure the worker reports: what kind, with its fields, so that the
/// client branches on the variant and never on message text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WireError {
    /// The two ends speak different protocol versions.
    #[error("protocol {got} is not spoken here (this node speaks {speaks})")]
    Version {
        /// The client's version.
        got: u32,
        /// The worker's.
        speaks: u32,
    },
    /// The build ran and failed: a Dockerfile error or a failing step.
    #[error("{message}")]
    Build {
        /// The platform, when the failure belongs to one.
        platform: Option<String>,
        /// The build's error.
        message: String,
    },
    /// The request could not be used (a bad platform, option or registry
    /// configuration).
    #[error("{what}: {message}")]
    Request {
        /// The field (`--network`, `platform`, `the builder's config`).
        what: String,
        /// Why.
        message: String,
    },
    /// Pushing an image from the node failed.
    #[error("pushing {reference}: {message}")]
    Push {
        /// The reference pushed to.
        reference: String,
        /// Why.
        message: String,
    },
    /// The worker's store failed.
    #[error("the node's store: {message}")]
    Store {
        /// Why.
        message: String,
    },
    /// The request came out of order (a push before any build, a digest
    /// not built in this session).
    #[error("{message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
}

impl WireError {
    /// The platform the failure concerns, when it concerns one.
    pub fn platform(&self) -> Option<&str> {
        match self {
            WireError::Build { platform, .. } => platform.as_deref(),
            _ => None,
        }
    }
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// The first message each way.
    Hello {
        /// [`PROTOCOL`].
        protocol: u32,
        /// polyarch's version.
        version: String,
        /// The node's platforms (the worker's hello only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probe: Option<serde_json::Value>,
    },
    /// The context files the build reads.
    Context {
        /// Their metadata.
        entries: Vec<Entry>,
        /// Other contents the build needs (the Dockerfile).
        #[serde(default)]
        extra: Vec<Digest>,
        /// The file trees of `--build-context` values, by name: every
        /// entry of each.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        named: BTreeMap<String, Vec<Entry>>,
        /// The OCI layout directories of `--cache-from type=local`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        caches: Vec<Vec<Entry>>,
    },
    /// Contents the worker lacks.
    Need {
        /// By digest, each once.
        digests: Vec<Digest>,
    },
    /// A blob follows in data frames.
    Blob {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Build these platforms.
    Build(Box<BuildSpec>),
    /// Progress.
    Event {
        /// The event.
        event: WireEvent,
    },
    /// Every platform built.
    Built {
        /// One per platform, in the order asked.
        images: Vec<Built>,
        /// What the build used of the cache, when asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<CacheReport>,
    },
    /// A RUN step on the node opened a connection to the agent of `--ssh`
    /// id `id` (worker to client).
    AgentOpen {
        /// The connection's number.
        conn: u64,
        /// The `--ssh` id.
        id: String,
    },
    /// Bytes of an agent connection, either way.
    AgentData {
        /// The connection's number.
        conn: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// An agent connection ended, either way.
    AgentClose {
        /// The connection's number.
        conn: u64,
    },
    /// The request failed.
    Failed {
        /// What failed, typed.
        error: WireError,
    },
    /// Send these blobs.
    Fetch {
        /// Descriptors of the node's content.
        blobs: Vec<Descriptor>,
    },
    /// Every fetched blob was sent.
    Fetched,
    /// Push the built images by digest to each name's repository.
    Push {
        /// Image names.
        names: Vec<String>,
        /// Manifests to push.
        manifests: Vec<Digest>,
    },
    /// Pushed.
    Pushed,
    /// The session ends.
    Bye,
}

/// A frame read from the stream. Each is matched as soon as it is read,
/// never kept in bulk, so a message is not boxed to make blob frames
/// smaller.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Frame {
    /// A message.
    Msg(Msg),
    /// Blob data.
    Data(Vec<u8>),
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn write_frame(w: &mut dyn Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| bad("frame too long"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)
}

/// Writes one message and flushes.
pub fn write_msg(w: &mut dyn Write, m: &Msg) -> io::Result<()> {
    let json = serde_json::to_vec(m).map_err(|e| bad(e.to_string()))?;
    write_frame(w, FRAME_MSG, &json)?;
    w.flush()
}

/// Writes a blob: its header, then its bytes in data frames. Fails when
/// `r` does not hold exactly `size` bytes.
pub fn write_blob(w: &mut dyn Write, digest: &Digest, size: u64, r: &mut dyn Read) -> io::Result<()> {
    let json = serde_json::to_vec(&Msg::Blob { digest: digest.clone(), size }).map_err(|e| bad(e.to_string()))?;
    write_frame(w, FRAME_MSG, &json)?;
    let mut left = size;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(bad(format!("{digest}: content ended {left} bytes early")));
        }
        write_frame(w, FRAME_DATA, &buf[..n])?;
        left -= n as u64;
    }
    w.flush()
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut dyn Read) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(bad(format!("frame of {len} bytes is over the limit")));
    }
    // The buffer grows with the bytes that arrive: a header alone never
    // makes it allocate the length it announces.
    let mut payload = Vec::with_capacity((len as usize).min(64 * 1024));
    r.take(u64::from(len)).read_to_end(&mut payload)?;
    if payload.len() < len as usize {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame"));
    }
    match head[0] {
        FRAME_MSG => {
            serde_json::from_slice(&payload).map(|m| Some(Frame::Msg(m))).map_err(|e| bad(format!("bad message: {e}")))
        }
        FRAME_DATA => Ok(Some(Frame::Data(payload))),
        k => Err(bad(format!("unknown frame kind {k:#04x}"))),
    }
}

/// Reads the data frames of a blob of `size` bytes into `w`.
pub fn read_blob_data(r: &mut dyn Read, size: u64, w: &mut dyn Write) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        match read_frame(r)? {
            Some(Frame::Data(d)) if d.len() as u64 <= left => {
                w.write_all(&d)?;
                left -= d.len() as u64;
            }
            Some(Frame::Data(_)) => return Err(bad("blob data longer than announced")),
            Some(Frame::Msg(m)) => return Err(bad(format!("unexpected message inside a blob: {m:?}"))),
            None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a blob")),
        }
    }
    Ok(())
}

#[cfg(test)]
impl BuildSpec {
    /// A request for `platforms` with `dockerfile` and defaults elsewhere,
    /// for tests.
    pub(crate) fn sample(dockerfile: &[u8], platforms: &[&str]) -> BuildSpec {
        BuildSpec {
            dockerfile: Digest::sha256(dockerfile),
            dockerfile_size: dockerfile.len() as u64,
            dockerfile_name: "Dockerfile".into(),
            target: None,
            build_args: Default::default(),
            labels: Default::default(),
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            no_cache: false,
            pull: false,
            compression: "gzip".into(),
            compression_level: None,
            source_date_epoch: None,
            rewrite_timestamp: false,
            network: "default".into(),
            runtime: None,
            snapshotter: "auto".into(),
            no_cache_filter: vec![],
            registry_config: None,
            insecure: false,
            jobs: None,
            run: RunSpec::default(),
            cache: CacheSpec::default(),
            named_images: BTreeMap::new(),
            annotations: Vec::new(),
            named_layouts: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_settings_and_secrets_travel_and_debug_hides_the_values() {
        use polyarch_builder::process::SecretSource;
        use polyarch_builder::settings::{parse_add_host, parse_ulimit, RunSettings};
        let mut settings = RunSettings {
            extra_hosts: vec![parse_add_host("db:127.0.0.9").unwrap()],
            ulimits: vec![parse_ulimit("nofile=2048:4096").unwrap(), parse_ulimit("nproc=-1").unwrap()],
            shm_size: Some(96 << 20),
            cgroup_parent: Some("/build".into()),
            ..Default::default()
        };
        settings.allow.security_insecure = true;
        let secrets = BTreeMap::from([("tok".to_string(), b"s3cr3t-value".to_vec())]);
        let mut spec = BuildSpec::sample(b"FROM scratch\n", &["linux/arm64"]);
        spec.run = RunSpec::new(&settings, secrets);
        let mut buf = Vec::new();
        write_msg(&mut buf, &Msg::Build(Box::new(spec.clone()))).unwrap();
        let Some(Frame::Msg(Msg::Build(got))) = read_frame(&mut &buf[..]).unwrap() else { panic!("not a build") };
        assert_eq!(*got, spec);
        let (back, secrets) = got.run.settings().unwrap();
        assert_eq!(back, settings);
        assert_eq!(secrets["tok"].read().unwrap(), b"s3cr3t-value");
        for shown in [format!("{got:?}"), format!("{:?}", secrets)] {
            assert!(!shown.contains("s3cr3t") && shown.contains("12 bytes"), "{shown}");
        }
        assert!(matches!(&secrets["tok"], SecretSource::Value(_)));
        let mut bad = got.run.clone();
        bad.ulimits.push(("nosuch".into(), 1, 1));
        assert!(bad.settings().unwrap_err().contains("nosuch"));
    }

    #[test]
    fn messages_and_blobs_round_trip() {
        let mut buf = Vec::new();
        let hello = Msg::Hello { protocol: PROTOCOL, version: "v1".into(), probe: None };
        write_msg(&mut buf, &hello).unwrap();
        let data = vec![7u8; CHUNK * 2 + 5];
        let d = Digest::sha256(&data);
        write_blob(&mut buf, &d, data.len() as u64, &mut &data[..]).unwrap();
        write_msg(&mut buf, &Msg::Bye).unwrap();

        let mut r = &buf[..];
        assert!(matches!(read_frame(&mut r).unwrap(), Some(Frame::Msg(m)) if m == hello));
        let Some(Frame::Msg(Msg::Blob { digest, size })) = read_frame(&mut r).unwrap() else { panic!() };
        assert_eq!((digest, size), (d, data.len() as u64));
        let mut got = Vec::new();
        read_blob_data(&mut r, size, &mut got).unwrap();
        assert_eq!(got, data);
        assert!(matches!(read_frame(&mut r).unwrap(), Some(Frame::Msg(Msg::Bye))));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn short_or_bad_streams_are_errors() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &Msg::Bye).unwrap();
        let mut r = &buf[..buf.len() - 1];
        assert_eq!(read_frame(&mut r).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut r: &[u8] = &[b'X', 0, 0, 0, 0];
        assert!(read_frame(&mut r).is_err());
        let mut r: &[u8] = &[b'M', 0xff, 0, 0, 0];
        assert!(read_frame(&mut r).unwrap_err().to_string().contains("over the limit"));
        let mut short: &[u8] = b"abc";
        let d = Digest::sha256(b"abcd");
        assert!(write_blob(&mut Vec::new(), &d, 4, &mut short).is_err());
    }

    #[test]
    fn events_convert_both_ways() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut vertex =
            Vertex::instruction("stage-0", 2, 3, "RUN x").with_platform(Platform::parse("linux/arm64").unwrap());
        vertex.id = 3;
        vertex.show_platform = true;
        let e = Event::Log { vertex: vertex.clone(), at, stream: Stream::Stderr, line: "x".into() };
        let w = WireEvent::from_event(&e).unwrap();
        assert_eq!(w.clone().into_event().unwrap(), e);
        let json = serde_json::to_string(&Msg::Event { event: w }).unwrap();
        assert_eq!(
            json,
            r#"{"type":"event","event":{"kind":"log","vertex":{"id":3,"stage":"stage-0","index":2,"total":3,"text":"RUN x","platform":"linux/arm64"},"at":1700000000123456789,"stream":"stderr","line":"x"}}"#
        );
        let done = Event::Done { vertex, at, elapsed: Duration::from_millis(1500) };
        assert_eq!(WireEvent::from_event(&done).unwrap().into_event().unwrap(), done);
    }

    #[test]
    fn steps_carry_their_platform_as_a_field() {
        let mut v = Vertex::internal("load metadata for x").with_platform(Platform::parse("linux/arm/v7").unwrap());
        v.id = 2;
        let w = WireEvent::from_event(&Event::Started { vertex: v, at: SystemTime::UNIX_EPOCH }).unwrap();
        let WireEvent::Started { vertex, .. } = w.clone() else { panic!("{w:?}") };
        assert_eq!((vertex.platform.as_deref(), vertex.internal), (Some("linux/arm/v7"), true));
        let back = w.into_event().unwrap();
        assert_eq!(back.vertex().name(), "[linux/arm/v7 internal] load metadata for x");
        let bad = WireEvent::Cached { vertex: WireVertex { platform: Some("linux/*".into()), ..vertex }, at: 0 };
        assert!(bad.into_event().unwrap_err().contains("step 2 platform \"linux/*\""));
        // A cross step: the platform its stage runs as and the target its
        // environment names (here only an architecture) survive the trip.
        let mut v =
            Vertex::instruction("build", 2, 3, "RUN make").with_platform(Platform::parse("linux/arm/v7").unwrap());
        v.runs_as = Some(Platform::parse("linux/amd64").unwrap());
        v.cross = Some(Platform { architecture: "arm".into(), ..Platform::default() });
        let w = WireEvent::from_event(&Event::Started { vertex: v.clone(), at: SystemTime::UNIX_EPOCH }).unwrap();
        let back = w.into_event().unwrap();
        assert_eq!(back.vertex().runs_as, v.runs_as);
        assert_eq!(back.vertex().cross, v.cross);
        assert_eq!(back.vertex().name(), "[linux/amd64->arm/v7 build 2/3] RUN make");
    }

    #[test]
    fn failures_are_typed_messages() {
        let m = Msg::Failed {
            error: WireError::Build { platform: Some("linux/arm64".into()), message: "exit code: 3".into() },
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"type":"failed","error":{"kind":"build","platform":"linux/arm64","message":"exit code: 3"}}"#
        );
        let back: Msg = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let v = WireError::Version { got: 1, speaks: PROTOCOL };
        assert_eq!(v.to_string(), format!("protocol 1 is not spoken here (this node speaks {PROTOCOL})"));
    }
}
