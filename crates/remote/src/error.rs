//! Errors of remote builds.

/// What went wrong with a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached, broke the protocol or went away: its
    /// platforms can be built elsewhere (`--fallback-emulation`).
    #[error("node {node}: {reason}")]
    Node {
        /// The node's name and endpoint.
        node: String,
        /// Why.
        reason: String,
    },
    /// The node ran the build and the build failed (a Dockerfile error, a
    /// failing RUN step): building it elsewhere would fail the same way.
    #[error("{message}")]
    Build {
        /// The platform, when the failure belongs to one.
        platform: Option<String>,
        /// The node's message.
        message: String,
    },
    /// Reading or writing local content.
    #[error(transparent)]
    Store(#[from] polyarch_store::Error),
    /// The protocol, on the worker's side.
    #[error("{0}")]
    Protocol(String),
    /// A context file could not be read.
    #[error("reading the build context: {0}")]
    Context(Box<polyarch_build::Error>),
}

impl Error {
    /// Whether the node itself failed (unreachable, died, broke the protocol).
    pub fn is_node_failure(&self) -> bool {
        matches!(self, Error::Node { .. })
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
