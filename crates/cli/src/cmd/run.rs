//! `polyarch run`: run a command in a new container from a stored image,
//! as `docker run --rm` does, with no daemon.
//!
//! The image is looked up in the local store (by name, ID, or the digest
//! of any stored manifest, such as an index child) and pulled for the
//! platform when missing (`--pull`); see [`image`]. Without `--platform`
//! an image stored only for foreign platforms runs under emulation, after
//! Docker's warning. Its layers are unpacked once into shared
//! snapshots under `ROOT/snapshots/{overlay,naive}`, keyed by chain id, so
//! later runs and other images with the same base reuse them. Each run
//! gets an active snapshot on top, mounted under `ROOT/exec/mnt`, and runs
//! the process with runc (see `polyarch_exec`). The exit code is the
//! process's.
//!
//! `-t` gives the process a terminal and `-i` keeps stdin open, as
//! `docker run -it` (see [`tty`]).
//!
//! There is no container state to keep: the container, its snapshot and
//! mount are removed when the process exits, with or without `--rm`
//! (accepted for Docker compatibility). What a killed polyarch left behind
//! is removed by the next `run`.
//!
//! Foreign platforms run under the kernel's binfmt_misc QEMU handlers;
//! without one, the run fails with a message naming the platform and the
//! fix. Exit codes as Docker's: 125 when polyarch fails, 126 when the
//! program cannot be executed, 127 when it is not found.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use polyarch_exec::{
    Cancel, ErrorKind, Executor, MountSpec, NetworkMode, ProcessIo, ProcessSpec, Resource, Rlimit, RuncExecutor,
    RuncExecutorBuilder,
};
use polyarch_oci::{Descriptor, Digest, Platform};
use polyarch_snapshot::{apply_layer, NaiveSnapshotter, OverlaySnapshotter, Snapshotter, UnpackOptions};
use polyarch_store::{BlobSource, Store};
use polyarch_transfer::local::LocalImage;
use serde_json::Value;

use super::context;
use super::images::open_store;
use super::GlobalArgs;

mod image;
mod tty;

/// When to pull the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Pull when the store lacks the image for the platform.
    Missing,
    /// Pull before every run.
    Always,
    /// Never pull; fail when the image is missing.
    Never,
}

/// Which snapshotter holds the image layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SnapshotterChoice {
    /// Overlay when overlayfs works under the root, else naive.
    Auto,
    /// overlayfs: layers are shared, each run gets an upper directory.
    Overlay,
    /// Plain directories: each run gets a full copy.
    Naive,
}

#[derive(Args)]
pub struct RunArgs {
    /// Accepted for Docker compatibility: containers are always removed.
    #[arg(long)]
    rm: bool,
    /// Accepted for Docker compatibility (checked as Docker checks it): no
    /// container outlives the command, so nothing refers to it by name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Run the image for this platform (default: the host's).
    #[arg(long)]
    platform: Option<String>,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file: `KEY=VALUE` lines (or `KEY`
    /// to copy it from here); `#` comments and blank lines are skipped.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<std::path::PathBuf>,
    /// Working directory inside the container (created if missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User: name, uid, name:group or uid:gid.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Network: `host` (the default, as `docker build`) or `none` (loopback only).
    #[arg(long, default_value = "host")]
    network: NetworkMode,
    /// Override the image's entrypoint ("" for none); resets its CMD.
    #[arg(long)]
    entrypoint: Option<String>,
    /// When to pull the image.
    #[arg(long, value_enum, default_value = "missing")]
    pull: PullPolicy,
    /// Keep stdin open for the process (with `-t`, typed into its terminal).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the process a terminal (a pseudo-TTY).
    #[arg(short = 't', long)]
    tty: bool,
    /// A resource limit, `NAME=SOFT[:HARD]` (`nofile=1024:2048`); lowered to
    /// polyarch's own hard limit when above it.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    ulimits: Vec<Rlimit>,
    /// Mount the container's root file system read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// The container's host name (default: 12 hex digits, as Docker's).
    #[arg(long)]
    hostname: Option<String>,
    /// How image layers are stacked: `overlay` (shared read-only layers),
    /// `naive` (full copies), or `auto` (overlay when it works here).
    #[arg(long, value_enum, default_value = "auto")]
    snapshotter: SnapshotterChoice,
    /// The OCI runtime: a name in PATH or a path (default runc).
    #[arg(long, value_name = "NAME|PATH")]
    runtime: Option<String>,
    /// Bind a host path into the container, `HOST:CONTAINER[:ro|rw]` (a
    /// missing host directory is made, as Docker's `-v` does).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:OPTS]")]
    volumes: Vec<String>,
    /// A mount, as Docker's `--mount`: `type=bind,source=HOST,target=PATH[,readonly]`
    /// (the source must exist) or `type=tmpfs,target=PATH`.
    #[arg(long = "mount", value_name = "type=bind,source=HOST,target=PATH")]
    mounts: Vec<String>,
    /// Add a host-to-IP mapping to the container's /etc/hosts (`HOST:IP`,
    /// `host-gateway` for this machine; repeatable or a comma list).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<String>,
    /// The size of /dev/shm (`128m`; default 64m).
    #[arg(long = "shm-size", value_name = "BYTES")]
    shm_size: Option<String>,
    /// Every capability, no seccomp filter, writable /sys and every device
    /// allowed, as `docker run --privileged`.
    #[arg(long)]
    privileged: bool,
    /// An empty tmpfs at PATH, with mount options as Docker's `--tmpfs`
    /// (`/run:size=64m,noexec`).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Publish a port: the container shares the host's network (the
    /// default), so every port already is the host's; dropped with
    /// Docker's warning.
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CONTAINER")]
    publish: Vec<String>,
    /// Accepted for Docker compatibility: a container's labels, which
    /// nothing reads here.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Refused: polyarch has no daemon to keep a container in the background.
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// The image: a stored name or ID, or a reference to pull.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The command and its arguments (default: the image's CMD).
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The flags of `docker run` polyarch does not take: named in the error
/// instead of clap's tip. (`-h` is help here, not `--hostname`.)
const DOCKER_RUN_FLAGS: &[&str] = &[
    "--annotation",
    "--attach",
    "-a",
    "--blkio-weight",
    "--blkio-weight-device",
    "--cap-add",
    "--cap-drop",
    "--cgroup-parent",
    "--cgroupns",
    "--cidfile",
    "--cpu-count",
    "--cpu-percent",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
    "--cpu-shares",
    "-c",
    "--cpus",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--detach-keys",
    "--device",
    "--device-cgroup-rule",
    "--device-read-bps",
    "--device-read-iops",
    "--device-write-bps",
    "--device-write-iops",
    "--disable-content-trust",
    "--dns",
    "--dns-option",
    "--dns-search",
    "--domainname",
    "--expose",
    "--gpus",
    "--group-add",
    "--health-cmd",
    "--health-interval",
    "--health-retries",
    "--health-start-interval",
    "--health-start-period",
    "--health-timeout",
    "--init",
    "--io-maxbandwidth",
    "--io-maxiops",
    "--ip",
    "--ip6",
    "--ipc",
    "--isolation",
    "--kernel-memory",
    "--label-file",
    "--link",
    "--link-local-ip",
    "--log-driver",
    "--log-opt",
    "--mac-address",
    "--memory",
    "-m",
    "--memory-reservation",
    "--memory-swap",
    "--memory-swappiness",
    "--network-alias",
    "--no-healthcheck",
    "--oom-kill-disable",
    "--oom-score-adj",
    "--pid",
    "--pids-limit",
    "--publish-all",
    "-P",
    "--quiet",
    "-q",
    "--restart",
    "--security-opt",
    "--sig-proxy",
    "--stop-signal",
    "--stop-timeout",
    "--storage-opt",
    "--sysctl",
    "--userns",
    "--uts",
    "--volume-driver",
    "--volumes-from",
];

/// For a usage error of `polyarch run` about a flag of `docker run` it
/// lacks: the message naming it; `None` for anything else.
pub fn unsupported_flag(args: &[String], err: &clap::Error) -> Option<String> {
    let flag = super::build::inputs::unknown_flag_of(args, err, "run")?;
    DOCKER_RUN_FLAGS.contains(&flag.as_str()).then(|| format!("polyarch run does not support {flag} of docker run"))
}

/// A container name as Docker accepts it: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`
/// (a leading `/` allowed).
fn container_name(s: &str) -> std::result::Result<String, String> {
    let name = s.strip_prefix('/').unwrap_or(s);
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.clone().count() >= 1 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok {
        Ok(name.to_string())
    } else {
        Err(format!("Invalid container name ({s}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"))
    }
}

pub fn run(global: &GlobalArgs, a: RunArgs) -> Result<u8> {
    match run_container(global, &a) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {}", crate::report::Chain(&e));
            Ok(125)
        }
    }
}

fn run_container(global: &GlobalArgs, a: &RunArgs) -> Result<u8> {
    if let Some(name) = &a.name {
        container_name(name).map_err(anyhow::Error::msg)?;
    }
    if a.detach {
        bail!("-d/--detach is not supported: polyarch has no daemon to keep the container running, so it runs in the foreground");
    }
    if !a.publish.is_empty() {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
    }
    let platform = match &a.platform {
        Some(p) => Some(Platform::parse(p)?),
        None => None,
    };
    let root = context::data_root(global);
    let store = open_store(global)?;
    let rt = context::runtime()?;
    let image = image::find(global, &store, &rt, &a.image, platform.as_ref(), a.pull)?;
    let exec = RuncExecutorBuilder::new(root.join("exec"))
        .with_runtime(a.runtime.as_deref())
        .with_kill_grace(std::time::Duration::from_secs(10))
        .build()?;
    let snapshotter = snapshotter(&root, a.snapshotter)?;
    let cleaned = exec.cleanup_stale().context("removing what earlier runs left behind")?;
    for (path, why) in cleaned.failed {
        eprintln!("warning: cannot remove {} left by an earlier run: {why}", path.display());
    }
    let mut mounts = container_mounts(&a.volumes, &a.mounts)?;
    for t in &a.tmpfs {
        mounts.push(parse_tmpfs(t).map_err(|why| anyhow::anyhow!("invalid --tmpfs {t:?}: {why}"))?);
    }
    let top = unpack(&store, snapshotter.as_ref(), &image)?;
    let process = process_spec(a, &image)?;
    let cancel = Cancel::new();
    let _in_runtime = rt.enter();
    watch_signals(&rt, cancel.clone());
    let streams = tty::Streams::new(&rt, a.tty, a.interactive)?;
    let status = run_in_snapshot(&exec, snapshotter.as_ref(), &top, &mounts, process, &streams, cancel);
    // The caller's terminal leaves raw mode before anything is printed.
    drop(streams);
    match status {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<polyarch_exec::Error>() {
            // The runtime has already printed its own message on the
            // container's (inherited) stderr.
            Some(polyarch_exec::Error::ExecFormat { .. }) => {
                eprintln!("error: {}", exec_format_hint(&image.platform()));
                Ok(126)
            }
            Some(polyarch_exec::Error::ProgramNotFound { .. }) => Ok(127),
            Some(polyarch_exec::Error::NotExecutable { .. }) => Ok(126),
            Some(err) if err.kind() == ErrorKind::Cancelled => Ok(130),
            _ => Err(e),
        },
    }
}

/// The snapshotter asked for; `auto` picks overlay when overlayfs works
/// under the root, else the naive one (full copies).
fn snapshotter(root: &Path, choice: SnapshotterChoice) -> Result<Box<dyn Snapshotter>> {
    // The overlay snapshots are the layers builds unpacked too.
    let overlay = polyarch_builder::materialize::layer_cache_root(root);
    let use_overlay = match choice {
        SnapshotterChoice::Auto => OverlaySnapshotter::supported(&overlay),
        SnapshotterChoice::Overlay => {
            OverlaySnapshotter::check(&overlay).context("the overlay snapshotter does not work here")?;
            true
        }
        SnapshotterChoice::Naive => false,
    };
    if use_overlay {
        return Ok(Box::new(OverlaySnapshotter::new(&overlay)?));
    }
    Ok(Box::new(NaiveSnapshotter::new(root.join("snapshots/naive"))?))
}

/// Unpacks the image's layers as a chain of committed snapshots (each
/// once, shared by later runs) and returns the top chain id.
fn unpack(store: &Store, s: &dyn Snapshotter, image: &LocalImage) -> Result<Option<String>> {
    let manifest = image.manifest.as_image().context("not an image manifest")?;
    let diff_ids: Vec<Digest> = image
        .config
        .extra
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::parse).collect::<Result<Vec<Digest>, _>>())
        .transpose()
        .context("invalid rootfs.diff_ids in the image config")?
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        bail!("the image has {} layers but its config lists {} diff_ids", manifest.layers.len(), diff_ids.len());
    }
    let opts = UnpackOptions::new();
    let mut parent: Option<String> = None;
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        parent = Some(apply(store, s, parent.as_deref(), layer, diff_id, &opts)?);
    }
    Ok(parent)
}

fn apply(
    store: &Store,
    s: &dyn Snapshotter,
    parent: Option<&str>,
    layer: &Descriptor,
    diff_id: &Digest,
    opts: &UnpackOptions,
) -> Result<String> {
    let blob = store.open(layer).with_context(|| format!("opening layer {}", layer.digest))?;
    let mut tar = polyarch_snapshot::decompress(blob).with_context(|| format!("reading layer {}", layer.digest))?;
    apply_layer(s, parent, diff_id, &mut tar, opts).with_context(|| format!("unpacking layer {}", layer.digest))
}

/// Prepares an active snapshot, mounts it and runs the process; the
/// mount and the snapshot are removed however the run ends.
fn run_in_snapshot(
    exec: &RuncExecutor,
    s: &dyn Snapshotter,
    top: &Option<String>,
    mounts: &[MountSpec],
    mut process: ProcessSpec,
    streams: &tty::Streams,
    cancel: Cancel,
) -> Result<u8> {
    let mount_point = exec.mount_point()?;
    let key = format!("run-{}", mount_point.id());
    if process.hostname.is_empty() {
        process.hostname = Digest::sha256(key.as_bytes()).hex()[..12].to_string();
    }
    let mount = s.prepare(&key, top.as_deref()).context("preparing the container's snapshot")?;
    let result = (|| -> Result<u8> {
        let guard = mount.mount(mount_point.path()).context("mounting the container's root file system")?;
        let io = streams.io(ProcessIo::inherit().with_cancel(cancel));
        let status = exec.run(mount_point.path(), mounts, &process, io);
        guard.unmount().context("unmounting the container's root file system")?;
        Ok(u8::try_from(status?.code() & 0xff).unwrap_or(255))
    })();
    let removed = s.remove(&key).context("removing the container's snapshot");
    drop(mount_point);
    let code = result?;
    removed?;
    Ok(code)
}

/// The process from the image config and the flags, with Docker's rules.
fn process_spec(a: &RunArgs, image: &LocalImage) -> Result<ProcessSpec> {
    let cfg = image.config.extra.get("config").cloned().unwrap_or(Value::Null);
    let strings = |key: &str| -> Vec<String> {
        cfg.get(key)
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let string = |key: &str| cfg.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let args = command_line(strings("Entrypoint"), strings("Cmd"), a.entrypoint.as_deref(), &a.command);
    if args.is_empty() {
        bail!("no command specified (the image has no CMD or ENTRYPOINT)");
    }
    // As docker: the files first, in order, then each -e.
    let mut flags = Vec::new();
    for f in &a.env_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("--env-file {}", f.display()))?;
        flags.extend(env_file_entries(&text).map_err(|e| anyhow::anyhow!("--env-file {}: {e}", f.display()))?);
    }
    flags.extend(a.env.iter().cloned());
    let env = merge_env(strings("Env"), &flags, |k| std::env::var(k).ok());
    let cwd = a.workdir.clone().unwrap_or_else(|| string("WorkingDir"));
    let mut process = ProcessSpec::new(args)
        .with_env(env)
        .with_cwd(if cwd.is_empty() { "/".to_string() } else { cwd })
        .with_user(a.user.clone().unwrap_or_else(|| string("User")))
        .with_network(a.network)
        .with_readonly_rootfs(a.read_only)
        .with_hostname(a.hostname.clone().unwrap_or_default());
    process.rlimits = a.ulimits.clone();
    for h in a.add_hosts.iter().flat_map(|h| h.split(',')).filter(|h| !h.is_empty()) {
        let (name, ip) =
            polyarch_builder::settings::parse_add_host(h).map_err(anyhow::Error::msg).context("--add-host")?;
        process = process.with_extra_host(name, ip.to_string());
    }
    if let Some(v) = &a.shm_size {
        let bytes = polyarch_builder::settings::parse_mem_bytes(v).map_err(anyhow::Error::msg).context("--shm-size")?;
        process = process.with_shm_size(Some(bytes).filter(|b| *b > 0));
    }
    if a.privileged {
        process = process.with_security(polyarch_exec::SecurityMode::Insecure);
    }
    Ok(process)
}

/// The mounts of `-v` and `--mount`, checked as Docker checks them: the
/// container path absolute, a host path for `-v` (named volumes are a
/// daemon's, not polyarch's), made when missing; an existing source for
/// `--mount type=bind`.
fn container_mounts(volumes: &[String], mounts: &[String]) -> Result<Vec<MountSpec>> {
    let mut out = Vec::new();
    for v in volumes {
        let spec = parse_volume(v).map_err(|why| anyhow::anyhow!("invalid volume specification {v:?}: {why}"))?;
        if !spec.source.exists() {
            std::fs::create_dir_all(&spec.source)
                .with_context(|| format!("-v {v}: creating {}", spec.source.display()))?;
        }
        out.push(spec);
    }
    for m in mounts {
        let spec = parse_mount(m).map_err(|why| anyhow::anyhow!("invalid argument {m:?} for --mount: {why}"))?;
        if spec.kind == "bind" && !spec.source.exists() {
            bail!("invalid mount config for type \"bind\": bind source path does not exist: {}", spec.source.display());
        }
        out.push(spec);
    }
    for spec in &mut out {
        if spec.kind == "bind" {
            spec.source = std::fs::canonicalize(&spec.source)
                .with_context(|| format!("resolving the mount source {}", spec.source.display()))?;
        }
    }
    Ok(out)
}

/// `-v HOST:CONTAINER[:OPTS]`: OPTS a comma list of `ro`, `rw` and the
/// options Docker accepts that change nothing here (`z`, `Z`, propagation,
/// `nocopy`, consistency).
pub fn parse_volume(v: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        [_] => return Err("anonymous volumes are not supported; give HOST:CONTAINER".into()),
        _ => return Err("too many colons".into()),
    };
    if source.is_empty() || target.is_empty() {
        return Err("empty path".into());
    }
    if !source.starts_with('/') {
        return Err(format!("{source:?} is a named volume, which polyarch has not (give an absolute host path)"));
    }
    if !target.starts_with('/') {
        return Err(format!("the container path {target:?} is not absolute"));
    }
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" | "shared" | "rshared" | "slave"
            | "rslave" | "private" | "rprivate" => {}
            other => return Err(format!("invalid mode: {other}")),
        }
    }
    Ok(MountSpec::bind(source, target, readonly))
}

/// `--mount type=bind,source=S,target=T[,readonly]` or
/// `type=tmpfs,target=T`, with Docker's key spellings (`src`, `dst`,
/// `destination`, `ro`).
pub fn parse_mount(m: &str) -> Result<MountSpec, String> {
    let (mut kind, mut source, mut target, mut readonly) = ("volume".to_string(), None, None, false);
    let mut tmpfs_options = Vec::new();
    for field in polyarch_dockerfile::values::csv_fields(m) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        match (k.as_str(), v) {
            ("type", Some(v)) => kind = v,
            ("source" | "src", Some(v)) => source = Some(v),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v),
            ("readonly" | "ro", None) => readonly = true,
            ("readonly" | "ro", Some(v)) => {
                readonly = match v.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(format!("invalid value for {k}: {v}")),
                }
            }
            ("tmpfs-size", Some(v)) => {
                let bytes = polyarch_builder::settings::parse_mem_bytes(&v).map_err(|e| format!("tmpfs-size: {e}"))?;
                tmpfs_options.push(format!("size={bytes}"));
            }
            ("tmpfs-mode", Some(v)) => {
                let mode = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                    .map_err(|_| format!("invalid tmpfs-mode {v:?}: want octal"))?;
                tmpfs_options.push(format!("mode={mode:o}"));
            }
            ("bind-propagation" | "consistency", Some(_)) => {}
            (other, _) => return Err(format!("unexpected key '{other}' in '{field}'")),
        }
    }
    let target = target.ok_or("target is required")?;
    if !target.starts_with('/') {
        return Err(format!("the target {target:?} is not absolute"));
    }
    match kind.as_str() {
        "bind" => {
            let source = source.ok_or("source is required when specifying type=bind")?;
            if !source.starts_with('/') {
                return Err(format!("the source {source:?} is not an absolute path"));
            }
            Ok(MountSpec::bind(source, target, readonly))
        }
        "tmpfs" => {
            let mut spec = MountSpec::tmpfs(target);
            spec.options.extend(tmpfs_options);
            Ok(spec)
        }
        "volume" => Err("volumes are not supported; use type=bind or type=tmpfs".into()),
        other => Err(format!("unknown mount type {other:?}")),
    }
}

/// Options a tmpfs takes (`--tmpfs PATH:OPTS`, `--mount type=tmpfs`).
const TMPFS_FLAGS: &[&str] = &["rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime"];
const TMPFS_KEYS: &[&str] = &["size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"];

/// Docker's `--tmpfs PATH[:OPTIONS]`: an empty tmpfs (nosuid, nodev, mode
/// 1777) with the options given after it, checked against what tmpfs takes.
pub fn parse_tmpfs(v: &str) -> Result<MountSpec, String> {
    let (target, opts) = v.split_once(':').unwrap_or((v, ""));
    if !target.starts_with('/') {
        return Err(format!("the path {target:?} is not absolute"));
    }
    let mut spec = MountSpec::tmpfs(target);
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let known = match o.split_once('=') {
            Some((k, v)) => TMPFS_KEYS.contains(&k) && !v.is_empty(),
            None => TMPFS_FLAGS.contains(&o),
        };
        if !known {
            return Err(format!("unknown tmpfs option {o:?}"));
        }
        spec.options.push(o.to_string());
    }
    Ok(spec)
}

/// Docker's `--ulimit NAME=SOFT[:HARD]` (HARD defaults to SOFT).
pub fn parse_ulimit(s: &str) -> Result<Rlimit, String> {
    let (name, values) = s.split_once('=').ok_or_else(|| format!("invalid ulimit {s:?}: want NAME=SOFT[:HARD]"))?;
    let resource = Resource::from_name(name).ok_or_else(|| format!("unknown ulimit name {name:?}"))?;
    let num = |v: &str| v.parse::<u64>().map_err(|_| format!("invalid ulimit value {v:?} in {s:?}"));
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (num(soft)?, num(hard)?),
        None => (num(values)?, num(values)?),
    };
    if soft > hard {
        return Err(format!("ulimit soft limit {soft} is above the hard limit {hard}"));
    }
    Ok(Rlimit { resource, soft, hard })
}

/// Docker's rules: `--entrypoint` replaces the image's and drops its CMD
/// (`""` means none); arguments given replace CMD.
pub fn command_line(entrypoint: Vec<String>, cmd: Vec<String>, flag: Option<&str>, given: &[String]) -> Vec<String> {
    let (entrypoint, cmd) = match flag {
        Some("") => (Vec::new(), given.to_vec()),
        Some(e) => (vec![e.to_string()], given.to_vec()),
        None if given.is_empty() => (entrypoint, cmd),
        None => (entrypoint, given.to_vec()),
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The image's environment with `-e` entries applied: `K=V` sets, `K`
/// copies the value from `lookup` (and is dropped when unset there).
pub fn merge_env(image: Vec<String>, flags: &[String], lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut env = image;
    for f in flags {
        let entry = match f.split_once('=') {
            Some(_) => f.clone(),
            None => match lookup(f) {
                Some(v) => format!("{f}={v}"),
                None => continue,
            },
        };
        let k = key(&entry);
        match env.iter_mut().find(|e| key(e) == k) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
    env
}

/// The entries of an `--env-file`, as docker reads one: a line is
/// `KEY=VALUE` (the value as written, quotes included) or `KEY`; leading
/// white space is dropped; `#` lines and blank ones are skipped; a key
/// with white space is an error naming the line.
pub fn env_file_entries(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split_once('=').map_or(line, |(k, _)| k);
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {}: variable {key:?} contains whitespaces", n + 1));
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// Stops the container on SIGINT or SIGTERM instead of leaving it behind.
fn watch_signals(rt: &tokio::runtime::Runtime, cancel: Cancel) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    rt.spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        cancel.cancel();
    });
}

/// How to make `platform` executable here.
fn exec_format_hint(platform: &Platform) -> String {
    format!(
        "exec format error: the kernel cannot execute {} programs (no binfmt_misc handler for {} is \
         registered); register one with `polyarch binfmt install {}` or `apt-get install qemu-user-static`.",
        platform.format(),
        platform.architecture,
        platform.architecture
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn container_names_are_checked_as_docker_does() {
        for ok in ["web", "a1", "/web", "my_app.v2-1"] {
            assert_eq!(super::container_name(ok).unwrap(), ok.trim_start_matches('/'));
        }
        for bad in ["", "a", "-x", "_x", "a b", "x/y", "é1"] {
            let err = super::container_name(bad).unwrap_err();
            assert!(err.starts_with(&format!("Invalid container name ({bad})")), "{err}");
        }
    }

    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_rules_for_entrypoint_and_cmd() {
        let (ep, cmd) = (v(&["/entry"]), v(&["default"]));
        assert_eq!(command_line(ep.clone(), cmd.clone(), None, &[]), ["/entry", "default"]);
        assert_eq!(command_line(ep.clone(), cmd.clone(), None, &v(&["x", "y"])), ["/entry", "x", "y"]);
        assert_eq!(command_line(ep.clone(), cmd.clone(), Some("/bin/sh"), &[]), ["/bin/sh"]);
        assert_eq!(command_line(ep.clone(), cmd.clone(), Some("/bin/sh"), &v(&["-c", "id"])), ["/bin/sh", "-c", "id"]);
        assert_eq!(command_line(ep, cmd, Some(""), &v(&["ls"])), ["ls"]);
        assert!(command_line(vec![], vec![], None, &[]).is_empty());
    }

    #[test]
    fn env_flags_override_the_image() {
        let image = v(&["PATH=/bin", "A=1"]);
        let got = merge_env(image, &v(&["A=2", "B=3", "HOME", "UNSET"]), |k| (k == "HOME").then(|| "/h".to_string()));
        assert_eq!(got, ["PATH=/bin", "A=2", "B=3", "HOME=/h"]);
    }

    #[test]
    fn ulimits_parse_as_dockers() {
        assert_eq!(parse_ulimit("nofile=100:200"), Ok(Rlimit { resource: Resource::Nofile, soft: 100, hard: 200 }));
        assert_eq!(parse_ulimit("nproc=50"), Ok(Rlimit { resource: Resource::Nproc, soft: 50, hard: 50 }));
        assert!(parse_ulimit("nofile=200:100").unwrap_err().contains("above"));
        assert!(parse_ulimit("files=1").unwrap_err().contains("files"));
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=x").is_err());
    }

    #[test]
    fn env_files_read_as_dockers() {
        let got = env_file_entries("# comment\n\nA=1\n  B=\"two words\"\nHOME\nC=\n").unwrap();
        assert_eq!(got, v(&["A=1", "B=\"two words\"", "HOME", "C="]));
        assert!(env_file_entries("A=1\nBAD KEY=2\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn volumes_and_mounts_parse_as_dockers() {
        let m = parse_volume("/src:/work:ro,z").unwrap();
        assert_eq!(
            (m.source.to_str(), m.destination.to_str(), m.options.clone()),
            (Some("/src"), Some("/work"), v(&["rbind", "ro"]))
        );
        assert_eq!(parse_volume("/a:/b").unwrap().options, v(&["rbind", "rw"]));
        assert!(parse_volume("data:/b").unwrap_err().contains("named volume"));
        assert!(parse_volume("/a:b").unwrap_err().contains("not absolute"));
        assert!(parse_volume("/a:/b:rx").unwrap_err().contains("invalid mode: rx"));
        assert!(parse_volume("/b").unwrap_err().contains("anonymous"));
        let m = parse_mount("type=bind,src=/s,dst=/t,readonly").unwrap();
        assert_eq!((m.kind.as_str(), m.options.clone()), ("bind", v(&["rbind", "ro"])));
        assert_eq!(parse_mount("type=tmpfs,target=/scratch").unwrap().kind, "tmpfs");
        assert!(parse_mount("type=bind,target=/t").unwrap_err().contains("source is required"));
        assert!(parse_mount("source=/s,target=/t").unwrap_err().contains("volumes are not supported"));
        assert!(parse_mount("type=bind,source=/s,target=/t,bogus=1").unwrap_err().contains("bogus"));
    }

    #[test]
    fn the_hint_names_the_platform_and_the_fix() {
        let h = exec_format_hint(&Platform::parse("linux/s390x").unwrap());
        assert!(
            h.contains("linux/s390x") && h.contains("polyarch binfmt install s390x") && h.contains("qemu-user-static")
        );
    }
}
