//! The build graph: vertices (an op, its inputs and its platform) added in
//! dependency order, so the graph has no cycles by construction. A vertex
//! whose digest equals one already added is the same vertex: adding the
//! steps of every platform to one graph merges what they share (a stage on
//! the build platform, a COPY of the same context files), and the
//! scheduler runs it once.

use std::collections::HashMap;
use std::sync::Arc;

use polyarch_oci::{Digest, Platform};
use serde_json::json;

use crate::error::{Error, Result};
use crate::key;
use crate::op::Op;

/// Version tag of vertex digests.
const VERTEX_VERSION: &str = "polyarch.vertex.v0";

/// The position of a vertex in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexId(pub(crate) usize);

impl VertexId {
    /// The position.
    pub fn index(self) -> usize {
        self.0
    }
}

impl std::fmt::Display for VertexId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What to add to a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexSpec {
    /// The op.
    pub op: Op,
    /// The vertices it reads, by position (an op names them by index here).
    pub inputs: Vec<VertexId>,
    /// The platform it is built for.
    pub platform: Platform,
    /// Its progress name (`[linux/arm64 build 2/3] RUN make`); not part of
    /// its digest or cache key.
    pub name: String,
    /// Run it even when the cache has its key (`--no-cache`).
    pub ignore_cache: bool,
}

impl VertexSpec {
    /// A vertex of `op` for `platform`, with no inputs and the op's type as name.
    pub fn new(op: Op, platform: Platform) -> VertexSpec {
        let name = op.type_name().to_string();
        VertexSpec { op, inputs: Vec::new(), platform, name, ignore_cache: false }
    }

    /// Sets the inputs.
    pub fn with_inputs(mut self, inputs: impl IntoIterator<Item = VertexId>) -> VertexSpec {
        self.inputs = inputs.into_iter().collect();
        self
    }

    /// Sets the progress name.
    pub fn with_name(mut self, name: impl Into<String>) -> VertexSpec {
        self.name = name.into();
        self
    }

    /// Sets whether a cached result is ignored.
    pub fn with_ignore_cache(mut self, ignore: bool) -> VertexSpec {
        self.ignore_cache = ignore;
        self
    }
}

/// A vertex of a graph: an op, its inputs and its platform, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    id: VertexId,
    op: Op,
    inputs: Vec<VertexId>,
    input_digests: Vec<Digest>,
    platform: Platform,
    name: String,
    digest: Digest,
}

impl Vertex {
    /// Its position in the graph.
    pub fn id(&self) -> VertexId {
        self.id
    }

    /// The op.
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// The vertices it reads.
    pub fn inputs(&self) -> &[VertexId] {
        &self.inputs
    }

    /// The digests of the vertices it reads.
    pub fn input_digests(&self) -> &[Digest] {
        &self.input_digests
    }

    /// The platform of the first add (see [`Graph::platforms`] for all).
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The progress name of the first add.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The vertex's identity, as an LLB digest: the op with every field,
    /// its inputs' digests and, where the op's result depends on it, its
    /// platform. Progress names and cache options are not part of it.
    /// Unlike the cache key it needs no input's result.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    fn compute_digest(op: &Op, platform: &Platform, inputs: &[Digest]) -> Result<Digest> {
        let platform = op.platform_matters().then(|| key::platform_string(platform));
        let value = json!({ "type": VERTEX_VERSION, "op": op, "platform": platform, "inputs": inputs });
        key::digest_of(&value, "vertex")
    }
}

/// A root of the solve: the result of `vertex` is the image of `platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The platform the result is for.
    pub platform: Platform,
    /// The vertex.
    pub vertex: VertexId,
}

/// A graph of vertices for any number of platforms.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    vertices: Vec<Arc<Vertex>>,
    by_digest: HashMap<Digest, VertexId>,
    /// Per vertex: every platform it was added for, in order, once each.
    platforms: Vec<Vec<Platform>>,
    /// Per vertex: every progress name it was added with, once each.
    names: Vec<Vec<String>>,
    ignore_cache: Vec<bool>,
    targets: Vec<Target>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a vertex whose inputs are already in the graph. A vertex with
    /// the digest of one already present is merged into it: the existing
    /// id is returned and the new platform and name are recorded.
    pub fn add(&mut self, spec: VertexSpec) -> Result<VertexId> {
        let mut input_digests = Vec::with_capacity(spec.inputs.len());
        for i in &spec.inputs {
            let v = self.vertices.get(i.0).ok_or(Error::UnknownInput { vertex: spec.name.clone(), input: i.0 })?;
            input_digests.push(v.digest.clone());
        }
        for u in spec.op.input_uses() {
            if u.input >= spec.inputs.len() {
                let (vertex, op, inputs) = (spec.name.clone(), spec.op.type_name(), spec.inputs.len());
                return Err(Error::InputOutOfRange { vertex, op, input: u.input, inputs });
            }
        }
        let digest = Vertex::compute_digest(&spec.op, &spec.platform, &input_digests)?;
        if let Some(&id) = self.by_digest.get(&digest) {
            let k = id.0;
            if !self.platforms[k].iter().any(|p| key::same_platform(p, &spec.platform)) {
                self.platforms[k].push(spec.platform);
            }
            if !self.names[k].contains(&spec.name) {
                self.names[k].push(spec.name);
            }
            self.ignore_cache[k] |= spec.ignore_cache;
            return Ok(id);
        }
        let id = VertexId(self.vertices.len());
        self.by_digest.insert(digest.clone(), id);
        self.platforms.push(vec![spec.platform.clone()]);
        self.names.push(vec![spec.name.clone()]);
        self.ignore_cache.push(spec.ignore_cache);
        let VertexSpec { op, inputs, platform, name, .. } = spec;
        self.vertices.push(Arc::new(Vertex { id, op, inputs, input_digests, platform, name, digest }));
        Ok(id)
    }

    /// Asks for the result of `vertex` as the image of `platform`.
    pub fn target(&mut self, platform: Platform, vertex: VertexId) -> Result<()> {
        self.get(vertex)?;
        self.targets.push(Target { platform, vertex });
        Ok(())
    }

    /// Adds every vertex and target of `other`; returns where each of its
    /// vertices is in this graph.
    pub fn extend(&mut self, other: &Graph) -> Result<Vec<VertexId>> {
        let mut map: Vec<VertexId> = Vec::with_capacity(other.vertices.len());
        for (k, v) in other.vertices.iter().enumerate() {
            let inputs = v.inputs.iter().map(|i| map[i.0]).collect::<Vec<_>>();
            let mut id = None;
            for (p, n) in other.platforms[k].iter().zip(other.names[k].iter().cycle()) {
                let spec = VertexSpec {
                    op: v.op.clone(),
                    inputs: inputs.clone(),
                    platform: p.clone(),
                    name: n.clone(),
                    ignore_cache: other.ignore_cache[k],
                };
                id = Some(self.add(spec)?);
            }
            for n in &other.names[k] {
                let id = id.ok_or(Error::UnknownVertex { index: k, len: other.len() })?;
                if !self.names[id.0].contains(n) {
                    self.names[id.0].push(n.clone());
                }
            }
            map.push(id.ok_or(Error::UnknownVertex { index: k, len: other.len() })?);
        }
        for t in &other.targets {
            self.target(t.platform.clone(), map[t.vertex.0])?;
        }
        Ok(map)
    }

    /// The vertex `id`.
    pub fn get(&self, id: VertexId) -> Result<&Arc<Vertex>> {
        self.vertices.get(id.0).ok_or(Error::UnknownVertex { index: id.0, len: self.vertices.len() })
    }

    /// The vertex with `digest`, if present.
    pub fn find(&self, digest: &Digest) -> Option<VertexId> {
        self.by_digest.get(digest).copied()
    }

    /// Every vertex, inputs before the vertices that read them.
    pub fn vertices(&self) -> impl Iterator<Item = &Arc<Vertex>> {
        self.vertices.iter()
    }

    /// How many vertices the graph has.
    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    /// Whether the graph has no vertex.
    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// Every platform `id` was added for.
    pub fn platforms(&self, id: VertexId) -> &[Platform] {
        self.platforms.get(id.0).map_or(&[], Vec::as_slice)
    }

    /// Every progress name `id` was added with.
    pub fn names(&self, id: VertexId) -> &[String] {
        self.names.get(id.0).map_or(&[], Vec::as_slice)
    }

    /// Whether a cached result of `id` is ignored.
    pub fn ignores_cache(&self, id: VertexId) -> bool {
        self.ignore_cache.get(id.0).copied().unwrap_or(false)
    }

    /// The platforms of `id`, as errors and events name them
    /// (`linux/amd64, linux/arm64`).
    pub fn platform_list(&self, id: VertexId) -> String {
        self.platforms(id).iter().map(key::platform_string).collect::<Vec<_>>().join(", ")
    }

    /// The results asked for.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The graph as JSON, for `polyarch debug plan`: every vertex with its
    /// index, digest, op, inputs, platforms and names, and the targets.
    pub fn to_json(&self) -> serde_json::Value {
        let vertices: Vec<serde_json::Value> = self
            .vertices
            .iter()
            .map(|v| {
                json!({
                    "index": v.id.0,
                    "digest": v.digest,
                    "type": v.op.type_name(),
                    "op": v.op,
                    "inputs": v.inputs.iter().map(|i| i.0).collect::<Vec<_>>(),
                    "platforms": self.platforms(v.id).iter().map(key::platform_string).collect::<Vec<_>>(),
                    "names": self.names(v.id),
                    "ignore_cache": self.ignores_cache(v.id),
                })
            })
            .collect();
        let targets: Vec<serde_json::Value> = self
            .targets
            .iter()
            .map(|t| json!({ "platform": key::platform_string(&t.platform), "vertex": t.vertex.0 }))
            .collect();
        json!({ "vertices": vertices, "targets": targets })
    }

    /// The graph in Graphviz's DOT language: a node per vertex labelled
    /// with its name, short digest and platforms, an edge from each input.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph polyarch {\n  rankdir=LR;\n  node [shape=box, fontname=monospace];\n");
        for v in &self.vertices {
            let short = v.digest.hex().get(..12).unwrap_or(v.digest.hex());
            let label =
                format!("{}\\n{} {}\\n{}", dot_escape(&v.name), v.op.type_name(), short, self.platform_list(v.id));
            out.push_str(&format!("  v{} [label=\"{label}\"];\n", v.id.0));
        }
        for v in &self.vertices {
            for i in &v.inputs {
                out.push_str(&format!("  v{} -> v{};\n", i.0, v.id.0));
            }
        }
        for (k, t) in self.targets.iter().enumerate() {
            let p = dot_escape(&key::platform_string(&t.platform));
            out.push_str(&format!("  t{k} [shape=oval, label=\"{p}\"];\n  v{} -> t{k};\n", t.vertex.0));
        }
        out.push_str("}\n");
        out
    }
}

/// Escapes a string for a double-quoted DOT label.
fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Copy, ImageSource, Mkfile, Source};

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn image(name: &str) -> Op {
        Op::Source(Source::Image(ImageSource {
            reference: name.into(),
            resolved: Some(Digest::sha256(name.as_bytes())),
        }))
    }

    fn file(path: &str) -> Op {
        Op::Mkfile(Mkfile { input: Some(0), path: path.into(), data: b"x".to_vec(), mode: 0o644, ..Mkfile::default() })
    }

    #[test]
    fn bad_inputs_are_refused_with_the_vertex() {
        let mut g = Graph::new();
        let e = g.add(VertexSpec::new(file("/f"), p("linux/amd64")).with_name("RUN x")).unwrap_err();
        assert!(matches!(e, Error::InputOutOfRange { input: 0, inputs: 0, .. }), "{e}");
        assert!(e.to_string().contains("RUN x"), "{e}");
        let spec = VertexSpec::new(file("/f"), p("linux/amd64")).with_inputs([VertexId(3)]);
        assert!(matches!(g.add(spec).unwrap_err(), Error::UnknownInput { input: 3, .. }));
        assert_eq!(g.target(p("linux/amd64"), VertexId(0)).unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert!(g.is_empty());
    }

    #[test]
    fn digests_cover_op_inputs_and_platform_where_it_matters() {
        let mut g = Graph::new();
        let a = g.add(VertexSpec::new(image("a"), p("linux/amd64"))).unwrap();
        let a_arm = g.add(VertexSpec::new(image("a"), p("linux/arm64"))).unwrap();
        assert_ne!(a, a_arm, "an image of another platform is another vertex");
        let b = g.add(VertexSpec::new(image("b"), p("linux/amd64"))).unwrap();
        let f1 = g.add(VertexSpec::new(file("/f"), p("linux/amd64")).with_inputs([a]).with_name("one")).unwrap();
        let f2 = g.add(VertexSpec::new(file("/f"), p("linux/s390x")).with_inputs([a]).with_name("two")).unwrap();
        assert_eq!(f1, f2, "a file op of another platform on the same input is the same vertex");
        assert_eq!(g.names(f1), ["one", "two"]);
        assert_eq!(g.platform_list(f1), "linux/amd64, linux/s390x");
        let f3 = g.add(VertexSpec::new(file("/f"), p("linux/amd64")).with_inputs([b])).unwrap();
        assert_ne!(f1, f3, "another input is another vertex");
        let f4 = g.add(VertexSpec::new(file("/g"), p("linux/amd64")).with_inputs([a])).unwrap();
        assert_ne!(f1, f4);
        assert_eq!(g.find(g.get(f1).unwrap().digest()), Some(f1));
    }

    #[test]
    fn graphs_of_each_platform_merge_into_one() {
        let per_platform = |t: &str| {
            let mut g = Graph::new();
            let build = g.add(VertexSpec::new(image("golang"), p("linux/amd64"))).unwrap();
            let out = g
                .add(VertexSpec::new(file("/out"), p(t)).with_inputs([build]).with_name(format!("[{t}] out")))
                .unwrap();
            let base = g.add(VertexSpec::new(image("alpine"), p(t))).unwrap();
            let copy = Op::Copy(Copy { source: 0, dest: Some(1), paths: vec!["/out".into()], ..Copy::default() });
            let app = g.add(VertexSpec::new(copy, p(t)).with_inputs([out, base])).unwrap();
            g.target(p(t), app).unwrap();
            g
        };
        let mut all = Graph::new();
        for t in ["linux/arm64", "linux/s390x", "linux/arm/v7"] {
            all.extend(&per_platform(t)).unwrap();
        }
        assert_eq!(all.len(), 2 + 2 * 3, "golang and its file once, then an image and a copy per platform");
        assert_eq!(all.targets().len(), 3);
        assert_eq!(all.names(VertexId(1)).len(), 3);
    }

    #[test]
    fn json_and_dot_show_every_vertex_and_edge() {
        let mut g = Graph::new();
        let a = g.add(VertexSpec::new(image("a"), p("linux/arm64")).with_name("FROM \"a\"")).unwrap();
        let f = g.add(VertexSpec::new(file("/f"), p("linux/arm64")).with_inputs([a])).unwrap();
        g.target(p("linux/arm64"), f).unwrap();
        let j = g.to_json();
        assert_eq!(j["vertices"].as_array().unwrap().len(), 2);
        assert_eq!(j["vertices"][1]["inputs"], serde_json::json!([0]));
        assert_eq!(j["vertices"][1]["type"], "mkfile");
        assert_eq!(j["vertices"][0]["platforms"], serde_json::json!(["linux/arm64"]));
        assert_eq!(j["vertices"][1]["digest"], g.get(f).unwrap().digest().to_string());
        assert_eq!(j["targets"], serde_json::json!([{ "platform": "linux/arm64", "vertex": 1 }]));
        let dot = g.to_dot();
        assert!(dot.starts_with("digraph polyarch {") && dot.trim_end().ends_with('}'), "{dot}");
        assert!(dot.contains("v0 -> v1;") && dot.contains("v1 -> t0;"), "{dot}");
        assert!(dot.contains(r#"FROM \"a\""#), "quotes are escaped: {dot}");
    }
}
