//! `polyarch build`: a Dockerfile build for one platform or several (one
//! index, see [`multi`]), with the flags of
//! `docker buildx build` (`-f`, `--target`, `--build-arg`, `--label`, `-t`,
//! `--no-cache`, `--pull`, `--platform`, `--progress`, `--metadata-file`,
//! `--iidfile`, `-o/--output`, `--push`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use polyarch_builder::base::ResolveMode;
use polyarch_builder::export::Built;
use polyarch_builder::output::{Output, OutputKind};
use polyarch_builder::{BuildOptions, BuildResult, Builder, Vertex};
use polyarch_exec::{Cancel, RuncExecutorBuilder};
use polyarch_oci::Platform;

use super::context::{self, parse_tagged};
use super::GlobalArgs;
pub(crate) use crate::progress::build::Progress;

mod annotation;
mod cache_flags;
mod check;
mod export;
pub mod inputs;
mod load;
mod multi;
mod nodes;
mod outline;
pub(crate) mod run_flags;

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
    /// How many native steps (RUN, COPY) run at once, over all platforms;
    /// RUN steps under emulation have as many slots of their own, pulls
    /// twice as many (default: from cores and memory).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Progress output: auto, tty, plain, quiet, rawjson (BuildKit's
    /// SolveStatus stream) or none.
    #[arg(long, default_value = "auto", value_parser = crate::progress::build::MODES)]
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
    #[command(flatten)]
    annotation: annotation::AnnotationArgs,
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
    cache: cache_flags::CacheFlags,
    #[command(flatten)]
    inputs: inputs::InputArgs,
}

/// A boolean as Go's `strconv.ParseBool` reads it (BuildKit's build args).
fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// `--pull`: a boolean as buildx's, or a BuildKit image resolve mode.
fn parse_pull(s: &str) -> Result<ResolveMode, String> {
    match s {
        "true" | "1" | "always" => Ok(ResolveMode::Pull),
        "false" | "0" | "missing" => Ok(ResolveMode::PreferLocal),
        other => other.parse(),
    }
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
        src.check(&id).map_err(anyhow::Error::msg).with_context(|| format!("--secret {item}"))?;
        out.insert(id, src);
    }
    Ok(out)
}

/// The registry client of a build (the builder's `--config` over the
/// user's); its byte counts feed `progress`.
fn build_client(
    global: &GlobalArgs,
    chosen: Option<&polyarch_remote::builder::Builder>,
    insecure: bool,
    progress: &Arc<Progress>,
) -> Result<polyarch_registry::Client> {
    let mut config = context::registry_config(global)?;
    if let Some(b) = chosen {
        config = context::with_builder_config(config, &b.name, b.config.as_deref())?;
    }
    let builder = context::client_builder(config, insecure)?;
    let p = progress.clone();
    Ok(builder.with_progress(move |e| p.registry(&e)).build()?)
}

pub fn run(global: &GlobalArgs, mut a: BuildArgs) -> Result<u8> {
    let method = check::method(&a)?;
    let chosen = polyarch_remote::builder::chosen(a.builder.as_deref())?;
    let remote_builder = chosen.clone().filter(|b| !b.remote_nodes().is_empty());
    if a.quiet {
        if a.progress != "auto" && a.progress != "quiet" {
            bail!("progress={} and quiet cannot be used together", a.progress);
        }
        a.progress = "quiet".into();
    }
    a.progress = crate::progress::build::from_env(&a.progress, std::env::var("BUILDKIT_PROGRESS").ok().as_deref())?;
    let mut outputs = a.outputs.iter().map(|o| Output::parse(o)).collect::<Result<Vec<_>, _>>()?;
    if a.push {
        match outputs.iter_mut().find(|o| o.kind == OutputKind::Image) {
            Some(o) => o.push = true,
            None => outputs.push(Output { push: true, ..Output::of(OutputKind::Image) }),
        }
    }
    if a.load && !outputs.iter().any(|o| o.kind == OutputKind::Docker && o.dest.is_none()) {
        outputs.push(Output::of(OutputKind::Docker));
    }
    if outputs.is_empty() {
        outputs.push(Output::of(OutputKind::Image));
    }
    let encoding = polyarch_builder::output::encoding_of(&outputs);
    let mut annotations = a.annotation.parse()?;
    annotations.extend(outputs.iter().flat_map(|o| o.annotations.iter().cloned()));
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
    polyarch_frontend::meta::check_sandbox_hostname(&build_args).map_err(anyhow::Error::msg)?;
    // BUILDKIT_INLINE_CACHE: BuildKit's built-in for `--cache-to type=inline`.
    let cache = a.cache.parse(build_args.get("BUILDKIT_INLINE_CACHE").is_some_and(|v| truthy(v)))?;
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
    // The agents of `--ssh` serve until the build ends (and fetch Git
    // contexts over ssh).
    let (run_settings, _ssh_agents) = a.run_flags.settings(&a.network, &context::data_root(global).join("run"))?;
    let loaded = inputs::Load {
        args: &a,
        rt: &rt,
        tmp: &context::data_root(global).join("run"),
        keep_git_dir: build_args.get("BUILDKIT_CONTEXT_KEEP_GIT_DIR").is_some_and(|v| truthy(v)),
        ssh_agent: run_settings.ssh.get("default").map(PathBuf::as_path),
        debug: global.debug,
    }
    .load()?;
    let inputs::Loaded { dockerfile, name, context: ctx, named, excludes, _work } = loaded;
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
    let opts = BuildOptions {
        dockerfile,
        dockerfile_name: name,
        context: Arc::new(ctx),
        target: a.target.clone(),
        build_args,
        labels,
        platform,
        no_cache: a.no_cache,
        compression: encoding.compression,
        compression_level: encoding.level,
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
    let targets = if platforms.is_empty() { vec![opts.platform.clone()] } else { platforms.clone() };
    // A local build's steps take the digests of its plan's vertices (as
    // `debug plan` shows them): the contexts' now, the others once the
    // base images are resolved. Only rawjson shows step digests.
    let plan_opts = super::debug_plan::build_options(&opts, &targets, &excludes);
    let planned = remote_builder.is_none() && progress.shows_digests();
    if planned {
        if let Ok(contexts) = polyarch_frontend::context_vertices(&plan_opts) {
            progress.add_plan(&contexts);
        }
    }
    let p = progress.clone();
    let definition = p.start(Vertex::internal(format!("load build definition from {}", opts.dockerfile_name)));
    p.set_definition(&definition);
    p.done(definition, t0.elapsed());
    let context_step = p.start(Vertex::internal("load build context"));
    p.context_size(&context_step, &opts.context);
    p.done(context_step, t0.elapsed());
    // Named contexts of files, as BuildKit's `[context NAME] load from client`.
    for (context, files) in opts.named_contexts.iter().filter_map(|(n, c)| match c {
        polyarch_builder::named::NamedContext::Files(fs) => Some((n, fs)),
        _ => None,
    }) {
        let step = p.start(Vertex::context(context, "load from client"));
        p.context_size(&step, files);
        p.done(step, t0.elapsed());
    }
    let store = super::images::open_store_with(global, opts.runtime.as_deref())?;
    let client = build_client(global, chosen.as_ref(), a.insecure, &progress)?;
    let sink = progress.clone();
    // `--jobs` limits a one-platform build's steps as it does a multi-platform build's.
    let slots = polyarch_builder::slots::Slots::new(a.jobs.unwrap_or_else(polyarch_builder::multi::default_jobs));
    let builder = Builder::new(store.clone())
        .with_client(client.clone())
        .with_events(Arc::new(move |e| sink.lib_event(e)))
        .with_slots(slots);
    if method == check::Method::Check {
        return check::run(&rt, &builder, &opts, &a);
    }
    // A platform whose RUN steps cannot execute here stops a local build
    // before anything reaches a registry (the checks below resolve base
    // images); another error of the check (a Dockerfile that does not
    // parse) is told after the checks, as before.
    let emulation = match remote_builder {
        Some(_) => Ok(()),
        None => polyarch_builder::multi::check_emulation(
            &opts,
            &targets,
            &Platform::host(),
            &polyarch_builder::multi::probe_host,
        ),
    };
    if let Err(e @ polyarch_builder::Error::Emulation { .. }) = emulation {
        progress.finish(false);
        return Err(e.into());
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
    if let Ok(mut s) = progress.source.lock() {
        *s = Some((opts.dockerfile_name.clone(), String::from_utf8_lossy(&opts.dockerfile).into_owned()));
    }
    progress.set_warnings(report);
    let exec_dir = store.root().join("exec");
    let cancel = watch_signals(&rt, exec_dir, opts.runtime.clone());
    // BUILDKIT_MULTI_PLATFORM: an index (and per-platform local and tar
    // outputs) for one platform too, as BuildKit's `multi-platform` option.
    let multi_platform = platforms.len() > 1 || polyarch_frontend::meta::multi_platform_requested(&opts.build_args);
    if let Some(b) = &remote_builder {
        let run = nodes::Nodes {
            global,
            rt: &rt,
            store: &store,
            progress: &progress,
            outputs: &outputs,
            tags: &tags,
            annotations: &annotations,
            cache: cache.as_ref(),
            multi_platform,
        };
        let built = run.build(b, &opts, &targets, &a, &cancel);
        return if cancel.is_cancelled() { Ok(130) } else { built };
    }
    if let Err(e) = emulation {
        progress.finish(false);
        return Err(e.into());
    }
    if planned {
        if let Some(plan) = super::debug_plan::build_plan(&rt, &opts, &plan_opts, &store, &client) {
            progress.add_plan(&plan.graph);
        }
    }
    if let Some(c) = &cache {
        c.import(&rt, &client, &progress);
    }
    if multi_platform {
        let jobs = a.jobs.unwrap_or_else(polyarch_builder::multi::default_jobs);
        let run = multi::Multi {
            rt: &rt,
            client: &client,
            store: &store,
            progress: &progress,
            outputs: &outputs,
            tags: &tags,
            annotations: &annotations,
            push: None,
            tag: true,
            cache: cache.as_ref(),
        };
        let built = run.build(&opts, &targets, jobs, &a);
        return if cancel.is_cancelled() { Ok(130) } else { built };
    }
    let builder = match &cache {
        Some(c) => builder.with_cache_io(c.io.clone()),
        None => builder,
    };
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
            if let Some(c) = &cache {
                c.print_warnings();
            }
            return Err(e.into());
        }
        _ => {
            progress.finish(false);
            return Ok(130);
        }
    };
    let exporter = export::Exporter {
        rt: &rt,
        client: &client,
        store: &store,
        progress: &progress,
        tags: &tags,
        annotations: &annotations,
        push: None,
        tag: true,
    };
    export_single(&exporter, &outputs, &result, &a, cache.as_ref())
}

/// Exports a one-platform result to every output and writes the reports.
fn export_single(
    exporter: &export::Exporter<'_>,
    outputs: &[Output],
    result: &BuildResult,
    a: &BuildArgs,
    cache: Option<&cache_flags::Traffic>,
) -> Result<u8> {
    let progress = exporter.progress;
    let annotations = exporter.annotations;
    let docker_types = outputs.iter().any(|o| o.oci_mediatypes == Some(false));
    if let Err(e) = polyarch_builder::export::check_annotations(annotations, false, docker_types) {
        progress.finish(false);
        return Err(e.into());
    }
    let result = export::compressed(exporter.store, outputs, result)?;
    let result = polyarch_builder::export::annotate(exporter.store, &result, annotations)?;
    let result =
        if docker_types { polyarch_builder::export::with_docker_types(exporter.store, &result)? } else { result };
    let t = Instant::now();
    let exporting = progress.start_export(export::step_name(outputs));
    let names_out = match exporter.export(&Built::Image(Box::new(result.clone())), outputs) {
        Ok(n) => n,
        Err(e) => {
            progress.failed(exporting, crate::report::Chain(&e).to_string());
            progress.finish(false);
            return Err(e);
        }
    };
    progress.done_export(exporting, t.elapsed());
    if let Some(c) = cache {
        let compression = polyarch_builder::output::encoding_of(outputs).compression;
        if let Err(e) = c.export(exporter.rt, exporter.client, exporter.store, progress, compression) {
            progress.finish(false);
            c.print_warnings();
            return Err(e);
        }
    }
    progress.finish(true);
    if let Some(c) = cache {
        c.print_warnings();
    }
    warn_foreign(progress, &[&result]);
    if progress.chatty() {
        eprintln!("executed {} step(s), {} cached", result.executed, result.cached);
    }

    // buildx's image ID: the config digest of a one-platform image.
    let id = result.config.digest.to_string();
    if let Some(path) = &a.iidfile {
        polyarch_store::AtomicFile::write(path, id.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.metadata_file {
        write_metadata(path, &result, &names_out)?;
    }
    if a.progress == "quiet" {
        crate::outln!("{id}")?;
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
    polyarch_store::AtomicFile::write(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// After a build: a warning for each image that holds programs of another
/// architecture than its platform's ([`polyarch_builder::archcheck`]): the
/// image carries the right label but those programs run only under
/// emulation, or not at all on the machines it is meant for.
pub(super) fn warn_foreign(progress: &Progress, images: &[&BuildResult]) {
    if progress.mode == "rawjson" {
        return;
    }
    for r in images.iter().filter(|r| !r.foreign.is_empty()) {
        let p = r.platform.format();
        let n = r.foreign.len();
        let what = if n == 1 { "a program".to_string() } else { format!("{n} programs") };
        let mut text = format!("WARNING: the {p} image holds {what} for another architecture, which {p} machines cannot run without emulation:");
        for f in r.foreign.iter().take(5) {
            let arch = f.arch.platforms().first().map(|a| a.format()).unwrap_or_else(|| f.arch.name().to_string());
            text.push_str(&format!("\n - /{}: {arch}", f.path));
        }
        if n > 5 {
            text.push_str(&format!("\n - and {} more", n - 5));
        }
        eprintln!("{text}");
    }
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
}
