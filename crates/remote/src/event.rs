//! What a build on nodes reports while it runs. Events that concern a node
//! or a platform carry them as fields; the CLI renders them.

use std::sync::{Arc, Mutex};

use polyarch_builder::event::{renumbered, StepNumbers};
use polyarch_oci::Platform;

use crate::error::NodeId;
use crate::schedule::How;
use crate::session::Sent;

/// Why a platform builds on this machine instead of its node
/// (`--fallback-emulation`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The node that would build it cannot be reached.
    Down {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// No node of the builder offers it.
    Nowhere {
        /// The builder.
        builder: String,
    },
    /// The node failed while building it.
    Lost {
        /// The node.
        node: NodeId,
        /// What broke.
        reason: String,
    },
}

/// A progress event of a build on nodes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A platform goes to a node.
    Placed {
        /// The platform.
        platform: String,
        /// The node.
        node: NodeId,
        /// Why that node.
        how: How,
    },
    /// Platforms build here instead.
    Fallback {
        /// The platforms.
        platforms: Vec<String>,
        /// Why.
        why: Fallback,
    },
    /// A node holds the build context.
    ContextSent {
        /// The node.
        node: NodeId,
        /// What moved.
        sent: Sent,
    },
    /// A node's results came back.
    Fetched {
        /// The node.
        node: NodeId,
        /// Blobs fetched.
        blobs: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// A build step's event, numbered in one sequence over every node;
    /// its vertex carries the node (`local` for a platform built here
    /// instead of on its node) and the platform as fields.
    Step(Box<polyarch_builder::Event>),
}

/// Where events go.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Step numbers of every source (each node, the builds here) in one
/// sequence ([`polyarch_builder::StepNumbers`], the builder's numbering),
/// with each step's node set.
#[derive(Clone)]
pub(crate) struct Steps {
    out: Sink,
    numbers: Arc<Mutex<StepNumbers>>,
}

impl Steps {
    pub(crate) fn new(out: Sink) -> Steps {
        Steps { out, numbers: Arc::default() }
    }

    /// Hands on step event `e` of `source`, built on `node`.
    pub(crate) fn step(&self, source: usize, node: &str, mut e: polyarch_builder::Event) {
        {
            let Ok(mut n) = self.numbers.lock() else { return };
            n.renumber(source, &mut e);
        }
        e.vertex_mut().node = Some(node.to_string());
        (self.out)(Event::Step(Box::new(e)))
    }

    /// Hands on an event that is not a step's.
    pub(crate) fn say(&self, e: Event) {
        (self.out)(e)
    }

    /// A build-library sink for source `source`; `node` names the node of
    /// each platform.
    pub(crate) fn sink(
        &self,
        source: usize,
        node: impl Fn(Option<&Platform>) -> String + Send + Sync + 'static,
    ) -> polyarch_builder::EventSink {
        let out = self.out.clone();
        let step: polyarch_builder::EventSink = Arc::new(move |e| out(Event::Step(Box::new(e))));
        renumbered(step, self.numbers.clone(), source, move |v| v.node = Some(node(v.platform.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_builder::{Event as E, Vertex};
    use std::time::SystemTime;

    #[test]
    fn steps_of_every_source_share_one_sequence_and_keep_their_platform() {
        let got: Arc<Mutex<Vec<Event>>> = Arc::default();
        let g = got.clone();
        let steps = Steps::new(Arc::new(move |e| g.lock().unwrap().push(e)));
        let amd = Platform::parse("linux/amd64").unwrap();
        let arm = Platform::parse("linux/arm64").unwrap();
        let here =
            steps.sink(0, |p| if p.is_some_and(|p| p.architecture == "amd64") { "here" } else { "local" }.into());
        let at = SystemTime::UNIX_EPOCH;
        let step =
            |p: &Platform| Vertex { id: 1, ..Vertex::instruction("stage-0", 1, 2, "FROM x").with_platform(p.clone()) };
        here(E::Started { vertex: step(&amd), at });
        steps.step(1, "far", E::Started { vertex: step(&arm), at });
        steps.step(1, "far", E::Cached { vertex: step(&arm), at });
        here(E::Cached { vertex: step(&amd), at });
        let got = got.lock().unwrap();
        let summary: Vec<(usize, String, bool)> = got
            .iter()
            .map(|e| match e {
                Event::Step(e) => (e.vertex().id, e.vertex().name(), matches!(e.as_ref(), E::Cached { .. })),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "[linux/amd64@here stage-0 1/2] FROM x".to_string(), false),
                (2, "[linux/arm64@far stage-0 1/2] FROM x".to_string(), false),
                (2, "[linux/arm64@far stage-0 1/2] FROM x".to_string(), true),
                (1, "[linux/amd64@here stage-0 1/2] FROM x".to_string(), true),
            ]
        );
    }
}
