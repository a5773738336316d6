//! The build's steps as vertices of its plan: a step whose name is the
//! name of a vertex of the plan (`polyarch debug plan`) takes that
//! vertex's digest, so that progress (rawjson's `digest`,
//! `inputs`, a log's or status's `vertex`) and the plan name a step
//! alike, as BuildKit's progress names LLB vertices; inputs name the
//! digests their steps took. Steps the plan has no vertex for (loading
//! metadata, exporting) keep their own digests.

use std::collections::HashMap;

use polyarch_builder::Vertex;
use polyarch_oci::Digest;
use polyarch_solver::Graph;

/// Plan vertices by name, and what the steps shown so far became.
#[derive(Debug, Default)]
pub struct PlannedSteps {
    /// Every name of a plan vertex → its digest.
    by_name: HashMap<String, Digest>,
    /// A step's own digest → the plan digest it took.
    renamed: HashMap<Digest, Digest>,
    /// By step number, what a step's events get: its plan digest and its
    /// inputs (worked out at its first event, not at each log line).
    steps: HashMap<usize, (Option<Digest>, Vec<Digest>)>,
}

impl PlannedSteps {
    /// Adds the vertices of `graph` (a plan's, or its context vertices
    /// before the plan is made); a name already known keeps its vertex.
    pub fn add(&mut self, graph: &Graph) {
        self.steps.clear();
        for v in graph.vertices() {
            for name in graph.names(v.id()) {
                self.by_name.entry(name.clone()).or_insert_with(|| v.digest().clone());
            }
        }
    }

    /// Gives `v` its plan vertex's digest, if the plan has one of its
    /// name, and its inputs (the steps it starts from, in the build's
    /// order) the digests those steps took.
    pub fn apply(&mut self, v: &mut Vertex) {
        if v.planned.is_some() {
            return;
        }
        if let Some((planned, inputs)) = self.steps.get(&v.id) {
            v.planned = planned.clone();
            v.inputs = inputs.clone();
            return;
        }
        if let Some(digest) = self.by_name.get(&v.name()) {
            self.renamed.insert(v.identity(), digest.clone());
            v.planned = Some(digest.clone());
        }
        for i in &mut v.inputs {
            if let Some(d) = self.renamed.get(i) {
                *i = d.clone();
            }
        }
        self.steps.insert(v.id, (v.planned.clone(), v.inputs.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_oci::Platform;
    use polyarch_solver::op::{ContextSource, Copy, ImageSource, Op, Source};
    use polyarch_solver::VertexSpec;

    fn amd64() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }

    #[test]
    fn steps_named_as_plan_vertices_take_their_digests_and_inputs() {
        let mut g = Graph::new();
        let image = Op::Source(Source::Image(ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            resolved: None,
        }));
        let from = g.add(VertexSpec::new(image, amd64()).with_name("[1/2] FROM busybox")).unwrap();
        let ctx = g
            .add(
                VertexSpec::new(Op::Source(Source::Context(ContextSource::default())), amd64())
                    .with_name("[internal] load build context"),
            )
            .unwrap();
        let copy = Op::Copy(Copy::dockerfile(vec!["f".into()], "/f".into(), false));
        let copy = g.add(VertexSpec::new(copy, amd64()).with_inputs([from, ctx]).with_name("[2/2] COPY f /f")).unwrap();
        let digest = |id| g.get(id).unwrap().digest().clone();

        let mut planned = PlannedSteps::default();
        planned.add(&g);
        let step = |id: usize, v: Vertex| Vertex { id, ..v };
        let mut from_step = step(1, Vertex::instruction("", 1, 2, "FROM busybox"));
        planned.apply(&mut from_step);
        assert_eq!(from_step.digest(), digest(from));
        let mut metadata = step(2, Vertex::internal("load metadata for docker.io/library/busybox:latest"));
        let own = metadata.digest();
        planned.apply(&mut metadata);
        assert_eq!(metadata.digest(), own, "no plan vertex: its own digest");
        let mut ctx_step = step(3, Vertex::internal("load build context"));
        let ctx_own = ctx_step.identity();
        planned.apply(&mut ctx_step);
        let mut copy_step = step(4, Vertex::instruction("", 2, 2, "COPY f /f"));
        copy_step.inputs = vec![Vertex::instruction("", 1, 2, "FROM busybox").identity(), ctx_own];
        let later_event = copy_step.clone();
        planned.apply(&mut copy_step);
        assert_eq!((copy_step.digest(), copy_step.inputs.clone()), (digest(copy), vec![digest(from), digest(ctx)]));
        // A later event of the same step: the same digest and inputs.
        let mut later_event = later_event;
        planned.apply(&mut later_event);
        assert_eq!(later_event, copy_step);
        // A later step the plan does not have names the COPY by its plan digest.
        let mut export = step(5, Vertex::plain("exporting to image"));
        export.inputs = vec![Vertex::instruction("", 2, 2, "COPY f /f").identity(), own.clone()];
        planned.apply(&mut export);
        assert_eq!(export.inputs, [digest(copy), own]);
    }
}
