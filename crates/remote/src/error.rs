//! Errors of builders and of builds on their nodes.

use std::fmt;
use std::path::PathBuf;

use crate::wire::WireError;

/// A node as errors and events name it: `name (endpoint)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeId {
    /// The node's name in its builder.
    pub name: String,
    /// Its endpoint (`local`, `ssh://...`).
    pub endpoint: String,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.endpoint)
    }
}

/// `linux/arm64, linux/s390x on node far (ssh://h)`, or `node far (ssh://h)`
/// when no platform is concerned.
fn on(platforms: &[String], node: &NodeId) -> String {
    match platforms {
        [] => format!("node {node}"),
        _ => format!("{} on node {node}", platforms.join(", ")),
    }
}

/// Why a platform has no node to build it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unplaced {
    /// The node that would build it cannot be reached.
    Down {
        /// The platform.
        platform: String,
        /// The node.
        node: NodeId,
        /// Why it cannot be reached.
        reason: String,
    },
    /// No node offers it.
    Nowhere {
        /// The platform.
        platform: String,
        /// The builder.
        builder: String,
        /// Every node with the platforms it offers.
        offers: Vec<(String, Vec<String>)>,
    },
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unplaced::Down { platform, node, reason } => write!(f, "{platform}: node {node} is unreachable: {reason}"),
            Unplaced::Nowhere { platform, builder, offers } => {
                let nodes: Vec<String> = offers.iter().map(|(n, ps)| format!("{n} [{}]", ps.join(", "))).collect();
                write!(f, "{platform}: no node of builder {builder} builds it ({})", nodes.join("; "))
            }
        }
    }
}

fn lines<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n  ")
}

/// What went wrong with a builder or a build on its nodes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node could not be reached: its platforms can be built here
    /// (`--fallback-emulation`).
    #[error("node {node}: {reason}")]
    Unreachable {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The node went away or broke mid-session.
    #[error("{}: {reason}", on(platforms, node))]
    Lost {
        /// The node.
        node: NodeId,
        /// The platforms it was building.
        platforms: Vec<String>,
        /// What broke, how the process ended and its last words.
        reason: String,
    },
    /// The node ran the request and it failed (a Dockerfile error, a
    /// failing RUN step, a refused push): building elsewhere would fail
    /// the same way.
    #[error("{}: {error}", on(&error.platform().map(|p| vec![p.to_string()]).unwrap_or_else(|| platforms.clone()), node))]
    Failed {
        /// The node.
        node: NodeId,
        /// The platforms it was building.
        platforms: Vec<String>,
        /// What the node reported.
        error: Box<WireError>,
    },
    /// The node answered out of turn or speaks another protocol.
    #[error("node {node}: {message}")]
    Protocol {
        /// The node, or `client` on the worker's side.
        node: NodeId,
        /// What was wrong.
        message: String,
    },
    /// A session broke on this side: on the worker's, the client broke
    /// the protocol or went away; on the client's, a session's thread died.
    #[error("{message}")]
    Session {
        /// What was wrong.
        message: String,
    },
    /// The node's work was stopped because a platform built here failed.
    #[error("{}: stopped, as a platform built here failed", on(platforms, node))]
    Stopped {
        /// The node.
        node: NodeId,
        /// Its platforms.
        platforms: Vec<String>,
    },
    /// Some platforms have no node to build them.
    #[error(
        "builder {builder:?} cannot build every platform (--fallback-emulation builds them here):\n  {}",
        lines(problems)
    )]
    Unplaced {
        /// The builder.
        builder: String,
        /// One per platform.
        problems: Vec<Unplaced>,
    },
    /// The build was cancelled (a signal).
    #[error("the build was cancelled")]
    Cancelled,
    /// A platform no build gave a result for.
    #[error("{platform}: no result")]
    Missing {
        /// The platform.
        platform: String,
    },
    /// A platform built on this machine failed.
    #[error(transparent)]
    Local(#[from] polyarch_builder::Error),
    /// At least one platform failed; nothing was exported or pushed.
    #[error("the build failed; nothing was exported or pushed:\n  {}", lines(failures))]
    Build {
        /// Every failure.
        failures: Vec<Error>,
    },
    /// A `--secret` whose value cannot be read here, for the nodes.
    #[error("secret {id:?}: {message}")]
    Secret {
        /// The secret's id.
        id: String,
        /// Why it cannot be read.
        message: String,
    },
    /// An endpoint that is not `local` or `ssh://[user@]host[:port]`.
    #[error("unsupported endpoint {endpoint:?}: expected `local` or `ssh://[user@]host[:port]`")]
    UnsupportedEndpoint {
        /// The text given.
        endpoint: String,
    },
    /// A malformed ssh endpoint.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The text given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A builder or node name that is not a safe file name.
    #[error("invalid name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// No builder of that name is stored.
    #[error("no builder {name:?} found (see `polyarch builder ls`)")]
    NoBuilder {
        /// The name.
        name: String,
    },
    /// Builders have no place.
    #[error("neither XDG_CONFIG_HOME nor HOME is set: no place for builders")]
    NoConfigDir,
    /// Reading or writing the builders directory.
    #[error("{doing} {}", path.display())]
    Io {
        /// `reading`, `writing`, `removing`.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored builder that is not valid JSON of a builder.
    #[error("reading {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An image name that is not a reference.
    #[error("invalid reference {reference:?}")]
    Reference {
        /// The name.
        reference: String,
        /// Why.
        #[source]
        source: polyarch_oci::Error,
    },
    /// Pushing a manifest from this machine.
    #[error("pushing {reference}")]
    Push {
        /// Where.
        reference: String,
        /// Why.
        #[source]
        source: Box<polyarch_registry::Error>,
    },
    /// Reading or writing local content.
    #[error(transparent)]
    Store(#[from] polyarch_store::Error),
    /// A context file could not be read.
    #[error("reading the build context: {0}")]
    Context(Box<polyarch_builder::Error>),
    /// The Docker engine of a docker-container node failed a call.
    #[error("node {node}: {source}")]
    Engine {
        /// The node.
        node: NodeId,
        /// What the engine did.
        #[source]
        source: Box<polyarch_engine::Error>,
    },
    /// No worker image for a docker-container node.
    #[error("node {node}: no worker image: {why}")]
    WorkerImage {
        /// The node.
        node: NodeId,
        /// Why, with what to do.
        why: String,
    },
    /// A `--driver-opt` the driver does not take.
    #[error("invalid driver option {opt:?} for the {driver} driver: {why}")]
    DriverOpt {
        /// The driver.
        driver: String,
        /// The option as given.
        opt: String,
        /// Why.
        why: String,
    },
}

/// Kinds of [`Error`], to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A node could not be reached.
    Unreachable,
    /// A node went away or broke mid-build.
    NodeFailed,
    /// A build failed (on a node or here).
    Build,
    /// A node broke the protocol.
    Protocol,
    /// A node's work was stopped because of another failure.
    Stopped,
    /// Platforms no node builds.
    Unplaced,
    /// The build was cancelled.
    Cancelled,
    /// Bad input: a name, endpoint, option or reference.
    Invalid,
    /// No such builder.
    NotFound,
    /// Local files, content or registry access.
    Io,
}

impl Error {
    /// [`Error::Engine`] of `node`.
    pub fn engine(node: &NodeId, source: polyarch_engine::Error) -> Error {
        Error::Engine { node: node.clone(), source: Box::new(source) }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unreachable { .. } => ErrorKind::Unreachable,
            Error::Lost { .. } => ErrorKind::NodeFailed,
            Error::Failed { .. } | Error::Local(_) | Error::Build { .. } | Error::Missing { .. } => ErrorKind::Build,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Protocol { .. } | Error::Session { .. } => ErrorKind::Protocol,
            Error::Stopped { .. } => ErrorKind::Stopped,
            Error::Unplaced { .. } => ErrorKind::Unplaced,
            Error::Secret { .. }
            | Error::UnsupportedEndpoint { .. }
            | Error::InvalidEndpoint { .. }
            | Error::InvalidName { .. }
            | Error::WorkerImage { .. }
            | Error::DriverOpt { .. }
            | Error::Reference { .. } => ErrorKind::Invalid,
            Error::Engine { source, .. } if source.kind() == polyarch_engine::ErrorKind::Unreachable => {
                ErrorKind::Unreachable
            }
            Error::Engine { .. } => ErrorKind::Io,
            Error::NoBuilder { .. } => ErrorKind::NotFound,
            Error::NoConfigDir
            | Error::Io { .. }
            | Error::Json { .. }
            | Error::Push { .. }
            | Error::Store(_)
            | Error::Context(_) => ErrorKind::Io,
        }
    }

    /// Whether the node itself failed (unreachable, died, broke the
    /// protocol), so that its platforms may be built elsewhere.
    pub fn is_node_failure(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unreachable | ErrorKind::NodeFailed | ErrorKind::Protocol)
    }

    /// The node the error concerns, when it concerns one.
    pub fn node(&self) -> Option<&NodeId> {
        match self {
            Error::Unreachable { node, .. }
            | Error::Lost { node, .. }
            | Error::Failed { node, .. }
            | Error::Protocol { node, .. }
            | Error::Stopped { node, .. } => Some(node),
            _ => None,
        }
    }

    /// The platforms the error concerns (none when it concerns no node's
    /// work).
    pub fn platforms(&self) -> Vec<String> {
        match self {
            Error::Failed { error, platforms, .. } => match error.platform() {
                Some(p) => vec![p.to_string()],
                None => platforms.clone(),
            },
            Error::Lost { platforms, .. } | Error::Stopped { platforms, .. } => platforms.clone(),
            _ => Vec::new(),
        }
    }

    /// The same error about `platforms`, the work the node was given.
    pub(crate) fn for_platforms(self, list: &[String]) -> Error {
        match self {
            Error::Lost { node, reason, .. } => Error::Lost { node, platforms: list.to_vec(), reason },
            Error::Failed { node, error, .. } => Error::Failed { node, platforms: list.to_vec(), error },
            Error::Unreachable { node, reason } => Error::Lost { node, platforms: list.to_vec(), reason },
            other => other,
        }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> NodeId {
        NodeId { name: "far".into(), endpoint: "ssh://h:2".into() }
    }

    #[test]
    fn kinds_and_messages_name_node_and_platform() {
        let lost = Error::Lost { node: far(), platforms: vec!["linux/arm64".into()], reason: "gone".into() };
        assert_eq!(lost.kind(), ErrorKind::NodeFailed);
        assert!(lost.is_node_failure());
        assert_eq!(lost.to_string(), "linux/arm64 on node far (ssh://h:2): gone");
        let failed = Error::Failed {
            node: far(),
            platforms: vec!["linux/arm64".into(), "linux/s390x".into()],
            error: Box::new(WireError::Build { platform: Some("linux/s390x".into()), message: "exit code: 3".into() }),
        };
        assert_eq!(failed.kind(), ErrorKind::Build);
        assert!(!failed.is_node_failure());
        assert_eq!(failed.platforms(), ["linux/s390x"]);
        assert_eq!(failed.to_string(), "linux/s390x on node far (ssh://h:2): exit code: 3");
        let push = Error::Failed {
            node: far(),
            platforms: vec![],
            error: Box::new(WireError::Push { reference: "r/x:1".into(), message: "denied".into() }),
        };
        assert_eq!(push.to_string(), "node far (ssh://h:2): pushing r/x:1: denied");
        let stopped = Error::Stopped { node: far(), platforms: vec!["linux/arm64".into()] };
        assert_eq!(stopped.kind(), ErrorKind::Stopped);
        assert!(stopped.to_string().ends_with("stopped, as a platform built here failed"));
        assert_eq!(Error::NoBuilder { name: "x".into() }.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn unplaced_platforms_say_why() {
        let e = Error::Unplaced {
            builder: "b".into(),
            problems: vec![
                Unplaced::Down { platform: "linux/arm64".into(), node: far(), reason: "refused".into() },
                Unplaced::Nowhere {
                    platform: "windows/amd64".into(),
                    builder: "b".into(),
                    offers: vec![("a".into(), vec!["linux/amd64".into()]), ("far".into(), vec![])],
                },
            ],
        };
        assert_eq!(e.kind(), ErrorKind::Unplaced);
        let text = e.to_string();
        assert!(text.contains("linux/arm64: node far (ssh://h:2) is unreachable: refused"), "{text}");
        assert!(text.contains("windows/amd64: no node of builder b builds it (a [linux/amd64]; far [])"), "{text}");
    }
}
