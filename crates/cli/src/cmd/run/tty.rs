//! `-t` and `-i` of `polyarch run`, as `docker run`'s: `-t` gives the
//! process a terminal (with the caller's window size, kept in step on
//! `SIGWINCH`); `-it` also copies stdin to it, with the caller's terminal
//! in raw mode until the run ends; `-i` alone keeps stdin open with no
//! terminal.

use std::os::fd::AsFd;

use anyhow::{bail, Context as _, Result};
use polyarch_exec::console::{is_terminal, window_size};
use polyarch_exec::{ProcessIo, RawMode, Resize, Terminal, WindowSize};

/// How the run's standard streams are set up; holds the caller's
/// terminal in raw mode while it lives.
pub struct Streams {
    terminal: Option<Terminal>,
    stdin: bool,
    _raw: Option<RawMode>,
}

impl Streams {
    /// The streams for `-t` (`tty`) and `-i` (`interactive`). Fails as
    /// Docker does when `-it` is asked for and stdin is not a terminal.
    pub fn new(rt: &tokio::runtime::Runtime, tty: bool, interactive: bool) -> Result<Streams> {
        if !tty {
            return Ok(Streams { terminal: None, stdin: interactive, _raw: None });
        }
        let stdin = std::io::stdin();
        if interactive && !is_terminal(stdin.as_fd()) {
            bail!("the input device is not a TTY");
        }
        let resize = Resize::new();
        watch_window(rt, resize.clone());
        let terminal = Terminal { size: caller_size(), stdin: interactive, resize };
        let raw = match interactive {
            true => Some(RawMode::enable(stdin.as_fd()).context("putting the terminal in raw mode")?),
            false => None,
        };
        Ok(Streams { terminal: Some(terminal), stdin: interactive, _raw: raw })
    }

    /// The process's I/O with these streams.
    pub fn io<'a>(&self, io: ProcessIo<'a>) -> ProcessIo<'a> {
        match (&self.terminal, self.stdin) {
            (Some(t), _) => io.with_terminal(t.clone()),
            (None, true) => io.with_stdin_inherited(),
            (None, false) => io,
        }
    }
}

/// The caller's window size: its stdout's, else its stdin's.
fn caller_size() -> Option<WindowSize> {
    window_size(std::io::stdout().as_fd()).or_else(|| window_size(std::io::stdin().as_fd()))
}

/// Passes the caller's new window size on every `SIGWINCH`.
fn watch_window(rt: &tokio::runtime::Runtime, resize: Resize) {
    use tokio::signal::unix::{signal, SignalKind};
    let _in_runtime = rt.enter();
    let Ok(mut winch) = signal(SignalKind::window_change()) else { return };
    rt.spawn(async move {
        while winch.recv().await.is_some() {
            if let Some(size) = caller_size() {
                resize.set(size);
            }
        }
    });
}
