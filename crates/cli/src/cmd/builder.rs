//! `polyarch builder`: builders and their nodes (as `docker buildx
//! create/use/inspect/ls/rm/stop`). The default builder is the local node,
//! always present; others are stored by [`polyarch_remote::builder`].

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use polyarch_emu::{host, Arch, Status};
use polyarch_oci::Platform;
use polyarch_remote::builder::{
    self as builders, Builder, Endpoint, Node, NodeStatus, Store, DEFAULT, DRIVER, VERSION,
};
use serde_json::{json, Value};

use super::binfmt::{host_status, out, outln, table};
use super::builder_driver::{self as drivers, DriverArgs};
use super::GlobalArgs;
use crate::template::{self, Format};

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Create a builder, or add a node to one (as `docker buildx create`).
    Create(CreateArgs),
    /// Make a builder the default for builds (as `docker buildx use`).
    Use(UseArgs),
    /// Show a builder and its nodes (as `docker buildx inspect`).
    Inspect(InspectArgs),
    /// List builders and their platforms (as `docker buildx ls`).
    Ls(LsArgs),
    /// Remove a builder (as `docker buildx rm`): its nodes' containers and
    /// volumes too.
    Rm(RmArgs),
    /// Stop a builder's node containers and mark its nodes inactive (as
    /// `docker buildx stop`).
    Stop(NameArg),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The node's endpoint: `local` or `ssh://[user@]host[:port]`; for the
    /// docker-container driver a Docker endpoint (`unix://PATH`,
    /// `tcp://HOST:PORT`, a docker context; default: DOCKER_HOST, the
    /// current context, the default socket).
    #[arg(value_name = "ENDPOINT")]
    endpoint: Option<String>,
    #[command(flatten)]
    driver: DriverArgs,
    /// The builder's name (default: the first free `builderN`).
    #[arg(long)]
    name: Option<String>,
    /// The node's name (default: the builder's name and the node's index).
    #[arg(long)]
    node: Option<String>,
    /// Platforms the node builds for (comma list, repeatable).
    #[arg(long = "platform", value_name = "PLATFORM[,PLATFORM...]")]
    platforms: Vec<String>,
    /// Add the node to an existing builder (a node of the same name is replaced).
    #[arg(long)]
    append: bool,
    /// Make the builder the default one.
    #[arg(long = "use")]
    use_it: bool,
    /// Probe the nodes now.
    #[arg(long)]
    bootstrap: bool,
    /// Registry configuration for every node of the builder, the local one
    /// included (buildkitd.toml's `[registry."host"]` tables: mirrors, http,
    /// insecure, ca, keypair); its keys win over the node's own config.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The `polyarch` program on an ssh node (default: `polyarch` on its PATH,
    /// or POLYARCH_REMOTE_BIN).
    #[arg(long, value_name = "PATH")]
    remote_polyarch: Option<String>,
}

#[derive(Args)]
pub struct UseArgs {
    /// The builder (none with --default: the default builder).
    #[arg(required_unless_present = "default")]
    name: Option<String>,
    /// Make it the default (without a name: go back to the default builder).
    #[arg(long)]
    default: bool,
}

#[derive(Args)]
pub struct RmArgs {
    /// The builder (default: POLYARCH_BUILDER or the one chosen with `use`).
    name: Option<String>,
    /// Keep the node containers' state volumes.
    #[arg(long)]
    keep_state: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The builder (default: POLYARCH_BUILDER or the one chosen with `use`).
    name: Option<String>,
    /// Probe the nodes first.
    #[arg(long)]
    bootstrap: bool,
}

#[derive(Args)]
pub struct NameArg {
    /// The builder (default: POLYARCH_BUILDER or the one chosen with `use`).
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// `table`, `json` or a Go template run for each builder over its JSON
    /// (`{{.Name}}{{range .Nodes}} {{.Endpoint}}{{end}}`).
    #[arg(long, default_value = "table", value_parser = template::format_arg)]
    format: Format,
}

pub fn run(_global: &GlobalArgs, cmd: BuilderCommand) -> Result<u8> {
    let store = Store::from_env()?;
    match cmd {
        BuilderCommand::Create(a) => create(&store, a),
        BuilderCommand::Use(a) => use_builder(&store, a.name.as_deref().unwrap_or(DEFAULT)),
        BuilderCommand::Inspect(a) => inspect(&store, a),
        BuilderCommand::Ls(a) => ls(&store, a),
        BuilderCommand::Rm(a) => rm(&store, a.name, a.keep_state),
        BuilderCommand::Stop(a) => stop(&store, a.name),
    }
}

/// `POLYARCH_BUILDER`, when set.
fn env_builder() -> Option<String> {
    std::env::var("POLYARCH_BUILDER").ok().filter(|s| !s.is_empty())
}

/// The name a command without one acts on.
fn chosen(store: &Store, name: Option<String>) -> Result<String> {
    match name.or_else(env_builder) {
        Some(n) => Ok(n),
        None => Ok(store.current()?.unwrap_or_else(|| DEFAULT.to_string())),
    }
}

fn parse_platforms(list: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for p in list.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        let f = Platform::parse(p).map_err(anyhow::Error::from)?.normalize().format();
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn create(store: &Store, a: CreateArgs) -> Result<u8> {
    if a.driver.leave {
        return drivers::leave(store, a.name.as_deref(), a.node.as_deref());
    }
    let platforms = parse_platforms(&a.platforms)?;
    for n in a.name.iter().chain(&a.node) {
        builders::validate_name(n)?;
    }
    let named = a.name.is_some();
    let name = match a.name {
        Some(n) if builders::is_default(&n) => bail!("{n:?} is the default builder's name; choose another"),
        Some(n) => n,
        // --append alone adds to the builder in use (POLYARCH_BUILDER or
        // `use`); with the default in use it makes a new one, as buildx.
        None if a.append && !builders::is_default(&chosen(store, None)?) => chosen(store, None)?,
        None => (0..).map(|i| format!("builder{i}")).find(|n| !matches!(store.get(n), Ok(Some(_)))).unwrap_or_default(),
    };
    let append = a.append && (named || store.get(&name)?.is_some());
    let existing = store.get(&name)?;
    // A node appended without --driver takes the builder's.
    let inherited = existing.as_ref().filter(|b| append && !b.nodes.is_empty()).map(|b| b.driver.as_str());
    let (driver, endpoint) = drivers::resolve(&a.driver, inherited, a.endpoint.as_deref(), a.append)?;
    let mut b = match (existing, append) {
        (Some(b), true) => b,
        (Some(_), false) => bail!("builder {name:?} exists; use --append to add a node to it"),
        (None, true) => bail!("no builder {name:?} to append to"),
        (None, false) => Builder { driver: driver.clone(), ..Builder::new(&name) },
    };
    drivers::check_driver(&b, &driver)?;
    b.driver = driver.clone();
    if let Some(path) = &a.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        polyarch_registry::RegistryConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let ignored = polyarch_registry::RegistryConfig::ignored_keys(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if !ignored.is_empty() {
            eprintln!("WARNING: polyarch ignores {} in {}", ignored.join(", "), path.display());
        }
        b.config = Some(text);
    }
    let node_name = match a.node {
        Some(n) => n,
        None => (b.nodes.len()..)
            .map(|i| format!("{name}{i}"))
            .find(|n| !b.nodes.iter().any(|x| &x.name == n))
            .unwrap_or_default(),
    };
    let mut node = Node {
        name: node_name.clone(),
        endpoint,
        platforms,
        remote_bin: a.remote_polyarch,
        driver_opts: Default::default(),
        buildkitd_flags: None,
        state: NodeStatus::Inactive,
    };
    drivers::options(&a.driver, &driver, &mut node)?;
    drivers::check_node_name(store, &name, &node)?;
    match b.nodes.iter_mut().find(|n| n.name == node_name) {
        Some(existing) => *existing = node,
        None => b.nodes.push(node),
    }
    let failed = if a.bootstrap { bootstrap(&mut b) } else { Vec::new() };
    store.put(&b)?;
    if a.use_it {
        store.set_current(Some(&name))?;
    }
    // As buildx: the builder is kept, its name printed only once it booted.
    if failed.is_empty() {
        outln(&name);
    }
    fail_on(&failed)
}

/// Probes every node; returns the reasons of those that failed.
fn bootstrap(b: &mut Builder) -> Vec<String> {
    let local = || super::worker::local_probe().map_err(|e| crate::report::Chain(&e).to_string());
    let mut failed = Vec::new();
    for n in &mut b.nodes {
        n.state = match n.endpoint {
            Endpoint::Docker { .. } => drivers::probe(n),
            _ => builders::probe_node(n, &local),
        };
        if let NodeStatus::Error { reason } = &n.state {
            failed.push(reason.clone());
        }
    }
    failed
}

fn fail_on(failed: &[String]) -> Result<u8> {
    match failed {
        [] => Ok(0),
        _ => bail!("bootstrap failed: {}", failed.join("; ")),
    }
}

fn use_builder(store: &Store, name: &str) -> Result<u8> {
    if !builders::is_default(name) && store.get(name)?.is_none() {
        bail!("no builder {name:?} found (see `polyarch builder ls`)");
    }
    store.set_current(Some(name))?;
    Ok(0)
}

fn rm(store: &Store, name: Option<String>, keep_state: bool) -> Result<u8> {
    let name = chosen(store, name)?;
    if builders::is_default(&name) {
        bail!("the default builder cannot be removed");
    }
    let Some(b) = store.get(&name)? else {
        bail!("no builder {name:?} found (see `polyarch builder ls`)");
    };
    for n in &b.nodes {
        drivers::remove_node(n, keep_state)?;
    }
    store.remove(&name)?;
    Ok(0)
}

fn stop(store: &Store, name: Option<String>) -> Result<u8> {
    let name = chosen(store, name)?;
    if builders::is_default(&name) {
        // The local node runs nothing between commands: nothing to stop.
        return Ok(0);
    }
    let Some(mut b) = store.get(&name)? else {
        bail!("no builder {name:?} found (see `polyarch builder ls`)");
    };
    for n in &mut b.nodes {
        drivers::stop_node(n)?;
        n.state = NodeStatus::Inactive;
    }
    store.put(&b)?;
    Ok(0)
}

/// What the commands show of one node.
struct NodeView {
    name: String,
    endpoint: String,
    /// `--driver-opt` pairs and `--buildkitd-flags`, for `inspect`.
    driver_opts: Vec<String>,
    flags: Option<String>,
    status: &'static str,
    error: Option<String>,
    version: String,
    /// Table form: declared platforms starred; amd64 levels folded.
    shown: Vec<String>,
    /// Every platform, in order.
    all: Vec<String>,
    declared: Vec<String>,
    native: Vec<String>,
    emulated: Vec<String>,
}

/// The default builder's node, from this machine's live state.
fn default_node() -> Result<NodeView> {
    let s = host_status(None)?;
    let level = if s.native().contains(&Arch::Amd64) { host::host_amd64_level() } else { 1 };
    let (shown, all) = node_platforms(&s, level);
    let fmt = |archs: Vec<Arch>| archs.into_iter().flat_map(|a| a.platforms()).map(|p| p.format()).collect();
    Ok(NodeView {
        name: DEFAULT.to_string(),
        endpoint: "local".to_string(),
        driver_opts: Vec::new(),
        flags: None,
        status: "running",
        error: None,
        version: VERSION.to_string(),
        shown,
        all,
        declared: Vec::new(),
        native: fmt(s.native()),
        emulated: fmt(s.emulated()),
    })
}

fn stored_node(n: &Node) -> NodeView {
    let (version, native, emulated) = match &n.state {
        NodeStatus::Running { probe } => (probe.version.clone(), probe.native.clone(), probe.emulated.clone()),
        _ => (String::new(), Vec::new(), Vec::new()),
    };
    let ps = n.platforms();
    let stored_error = match &n.state {
        NodeStatus::Error { reason } => Some(reason.clone()),
        _ => None,
    };
    let (status, error) = drivers::live_status(n).unwrap_or((n.state.word(), stored_error));
    NodeView {
        name: n.name.clone(),
        endpoint: n.endpoint.to_string(),
        driver_opts: n.driver_opts.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect(),
        flags: n.buildkitd_flags.clone(),
        status,
        error,
        version,
        shown: ps.iter().map(|(p, _)| if n.platforms.contains(p) { format!("{p}*") } else { p.clone() }).collect(),
        all: ps.into_iter().map(|(p, _)| p).collect(),
        declared: n.platforms.clone(),
        native,
        emulated,
    }
}

/// Every builder with its nodes: the default first, then stored ones by name.
/// Every builder with its driver and nodes: the default first, then stored
/// ones by name.
fn all_builders(store: &Store) -> Result<Vec<(String, String, Vec<NodeView>)>> {
    let mut out = vec![(DEFAULT.to_string(), DRIVER.to_string(), vec![default_node()?])];
    for b in store.list()? {
        out.push((b.name.clone(), drivers::driver_of(Some(&b)).to_string(), b.nodes.iter().map(stored_node).collect()));
    }
    Ok(out)
}

fn current_name(store: &Store) -> Result<String> {
    match env_builder() {
        Some(n) if builders::is_default(&n) => Ok(DEFAULT.to_string()),
        Some(n) => Ok(n),
        None => Ok(store.current()?.unwrap_or_else(|| DEFAULT.to_string())),
    }
}

fn node_json(n: &NodeView) -> Value {
    json!({
        "name": n.name,
        "endpoint": n.endpoint,
        "status": n.status,
        "error": n.error,
        "version": n.version,
        "platforms": n.all,
        "declared": n.declared,
        "native": n.native,
        "emulated": n.emulated,
    })
}
/// The node's platforms: native ones first (the host's first), then
/// emulated ones. amd64 stands for its microarchitecture levels too,
/// which the table folds into `(+N)` as buildx does.
fn node_platforms(s: &Status, amd64_level: u8) -> (Vec<String>, Vec<String>) {
    let mut table = Vec::new();
    let mut all = Vec::new();
    for arch in s.native().into_iter().chain(s.emulated()) {
        for p in arch.platforms() {
            let f = p.format();
            if arch == Arch::Amd64 && amd64_level > 1 {
                table.push(format!("{f} (+{})", amd64_level - 1));
                all.push(f.clone());
                all.extend((2..=amd64_level).map(|v| format!("{f}/v{v}")));
            } else {
                table.push(f.clone());
                all.push(f);
            }
        }
    }
    (table, all)
}

fn ls(store: &Store, args: LsArgs) -> Result<u8> {
    let current = current_name(store)?;
    let builders = all_builders(store)?;
    if !matches!(args.format, Format::Default) {
        let doc: Vec<Value> = builders
            .iter()
            .map(|(name, driver, nodes)| {
                json!({
                    "name": name,
                    "driver": driver,
                    "current": *name == current,
                    "nodes": nodes.iter().map(node_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        match args.format {
            Format::Template { template, table } => {
                out(&template::render_rows(&template.with_type("Builder"), table, &doc, &[])?)
            }
            _ => outln(&serde_json::to_string_pretty(&doc)?),
        }
        return Ok(0);
    }
    let mut rows = vec![["NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "POLYARCH", "PLATFORMS"].map(String::from).to_vec()];
    for (name, driver, nodes) in &builders {
        let mark = if *name == current { "*" } else { "" };
        rows.push(vec![format!("{name}{mark}"), driver.clone(), String::new(), String::new(), String::new()]);
        for n in nodes {
            rows.push(vec![
                format!(" \\_ {}", n.name),
                format!(" \\_ {}", n.endpoint),
                n.status.to_string(),
                n.version.clone(),
                n.shown.join(", "),
            ]);
        }
    }
    out(&table(&rows));
    for (_, _, nodes) in &builders {
        for e in nodes.iter().filter_map(|n| n.error.as_deref()) {
            eprintln!("warning: {e}");
        }
    }
    Ok(0)
}

fn inspect(store: &Store, a: InspectArgs) -> Result<u8> {
    let name = chosen(store, a.name)?;
    let mut failed = Vec::new();
    let mut driver = DRIVER.to_string();
    let nodes = if builders::is_default(&name) {
        vec![default_node()?]
    } else {
        let Some(mut b) = store.get(&name)? else {
            bail!("no builder {name:?} found (see `polyarch builder ls`)");
        };
        if a.bootstrap {
            failed = bootstrap(&mut b);
            store.put(&b)?;
        }
        driver = drivers::driver_of(Some(&b)).to_string();
        b.nodes.iter().map(stored_node).collect()
    };
    let name = if builders::is_default(&name) { DEFAULT.to_string() } else { name };
    let mut text = format!("Name:          {name}\nDriver:        {driver}\n\nNodes:\n");
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!(
            "Name:          {}\nEndpoint:      {}\nStatus:        {}\n",
            n.name, n.endpoint, n.status
        ));
        if !n.driver_opts.is_empty() {
            text.push_str(&format!("Driver Options: {}\n", n.driver_opts.join(" ")));
        }
        if let Some(e) = &n.error {
            text.push_str(&format!("Error:         {e}\n"));
        }
        if let Some(f) = &n.flags {
            text.push_str(&format!("BuildKit daemon flags: {f}\n"));
        }
        if !n.version.is_empty() {
            text.push_str(&format!("Polyarch:      {}\n", n.version));
        }
        let marked: Vec<String> = n
            .all
            .iter()
            .map(|p| match (n.declared.contains(p), n.emulated.contains(p)) {
                (true, _) => format!("{p}*"),
                (false, true) => format!("{p} (emulated)"),
                (false, false) => p.clone(),
            })
            .collect();
        text.push_str(&format!("Platforms:     {}\n", marked.join(", ")));
    }
    out(&text);
    fail_on(&failed)
}
