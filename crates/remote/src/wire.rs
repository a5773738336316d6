//! The worker protocol: frames over a byte stream.
//!
//! A frame is one kind byte, a big-endian `u32` length and that many bytes.
//! `M` frames hold one JSON [`Msg`]; a [`Msg::Blob`] header is followed by
//! `D` frames carrying exactly `size` bytes of that blob.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use polyarch_oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

/// The protocol's version; both ends must speak the same. 2: failures are
/// typed ([`WireError`]) and started steps carry their platform.
pub const PROTOCOL: u32 = 2;
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
    /// `gzip` or `zstd`.
    pub compression: String,
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
    /// Platforms built at once on the node.
    pub jobs: Option<usize>,
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

/// A progress event, as [`polyarch_builder::Event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireEvent {
    /// A step started.
    Started {
        /// Step number on the node.
        id: usize,
        /// The platform it belongs to, when it belongs to one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        /// Its name, without the platform (`[stage-0 2/3] RUN x`).
        name: String,
    },
    /// Served from the cache.
    Cached {
        /// Step number.
        id: usize,
    },
    /// Finished.
    Done {
        /// Step number.
        id: usize,
        /// Milliseconds.
        ms: u64,
    },
    /// Failed.
    Failed {
        /// Step number.
        id: usize,
        /// Why.
        message: String,
    },
    /// A line of output.
    Log {
        /// Step number.
        id: usize,
        /// Milliseconds since the step started.
        ms: u64,
        /// The line.
        line: String,
    },
}

impl WireEvent {
    /// The wire form of a build event; events the protocol does not carry
    /// give `None`. A started step's platform becomes its own field.
    pub fn from_event(e: &polyarch_builder::Event) -> Option<WireEvent> {
        use polyarch_builder::Event as E;
        let ms = |d: &Duration| d.as_millis() as u64;
        Some(match e {
            E::Started { id, name } => {
                let (platform, name) = crate::event::split_platform(name);
                WireEvent::Started { id: *id, platform, name }
            }
            E::Cached { id } => WireEvent::Cached { id: *id },
            E::Done { id, elapsed } => WireEvent::Done { id: *id, ms: ms(elapsed) },
            E::Failed { id, message } => WireEvent::Failed { id: *id, message: message.clone() },
            E::Log { id, elapsed, line } => WireEvent::Log { id: *id, ms: ms(elapsed), line: line.clone() },
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    /// Back to a build event (a started step named without its platform)
    /// and the platform of a started step.
    pub fn into_event(self) -> (Option<String>, polyarch_builder::Event) {
        use polyarch_builder::Event as E;
        match self {
            WireEvent::Started { id, platform, name } => (platform, E::Started { id, name }),
            WireEvent::Cached { id } => (None, E::Cached { id }),
            WireEvent::Done { id, ms } => (None, E::Done { id, elapsed: Duration::from_millis(ms) }),
            WireEvent::Failed { id, message } => (None, E::Failed { id, message }),
            WireEvent::Log { id, ms, line } => (None, E::Log { id, elapsed: Duration::from_millis(ms), line }),
        }
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

/// A frame read from the stream.
#[derive(Debug)]
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
            source_date_epoch: None,
            rewrite_timestamp: false,
            network: "default".into(),
            runtime: None,
            snapshotter: "auto".into(),
            no_cache_filter: vec![],
            registry_config: None,
            insecure: false,
            jobs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = polyarch_builder::Event::Log { id: 3, elapsed: Duration::from_millis(1500), line: "x".into() };
        let w = WireEvent::from_event(&e).unwrap();
        assert_eq!(w.clone().into_event(), (None, e));
        let json = serde_json::to_string(&Msg::Event { event: w }).unwrap();
        assert_eq!(json, r#"{"type":"event","event":{"kind":"log","id":3,"ms":1500,"line":"x"}}"#);
    }

    #[test]
    fn started_steps_carry_their_platform_as_a_field() {
        let e = polyarch_builder::Event::Started { id: 2, name: "[linux/arm64 stage-0 2/3] RUN x".into() };
        let w = WireEvent::from_event(&e).unwrap();
        let want =
            WireEvent::Started { id: 2, platform: Some("linux/arm64".into()), name: "[stage-0 2/3] RUN x".into() };
        assert_eq!(w, want);
        let (platform, back) = w.into_event();
        assert_eq!(platform.as_deref(), Some("linux/arm64"));
        assert_eq!(back, polyarch_builder::Event::Started { id: 2, name: "[stage-0 2/3] RUN x".into() });
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
