//! What a build on nodes reports while it runs. Events that concern a node
//! or a platform carry them as fields; the CLI renders them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// A build step's event, numbered in one sequence over every node.
    /// A started step's name leaves out node and platform
    /// (`[stage-0 2/3] RUN x`).
    Step {
        /// The node building it (`local` for a platform built here
        /// instead of on its node).
        node: String,
        /// The platform, when the step belongs to one.
        platform: Option<String>,
        /// The event.
        event: polyarch_builder::Event,
    },
}

/// Where events go.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Splits the platform off a step name as [`polyarch_builder::multi`] writes
/// it (`[linux/arm64 stage-0 2/3] RUN x` → `linux/arm64`,
/// `[stage-0 2/3] RUN x`; `[linux/arm64] FROM` → `linux/arm64`, `FROM`).
/// This is the one place the name is read: from here on the platform is
/// a field, on the wire and in [`Event::Step`].
pub fn split_platform(name: &str) -> (Option<String>, String) {
    let Some(rest) = name.strip_prefix('[') else {
        return (None, name.to_string());
    };
    let end = rest.find([' ', ']']).unwrap_or(rest.len());
    let (platform, after) = rest.split_at(end);
    if Platform::parse(platform).is_err() {
        return (None, name.to_string());
    }
    let name = match after.strip_prefix(']') {
        Some(tail) => tail.strip_prefix(' ').unwrap_or(tail).to_string(),
        None => format!("[{}", after.strip_prefix(' ').unwrap_or(after)),
    };
    (Some(platform.to_string()), name)
}

#[derive(Default)]
struct Numbers {
    next: usize,
    /// (source, step on the source) → (step, platform).
    ids: HashMap<(usize, usize), (usize, Option<String>)>,
}

/// Step numbers of every source (each node, the builds here) in one
/// sequence, with each step's node and platform.
#[derive(Clone)]
pub(crate) struct Steps {
    out: Sink,
    numbers: Arc<Mutex<Numbers>>,
}

impl Steps {
    pub(crate) fn new(out: Sink) -> Steps {
        Steps { out, numbers: Arc::default() }
    }

    /// Hands on step event `e` of `source`, built on `node`; `platform`
    /// is the platform of a started step.
    pub(crate) fn step(&self, source: usize, node: &str, platform: Option<String>, e: polyarch_builder::Event) {
        use polyarch_builder::Event as E;
        let (id, platform, e) = {
            let Ok(mut n) = self.numbers.lock() else { return };
            let local = match &e {
                E::Started { id, .. } | E::Cached { id } | E::Done { id, .. } | E::Failed { id, .. } => *id,
                E::Log { id, .. } => *id,
                #[allow(unreachable_patterns)]
                _ => return,
            };
            let next = n.next + 1;
            let (id, known) = n.ids.entry((source, local)).or_insert((next, platform.clone())).clone();
            n.next = n.next.max(id);
            (id, platform.or(known), e)
        };
        let event = match e {
            E::Started { name, .. } => E::Started { id, name },
            E::Cached { .. } => E::Cached { id },
            E::Done { elapsed, .. } => E::Done { id, elapsed },
            E::Failed { message, .. } => E::Failed { id, message },
            E::Log { elapsed, line, .. } => E::Log { id, elapsed, line },
            #[allow(unreachable_patterns)]
            other => other,
        };
        (self.out)(Event::Step { node: node.to_string(), platform, event });
    }

    /// Hands on an event that is not a step's.
    pub(crate) fn say(&self, e: Event) {
        (self.out)(e)
    }

    /// A build-library sink for source `source`, whose step names carry
    /// the platform; `node` names the node of each platform.
    pub(crate) fn sink(
        &self,
        source: usize,
        node: impl Fn(Option<&str>) -> String + Send + Sync + 'static,
    ) -> polyarch_builder::EventSink {
        let steps = self.clone();
        Arc::new(move |e| {
            let (platform, e) = match e {
                polyarch_builder::Event::Started { id, name } => {
                    let (platform, name) = split_platform(&name);
                    (platform, polyarch_builder::Event::Started { id, name })
                }
                other => (None, other),
            };
            let known = platform.clone().or_else(|| steps.platform_of(source, &e));
            steps.step(source, &node(known.as_deref()), platform, e)
        })
    }

    fn platform_of(&self, source: usize, e: &polyarch_builder::Event) -> Option<String> {
        use polyarch_builder::Event as E;
        let id = match e {
            E::Started { id, .. } | E::Cached { id } | E::Done { id, .. } | E::Failed { id, .. } => *id,
            E::Log { id, .. } => *id,
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        self.numbers.lock().ok()?.ids.get(&(source, id)).and_then(|(_, p)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_builder::Event as E;

    #[test]
    fn platforms_split_off_step_names() {
        let s = |n: &str| split_platform(n);
        assert_eq!(s("[linux/arm64 stage-0 2/3] RUN x"), (Some("linux/arm64".into()), "[stage-0 2/3] RUN x".into()));
        assert_eq!(s("[linux/arm/v7] FROM"), (Some("linux/arm/v7".into()), "FROM".into()));
        assert_eq!(s("exporting"), (None, "exporting".into()));
        assert_eq!(s("[internal] load"), (None, "[internal] load".into()));
    }

    #[test]
    fn steps_of_every_source_share_one_sequence_and_keep_their_platform() {
        let got: Arc<Mutex<Vec<Event>>> = Arc::default();
        let g = got.clone();
        let steps = Steps::new(Arc::new(move |e| g.lock().unwrap().push(e)));
        let here = steps.sink(0, |p| if p == Some("linux/amd64") { "here".into() } else { "local".into() });
        here(E::Started { id: 1, name: "[linux/amd64 stage-0 1/2] FROM".into() });
        steps.step(1, "far", Some("linux/arm64".into()), E::Started { id: 1, name: "[stage-0 1/2] FROM".into() });
        steps.step(1, "far", None, E::Cached { id: 1 });
        here(E::Cached { id: 1 });
        let got = got.lock().unwrap();
        let summary: Vec<(String, Option<String>, E)> = got
            .iter()
            .map(|e| match e {
                Event::Step { node, platform, event } => (node.clone(), platform.clone(), event.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        let amd = Some("linux/amd64".to_string());
        let arm = Some("linux/arm64".to_string());
        assert_eq!(
            summary,
            [
                ("here".into(), amd.clone(), E::Started { id: 1, name: "[stage-0 1/2] FROM".into() }),
                ("far".into(), arm.clone(), E::Started { id: 2, name: "[stage-0 1/2] FROM".into() }),
                ("far".into(), arm, E::Cached { id: 2 }),
                ("here".into(), amd, E::Cached { id: 1 }),
            ]
        );
    }
}
