//! The client's side of a node: `polyarch worker --stdio` started through
//! a command (the system `ssh`) or in a container (an exec on a Docker
//! engine), spoken to over its stdin and stdout.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polyarch_oci::{Descriptor, Digest};
use polyarch_store::{BlobSink, Store};

use crate::agent::ClientAgents;
use crate::context::{Content, Context};
use crate::error::{Error, NodeId, Result};
use crate::wire::{self, BuildSpec, Built, CacheReport, Frame, Msg, PROTOCOL};

/// The far end of a session: what carries the worker's stdin and stdout
/// (a local process such as `ssh`, or an exec in a container).
pub trait Link: Send + Sync {
    /// Ends the worker's connection at once.
    fn kill(&self);
    /// How the worker's connection ended, if it has.
    fn exited(&self) -> Option<String>;
}

/// A worker started as a local process (the ssh client).
struct ProcessLink(Mutex<Child>);

impl Link for ProcessLink {
    fn kill(&self) {
        if let Ok(mut c) = self.0.lock() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn exited(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut c| c.try_wait().ok().flatten()).map(|s| s.to_string())
    }
}

/// The last lines a worker wrote on stderr.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    /// Keeps `line`, forgetting the oldest of more than 20.
    pub fn push(&self, line: String) {
        if let Ok(mut t) = self.0.lock() {
            if t.len() == 20 {
                t.pop_front();
            }
            t.push_back(line);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default()
    }
}

/// A worker's byte streams and its link.
pub struct Stream {
    pub input: Box<dyn Write + Send>,
    pub output: Box<dyn Read + Send>,
    pub link: Arc<dyn Link>,
    /// Where its stderr lines are kept.
    pub stderr: Tail,
}

/// Kills a session's worker from another thread.
#[derive(Clone)]
pub struct Killer(Arc<dyn Link>);

impl Killer {
    /// Ends the worker's connection (the ssh client, or the exec's
    /// connection), which ends the worker.
    pub fn kill(&self) {
        self.0.kill();
    }
}

/// What sending a context moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Context entries described.
    pub entries: usize,
    /// File contents sent (the node lacked them).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// File contents the node already held.
    pub reused: usize,
}

/// A connected node.
pub struct Session {
    node: NodeId,
    /// Platforms of the build under way, for errors.
    building: Vec<String>,
    link: Arc<dyn Link>,
    input: BufWriter<Box<dyn Write + Send>>,
    output: BufReader<Box<dyn Read + Send>>,
    stderr: Tail,
    /// The node's polyarch version.
    pub version: String,
    /// The node's platforms, as `polyarch worker --probe` prints them.
    pub probe: Option<serde_json::Value>,
}

impl Session {
    /// Starts `argv` (which runs `polyarch worker --stdio` on the node) and
    /// exchanges hellos. `node` names the node in errors; a node that
    /// cannot be started or greeted is [`Error::Unreachable`].
    pub fn connect(node: &NodeId, argv: &[String], version: &str) -> Result<Session> {
        let lost = |reason: String| Error::Unreachable { node: node.clone(), reason };
        let (prog, args) = argv.split_first().ok_or_else(|| lost("no command".into()))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| lost(format!("running {prog}: {e}")))?;
        let input: Box<dyn Write + Send> = Box::new(child.stdin.take().expect("piped stdin"));
        let output: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
        let stderr = Tail::default();
        if let Some(err) = child.stderr.take() {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    tail.push(line);
                }
            });
        }
        let link = Arc::new(ProcessLink(Mutex::new(child)));
        Session::over(node, Stream { input, output, link, stderr }, version)
    }

    /// Exchanges hellos with a worker already started on `stream`; a
    /// worker that cannot be greeted is [`Error::Unreachable`].
    pub fn over(node: &NodeId, stream: Stream, version: &str) -> Result<Session> {
        let mut s = Session {
            node: node.clone(),
            building: Vec::new(),
            link: stream.link,
            input: BufWriter::new(stream.input),
            output: BufReader::with_capacity(1 << 20, stream.output),
            stderr: stream.stderr,
            version: String::new(),
            probe: None,
        };
        let unreachable = |e: Error| match e {
            Error::Lost { node, reason, .. } => Error::Unreachable { node, reason },
            other => other,
        };
        let hello = Msg::Hello { protocol: PROTOCOL, version: version.to_string(), probe: None };
        s.send(&hello, "connecting").map_err(unreachable)?;
        match s.recv("connecting").map_err(unreachable)? {
            Msg::Hello { protocol, .. } if protocol != PROTOCOL => Err(Error::Protocol {
                node: s.node.clone(),
                message: crate::wire::WireError::Version { got: protocol, speaks: PROTOCOL }.to_string(),
            }),
            Msg::Hello { version, probe, .. } => {
                s.version = version;
                s.probe = probe;
                Ok(s)
            }
            Msg::Failed { error } => Err(Error::Protocol { node: s.node.clone(), message: error.to_string() }),
            other => Err(s.unexpected(&other)),
        }
    }

    /// The node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn unexpected(&self, m: &Msg) -> Error {
        Error::Protocol { node: self.node.clone(), message: format!("unexpected answer {m:?}") }
    }

    fn failed(&self, error: crate::wire::WireError) -> Error {
        Error::Failed { node: self.node.clone(), platforms: self.building.clone(), error: Box::new(error) }
    }

    /// A handle that kills the session's process.
    pub fn killer(&self) -> Killer {
        Killer(self.link.clone())
    }

    /// A node error for a broken session: what was being done, what broke,
    /// how the process ended and the last thing it wrote on stderr.
    fn lost(&self, doing: &str, what: impl std::fmt::Display) -> Error {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut status = None;
        while Instant::now() < deadline {
            match self.link.exited() {
                Some(s) => {
                    status = Some(s);
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // Give the stderr reader a moment to catch the last line.
        std::thread::sleep(Duration::from_millis(100));
        let mut reason = format!("{what} while {doing}");
        if let Some(s) = status {
            reason.push_str(&format!("; the worker's connection ended ({s})"));
        }
        let tail = self.stderr.lines();
        if let Some(last) = tail.iter().rev().find(|l| !l.trim().is_empty()) {
            reason.push_str(&format!(": {}", last.trim()));
        }
        Error::Lost { node: self.node.clone(), platforms: self.building.clone(), reason }
    }

    fn send(&mut self, m: &Msg, doing: &str) -> Result<()> {
        wire::write_msg(&mut self.input, m).map_err(|e| self.lost(doing, format!("the node stopped listening ({e})")))
    }

    fn recv(&mut self, doing: &str) -> Result<Msg> {
        match wire::read_frame(&mut self.output) {
            Ok(Some(Frame::Msg(m))) => Ok(m),
            Ok(Some(Frame::Data(_))) => Err(self.lost(doing, "unexpected blob data")),
            Ok(None) => Err(self.lost(doing, "the worker went away")),
            Err(e) => Err(self.lost(doing, format!("the worker went away ({e})"))),
        }
    }

    /// Describes the context and sends the contents the node lacks, plus
    /// `extra` blobs (the Dockerfile), each once.
    pub fn send_context(&mut self, context: Context, contents: &[Content], extra: &[Content]) -> Result<Sent> {
        let doing = "sending the build context";
        let Context { entries, named, caches } = context;
        let trees = named.values().chain(&caches).map(Vec::len).sum::<usize>();
        let mut sent = Sent { entries: entries.len() + trees, ..Sent::default() };
        let extra_digests = extra.iter().map(|(d, _)| d.clone()).collect();
        self.send(&Msg::Context { entries, extra: extra_digests, named, caches }, doing)?;
        let need = match self.recv(doing)? {
            Msg::Need { digests } => digests,
            other => return Err(self.unexpected(&other)),
        };
        let all = contents.iter().chain(extra);
        for d in &need {
            let Some((_, data)) = all.clone().find(|(c, _)| c == d) else {
                return Err(self.lost(doing, format!("the node asked for unknown content {d}")));
            };
            let mut r = data.open().map_err(|e| Error::Context(Box::new(e)))?;
            if let Err(e) = wire::write_blob(&mut self.input, d, data.len(), &mut r) {
                return Err(self.lost(doing, format!("the node stopped listening ({e})")));
            }
            if contents.iter().any(|(c, _)| c == d) {
                sent.blobs += 1;
                sent.bytes += data.len();
            }
        }
        sent.reused = contents.len() - sent.blobs;
        Ok(sent)
    }

    /// Builds on the node, handing its progress events to `on_event`.
    /// Returns its images and, when the spec asked, what it used of the
    /// cache.
    /// Connections its RUN steps open to the `--ssh` ids of the spec are
    /// relayed to `agents` (the build's agent sockets by id).
    pub fn build(
        &mut self,
        spec: &BuildSpec,
        agents: &BTreeMap<String, PathBuf>,
        on_event: &mut dyn FnMut(polyarch_builder::Event),
    ) -> Result<(Vec<Built>, Option<CacheReport>)> {
        let doing = format!("building {}", spec.platforms.join(", "));
        self.building = spec.platforms.clone();
        let result = self.build_loop(spec, &mut ClientAgents::new(agents), &doing, on_event);
        self.building.clear();
        result
    }

    fn build_loop(
        &mut self,
        spec: &BuildSpec,
        relay: &mut ClientAgents<'_>,
        doing: &str,
        on_event: &mut dyn FnMut(polyarch_builder::Event),
    ) -> Result<(Vec<Built>, Option<CacheReport>)> {
        self.send(&Msg::Build(Box::new(spec.clone())), doing)?;
        loop {
            match self.recv(doing)? {
                Msg::Event { event } => match event.into_event() {
                    Ok(e) => on_event(e),
                    Err(message) => return Err(Error::Protocol { node: self.node.clone(), message }),
                },
                Msg::Built { images, cache } => return Ok((images, cache)),
                msg @ (Msg::AgentOpen { .. } | Msg::AgentData { .. } | Msg::AgentClose { .. }) => {
                    for reply in relay.handle(&msg).unwrap_or_default() {
                        self.send(&reply, doing)?;
                    }
                }
                Msg::Failed { error } => return Err(self.failed(error)),
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// Fetches `blobs` into `store`, each verified; returns the bytes moved.
    pub fn fetch(&mut self, blobs: &[Descriptor], store: &Store) -> Result<u64> {
        let doing = "fetching results";
        self.send(&Msg::Fetch { blobs: blobs.to_vec() }, doing)?;
        let mut bytes = 0;
        for want in blobs {
            let (digest, size) = match self.recv(doing)? {
                Msg::Blob { digest, size } if digest == want.digest && size == want.size => (digest, size),
                Msg::Failed { error } => return Err(self.failed(error)),
                other => return Err(self.unexpected(&other)),
            };
            let mut writer = match store.writer(want) {
                Ok(w) => Some(w),
                Err(e) if e.is_already_exists() => None,
                Err(e) => return Err(e.into()),
            };
            let read = match writer.as_mut() {
                Some(w) => wire::read_blob_data(&mut self.output, size, w),
                None => wire::read_blob_data(&mut self.output, size, &mut std::io::sink()),
            };
            read.map_err(|e| self.lost(doing, format!("the worker went away ({e})")))?;
            if let Some(w) = writer {
                w.commit(size, &digest)?;
            }
            bytes += size;
        }
        match self.recv(doing)? {
            Msg::Fetched => Ok(bytes),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Asks the node to push the images of `manifests` to every name.
    pub fn push(&mut self, names: &[String], manifests: &[Digest]) -> Result<()> {
        let doing = "pushing";
        self.send(&Msg::Push { names: names.to_vec(), manifests: manifests.to_vec() }, doing)?;
        match self.recv(doing)? {
            Msg::Pushed => Ok(()),
            Msg::Failed { error } => Err(self.failed(error)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Ends the session.
    pub fn close(mut self) {
        let _ = wire::write_msg(&mut self.input, &Msg::Bye);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.link.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.link.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::wire::WireError;

    fn node() -> NodeId {
        NodeId { name: "n".into(), endpoint: "ssh://h".into() }
    }

    /// A worker that answers with `msgs` whatever it is sent.
    fn replaying(dir: &tempfile::TempDir, msgs: &[Msg]) -> Vec<String> {
        let path = dir.path().join("answers");
        let mut bytes = Vec::new();
        for m in msgs {
            wire::write_msg(&mut bytes, m).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        let script = format!("cat '{}'; cat >/dev/null", path.display());
        vec!["sh".into(), "-c".into(), script]
    }

    fn hello(protocol: u32) -> Msg {
        Msg::Hello { protocol, version: "v0".into(), probe: None }
    }

    fn spec(platforms: &[&str]) -> BuildSpec {
        BuildSpec::sample(b"FROM x", platforms)
    }

    #[test]
    fn a_worker_that_ends_at_once_is_unreachable_with_its_last_words() {
        let argv: Vec<String> = ["sh", "-c", "echo 'no route to host' >&2; exit 3"].map(String::from).to_vec();
        let e = Session::connect(&node(), &argv, "v0").err().expect("connected to nothing");
        assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
        assert!(e.is_node_failure());
        assert_eq!(e.node(), Some(&node()));
        assert!(e.to_string().contains("no route to host"), "{e}");
    }

    #[test]
    fn another_protocol_version_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Session::connect(&node(), &replaying(&dir, &[hello(PROTOCOL + 1)]), "v0").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert!(e.to_string().contains(&format!("protocol {} is not spoken here", PROTOCOL + 1)), "{e}");
        let refused = Msg::Failed { error: WireError::Version { got: PROTOCOL, speaks: PROTOCOL - 1 } };
        let e = Session::connect(&node(), &replaying(&dir, &[refused]), "v0").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    }

    #[test]
    fn a_build_failure_on_the_node_is_typed_with_its_platform() {
        let dir = tempfile::tempdir().unwrap();
        let error = WireError::Build { platform: Some("linux/arm64".into()), message: "exit code: 3".into() };
        let argv = replaying(&dir, &[hello(PROTOCOL), Msg::Failed { error: error.clone() }]);
        let mut s = Session::connect(&node(), &argv, "v0").unwrap();
        let e = s.build(&spec(&["linux/arm64", "linux/s390x"]), &BTreeMap::new(), &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Build);
        assert!(!e.is_node_failure());
        assert_eq!(e.platforms(), ["linux/arm64"]);
        let Error::Failed { error: got, platforms, .. } = &e else { panic!("{e:?}") };
        assert_eq!((**got).clone(), error);
        assert_eq!(platforms, &["linux/arm64", "linux/s390x"]);
        assert_eq!(e.to_string(), "linux/arm64 on node n (ssh://h): exit code: 3");
    }

    #[test]
    fn a_worker_gone_mid_build_is_a_node_failure_of_its_platforms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello");
        let mut bytes = Vec::new();
        wire::write_msg(&mut bytes, &hello(PROTOCOL)).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let argv = vec!["sh".into(), "-c".into(), format!("cat '{}'; head -c 1 >/dev/null", path.display())];
        let mut s = Session::connect(&node(), &argv, "v0").unwrap();
        let mut events = 0;
        let e = s.build(&spec(&["linux/arm64"]), &BTreeMap::new(), &mut |_| events += 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NodeFailed, "{e}");
        assert_eq!(e.platforms(), ["linux/arm64"]);
        assert!(e.to_string().starts_with("linux/arm64 on node n (ssh://h): the worker went away"), "{e}");
        assert_eq!(events, 0);
    }
}
