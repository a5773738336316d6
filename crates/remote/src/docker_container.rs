//! The `docker-container` driver: a node is a privileged container
//! `polyarch_buildkit_<node>` on a Docker engine, running
//! `polyarch worker --idle`, with the named volume
//! `polyarch_buildkit_<node>_state` at the worker's store. Each session is
//! `polyarch worker --stdio` run in it through the exec API, its stdin and
//! stdout on one hijacked connection, speaking the usual worker protocol.
//!
//! Why exec and not the container's own attached stdio: sessions come and
//! go while the container stays up with its store; two builds can use one
//! node at once; a session that breaks ends only its own process, and
//! nothing reattaches to a stream the engine may have buffered. The
//! container is created (and its image made or pulled) on `--bootstrap` or
//! first use, and started again if it was stopped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polyarch_engine::{ContainerSpec, ContainerState, Engine, Origin, VolumeMount};
use polyarch_oci::Platform;

use crate::builder::{Endpoint, Node, Probe, DOCKER_CONTAINER};
use crate::error::{Error, NodeId, Result};
use crate::session::{Link, Session, Stream, Tail};

/// Where the worker keeps its store in the container (the volume).
pub const STATE_DIR: &str = "/var/lib/polyarch";
/// What a worker container gets when it cannot be privileged: what runc
/// needs to make the build's containers (namespaces, mounts, devices,
/// networks) and what those containers get by default.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_ADMIN",
    "SYS_NICE",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "SYSLOG",
];

/// The label naming the node on its container.
pub const NODE_LABEL: &str = "io.polyarch.builder.node";

/// The container of node `node` (as buildx's `buildx_buildkit_<node>`).
pub fn container_name(node: &str) -> String {
    format!("polyarch_buildkit_{node}")
}

/// The volume that keeps node `node`'s store across containers.
pub fn volume_name(node: &str) -> String {
    format!("polyarch_buildkit_{node}_state")
}

/// Reads `--driver-opt` values (each a comma list of KEY=VALUE): `image`,
/// `network` and `env.NAME` for docker-container; other drivers take none.
pub fn parse_driver_opts(driver: &str, list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for opt in list.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
        let bad = |why: &str| Error::DriverOpt { driver: driver.into(), opt: opt.into(), why: why.into() };
        if driver != DOCKER_CONTAINER {
            return Err(bad("this driver takes no driver options"));
        }
        let (k, v) = opt.split_once('=').ok_or_else(|| bad("want KEY=VALUE"))?;
        match k {
            "image" | "network" if !v.is_empty() => {}
            "image" | "network" => return Err(bad("empty value")),
            _ if k.strip_prefix("env.").is_some_and(|n| !n.is_empty() && !n.contains('=')) => {}
            _ => return Err(bad("unknown key (known: image, network, env.NAME)")),
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The endpoint text of a node made without one: `DOCKER_HOST`, else the
/// docker context's name, else the default socket (as the docker CLI).
pub fn endpoint_from_env() -> std::result::Result<String, polyarch_engine::Error> {
    let (e, origin) = polyarch_engine::Endpoint::from_env()?;
    Ok(match origin {
        Origin::DockerHost => std::env::var("DOCKER_HOST").unwrap_or_else(|_| e.to_string()),
        Origin::Context(name) => name,
        Origin::Default => e.to_string(),
    })
}

/// The engine endpoint of `host`: a URL, or a docker context's name.
pub fn engine_endpoint(host: &str) -> std::result::Result<polyarch_engine::Endpoint, polyarch_engine::Error> {
    if host.contains("://") {
        return polyarch_engine::Endpoint::parse(host, false);
    }
    let dir = polyarch_engine::endpoint::docker_config_dir()
        .ok_or_else(|| polyarch_engine::Error::Context { name: host.into(), why: "no HOME or DOCKER_CONFIG".into() })?;
    polyarch_engine::endpoint::context_endpoint(&dir, host)
}

/// What a docker-container node's container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its container runs.
    Running,
    /// Its container exists but does not run.
    Stopped,
    /// It has no container yet (or any more).
    Inactive,
}

impl Status {
    /// `running`, `stopped` or `inactive`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Inactive => "inactive",
        }
    }
}

/// A docker-container node and its engine.
pub struct DockerNode<'a> {
    node: &'a Node,
    id: NodeId,
    engine: Engine,
}

impl<'a> DockerNode<'a> {
    /// The node's engine; a node of another driver is an error.
    pub fn new(node: &'a Node) -> Result<DockerNode<'a>> {
        let id = node.id();
        let Endpoint::Docker { host } = &node.endpoint else {
            return Err(Error::UnsupportedEndpoint { endpoint: node.endpoint.to_string() });
        };
        let endpoint = engine_endpoint(host).map_err(|source| Error::engine(&id, source))?;
        Ok(DockerNode { node, id, engine: Engine::new(endpoint).with_timeout(Duration::from_secs(600)) })
    }

    fn engine_err(&self) -> impl Fn(polyarch_engine::Error) -> Error + '_ {
        move |source| Error::engine(&self.id, source)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The container's name.
    pub fn container(&self) -> String {
        container_name(&self.node.name)
    }

    /// The engine's own platform (`/info` `OSType`/`Architecture`,
    /// normalised: `x86_64` is `linux/amd64`).
    pub fn native(&self) -> Result<Platform> {
        let info = self.engine.info().map_err(self.engine_err())?;
        native_platform(&info.os_type, &info.architecture).map_err(|why| {
            let call = "GET /info".into();
            Error::engine(
                &self.id,
                polyarch_engine::Error::Protocol { endpoint: self.engine.endpoint().to_string(), call, why },
            )
        })
    }

    /// The container's state, `None` when it has none.
    pub fn state(&self) -> Result<Option<ContainerState>> {
        Ok(self.engine.inspect_container(&self.container()).map_err(self.engine_err())?.map(|c| c.state))
    }

    /// Running, stopped or inactive.
    pub fn status(&self) -> Result<Status> {
        Ok(match self.state()? {
            None => Status::Inactive,
            Some(s) if s.running => Status::Running,
            Some(_) => Status::Stopped,
        })
    }

    /// Makes the container (and its image) unless it exists, and starts it
    /// unless it runs. A new container is privileged; an engine whose host
    /// cannot grant every capability (runc: "unable to apply caps") gets
    /// it again with [`CAPABILITIES`] and no seccomp, AppArmor or masked
    /// paths instead.
    pub fn ensure_running(&self, version: &str) -> Result<()> {
        let name = self.container();
        match self.state()? {
            Some(s) if s.running => return Ok(()),
            Some(_) => match self.engine.start_container(&name) {
                Err(e) if caps_refused(&e) => {
                    self.engine.remove_container(&name).map_err(self.engine_err())?;
                    self.create_and_start(version)?;
                }
                other => other.map_err(self.engine_err())?,
            },
            None => self.create_and_start(version)?,
        }
        self.wait_running()
    }

    fn create_and_start(&self, version: &str) -> Result<()> {
        let name = self.container();
        let image = self.image(version)?;
        self.create(&image, true)?;
        match self.engine.start_container(&name) {
            Err(e) if caps_refused(&e) => {
                self.engine.remove_container(&name).map_err(self.engine_err())?;
                self.create(&image, false)?;
                self.engine.start_container(&name).map_err(self.engine_err())
            }
            other => other.map_err(self.engine_err()),
        }
    }

    fn wait_running(&self) -> Result<()> {
        let name = self.container();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.state()? {
                Some(s) if s.running => return Ok(()),
                Some(s) if s.status == "exited" || s.status == "dead" || Instant::now() > deadline => {
                    let why = if s.error.is_empty() { format!("exit code {}", s.exit_code) } else { s.error };
                    return Err(Error::Unreachable {
                        node: self.id.clone(),
                        reason: format!("container {name} does not stay up ({}: {why})", s.status),
                    });
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn image(&self, version: &str) -> Result<String> {
        if let Some(image) = self.node.driver_opts.get("image") {
            if !self.engine.image_exists(image).map_err(self.engine_err())? {
                self.engine.pull(image).map_err(self.engine_err())?;
            }
            return Ok(image.clone());
        }
        let host = Platform::host().normalize();
        own_image_fits(&self.native()?, &host).map_err(|why| Error::WorkerImage { node: self.id.clone(), why })?;
        crate::worker_image::ensure(&self.id, &self.engine, version, &host)
    }

    fn create(&self, image: &str, privileged: bool) -> Result<()> {
        let opts = &self.node.driver_opts;
        let env = opts.iter().filter_map(|(k, v)| k.strip_prefix("env.").map(|n| format!("{n}={v}"))).collect();
        let spec = ContainerSpec {
            image: image.to_string(),
            entrypoint: Some(vec!["polyarch".into(), "worker".into(), "--idle".into()]),
            cmd: Vec::new(),
            env,
            privileged,
            cap_add: if privileged { Vec::new() } else { CAPABILITIES.iter().map(|c| c.to_string()).collect() },
            security_opt: if privileged {
                Vec::new()
            } else {
                ["seccomp=unconfined", "apparmor=unconfined"].map(String::from).to_vec()
            },
            unmasked: !privileged,
            network: opts.get("network").cloned(),
            mounts: vec![VolumeMount { volume: volume_name(&self.node.name), target: STATE_DIR.into() }],
            labels: vec![(NODE_LABEL.into(), self.node.name.clone())],
        };
        match self.engine.create_container(&self.container(), &spec) {
            // Another command made it meanwhile (two builds starting at once).
            Err(polyarch_engine::Error::Api { status: 409, .. }) => Ok(()),
            other => other.map(|_| ()).map_err(self.engine_err()),
        }
    }

    /// A session with `polyarch worker --stdio` in the container (made and
    /// started first if need be).
    pub fn connect(&self, version: &str) -> Result<Session> {
        self.ensure_running(version)?;
        let stderr = Tail::default();
        let mut partial = Vec::new();
        let tail = stderr.clone();
        let on_stderr = Box::new(move |bytes: &[u8]| {
            partial.extend_from_slice(bytes);
            while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=i).collect();
                tail.push(String::from_utf8_lossy(&line).trim_end().to_string());
            }
        });
        let cmd = ["polyarch", "worker", "--stdio"].map(String::from);
        let exec = self.engine.exec(&self.container(), &cmd, &[], on_stderr).map_err(|source| Error::Unreachable {
            node: self.id.clone(),
            reason: format!("starting the worker: {source}"),
        })?;
        let link = Arc::new(ExecLink { engine: self.engine.clone(), exec: exec.id, control: Mutex::new(exec.control) });
        let input: Box<dyn Write + Send> = Box::new(exec.stdin);
        let output: Box<dyn Read + Send> = Box::new(exec.stdout);
        Session::over(&self.id, Stream { input, output, link, stderr }, version)
    }

    /// What the node runs: the engine's platform first, then what the
    /// worker in the container reports.
    pub fn probe(&self, version: &str) -> Result<Probe> {
        let session = self.connect(version)?;
        let reported: Option<Probe> = session.probe.clone().and_then(|p| serde_json::from_value(p).ok());
        session.close();
        let mut probe = reported.ok_or_else(|| Error::Protocol {
            node: self.id.clone(),
            message: "the worker reported no platforms".into(),
        })?;
        let native = self.native()?.format();
        probe.native.retain(|p| *p != native);
        probe.native.insert(0, native.clone());
        probe.emulated.retain(|p| *p != native);
        Ok(probe)
    }

    /// Stops the container (if it runs).
    pub fn stop(&self) -> Result<()> {
        if self.state()?.is_some() {
            self.engine.stop_container(&self.container(), 5).map_err(self.engine_err())?;
        }
        Ok(())
    }

    /// Removes the container and, unless `keep_state`, its volume.
    pub fn remove(&self, keep_state: bool) -> Result<()> {
        self.engine.remove_container(&self.container()).map_err(self.engine_err())?;
        if !keep_state {
            self.engine.remove_volume(&volume_name(&self.node.name)).map_err(self.engine_err())?;
        }
        Ok(())
    }
}

/// Whether the engine failed to start a privileged container because its
/// host cannot grant every capability (runc: "unable to apply caps").
fn caps_refused(e: &polyarch_engine::Error) -> bool {
    matches!(e, polyarch_engine::Error::Api { message, .. } if message.contains("apply caps"))
}

/// Whether a worker image made from this machine runs on an engine of
/// platform `engine`; the error says what to do instead.
pub fn own_image_fits(engine: &Platform, host: &Platform) -> std::result::Result<(), String> {
    // The variant aside: an arm64 engine runs an arm64 binary whatever its CPU's.
    if engine.os == host.os && engine.architecture == host.architecture {
        return Ok(());
    }
    Err(format!(
        "the engine runs {}, this machine {}: polyarch makes a worker image only from its own binary for its own \
         platform; give a published one with --driver-opt image=REF (see docs/worker-image.md)",
        engine.format(),
        host.format()
    ))
}

/// `OSType`/`Architecture` of `/info` as a normalised platform.
pub fn native_platform(os: &str, arch: &str) -> std::result::Result<Platform, String> {
    let os = if os.is_empty() { "linux" } else { os };
    // `Architecture` is the kernel's machine name (uname -m).
    let arch = match arch {
        "i386" | "i486" | "i586" | "i686" => "386".to_string(),
        a => match a.strip_prefix("armv").and_then(|v| v.strip_suffix('l').or(Some(v))) {
            Some(v) if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() => format!("arm/v{v}"),
            _ => a.to_string(),
        },
    };
    Platform::parse(&format!("{os}/{arch}")).map(|p| p.normalize()).map_err(|e| format!("platform {os}/{arch}: {e}"))
}

/// An exec's connection: killing shuts it down (the worker reads the end
/// of its stdin, stops its steps and exits); the engine says when the
/// process ended.
struct ExecLink {
    engine: Engine,
    exec: String,
    control: Mutex<polyarch_engine::http::Conn>,
}

impl Link for ExecLink {
    fn kill(&self) {
        if let Ok(c) = self.control.lock() {
            c.shutdown_both();
        }
    }

    fn exited(&self) -> Option<String> {
        let s = self.engine.clone().with_timeout(Duration::from_secs(5)).exec_state(&self.exec).ok()?;
        match (s.running, s.exit_code) {
            (false, Some(code)) => Some(format!("exit status {code}")),
            (false, None) => Some("ended".into()),
            (true, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_opts_are_checked_and_kept() {
        let got = parse_driver_opts(
            DOCKER_CONTAINER,
            &["image=reg/w:1,network=host".into(), "env.HTTP_PROXY=http://p:3128".into()],
        )
        .unwrap();
        assert_eq!(got.get("image").map(String::as_str), Some("reg/w:1"));
        assert_eq!(got.get("network").map(String::as_str), Some("host"));
        assert_eq!(got.get("env.HTTP_PROXY").map(String::as_str), Some("http://p:3128"));
        for bad in ["memory=1g", "image", "image=", "env.=x", "=x"] {
            let e = parse_driver_opts(DOCKER_CONTAINER, &[bad.into()]).unwrap_err();
            assert!(matches!(&e, Error::DriverOpt { opt, .. } if opt == bad), "{bad}: {e:?}");
            assert_eq!(e.kind(), crate::error::ErrorKind::Invalid);
        }
        let e = parse_driver_opts("docker", &["image=x".into()]).unwrap_err();
        assert!(e.to_string().contains("docker driver"), "{e}");
    }

    #[test]
    fn names_follow_buildx() {
        assert_eq!(container_name("n0"), "polyarch_buildkit_n0");
        assert_eq!(volume_name("n0"), "polyarch_buildkit_n0_state");
    }

    #[test]
    fn engine_platforms_are_normalised() {
        for (os, arch, want) in [
            ("linux", "x86_64", "linux/amd64"),
            ("linux", "aarch64", "linux/arm64"),
            ("", "s390x", "linux/s390x"),
            ("linux", "armv7l", "linux/arm/v7"),
            ("linux", "armv6l", "linux/arm/v6"),
            ("linux", "i686", "linux/386"),
            ("linux", "ppc64le", "linux/ppc64le"),
            ("linux", "riscv64", "linux/riscv64"),
        ] {
            assert_eq!(native_platform(os, arch).map(|p| p.format()), Ok(want.to_string()), "{arch}");
        }
    }

    #[test]
    fn an_image_of_this_machine_only_for_an_engine_of_its_platform() {
        let p = |s: &str| Platform::parse(s).unwrap().normalize();
        own_image_fits(&p("linux/amd64"), &p("linux/amd64")).unwrap();
        own_image_fits(&p("linux/arm64/v8"), &p("linux/arm64")).unwrap();
        let e = own_image_fits(&p("linux/arm64"), &p("linux/amd64")).unwrap_err();
        assert!(e.contains("linux/arm64") && e.contains("linux/amd64") && e.contains("--driver-opt image="), "{e}");
    }

    #[test]
    fn an_ssh_node_is_not_a_docker_node() {
        let n = Node {
            name: "n".into(),
            endpoint: Endpoint::parse("ssh://h").unwrap(),
            platforms: vec![],
            remote_bin: None,
            driver_opts: BTreeMap::new(),
            buildkitd_flags: None,
            state: Default::default(),
        };
        assert!(DockerNode::new(&n).is_err());
    }
}
