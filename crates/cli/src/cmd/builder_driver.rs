//! `builder create`'s driver flags (`--driver`, `--driver-opt`,
//! `--buildkitd-flags`, `--leave`) and what the commands do to the nodes of
//! the `docker-container` driver: containers on Docker engines, probed,
//! stopped and removed through the Engine API
//! ([`polyarch_remote::docker_container`]).

use anyhow::{bail, Result};
use clap::Args;
use polyarch_remote::builder::{Builder, Endpoint, Node, NodeStatus, Store, DOCKER, DOCKER_CONTAINER, DRIVER, VERSION};
use polyarch_remote::docker_container::{self as dc, DockerNode};

#[derive(Args, Default)]
pub struct DriverArgs {
    /// The driver: `docker-container` (a container on a Docker engine),
    /// `docker` (for polyarch: this machine) or `polyarch` (this machine or
    /// ssh). Default: docker-container for a Docker endpoint, or when
    /// DOCKER_HOST or DOCKER_CONTEXT is set and no endpoint is given.
    #[arg(long, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// Driver options, KEY=VALUE (comma list, repeatable): `image=REF` (the
    /// worker image), `network=NAME`, `env.NAME=VALUE`.
    #[arg(long = "driver-opt", value_name = "OPTIONS")]
    pub driver_opt: Vec<String>,
    /// BuildKit daemon flags: kept with the node; polyarch's worker takes none.
    #[arg(long = "buildkitd-flags", value_name = "FLAGS")]
    pub buildkitd_flags: Option<String>,
    /// Remove the node `--node` from the builder `--name`.
    #[arg(long)]
    pub leave: bool,
}

/// The driver and the node's endpoint of `builder create`.
pub fn resolve(args: &DriverArgs, endpoint: Option<&str>, append: bool) -> Result<(String, Endpoint)> {
    let docker_env =
        ["DOCKER_HOST", "DOCKER_CONTEXT"].iter().any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    let driver = match (args.driver.as_deref(), endpoint) {
        (Some(d), _) => d.to_string(),
        (None, Some(e)) if e == "local" || e.starts_with("ssh://") => DRIVER.to_string(),
        (None, Some(_)) => DOCKER_CONTAINER.to_string(),
        (None, None) if docker_env => DOCKER_CONTAINER.to_string(),
        (None, None) => DRIVER.to_string(),
    };
    let endpoint = match driver.as_str() {
        DRIVER => Endpoint::parse(endpoint.unwrap_or("local"))?,
        DOCKER => {
            if append {
                bail!("failed to append: the docker driver does not support --append (it is this machine's builder)");
            }
            match endpoint {
                None | Some("local" | "default") => Endpoint::Local,
                Some(e) => bail!("the docker driver builds on this machine; endpoint {e:?} is not it"),
            }
        }
        DOCKER_CONTAINER => {
            let host = match endpoint {
                Some("local") => bail!("the docker-container driver needs a Docker endpoint (unix://PATH, tcp://HOST:PORT or a docker context), not \"local\""),
                Some(e) => e.to_string(),
                None => dc::endpoint_from_env()?,
            };
            dc::engine_endpoint(&host).map_err(|e| anyhow::anyhow!("endpoint {host:?}: {e}"))?;
            Endpoint::Docker { host }
        }
        "kubernetes" | "remote" => {
            bail!("driver {driver:?} is not supported by polyarch (use docker-container, docker or polyarch)")
        }
        other => bail!("failed to find driver {other:?} (known: docker-container, docker, polyarch)"),
    };
    if args.buildkitd_flags.is_some() {
        eprintln!("warning: polyarch's worker takes no BuildKit daemon flags; --buildkitd-flags is kept with the node but not used");
    }
    Ok((driver, endpoint))
}

/// The node's options as `resolve`'s driver takes them.
pub fn options(args: &DriverArgs, driver: &str, node: &mut Node) -> Result<()> {
    node.driver_opts = dc::parse_driver_opts(driver, &args.driver_opt)?;
    node.buildkitd_flags = args.buildkitd_flags.clone();
    Ok(())
}

/// Whether `b` may take a node of `driver`.
pub fn check_driver(b: &Builder, driver: &str) -> Result<()> {
    if b.driver != driver && !b.nodes.is_empty() {
        bail!(
            "builder {:?} uses the {} driver; a {driver} node cannot be added to it (create another builder)",
            b.name,
            b.driver
        );
    }
    Ok(())
}

/// `builder create --leave --name N --node X`: removes the node (and its
/// container and volume).
pub fn leave(store: &Store, name: Option<&str>, node: Option<&str>) -> Result<u8> {
    let (Some(name), Some(node)) = (name, node) else {
        bail!("--leave needs --name of the builder and --node of the node to remove");
    };
    let Some(mut b) = store.get(name)? else {
        bail!("no builder {name:?} found (see `polyarch builder ls`)");
    };
    let Some(at) = b.nodes.iter().position(|n| n.name == node) else {
        bail!("builder {name:?} has no node {node:?}");
    };
    remove_node(&b.nodes[at], false)?;
    b.nodes.remove(at);
    store.put(&b)?;
    Ok(0)
}

/// Probes a docker-container node: its container made and started, the
/// worker in it asked for its platforms, the engine's own first.
pub fn probe(n: &Node) -> NodeStatus {
    match DockerNode::new(n).and_then(|d| d.probe(VERSION)) {
        Ok(probe) => NodeStatus::Running { probe },
        Err(e) => NodeStatus::Error { reason: e.to_string() },
    }
}

/// A docker-container node's live status word and error, `None` for other
/// nodes.
pub fn live_status(n: &Node) -> Option<(&'static str, Option<String>)> {
    if !matches!(n.endpoint, Endpoint::Docker { .. }) {
        return None;
    }
    Some(match DockerNode::new(n).and_then(|d| d.status()) {
        Ok(s) => (s.word(), None),
        Err(e) => ("error", Some(e.to_string())),
    })
}

/// Stops a docker-container node's container; other nodes have nothing to
/// stop.
pub fn stop_node(n: &Node) -> Result<()> {
    if matches!(n.endpoint, Endpoint::Docker { .. }) {
        DockerNode::new(n)?.stop()?;
    }
    Ok(())
}

/// Removes a docker-container node's container and (unless `keep_state`)
/// its volume.
pub fn remove_node(n: &Node, keep_state: bool) -> Result<()> {
    if matches!(n.endpoint, Endpoint::Docker { .. }) {
        DockerNode::new(n)?.remove(keep_state)?;
    }
    Ok(())
}

/// The default builder's driver shown for `name`.
pub fn driver_of(b: Option<&Builder>) -> &str {
    b.map(|b| b.driver.as_str()).filter(|d| !d.is_empty()).unwrap_or(DRIVER)
}

/// Whether the node's container name is free on its engine: no other
/// builder has a docker-container node of that name on the same endpoint
/// (containers are named after the node).
pub fn check_node_name(store: &Store, builder: &str, node: &Node) -> Result<()> {
    if !matches!(node.endpoint, Endpoint::Docker { .. }) {
        return Ok(());
    }
    for b in store.list()?.iter().filter(|b| b.name != builder) {
        if b.nodes.iter().any(|n| n.name == node.name && n.endpoint == node.endpoint) {
            bail!(
                "builder {:?} has a node {:?} on {} already (its container is {}); choose another --node",
                b.name,
                node.name,
                node.endpoint,
                dc::container_name(&node.name)
            );
        }
    }
    Ok(())
}
