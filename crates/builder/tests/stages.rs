//! Multi-stage builds: only the stages the target needs are built, a stage
//! starts only after the stages it reads from are done, and building the
//! independent stages at once leaves the result and the cache unchanged.

use std::sync::{Arc, Mutex};

use polyarch_builder::fs::{Kind, MemFs, Node};
use polyarch_builder::{BuildOptions, Builder, Event};
use polyarch_oci::Platform;
use polyarch_store::Store;

const DOCKERFILE: &str = "FROM scratch AS a
COPY a.txt /a
FROM scratch AS unused
COPY missing.txt /x
FROM scratch AS b
COPY b.txt /b
FROM a
COPY --from=b /b /b2
";

fn file(data: &str) -> Node {
    Node::new(Kind::File(polyarch_builder::fs::Content::bytes(data.as_bytes())), 0o644, 0, 0, 0)
}

fn options() -> BuildOptions {
    let mut ctx = MemFs::new();
    ctx.insert("a.txt".into(), file("A"));
    ctx.insert("b.txt".into(), file("B"));
    let mut o = BuildOptions::new(DOCKERFILE).with_context(ctx).with_platform(Platform::new("linux", "amd64", None));
    o.source_date_epoch = Some(0);
    o.rewrite_timestamp = true;
    o
}

fn build(store: &Store) -> (polyarch_builder::BuildResult, Vec<Event>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let builder = Builder::new(store.clone()).with_events(Arc::new(move |e| sink.lock().unwrap().push(e)));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = rt.block_on(builder.build(&options())).unwrap();
    let ev = events.lock().unwrap().clone();
    (r, ev)
}

/// Position in `events` of the event for the step named `name`.
fn position(events: &[Event], name: &str, started: bool) -> usize {
    let id = events
        .iter()
        .find_map(|e| match e {
            Event::Started { vertex, .. } if vertex.name() == name => Some(vertex.id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no step {name}: {events:?}"));
    events
        .iter()
        .position(|e| match e {
            Event::Started { vertex, .. } => started && vertex.id == id,
            Event::Done { vertex, .. } => !started && vertex.id == id,
            _ => false,
        })
        .unwrap_or_else(|| panic!("step {name} never {}", if started { "started" } else { "finished" }))
}

#[test]
fn dependents_wait_and_results_do_not_depend_on_scheduling() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (r, events) = build(&store);
    let fs = polyarch_builder::dispatch::load_fs(&store, &r.layers).unwrap();
    assert_eq!(fs.read("/a").unwrap().as_slice(), b"A");
    assert_eq!(fs.read("/b2").unwrap().as_slice(), b"B");
    assert!(fs.get("/x").is_none());
    assert_eq!((r.executed, r.cached), (3, 0));

    // A stage FROM another stage has no FROM step (BuildKit's numbering):
    // its first step starts once both stages it reads are done.
    let copy = position(&events, "[stage-3 1/1] COPY --from=b /b /b2", true);
    assert!(position(&events, "[a 1/1] COPY a.txt /a", false) < copy, "{events:?}");
    assert!(position(&events, "[b 1/1] COPY b.txt /b", false) < copy, "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Started { vertex, .. } if vertex.name().starts_with("[unused"))));
    let mut ids: Vec<usize> = events
        .iter()
        .filter_map(|e| if let Event::Started { vertex, .. } = e { Some(vertex.id) } else { None })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=ids.len()).collect::<Vec<_>>(), "steps are numbered once each");

    let (again, _) = build(&store);
    assert_eq!(again.manifest.digest, r.manifest.digest);
    assert_eq!((again.executed, again.cached), (0, 3));

    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (other, _) = build(&Store::open(dir.path()).unwrap());
        assert_eq!(other.manifest.digest, r.manifest.digest, "same image whatever order the stages ran in");
    }
}
