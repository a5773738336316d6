//! `polyarch build`: a Dockerfile build for one platform or several (one
//! index, see [`multi`]), with the flags of
//! `docker buildx build` (`-f`, `--target`, `--build-arg`, `--label`, `-t`,
//! `--no-cache`, `--pull`, `--platform`, `--progress`, `--metadata-file`,
//! `--iidfile`, `-o/--output`, `--push`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use polyarch_builder::base::ResolveMode;
use polyarch_builder::{export, BuildOptions, BuildResult, Builder, Compression, Event, MemFs};
use polyarch_exec::{Cancel, RuncExecutorBuilder};
use polyarch_oci::Platform;
use polyarch_store::Store;

use super::context::{self, parse_tagged};
use super::GlobalArgs;

mod check;
pub mod inputs;
mod load;
mod multi;
mod nodes;
mod outline;
mod run_flags;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build context: a directory, a Git URL (`#ref:subdir`), an HTTP(S)
    /// URL of a tar archive or of a Dockerfile, or `-` (stdin: a tar archive,
    /// or a Dockerfile and no context).
    #[arg(value_name = "PATH")]
    context: String,
    /// The Dockerfile (default: PATH/Dockerfile; inside the archive for `-`).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// The stage to build.
    #[arg(long)]
    target: Option<String>,
    /// A build argument `KEY=VALUE`, or `KEY` to take its value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// A label `KEY=VALUE` for the image.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// A name for the image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// Do not use the cache.
    #[arg(long)]
    no_cache: bool,
    /// Always ask the registry for the images the build names (FROM,
    /// COPY --from, RUN --mount=from); without it (`--pull=false`, or
    /// BuildKit's `default`/`local`) a stored image with the platform is
    /// used, and the registry asked otherwise.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_name = "BOOL|MODE",
        value_parser = parse_pull
    )]
    pull: ResolveMode,
    /// The target platforms: a comma list, repeatable; `local` is this
    /// machine's (default). Several build one index.
    #[arg(long = "platform", value_name = "PLATFORM[,PLATFORM...]")]
    platforms: Vec<String>,
    /// How many platforms build at once (default: from cores and memory).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Progress output: auto, tty, plain, quiet or rawjson.
    #[arg(long, default_value = "auto", value_parser = ["auto", "tty", "plain", "quiet", "rawjson"])]
    progress: String,
    /// Print only the image digest (`--progress quiet`).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write build results (digests, names) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Write the image digest to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Output destination, buildx syntax: `type=local,dest=DIR`,
    /// `type=oci,dest=FILE`, `type=docker,dest=FILE`, `type=tar,dest=FILE`,
    /// `type=image,name=NAME,push=true`, `type=registry`; `-o DIR`, `-o -`.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Shorthand for `--output=type=registry`.
    #[arg(long)]
    push: bool,
    /// Load the result into the Docker engine (`DOCKER_HOST`, the docker
    /// context or the default socket) as buildx's `--load`; with no engine
    /// reachable, into the local store. An engine without the containerd
    /// image store takes one platform of a multi-platform build (the host's
    /// if built); the local store keeps the whole index.
    #[arg(long)]
    load: bool,
    /// Allow plain HTTP and unverified TLS for registries.
    #[arg(long)]
    insecure: bool,
    /// The network of RUN steps: host, none or default (host).
    #[arg(long, default_value = "default", value_parser = ["default", "host", "none"])]
    network: String,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR` (repeatable).
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// The OCI runtime for RUN steps, by name or path (default runc).
    #[arg(long, value_name = "NAME|PATH")]
    runtime: Option<String>,
    /// How RUN steps get their root file system: auto, overlay or naive.
    #[arg(long, default_value = "auto", value_name = "KIND")]
    snapshotter: String,
    /// Do not use the cache for RUN steps of this stage (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    no_cache_filter: Vec<String>,
    /// The builder to use (default: the one chosen with `polyarch builder use`).
    #[arg(long, env = "POLYARCH_BUILDER", value_name = "NAME")]
    builder: Option<String>,
    /// Build here, under emulation, the platforms of builder nodes that are
    /// unreachable or fail (with a warning), instead of failing.
    #[arg(long)]
    fallback_emulation: bool,
    /// Run the build checks and print their warnings instead of building
    /// (`--call=check`); exits 1 when there are warnings.
    #[arg(long)]
    check: bool,
    /// What to run: `build` (default), `check`, `outline` or `targets`;
    /// `,format=json` for JSON.
    #[arg(long, value_name = "METHOD", default_value = "build")]
    call: String,
    #[command(flatten)]
    run_flags: run_flags::RunFlags,
    #[command(flatten)]
    inputs: inputs::InputArgs,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct OutputSpec {
    kind: String,
    dest: Option<String>,
    names: Vec<String>,
    push: bool,
    tar: bool,
    compression: Option<String>,
    rewrite_timestamp: bool,
    /// `oci-mediatypes`: `Some(false)` asks for Docker media types.
    oci_mediatypes: Option<bool>,
}

/// A boolean as Go's `strconv.ParseBool` reads it (BuildKit's build args).
fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn parse_bool(k: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid value {v:?} for {k}: want true or false"),
    }
}

/// `--pull`: a boolean as buildx's, or a BuildKit image resolve mode.
fn parse_pull(s: &str) -> Result<ResolveMode, String> {
    match s {
        "true" | "1" | "always" => Ok(ResolveMode::Pull),
        "false" | "0" | "missing" => Ok(ResolveMode::PreferLocal),
        other => other.parse(),
    }
}

/// Parses buildx's `--output` syntax.
fn parse_output(s: &str) -> Result<OutputSpec> {
    if !s.contains('=') {
        // buildx: `-` is a tar on stdout, anything else a local directory.
        return Ok(if s == "-" {
            OutputSpec { kind: "tar".into(), dest: Some("-".into()), tar: true, ..Default::default() }
        } else {
            OutputSpec { kind: "local".into(), dest: Some(s.into()), tar: true, ..Default::default() }
        });
    }
    let mut o = OutputSpec { tar: true, ..Default::default() };
    for field in s.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k.trim() {
            "type" => o.kind = v.to_string(),
            "dest" => o.dest = Some(v.to_string()),
            "name" | "names" => o.names.extend(v.split(';').filter(|n| !n.is_empty()).map(String::from)),
            "push" => o.push = parse_bool(k, v)?,
            "tar" => o.tar = parse_bool(k, v)?,
            "compression" => o.compression = Some(v.to_string()),
            "rewrite-timestamp" => o.rewrite_timestamp = parse_bool(k, v)?,
            // With one platform polyarch always writes OCI media types.
            "oci-mediatypes" => o.oci_mediatypes = Some(parse_bool(k, v)?),
            "compression-level" | "force-compression" | "unpack" | "store" => {}
            other => bail!("unknown output attribute {other:?} in {s:?}"),
        }
    }
    if o.kind.is_empty() {
        bail!("--output {s:?}: type is required");
    }
    if o.kind == "registry" {
        o.kind = "image".into();
        o.push = true;
    }
    match o.kind.as_str() {
        "image" => {}
        // Without dest, buildx loads into the Docker engine.
        "docker" => {}
        "oci" | "tar" | "local" => {
            if o.dest.is_none() {
                bail!("--output type={}: dest is required", o.kind);
            }
        }
        other => bail!("unknown output type {other:?} (want image, registry, oci, docker, tar or local)"),
    }
    Ok(o)
}

pub(crate) fn parse_kv(items: &[String], what: &str, from_env: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env => {
                if let Ok(v) = std::env::var(i) {
                    out.insert(i.clone(), v);
                }
            }
            None => bail!("invalid {what} {i:?}: want KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `--secret` values by id.
fn parse_secrets(items: &[String]) -> Result<BTreeMap<String, polyarch_builder::process::SecretSource>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (id, src) =
            polyarch_builder::process::SecretSource::parse(item).map_err(anyhow::Error::msg).context("--secret")?;
        out.insert(id, src);
    }
    Ok(out)
}

/// Renders build events on stderr. In tty mode the view is live: finished
/// steps are lines, and below them a bar per running step and per blob a
/// base image pull or a push is moving (fed by the registry client's byte
/// counts), as BuildKit's tty view.
struct Progress {
    mode: String,
    start: Instant,
    /// Build check warnings, printed when the build finishes.
    warnings: Mutex<Option<polyarch_dockerfile::lint::Report>>,
    /// With `-D/--debug`: the Dockerfile's name and text, to expand them.
    expand: Mutex<Option<(String, String)>>,
    cached: Mutex<std::collections::HashSet<usize>>,
    names: Mutex<BTreeMap<usize, String>>,
    /// The highest step number shown, so that the export step comes next.
    last: std::sync::atomic::AtomicUsize,
    /// tty mode: the bars; lines are printed above them.
    live: Option<indicatif::MultiProgress>,
    /// tty mode: whether bars tick on their own (a real terminal).
    ticking: bool,
    /// tty mode: one bar per running step and per blob on the move.
    bars: Mutex<std::collections::HashMap<BarKey, indicatif::ProgressBar>>,
}

/// What a live bar shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BarKey {
    /// A running step.
    Step(usize),
    /// A blob being pulled or pushed.
    Blob(polyarch_oci::Digest),
}

/// ANSI output to stderr whatever it is, for `--progress tty` into a pipe
/// or a file (a terminal gets indicatif's own target).
#[derive(Debug)]
struct AnsiStderr;

impl AnsiStderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().write_all(s.as_bytes())
    }
}

impl indicatif::TermLike for AnsiStderr {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(120)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}A"))?;
        }
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}B"))?;
        }
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}C"))?;
        }
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}D"))?;
        }
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl Progress {
    fn new(mode: &str) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let mode = match mode {
            "auto" if terminal => "tty",
            "auto" => "plain",
            m => m,
        };
        let live = (mode == "tty")
            .then(|| {
                // `--progress tty` asked for by name draws even into a pipe.
                let target = if terminal {
                    indicatif::ProgressDrawTarget::stderr_with_hz(10)
                } else {
                    indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(AnsiStderr), 10)
                };
                indicatif::MultiProgress::with_draw_target(target)
            })
            .filter(|m| !m.is_hidden());
        Progress {
            mode: mode.to_string(),
            start: Instant::now(),
            warnings: Mutex::new(None),
            expand: Mutex::new(None),
            cached: Default::default(),
            names: Default::default(),
            last: Default::default(),
            live,
            ticking: terminal,
            bars: Default::default(),
        }
    }

    /// Library steps are numbered from 1; the build definition and the
    /// build context are #1 and #2 here, so they shift by two.
    fn lib_event(&self, e: Event) {
        let e = match e {
            Event::Started { id, name } => Event::Started { id: id + 2, name },
            Event::Cached { id } => Event::Cached { id: id + 2 },
            Event::Done { id, elapsed } => Event::Done { id: id + 2, elapsed },
            Event::Failed { id, message } => Event::Failed { id: id + 2, message },
            Event::Log { id, elapsed, line } => Event::Log { id: id + 2, elapsed, line },
            other => other,
        };
        self.event(&e);
    }

    /// BuildKit's `transferring context: N B` line, in plain mode.
    fn context_size(&self, id: usize, ctx: &MemFs) {
        if self.mode != "plain" {
            return;
        }
        let bytes: u64 = ctx
            .iter()
            .map(|(p, n)| p.len() as u64 + if let polyarch_builder::fs::Kind::File(d) = &n.kind { d.len() } else { 0 })
            .sum();
        eprintln!("#{id} transferring context: {bytes}B done");
    }

    fn next_id(&self) -> usize {
        self.last.load(std::sync::atomic::Ordering::SeqCst) + 1
    }

    fn event(&self, e: &Event) {
        if let Event::Started { id, .. } = e {
            self.last.fetch_max(*id, std::sync::atomic::Ordering::SeqCst);
        }
        if self.mode == "tty" {
            // Not under the stderr lock: bars draw from other threads.
            self.tty_event(e);
            return;
        }
        let mut err = std::io::stderr().lock();
        match self.mode.as_str() {
            "quiet" => {}
            "rawjson" => {
                let v = match e {
                    Event::Started { id, name } => serde_json::json!({"vertex": id, "name": name, "started": true}),
                    Event::Cached { id } => serde_json::json!({"vertex": id, "cached": true}),
                    Event::Done { id, elapsed } => {
                        serde_json::json!({"vertex": id, "completed": true, "duration": elapsed.as_secs_f64()})
                    }
                    Event::Failed { id, message } => serde_json::json!({"vertex": id, "error": message}),
                    Event::Log { id, elapsed, line } => {
                        serde_json::json!({"vertex": id, "log": line, "elapsed": elapsed.as_secs_f64()})
                    }
                    _ => return,
                };
                let _ = writeln!(err, "{v}");
            }
            _ => match e {
                Event::Started { id, name } => {
                    let _ = writeln!(err, "#{id} {name}");
                }
                Event::Cached { id } => {
                    self.cached.lock().map(|mut c| c.insert(*id)).ok();
                    let _ = writeln!(err, "#{id} CACHED");
                }
                Event::Done { id, elapsed } => {
                    if !self.cached.lock().is_ok_and(|c| c.contains(id)) {
                        let _ = writeln!(err, "#{id} DONE {:.1}s", elapsed.as_secs_f64());
                    }
                    let _ = writeln!(err);
                }
                Event::Failed { id, message } => {
                    let _ = writeln!(err, "#{id} ERROR: {message}");
                }
                Event::Log { id, elapsed, line } => {
                    let _ = writeln!(err, "#{id} {:.3} {line}", elapsed.as_secs_f64());
                }
                _ => {}
            },
        }
    }

    fn tty_event(&self, e: &Event) {
        let name = |id: &usize| self.names.lock().ok().and_then(|n| n.get(id).cloned()).unwrap_or_default();
        match e {
            Event::Started { id, name } => {
                self.names.lock().map(|mut n| n.insert(*id, name.clone())).ok();
                self.step_bar(*id, name);
            }
            Event::Cached { id } => {
                self.cached.lock().map(|mut c| c.insert(*id)).ok();
            }
            Event::Done { id, elapsed } => {
                self.end_bar(&BarKey::Step(*id));
                let cached = self.cached.lock().is_ok_and(|c| c.contains(id));
                let label = if cached { format!("CACHED {}", name(id)) } else { name(id) };
                self.line(&format!(" => {label:<70} {:.1}s", elapsed.as_secs_f64()));
            }
            Event::Failed { id, message } => {
                self.end_bar(&BarKey::Step(*id));
                self.line(&format!(" => ERROR {}\n{message}", name(id)));
            }
            Event::Log { id, elapsed, line } => {
                self.line(&format!(" #{id} {:.3} {line}", elapsed.as_secs_f64()));
            }
            _ => {}
        }
    }

    /// A line: above the bars in tty mode.
    fn line(&self, s: &str) {
        match &self.live {
            Some(m) => {
                let _ = m.println(s);
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{s}");
            }
        }
    }

    fn add_bar(&self, bar: indicatif::ProgressBar, template: &str) -> Option<indicatif::ProgressBar> {
        let m = self.live.as_ref()?;
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = m.add(bar.with_style(style));
        if self.ticking {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Some(bar)
    }

    /// The bar of a running step, replaced by its line when it ends.
    fn step_bar(&self, id: usize, name: &str) {
        let Some(bar) = self.add_bar(indicatif::ProgressBar::new_spinner(), " => {msg} {elapsed}") else { return };
        bar.set_message(name.to_string());
        self.bars.lock().map(|mut b| b.insert(BarKey::Step(id), bar)).ok();
    }

    /// Takes a bar off the screen.
    fn end_bar(&self, key: &BarKey) {
        let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(key)) else { return };
        // A last forced draw shows the final state once; a line follows.
        bar.finish();
        if let Some(m) = &self.live {
            m.remove(&bar);
        }
    }

    /// Byte counts from the registry client: a bar per blob while it
    /// moves, then a line (`=> => sha256:0123456789ab 2.2MB / 2.2MB done`).
    fn registry(&self, e: &polyarch_registry::Event) {
        if self.live.is_none() {
            return;
        }
        let short = crate::progress::short;
        match e {
            polyarch_registry::Event::Bytes { digest, direction, transferred, total } => {
                let verb = match direction {
                    polyarch_registry::Direction::Download => "pulling",
                    polyarch_registry::Direction::Upload => "pushing",
                };
                let bar = self.blob_bar(digest, *total, verb);
                if let Some(b) = &bar {
                    b.set_position(*transferred);
                }
                if transferred >= total {
                    self.end_bar(&BarKey::Blob(digest.clone()));
                    let size = super::images::human_size(*total);
                    self.line(&format!(" => => {} {size} / {size} done", short(digest)));
                }
            }
            polyarch_registry::Event::Skipped { digest } => {
                self.end_bar(&BarKey::Blob(digest.clone()));
                self.line(&format!(" => => {} already exists", short(digest)));
            }
            polyarch_registry::Event::Mounted { digest, from } => {
                self.end_bar(&BarKey::Blob(digest.clone()));
                self.line(&format!(" => => {} mounted from {from}", short(digest)));
            }
            _ => {}
        }
    }

    fn blob_bar(&self, digest: &polyarch_oci::Digest, total: u64, verb: &str) -> Option<indicatif::ProgressBar> {
        let key = BarKey::Blob(digest.clone());
        let mut bars = self.bars.lock().ok()?;
        if let Some(b) = bars.get(&key) {
            return Some(b.clone());
        }
        let template = " => => {prefix} {bar:30} {decimal_bytes} / {decimal_total_bytes} {msg}";
        let bar = self.add_bar(indicatif::ProgressBar::new(total), template)?;
        bar.set_prefix(crate::progress::short(digest));
        bar.set_message(verb.to_string());
        bars.insert(key, bar.clone());
        Some(bar)
    }

    fn finish(&self, ok: bool) {
        if self.mode == "tty" {
            let keys: Vec<BarKey> = self.bars.lock().map(|b| b.keys().cloned().collect()).unwrap_or_default();
            for k in keys {
                self.end_bar(&k);
            }
            let state = if ok { "FINISHED" } else { "FAILED" };
            self.line(&format!("[+] Building {:.1}s {state}", self.start.elapsed().as_secs_f64()));
        }
        if let Some(rep) = self.warnings.lock().ok().and_then(|mut w| w.take()) {
            let expand = self.expand.lock().ok().and_then(|mut e| e.take());
            check::print_after(&rep, &self.mode, expand.as_ref());
        }
    }

    /// Warnings to print once the build finishes.
    fn set_warnings(&self, report: polyarch_dockerfile::lint::Report) {
        if let Ok(mut w) = self.warnings.lock() {
            *w = Some(report);
        }
    }
}

/// The registry client of a build; its byte counts feed `progress`.
fn build_client(global: &GlobalArgs, insecure: bool, progress: &Arc<Progress>) -> Result<polyarch_registry::Client> {
    let builder = context::client_builder(context::registry_config(global)?, insecure)?;
    let p = progress.clone();
    Ok(builder.with_progress(move |e| p.registry(&e)).build()?)
}

pub fn run(global: &GlobalArgs, mut a: BuildArgs) -> Result<u8> {
    let method = check::method(&a)?;
    let remote_builder = polyarch_remote::builder::for_build(a.builder.as_deref())?;
    if a.quiet {
        if a.progress != "auto" && a.progress != "quiet" {
            bail!("progress={} and quiet cannot be used together", a.progress);
        }
        a.progress = "quiet".into();
    }
    let mut outputs = a.outputs.iter().map(|o| parse_output(o)).collect::<Result<Vec<_>>>()?;
    if a.push {
        match outputs.iter_mut().find(|o| o.kind == "image") {
            Some(o) => o.push = true,
            None => outputs.push(OutputSpec { kind: "image".into(), push: true, tar: true, ..Default::default() }),
        }
    }
    if a.load && !outputs.iter().any(|o| o.kind == "docker" && o.dest.is_none()) {
        outputs.push(OutputSpec { kind: "docker".into(), tar: true, ..Default::default() });
    }
    if outputs.is_empty() {
        outputs.push(OutputSpec { kind: "image".into(), tar: true, ..Default::default() });
    }
    let compression = match outputs.iter().find_map(|o| o.compression.clone()).as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => bail!("unsupported compression {other:?} (want gzip or zstd)"),
    };
    let rewrite_timestamp = outputs.iter().any(|o| o.rewrite_timestamp);
    if let Some(iid) = &a.iidfile {
        if a.outputs.iter().any(|o| o.starts_with("type=local") || o.starts_with("type=tar")) {
            bail!("local and tar exporters are incompatible with image ID file");
        }
        // As buildx: no stale ID is left if this build fails.
        match std::fs::remove_file(iid) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing image ID file {}", iid.display()))
            }
            _ => {}
        }
    }
    let tags: Vec<String> = a.tags.iter().map(|t| parse_tagged(t).map(|r| r.to_string())).collect::<Result<_>>()?;
    let platforms = polyarch_builder::multi::parse_platforms(&a.platforms)?;
    let platform = match platforms.as_slice() {
        [] => Platform::host(),
        [p, ..] => p.clone(),
    };
    let mut build_args = parse_kv(&a.build_args, "--build-arg", true)?;
    if !build_args.contains_key("SOURCE_DATE_EPOCH") {
        if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
            build_args.insert("SOURCE_DATE_EPOCH".into(), v);
        }
    }
    let source_date_epoch = match build_args.get("SOURCE_DATE_EPOCH") {
        Some(v) if !v.is_empty() => Some(v.parse::<i64>().with_context(|| format!("invalid SOURCE_DATE_EPOCH {v:?}"))?),
        _ => None,
    };
    let labels = parse_kv(&a.labels, "--label", false)?;

    for w in a.inputs.check()? {
        eprintln!("WARNING: {w}");
    }
    let progress = Arc::new(Progress::new(&a.progress));
    let t0 = Instant::now();
    let rt = context::runtime()?;
    let loaded = inputs::Load {
        args: &a,
        rt: &rt,
        tmp: &context::data_root(global).join("run"),
        keep_git_dir: build_args.get("BUILDKIT_CONTEXT_KEEP_GIT_DIR").is_some_and(|v| truthy(v)),
        debug: global.debug,
    }
    .load()?;
    if remote_builder.is_some() && !loaded.named.is_empty() {
        bail!(
            "--build-context is not supported with builder nodes yet: build with the local builder (--builder default)"
        );
    }
    let inputs::Loaded { dockerfile, name, context: ctx, named, _work } = loaded;
    // The agents of `--ssh` serve until the build ends.
    let (run_settings, _ssh_agents) = a.run_flags.settings(&a.network, &context::data_root(global).join("run"))?;
    global
        .debug(|| format!("Dockerfile {name} ({} bytes), context of {} entries", dockerfile.len(), ctx.iter().count()));
    match method {
        check::Method::Targets => return check::targets(&dockerfile, &name),
        check::Method::Outline => {
            let call = a.inputs.print.as_deref().unwrap_or(&a.call);
            return outline::print(&dockerfile, &name, call, a.target.as_deref(), &build_args);
        }
        _ => {}
    }
    let p = progress.clone();
    p.event(&Event::Started { id: 1, name: format!("[internal] load build definition from {name}") });
    p.event(&Event::Done { id: 1, elapsed: t0.elapsed() });
    p.event(&Event::Started { id: 2, name: "[internal] load build context".into() });
    p.context_size(2, &ctx);
    p.event(&Event::Done { id: 2, elapsed: t0.elapsed() });

    let opts = BuildOptions {
        dockerfile,
        dockerfile_name: name,
        context: Arc::new(ctx),
        target: a.target.clone(),
        build_args,
        labels,
        platform,
        no_cache: a.no_cache,
        compression,
        source_date_epoch,
        rewrite_timestamp,
        network: a.network.parse().map_err(anyhow::Error::msg).context("--network")?,
        secrets: parse_secrets(&a.secrets)?,
        runtime: a.runtime.clone(),
        snapshotter: a.snapshotter.parse().map_err(anyhow::Error::msg).context("--snapshotter")?,
        no_cache_filter: a.no_cache_filter.iter().map(|s| s.to_lowercase()).collect(),
        resolve_mode: a.pull,
        run: run_settings,
        named_contexts: named,
    };
    let store = super::images::open_store_with(global, opts.runtime.as_deref())?;
    let client = build_client(global, a.insecure, &progress)?;
    let sink = progress.clone();
    let builder =
        Builder::new(store.clone()).with_client(client.clone()).with_events(Arc::new(move |e| sink.lib_event(e)));
    if method == check::Method::Check {
        return check::run(&rt, &builder, &opts, &a);
    }
    // A build on nodes checks with the images stored here only.
    let checker = if remote_builder.is_some() { Builder::new(store.clone()) } else { builder.clone() };
    let report = check::report(&rt, &checker, &opts, &a, false)?;
    if let Err(e) = check::before_build(&report, &a.progress) {
        progress.finish(false);
        return Err(e);
    }
    check::print_inline(&progress, &report);
    if global.debug {
        if let Ok(mut e) = progress.expand.lock() {
            *e = Some((opts.dockerfile_name.clone(), String::from_utf8_lossy(&opts.dockerfile).into_owned()));
        }
    }
    progress.set_warnings(report);
    let exec_dir = store.root().join("exec");
    let cancel = watch_signals(&rt, exec_dir, opts.runtime.clone());
    let targets = if platforms.is_empty() { vec![opts.platform.clone()] } else { platforms.clone() };
    if let Some(b) = &remote_builder {
        if a.run_flags.any() {
            bail!(
                "--add-host, --ulimit, --shm-size, --cgroup-parent, --allow and --ssh apply to local builds only: \
                 builder {:?} builds on nodes, which do not take them yet",
                b.name
            );
        }
        let run = nodes::Nodes { global, rt: &rt, store: &store, progress: &progress, outputs: &outputs, tags: &tags };
        let built = run.build(b, &opts, &targets, &a, &cancel);
        return if cancel.is_cancelled() { Ok(130) } else { built };
    }
    if let Err(e) = polyarch_builder::multi::check_emulation(
        &opts,
        &targets,
        &Platform::host(),
        &polyarch_builder::multi::probe_host,
    ) {
        progress.finish(false);
        return Err(e.into());
    }
    if platforms.len() > 1 {
        let jobs = a.jobs.unwrap_or_else(polyarch_builder::multi::default_jobs);
        let run = multi::Multi {
            rt: &rt,
            client: &client,
            store: &store,
            progress: &progress,
            outputs: &outputs,
            tags: &tags,
            push: None,
            tag: true,
        };
        let built = run.build(&opts, &platforms, jobs, &a);
        return if cancel.is_cancelled() { Ok(130) } else { built };
    }
    let result = rt.block_on(async {
        tokio::select! {
            r = builder.build(&opts) => Some(r),
            _ = interrupted(&cancel) => None,
        }
    });
    let result = match result {
        Some(Ok(r)) if !cancel.is_cancelled() => r,
        Some(Err(e)) if !cancel.is_cancelled() => {
            progress.finish(false);
            return Err(e.into());
        }
        _ => {
            progress.finish(false);
            return Ok(130);
        }
    };
    export_single(&rt, &client, &store, &progress, &outputs, &tags, &result, &a, None)
}

/// How `push=true` pushes a one-platform image built on a node (which
/// pushes its own blobs); the local store then lacks its layers.
type PushImage<'a> = dyn Fn(&BuildResult, &[String]) -> Result<()> + 'a;

/// Exports a one-platform result to every output and writes the reports.
#[allow(clippy::too_many_arguments)]
fn export_single(
    rt: &tokio::runtime::Runtime,
    client: &polyarch_registry::Client,
    store: &Store,
    progress: &Progress,
    outputs: &[OutputSpec],
    tags: &[String],
    result: &BuildResult,
    a: &BuildArgs,
    push: Option<&PushImage<'_>>,
) -> Result<u8> {
    let t = Instant::now();
    let export_id = progress.next_id();
    progress.event(&Event::Started { id: export_id, name: "exporting to image".into() });
    let mut names_out: Vec<String> = Vec::new();
    for o in outputs {
        export_one(rt, client, store, result, o, tags, &mut names_out, push)?;
    }
    progress.event(&Event::Done { id: export_id, elapsed: t.elapsed() });
    progress.finish(true);
    if a.progress != "quiet" {
        eprintln!("executed {} step(s), {} cached", result.executed, result.cached);
    }

    // buildx's image ID: the config digest of a one-platform image.
    let id = result.config.digest.to_string();
    if let Some(path) = &a.iidfile {
        std::fs::write(path, &id).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.metadata_file {
        write_metadata(path, result, &names_out)?;
    }
    if a.progress == "quiet" {
        println!("{id}");
    }
    Ok(0)
}

/// On SIGINT or SIGTERM, cancels the build: this process's RUN containers
/// are killed until it exits, so a step fails and undoes its mounts and
/// directories as the build unwinds.
fn watch_signals(rt: &tokio::runtime::Runtime, exec_dir: PathBuf, runtime: Option<String>) -> Cancel {
    use tokio::signal::unix::{signal, SignalKind};
    let cancel = Cancel::new();
    let _entered = rt.enter();
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return cancel;
    };
    let c = cancel.clone();
    rt.spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        c.cancel();
        spawn_container_killer(exec_dir, runtime);
    });
    cancel
}

/// Kills this process's RUN containers, again and again until it exits,
/// so that running steps fail and undo their mounts as the build unwinds.
pub(crate) fn spawn_container_killer(exec_dir: PathBuf, runtime: Option<String>) {
    std::thread::spawn(move || {
        let Ok(exec) = RuncExecutorBuilder::new(&exec_dir).with_runtime(runtime.as_deref()).build() else {
            return;
        };
        loop {
            let own = std::fs::read_dir(exec.state().runtime_root()).into_iter().flatten().flatten();
            for id in own.filter_map(|e| e.file_name().into_string().ok()) {
                if polyarch_exec::state::owner(&id).is_some_and(|(pid, _)| pid == std::process::id()) {
                    exec.runtime().kill(&id, "KILL");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// Resolves once `cancel` fired.
async fn interrupted(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn export_one(
    rt: &tokio::runtime::Runtime,
    client: &polyarch_registry::Client,
    store: &Store,
    r: &BuildResult,
    o: &OutputSpec,
    tags: &[String],
    names_out: &mut Vec<String>,
    push: Option<&PushImage<'_>>,
) -> Result<()> {
    let names: Vec<String> = if o.names.is_empty() {
        tags.to_vec()
    } else {
        o.names.iter().map(|n| parse_tagged(n).map(|r| r.to_string())).collect::<Result<_>>()?
    };
    let dest = o.dest.as_deref().unwrap_or("");
    match o.kind.as_str() {
        "image" => {
            if push.is_none() || !o.push {
                export::tag(store, r, &names)?;
            }
            if o.push {
                if names.is_empty() {
                    bail!("push needs a name: give -t NAME or --output type=image,name=NAME,push=true");
                }
                match push {
                    Some(push) => push(r, &names)?,
                    None => rt.block_on(export::push(client, store, r, &names))?,
                }
            }
            names_out.extend(names);
        }
        "oci" if !o.tar => export::write_oci_dir(store, r, &names, Path::new(dest))?,
        "oci" => with_dest(dest, |w| export::write_oci_tar(store, r, &names, w).map(|_| ()))?,
        "docker" if o.dest.is_none() => {
            load::single(store, r, &names)?;
            names_out.extend(names.into_iter().filter(|n| !names_out.contains(n)).collect::<Vec<_>>());
        }
        "docker" => with_dest(dest, |w| export::write_docker_tar(store, r, &names, w).map(|_| ()))?,
        "tar" => with_dest(dest, |w| export::write_rootfs_tar(store, r, w).map(|_| ()))?,
        "local" => export::write_local(store, r, Path::new(dest))?,
        other => bail!("unknown output type {other:?}"),
    }
    Ok(())
}

/// Runs `f` on the destination file, or stdout for `-`.
fn with_dest(dest: &str, f: impl FnOnce(&mut dyn Write) -> polyarch_builder::Result<()>) -> Result<()> {
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        f(&mut out)?;
        out.flush()?;
        return Ok(());
    }
    let path = Path::new(dest);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {dest}"))?);
    f(&mut file)?;
    file.flush()?;
    Ok(())
}

fn write_metadata(path: &Path, r: &BuildResult, names: &[String]) -> Result<()> {
    let mut desc = r.manifest.clone();
    desc.platform = Some(r.platform.clone());
    let mut m = serde_json::Map::new();
    m.insert("containerimage.config.digest".into(), r.config.digest.to_string().into());
    m.insert("containerimage.descriptor".into(), serde_json::to_value(&desc)?);
    m.insert("containerimage.digest".into(), r.manifest.digest.to_string().into());
    if !names.is_empty() {
        m.insert("image.name".into(), names.join(",").into());
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(m))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_takes_booleans_and_buildkit_modes() {
        for v in ["true", "always", "pull"] {
            assert_eq!(parse_pull(v), Ok(ResolveMode::Pull), "{v}");
        }
        for v in ["false", "missing", "default", "local"] {
            assert_eq!(parse_pull(v), Ok(ResolveMode::PreferLocal), "{v}");
        }
        assert!(parse_pull("sometimes").unwrap_err().contains("sometimes"));
    }

    #[test]
    fn output_specs() {
        let o = parse_output("type=oci,dest=out.tar,compression=zstd").unwrap();
        assert_eq!(
            (o.kind.as_str(), o.dest.as_deref(), o.compression.as_deref()),
            ("oci", Some("out.tar"), Some("zstd"))
        );
        let o = parse_output("type=registry,name=r/x:1").unwrap();
        assert_eq!((o.kind.as_str(), o.push, o.names.clone()), ("image", true, vec!["r/x:1".to_string()]));
        assert_eq!(parse_output("outdir").unwrap().kind, "local");
        assert_eq!(parse_output("-").unwrap().kind, "tar");
        assert!(!parse_output("type=oci,dest=d,tar=false").unwrap().tar);
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("type=docker").unwrap().dest.is_none());
        assert!(parse_output("type=nope,dest=x").is_err());
        assert!(parse_output("type=local,dest=x,bogus=1").is_err());
    }
}
