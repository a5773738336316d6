//! A build's steps as progress sees them: each starts with its typed
//! [`Vertex`] (numbered in the build's order, with the build's platform
//! and the stage's previous step as its input) and ends done, cached or
//! failed, every event with its time.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use polyarch_oci::Digest;

use super::{Run, StageState};
use crate::error::Result;
use crate::{Event, Vertex};

/// A started step.
pub(crate) struct Step {
    pub(crate) vertex: Vertex,
    t: Instant,
    /// The slot the step runs in, held until the step is said done or
    /// failed, so that the next step given it starts after this one ends.
    pub(crate) slot: Option<crate::slots::Slot>,
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
        Step { vertex, t: Instant::now(), slot: None }
    }

    /// The vertex of the next step of stage `st`: its position, the text,
    /// the build's platform and the stage's previous step as its input.
    pub(crate) fn step_vertex(&self, st: &mut StageState, text: &str) -> Vertex {
        let cross = polyarch_frontend::label::target_from_env(&self.env(st));
        Vertex { cross, ..self.base_vertex(st, text) }
    }

    /// The FROM step of a stage on named context `context`: counted as the
    /// stage's first step, named as BuildKit names the context's vertex.
    pub(crate) fn context_vertex(&self, st: &mut StageState, context: &str, text: String) -> Vertex {
        st.index += 1;
        let mut v = Vertex::context(context, text).with_platform(self.opts.platform.clone());
        v.onbuild = st.on_build;
        v.inputs.extend(st.last.take());
        st.last = Some(v.digest());
        v
    }

    /// The next step of the stage when it is its FROM: named, as BuildKit
    /// names it, with no target from the environment.
    pub(crate) fn base_vertex(&self, st: &mut StageState, text: &str) -> Vertex {
        st.index += 1;
        // A build of one stage names its steps without it, as BuildKit.
        let stage = if self.df.names_stages() { st.name.as_str() } else { "" };
        let mut v = Vertex::instruction(stage, st.index, st.total, text).with_platform(self.opts.platform.clone());
        if st.platform.normalize().format_all() != self.opts.platform.normalize().format_all() {
            v.runs_as = Some(st.platform.normalize());
        }
        v.onbuild = st.on_build;
        v.inputs.extend(st.last.take());
        st.last = Some(v.digest());
        v
    }

    /// The step a source a step reads was made by, an input of the step:
    /// the build context's (`load build context`) for none, a stage's last
    /// step for a stage, a named context of files' `load from client`; none
    /// for an image.
    pub(crate) fn source_input(&self, st: &StageState, from: Option<&str>, line: usize) -> Option<Digest> {
        let Some(from) = from else { return Some(Vertex::internal("load build context").digest()) };
        let from = self.expand(st, from, line).ok()?;
        if self.stage_named(&from, self.stages.len()).is_none() && self.named_files(&from).is_some() {
            let name = crate::named::context_name(&from).ok()?;
            return Some(Vertex::context(&name, "load from client").digest());
        }
        let j = self.stage_named(&from, self.stages.len())?;
        self.stages.get(j)?.as_ref()?.last.clone()
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
    /// cache): `Cached` then `Done`, or `Failed` with the error (none
    /// when it was cancelled).
    pub(crate) fn end_step(&self, step: Step, outcome: Result<bool>) -> Result<()> {
        match outcome {
            Ok(cached) => {
                if cached {
                    self.cached_step(&step);
                }
                self.done(step);
                Ok(())
            }
            // Stopped because the build failed elsewhere: the step stays
            // open, and ends as BuildKit's `CANCELED` when the build does.
            Err(e) if e.kind() == crate::error::ErrorKind::Cancelled => Err(e),
            Err(e) => {
                self.failed_step(step, e.to_string());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::copy::file_node;
    use crate::{BuildOptions, Builder, Event, MemFs, Vertex};

    /// Each step's inputs are the steps it reads: the stage's previous
    /// step, the context's step, another stage's last step.
    #[test]
    fn inputs_are_the_steps_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = polyarch_store::Store::open(dir.path()).unwrap();
        let mut ctx = MemFs::new();
        ctx.insert("f".into(), file_node(b"f", 0o644, 1));
        let df = "FROM scratch AS a\nCOPY f /f\nFROM scratch\nCOPY --from=a /f /g\nCOPY f /h\n";
        let vertices: Arc<Mutex<Vec<Vertex>>> = Arc::default();
        let v = vertices.clone();
        let b = Builder::new(store).with_events(Arc::new(move |e| {
            if let Event::Started { vertex, .. } = e {
                v.lock().unwrap().push(vertex);
            }
        }));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(b.build(&BuildOptions::new(df).with_context(ctx))).unwrap();
        let vertices = vertices.lock().unwrap().clone();
        let find = |name: &str| vertices.iter().find(|v| v.name() == name).unwrap_or_else(|| panic!("{name}"));
        let context = Vertex::internal("load build context").digest();
        // FROM scratch is no step (BuildKit's numbering): a stage on it
        // starts from nothing.
        assert!(!vertices.iter().any(|v| v.name().contains("FROM scratch")), "{vertices:?}");
        let a_copy = find("[a 1/1] COPY f /f");
        assert_eq!(a_copy.inputs, std::slice::from_ref(&context));
        let from = find("[stage-1 1/2] COPY --from=a /f /g");
        assert_eq!(from.inputs, [a_copy.digest()]);
        assert_eq!(find("[stage-1 2/2] COPY f /h").inputs, [from.digest(), context]);
    }
}
