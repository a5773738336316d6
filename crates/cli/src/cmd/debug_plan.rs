//! `polyarch debug plan`: the build graph a Dockerfile becomes for every
//! platform at once (as BuildKit's LLB), as JSON or Graphviz dot. Base
//! images are resolved as builds resolve them: the local store, then the
//! registry, for their manifest and config only (no layer is fetched).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use polyarch_builder::base::{self, ResolveMode};
use polyarch_builder::named::Value;
use polyarch_builder::BuildOptions;
use polyarch_frontend::{BoxError, Layout, NamedContext, Network, Options, ResolvedImage, Resolver};
use polyarch_oci::{Platform, Reference};
use polyarch_registry::Client;
use polyarch_store::Store;

use super::GlobalArgs;

/// Arguments of `polyarch debug plan`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The build context directory.
    #[arg(value_name = "PATH", default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: PATH/Dockerfile; `-` for standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// The target platforms: a comma list, repeatable (default: this machine's).
    #[arg(long = "platform", value_name = "PLATFORM[,PLATFORM...]")]
    pub platforms: Vec<String>,
    /// A build argument `KEY=VALUE`, or `KEY` to take its value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// A named context `NAME=VALUE` as `build` takes it: a directory, a Git
    /// or HTTP(S) URL (files) or `docker-image://REF` (repeatable).
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// The stage to plan (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// A label `KEY=VALUE` for the image.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Mark every vertex as ignoring the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Mark the steps of this stage as ignoring the cache (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// The network of RUN steps without `--network`: host, none or default (host), as `build --network`.
    #[arg(long, default_value = "default", value_parser = ["default", "host", "none"])]
    pub network: String,
    /// Always ask the registry for base images, as `build --pull`.
    #[arg(long)]
    pub pull: bool,
    /// Allow plain HTTP and unverified TLS for registries.
    #[arg(long)]
    pub insecure: bool,
    /// Output format.
    #[arg(long, default_value = "json", value_parser = ["json", "dot"])]
    pub format: String,
    /// RUN settings as `build` takes them (`--add-host`, `--ulimit`,
    /// `--shm-size`, `--cgroup-parent` shape the exec ops; `--allow` and
    /// `--ssh` are checked, and change no vertex).
    #[command(flatten)]
    pub run: super::build::run_flags::RunFlags,
}

/// Base images from the local store, then the registry, through the
/// builder's resolution of metadata (manifest and config, no layers); the
/// config blob is read back from the store.
struct StoreResolver {
    store: Store,
    client: Client,
    mode: ResolveMode,
}

impl Resolver for StoreResolver {
    async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage, BoxError> {
        let img = base::resolve_metadata(Some(&self.client), &self.store, reference, platform, self.mode).await?;
        let raw = self.store.get_manifest(&img.manifest)?;
        let Some(manifest) = raw.as_image() else {
            return Err(format!("{}: not an image manifest", img.pinned).into());
        };
        let config = self.store.read_bytes(&manifest.config, 8 * 1024 * 1024)?.to_vec();
        Ok(ResolvedImage::new(img.pinned, config).with_top(img.top))
    }

    async fn resolve_layout(&self, layout: &Layout, platform: &Platform) -> Result<ResolvedImage, BoxError> {
        let (_, image) = polyarch_builder::named::read_layout(layout, platform)?;
        let pinned = polyarch_builder::named::layout_reference(&image.descriptor.digest)?;
        Ok(ResolvedImage::new(pinned, image.config_bytes.to_vec()))
    }
}

/// Prints the plan; a Dockerfile the frontend rejects is an error.
pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let (dockerfile, name, df_path) = read_dockerfile(&args)?;
    let platforms = polyarch_builder::multi::parse_platforms(&args.platforms)?;
    let build_args = super::build::parse_kv(&args.build_args, "--build-arg", true)?;
    polyarch_frontend::meta::check_sandbox_hostname(&build_args).map_err(anyhow::Error::msg)?;
    let epoch = build_args.get("SOURCE_DATE_EPOCH").and_then(|v| v.parse::<i64>().ok());
    let mut opts = Options::new(Platform::host().normalize())
        .with_platforms(platforms)
        .with_no_cache(args.no_cache)
        .with_context_excludes(polyarch_builder::context::ignore_patterns(&args.context, df_path.as_deref())?)
        // As `polyarch build`, whose RUN steps use the host's network by default.
        .with_network(if args.network == "none" { Network::None } else { Network::Host })
        .with_source_date_epoch(epoch);
    set_run(&mut opts, &args.run.process_settings(&args.network)?);
    opts.named_contexts = named_contexts(&args.build_contexts)?;
    opts.target = args.target.clone();
    opts.build_args = build_args;
    opts.labels = super::build::parse_kv(&args.labels, "--label", false)?;
    opts.no_cache_filter = args.no_cache_filter.iter().map(|s| s.to_lowercase()).collect();
    let resolver = StoreResolver {
        store: super::images::open_store(global)?,
        client: super::context::client(global, args.insecure)?,
        mode: if args.pull { ResolveMode::Pull } else { ResolveMode::PreferLocal },
    };
    let rt = super::context::runtime()?;
    let plan = rt.block_on(polyarch_frontend::plan(&dockerfile, &name, &opts, &resolver))?;
    let mut out = crate::report::Stdout;
    match args.format.as_str() {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&plan.to_json())?)?,
        "dot" => write!(out, "{}", plan.to_dot())?,
        other => bail!("unknown format {other:?} (want json or dot)"),
    }
    Ok(0)
}

/// The plan options of a build: what `debug plan` would be given for the
/// same command line (`excludes`: the context's `.dockerignore` patterns).
pub(crate) fn build_options(opts: &BuildOptions, targets: &[Platform], excludes: &[String]) -> Options {
    let mut o = Options::new(Platform::host().normalize())
        .with_platforms(targets.iter().cloned())
        .with_no_cache(opts.no_cache)
        .with_context_excludes(excludes.iter().cloned())
        .with_network(match opts.network {
            polyarch_exec::NetworkMode::None => Network::None,
            polyarch_exec::NetworkMode::Host => Network::Host,
        })
        .with_source_date_epoch(opts.source_date_epoch);
    set_run(&mut o, &opts.run);
    o.named_contexts = opts
        .named_contexts
        .iter()
        .map(|(name, c)| {
            let c = match c {
                polyarch_builder::named::NamedContext::Files(_) => NamedContext::Files,
                polyarch_builder::named::NamedContext::Image(r) => NamedContext::Image(r.clone()),
                polyarch_builder::named::NamedContext::Layout(l) => NamedContext::Layout(l.clone()),
            };
            (name.clone(), c)
        })
        .collect();
    o.target = opts.target.clone();
    o.build_args = opts.build_args.clone();
    o.labels = opts.labels.clone();
    o.no_cache_filter = opts.no_cache_filter.clone();
    o
}

/// The RUN settings that shape the exec ops: extra hosts, resource
/// limits, /dev/shm size, cgroup parent.
fn set_run(o: &mut Options, run: &polyarch_builder::settings::RunSettings) {
    o.extra_hosts = run.extra_hosts.iter().map(|(name, addr)| (name.clone(), addr.to_string())).collect();
    o.ulimits = run.op_ulimits();
    o.shm_size = run.shm_size;
    o.cgroup_parent = run.cgroup_parent.clone();
}

/// The plan of a build, its base images resolved as the build resolves
/// them (`mode`); `None` when the frontend does not plan it.
pub(crate) fn build_plan(
    rt: &tokio::runtime::Runtime,
    opts: &BuildOptions,
    plan_opts: &Options,
    store: &Store,
    client: &Client,
) -> Option<polyarch_frontend::Plan> {
    let resolver = StoreResolver { store: store.clone(), client: client.clone(), mode: opts.resolve_mode };
    rt.block_on(polyarch_frontend::plan(&opts.dockerfile, &opts.dockerfile_name, plan_opts, &resolver)).ok()
}

/// `--build-context NAME=VALUE` as the plan sees them: files, an image or
/// an image of an OCI layout.
fn named_contexts(items: &[String]) -> Result<std::collections::BTreeMap<String, NamedContext>> {
    let mut out = std::collections::BTreeMap::new();
    for item in items {
        let (name, value) = super::build::inputs::split_build_context(item)?;
        let what = || format!("--build-context {name}={value}");
        let ctx = match Value::parse(value).with_context(what)? {
            Value::Image(r) => NamedContext::Image(r),
            Value::Dir(dir) if !dir.is_dir() => {
                bail!("failed to get build context {name}: {} is not a directory", dir.display())
            }
            Value::Dir(_) | Value::Url(_) => NamedContext::Files,
            Value::Layout(layout) => NamedContext::Layout(layout),
        };
        let key = polyarch_frontend::context_name(name).map_err(anyhow::Error::msg).with_context(what)?;
        out.insert(key, ctx);
    }
    Ok(out)
}

/// The Dockerfile's bytes, its name in errors and its path.
fn read_dockerfile(args: &Args) -> Result<(Vec<u8>, String, Option<PathBuf>)> {
    let path = match args.file.as_deref() {
        Some("-") => None,
        Some(f) => Some(PathBuf::from(f)),
        None => Some(args.context.join("Dockerfile")),
    };
    match path {
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading the Dockerfile from stdin")?;
            Ok((buf, "Dockerfile".into(), None))
        }
        Some(p) => {
            let bytes = std::fs::read(&p).with_context(|| format!("reading the Dockerfile {}", p.display()))?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Dockerfile".into());
            Ok((bytes, name, Some(p)))
        }
    }
}
