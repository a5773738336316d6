//! RUN: the command runs through the OCI runtime on the stage's tree (an
//! overlay of its unpacked layers, or the tree written to a directory, see
//! [`crate::materialize`]); what it changed becomes the step's layer (with
//! whiteouts for deletions) and goes back into the stage's tree. Keyed by
//! the parent key, the command, the environment and ARGs reaching it, the
//! user, working directory, network, platform and the mounts (bind sources
//! by content; never secrets), as BuildKit keys an ExecOp.

use std::path::PathBuf;
use std::sync::Arc;

use polyarch_dockerfile::instructions::{self, Command, Mount};
use polyarch_exec::{
    Executor, HostsFile, MountPoint, MountSpec, NetworkMode, ProcessIo, ProcessSpec, RuncExecutorBuilder, SecurityMode,
};
use tempfile::TempDir;

use super::steps::Step;
use super::{Run, StageState};
use crate::cache::keys::{self, Host, Origin};
use crate::cache::{content_digest, Claim, Record, Running};
use crate::error::{ErrorKind, Location, Result};
use crate::event::{Stream, Vertex};
use crate::fs::{clean, join, Kind, MemFs};
use crate::layer::{write_layer, Layer};
use crate::materialize::{diff, layer_entries, remove_stubs, subtree, Root, Upper};
use crate::process::{cache_dir, command_args, is_lone_heredoc, CacheLock, Output, SnapshotterKind};
use polyarch_dockerfile::values::{heredoc_script, summarize_heredoc};
use polyarch_oci::Digest;
use polyarch_solver::op::{self, Exec, Mkfile, MountKind, Network, Op, Security, Sharing};
use polyarch_solver::DepKey;

/// Paths the runtime may create in the root file system to mount on.
const RUNTIME_STUBS: [&str; 6] = ["proc", "sys", "dev", "etc/resolv.conf", "etc/hosts", "etc/hostname"];

/// Mounts of one run, with the host files that back them (removed on drop).
#[derive(Default)]
struct Mounts {
    specs: Vec<MountSpec>,
    /// Destinations, as clean paths, to remove again when left empty.
    stubs: Vec<String>,
    /// The mounts as the step's exec op names them (the root not among
    /// them), and the keys of the inputs they read (the parent, input 0,
    /// not among them).
    ops: Vec<op::Mount>,
    inputs: Vec<DepKey>,
    /// Secrets exposed as environment variables.
    env: Vec<String>,
    /// Agent sockets of `type=ssh` mounts, removed before `temps`.
    proxies: Vec<crate::ssh::Proxy>,
    /// Targets of the `type=ssh` mounts, in order (found or not).
    ssh_targets: Vec<String>,
    temps: Vec<TempDir>,
    locks: Vec<CacheLock>,
}

/// The base of a cache mount with `from=`.
struct Seed {
    /// The files it starts with.
    tree: MemFs,
    /// Their content digest.
    checksum: polyarch_oci::Digest,
    /// The mode of its top directory.
    mode: u32,
    /// Its position among the step's inputs.
    input: usize,
    /// The path of the source it copies (empty: the root).
    selector: String,
}

/// The command of a RUN, as run and as recorded.
struct Prepared {
    args: Vec<String>,
    /// A script file (name, content) mounted at `/dev/pipes/`.
    pipe: Option<(String, String)>,
    network: NetworkMode,
    security: SecurityMode,
}

impl Mounts {
    /// Adds a mount of an input keyed `dep`.
    fn input(&mut self, target: &str, dep: DepKey, selector: String, readonly: bool) {
        self.inputs.push(dep);
        let kind = MountKind::Input { input: self.inputs.len(), selector, readonly };
        self.ops.push(op::Mount { target: target.to_string(), kind });
    }

    fn other(&mut self, target: &str, kind: MountKind) {
        self.ops.push(op::Mount { target: target.to_string(), kind });
    }
}

impl Run<'_> {
    pub(super) async fn run(&mut self, st: &mut StageState, cmd: &Command, r: &instructions::Run) -> Result<()> {
        let text = self.step_name(st, cmd, r);
        let mut vertex = self.step_vertex(st, &text);
        for m in r.mounts.iter().filter(|m| m.r#type == "bind" || m.from.is_some()) {
            let input = self.source_input(st, m.from.as_deref(), cmd.start_line);
            vertex.inputs.extend(input.filter(|i| !vertex.inputs.contains(i)));
        }
        let mut started = None;
        let outcome = self.run_step(st, cmd, r, &vertex, &mut started).await;
        // A step that failed before it started (a mount, a flag) starts as it fails.
        let step = started.unwrap_or_else(|| self.start(vertex));
        self.end_step(step, outcome)
    }

    /// The step's name as BuildKit gives an exec vertex: the instruction as
    /// written (its `--mount`, `--network` flags and quotes kept), a lone
    /// here-document's first line after it, and only the variables the
    /// build defines expanded, so that shell variables show as written.
    fn step_name(&self, st: &StageState, cmd: &Command, r: &instructions::Run) -> String {
        let mut text = cmd.original.trim().to_string();
        if let (Some(f), Some(arg)) = (r.cmd.files.first(), r.cmd.args.first()) {
            if is_lone_heredoc(arg) {
                text.push_str(&format!(" ({})", summarize_heredoc(&f.data)));
            }
        }
        polyarch_frontend::meta::step_text(&self.lex, &text, &self.env(st), true)
    }

    fn prepare_command(&self, st: &StageState, cmd: &Command, r: &instructions::Run) -> Result<Prepared> {
        let loc = self.loc(cmd.start_line);
        let allow = self.opts.run.allow;
        // BuildKit's entitlements check (`entitlements.Set.Check`). Host
        // networking needs none, as with Docker Engine's builder (buildx's
        // default `docker` driver, which sets `AllowNetworkHostUnstable`):
        // RUN steps use the host's network by default here anyway.
        let not_allowed = |mode: &str, what: &str| {
            let msg =
                format!("security mode {mode:?} is not allowed: {what} is not allowed (grant it with --allow {what})");
            loc.error(ErrorKind::Unsupported, msg, Some(mode))
        };
        let network = match r.network.as_deref() {
            None | Some("default") => self.opts.network,
            Some("host") => NetworkMode::Host,
            Some("none") => NetworkMode::None,
            Some(other) => {
                return Err(loc.error(ErrorKind::Invalid, format!("unsupported network mode {other:?}"), Some(other)))
            }
        };
        let security = match r.security.as_deref() {
            None | Some("sandbox") => SecurityMode::Sandbox,
            Some("insecure") if !allow.security_insecure => return Err(not_allowed("insecure", "security.insecure")),
            Some("insecure") => SecurityMode::Insecure,
            Some(other) => {
                let msg = format!("unsupported security mode {other:?}");
                return Err(loc.error(ErrorKind::Invalid, msg, Some(other)));
            }
        };
        let shell = &st.image.config.shell;
        // Here-documents as BuildKit's dispatchRun turns them into commands.
        let (script, pipe) =
            heredoc_script(&r.cmd).map_err(|e| loc.error(ErrorKind::Dockerfile, e.to_string(), None))?;
        Ok(Prepared { args: command_args(&r.cmd, shell, script), pipe, network, security })
    }

    /// Returns whether the step came from the cache. The step starts
    /// (into `started`) when its result is found in the cache or once it
    /// holds its run slot, so that the wait for a slot is not shown as
    /// running time.
    async fn run_step(
        &mut self,
        st: &mut StageState,
        cmd: &Command,
        r: &instructions::Run,
        vertex: &Vertex,
        started: &mut Option<Step>,
    ) -> Result<bool> {
        let line = cmd.start_line;
        let p = self.prepare_command(st, cmd, r)?;
        let mut mounts = Mounts::default();
        for m in &r.mounts {
            self.mount(st, m, line, &mut mounts).await?;
        }
        if let Some((file, data)) = &p.pipe {
            // A script with a shebang runs as a file, as BuildKit mounts it.
            let op = Op::Mkfile(Mkfile {
                path: format!("/{file}"),
                data: data.as_bytes().to_vec(),
                mode: 0o755,
                ..Mkfile::default()
            });
            let script = self.layering(st).op(&op, file, &[], None)?;
            mounts.input("/dev/pipes", keys::dep(&script, None), String::new(), true);
            let dir = temp_in(&self.b.store.root().join("run"))?;
            write_file(&dir.path().join(file), &mut data.as_bytes(), 0o755, (0, 0))?;
            mounts.specs.push(MountSpec::bind(dir.path(), "/dev/pipes", true));
            mounts.temps.push(dir);
        }
        let config = &st.image.config;
        let cwd = if config.working_dir.is_empty() { "/".to_string() } else { config.working_dir.clone() };
        let mut process = self.process_spec(st, &p, &mounts, cwd);
        let key = self.run_key(st, &p, &process, &mounts)?;
        let text = key.to_string();
        let history =
            format!("RUN {} # buildkit", polyarch_frontend::meta::history_command(&p.args, &st.args, &config.env));
        st.layers_before_step = st.image.diff_ids.len();
        let no_cache = self.opts.no_cache || self.opts.no_cache_filter.iter().any(|s| s.eq_ignore_ascii_case(&st.name));
        let mut running = None;
        if !no_cache {
            match self.cache.claim(&text).await? {
                Claim::Run(r) => running = Some(r),
                Claim::Hit(rec) => {
                    *started = Some(self.start(vertex.clone()));
                    if let Some(layer) = &rec.layer {
                        self.push_cached_layer(st, layer);
                    }
                    self.cache.noted(&st.key.to_string(), &text, &st.platform, &rec);
                    st.key = key;
                    self.cached += 1;
                    self.commit_fs(st, history, rec.created.unwrap_or(self.now));
                    return Ok(true);
                }
            }
        }
        // Secrets reach the process, never the key; nor do proxy
        // settings (BuildKit clears an ExecOp's ProxyEnv before keying).
        process.env.extend(mounts.env.iter().cloned());
        process.env.extend(proxy_env(&process.env, &self.opts.build_args));
        let described = history.trim_end_matches(" # buildkit").to_string();
        let made = self.execute_step(st, &process, mounts, vertex, started, line).await.and_then(|layer| {
            let rec = Record { layer: Some(layer), created: Some(self.now) };
            self.cache.put_described(&text, &rec, &described).map(|()| rec)
        });
        Running::settle(running, &made);
        let rec = made?;
        self.cache.noted(&st.key.to_string(), &text, &st.platform, &rec);
        st.key = key;
        self.executed += 1;
        self.commit_fs(st, history, self.now);
        Ok(false)
    }

    /// Runs a missed RUN once it holds its slot (starting the step into
    /// `started`) and commits what it changed as its layer.
    async fn execute_step(
        &mut self,
        st: &mut StageState,
        process: &ProcessSpec,
        mounts: Mounts,
        vertex: &Vertex,
        started: &mut Option<Step>,
        line: usize,
    ) -> Result<Layer> {
        let before = self.stage_fs(st)?.clone();
        // A native or an emulated slot, so that a step under QEMU never
        // holds one a native step could use (issue 12).
        let slot = self.b.slots.acquire(self.b.slots.exec_class(&st.platform)).await;
        let step = started.insert(self.start(vertex.clone()));
        step.slot = Some(slot);
        let vertex = &step.vertex;
        let (after, upper) = self.execute(st, &before, process, &mounts, vertex, line)?;
        drop(mounts);
        self.commit_changes(st, &before, &after, upper)
    }

    /// The process of a RUN: the stage's environment (with the ARGs in
    /// scope and `SSH_AUTH_SOCK` of a first ssh mount), user, directory,
    /// and the build's RUN settings.
    fn process_spec(&self, st: &StageState, p: &Prepared, mounts: &Mounts, cwd: String) -> ProcessSpec {
        let config = &st.image.config;
        let mut env = polyarch_frontend::meta::run_env(&config.env, &st.args);
        if let Some(first) = mounts.ssh_targets.first() {
            if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                env.push(format!("SSH_AUTH_SOCK={first}"));
            }
        }
        let run = &self.opts.run;
        let mut process = ProcessSpec::new(p.args.clone())
            .with_env(env)
            .with_cwd(cwd)
            .with_user(config.user.clone())
            .with_network(p.network)
            .with_security(p.security)
            .with_shm_size(run.shm_size)
            .with_cgroup_parent(run.cgroup_parent.clone())
            .with_hostname(self.hostname().unwrap_or(polyarch_frontend::meta::DEFAULT_SANDBOX_HOSTNAME))
            .with_hosts_file(HostsFile::Sandbox);
        for (name, addr) in &run.extra_hosts {
            process = process.with_extra_host(name, addr.to_string());
        }
        for r in &run.ulimits {
            process = process.with_rlimit(r.resource, r.soft, r.hard);
        }
        process
    }

    /// The host name the build asks for (`BUILDKIT_SANDBOX_HOSTNAME`).
    fn hostname(&self) -> Option<&str> {
        polyarch_frontend::meta::sandbox_hostname(&self.opts.build_args)
    }

    /// The cache key: the key of the step's exec op (parent, command,
    /// environment and ARGs, user, working directory, network, security,
    /// the build's RUN settings, mounts without secret values, platform),
    /// with the addresses of `--add-host` mixed in.
    fn run_key(&self, st: &StageState, p: &Prepared, process: &ProcessSpec, mounts: &Mounts) -> Result<Digest> {
        let run = &self.opts.run;
        let root = op::Mount {
            target: "/".into(),
            kind: MountKind::Input { input: 0, selector: String::new(), readonly: false },
        };
        let exec = Exec {
            args: p.args.clone(),
            env: process.env.clone(),
            cwd: process.cwd.clone(),
            user: process.user.clone(),
            mounts: std::iter::once(root).chain(mounts.ops.iter().cloned()).collect(),
            network: match p.network {
                NetworkMode::Host => Network::Host,
                NetworkMode::None => Network::None,
            },
            security: match p.security {
                SecurityMode::Sandbox => Security::Sandbox,
                SecurityMode::Insecure => Security::Insecure,
            },
            ulimits: run.op_ulimits(),
            shm_size: run.shm_size,
            cgroup_parent: run.cgroup_parent.clone(),
            hostname: self.hostname().unwrap_or_default().to_string(),
            ..Exec::default()
        };
        let mut deps = vec![keys::dep(&st.key, None)];
        deps.extend(mounts.inputs.iter().cloned());
        self.layering(st).step(&Op::Exec(exec), "RUN", &deps, &Host::all(&run.extra_hosts))
    }

    /// Runs the process on `before` and returns the tree it left, without
    /// the runtime's and the mounts' stubs, and an overlay's upper directory.
    fn execute(
        &self,
        st: &StageState,
        before: &MemFs,
        process: &ProcessSpec,
        mounts: &Mounts,
        vertex: &Vertex,
        line: usize,
    ) -> Result<(MemFs, Upper)> {
        let (loc, name) = (self.loc(line), &vertex.name());
        let exec = match self.b.executor() {
            Some(e) => e,
            None => self.runc(&loc)?,
        };
        let root = self.root(st, before)?;
        let output = Output::new(self.b.events.clone(), vertex.clone());
        let (out, err) = (output.clone(), output.clone());
        let mut io = ProcessIo::default()
            .with_stdout(move |b| out.push(Stream::Stdout, b))
            .with_stderr(move |b| err.push(Stream::Stderr, b));
        if let Some(stop) = &self.b.stop {
            io = io.with_cancel(stop.exec().clone());
        }
        let status = block(|| exec.run(&root.path(), &mounts.specs, process, io));
        output.flush();
        let platform = st.platform.format();
        let status = status.map_err(|e| loc.error(exec_kind(&e), format!("{name} ({platform}): {e}"), None))?;
        if !status.success() {
            return Err(failure(&loc, name, &platform, &process.args, status.code(), &output.tail()));
        }
        let (mut after, upper) = root.finish_keeping_upper(before)?;
        let mut stubs: Vec<String> = RUNTIME_STUBS.iter().map(|s| s.to_string()).collect();
        stubs.extend(mounts.stubs.iter().cloned());
        remove_stubs(before, &mut after, &stubs);
        Ok((after, upper))
    }

    /// Writes the layer of the changes from `before` to `after` (BuildKit's
    /// empty layer when nothing changed; the new contents are read from
    /// `upper`) and applies it to the stage. The run's overlay upper
    /// directory becomes the layer's unpacked form for later steps, unless
    /// timestamps are rewritten (the layer's times then differ from it).
    fn commit_changes(&mut self, st: &mut StageState, before: &MemFs, after: &MemFs, upper: Upper) -> Result<Layer> {
        let changes = diff(before, after);
        let mut entries = layer_entries(&changes, after, self.now);
        if let (true, Some(epoch)) = (self.opts.rewrite_timestamp, self.opts.source_date_epoch) {
            for (_, n) in entries.iter_mut() {
                n.mtime = n.mtime.min(epoch);
            }
        }
        let tmp = self.b.store.root().join("run");
        let all = entries.iter().map(|(p, n)| (p.as_str(), n));
        let layer = write_layer(&self.b.store, &tmp, all, self.opts.encoding())?;
        if !self.opts.rewrite_timestamp {
            let chain: Vec<Layer> = st.layers.iter().cloned().chain([layer.clone()]).collect();
            upper.install(&self.b.store, &chain, &entries);
        }
        let unpack = self.unpack_layers();
        let below = st.layers.clone();
        crate::materialize::apply_stored(self.stage_fs(st)?, &self.b.store, &below, &layer, unpack)?;
        st.image.diff_ids.push(layer.diff_id.clone());
        st.layers.push(layer.clone());
        Ok(layer)
    }

    /// The default executor: the OCI runtime of `BuildOptions::runtime`,
    /// with its state under the store root.
    fn runc(&self, loc: &Location) -> Result<Arc<dyn Executor>> {
        let exec = RuncExecutorBuilder::new(self.b.store.root().join("exec"))
            .with_runtime(self.opts.runtime.as_deref())
            // A step stopped because the build failed elsewhere is thrown
            // away: killed at once, as BuildKit kills it.
            .with_kill_grace(std::time::Duration::ZERO)
            .build()
            .map_err(|e| loc.error(exec_kind(&e), format!("preparing the OCI runtime: {e}"), None))?;
        // Containers and mounts of polyarch processes that were killed; a
        // failure here concerns them, not this run.
        let _ = exec.cleanup_stale();
        Ok(Arc::new(exec))
    }

    /// The step's root file system, by the configured snapshotter: its
    /// mount point is a directory of its own under the store's `run/`
    /// (swept with the rest of it after a kill), not the executor's.
    fn root(&self, st: &StageState, before: &MemFs) -> Result<Root> {
        let tmp = self.b.store.root().join("run");
        let mount_point = || temp_in(&tmp).map(|d| MountPoint::adopt(d.keep()));
        match self.opts.snapshotter {
            SnapshotterKind::Naive => Root::naive(before, &tmp),
            SnapshotterKind::Overlay => Root::overlay(&self.b.store, &st.layers, &tmp, mount_point()?),
            SnapshotterKind::Auto => {
                match Root::overlay(&self.b.store, &st.layers, &tmp, mount_point()?) {
                    Ok(r) => Ok(r),
                    // A store on overlayfs or without mount rights: write the tree.
                    Err(_) => Root::naive(before, &tmp),
                }
            }
        }
    }

    /// Prepares one `--mount`.
    async fn mount(&mut self, st: &mut StageState, m: &Mount, line: usize, out: &mut Mounts) -> Result<()> {
        let loc = self.loc(line);
        let opt = |v: &Option<String>| v.as_ref().map(|s| self.expand(st, s, line)).transpose();
        let target = opt(&m.target)?;
        let source = opt(&m.source)?;
        let from = opt(&m.from)?;
        let id = opt(&m.id)?;
        let workdir = st.image.config.working_dir.clone();
        let abs = |t: &str| format!("/{}", clean(&if t.starts_with('/') { t.to_string() } else { join(&workdir, t) }));
        let need_target = || loc.error(ErrorKind::Invalid, format!("mount type {} requires a target", m.r#type), None);
        match m.r#type.as_str() {
            "bind" => {
                let target = abs(&target.ok_or_else(need_target)?);
                self.bind_mount(st, m, (from, source, target), line, out).await?;
            }
            "cache" => {
                let target = abs(&target.ok_or_else(need_target)?);
                let seed = match from {
                    Some(from) => Some(self.cache_seed(st, &from, source.as_deref(), line, out).await?),
                    None => None,
                };
                self.cache_mount(m, id, target, seed, &loc, out)?;
            }
            "tmpfs" => {
                let target = abs(&target.ok_or_else(need_target)?);
                let mut spec = MountSpec::tmpfs(&target);
                let mut bytes = None;
                if let Some(size) = &m.size {
                    let invalid = |_| loc.error(ErrorKind::Invalid, format!("invalid tmpfs size {size:?}"), Some(size));
                    bytes = Some(crate::settings::parse_mem_bytes(size).map_err(invalid)?);
                    spec.options.push(format!("size={size}"));
                }
                out.other(&target, MountKind::Tmpfs { size: bytes });
                out.specs.push(spec);
                out.stubs.push(clean(&target));
            }
            "secret" => self.secret(m, id, target, &abs, &loc, out)?,
            "ssh" => self.ssh_mount(m, id, target.map(|t| abs(&t)), &loc, out)?,
            other => {
                let msg = format!("mount type {other:?} is not supported");
                return Err(loc.error(ErrorKind::Unsupported, msg, Some(other)));
            }
        }
        Ok(())
    }

    /// A `type=bind` mount: a copy of the source (context, stage or
    /// image), keyed by its content; writes to it are discarded.
    async fn bind_mount(
        &mut self,
        st: &mut StageState,
        m: &Mount,
        (from, source, target): (Option<String>, Option<String>, String),
        line: usize,
        out: &mut Mounts,
    ) -> Result<()> {
        let loc = self.loc(line);
        let root = self.b.store.root().join("run");
        let (fs, origin) = match from.as_deref() {
            None => (self.opts.context.clone(), Origin::Context),
            Some(from) => {
                let src = self.source_named(st, from, line, super::fsops::Reading::Mount).await?;
                (src.fs, src.origin)
            }
        };
        let src = clean(source.as_deref().unwrap_or("/"));
        let Some(resolved) = fs.resolve(&src, true) else {
            return Err(loc.error(ErrorKind::NotFound, format!("mount source {src:?} not found"), None));
        };
        let sub = subtree(&fs, &resolved);
        let rw = m.read_only == Some(false);
        let dir = temp_in(&root)?;
        let host = match (resolved.is_empty(), fs.get(&resolved).map(|n| &n.kind)) {
            (false, Some(Kind::File(data))) => {
                let node = fs.get(&resolved).map(|n| (n.mode, n.uid, n.gid)).unwrap_or((0o644, 0, 0));
                let f = dir.path().join("file");
                write_file(&f, &mut data.open()?, node.0, (node.1, node.2))?;
                f
            }
            (true, _) | (_, Some(Kind::Dir)) => {
                let d = dir.path().join("dir");
                sub.write_to_dir(&d)?;
                d
            }
            _ => return Err(loc.error(ErrorKind::NotFound, format!("mount source {src:?} not found"), None)),
        };
        let checksum = content_digest(&sub)?;
        let selector = if src.is_empty() { String::new() } else { format!("/{src}") };
        out.input(&target, origin.dep(&checksum)?, selector, !rw);
        out.specs.push(MountSpec::bind(host, &target, !rw));
        out.stubs.push(clean(&target));
        out.temps.push(dir);
        Ok(())
    }

    /// What a `type=cache` mount with `from=` starts from: the `source`
    /// path (default the root) of the stage, context or image, a
    /// directory; its content is the input the step reads.
    async fn cache_seed(
        &mut self,
        st: &mut StageState,
        from: &str,
        source: Option<&str>,
        line: usize,
        out: &mut Mounts,
    ) -> Result<Seed> {
        let loc = self.loc(line);
        let src = self.source_named(st, from, line, super::fsops::Reading::Mount).await?;
        let path = clean(source.unwrap_or("/"));
        let resolved = src.fs.resolve(&path, true);
        let dir = resolved.as_deref().and_then(|r| if r.is_empty() { Some(None) } else { src.fs.get(r).map(Some) });
        let mode = match dir {
            Some(None) => 0o755,
            Some(Some(n)) if n.is_dir() => n.mode & 0o7777,
            _ => {
                let msg = format!("cache mount source {path:?} of {from:?} is not a directory");
                return Err(loc.error(ErrorKind::NotFound, msg, Some(from)));
            }
        };
        let tree = subtree(&src.fs, resolved.as_deref().unwrap_or(""));
        let checksum = content_digest(&tree)?;
        out.inputs.push(src.origin.dep(&checksum)?);
        let selector = if path.is_empty() { String::new() } else { format!("/{path}") };
        Ok(Seed { tree, checksum, mode, input: out.inputs.len(), selector })
    }

    /// A `type=cache` mount: a directory under the store root kept across
    /// builds, per id; shared by every platform, as BuildKit's (put
    /// `$TARGETPLATFORM` in the id to separate them). With `from=` the
    /// cache starts as a copy of that directory, and another base is
    /// another cache, as BuildKit keys the cache of a mount by its base.
    fn cache_mount(
        &self,
        m: &Mount,
        id: Option<String>,
        target: String,
        seed: Option<Seed>,
        loc: &Location,
        out: &mut Mounts,
    ) -> Result<()> {
        let root = self.b.store.root().join("run");
        let cid = id.filter(|i| !i.is_empty()).unwrap_or_else(|| target.clone());
        let cid = polyarch_frontend::meta::cache_mount_id(&self.opts.build_args, cid);
        let sharing = m.sharing.clone().unwrap_or_else(|| "shared".into());
        let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
        let mode = m.mode.unwrap_or(0o755);
        let dir = match &seed {
            Some(s) => crate::process::seeded_cache_dir(
                self.b.store.root(),
                &format!("{cid}\nfrom={}", s.checksum),
                &s.tree,
                s.mode,
            )?,
            None => cache_dir(self.b.store.root(), &cid, owner, mode)?,
        };
        let host: PathBuf = match sharing.as_str() {
            "shared" => dir,
            "locked" => {
                out.locks.push(CacheLock::acquire(&dir)?);
                dir
            }
            "private" => match CacheLock::try_acquire(&dir)? {
                Some(l) => {
                    out.locks.push(l);
                    dir
                }
                None => {
                    let t = temp_in(&root)?;
                    if let Some(s) = &seed {
                        s.tree.write_to_dir(t.path())?;
                    }
                    let p = t.path().to_path_buf();
                    out.temps.push(t);
                    p
                }
            },
            other => {
                let msg = format!("invalid cache sharing mode {other:?}");
                return Err(loc.error(ErrorKind::Invalid, msg, Some(other)));
            }
        };
        let sharing = match sharing.as_str() {
            "locked" => Sharing::Locked,
            "private" => Sharing::Private,
            _ => Sharing::Shared,
        };
        let (uid, gid) = (keys::id(owner.0), keys::id(owner.1));
        let readonly = m.read_only == Some(true);
        let (from, selector) = seed.map_or((None, String::new()), |s| (Some(s.input), s.selector));
        let kind = MountKind::Cache { id: cid, sharing, from, selector, readonly, mode, uid, gid };
        out.other(&target, kind);
        out.specs.push(MountSpec::bind(host, &target, m.read_only == Some(true)));
        out.stubs.push(clean(&target));
        Ok(())
    }

    /// A `type=secret` mount: a file outside the root, bound read-only,
    /// and/or an environment variable. Only its id and target are keyed.
    fn secret(
        &self,
        m: &Mount,
        id: Option<String>,
        target: Option<String>,
        abs: &dyn Fn(&str) -> String,
        loc: &Location,
        out: &mut Mounts,
    ) -> Result<()> {
        let sid = match (&id, &target) {
            (Some(i), _) if !i.is_empty() => i.clone(),
            (_, Some(t)) => crate::fs::base(&clean(t)).to_string(),
            _ => return Err(loc.error(ErrorKind::Invalid, "secret mount requires an id or a target", None)),
        };
        let target = match (&target, &m.env) {
            (Some(t), _) => Some(abs(t)),
            (None, Some(_)) => None,
            (None, None) => Some(format!("/run/secrets/{sid}")),
        };
        let (mode, uid, gid) = (m.mode.unwrap_or(0o400), keys::id(m.uid.unwrap_or(0)), keys::id(m.gid.unwrap_or(0)));
        let kind = MountKind::Secret { id: sid.clone(), required: m.required, mode, uid, gid, env: m.env.clone() };
        out.other(target.as_deref().unwrap_or(""), kind);
        let value = match self.opts.secrets.get(&sid).map(|s| s.read()) {
            Some(Ok(v)) => v,
            Some(Err(e)) if m.required => {
                return Err(loc.error(ErrorKind::NotFound, format!("secret {sid}: {e}"), None));
            }
            None if m.required => {
                return Err(loc.error(ErrorKind::NotFound, format!("secret {sid} not found"), None));
            }
            _ => return Ok(()),
        };
        if let Some(var) = &m.env {
            out.env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
        }
        if let Some(target) = target {
            let dir = temp_in(&self.b.store.root().join("run"))?;
            let f = dir.path().join("secret");
            let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
            write_file(&f, &mut &value[..], m.mode.unwrap_or(0o400), owner)?;
            out.specs.push(MountSpec::bind(&f, &target, true));
            out.stubs.push(clean(&target));
            out.temps.push(dir);
        }
        Ok(())
    }

    /// A `type=ssh` mount: a socket of the step's own forwarding to the
    /// agent of the id (`default` unless given), at the target (default
    /// `/run/buildkit/ssh_agent.N`, N counting the step's ssh mounts), as
    /// BuildKit's `llb.AddSSHSocket`; skipped when the agent is missing and
    /// the mount not `required`. The id and target are keyed.
    fn ssh_mount(
        &self,
        m: &Mount,
        id: Option<String>,
        target: Option<String>,
        loc: &Location,
        out: &mut Mounts,
    ) -> Result<()> {
        let sid = id.filter(|i| !i.is_empty()).unwrap_or_else(|| "default".into());
        let target = target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{}", out.ssh_targets.len()));
        let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
        let mode = m.mode.unwrap_or(0o600);
        let kind = MountKind::Ssh {
            id: sid.clone(),
            required: m.required,
            mode,
            uid: keys::id(owner.0),
            gid: keys::id(owner.1),
        };
        out.other(&target, kind);
        out.ssh_targets.push(target.clone());
        let Some(agent) = self.opts.run.ssh.get(&sid) else {
            if m.required {
                let msg = format!("no SSH key {sid:?} forwarded from the client (pass --ssh {sid}[=PATH])");
                return Err(loc.error(ErrorKind::NotFound, msg, None));
            }
            return Ok(());
        };
        let dir = crate::ssh::socket_dir(&self.b.store.root().join("run"))?;
        let sock = dir.path().join("ssh_agent.sock");
        let proxy = crate::ssh::Proxy::start(agent, &sock, (owner.0 as u32, owner.1 as u32), mode)?;
        out.specs.push(MountSpec::bind(&sock, &target, false));
        out.stubs.push(clean(&target));
        out.proxies.push(proxy);
        out.temps.push(dir);
        Ok(())
    }
}

/// The proxy variables of `build_args` that `env` does not set already.
fn proxy_env(env: &[String], build_args: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let set = |k: &str| env.iter().any(|e| e.split_once('=').map_or(e.as_str(), |x| x.0) == k);
    polyarch_dockerfile::instructions::PROXY_ARGS
        .iter()
        .filter(|k| !set(k))
        .filter_map(|k| build_args.get(*k).map(|v| format!("{k}={v}")))
        .collect()
}

/// Named after this process so that a later build can tell, after a kill,
/// that its owner is gone and remove it.
fn temp_in(dir: &std::path::Path) -> Result<TempDir> {
    crate::materialize::temp_in(dir)
}

fn write_file(path: &std::path::Path, data: &mut dyn std::io::Read, mode: u32, owner: (u64, u64)) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::File::create(path).map_err(|e| crate::Error::io(path, e))?;
    std::io::copy(data, &mut f).map_err(|e| crate::Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| crate::Error::io(path, e))?;
    if crate::fs::is_root() {
        std::os::unix::fs::chown(path, Some(owner.0 as u32), Some(owner.1 as u32))
            .map_err(|e| crate::Error::io(path, e))?;
    }
    Ok(())
}

/// Blocks without starving an async runtime's other tasks.
fn block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn exec_kind(e: &polyarch_exec::Error) -> ErrorKind {
    match e.kind() {
        polyarch_exec::ErrorKind::NotFound => ErrorKind::NotFound,
        polyarch_exec::ErrorKind::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Io,
    }
}

/// BuildKit's message for a process that exited non-zero, with the step,
/// platform and the last lines it wrote.
fn failure(loc: &Location, step: &str, platform: &str, args: &[String], code: i32, tail: &[String]) -> crate::Error {
    let mut msg =
        format!("process {:?} did not complete successfully: exit code: {code} ({step}, {platform})", args.join(" "));
    if !tail.is_empty() {
        msg.push_str("\nlast output:");
        for l in tail {
            msg.push_str(&format!("\n  {l}"));
        }
    }
    loc.error(ErrorKind::Invalid, msg, None)
}

#[cfg(test)]
mod tests;
