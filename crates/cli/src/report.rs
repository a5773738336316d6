//! How an error reads on the terminal: its message, then each cause the
//! message does not already say, joined with `: ` (as anyhow's `{:#}`).
//! Library errors often end their message with their cause's text (so
//! that a message alone is whole); that cause is not repeated.

use std::fmt;

/// Renders `err` and its causes once each: `format!("{}", Chain(&e))`.
pub struct Chain<'a>(pub &'a anyhow::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(self.0.chain().map(|c| c.to_string())))
    }
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
