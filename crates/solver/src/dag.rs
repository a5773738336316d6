//! The scheduling core every build runs on: the nodes of a dependency
//! graph each start as soon as the nodes they wait for are done, each on
//! its own task, in index order among those that become ready together.
//! What a node is, what it produces and what a failure stops is the
//! [`Driver`]'s: [`crate::Solver`] drives it with vertices (keys, cache,
//! worker), a builder with whole stages. Nothing outlives [`run`]: when it
//! ends, by success, failure or cancellation, every task still running
//! has been aborted and waited for.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use tokio::task::{JoinError, JoinSet};

use crate::cancel::CancelToken;

/// A dependency graph of nodes `0..n`: `deps[i]` are the nodes `i` waits
/// for (a node named twice waits once per naming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    deps: Vec<Vec<usize>>,
}

impl Dag {
    /// The graph with `deps[i]` the nodes `i` waits for. Edges to a node
    /// out of range are dropped; a cycle leaves its nodes never ready
    /// ([`run`] then ends with `Ok(false)`).
    pub fn new(deps: Vec<Vec<usize>>) -> Dag {
        let n = deps.len();
        Dag { deps: deps.into_iter().map(|d| d.into_iter().filter(|x| *x < n).collect()).collect() }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// The nodes to run for `targets`: them and everything they wait for,
    /// directly or not.
    pub fn needed(&self, targets: impl IntoIterator<Item = usize>) -> Vec<bool> {
        let mut needed = vec![false; self.len()];
        let mut todo: Vec<usize> = targets.into_iter().filter(|t| *t < self.len()).collect();
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut needed[i], true) {
                todo.extend_from_slice(&self.deps[i]);
            }
        }
        needed
    }
}

/// What the run does after a node ended.
#[derive(Debug)]
pub enum Flow<E> {
    /// Go on: the node's dependents may start (after a success).
    Continue,
    /// The node failed: never start what depends on it, directly or not,
    /// and go on with the rest ([`Driver::skipped`] is told of each).
    SkipDependents,
    /// End the run with this error.
    Stop(E),
}

/// How a run ended early.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped<E> {
    /// The token was cancelled.
    Cancelled,
    /// A node's end said [`Flow::Stop`].
    Failed(E),
}

/// What a run is made of: starting a node's task and taking its end.
pub trait Driver {
    /// What a node's task produces.
    type Output: Send + 'static;
    /// How a node's task fails.
    type Error: Send + 'static;
    /// A node's task.
    type Task: Future<Output = Result<Self::Output, Self::Error>> + Send + 'static;

    /// Makes node `i`'s task; its dependencies are all done.
    fn start(&mut self, i: usize) -> Self::Task;

    /// Node `i`'s task succeeded; an error here (taking the output) is
    /// the node's failure.
    fn done(&mut self, i: usize, output: Self::Output) -> Flow<Self::Error>;

    /// Node `i`'s task failed, or it panicked or was aborted (`Err`).
    fn failed(&mut self, i: usize, error: Result<Self::Error, JoinError>) -> Flow<Self::Error>;

    /// Node `i` will never start: something it waits for failed.
    fn skipped(&mut self, _i: usize) {}

    /// The run is about to stop its tasks (before they are aborted), so
    /// that their work can end promptly.
    fn stopping(&mut self) {}

    /// How long tasks still running after [`Driver::stopping`] get to end
    /// by themselves before they are aborted. A task that runs tasks of
    /// its own (a nested run) should end by itself, since an aborted one
    /// cannot wait for them; none by default.
    fn drain(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A node's task's end, with the node.
type Ended<D> = (usize, Result<<D as Driver>::Output, <D as Driver>::Error>);

/// Runs every `needed` node of `dag` with `driver` (all nodes when
/// `needed` is `None`). Returns whether every needed node ran (`false`
/// when some were skipped or never became ready), or how it stopped.
pub async fn run<D: Driver>(
    dag: &Dag,
    needed: Option<&[bool]>,
    driver: &mut D,
    cancel: &CancelToken,
) -> Result<bool, Stopped<D::Error>> {
    let n = dag.len();
    let needed: Vec<bool> = (0..n).map(|i| needed.is_none_or(|m| m.get(i).copied().unwrap_or(false))).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, deps) in dag.deps.iter().enumerate() {
        for &d in deps {
            dependents[d].push(i);
        }
    }
    let mut waiting: Vec<usize> = dag.deps.iter().map(Vec::len).collect();
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| needed[i] && waiting[i] == 0).collect();
    let mut ended = vec![false; n];
    let mut ran = 0usize;
    let mut set: JoinSet<Ended<D>> = JoinSet::new();
    let mut tasks: HashMap<tokio::task::Id, usize> = HashMap::new();
    let outcome = loop {
        while let Some(i) = ready.pop_first() {
            if std::mem::replace(&mut ended[i], true) {
                continue;
            }
            let task = driver.start(i);
            let handle = set.spawn(async move { (i, task.await) });
            tasks.insert(handle.id(), i);
        }
        if set.is_empty() {
            break Ok(ran == needed.iter().filter(|x| **x).count());
        }
        let joined = tokio::select! {
            biased;
            _ = cancel.cancelled() => break Err(Stopped::Cancelled),
            j = set.join_next_with_id() => j,
        };
        let Some(joined) = joined else { continue };
        let (i, flow) = match joined {
            Ok((id, (i, Ok(out)))) => {
                tasks.remove(&id);
                (i, driver.done(i, out))
            }
            Ok((id, (i, Err(e)))) => {
                tasks.remove(&id);
                (i, driver.failed(i, Ok(e)))
            }
            Err(e) => {
                let i = tasks.remove(&e.id()).unwrap_or(usize::MAX);
                (i, driver.failed(i, Err(e)))
            }
        };
        match flow {
            Flow::Continue => {
                ran += 1;
                for &d in dependents.get(i).map_or(&[][..], Vec::as_slice) {
                    waiting[d] = waiting[d].saturating_sub(1);
                    if waiting[d] == 0 && needed[d] {
                        ready.insert(d);
                    }
                }
            }
            Flow::SkipDependents => {
                let mut todo = dependents.get(i).cloned().unwrap_or_default();
                let mut seen = BTreeSet::new();
                while let Some(d) = todo.pop() {
                    if seen.insert(d) {
                        todo.extend_from_slice(&dependents[d]);
                    }
                }
                for d in seen {
                    if needed[d] && !std::mem::replace(&mut ended[d], true) {
                        driver.skipped(d);
                    }
                }
            }
            Flow::Stop(e) => break Err(Stopped::Failed(e)),
        }
    };
    if !set.is_empty() {
        driver.stopping();
        let drain = driver.drain();
        if !drain.is_zero() {
            let _ = tokio::time::timeout(drain, async { while set.join_next().await.is_some() {} }).await;
        }
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    fn note(log: &Log, s: String) {
        if let Ok(mut l) = log.lock() {
            l.push(s);
        }
    }

    fn seen(log: &Log, s: &str) -> bool {
        log.lock().map(|l| l.iter().any(|x| x == s)).unwrap_or(false)
    }

    /// Nodes that log their start and end; `fail` fails, `wait[i]` is a
    /// node `i` waits to see started before it ends.
    struct Test {
        log: Log,
        fail: Option<usize>,
        wait: HashMap<usize, usize>,
        flow_on_fail: fn() -> Flow<String>,
        skipped: Vec<usize>,
        stopping: bool,
    }

    impl Test {
        fn new(fail: Option<usize>, flow_on_fail: fn() -> Flow<String>) -> Test {
            Test { log: Log::default(), fail, wait: HashMap::new(), flow_on_fail, skipped: vec![], stopping: false }
        }
    }

    impl Driver for Test {
        type Output = usize;
        type Error = String;
        type Task = std::pin::Pin<Box<dyn Future<Output = Result<usize, String>> + Send>>;

        fn start(&mut self, i: usize) -> Self::Task {
            let (log, fail, wait) = (self.log.clone(), self.fail == Some(i), self.wait.get(&i).copied());
            Box::pin(async move {
                note(&log, format!("start{i}"));
                if let Some(w) = wait {
                    let mut n = 0;
                    while !seen(&log, &format!("start{w}")) {
                        n += 1;
                        if n > 500 {
                            return Err(format!("{i} never saw {w} start"));
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                if fail {
                    return Err(format!("boom{i}"));
                }
                note(&log, format!("end{i}"));
                Ok(i)
            })
        }

        fn done(&mut self, i: usize, out: usize) -> Flow<String> {
            assert_eq!(i, out);
            Flow::Continue
        }

        fn failed(&mut self, _: usize, e: Result<String, JoinError>) -> Flow<String> {
            match (self.flow_on_fail)() {
                Flow::Stop(_) => Flow::Stop(e.unwrap_or_else(|j| j.to_string())),
                f => f,
            }
        }

        fn skipped(&mut self, i: usize) {
            self.skipped.push(i);
        }

        fn stopping(&mut self) {
            self.stopping = true;
        }
    }

    fn stop() -> Flow<String> {
        Flow::Stop(String::new())
    }

    fn skip() -> Flow<String> {
        Flow::SkipDependents
    }

    fn index(log: &Log, s: &str) -> usize {
        log.lock().unwrap().iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} not in the log"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn independent_nodes_run_at_once_and_dependents_wait_for_all_inputs() {
        // 0 and 1 are independent: each ends only after the other started.
        let dag = Dag::new(vec![vec![], vec![], vec![0, 1, 0]]);
        let mut t = Test::new(None, stop);
        t.wait = HashMap::from([(0, 1), (1, 0)]);
        assert_eq!(run(&dag, None, &mut t, &CancelToken::new()).await, Ok(true));
        assert!(index(&t.log, "start2") > index(&t.log, "end0").max(index(&t.log, "end1")));
    }

    #[tokio::test]
    async fn only_needed_nodes_run() {
        let dag = Dag::new(vec![vec![], vec![0], vec![], vec![2]]);
        let needed = dag.needed([1]);
        assert_eq!(needed, [true, true, false, false]);
        let mut t = Test::new(None, stop);
        assert_eq!(run(&dag, Some(&needed), &mut t, &CancelToken::new()).await, Ok(true));
        assert!(!seen(&t.log, "start2") && !seen(&t.log, "start3"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_aborts_running_nodes_and_starts_no_dependent() {
        // 1 fails once 0 (which never ends by itself) has started.
        let dag = Dag::new(vec![vec![], vec![], vec![1]]);
        let mut t = Test::new(Some(1), stop);
        t.wait = HashMap::from([(0, 99), (1, 0)]);
        let r = run(&dag, None, &mut t, &CancelToken::new()).await;
        assert_eq!(r, Err(Stopped::Failed("boom1".into())));
        assert!(t.stopping && !seen(&t.log, "start2") && !seen(&t.log, "end0"));
    }

    #[tokio::test]
    async fn a_skip_passes_over_every_dependent_and_finishes_the_rest() {
        let dag = Dag::new(vec![vec![], vec![0], vec![1], vec![], vec![3, 2]]);
        let mut t = Test::new(Some(0), skip);
        assert_eq!(run(&dag, None, &mut t, &CancelToken::new()).await, Ok(false));
        t.skipped.sort_unstable();
        assert_eq!(t.skipped, [1, 2, 4]);
        assert!(seen(&t.log, "end3"));
    }

    /// A driver whose stop lets running nodes end by themselves.
    struct Draining(Test);

    impl Driver for Draining {
        type Output = usize;
        type Error = String;
        type Task = <Test as Driver>::Task;
        fn start(&mut self, i: usize) -> Self::Task {
            self.0.start(i)
        }
        fn done(&mut self, i: usize, out: usize) -> Flow<String> {
            self.0.done(i, out)
        }
        fn failed(&mut self, i: usize, e: Result<String, JoinError>) -> Flow<String> {
            self.0.failed(i, e)
        }
        fn drain(&self) -> Duration {
            Duration::from_secs(10)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_draining_stop_lets_running_nodes_end() {
        // 1 fails once 0 started; 0 ends by itself after seeing 1 start.
        let dag = Dag::new(vec![vec![], vec![]]);
        let mut t = Draining(Test::new(Some(1), stop));
        t.0.wait = HashMap::from([(0, 1), (1, 0)]);
        let r = run(&dag, None, &mut t, &CancelToken::new()).await;
        assert_eq!(r, Err(Stopped::Failed("boom1".into())));
        assert!(seen(&t.0.log, "end0"), "node 0 ran to its end");
    }

    #[tokio::test]
    async fn a_cancelled_token_stops_the_run() {
        let dag = Dag::new(vec![vec![]]);
        let mut t = Test::new(None, stop);
        t.wait = HashMap::from([(0, 99)]);
        let token = CancelToken::new();
        let c = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.cancel();
        });
        assert_eq!(run(&dag, None, &mut t, &token).await, Err(Stopped::Cancelled));
        assert!(t.stopping);
    }

    #[tokio::test]
    async fn a_cycle_never_runs() {
        let dag = Dag::new(vec![vec![1], vec![0], vec![], vec![7]]);
        let mut t = Test::new(None, stop);
        assert_eq!(run(&dag, None, &mut t, &CancelToken::new()).await, Ok(false));
        assert!(seen(&t.log, "end2") && seen(&t.log, "end3") && !seen(&t.log, "start0"));
    }
}
