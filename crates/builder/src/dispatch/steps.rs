//! A build's steps as progress sees them: each starts with its typed
//! [`Vertex`] (numbered in the build's order, with the build's platform
//! and the stage's previous step as its input) and ends done, cached or
//! failed, every event with its time.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::{Run, StageState};
use crate::error::Result;
use crate::{Event, Vertex};

/// A started step.
pub(crate) struct Step {
    pub(crate) vertex: Vertex,
    t: Instant,
}

impl Run<'_> {
    pub(crate) fn emit(&self, e: Event) {
        (self.b.events)(e)
    }

    /// Starts a step: numbers it and says so.
    pub(crate) fn start(&self, mut vertex: Vertex) -> Step {
        vertex.id = self.step.fetch_add(1, Ordering::SeqCst) + 1;
        if vertex.platform.is_none() {
            vertex.platform = Some(self.opts.platform.clone());
        }
        self.emit(Event::Started { vertex: vertex.clone(), at: SystemTime::now() });
        Step { vertex, t: Instant::now() }
    }

    /// The vertex of the next step of stage `st`: its position, the text,
    /// the build's platform and the stage's previous step as its input.
    pub(crate) fn step_vertex(&self, st: &mut StageState, text: &str) -> Vertex {
        st.index += 1;
        let mut v = Vertex::instruction(&st.name, st.index, st.total, text).with_platform(self.opts.platform.clone());
        v.onbuild = st.on_build;
        v.inputs.extend(st.last.take());
        st.last = Some(v.digest());
        v
    }

    pub(crate) fn done(&self, step: Step) {
        self.emit(Event::Done { elapsed: step.t.elapsed(), vertex: step.vertex, at: SystemTime::now() });
    }

    /// Says that a step's result came from the cache.
    pub(crate) fn cached_step(&self, step: &Step) {
        self.emit(Event::Cached { vertex: step.vertex.clone(), at: SystemTime::now() });
    }

    /// Says that a step failed.
    pub(crate) fn failed_step(&self, step: Step, message: String) {
        self.emit(Event::Failed { vertex: step.vertex, at: SystemTime::now(), message });
    }

    /// Ends a filesystem step by its outcome (whether it came from the
    /// cache): `Cached` then `Done`, or `Failed` with the error.
    pub(crate) fn end_step(&self, step: Step, outcome: Result<bool>) -> Result<()> {
        match outcome {
            Ok(cached) => {
                if cached {
                    self.cached_step(&step);
                }
                self.done(step);
                Ok(())
            }
            Err(e) => {
                self.failed_step(step, e.to_string());
                Err(e)
            }
        }
    }
}
