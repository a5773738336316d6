//! A bounded mutation fuzzer that runs under `cargo test` on stable.
//!
//! A target replays every file of its checked-in corpus
//! (`testdata/fuzz/<target>/`, crashes found earlier included), then
//! mutates those inputs with a seeded generator for a bounded time. Each
//! case must return without panicking, within a time bound, and with a peak
//! of allocated memory linear in the input's size (the test binary installs
//! [`Counting`] as its global allocator; [`Fuzz::run`] checks it did).
//!
//! Knobs, all from the environment so deeper local runs need no edits:
//! `POLYARCH_FUZZ_SECS` (mutation time per target, default 3),
//! `POLYARCH_FUZZ_SEED` (a number, or `random`; default fixed per target),
//! `POLYARCH_FUZZ_OUT` (where failing inputs are written, default
//! `$TMPDIR/polyarch-fuzz`).

mod alloc;
mod mutate;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use alloc::Counting;
pub use mutate::{mutate, Rng};

/// Allocations past this many bytes in one case fail outright.
const HARD_CAP: usize = 1 << 30;

/// One fuzz target.
pub struct Fuzz {
    name: String,
    corpus: PathBuf,
    seeds: Vec<(String, Vec<u8>)>,
    dict: Vec<Vec<u8>>,
    max_len: usize,
    mem_base: usize,
    mem_per_byte: usize,
    case_time: Duration,
    budget: Duration,
    seed: u64,
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Corpus files replayed.
    pub replayed: usize,
    /// Mutated cases run.
    pub cases: u64,
    /// The largest peak of memory of one case, in bytes.
    pub max_peak: usize,
}

impl Fuzz {
    /// A target named `name` whose corpus is the directory `corpus` (it
    /// must exist and hold at least one file). Defaults: inputs up to
    /// 4 KiB, 1 MiB + 64 bytes per input byte of memory, 2 s per case.
    pub fn new(name: &str, corpus: impl Into<PathBuf>) -> Fuzz {
        let secs = std::env::var("POLYARCH_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0);
        let seed = match std::env::var("POLYARCH_FUZZ_SEED").ok().as_deref() {
            Some("random") => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1),
            Some(s) => s.parse().unwrap_or_else(|_| fnv(s.as_bytes())),
            None => fnv(name.as_bytes()),
        };
        Fuzz {
            name: name.to_string(),
            corpus: corpus.into(),
            seeds: Vec::new(),
            dict: Vec::new(),
            max_len: 4096,
            mem_base: 1 << 20,
            mem_per_byte: 64,
            case_time: Duration::from_secs(2),
            budget: Duration::from_secs_f64(secs.max(0.0)),
            seed,
        }
    }

    /// An extra seed input (replayed and mutated like corpus files).
    pub fn with_seed(mut self, name: impl Into<String>, input: impl Into<Vec<u8>>) -> Self {
        self.seeds.push((name.into(), input.into()));
        self
    }

    /// Tokens the mutator inserts (keywords, operators).
    pub fn with_dict(mut self, tokens: &[&str]) -> Self {
        self.dict.extend(tokens.iter().map(|t| t.as_bytes().to_vec()));
        self
    }

    /// The longest mutated input.
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The memory bound of one case: `base + per_byte * input length` bytes
    /// at peak.
    pub fn with_memory(mut self, base: usize, per_byte: usize) -> Self {
        self.mem_base = base;
        self.mem_per_byte = per_byte;
        self
    }

    /// The time bound of one case.
    pub fn with_case_time(mut self, bound: Duration) -> Self {
        self.case_time = bound;
        self
    }

    /// The mutation time (`POLYARCH_FUZZ_SECS` otherwise).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Replays the corpus, then fuzzes `f` until the budget is spent.
    /// Panics with the failing input's path and what went wrong at the
    /// first case that panics, takes too long or allocates too much.
    pub fn run(mut self, f: impl Fn(&[u8])) -> Report {
        install_hook();
        let _ = std::fs::create_dir_all(self.out_dir());
        assert!(
            alloc::installed(),
            "fuzz target {}: the test binary must install the counting allocator: \
             #[global_allocator] static A: polyarch_fuzzing::Counting = polyarch_fuzzing::Counting;",
            self.name
        );
        let mut inputs = read_corpus(&self.corpus);
        assert!(!inputs.is_empty(), "fuzz target {}: no corpus files in {}", self.name, self.corpus.display());
        inputs.append(&mut self.seeds);
        let mut report = Report { replayed: inputs.len(), cases: 0, max_peak: 0 };
        for (name, input) in &inputs {
            match self.check(input, &f) {
                Ok(peak) => report.max_peak = report.max_peak.max(peak),
                Err(what) => panic!("fuzz target {}: corpus input {name}: {what}", self.name),
            }
        }
        let bodies: Vec<Vec<u8>> = inputs.into_iter().map(|(_, b)| b).collect();
        let mut rng = Rng::new(self.seed);
        let start = Instant::now();
        while start.elapsed() < self.budget {
            let input = if rng.one_in(16) {
                (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect()
            } else {
                let base = &bodies[rng.below(bodies.len())];
                mutate(&mut rng, base, &bodies, &self.dict, self.max_len)
            };
            report.cases += 1;
            match self.check(&input, &f) {
                Ok(peak) => report.max_peak = report.max_peak.max(peak),
                Err(what) => self.fail(&input, report.cases, &what),
            }
        }
        report
    }

    /// Runs one case: `Ok(peak bytes)` or what went wrong.
    fn check(&self, input: &[u8], f: &dyn Fn(&[u8])) -> Result<usize, String> {
        let limit = self.mem_base.saturating_add(self.mem_per_byte.saturating_mul(input.len()));
        QUIET.with(|q| *q.borrow_mut() = Some(String::new()));
        let crash = self.crash_path(input);
        alloc::stash(Some((input, crash.as_os_str().as_encoded_bytes())));
        let mark = alloc::arm(HARD_CAP.max(limit.saturating_mul(4)));
        let t = Instant::now();
        let res = catch_unwind(AssertUnwindSafe(|| f(input)));
        let took = t.elapsed();
        let peak = alloc::disarm(mark);
        alloc::stash(None);
        let place = QUIET.with(|q| q.borrow_mut().take()).unwrap_or_default();
        if let Err(payload) = res {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            return Err(format!("panicked at {place}: {msg}"));
        }
        if peak > limit {
            return Err(format!(
                "allocated {peak} bytes at peak for an input of {} bytes (bound {limit})",
                input.len()
            ));
        }
        if took > self.case_time {
            return Err(format!("took {took:?} for an input of {} bytes (bound {:?})", input.len(), self.case_time));
        }
        Ok(peak)
    }

    fn out_dir(&self) -> PathBuf {
        std::env::var_os("POLYARCH_FUZZ_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("polyarch-fuzz"))
            .join(&self.name)
    }

    fn crash_path(&self, input: &[u8]) -> PathBuf {
        self.out_dir().join(format!("crash-{:016x}", fnv(input)))
    }

    fn fail(&self, input: &[u8], case: u64, what: &str) -> ! {
        let path = self.crash_path(input);
        let saved = std::fs::create_dir_all(self.out_dir()).and_then(|_| std::fs::write(&path, input));
        let preview: String = String::from_utf8_lossy(&input[..input.len().min(200)]).escape_debug().collect();
        panic!(
            "fuzz target {}: case {case} (seed {}) {what}\n  input {} ({}): \"{preview}\"\n  \
             fix the library, then add the input to {}",
            self.name,
            self.seed,
            path.display(),
            if saved.is_ok() { "saved" } else { "not saved" },
            self.corpus.display()
        )
    }
}

/// The files of a corpus directory, sorted by name.
fn read_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).ok()?)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// FNV-1a, for default seeds and file names.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

thread_local! {
    /// While a case runs: where it panicked, and the default hook is quiet.
    static QUIET: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the panic hook once: panics inside a case are recorded instead of
/// printed; any other panic is printed as before.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = QUIET.with(|q| match q.borrow_mut().as_mut() {
                Some(place) => {
                    *place = info.location().map(|l| l.to_string()).unwrap_or_default();
                    true
                }
                None => false,
            });
            if !quiet {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static A: Counting = Counting;

    fn corpus() -> tempfile_free::Dir {
        tempfile_free::Dir::new(&[("a", b"hello")])
    }

    /// A tiny temporary directory, to keep the crate free of dependencies.
    mod tempfile_free {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(files: &[(&str, &[u8])]) -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "polyarch-fuzzing-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                for (n, b) in files {
                    std::fs::write(p.join(n), b).unwrap();
                }
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn failure(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let e = catch_unwind(f).unwrap_err();
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn finds_a_panic_and_saves_the_input() {
        let dir = corpus();
        let out = corpus();
        std::env::set_var("POLYARCH_FUZZ_OUT", &out.0);
        let path = dir.0.clone();
        let msg = failure(move || {
            Fuzz::new("panics", path).with_budget(Duration::from_secs(5)).with_dict(&["boom"]).run(|b| {
                if b.windows(4).any(|w| w == b"boom") {
                    panic!("found it");
                }
            });
        });
        assert!(msg.contains("found it") && msg.contains("lib.rs"), "{msg}");
        let saved = std::fs::read_dir(out.0.join("panics")).unwrap().count();
        assert_eq!(saved, 1, "{msg}");
    }

    #[test]
    fn allocation_beyond_linear_and_slow_cases_fail() {
        let dir = corpus();
        let path = dir.0.clone();
        let msg = failure(move || {
            Fuzz::new("alloc", path).with_memory(1024, 8).run(|b| {
                std::hint::black_box(vec![0u8; b.len() * 1000]);
            });
        });
        assert!(msg.contains("corpus input a") && msg.contains("allocated"), "{msg}");
        let path = dir.0.clone();
        let msg = failure(move || {
            Fuzz::new("slow", path).with_case_time(Duration::from_millis(5)).run(|_| {
                std::thread::sleep(Duration::from_millis(20));
            });
        });
        assert!(msg.contains("took"), "{msg}");
    }

    #[test]
    fn a_good_target_runs_its_budget() {
        let dir = corpus();
        let r = Fuzz::new("ok", dir.0.clone()).with_budget(Duration::from_millis(200)).run(|b| {
            std::hint::black_box(b.to_vec());
        });
        assert!(r.replayed == 1 && r.cases > 100, "{r:?}");
        let empty = tempfile_free::Dir::new(&[]);
        let p = empty.0.clone();
        assert!(failure(move || {
            Fuzz::new("empty", p).run(|_| {});
        })
        .contains("no corpus"));
    }
}
