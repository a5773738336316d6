//! Progress of a build as typed events: each step is a [`Vertex`] whose
//! fields (stage, instruction index and total, text, platform, node) say
//! what it is, and whose display name is computed from them in one place,
//! [`Vertex::name`] (BuildKit's `[linux/arm64 stage-0 2/3] RUN ...`). What
//! happens to a step is an [`Event`] with its time. [`StepNumbers`] is the
//! one numbering of steps of several builds (platforms, nodes, the
//! command's own steps) in one sequence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use polyarch_oci::{Digest, Platform};
pub use polyarch_solver::Stream;

/// A step of a build, as progress shows it (BuildKit's vertex).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vertex {
    /// Step number, from 1 in the order steps start.
    pub id: usize,
    /// The stage, for an instruction's step (`stage-0`, `build`).
    pub stage: Option<String>,
    /// The instruction's position in its stage, from 1 (FROM is 1).
    pub index: usize,
    /// How many steps the stage has.
    pub total: usize,
    /// What the step does: the instruction (`RUN make`), or for other
    /// steps a description (`load metadata for docker.io/library/busybox:latest`).
    pub text: String,
    /// The step is an ONBUILD trigger of the stage's base.
    pub onbuild: bool,
    /// The step is internal work of the build (`[internal] ...`).
    pub internal: bool,
    /// The named context (`--build-context NAME=...`) the step loads:
    /// named `[context NAME] ...` whatever the platform, as BuildKit's
    /// named-context vertices are.
    pub context: Option<String>,
    /// The platform of the build the step belongs to.
    pub platform: Option<Platform>,
    /// The platform its stage runs as, where that is not `platform` (a
    /// stage `FROM --platform=$BUILDPLATFORM`): the name shows it instead.
    pub runs_as: Option<Platform>,
    /// The target platform the step's environment names (`ARG
    /// TARGETARCH` in scope), shown as `->ARCH` after the platform where
    /// it is another (see [`polyarch_frontend::label`]).
    pub cross: Option<Platform>,
    /// The name shows the platform (a build of several platforms).
    pub show_platform: bool,
    /// The builder node that runs it, for a build on a builder's nodes.
    pub node: Option<String>,
    /// The digests of the steps whose results it starts from.
    pub inputs: Vec<Digest>,
    /// The digest of the vertex of the build's plan (`polyarch debug
    /// plan`) that this step is, when the step is one: [`Vertex::digest`]
    /// is then that digest, so progress and the plan name a step alike.
    pub planned: Option<Digest>,
}

impl Vertex {
    /// The step of an instruction: `index` of `total` in `stage`.
    pub fn instruction(stage: &str, index: usize, total: usize, text: impl Into<String>) -> Vertex {
        Vertex { stage: Some(stage.to_string()), index, total, text: text.into(), ..Vertex::default() }
    }

    /// Internal work (`[internal] load build context`).
    pub fn internal(text: impl Into<String>) -> Vertex {
        Vertex { internal: true, text: text.into(), ..Vertex::default() }
    }

    /// A step of named context `name` (`[context base] load from client`).
    pub fn context(name: &str, text: impl Into<String>) -> Vertex {
        Vertex { context: Some(name.to_string()), text: text.into(), ..Vertex::default() }
    }

    /// A step named by its text alone (`exporting to image`).
    pub fn plain(text: impl Into<String>) -> Vertex {
        Vertex { text: text.into(), ..Vertex::default() }
    }

    /// Sets the platform.
    pub fn with_platform(mut self, platform: Platform) -> Vertex {
        self.platform = Some(platform);
        self
    }

    /// The name progress shows, as BuildKit names vertices: the platform
    /// its stage runs as (`->ARCH` for the target its environment names,
    /// `@node` on a builder's node), then the stage and position or
    /// `internal`, in brackets, then the text (`ONBUILD ` before a
    /// trigger's). `[linux/arm64@arm1 stage-0 2/3] RUN make`.
    pub fn name(&self) -> String {
        if let Some(c) = &self.context {
            return format!("[context {c}] {}", self.text);
        }
        let mut label: Vec<String> = Vec::new();
        let shown =
            |p: &Platform| polyarch_frontend::label::label(self.runs_as.as_ref().unwrap_or(p), self.cross.as_ref());
        match (&self.platform, &self.node) {
            (Some(p), Some(n)) => label.push(format!("{}@{n}", shown(p))),
            (Some(p), None) if self.show_platform => label.push(shown(p)),
            (None, Some(n)) => label.push(n.clone()),
            _ => {}
        }
        if let Some(stage) = &self.stage {
            let width = self.total.to_string().len();
            let stage = if stage.is_empty() { String::new() } else { format!("{stage} ") };
            label.push(format!("{stage}{:>width$}/{}", self.index, self.total));
        } else if self.internal {
            label.push("internal".into());
        }
        let onbuild = if self.onbuild { "ONBUILD " } else { "" };
        if label.is_empty() {
            format!("{onbuild}{}", self.text)
        } else {
            format!("[{}] {onbuild}{}", label.join(" "), self.text)
        }
    }

    /// The step's digest: its plan vertex's ([`Vertex::planned`]) where
    /// it has one, else [`Vertex::identity`].
    pub fn digest(&self) -> Digest {
        self.planned.clone().unwrap_or_else(|| self.identity())
    }

    /// A digest of what the step is (platform, stage, position, text),
    /// the same in every run of the same build and on every node; its
    /// number and node are not part of it.
    pub fn identity(&self) -> Digest {
        let platform = self.platform.as_ref().map(|p| p.format()).unwrap_or_default();
        let mut identity = serde_json::json!({
            "v": "polyarch.vertex.v0",
            "platform": platform,
            "stage": self.stage,
            "index": self.index,
            "total": self.total,
            "internal": self.internal,
            "onbuild": self.onbuild,
            "text": self.text,
        });
        if let Some(c) = &self.context {
            identity["context"] = c.clone().into();
        }
        Digest::sha256(identity.to_string().as_bytes())
    }
}

/// What happened to a step, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The step started.
    Started {
        /// The step.
        vertex: Vertex,
        /// When.
        at: SystemTime,
    },
    /// Its result came from the cache (a `Done` follows).
    Cached {
        /// The step.
        vertex: Vertex,
        /// When.
        at: SystemTime,
    },
    /// The step finished.
    Done {
        /// The step.
        vertex: Vertex,
        /// When.
        at: SystemTime,
        /// How long it took.
        elapsed: Duration,
    },
    /// The step failed.
    Failed {
        /// The step.
        vertex: Vertex,
        /// When.
        at: SystemTime,
        /// Why.
        message: String,
    },
    /// A line the step's process wrote.
    Log {
        /// The step.
        vertex: Vertex,
        /// When.
        at: SystemTime,
        /// Which stream.
        stream: Stream,
        /// The line, without its newline.
        line: String,
    },
    /// Progress of a part of the step (BuildKit's `VertexStatus`): a blob
    /// moving, a layer extracting.
    Status {
        /// The step.
        vertex: Vertex,
        /// When.
        at: SystemTime,
        /// The part and how far it is.
        status: Status,
    },
}

/// How far a part of a step is (BuildKit's `VertexStatus`): `id` names
/// the part as BuildKit does (`sha256:...` of a blob pulled or pushed,
/// `extracting sha256:...`, `pushing layers`), `current` and `total` count
/// bytes; `started` and `completed` when it began and ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// What the part is.
    pub id: String,
    /// Units done so far (bytes for a blob).
    pub current: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// When the part began.
    pub started: Option<SystemTime>,
    /// When the part ended.
    pub completed: Option<SystemTime>,
}

impl Status {
    /// A part that begins at `at`, of `total` units when known.
    pub fn begin(id: impl Into<String>, total: Option<u64>, at: SystemTime) -> Status {
        Status { id: id.into(), current: 0, total, started: Some(at), completed: None }
    }

    /// The same part, ended at `at` with every unit done.
    pub fn end(&self, at: SystemTime) -> Status {
        Status { current: self.total.unwrap_or(self.current), completed: Some(at), ..self.clone() }
    }
}

impl Event {
    /// The step of the event.
    pub fn vertex(&self) -> &Vertex {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex, .. }
            | Event::Done { vertex, .. }
            | Event::Failed { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Status { vertex, .. } => vertex,
        }
    }

    /// The step of the event, to change.
    pub fn vertex_mut(&mut self) -> &mut Vertex {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex, .. }
            | Event::Done { vertex, .. }
            | Event::Failed { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Status { vertex, .. } => vertex,
        }
    }

    /// When it happened.
    pub fn at(&self) -> SystemTime {
        match self {
            Event::Started { at, .. }
            | Event::Cached { at, .. }
            | Event::Done { at, .. }
            | Event::Failed { at, .. }
            | Event::Log { at, .. }
            | Event::Status { at, .. } => *at,
        }
    }
}

/// Where events go.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// Step numbers of several builds (platforms, build nodes, the command's
/// own steps) in one sequence: each (source, step) gets the next number
/// when first seen. The one numbering every multi-build uses.
#[derive(Debug, Default)]
pub struct StepNumbers {
    next: usize,
    ids: HashMap<(usize, usize), usize>,
}

impl StepNumbers {
    /// The number of step `id` of `source` in the sequence.
    pub fn number(&mut self, source: usize, id: usize) -> usize {
        let next = self.next + 1;
        let n = *self.ids.entry((source, id)).or_insert(next);
        self.next = self.next.max(n);
        n
    }

    /// The number the next new step gets.
    pub fn peek(&self) -> usize {
        self.next + 1
    }

    /// Moves `event`'s step of `source` into the sequence.
    pub fn renumber(&mut self, source: usize, event: &mut Event) {
        let v = event.vertex_mut();
        v.id = self.number(source, v.id);
    }
}

/// A sink for the events of build `source`: their step numbers move into
/// `numbers`' sequence and `edit` changes each step (its platform shown,
/// its node set), then they go to `out`.
pub fn renumbered(
    out: EventSink,
    numbers: Arc<Mutex<StepNumbers>>,
    source: usize,
    edit: impl Fn(&mut Vertex) + Send + Sync + 'static,
) -> EventSink {
    Arc::new(move |mut e: Event| {
        {
            let Ok(mut n) = numbers.lock() else { return };
            n.renumber(source, &mut e);
        }
        edit(e.vertex_mut());
        out(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm64() -> Platform {
        Platform::new("linux", "arm64", None)
    }

    #[test]
    fn names_come_from_the_fields() {
        let mut v = Vertex::instruction("stage-0", 2, 3, "RUN make");
        assert_eq!(v.name(), "[stage-0 2/3] RUN make");
        v.platform = Some(arm64());
        assert_eq!(v.name(), "[stage-0 2/3] RUN make", "one platform: not shown");
        v.show_platform = true;
        assert_eq!(v.name(), "[linux/arm64 stage-0 2/3] RUN make");
        v.node = Some("arm1".into());
        assert_eq!(v.name(), "[linux/arm64@arm1 stage-0 2/3] RUN make");
        // A step of a stage that runs as the build platform, for arm64.
        v.runs_as = Some(Platform::new("linux", "amd64", None));
        assert_eq!(v.name(), "[linux/amd64@arm1 stage-0 2/3] RUN make");
        v.cross = Some(arm64());
        assert_eq!(v.name(), "[linux/amd64->arm64@arm1 stage-0 2/3] RUN make");
        v.node = None;
        assert_eq!(v.name(), "[linux/amd64->arm64 stage-0 2/3] RUN make");
        // A build of one stage: no stage in the name, as BuildKit's.
        let one = Vertex::instruction("", 2, 3, "RUN make");
        assert_eq!(one.name(), "[2/3] RUN make");
        let mut v = Vertex::instruction("build", 3, 12, "COPY a b");
        v.onbuild = true;
        assert_eq!(v.name(), "[build  3/12] ONBUILD COPY a b");
        let v = Vertex::internal("load metadata for docker.io/library/busybox:latest");
        assert_eq!(v.name(), "[internal] load metadata for docker.io/library/busybox:latest");
        let mut v = v.with_platform(arm64());
        v.show_platform = true;
        assert_eq!(v.name(), "[linux/arm64 internal] load metadata for docker.io/library/busybox:latest");
        let mut v = Vertex::plain("exporting to image");
        assert_eq!(v.name(), "exporting to image");
        v.node = Some("n".into());
        assert_eq!(v.name(), "[n] exporting to image");
    }

    #[test]
    fn digests_are_stable_and_tell_steps_apart() {
        let a = Vertex::instruction("stage-0", 2, 3, "RUN make").with_platform(arm64());
        let mut same = a.clone();
        same.id = 9;
        same.node = Some("far".into());
        same.show_platform = true;
        assert_eq!(a.digest(), same.digest(), "number, node and display do not change it");
        let amd = Vertex { platform: Some(Platform::new("linux", "amd64", None)), ..a.clone() };
        assert_ne!(a.digest(), amd.digest());
        assert_ne!(a.digest(), Vertex { index: 3, ..a.clone() }.digest());
        assert_eq!(
            a.digest().to_string(),
            Vertex::instruction("stage-0", 2, 3, "RUN make").with_platform(arm64()).digest().to_string()
        );
    }

    #[test]
    fn sources_share_one_sequence() {
        let got: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let g = got.clone();
        let out: EventSink = Arc::new(move |e| g.lock().unwrap().push((e.vertex().id, e.vertex().name())));
        let numbers = Arc::new(Mutex::new(StepNumbers::default()));
        let a = renumbered(out.clone(), numbers.clone(), 0, |v| v.show_platform = true);
        let b = renumbered(out, numbers.clone(), 1, |v| v.node = Some("far".into()));
        let at = SystemTime::UNIX_EPOCH;
        let step = |id: usize| Vertex { id, ..Vertex::instruction("s", 1, 1, "FROM x").with_platform(arm64()) };
        a(Event::Started { vertex: step(1), at });
        b(Event::Started { vertex: step(1), at });
        a(Event::Done { vertex: step(1), at, elapsed: Duration::ZERO });
        b(Event::Started { vertex: step(2), at });
        assert_eq!(
            *got.lock().unwrap(),
            [
                (1, "[linux/arm64 s 1/1] FROM x".to_string()),
                (2, "[linux/arm64@far s 1/1] FROM x".to_string()),
                (1, "[linux/arm64 s 1/1] FROM x".to_string()),
                (3, "[linux/arm64@far s 1/1] FROM x".to_string()),
            ]
        );
        assert_eq!(numbers.lock().unwrap().peek(), 4);
    }
}
