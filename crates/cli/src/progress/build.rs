//! The one renderer of build progress, behind `--progress
//! auto|tty|plain|quiet|rawjson|none` (default from `BUILDKIT_PROGRESS`,
//! as buildx), fed by the builder's typed [`Event`]s: step names come from
//! [`polyarch_builder::Vertex::name`], numbers from one
//! [`StepNumbers`] sequence (the command's own steps, then the build's).
//! `plain` prints BuildKit's plain lines; `tty` a live view (finished
//! steps as lines, below them a bar per running step and per blob a pull
//! or push is moving, fed by the registry client's byte counts); `rawjson`
//! BuildKit's `SolveStatus` stream ([`super::rawjson`]); `quiet` and
//! `none` no progress. A step's statuses (a blob pulled or pushed, a
//! layer extracted) come from the builder's events and, for the bytes in
//! between, from the registry client's counts; the statuses of the export
//! (`naming to ...`, `pushing layers`, each blob pushed) belong to the
//! `exporting to image` step ([`Progress::start_export`]).

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use polyarch_builder::{Event, MemFs, Status, StepNumbers, Vertex};
use polyarch_oci::Digest;

use super::planned::PlannedSteps;
use super::rawjson::{status_line, RawJson, Warning};

/// How often a moving blob's status is written in rawjson.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// Whether a status is a blob's (its id a digest).
fn is_blob(id: &str) -> bool {
    id.parse::<Digest>().is_ok()
}

/// The `--progress` values.
pub const MODES: [&str; 6] = ["auto", "tty", "plain", "quiet", "rawjson", "none"];

/// Which source of step numbers the command's own steps are.
const OWN: usize = 0;
/// Which source the build's steps are.
const BUILD: usize = 1;

/// Renders build events on stderr.
pub struct Progress {
    /// The mode in effect: `tty`, `plain`, `quiet`, `rawjson` or `none`.
    pub mode: String,
    start: Instant,
    /// Build check warnings, printed when the build finishes.
    warnings: Mutex<Option<polyarch_dockerfile::lint::Report>>,
    /// With `-D/--debug`: the Dockerfile's name and text, to expand them.
    pub expand: Mutex<Option<(String, String)>>,
    /// The Dockerfile's name and text, the source of rawjson's warnings.
    pub source: Mutex<Option<(String, String)>>,
    /// The build definition's step, which warnings belong to.
    definition: Mutex<Option<Vertex>>,
    numbers: Arc<Mutex<StepNumbers>>,
    own: std::sync::atomic::AtomicUsize,
    cached: Mutex<HashSet<usize>>,
    started: Mutex<HashMap<usize, SystemTime>>,
    /// Steps started and not ended, shown as cancelled at the end.
    open: Mutex<std::collections::BTreeMap<usize, Vertex>>,
    /// plain mode: how long each ended step took, to end it again when a
    /// status of it comes later (a base image's layers read by a later step).
    ended: Mutex<HashMap<usize, Duration>>,
    raw: RawJson,
    /// tty mode: the bars; lines are printed above them.
    live: Option<indicatif::MultiProgress>,
    /// tty mode: whether bars tick on their own (a real terminal).
    ticking: bool,
    /// tty mode: one bar per running step and per blob on the move.
    bars: Mutex<HashMap<BarKey, indicatif::ProgressBar>>,
    /// Blob statuses begun and not completed: their step, the status and
    /// when its line was last written.
    blobs: Mutex<HashMap<Digest, (Vertex, Status, Instant)>>,
    /// The `exporting to image` step while it runs.
    export: Mutex<Option<Vertex>>,
    /// The build's plan, whose vertex digests its steps take.
    planned: Mutex<Option<PlannedSteps>>,
}

/// What a live bar shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BarKey {
    /// A running step.
    Step(usize),
    /// A blob being pulled or pushed.
    Blob(polyarch_oci::Digest),
}

/// ANSI output to stderr whatever it is, for `--progress tty` into a pipe
/// or a file (a terminal gets indicatif's own target).
#[derive(Debug)]
struct AnsiStderr;

impl AnsiStderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().write_all(s.as_bytes())
    }
}

impl indicatif::TermLike for AnsiStderr {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(120)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}A"))?;
        }
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}B"))?;
        }
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}C"))?;
        }
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}D"))?;
        }
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The mode `--progress` asks for on a terminal or not: `auto` is `tty`
/// on a terminal and `plain` otherwise.
pub fn resolve(mode: &str, terminal: bool) -> &str {
    match mode {
        "auto" if terminal => "tty",
        "auto" => "plain",
        m => m,
    }
}

/// The mode in effect for `--progress mode` and `BUILDKIT_PROGRESS`: as
/// buildx, the variable replaces `auto` only (so `-q` and an explicit
/// `--progress` win); a value it does not know is an error naming it.
pub fn from_env(mode: &str, env: Option<&str>) -> anyhow::Result<String> {
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if mode == "auto" => {
            if !MODES.contains(&v) {
                anyhow::bail!("BUILDKIT_PROGRESS={v:?}: not a progress mode (want one of {})", MODES.join(", "));
            }
            Ok(v.to_string())
        }
        _ => Ok(mode.to_string()),
    }
}

/// Plain mode's lines for an event (BuildKit's `--progress plain`);
/// `cached` holds the steps that came from the cache, `started` when
/// each step started.
fn plain_lines(e: &Event, cached: &mut HashSet<usize>, started: &HashMap<usize, SystemTime>) -> Vec<String> {
    let id = e.vertex().id;
    match e {
        Event::Started { vertex, .. } => vec![format!("#{id} {}", vertex.name())],
        Event::Cached { .. } => {
            cached.insert(id);
            vec![format!("#{id} CACHED")]
        }
        Event::Done { elapsed, .. } if cached.contains(&id) => vec![String::new()],
        Event::Done { elapsed, .. } => vec![format!("#{id} DONE {:.1}s", elapsed.as_secs_f64()), String::new()],
        Event::Failed { message, .. } => vec![format!("#{id} ERROR: {message}")],
        Event::Log { at, line, .. } => {
            let since = started.get(&id).and_then(|s| at.duration_since(*s).ok()).unwrap_or_default();
            vec![format!("#{id} {:.3} {line}", since.as_secs_f64())]
        }
        Event::Status { status, .. } => status_done(status).map(|s| format!("#{id} {s}")).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A completed status as BuildKit's plain and tty lines end it:
/// `sha256:... 2.10MB / 2.10MB 0.2s done`, `extracting sha256:... 0.1s done`.
fn status_done(status: &Status) -> Option<String> {
    let completed = status.completed?;
    let took = status.started.and_then(|s| completed.duration_since(s).ok()).unwrap_or_default();
    let bytes = match status.total {
        Some(total) => {
            let size = crate::cmd::images::human_size;
            format!(" {} / {}", size(status.current), size(total))
        }
        None => String::new(),
    };
    Some(format!("{}{bytes} {:.1}s done", status.id, took.as_secs_f64()))
}

/// After a build: buildx's summary of the check warnings on stderr (not
/// in the quiet modes, nor in rawjson, whose stream carries them); with
/// `-D/--debug` (`expand`: the Dockerfile's name and text) each warning
/// with its detail, link and lines, as buildx's `printWarnings`.
pub fn print_warnings(rep: &polyarch_dockerfile::lint::Report, mode: &str, expand: Option<&(String, String)>) {
    if rep.warnings.is_empty() || matches!(mode, "quiet" | "rawjson" | "none") {
        return;
    }
    let n = rep.warnings.len();
    let head = if n == 1 { "1 warning found".to_string() } else { format!("{n} warnings found") };
    let head =
        if expand.is_some() { format!("{head}:\n") } else { format!("{head} (use docker --debug to expand):\n") };
    let head = if std::io::stderr().is_terminal() { format!("\x1b[33m{head}\x1b[0m") } else { head };
    let mut out = format!("\n {head}");
    match expand {
        Some((file, source)) => out.push_str(&polyarch_dockerfile::lint::render_expanded(&rep.warnings, file, source)),
        None => {
            for w in &rep.warnings {
                out.push_str(&format!(" - {}\n", w.short()));
            }
        }
    }
    eprint!("{out}");
}

impl Progress {
    /// A renderer for `--progress mode`.
    pub fn new(mode: &str) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let mode = resolve(mode, terminal);
        let live = (mode == "tty")
            .then(|| {
                // `--progress tty` asked for by name draws even into a pipe.
                let target = if terminal {
                    indicatif::ProgressDrawTarget::stderr_with_hz(10)
                } else {
                    indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(AnsiStderr), 10)
                };
                indicatif::MultiProgress::with_draw_target(target)
            })
            .filter(|m| !m.is_hidden());
        Progress {
            mode: mode.to_string(),
            start: Instant::now(),
            warnings: Mutex::new(None),
            expand: Mutex::new(None),
            source: Mutex::new(None),
            definition: Mutex::new(None),
            numbers: Arc::default(),
            own: Default::default(),
            cached: Default::default(),
            started: Default::default(),
            open: Default::default(),
            ended: Default::default(),
            raw: RawJson::default(),
            live,
            ticking: terminal,
            bars: Default::default(),
            blobs: Default::default(),
            export: Default::default(),
            planned: Default::default(),
        }
    }

    /// Whether progress lines are shown (plain or tty).
    pub fn chatty(&self) -> bool {
        matches!(self.mode.as_str(), "plain" | "tty")
    }

    /// Starts a step of the command itself, numbered next.
    pub fn start(&self, vertex: Vertex) -> Vertex {
        let k = self.own.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut vertex = vertex;
        vertex.id = self.numbers.lock().map(|mut n| n.number(OWN, k)).unwrap_or(k + 1);
        self.event(&Event::Started { vertex: vertex.clone(), at: SystemTime::now() });
        vertex
    }

    /// Ends a step of the command itself.
    pub fn done(&self, vertex: Vertex, elapsed: Duration) {
        self.event(&Event::Done { vertex, at: SystemTime::now(), elapsed });
    }

    /// Ends a step of the command itself that failed.
    pub fn failed(&self, vertex: Vertex, message: String) {
        self.export.lock().map(|mut x| x.take_if(|x| x.id == vertex.id)).ok();
        self.event(&Event::Failed { vertex, at: SystemTime::now(), message });
    }

    /// The build definition's step, which check warnings belong to.
    pub fn set_definition(&self, vertex: &Vertex) {
        if let Ok(mut d) = self.definition.lock() {
            *d = Some(vertex.clone());
        }
    }

    /// An event of the build: its step moves into the command's sequence.
    pub fn lib_event(&self, mut e: Event) {
        if let Ok(mut n) = self.numbers.lock() {
            n.renumber(BUILD, &mut e);
        }
        self.event(&e);
    }

    /// BuildKit's `transferring context: N B` line, in plain mode.
    pub fn context_size(&self, vertex: &Vertex, ctx: &MemFs) {
        if self.mode != "plain" {
            return;
        }
        let bytes: u64 = ctx
            .iter()
            .map(|(p, n)| p.len() as u64 + if let polyarch_builder::fs::Kind::File(d) = &n.kind { d.len() } else { 0 })
            .sum();
        eprintln!("#{} transferring context: {bytes}B done", vertex.id);
    }

    /// Whether the mode shows step digests (rawjson's vertices, statuses
    /// and logs name steps by them).
    pub fn shows_digests(&self) -> bool {
        self.mode == "rawjson"
    }

    /// Adds vertices of the build's plan (its context vertices, then the
    /// whole plan): steps named as one of them take its digest.
    pub fn add_plan(&self, graph: &polyarch_solver::Graph) {
        if let Ok(mut p) = self.planned.lock() {
            p.get_or_insert_with(PlannedSteps::default).add(graph);
        }
    }

    /// Renders one event.
    pub fn event(&self, e: &Event) {
        let mapped;
        let e = match self.planned.lock().as_deref_mut() {
            Ok(Some(p)) => {
                let mut copy = e.clone();
                p.apply(copy.vertex_mut());
                mapped = copy;
                &mapped
            }
            _ => e,
        };
        match e {
            Event::Started { vertex, at } => {
                self.started.lock().map(|mut s| s.insert(vertex.id, *at)).ok();
                self.open.lock().map(|mut o| o.insert(vertex.id, vertex.clone())).ok();
            }
            Event::Done { vertex, .. } | Event::Failed { vertex, .. } => {
                self.open.lock().map(|mut o| o.remove(&vertex.id)).ok();
            }
            Event::Status { vertex, status, .. } => self.track_blob(vertex, status),
            _ => {}
        }
        match self.mode.as_str() {
            // Not under the stderr lock: bars draw from other threads.
            "tty" => self.tty_event(e),
            "rawjson" => {
                if let Some(line) = self.raw.line(e) {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
            "plain" => {
                let mut lines = match (self.cached.lock(), self.started.lock()) {
                    (Ok(mut c), Ok(s)) => plain_lines(e, &mut c, &s),
                    _ => return,
                };
                self.reopen(e, &mut lines);
                let mut err = std::io::stderr().lock();
                for l in lines {
                    let _ = writeln!(err, "{l}");
                }
            }
            _ => {}
        }
    }

    /// plain mode, as BuildKit's printer: a status that ends after its step
    /// did comes under the step's name again, and the step ends again.
    fn reopen(&self, e: &Event, lines: &mut Vec<String>) {
        let Ok(mut ended) = self.ended.lock() else { return };
        match e {
            Event::Done { vertex, elapsed, .. } => {
                ended.insert(vertex.id, *elapsed);
            }
            Event::Status { vertex, .. } if !lines.is_empty() => {
                let Some(elapsed) = ended.get(&vertex.id) else { return };
                let id = vertex.id;
                lines.insert(0, format!("#{id} {}", vertex.name()));
                lines.push(format!("#{id} DONE {:.1}s", elapsed.as_secs_f64()));
                lines.push(String::new());
            }
            _ => {}
        }
    }

    fn tty_event(&self, e: &Event) {
        let id = e.vertex().id;
        match e {
            Event::Started { vertex, .. } => self.step_bar(id, &vertex.name()),
            Event::Cached { .. } => {
                self.cached.lock().map(|mut c| c.insert(id)).ok();
            }
            Event::Done { vertex, elapsed, .. } => {
                self.end_bar(&BarKey::Step(id));
                let cached = self.cached.lock().is_ok_and(|c| c.contains(&id));
                let name = vertex.name();
                let label = if cached { format!("CACHED {name}") } else { name };
                self.line(&format!(" => {label:<70} {:.1}s", elapsed.as_secs_f64()));
            }
            Event::Failed { vertex, message, .. } => {
                self.end_bar(&BarKey::Step(id));
                self.line(&format!(" => ERROR {}\n{message}", vertex.name()));
            }
            Event::Log { at, line, .. } => {
                let start = self.started.lock().ok().and_then(|s| s.get(&id).copied());
                let since = start.and_then(|s| at.duration_since(s).ok()).unwrap_or_default();
                self.line(&format!(" #{id} {:.3} {line}", since.as_secs_f64()));
            }
            // Blobs show as bars fed by the registry's counts.
            Event::Status { status, .. } if !is_blob(&status.id) => {
                if let Some(s) = status_done(status) {
                    self.line(&format!(" => => {s}"));
                }
            }
            _ => {}
        }
    }

    /// A line: above the bars in tty mode.
    pub fn line(&self, s: &str) {
        match &self.live {
            Some(m) => {
                let _ = m.println(s);
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{s}");
            }
        }
    }

    fn add_bar(&self, bar: indicatif::ProgressBar, template: &str) -> Option<indicatif::ProgressBar> {
        let m = self.live.as_ref()?;
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = m.add(bar.with_style(style));
        if self.ticking {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Some(bar)
    }

    /// The bar of a running step, replaced by its line when it ends.
    fn step_bar(&self, id: usize, name: &str) {
        let Some(bar) = self.add_bar(indicatif::ProgressBar::new_spinner(), " => {msg} {elapsed}") else { return };
        bar.set_message(name.to_string());
        self.bars.lock().map(|mut b| b.insert(BarKey::Step(id), bar)).ok();
    }

    /// Takes a bar off the screen.
    fn end_bar(&self, key: &BarKey) {
        let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(key)) else { return };
        // A last forced draw shows the final state once; a line follows.
        bar.finish();
        if let Some(m) = &self.live {
            m.remove(&bar);
        }
    }

    /// Byte counts from the registry client: a bar per blob while it
    /// moves, then a line (`=> => sha256:0123456789ab 2.2MB / 2.2MB done`).
    pub fn registry(&self, e: &polyarch_registry::Event) {
        if self.mode == "rawjson" {
            self.blob_bytes(e);
            return;
        }
        if self.live.is_none() {
            return;
        }
        let short = super::short;
        match e {
            polyarch_registry::Event::Bytes { digest, direction, transferred, total } => {
                let verb = match direction {
                    polyarch_registry::Direction::Download => "pulling",
                    polyarch_registry::Direction::Upload => "pushing",
                };
                let bar = self.blob_bar(digest, *total, verb);
                if let Some(b) = &bar {
                    b.set_position(*transferred);
                }
                if transferred >= total {
                    self.end_bar(&BarKey::Blob(digest.clone()));
                    let size = crate::cmd::images::human_size(*total);
                    self.line(&format!(" => => {} {size} / {size} done", short(digest)));
                }
            }
            polyarch_registry::Event::Skipped { digest } => {
                self.end_bar(&BarKey::Blob(digest.clone()));
                self.line(&format!(" => => {} already exists", short(digest)));
            }
            polyarch_registry::Event::Mounted { digest, from } => {
                self.end_bar(&BarKey::Blob(digest.clone()));
                self.line(&format!(" => => {} mounted from {from}", short(digest)));
            }
            _ => {}
        }
    }

    fn blob_bar(&self, digest: &polyarch_oci::Digest, total: u64, verb: &str) -> Option<indicatif::ProgressBar> {
        let key = BarKey::Blob(digest.clone());
        let mut bars = self.bars.lock().ok()?;
        if let Some(b) = bars.get(&key) {
            return Some(b.clone());
        }
        let template = " => => {prefix} {bar:30} {decimal_bytes} / {decimal_total_bytes} {msg}";
        let bar = self.add_bar(indicatif::ProgressBar::new(total), template)?;
        bar.set_prefix(super::short(digest));
        bar.set_message(verb.to_string());
        bars.insert(key, bar.clone());
        Some(bar)
    }

    /// Starts the export step (`exporting to image`, or the name of the
    /// exporter the outputs ask for): the statuses of the export
    /// ([`Progress::begin_status`], blobs pushed) are its own until it ends.
    pub fn start_export(&self, name: &str) -> Vertex {
        let vertex = self.start(Vertex::plain(name));
        self.export.lock().map(|mut x| *x = Some(vertex.clone())).ok();
        vertex
    }

    /// Ends the `exporting to image` step.
    pub fn done_export(&self, vertex: Vertex, elapsed: Duration) {
        self.export.lock().map(|mut x| *x = None).ok();
        self.done(vertex, elapsed);
    }

    /// A status of the export step that begins now (`naming to NAME`,
    /// `pushing layers`); none when no export step runs.
    pub fn begin_status(&self, id: &str) -> Option<(Vertex, Status)> {
        let vertex = self.export.lock().ok()?.clone()?;
        let at = SystemTime::now();
        let status = Status::begin(id, None, at);
        self.event(&Event::Status { vertex: vertex.clone(), at, status: status.clone() });
        Some((vertex, status))
    }

    /// A status of the export step that began at `started` and ends now,
    /// for work whose name is known only once it is done (`exporting
    /// manifest list sha256:...`).
    pub fn ended_status(&self, id: &str, started: SystemTime) {
        let Some(vertex) = self.export.lock().ok().and_then(|x| x.clone()) else { return };
        let at = SystemTime::now();
        self.event(&Event::Status { vertex, at, status: Status::begin(id, None, started).end(at) });
    }

    /// Completes a status of [`Progress::begin_status`].
    pub fn end_status(&self, begun: Option<(Vertex, Status)>) {
        let Some((vertex, status)) = begun else { return };
        let at = SystemTime::now();
        self.event(&Event::Status { vertex, at, status: status.end(at) });
    }

    /// Remembers a blob's status while it moves, for the registry's byte
    /// counts in between.
    fn track_blob(&self, vertex: &Vertex, status: &Status) {
        let Some(digest) = status.id.parse::<Digest>().ok() else { return };
        let Ok(mut blobs) = self.blobs.lock() else { return };
        match status.completed {
            Some(_) => blobs.remove(&digest),
            None => blobs.insert(digest, (vertex.clone(), status.clone(), Instant::now())),
        };
    }

    /// A blob the export pushes: its upload is a status of the export
    /// step (`sha256:...` of the blob, its size as total), from when its
    /// bytes start going up until the registry has it.
    pub fn upload(&self, e: &polyarch_transfer::Event) {
        use polyarch_transfer::Event as T;
        let Some(vertex) = self.export.lock().ok().and_then(|x| x.clone()) else { return };
        let at = SystemTime::now();
        let status = match e {
            T::BlobStarted { digest, size, direction: polyarch_registry::Direction::Upload } => {
                Status::begin(digest.to_string(), Some(*size), at)
            }
            T::BlobDone { digest, .. } => {
                let begun = self.blobs.lock().ok().and_then(|mut b| b.remove(digest));
                let Some((_, status, _)) = begun else { return };
                status.end(at)
            }
            _ => return,
        };
        self.event(&Event::Status { vertex, at, status });
    }

    /// rawjson: a moving blob's status with the bytes moved so far.
    fn blob_bytes(&self, e: &polyarch_registry::Event) {
        if let Some(line) = self.blob_line(e) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    /// The status line of a blob that bytes of `e` moved, at most every
    /// [`STATUS_EVERY`] per blob (none for a blob no status began).
    fn blob_line(&self, e: &polyarch_registry::Event) -> Option<String> {
        let polyarch_registry::Event::Bytes { digest, transferred, .. } = e else { return None };
        let mut blobs = self.blobs.lock().ok()?;
        let (vertex, status, last) = blobs.get_mut(digest)?;
        status.current = (*transferred).min(status.total.unwrap_or(u64::MAX));
        if last.elapsed() < STATUS_EVERY {
            return None;
        }
        *last = Instant::now();
        Some(status_line(vertex, SystemTime::now(), status))
    }

    /// Ends the view (`[+] Building 1.2s FINISHED` in tty mode) and shows
    /// the check warnings the mode shows.
    pub fn finish(&self, ok: bool) {
        self.cancel_open();
        if self.mode == "tty" {
            let keys: Vec<BarKey> = self.bars.lock().map(|b| b.keys().cloned().collect()).unwrap_or_default();
            for k in keys {
                self.end_bar(&k);
            }
            let state = if ok { "FINISHED" } else { "FAILED" };
            self.line(&format!("[+] Building {:.1}s {state}", self.start.elapsed().as_secs_f64()));
        }
        let Some(rep) = self.warnings.lock().ok().and_then(|mut w| w.take()) else { return };
        if self.mode == "rawjson" {
            let vertex = self.definition.lock().ok().and_then(|d| d.clone()).unwrap_or_default();
            let source = self.source.lock().ok().and_then(|s| s.clone());
            let warnings: Vec<Warning> = rep
                .warnings
                .iter()
                .map(|w| Warning {
                    vertex: vertex.clone(),
                    level: 1,
                    short: w.short(),
                    detail: vec![w.description.to_string()],
                    url: w.url.to_string(),
                    source: source.as_ref().map(|(f, t)| (f.clone(), t.clone(), w.start_line, w.end_line)),
                })
                .collect();
            if let Some(line) = self.raw.warnings(&warnings) {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
        let expand = self.expand.lock().ok().and_then(|mut e| e.take());
        print_warnings(&rep, &self.mode, expand.as_ref());
    }

    /// Steps that started and never ended (stopped when another step or
    /// platform failed): BuildKit's `CANCELED`, and in rawjson completed
    /// with its `context canceled` error, so that every vertex of the
    /// stream completes.
    fn cancel_open(&self) {
        let open = self.open.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default();
        for (id, vertex) in open {
            match self.mode.as_str() {
                "plain" => eprintln!("#{id} CANCELED"),
                "tty" => {
                    self.end_bar(&BarKey::Step(id));
                    self.line(&format!(" => CANCELED {}", vertex.name()));
                }
                "rawjson" => {
                    let e = Event::Failed { vertex, at: SystemTime::now(), message: "context canceled".into() };
                    if let Some(line) = self.raw.line(&e) {
                        let _ = writeln!(std::io::stderr().lock(), "{line}");
                    }
                }
                _ => {}
            }
        }
    }

    /// Warnings to print once the build finishes.
    pub fn set_warnings(&self, report: polyarch_dockerfile::lint::Report) {
        if let Ok(mut w) = self.warnings.lock() {
            *w = Some(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_tty_on_a_terminal_only() {
        assert_eq!(resolve("auto", true), "tty");
        assert_eq!(resolve("auto", false), "plain");
        assert_eq!(resolve("none", true), "none");
        assert_eq!(resolve("rawjson", true), "rawjson");
    }

    #[test]
    fn buildkit_progress_replaces_auto_only() {
        assert_eq!(from_env("auto", Some("rawjson")).unwrap(), "rawjson");
        assert_eq!(from_env("auto", None).unwrap(), "auto");
        assert_eq!(from_env("auto", Some("")).unwrap(), "auto");
        assert_eq!(from_env("plain", Some("none")).unwrap(), "plain");
        assert_eq!(from_env("quiet", Some("plain")).unwrap(), "quiet", "-q wins");
        let e = from_env("auto", Some("fancy")).unwrap_err().to_string();
        assert!(e.contains("BUILDKIT_PROGRESS=\"fancy\"") && e.contains("rawjson"), "{e}");
    }

    #[test]
    fn plain_lines_as_buildkit() {
        let (mut cached, mut started) = (HashSet::new(), HashMap::new());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut v = Vertex::instruction("stage-0", 2, 2, "RUN echo hi");
        v.id = 4;
        started.insert(4, t0);
        let lines = |e: Event, c: &mut HashSet<usize>| plain_lines(&e, c, &started);
        assert_eq!(lines(Event::Started { vertex: v.clone(), at: t0 }, &mut cached), ["#4 [stage-0 2/2] RUN echo hi"]);
        let log = Event::Log {
            vertex: v.clone(),
            at: t0 + Duration::from_millis(250),
            stream: polyarch_builder::Stream::Stdout,
            line: "hi".into(),
        };
        assert_eq!(lines(log, &mut cached), ["#4 0.250 hi"]);
        let done = Event::Done { vertex: v.clone(), at: t0, elapsed: Duration::from_millis(1234) };
        assert_eq!(lines(done.clone(), &mut cached), ["#4 DONE 1.2s", ""]);
        assert_eq!(lines(Event::Cached { vertex: v.clone(), at: t0 }, &mut cached), ["#4 CACHED"]);
        assert_eq!(lines(done, &mut cached), [""]);
        let failed = Event::Failed { vertex: v, at: t0, message: "exit code: 1".into() };
        assert_eq!(lines(failed, &mut cached), ["#4 ERROR: exit code: 1"]);
    }

    #[test]
    fn blob_bytes_update_the_status_begun_for_the_blob() {
        let p = Progress::new("rawjson");
        let blob: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let bytes = |n: u64| polyarch_registry::Event::Bytes {
            digest: blob.clone(),
            direction: polyarch_registry::Direction::Download,
            transferred: n,
            total: 1000,
        };
        assert_eq!(p.blob_line(&bytes(10)), None, "no status of that blob");
        let vertex = Vertex { id: 3, ..Vertex::instruction("stage-0", 1, 2, "FROM busybox") };
        let begun = Status::begin(blob.to_string(), Some(1000), SystemTime::now());
        p.event(&Event::Status { vertex: vertex.clone(), at: SystemTime::now(), status: begun.clone() });
        assert_eq!(p.blob_line(&bytes(100)), None, "at most one line every {STATUS_EVERY:?}");
        std::thread::sleep(STATUS_EVERY);
        let line: serde_json::Value = serde_json::from_str(&p.blob_line(&bytes(4000)).unwrap()).unwrap();
        let s = &line["statuses"][0];
        assert_eq!(
            (s["id"].as_str(), s["vertex"].as_str()),
            (Some(&*blob.to_string()), Some(&*vertex.digest().to_string()))
        );
        assert_eq!((s["current"].as_u64(), s["total"].as_u64()), (Some(1000), Some(1000)), "never past the total");
        assert!(s["completed"].is_null());
        p.event(&Event::Status { vertex, at: SystemTime::now(), status: begun.end(SystemTime::now()) });
        std::thread::sleep(STATUS_EVERY);
        assert_eq!(p.blob_line(&bytes(1000)), None, "completed: no more lines");
    }

    #[test]
    fn the_commands_steps_come_first_then_the_builds() {
        let p = Progress::new("none");
        let def = p.start(Vertex::internal("load build definition from Dockerfile"));
        let ctx = p.start(Vertex::internal("load build context"));
        assert_eq!((def.id, ctx.id), (1, 2));
        let mut e = Event::Started { vertex: Vertex { id: 1, ..Vertex::plain("x") }, at: SystemTime::now() };
        p.numbers.lock().unwrap().renumber(BUILD, &mut e);
        assert_eq!(e.vertex().id, 3);
        assert_eq!(p.start(Vertex::plain("exporting to image")).id, 4);
    }
}
