//! The stage graph of a build: which needed stages each stage waits for,
//! and a scheduler that starts every stage as soon as those are done, so
//! that independent stages build in parallel (as BuildKit's solver does).

use std::future::Future;

use crate::error::{Error, Result};

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

    /// Stages not started whose dependencies are all done, in order.
    fn ready(&self, started: &[bool], done: &[bool]) -> Vec<usize> {
        (0..self.stages.len())
            .filter(|&k| {
                !started[k]
                    && self.deps[k].iter().all(|d| self.stages.iter().position(|s| s == d).is_some_and(|p| done[p]))
            })
            .map(|k| self.stages[k])
            .collect()
    }
}

/// Runs every stage of `graph` on its own task, each as soon as its
/// dependencies are done. `start(state, i)` makes stage `i`'s task (called
/// in Dockerfile order among the stages that become ready together);
/// `finish(state, i, out)` takes its result before any dependent starts.
/// The first failure aborts the other tasks, waits for them to stop and
/// is returned.
pub(crate) async fn schedule<S, T, F, Fut, G>(graph: &Graph, state: &mut S, mut start: F, mut finish: G) -> Result<()>
where
    F: FnMut(&mut S, usize) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
    G: FnMut(&mut S, usize, T) -> Result<()>,
{
    let n = graph.stages.len();
    let mut started = vec![false; n];
    let mut done = vec![false; n];
    let mut set = tokio::task::JoinSet::new();
    loop {
        for i in graph.ready(&started, &done) {
            if let Some(k) = graph.stages.iter().position(|s| *s == i) {
                started[k] = true;
            }
            let task = start(state, i);
            set.spawn(async move { (i, task.await) });
        }
        let Some(joined) = set.join_next().await else { break };
        let failed = match joined {
            Ok((i, Ok(out))) => match finish(state, i, out) {
                Ok(()) => {
                    if let Some(k) = graph.stages.iter().position(|s| *s == i) {
                        done[k] = true;
                    }
                    continue;
                }
                Err(e) => e,
            },
            Ok((_, Err(e))) => e,
            Err(e) => Error::Option(format!("a stage build stopped: {e}")),
        };
        // Let the other stages stop at their next await point, so that no
        // step (and no container) outlives the build.
        set.abort_all();
        while set.join_next().await.is_some() {}
        return Err(failed);
    }
    if done.iter().all(|d| *d) {
        Ok(())
    } else {
        Err(Error::Option("a stage could not be scheduled".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

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
        schedule(&g, &mut finished, start, finish).await.unwrap();
        assert_eq!(finished.len(), 3);
        assert_eq!(finished.last(), Some(&2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_is_returned_and_dependents_never_start() {
        let g = Graph::new(&[0, 1], |i| if i == 1 { vec![0] } else { vec![] });
        let mut started: Vec<usize> = Vec::new();
        let r = schedule(
            &g,
            &mut started,
            |s: &mut Vec<usize>, i| {
                s.push(i);
                async move {
                    if i == 0 {
                        Err(Error::Option("boom".into()))
                    } else {
                        Ok(())
                    }
                }
            },
            |_, _, ()| Ok(()),
        )
        .await;
        assert!(r.is_err());
        assert_eq!(started, vec![0]);
    }
}
