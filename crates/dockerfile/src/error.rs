//! The crate error and a renderable diagnostic.

use crate::shell::ExpandError;

/// Why a Dockerfile, a word or an ignore pattern was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The Dockerfile text could not be turned into an AST.
    #[error("{message}")]
    Syntax {
        /// BuildKit's message, e.g. `unterminated heredoc`.
        message: String,
        /// First line of the offending instruction (1-based, 0 if unknown).
        start_line: usize,
        /// Last line of the offending instruction.
        end_line: usize,
    },
    /// An instruction is malformed (unknown instruction, bad flag, arguments).
    #[error("{message}")]
    Instruction {
        /// BuildKit's message, e.g. `unknown flag: chwon`.
        message: String,
        /// First line of the instruction.
        start_line: usize,
        /// Last line of the instruction.
        end_line: usize,
        /// Text to underline in the first line, if known.
        token: Option<String>,
    },
    /// The stages do not form a valid build (unknown target, cycle, no FROM).
    #[error("{message}")]
    Stage {
        /// What is wrong.
        message: String,
        /// Line of the instruction involved (0 if none).
        line: usize,
    },
    /// Variable expansion failed.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// A `.dockerignore` pattern is malformed.
    #[error("{message}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Coarse classification callers can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not valid Dockerfile syntax.
    Syntax,
    /// A valid AST with a malformed instruction.
    Instruction,
    /// A problem with the stage graph.
    Stage,
    /// Variable expansion failed.
    Expand,
    /// A bad ignore pattern.
    Pattern,
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Syntax { .. } => ErrorKind::Syntax,
            Error::Instruction { .. } => ErrorKind::Instruction,
            Error::Stage { .. } => ErrorKind::Stage,
            Error::Expand(_) => ErrorKind::Expand,
            Error::Pattern { .. } => ErrorKind::Pattern,
        }
    }

    /// The 1-based line range the error is about, if any.
    pub fn lines(&self) -> Option<(usize, usize)> {
        match self {
            Error::Syntax { start_line, end_line, .. } | Error::Instruction { start_line, end_line, .. } => {
                Some((*start_line, (*end_line).max(*start_line)))
            }
            Error::Stage { line, .. } if *line > 0 => Some((*line, *line)),
            _ => None,
        }
    }

    /// A diagnostic pointing into `source` (the Dockerfile text) for `file`.
    pub fn diagnostic(&self, file: &str, source: &str) -> Diagnostic {
        let (line, _) = self.lines().unwrap_or((0, 0));
        let text = if line > 0 { source_line(source, line) } else { String::new() };
        let token = match self {
            Error::Instruction { token: Some(t), .. } => Some(t.as_str()),
            _ => None,
        };
        let (column, width) = locate(&text, token);
        Diagnostic { file: file.to_string(), line, column, width, message: self.to_string(), source_line: text }
    }
}

fn source_line(source: &str, line: usize) -> String {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    source.split('\n').nth(line - 1).unwrap_or("").trim_end_matches(['\r', '\n']).to_string()
}

/// 1-based column and width of `token` in `text`, or of the first word.
fn locate(text: &str, token: Option<&str>) -> (usize, usize) {
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        if let Some(i) = text.find(t) {
            return (text[..i].chars().count() + 1, t.chars().count());
        }
    }
    let start = text.len() - text.trim_start().len();
    let word = text[start..].split(char::is_whitespace).next().unwrap_or("");
    (text[..start].chars().count() + 1, word.chars().count().max(1))
}

/// An error located in a file, renderable with the offending line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name, as given by the caller.
    pub file: String,
    /// 1-based line, 0 when the error has no location.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// How many characters to underline.
    pub width: usize,
    /// The message.
    pub message: String,
    /// The text of the line.
    pub source_line: String,
}

impl Diagnostic {
    /// Renders `file:line:col: message` followed by the line and a caret mark.
    pub fn render(&self) -> String {
        if self.line == 0 {
            return format!("{}: {}", self.file, self.message);
        }
        let pad = " ".repeat(self.column.saturating_sub(1));
        format!(
            "{}:{}:{}: {}\n{:>4} | {}\n     | {}{}",
            self.file,
            self.line,
            self.column,
            self.message,
            self.line,
            self.source_line,
            pad,
            "^".repeat(self.width)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_unknown_instruction() {
        let src = "FROM a\n\nFORM busybox\n";
        let e = Error::Instruction {
            message: "unknown instruction: FORM".into(),
            start_line: 3,
            end_line: 3,
            token: Some("FORM".into()),
        };
        assert_eq!(
            e.diagnostic("Dockerfile", src).render(),
            "Dockerfile:3:1: unknown instruction: FORM\n   3 | FORM busybox\n     | ^^^^"
        );
    }

    #[test]
    fn render_flag_column() {
        let src = "COPY --chwon=1 a b";
        let e = Error::Instruction {
            message: "unknown flag: chwon".into(),
            start_line: 1,
            end_line: 1,
            token: Some("--chwon=1".into()),
        };
        let d = e.diagnostic("Dockerfile", src);
        assert_eq!((d.column, d.width), (6, 9));
    }
}
