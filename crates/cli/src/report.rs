//! How an error reads on the terminal: its message, then each cause the
//! message does not already say, joined with `: ` (as anyhow's `{:#}`).
//! Library errors often end their message with their cause's text (so
//! that a message alone is whole); that cause is not repeated.

use std::fmt;
use std::io::{self, Write};

/// Renders `err` and its causes once each: `format!("{}", Chain(&e))`.
pub struct Chain<'a>(pub &'a anyhow::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(self.0.chain().map(|c| c.to_string())))
    }
}

/// Standard output closed by its reader (`polyarch ... | head`): the
/// command stops there and exits 0, saying nothing, as a filter should.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output for everything commands print: a closed pipe is a
/// [`StdoutClosed`] error, not a panic (`println!`) or a failure.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write(buf).map_err(closed)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(buf).map_err(closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush().map_err(closed)
    }
}

fn closed(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe => io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed),
        kind => io::Error::new(kind, format!("writing to standard output: {e}")),
    }
}

/// Whether `err` comes from writing to a standard output whose reader left.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<io::Error>().and_then(|e| e.get_ref()).is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// `println!` to [`Stdout`], giving a `Result` for `?`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::report::Stdout, $($arg)*).map_err(anyhow::Error::from)
    }};
}

/// `print!` to [`Stdout`], giving a `Result` for `?`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!($crate::report::Stdout, $($arg)*).map_err(anyhow::Error::from)
    }};
}

/// Joins messages outermost first, leaving out one the text so far holds.
fn text(messages: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for m in messages {
        if m.is_empty() || out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error whose message ends with its cause's.
    #[derive(Debug)]
    struct Push {
        source: std::io::Error,
    }

    impl fmt::Display for Push {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "pushing r/x:1: {}", self.source)
        }
    }

    impl std::error::Error for Push {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_closed_stdout_is_told_apart_from_other_broken_pipes() {
        let e = anyhow::Error::new(closed(io::Error::from(io::ErrorKind::BrokenPipe))).context("printing");
        assert!(is_stdout_closed(&e));
        let socket = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("talking to the engine");
        assert!(!is_stdout_closed(&socket), "a broken pipe elsewhere is a failure");
    }

    #[test]
    fn a_cause_the_message_says_is_not_repeated() {
        let e = anyhow::Error::new(Push { source: std::io::Error::other("connection refused") });
        assert_eq!(Chain(&e).to_string(), "pushing r/x:1: connection refused");
        let e = e.context("building");
        assert_eq!(Chain(&e).to_string(), "building: pushing r/x:1: connection refused");
        // A cause the message does not say is added, as `{:#}` does.
        let e = anyhow::Error::new(std::io::Error::other("denied")).context("writing /out");
        assert_eq!(Chain(&e).to_string(), format!("{e:#}"));
        assert_eq!(Chain(&e).to_string(), "writing /out: denied");
    }
}
