//! The node's side: `polyarch worker --stdio` serves one session on its
//! stdin and stdout, building into the node's own store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use polyarch_builder::multi::{check_emulation, probe_host, MultiBuilder};
use polyarch_builder::{BuildOptions, BuildResult, Compression, Event};
use polyarch_oci::{Descriptor, Digest, Platform, Reference};
use polyarch_registry::Client;
use polyarch_store::{BlobSink, BlobSource, Store};

use crate::context::{rebuild, CONTENT_TYPE};
use crate::error::{Error, Result};
use crate::wire::{self, BuildSpec, Built, CacheReport, CacheSpec, Entry, Frame, Msg, WireError, WireEvent, PROTOCOL};
use polyarch_builder::cacheio::{self, CacheIo};

/// Makes the node's registry client from the builder's configuration
/// (TOML, as the client's config file) and `--insecure`.
pub type ClientFactory = dyn Fn(Option<&str>, bool) -> std::result::Result<Client, String> + Send + Sync;

/// What a worker needs from the program that runs it.
pub struct Worker {
    /// The node's store.
    pub store: Store,
    /// polyarch's version.
    pub version: String,
    /// The node's platforms, sent in the hello.
    pub probe: serde_json::Value,
    /// Registry clients.
    pub client: Box<ClientFactory>,
    /// Called when the client goes away (stdin ends) so that a running
    /// build stops: the caller kills this process's RUN containers.
    pub on_hangup: Box<dyn Fn() + Send + Sync>,
}

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

fn broken(message: impl Into<String>) -> Error {
    Error::Session { message: message.into() }
}

fn send(out: &Out, m: &Msg) -> Result<()> {
    let mut w = out.lock().map_err(|_| broken("output lock poisoned"))?;
    wire::write_msg(&mut **w, m).map_err(|e| broken(format!("writing to the client: {e}")))
}

fn recv(rx: &Receiver<Frame>) -> Option<Frame> {
    rx.recv().ok()
}

fn recv_blob(rx: &Receiver<Frame>, store: &Store, digest: &Digest, size: u64) -> Result<()> {
    let desc = Descriptor::new(CONTENT_TYPE, digest.clone(), size);
    let mut writer = match store.writer(&desc) {
        Ok(w) => Some(w),
        Err(e) if e.is_already_exists() => None,
        Err(e) => return Err(e.into()),
    };
    let mut left = size;
    while left > 0 {
        match recv(rx) {
            Some(Frame::Data(d)) if d.len() as u64 <= left => {
                left -= d.len() as u64;
                if let Some(w) = writer.as_mut() {
                    w.write_all(&d).map_err(|e| broken(format!("writing {digest}: {e}")))?;
                }
            }
            Some(_) => return Err(broken(format!("{digest}: bad blob data"))),
            None => return Err(broken("the client went away")),
        }
    }
    if let Some(w) = writer {
        w.commit(size, digest)?;
    }
    Ok(())
}

/// Serves one session until `Bye` or the end of `input`.
pub fn serve(
    worker: Worker,
    rt: &tokio::runtime::Runtime,
    input: Box<dyn Read + Send>,
    output: Box<dyn Write + Send>,
) -> Result<()> {
    let worker = Arc::new(worker);
    let out: Out = Arc::new(Mutex::new(output));
    let (tx, rx) = mpsc::sync_channel::<Frame>(64);
    let w = worker.clone();
    // The client's agent replies go straight to their connections, even
    // while a build holds the message loop.
    let conns = crate::agent::Conns::default();
    let routes = conns.clone();
    std::thread::spawn(move || {
        let mut input = std::io::BufReader::with_capacity(1 << 20, input);
        while let Ok(Some(f)) = wire::read_frame(&mut input) {
            let Some(f) = routes.route(f) else { continue };
            if tx.send(f).is_err() {
                return;
            }
        }
        drop(tx);
        (w.on_hangup)();
    });

    match recv(&rx) {
        Some(Frame::Msg(Msg::Hello { protocol, .. })) if protocol == PROTOCOL => {}
        Some(Frame::Msg(Msg::Hello { protocol, .. })) => {
            let error = WireError::Version { got: protocol, speaks: PROTOCOL };
            send(&out, &Msg::Failed { error: error.clone() })?;
            return Err(broken(error.to_string()));
        }
        _ => return Err(broken("expected a hello")),
    }
    send(&out, &Msg::Hello { protocol: PROTOCOL, version: worker.version.clone(), probe: Some(worker.probe.clone()) })?;

    let store = &worker.store;
    let mut received = Received::default();
    let mut built: HashMap<Digest, BuildResult> = HashMap::new();
    let mut client: Option<Client> = None;
    loop {
        let msg = match recv(&rx) {
            Some(Frame::Msg(m)) => m,
            Some(Frame::Data(_)) => return Err(broken("unexpected blob data")),
            None => return Ok(()),
        };
        match msg {
            Msg::Context { entries: e, extra, named: n, caches: c } => {
                let mut need = BTreeSet::new();
                let files =
                    e.iter().chain(n.values().flatten()).chain(c.iter().flatten()).filter_map(|e| e.digest.as_ref());
                for d in files.chain(&extra) {
                    if !store.exists(d)? {
                        need.insert(d.clone());
                    }
                }
                received = Received { entries: e, named: n, caches: c };
                send(&out, &Msg::Need { digests: need.into_iter().collect() })?;
            }
            Msg::Blob { digest, size } => recv_blob(&rx, store, &digest, size)?,
            Msg::Build(spec) => {
                let reply = match build(&worker, rt, &spec, &received, (&out, &conns), &mut client) {
                    Ok((results, cache)) => {
                        let images = results.iter().map(built_of).collect();
                        for r in results {
                            built.insert(r.manifest.digest.clone(), r);
                        }
                        Msg::Built { images, cache }
                    }
                    Err(error) => Msg::Failed { error },
                };
                send(&out, &reply)?;
            }
            Msg::Fetch { blobs } => {
                for d in &blobs {
                    let mut r = store.open(d)?;
                    let mut w = out.lock().map_err(|_| broken("output lock poisoned"))?;
                    wire::write_blob(&mut **w, &d.digest, d.size, &mut r)
                        .map_err(|e| broken(format!("sending {}: {e}", d.digest)))?;
                }
                send(&out, &Msg::Fetched)?;
            }
            Msg::Push { names, manifests } => {
                let reply = match push(rt, client.as_ref(), store, &built, &names, &manifests) {
                    Ok(()) => Msg::Pushed,
                    Err(error) => Msg::Failed { error },
                };
                send(&out, &reply)?;
            }
            Msg::Bye => return Ok(()),
            other => return Err(broken(format!("unexpected message {other:?}"))),
        }
    }
}

fn built_of(r: &BuildResult) -> Built {
    Built {
        platform: r.platform.format(),
        manifest: r.manifest.clone(),
        config: r.config.clone(),
        layers: r.layers.iter().map(|l| (l.desc.clone(), l.diff_id.clone())).collect(),
        executed: r.executed,
        cached: r.cached,
    }
}

/// The trees of the session's last `Context`.
#[derive(Default)]
struct Received {
    entries: Vec<Entry>,
    named: BTreeMap<String, Vec<Entry>>,
    caches: Vec<Vec<Entry>>,
}

fn build(
    worker: &Worker,
    rt: &tokio::runtime::Runtime,
    spec: &BuildSpec,
    Received { entries, named, caches }: &Received,
    (out, conns): (&Out, &crate::agent::Conns),
    client: &mut Option<Client>,
) -> std::result::Result<(Vec<BuildResult>, Option<CacheReport>), WireError> {
    let request = |what: &str, message: String| WireError::Request { what: what.to_string(), message };
    let store = &worker.store;
    let dockerfile = store
        .read_bytes(&Descriptor::new(CONTENT_TYPE, spec.dockerfile.clone(), spec.dockerfile_size), 16 << 20)
        .map_err(|e| WireError::Store { message: format!("reading the Dockerfile: {e}") })?;
    let rebuilt = |entries: &[Entry]| {
        rebuild(entries, store).map_err(|e| match e {
            Error::Store(e) => WireError::Store { message: e.to_string() },
            other => WireError::Protocol { message: other.to_string() },
        })
    };
    let context = rebuilt(entries)?;
    // OCI layouts are written out for the build, in directories that go
    // with it (or with the next command, after a kill).
    let mut layouts: Vec<tempfile::TempDir> = Vec::new();
    let mut write_layout = |entries: &[Entry]| -> std::result::Result<std::path::PathBuf, WireError> {
        let fs = rebuilt(entries)?;
        let dir = polyarch_builder::materialize::temp_in(&store.root().join("run"))
            .and_then(|d| fs.write_to_dir(d.path()).map(|()| d))
            .map_err(|e| WireError::Store { message: format!("writing an OCI layout: {e}") })?;
        let path = dir.path().to_path_buf();
        layouts.push(dir);
        Ok(path)
    };
    let mut named_contexts = polyarch_builder::named::NamedContexts::new();
    for (name, entries) in named {
        let context = match spec.named_layouts.get(name) {
            Some(at) => polyarch_builder::named::NamedContext::Layout(polyarch_builder::named::Layout {
                dir: write_layout(entries)?,
                tag: at.tag.clone(),
                digest: at.digest.clone(),
            }),
            None => polyarch_builder::named::NamedContext::Files(Arc::new(rebuilt(entries)?)),
        };
        named_contexts.insert(name, context).map_err(|e| request(&format!("--build-context {name}"), e.to_string()))?;
    }
    let mut cache_dirs = Vec::new();
    for (entries, digest) in caches.iter().zip(&spec.cache.local) {
        cache_dirs.push(cacheio::CacheFrom::Local { src: write_layout(entries)?, digest: digest.clone() });
    }
    for (name, reference) in &spec.named_images {
        let image = polyarch_builder::named::NamedContext::Image(reference.clone());
        named_contexts.insert(name, image).map_err(|e| request(&format!("--build-context {name}"), e.to_string()))?;
    }
    let c = (worker.client)(spec.registry_config.as_deref(), spec.insecure)
        .map_err(|e| request("the registry configuration", e))?;
    *client = Some(c.clone());
    let platforms = spec
        .platforms
        .iter()
        .map(|p| {
            Platform::parse(p).map(|p| p.normalize()).map_err(|e| request(&format!("platform {p:?}"), e.to_string()))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut opts = BuildOptions::new(dockerfile.to_vec()).with_context(context);
    opts.dockerfile_name = spec.dockerfile_name.clone();
    opts.target = spec.target.clone();
    opts.build_args = spec.build_args.clone();
    opts.labels = spec.labels.clone();
    opts.no_cache = spec.no_cache;
    if spec.pull {
        opts.resolve_mode = polyarch_builder::base::ResolveMode::Pull;
    }
    opts.compression = match spec.compression.as_str() {
        "zstd" => Compression::Zstd,
        "uncompressed" => Compression::Uncompressed,
        _ => Compression::Gzip,
    };
    opts.compression_level = spec.compression_level;
    opts.source_date_epoch = spec.source_date_epoch;
    opts.rewrite_timestamp = spec.rewrite_timestamp;
    opts.network = spec.network.parse().map_err(|e: String| request("--network", e))?;
    opts.runtime = spec.runtime.clone();
    opts.snapshotter = spec.snapshotter.parse().map_err(|e: String| request("--snapshotter", e))?;
    opts.no_cache_filter = spec.no_cache_filter.clone();
    opts.named_contexts = named_contexts;
    (opts.run, opts.secrets) = spec.run.settings().map_err(|e| request("the RUN settings", e))?;
    // Sockets for the client's ssh agents, for as long as the build runs.
    let _agents = match spec.run.ssh.is_empty() {
        true => None,
        false => {
            let to_client = out.clone();
            let relay: crate::agent::Send = Arc::new(move |m: &Msg| {
                let _ = send(&to_client, m);
            });
            let run = store.root().join("run");
            let agents = crate::agent::NodeAgents::start(&spec.run.ssh, &run, relay, conns.clone())
                .map_err(|e| WireError::Store { message: format!("making the --ssh agent sockets: {e}") })?;
            opts.run.ssh = agents.sockets();
            Some(agents)
        }
    };
    if let Some(p) = platforms.first() {
        opts.platform = p.clone();
    }
    check_emulation(&opts, &platforms, &Platform::host(), &probe_host).map_err(build_error)?;
    let sink_out = out.clone();
    let sink = Arc::new(move |e: Event| {
        if let Some(event) = WireEvent::from_event(&e) {
            let _ = send(&sink_out, &Msg::Event { event });
        }
    });
    // A bad annotation fails the request before anything is built.
    let mut annotations = Vec::new();
    for a in &spec.annotations {
        annotations.extend(
            polyarch_index::Annotation::parse_build(a)
                .map_err(|e| request(&format!("--annotation {a}"), e.to_string()))?,
        );
    }
    let cache = match spec.cache.is_empty() {
        true => None,
        false => Some(import_caches(rt, &spec.cache, &cache_dirs, &c)?),
    };
    let mut b = MultiBuilder::new(store.clone()).with_client(c).with_events(sink);
    if let Some(j) = spec.jobs {
        b = b.with_jobs(j);
    }
    if let Some(io) = &cache {
        b = b.with_cache_io(io.clone());
    }
    let r = rt.block_on(b.build(&opts, &platforms)).map_err(build_error)?;
    let images = r
        .images
        .iter()
        .map(|i| polyarch_builder::export::annotate(store, i, &annotations))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| WireError::Store { message: format!("annotating the manifests: {e}") })?;
    let report = cache.map(|io| CacheReport {
        records: io.gather(cacheio::Mode::Max).graph.records,
        finals: io.finals(),
        warnings: io.take_warnings().iter().map(ToString::to_string).collect(),
    });
    Ok((images, report))
}

/// The cache table of a build on this node: every `--cache-from` it was
/// given, read with the node's registry client; what cannot be read is a
/// warning the client shows.
fn import_caches(
    rt: &tokio::runtime::Runtime,
    spec: &CacheSpec,
    local: &[cacheio::CacheFrom],
    client: &Client,
) -> std::result::Result<Arc<CacheIo>, WireError> {
    let io = Arc::new(CacheIo::new(spec.inline));
    let mut froms = Vec::new();
    for value in &spec.from {
        froms.push(
            cacheio::parse_cache_from(value)
                .map_err(|e| WireError::Request { what: format!("--cache-from {value}"), message: e.to_string() })?,
        );
    }
    for from in froms.iter().chain(local) {
        if let Err(w) = rt.block_on(cacheio::import::import(&io, client, from)) {
            io.warn(w);
        }
    }
    Ok(io)
}

/// A build error as the wire carries it, with its platform.
fn build_error(e: polyarch_builder::Error) -> WireError {
    let platform = match &e {
        polyarch_builder::Error::ForPlatform { platform, .. } => Some(platform.clone()),
        _ => None,
    };
    WireError::Build { platform, message: e.to_string() }
}

/// Pushes the images of `manifests` (blobs, then each manifest by digest)
/// to the repository of every name.
fn push(
    rt: &tokio::runtime::Runtime,
    client: Option<&Client>,
    store: &Store,
    built: &HashMap<Digest, BuildResult>,
    names: &[String],
    manifests: &[Digest],
) -> std::result::Result<(), WireError> {
    let protocol = |message: String| WireError::Protocol { message };
    let client = client.ok_or_else(|| protocol("push before any build".into()))?;
    let results = manifests
        .iter()
        .map(|d| built.get(d).ok_or_else(|| protocol(format!("{d} was not built in this session"))))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    rt.block_on(async {
        for n in names {
            let reference = Reference::parse_normalized(n)
                .map_err(|e| WireError::Request { what: format!("reference {n:?}"), message: e.to_string() })?
                .with_default_tag();
            for r in &results {
                let at = reference.with_digest(r.manifest.digest.clone());
                polyarch_builder::export::push_image(client, store, r, &at)
                    .await
                    .map_err(|e| WireError::Push { reference: at.to_string(), message: e.to_string() })?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn frames(msgs: &[Msg]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            wire::write_msg(&mut out, m).unwrap();
        }
        out
    }

    /// Serves `input` with a worker whose registry configuration always
    /// fails; returns the outcome and every message the worker wrote.
    fn serve_bytes(input: Vec<u8>) -> (Result<()>, Vec<Msg>) {
        let dir = tempfile::tempdir().unwrap();
        let worker = Worker {
            store: Store::open(dir.path().join("store")).unwrap(),
            version: "v0".into(),
            probe: serde_json::json!({"native": ["linux/amd64"]}),
            client: Box::new(|_, _| Err("no registry here".into())),
            on_hangup: Box::new(|| {}),
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = Captured::default();
        let r = serve(worker, &rt, Box::new(std::io::Cursor::new(input)), Box::new(out.clone()));
        let bytes = out.0.lock().unwrap().clone();
        let mut read = &bytes[..];
        let mut got = Vec::new();
        while let Some(Frame::Msg(m)) = wire::read_frame(&mut read).unwrap() {
            got.push(m);
        }
        (r, got)
    }

    fn spec(dockerfile: &[u8]) -> BuildSpec {
        BuildSpec::sample(dockerfile, &["linux/amd64"])
    }

    #[test]
    fn a_client_of_another_protocol_gets_a_typed_refusal() {
        let (r, got) = serve_bytes(frames(&[Msg::Hello { protocol: PROTOCOL + 1, version: "v9".into(), probe: None }]));
        assert_eq!(r.unwrap_err().kind(), crate::error::ErrorKind::Protocol);
        assert_eq!(got, [Msg::Failed { error: WireError::Version { got: PROTOCOL + 1, speaks: PROTOCOL } }]);
    }

    #[test]
    fn a_request_that_cannot_be_served_fails_typed_and_the_session_goes_on() {
        let df = b"FROM busybox\n".to_vec();
        let digest = Digest::sha256(&df);
        let hello = Msg::Hello { protocol: PROTOCOL, version: "v0".into(), probe: None };
        let mut input = frames(&[
            hello,
            Msg::Context { entries: vec![], extra: vec![digest.clone()], named: BTreeMap::new(), caches: vec![] },
        ]);
        wire::write_blob(&mut input, &digest, df.len() as u64, &mut &df[..]).unwrap();
        let push = Msg::Push { names: vec!["r/x:1".into()], manifests: vec![digest.clone()] };
        input.extend(frames(&[Msg::Build(Box::new(spec(&df))), push, Msg::Bye]));
        let (r, got) = serve_bytes(input);
        r.unwrap();
        assert!(matches!(&got[0], Msg::Hello { protocol: PROTOCOL, .. }), "{got:?}");
        assert_eq!(got[1], Msg::Need { digests: vec![digest] });
        let request =
            WireError::Request { what: "the registry configuration".into(), message: "no registry here".into() };
        assert_eq!(got[2], Msg::Failed { error: request });
        let push = WireError::Protocol { message: "push before any build".into() };
        assert_eq!(got[3], Msg::Failed { error: push });
        assert_eq!(got.len(), 4);
    }
}
