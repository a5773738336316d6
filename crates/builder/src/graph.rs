//! The stage graph of a build: which needed stages each stage waits for,
//! and a scheduler that starts every stage as soon as those are done, so
//! that independent stages build in parallel (as BuildKit's solver does).

use std::future::Future;

use polyarch_solver::dag::{self, Dag, Driver, Flow, Stopped};
use polyarch_solver::CancelToken;

use crate::error::{Error, Result};

/// How long the other platforms of a failed build get to end by
/// themselves (their RUN processes killed, their stages stopped) before
/// they are aborted.
pub(crate) const STOP_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Stops a build once a part of it failed: the RUN processes still
/// running (through the executor's handle) and every scheduler of the
/// build (through the solver's token). Clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    exec: polyarch_exec::Cancel,
    token: CancelToken,
}

impl Stop {
    /// Stops the build; idempotent.
    pub(crate) fn fire(&self) {
        self.exec.cancel();
        self.token.cancel();
    }

    /// Whether the build was stopped.
    pub(crate) fn fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The handle RUN processes are given.
    pub(crate) fn exec(&self) -> &polyarch_exec::Cancel {
        &self.exec
    }
}

/// Needed stages and, for each, the needed stages it reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Graph {
    /// Needed stages, in Dockerfile order.
    stages: Vec<usize>,
    /// For `stages[k]`, the stages it waits for (all in `stages`).
    deps: Vec<Vec<usize>>,
}

impl Graph {
    /// The graph of `needed` stages; `deps(i)` names the stages `i` reads
    /// from. Edges to stages that are not needed, or that are not defined
    /// before `i`, are dropped: those stages are not built before `i` in
    /// Dockerfile order either, and `i` reports them as such.
    pub(crate) fn new(needed: &[usize], mut deps: impl FnMut(usize) -> Vec<usize>) -> Graph {
        let mut stages = needed.to_vec();
        stages.sort_unstable();
        stages.dedup();
        let deps = stages
            .iter()
            .map(|&i| {
                let mut d: Vec<usize> = deps(i).into_iter().filter(|j| *j < i && stages.contains(j)).collect();
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        Graph { stages, deps }
    }

    /// The stages `i` waits for.
    pub(crate) fn deps(&self, i: usize) -> &[usize] {
        self.stages.iter().position(|s| *s == i).map_or(&[], |k| self.deps[k].as_slice())
    }
}

/// The work of a build's stages, for [`schedule`].
pub(crate) trait StageWork {
    /// What a stage's task produces.
    type Out: Send + 'static;
    /// A stage's task.
    type Task: Future<Output = Result<Self::Out>> + Send + 'static;
    /// Makes stage `i`'s task (called in Dockerfile order among the
    /// stages that become ready together).
    fn start(&mut self, i: usize) -> Self::Task;
    /// Takes stage `i`'s result, before any dependent starts.
    fn finish(&mut self, i: usize, out: Self::Out) -> Result<()>;
}

/// Runs every stage of `graph` on its own task, each as soon as its
/// dependencies are done, on the solver's scheduler ([`dag::run`]). The
/// first failure fires `stop` (which also ends the schedules of the other
/// platforms sharing it), aborts the other tasks, waits for them to stop
/// and is returned; [`Error::Cancelled`] when another platform fired it.
pub(crate) async fn schedule<W: StageWork>(graph: &Graph, work: &mut W, stop: &Stop) -> Result<()> {
    let dag = Dag::new(
        graph
            .deps
            .iter()
            .map(|d| d.iter().filter_map(|s| graph.stages.iter().position(|x| x == s)).collect())
            .collect(),
    );
    let mut stages = Stages { stages: &graph.stages, work, stop };
    match dag::run(&dag, None, &mut stages, &stop.token).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Option("a stage could not be scheduled".into())),
        Err(Stopped::Failed(e)) => Err(e),
        Err(Stopped::Cancelled) => Err(Error::Cancelled),
    }
}

/// The stages of a build as the scheduler's nodes: node `k` is stage
/// `stages[k]`.
struct Stages<'a, W> {
    stages: &'a [usize],
    work: &'a mut W,
    stop: &'a Stop,
}

impl<W: StageWork> Driver for Stages<'_, W> {
    type Output = W::Out;
    type Error = Error;
    type Task = W::Task;

    fn start(&mut self, k: usize) -> W::Task {
        self.work.start(self.stages[k])
    }

    fn done(&mut self, k: usize, out: W::Out) -> Flow<Error> {
        match self.work.finish(self.stages[k], out) {
            Ok(()) => Flow::Continue,
            Err(e) => Flow::Stop(e),
        }
    }

    /// A stage failed (or the build was stopped elsewhere): the RUN
    /// processes of the whole build end now instead of running to their
    /// end before the build can report it; other tasks are aborted.
    fn stopping(&mut self) {
        self.stop.fire();
    }

    fn failed(&mut self, _: usize, e: std::result::Result<Error, tokio::task::JoinError>) -> Flow<Error> {
        // The other stages stop at their next await point, so that no step
        // (and no container) outlives the build.
        Flow::Stop(e.unwrap_or_else(|j| Error::Option(format!("a stage build stopped: {j}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Stage work made of two closures over a state.
    struct Fns<'s, S, F, G> {
        state: &'s mut S,
        start: F,
        finish: G,
    }

    impl<S, T, F, Fut, G> StageWork for Fns<'_, S, F, G>
    where
        F: FnMut(&mut S, usize) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
        G: FnMut(&mut S, usize, T) -> Result<()>,
    {
        type Out = T;
        type Task = Fut;
        fn start(&mut self, i: usize) -> Fut {
            (self.start)(self.state, i)
        }
        fn finish(&mut self, i: usize, out: T) -> Result<()> {
            (self.finish)(self.state, i, out)
        }
    }

    #[test]
    fn edges_keep_needed_earlier_stages_only() {
        let g = Graph::new(&[3, 0, 1], |i| match i {
            3 => vec![1, 0, 2, 0],
            1 => vec![4],
            _ => vec![],
        });
        assert_eq!(g.deps(3), &[0, 1]);
        assert!(g.deps(1).is_empty());
        assert!(g.deps(2).is_empty());
    }

    /// Waits until `what` has been recorded, failing after a timeout so
    /// that a sequential scheduler fails the test instead of hanging.
    async fn wait_for(seen: &Arc<Mutex<Vec<&'static str>>>, what: &'static str) -> Result<()> {
        for _ in 0..200 {
            if seen.lock().map(|s| s.contains(&what)).unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(Error::Option(format!("timed out waiting for {what}")))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn independent_stages_run_at_once_and_dependents_wait() {
        // Stages 0 and 1 are independent: each blocks until the other has
        // started. Stage 2 reads from both and must see both finished.
        let g = Graph::new(&[0, 1, 2], |i| if i == 2 { vec![0, 1] } else { vec![] });
        let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let mut finished: Vec<usize> = Vec::new();
        let start = |_: &mut Vec<usize>, i: usize| {
            let seen = seen.clone();
            async move {
                let (me, other, end) = match i {
                    0 => ("start0", "start1", "end0"),
                    1 => ("start1", "start0", "end1"),
                    _ => {
                        let s = seen.lock().map(|s| s.clone()).unwrap_or_default();
                        assert!(s.contains(&"end0") && s.contains(&"end1"), "stage 2 started early: {s:?}");
                        return Ok(i);
                    }
                };
                seen.lock().map_err(|_| Error::Option("poisoned".into()))?.push(me);
                wait_for(&seen, other).await?;
                // Block the thread too, as RUN steps do.
                tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(20)));
                seen.lock().map_err(|_| Error::Option("poisoned".into()))?.push(end);
                Ok(i)
            }
        };
        let finish = |f: &mut Vec<usize>, i: usize, out: usize| {
            assert_eq!(i, out);
            f.push(i);
            Ok(())
        };
        schedule(&g, &mut Fns { state: &mut finished, start, finish }, &Stop::default()).await.unwrap();
        assert_eq!(finished.len(), 3);
        assert_eq!(finished.last(), Some(&2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_is_returned_and_dependents_never_start() {
        let g = Graph::new(&[0, 1], |i| if i == 1 { vec![0] } else { vec![] });
        let mut started: Vec<usize> = Vec::new();
        let mut work = Fns {
            state: &mut started,
            start: |s: &mut Vec<usize>, i| {
                s.push(i);
                async move {
                    if i == 0 {
                        Err(Error::Option("boom".into()))
                    } else {
                        Ok(())
                    }
                }
            },
            finish: |_: &mut Vec<usize>, _, ()| Ok(()),
        };
        let r = schedule(&g, &mut work, &Stop::default()).await;
        assert!(r.is_err());
        assert_eq!(started, vec![0]);
    }
}
